"""The layering contract (pyproject.toml, checked by import-linter) and what it buys.

`kdiag compare` only reads JSON, so it must load neither TensorFlow nor the profiler.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import factories as fx
from kdiag.render.json import render as render_json

ROOT = Path(__file__).resolve().parent.parent


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter over the `kdiag` package found in `root`, with the contracts of `root`/pyproject.toml."""
    return subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                               "sys.exit(lint_imports_command())", "--config", str(root / "pyproject.toml"),
         "--no-cache"],
        cwd=root, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )


def test_the_layering_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("module, wrong_import, broken", [
    # The data model must not reach the profiler (the old report.py imported measure and profiling).
    ("datamodel/report.py", "import kdiag.engine.phases.profiling", "kdiag is layered"),
    # The data model renders nothing: not even a lazy import of a renderer.
    ("datamodel/report.py", "import kdiag.render.markdown", "kdiag is layered"),
    # A renderer reads only the Report, views and formatting.
    ("render/markdown.py", "from kdiag.engine.intake import load", "kdiag is layered"),
    # Standard library only at the bottom.
    ("views/facts.py", "import numpy", "standard library only"),
    # rich belongs to the terminal renderer.
    ("render/markdown.py", "import rich", "rich only in the terminal renderer"),
    # Two modules of one package importing each other.
    ("engine/intake/load.py", "import kdiag.engine.runtimes.strategies", "no two modules import each other"),  # strategies imports load
])
def test_a_wrong_import_breaks_the_contract(tmp_path, module, wrong_import, broken):
    shutil.copytree(ROOT / "kdiag", tmp_path / "kdiag", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "kdiag" / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{wrong_import}  # planted by the test\n",
                      encoding="utf-8")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    broken_section = result.stdout.split("Broken contracts", 1)[-1]
    assert broken in broken_section, result.stdout


def test_compare_imports_neither_tensorflow_nor_the_profiler(tmp_path):
    for name in ("a", "b"):
        report = fx.report(fx.typical_keras3(), [fx.profile("predict", {"tf.data pipeline": 0.6, "tracing": 0.4}, 60)])
        (tmp_path / f"{name}.json").write_text(render_json(report), encoding="utf-8")
    code = (
        "import io, json, sys\n"
        "from kdiag.cli import Env, main\n"
        "out = io.StringIO()\n"
        f"status = main(['compare', {str(tmp_path / 'a.json')!r}, {str(tmp_path / 'b.json')!r}], Env(out, out))\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'tf_keras', 'numpy', 'rich', 'cProfile', 'pstats', 'h5py')"
        " or m.startswith(('kdiag.engine', 'kdiag.steps', 'kdiag.api')))\n"
        "print(json.dumps({'status': status, 'heavy': heavy, 'text': out.getvalue()}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["status"] == 0
    assert "No regression" in answer["text"]
    assert answer["heavy"] == []
