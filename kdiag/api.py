"""The Python API, above the run: `inspect(...) -> Report`, `bisect(...) -> BisectResult`, and what shows a Report.

`inspect` checks its options exactly as the CLI does (one RunConfig) and runs the steps of
kdiag.steps.pipeline. A Report is data: `print_report` and `render_report` show it, and
`read_report` reads a saved report.json back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional, Sequence

from kdiag.datamodel.config import RunConfig
from kdiag.datamodel.report import Report, read_report  # noqa: F401 (kdiag.read_report)
from kdiag.datamodel.versions import BisectRequest, BisectResult
from kdiag.steps.pipeline import run
from kdiag.steps.state import Progress, RunFailed, RunInterrupted  # noqa: F401 (raised by run; the CLI catches them)


def inspect(model_or_path=None, inputs=None, *, example: Optional[str] = None, batch_size: Optional[int] = None,
            input_shapes: Optional[Mapping[str, Sequence[int]]] = None, strategies: Optional[Sequence[str]] = None,
            budget_s: float = 1.0, min_calls: int = 5, max_wall_s: Optional[float] = None, precision: float = 0.02,
            unsafe: bool = False,
            custom_objects: Optional[Mapping[str, object]] = None, cpp: bool = False, profile: bool = True,
            profile_strategies: Sequence[str] = (), profile_calls: int = 5, time_limit_s: float = 60.0,
            out_dir: Optional[Path] = None, redact: bool = True, progress: Optional[Progress] = None,
            keras: Optional[str] = None, samples: Optional[Sequence[int]] = None, sweeps: bool = True,
            memory_loops: bool = False, ops: Optional[bool] = None, tf: Optional[Sequence[str]] = None,
            save_inputs: Optional[str] = None) -> Report:
    """Load the model, build inputs, time every strategy, check outputs, profile predict: a Report.

    model_or_path: a Keras model, or a path to .keras / .h5 / a SavedModel directory.
    inputs: a NumPy array, a dict of arrays by input name, or a path to .npy/.npz;
        synthetic inputs from the model's signature when None.
    example: the name of a built-in example instead of a model (`kdiag examples` lists them).
    batch_size: the batch for synthetic inputs (default: the model's fixed one, else 1).
    input_shapes: sizes of dynamic axes after the batch axis, by input name.
    strategies: keys of the strategies to time (default: all; see `kdiag inspect --help`).
    budget_s, min_calls, precision: each strategy is timed until the 95% interval of its median is
        within ±precision (0.02), or budget_s seconds of timed calls (the cap), never under min_calls
        calls (the floor); max_wall_s: where a slow strategy stops once at the floor (default 6x the
        budget). Only time_limit_s cuts below min_calls.
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
        data-size and batch-size sweeps at all; memory_loops: the sustained loops that watch RSS (off
        by default); ops: the op breakdown (needs XProf: pip install kdiag[ops]) and the threads
        comparison (None: when predict's profile shows graph execution takes most of its time).
    tf: TensorFlow releases to measure side by side, e.g. ["2.15", "installed", "nightly"]: each in its
        own cached environment (`kdiag envs` lists them), in alternating rounds on one input batch; the
        Report is the first release's, with every release in `report.tf_versions`. Needs a model file.
    save_inputs: also save the input batch the run used to this .npz (never over a file).

    The Report is data: `print_report(report)`, `render_report(report, "markdown")` and `render_report(report, "json")`
    show it.

    Options are checked exactly as the CLI checks them: a bad value raises KdiagError.
    """
    config = RunConfig(
        model=model_or_path, example=example, inputs=inputs, batch_size=batch_size,
        input_shapes=dict(input_shapes or {}), strategies=None if strategies is None else tuple(strategies),
        budget_s=budget_s, min_calls=min_calls, max_wall_s=max_wall_s, precision=precision, unsafe=unsafe,
        custom_objects=custom_objects, cpp=cpp, profile=profile, profile_strategies=tuple(profile_strategies),
        profile_calls=profile_calls, time_limit_s=time_limit_s, redact=redact, keras=keras,
        samples=None if samples is None else tuple(samples), sweeps=sweeps, memory_loops=memory_loops, ops=ops,
        tf_versions=tf.split(",") if isinstance(tf, str) else None if tf is None else tuple(tf),
        save_inputs=save_inputs,
    )
    return run(config, progress=progress, out_dir=out_dir)


def bisect(model_or_path=None, *, good: str, bad: str, strategy: str = "predict", threshold: float = 1.2,
           example: Optional[str] = None, inputs=None, batch_size: Optional[int] = None,
           input_shapes: Optional[Mapping[str, Sequence[int]]] = None, budget_s: float = 1.0, min_calls: int = 5,
           time_limit_s: float = 60.0, unsafe: bool = False, custom_objects_file: Optional[str] = None,
           progress: Optional[Progress] = None, on_probe=None) -> BisectResult:
    """The first TensorFlow release from `good` to `bad` where `strategy` (a key, default predict) is slower
    than under `good` beyond the noise by at least `threshold`: a BisectResult.

    Binary search over every release the package index serves between the two (inclusive), each
    probed release timed against the good one in alternating rounds on one input batch; at most
    ceil(log2(n)) + 2 environments for n releases. `on_probe(result so far, probe)` is called as each
    probe ends. A flat series gives `first_slow` None. The model must be a file (or an example);
    custom_objects_file: a module file defining the model's classes (its code runs, in every release).
    `time_limit_s` applies to each child run; a probe's rounds stop at twice it. Options are checked as
    `kdiag bisect` checks them; Ctrl-C raises BisectInterrupted, whose `result` holds the probes that finished.
    """
    from kdiag.steps.bisect import run as run_bisect

    request = BisectRequest(good, bad, strategy, threshold)
    custom_objects = None
    if custom_objects_file is not None:
        from kdiag.engine.intake.custom_objects import load_custom_objects

        custom_objects = load_custom_objects(custom_objects_file)
    config = RunConfig(model=model_or_path, example=example, inputs=inputs, batch_size=batch_size,
                       input_shapes=dict(input_shapes or {}), budget_s=budget_s, min_calls=min_calls,
                       time_limit_s=time_limit_s, unsafe=unsafe, custom_objects=custom_objects,
                       custom_objects_file=custom_objects_file)
    return run_bisect(config, request, progress=progress, on_probe=on_probe or (lambda result, probe: None))


def render_report(report: Report, fmt: str = "markdown", **options) -> str:
    """The report as one of kdiag.render.FORMATS: "markdown" (report.md; redact=False keeps local paths),
    "json" (report.json), "html" (report.html), "terminal" (width=, verbose=) or "repro" (repro.py)."""
    from kdiag.render import render as render_format

    return render_format(report, fmt, **options)


def print_report(report: Report, verbose: bool = False, file=None) -> None:
    """The terminal report on stdout (or `file`), in colour on a terminal, as `kdiag inspect` prints it."""
    from kdiag.render.terminal import print_report as print_terminal

    print_terminal(report, verbose=verbose, file=file)
