"""One ordinary kdiag run under one TensorFlow release, in a child process; its Report read back.

This is what `--keras 2|both` does (kdiag.engine.keras_child), with the Python and the import
path of the release's environment: `ENV/bin/python -I`, kdiag's copy first on its path, writing
its own run folder, whose report.json this process reads. Being an ordinary run, the child checks
the model file (kdiag.engine.intake.safety) again before its Keras sees it, and refuses in one line as
any run would; that line comes back as a KdiagError naming the release.

The child runs in its own process group (kdiag.versions.processes): Ctrl-C here stops it with
SIGTERM (it saves what it measured), then SIGKILL.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional

from kdiag.datamodel.config import RunConfig
from kdiag.datamodel.report import Report
from kdiag.datamodel.versions import EnvironmentInfo, keras_major
from kdiag.engine import keras_child
from kdiag.versions import processes
from kdiag.versions.index import Target

# A child's progress: (stage, detail), as kdiag.engine.keras_child passes it on.
ChildProgress = Callable[[str, str], None]


@dataclasses.dataclass(frozen=True)
class Interpreter:
    """Where one release runs: a Python, the folders it imports kdiag from first, the variables it gets."""

    target: Target
    python: str
    path: List[str]
    variables: Dict[str, str] = dataclasses.field(default_factory=dict)
    environment: Optional[EnvironmentInfo] = None  # None: the running environment

    @property
    def tensorflow(self) -> str:
        return self.target.version

    @property
    def label(self) -> str:
        """"TensorFlow 2.15.1", "TensorFlow 2.21.0 (installed)": how progress lines and refusals name it."""
        requested = self.target.requested
        return f"TensorFlow {self.tensorflow}" + (f" ({requested})" if requested in ("installed", "nightly") else "")

    @property
    def keras(self) -> Optional[int]:
        """The Keras its TensorFlow brings: 2 up to 2.15, 3 from 2.16."""
        return keras_major(self.tensorflow)


def child_argv(config: RunConfig, private: Path, out_dir: Path, *, full: bool = True,
               save_inputs: Optional[Path] = None) -> List[str]:
    """`kdiag inspect` arguments for one run under a release: the same options as `config` (without --tf),
    spelled by RunConfig.to_argv; `full=False` for a timing round (no profiles, no steps beyond one batch);
    `save_inputs`: where this run saves the batch it draws, for the others."""
    run = dataclasses.replace(config, tf_versions=None, save_inputs=None if save_inputs is None else str(save_inputs))
    if not full:
        run = dataclasses.replace(run, profile=False, profile_strategies=(), sweeps=False, memory_loops=False,
                                  ops=False, samples=None)
    return keras_child.child_config(run, private).to_argv() + ["--format", "json", "--out",
                                                              str(Path(out_dir).absolute())]


def run_kdiag(interpreter: Interpreter, argv: List[str], out_dir: Path, say: ChildProgress,
              cwd: Path) -> Report:
    """Run `kdiag ARGV` under `interpreter` from the empty folder `cwd`; the Report it wrote in `out_dir`.

    Its one-line refusal (exit 2) is raised as a KdiagError naming the release; a crash as a
    RuntimeError with its last lines.
    """
    command = keras_child.child_command(argv, python=interpreter.python, path=list(interpreter.path))
    # COLUMNS: the child's progress lines arrive whole, not wrapped at rich's default 80 columns.
    env = {**os.environ, "COLUMNS": "1000", **interpreter.variables}
    child = processes.start(command, env=env, cwd=cwd, merge_output=False)
    try:
        errors, tail = keras_child.follow(child.stderr, interpreter.label, say)
        child.wait()
    except BaseException:  # Ctrl-C, SIGTERM: the child's whole group stops too
        processes.stop(child)
        raise
    finally:
        child.stderr.close()
    return keras_child.child_report(child.returncode, errors, tail, interpreter.label, Path(out_dir))
