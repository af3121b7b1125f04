"""The Python API, above the run: `inspect(...) -> Report`, and what shows a Report.

`inspect` checks its options exactly as the CLI does (one RunConfig) and runs the steps of
kdiag.steps.pipeline. A Report is data: `print_report` and `render_report` show it, and
`read_report` reads a saved report.json back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

from kdiag.datamodel.config import RunConfig
from kdiag.datamodel.report import Report, read_report  # noqa: F401 (kdiag.read_report)
from kdiag.steps.pipeline import run
from kdiag.steps.state import Progress, RunFailed, RunInterrupted  # noqa: F401 (raised by run; the CLI catches them)


def inspect(model_or_path=None, inputs=None, *, example: Optional[str] = None, batch_size: Optional[int] = None,
            input_shapes: Optional[Mapping[str, Sequence[int]]] = None, strategies: Optional[Sequence[str]] = None,
            budget_s: float = 1.0, min_calls: int = 5, max_wall_s: Optional[float] = None, unsafe: bool = False,
            custom_objects: Optional[Mapping[str, object]] = None, cpp: bool = False, profile: bool = True,
            profile_strategies: Sequence[str] = (), profile_calls: int = 10, time_limit_s: float = 60.0,
            out_dir: Optional[Path] = None, redact: bool = True, progress: Optional[Progress] = None,
            keras: Optional[str] = None, samples: Optional[Sequence[int]] = None, sweeps: bool = True,
            memory_loops: bool = True, ops: bool = True) -> Report:
    """Load the model, build inputs, time every strategy, check outputs, profile predict: a Report.

    model_or_path: a Keras model, or a path to .keras / .h5 / a SavedModel directory.
    inputs: a NumPy array, a dict of arrays by input name, or a path to .npy/.npz;
        synthetic inputs from the model's signature when None.
    example: the name of a built-in example instead of a model (`kdiag examples` lists them).
    batch_size: the batch for synthetic inputs (default: the model's fixed one, else 1).
    input_shapes: sizes of dynamic axes after the batch axis, by input name.
    strategies: keys of the strategies to time (default: all; see `kdiag inspect --help`).
    budget_s, min_calls: timed seconds and calls at least per strategy; max_wall_s: where a
        slow strategy stops early (default 6x the budget).
    unsafe: allow Lambda layers (runs code from the file); custom_objects: the model's classes.
    cpp: also time the C++ floor (builds cpp_baseline/ once).
    profile, profile_strategies, profile_calls: the cProfile pass over predict before and after
        compile(), plus these strategy keys, with this many warm calls each.
    time_limit_s: the whole run, loading to report (0: none). Steps that would not fit are left out
        and the report says which, with the limit that would let them run; a call still running near the
        limit is stopped (or, inside one native call, left to end on its own thread) and the Report,
        marked incomplete, holds what was measured.
    out_dir: a folder to keep the .prof files in (with path-redacted copies in out_dir/redacted/);
        when None they are profiled in a temporary folder that is removed, and the Report's
        profiles hold the phases but no file paths.
    redact: report.md shows local paths as ~, <python> and <model-dir> (default).
    progress: called with a ProgressUpdate (step k of N, elapsed, time left) as the run goes.

    keras: "2" (tf-keras), "3" or "both" (side by side in one Report, `other_keras`); the other Keras
        than this process's runs in a child process. None: this process's Keras.
    samples, sweeps: the data-size sweep's sample counts (None: automatic), and whether to run the
        data-size and batch-size sweeps at all; memory_loops: the sustained loops that watch RSS;
        ops: the op breakdown (needs XProf: pip install kdiag[ops]) and the threads comparison.

    The Report is data: `print_report(report)`, `render_report(report, "markdown")` and `render_report(report, "json")`
    show it.

    Options are checked exactly as the CLI checks them: a bad value raises KdiagError.
    """
    config = RunConfig(
        model=model_or_path, example=example, inputs=inputs, batch_size=batch_size,
        input_shapes=dict(input_shapes or {}), strategies=None if strategies is None else tuple(strategies),
        budget_s=budget_s, min_calls=min_calls, max_wall_s=max_wall_s, unsafe=unsafe,
        custom_objects=custom_objects, cpp=cpp, profile=profile, profile_strategies=tuple(profile_strategies),
        profile_calls=profile_calls, time_limit_s=time_limit_s, redact=redact, keras=keras,
        samples=None if samples is None else tuple(samples), sweeps=sweeps, memory_loops=memory_loops, ops=ops,
    )
    return run(config, progress=progress, out_dir=out_dir)


def render_report(report: Report, fmt: str = "markdown", **options) -> str:
    """The report as one of kdiag.render.FORMATS: "markdown" (report.md; redact=False keeps local paths),
    "json" (report.json), "html" (report.html), "terminal" (width=, verbose=) or "repro" (repro.py)."""
    from kdiag.render import render as render_format

    return render_format(report, fmt, **options)


def print_report(report: Report, verbose: bool = False, file=None) -> None:
    """The terminal report on stdout (or `file`), in colour on a terminal, as `kdiag inspect` prints it."""
    from kdiag.render.terminal import print_report as print_terminal

    print_terminal(report, verbose=verbose, file=file)
