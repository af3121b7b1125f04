"""Code in the terminal runs as a user selecting it would get it, at 60, 80 and 100 columns.

At 80 columns kdiag used to wrap `# once: a concrete function takes tensors, not arrays` into a comment
line and a code line `takes tensors, not arrays`: pasted, an IndentationError. The terminal now prints
code flush left between two comment lines with rich's soft wrap (a terminal folds a long line on screen
and copies it whole). These tests print the reports of the four examples (reports/examples/) and of
factory Reports that fire every finding with code on a recording console of each width, take every
block between the comment lines as a user selecting it would, and run it in a fresh process where
only `model` and `x` are defined.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
from rich.console import Console

import factories as fx
from kdiag.analysis.diagnose import diagnose
from kdiag.analysis.rules.beyond import THREADS_SNIPPET
from kdiag.datamodel import beyond as b
from kdiag.datamodel.report import Report, read_report
from kdiag.datamodel.strategies import BY_NAME, CPP
from kdiag.render.terminal import CODE_END, CODE_START, print_report

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "reports" / "examples"
WIDTHS = (60, 80, 100)
START = CODE_START.split("{what}")[0]


def screen(report: Report, width: int, verbose: bool) -> str:
    """The report as a console of `width` columns prints it (rich's recording console, the real width)."""
    console = Console(width=width, record=True, file=io.StringIO(), markup=False, color_system=None)
    print_report(report, console=console, verbose=verbose, saved="reports/run")
    return console.export_text()


def selected_code(text: str) -> List[str]:
    """Every block from a `# --- code for ...` line to `# --- end of code ---`, both included: what a
    user selecting the code gets (the comment lines do no harm)."""
    blocks, current = [], None
    for line in text.splitlines():
        if line.startswith(START):
            current = [line]
        elif current is not None:
            current.append(line)
            if line == CODE_END:
                blocks.append("\n".join(current))
                current = None
    assert current is None, "a code block with no end"
    return blocks


def _body(block: str) -> str:
    return "\n".join(block.splitlines()[1:-1])


def every_block(report: Report) -> List[str]:
    """The code blocks of `report` at every width, default and verbose; each the same at every width, and
    each a finding's snippet exactly (nothing inserted, nothing cut)."""
    snippets = {f.snippet for f in report.findings if f.snippet}
    found: Dict[bool, List[str]] = {}
    for verbose in (False, True):
        for width in WIDTHS:
            blocks = [block for block in selected_code(screen(report, width, verbose))
                      if not block.startswith(CODE_START.format(what="the commands"))]  # shell lines, .prof files
            assert all(_body(block) in snippets for block in blocks), (width, verbose, blocks)
            found.setdefault(verbose, blocks)
            assert blocks == found[verbose], f"the code at {width} columns differs from the code at {WIDTHS[0]}"
    assert {_body(block) for block in found[True]} == snippets  # verbose shows every snippet once
    return found[True]


RUNNER = """
import json, sys
from pathlib import Path
from kdiag.engine.intake.inputs import resolve_shapes, synthetic_inputs
from kdiag.engine.intake.load import load_example
from kdiag.engine.runtimes.base import StrategyContext

name, batch = sys.argv[1], int(sys.argv[2])
blocks = json.loads(sys.stdin.read())
loaded = load_example(name)
specs = loaded.input_specs
x = StrategyContext(loaded, synthetic_inputs(specs, resolve_shapes(specs, batch, {})), Path(".")).keras_inputs()
failed = []
for block in blocks:
    namespace = {"model": loaded.model, "x": x}  # nothing else defined
    try:
        exec(compile(block, "<pasted>", "exec"), namespace)
    except BaseException as exc:
        failed.append(f"{type(exc).__name__}: {exc}\\n{block}")
print(json.dumps(failed))
"""


def run_pasted(example: str, batch: int, blocks: List[str], tmp_path: Path) -> List[str]:
    """Run each block in a fresh namespace, in a fresh process holding only the example's model and x."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", RUNNER, example, str(batch)], input=json.dumps(blocks),
                            capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _real(strategies):
    return [dataclasses.replace(s, snippet=BY_NAME[s.name].snippet) if s.name in BY_NAME else s for s in strategies]


def every_finding_with_code() -> Report:
    """One report whose findings carry every snippet a finding can show: the drop-in fix, compile(),
    retracing, a direct call, a runtime change and the threads advice."""
    strategies = _real(fx.typical_keras3(**{"predict (compiled)": (90.0, 3.0), "model(x) eager": (5.0, 0.1),
                                            "concrete function": (0.3, 0.01), "TFLite": (0.001, 0.0001)}))
    threads = b.ThreadsEffect("SavedModel serve", 2, fx.measurement("one", 10.0, 0.01),
                              fx.measurement("many", 20.0, 0.01))
    report = fx.report(strategies, profiles=[fx.profile("tf.function", {"tracing": 0.8, "graph execution": 0.2},
                                                        0.25, traces_per_call=1.0)])
    report = dataclasses.replace(report, threads_effect=threads, model=fx.model_info(batch_size=32))
    return dataclasses.replace(report, findings=diagnose(report))


def test_every_finding_with_code_is_in_the_factory_report():
    report = every_finding_with_code()
    with_code = {f.id for f in report.findings if f.snippet}
    assert with_code >= {"predict-overhead", "compile-slowdown", "retracing", "eager-slow", "runtime-change",
                         "intra-op-threads"}
    assert any(f.snippet == THREADS_SNIPPET for f in report.findings)


@pytest.mark.parametrize("width", WIDTHS)
def test_the_code_is_the_snippet_whole_at_every_width_and_nothing_else_is_wider(width):
    report = every_finding_with_code()
    text = screen(report, width, verbose=True)
    inside = set()
    for block in selected_code(text):
        inside.update(block.splitlines())
    assert max(len(line) for line in text.splitlines() if line not in inside and not line.startswith("Saved in ")) \
        <= width
    assert every_block(report)


@pytest.mark.slow
def test_every_snippet_of_every_finding_runs_as_selected_from_the_terminal(tmp_path):
    report = every_finding_with_code()
    blocks = every_block(report)
    assert not run_pasted("tiny", 32, blocks, tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(not (EXAMPLES / "tiny" / "report.json").is_file(), reason="reports/examples/ not generated")
@pytest.mark.parametrize("example", ["tiny", "mnist-softmax", "mnist-cnn", "lstm"])
def test_the_examples_code_runs_as_selected_from_the_terminal_at_60_80_and_100_columns(example, tmp_path):
    report = read_report(EXAMPLES / example / "report.json")
    blocks = every_block(report)
    assert blocks, "an example with no code in its terminal report"
    # The C++ program (a runtime-change finding may show it) is built and run by tests/test_snippets.py.
    python = [block for block in blocks if _body(block) != CPP.snippet]
    assert not run_pasted(example, report.model.batch_size, python, tmp_path)
