"""A run under the other Keras, in a child process: `kdiag inspect --keras 2|3|both`.

Which Keras `tf.keras` and kdiag use is fixed when TensorFlow is imported (TF_USE_LEGACY_KERAS),
so a run under the Keras this process does not run is a second, ordinary kdiag run in a child
process: `python -I` with TF_USE_LEGACY_KERAS set for it, writing its own run folder, whose
report.json this process reads back. Being an ordinary run, it goes through every check and
refusal of kdiag.engine.intake.safety before its Keras sees the file.

`python -I` ignores PYTHON* variables, the user's site-packages and the working directory, so
the child is handed this process's import path explicitly (the folder kdiag itself came from
first): it imports the same kdiag, TensorFlow and tf-keras as this process. It runs from a
private empty folder, with every path it is given made absolute.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from kdiag.datamodel.config import RunConfig
from kdiag.datamodel.report import Report, read_report
from kdiag.errors import KdiagError
from kdiag.tempdirs import temporary_directory

# Progress callback, as kdiag.api's: (stage, detail).
Progress = Callable[[str, str], None]

LABELS = {"2": "Keras 2 (tf-keras)", "3": "Keras 3"}
STOP_GRACE_S = 10.0  # between SIGTERM (the child saves what it measured) and SIGKILL
ERROR_PREFIX = "kdiag: error: "

# The child's first statement: this process's import path, then `python -m kdiag`.
BOOTSTRAP = ("import json, runpy, sys; sys.path[:0] = json.loads(sys.argv.pop(1)); "
             "runpy.run_module('kdiag', run_name='__main__', alter_sys=True)")


def current_keras() -> str:
    """"2" when this process runs tf-keras (TF_USE_LEGACY_KERAS=1), else "3"."""
    from kdiag.engine.tf import legacy_keras_requested

    return "2" if legacy_keras_requested() else "3"


def tf_keras_installed() -> bool:
    """Whether tf-keras can be imported, without importing it (nor TensorFlow)."""
    try:
        return importlib.util.find_spec("tf_keras") is not None
    except (ImportError, ValueError):
        return False


def require_tf_keras(keras: Optional[str]) -> None:
    """Refuse --keras 2 or both, before anything runs, when tf-keras is missing."""
    if keras in ("2", "both") and not tf_keras_installed():
        raise KdiagError("tf-keras is not installed",
                         "pip install kdiag[legacy] (--keras 2 and --keras both run the model under tf-keras)")


def sides(config: RunConfig) -> List[str]:
    """The Keras versions to run, the one this process runs first (a refusal comes from it, once)."""
    here = current_keras()
    if config.keras is None:
        return [here]
    if config.keras == "both":
        return [here, "3" if here == "2" else "2"]
    return [config.keras]


def run_child(config: RunConfig, keras: str, out_dir: Path, say: Progress,
              time_limit_s: Optional[float] = None) -> Report:
    """Run `config` under Keras `keras` ("2" or "3") in a child process; its Report.

    `out_dir` must not exist: the child's run folder (report.json, report.md, report.html,
    repro.py, .prof files). The child's one-line refusal (exit 2) is raised here as a
    KdiagError naming the Keras; any other failure as a RuntimeError with its last lines.
    """
    if keras == "2":
        require_tf_keras(keras)
    if not sys.executable:
        raise KdiagError(f"--keras {config.keras} needs a child process, and this Python cannot start one",
                         "run kdiag from a normal Python installation")
    label = LABELS[keras]
    with temporary_directory(prefix="kdiag-keras-") as private:
        argv = child_arguments(config, keras, Path(out_dir), Path(private), time_limit_s)
        # COLUMNS: the child's progress lines arrive whole, not wrapped at rich's default 80 columns.
        env = {**os.environ, "TF_USE_LEGACY_KERAS": "1" if keras == "2" else "0", "COLUMNS": "1000"}
        say("load", f"{label}: starting a child process for it")
        child = subprocess.Popen(child_command(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, cwd=private, env=env, text=True, errors="replace")
        try:
            errors, tail = follow(child.stderr, label, say)
            child.wait()
        except BaseException:  # Ctrl-C, SIGTERM: the child stops too, saving what it measured
            _stop(child)
            raise
        finally:
            child.stderr.close()
    return child_report(child.returncode, errors, tail, label, Path(out_dir))


def follow(lines, label: str, say: Progress) -> Tuple[List[str], List[str]]:
    """Read a kdiag child's stderr to its end: its progress lines go on to `say` (the detail prefixed
    by `label`); returns its `kdiag: error:` lines and its last other lines (for a crash's message)."""
    errors: List[str] = []
    tail: deque = deque(maxlen=20)
    for line in lines:
        line = line.rstrip("\n")
        if line.startswith(ERROR_PREFIX):
            errors.append(line[len(ERROR_PREFIX):])
        elif _PROGRESS_LINE.match(line):
            stage, detail = _PROGRESS_LINE.match(line).groups()
            say(stage, f"{label}: {detail}")
        elif line.strip():
            tail.append(line)
    return errors, list(tail)


def child_report(returncode: int, errors: List[str], tail: List[str], label: str, out_dir: Path) -> Report:
    """The Report a kdiag child wrote in `out_dir`; its one-line refusal (exit 2) as a KdiagError naming
    `label`, any other failure as a RuntimeError with its last lines."""
    if returncode == 2 and errors:
        raise KdiagError(f"under {label}: {errors[-1]}")
    if returncode != 0:
        shown = "\n".join(list(tail)[-10:] + [ERROR_PREFIX + e for e in errors])
        raise RuntimeError(f"the run under {label} (a child process) ended with exit status {returncode}:\n"
                           f"{shown}")
    return read_report(Path(out_dir) / "report.json")


# The child's progress lines off a terminal: "kdiag: [  12.3 s, ≤ 48 s left] [3/16] prepare: predict".
_PROGRESS_LINE = re.compile(r"^kdiag: \[[^\]]*\] (?:still at )?\[\d+/\d+\] ([^:]+): (.*)$")


def child_command(argv: List[str], python: Optional[str] = None, path: Optional[List[str]] = None) -> List[str]:
    """`python -I` running kdiag with `argv`, importing from `path` first: by default this Python and this
    process's import path; a TensorFlow release's environment passes its own (kdiag.versions)."""
    return [python or sys.executable, "-I", "-c", BOOTSTRAP, json.dumps(import_path() if path is None else path),
            *argv]


def import_path() -> List[str]:
    """The folders this process imports from, kdiag's own first, the working directory left out (as
    kdiag/__main__.py leaves it out: a `numpy.py` lying there must not be imported)."""
    kdiag_root = str(Path(__file__).resolve().parents[2])
    try:
        cwd = os.path.realpath(os.getcwd())
    except OSError:
        cwd = None
    entries = [kdiag_root]
    for entry in sys.path:
        if entry in ("", ".") or (cwd is not None and os.path.realpath(entry) == cwd) or entry in entries:
            continue
        entries.append(entry)
    return entries


def child_arguments(config: RunConfig, keras: str, out_dir: Path, private: Path,
                    time_limit_s: Optional[float] = None) -> List[str]:
    """`kdiag inspect` arguments that ask the child for what `config` asks, under Keras `keras`;
    `time_limit_s`: the child's share of the time limit (default: the whole of it)."""
    if config.model is not None and not isinstance(config.model, (str, os.PathLike)):
        raise KdiagError(f"--keras {config.keras} needs a model file: an in-memory model cannot be loaded "
                         f"under {LABELS[keras]}", "save it (model.save('model.keras')) and pass the path")
    if config.custom_objects and not config.custom_objects_file:
        raise KdiagError(f"--keras {config.keras} needs the custom objects as a module file for {LABELS[keras]}",
                         "pass --custom-objects module.py (the file that defines them)")
    return dataclasses.replace(child_config(config, private, time_limit_s), keras=keras).to_argv() + [
        "--format", "json", "--out", _absolute(out_dir)]


def child_config(config: RunConfig, private: Path, time_limit_s: Optional[float] = None) -> RunConfig:
    """`config` as a child process runs it: every path absolute (the child runs in a private folder), the
    user's arrays saved as a file in `private`, `time_limit_s` its share of the limit (default: all of it).
    Its `to_argv()` spells the request, so no option can be dropped on the way."""
    return dataclasses.replace(
        config,
        model=None if config.model is None else _absolute(config.model),
        inputs=None if config.inputs is None else inputs_file(config.inputs, private),
        custom_objects_file=None if not config.custom_objects_file else _absolute(config.custom_objects_file),
        save_inputs=None if config.save_inputs is None else _absolute(config.save_inputs),
        time_limit_s=config.time_limit_s if time_limit_s is None else time_limit_s,
    )


def _absolute(path) -> str:
    return str(Path(os.path.abspath(os.fspath(path))))


def inputs_file(inputs, private: Path) -> str:
    """The user's inputs as a file the child can read: their own file, or arrays saved here."""
    if isinstance(inputs, (str, os.PathLike)):
        return _absolute(inputs)
    import numpy as np

    if isinstance(inputs, dict):
        target = private / "inputs.npz"
        np.savez(target, **{str(k): np.asarray(v) for k, v in inputs.items()})
    else:
        target = private / "inputs.npy"
        np.save(target, np.asarray(inputs))
    return str(target)


def _stop(child: subprocess.Popen) -> None:
    """SIGTERM (the child saves what it measured and exits 143), then SIGKILL after a grace period."""
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
