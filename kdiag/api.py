"""Orchestration: `inspect(...) -> Report`, the one entry point the CLI and Python users share.

`run(config)` reads top to bottom: load, inputs, time each strategy, check outputs, the
C++ floor, the profiles, the training-mode check, then findings and the Report. While it
runs, what it has found so far lives in a private `_RunState`; the Report that comes out
is immutable. Ctrl-C at any step raises `RunInterrupted` holding a Report of what was
measured, marked incomplete.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from kdiag.datamodel.beyond import BatchSizeSweep, DataSizeSweep, MemoryLoops, OpBreakdown, ThreadsEffect
from kdiag.datamodel.config import RunConfig
from kdiag.datamodel.progress import ProgressUpdate
from kdiag.datamodel.profile import ProfileResult
from kdiag.datamodel.report import InputInfo, ModelInfo, Report, RunSettings, StrategyResult
from kdiag.datamodel.strategies import CPP, PREDICT, PREDICT_COMPILED, REFERENCE_ORDER
from kdiag.engine import check
from kdiag.engine.inputs import ModelInputs, check_user_array, load_user_inputs, resolve_shapes, synthetic_inputs
from kdiag.engine.load import LoadedModel, from_model, load_example, load_path
from kdiag.engine.measure import MeasureSettings, MeasurementInterrupted, Timed, measure_interleaved
from kdiag.engine.strategies import BY_KEY, BY_NAME, STRATEGIES, Outputs, Strategy, StrategyContext, to_host
from kdiag.engine.tf import native_stderr_captured
from kdiag.errors import KdiagError, NotApplicable, first_line
from kdiag.signals import stop_cause

# Progress callback: one ProgressUpdate per step and per change within a step.
Progress = Callable[[ProgressUpdate], None]

# What the time limit keeps back for the steps after timing that it cannot skip: the findings,
# the training-mode check's one call, and writing report.json, report.md and report.html
# (about 2 s here, most of it drawing the HTML charts).
REPORT_RESERVE_S = 5.0
# cProfile makes Python-heavy calls about 1.2-2x slower (measured: 1.2-1.7x on the examples).
PROFILE_INFLATION = 2.0

# Profiled by default: the two scenarios of the TF 2.1-era "predict is slower after compile()" report.
DEFAULT_PROFILES = (PREDICT.name, PREDICT_COMPILED.name)

# Seconds each step beyond one batch may take per second of --budget (kdiag.engine.beyond); each step
# keeps to its own. At the default budget of 1 s they add about 20 s, plus the threads comparison on a
# model whose time goes to graph execution.
DATA_SIZE_SWEEP_S = 6.0
BATCH_SIZE_SWEEP_S = 2.0
MEMORY_LOOPS_S = 10.0  # predict's loop and the best path's together
OP_TRACE_S = 3.0
THREADS_S = 12.0  # two child processes importing TensorFlow and loading the model included

TRAINING_DEPENDENT = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "AlphaDropout",
                      "GaussianDropout", "GaussianNoise", "BatchNormalization")


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a run; `report` (marked incomplete) holds what was measured."""

    def __init__(self, report: Report):
        super().__init__("interrupted")
        self.report = report


class RunFailed(Exception):
    """A failure after timing (a full disk while profiling, say); `report` (marked incomplete) holds
    what was measured, `__cause__` the failure."""

    def __init__(self, report: Report):
        super().__init__("the run failed after timing")
        self.report = report


def inspect(model_or_path=None, inputs=None, *, example: Optional[str] = None, batch_size: Optional[int] = None,
            input_shapes: Optional[Mapping[str, Sequence[int]]] = None, strategies: Optional[Sequence[str]] = None,
            budget_s: float = 1.0, min_calls: int = 5, max_wall_s: Optional[float] = None, unsafe: bool = False,
            custom_objects: Optional[Mapping[str, object]] = None, cpp: bool = False, profile: bool = True,
            profile_strategies: Sequence[str] = (), profile_calls: int = 10, time_limit_s: float = 60.0,
            out_dir: Optional[Path] = None, redact: bool = True, progress: Optional[Progress] = None,
            keras: Optional[str] = None, samples: Optional[Sequence[int]] = None, sweeps: bool = True,
            memory_loops: bool = True, ops: bool = True, tf: Optional[Sequence[str]] = None) -> Report:
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
        and the report says which, with the limit that would let them run.
    out_dir: a folder to keep the .prof files in (with path-redacted copies in out_dir/redacted/);
        when None they are profiled in a temporary folder that is removed, and the Report's
        profiles hold the phases but no file paths.
    redact: report.to_markdown() shows local paths as ~, <python> and <model-dir> (default).
    progress: called with a ProgressUpdate (step k of N, elapsed, time left) as the run goes.

    keras: "2" (tf-keras), "3" or "both" (side by side in one Report, `other_keras`); the other Keras
        than this process's runs in a child process. None: this process's Keras.
    samples, sweeps: the data-size sweep's sample counts (None: automatic), and whether to run the
        data-size and batch-size sweeps at all; memory_loops: the sustained loops that watch RSS;
        ops: the op breakdown (needs XProf: pip install kdiag[ops]) and the threads comparison.
    tf: TensorFlow releases to measure side by side, e.g. ["2.15", "installed", "nightly"]: each in its
        own cached environment (`kdiag envs` lists them), in alternating rounds on one input batch; the
        Report is the first release's, with every release in `report.tf_versions`. Needs a model file.

    The Report renders itself: report.print(), report.to_markdown(), report.to_json().

    Options are checked exactly as the CLI checks them: a bad value raises KdiagError.
    """
    config = RunConfig(
        model=model_or_path, example=example, inputs=inputs, batch_size=batch_size,
        input_shapes=dict(input_shapes or {}), strategies=None if strategies is None else tuple(strategies),
        budget_s=budget_s, min_calls=min_calls, max_wall_s=max_wall_s, unsafe=unsafe,
        custom_objects=custom_objects, cpp=cpp, profile=profile, profile_strategies=tuple(profile_strategies),
        profile_calls=profile_calls, time_limit_s=time_limit_s, redact=redact, keras=keras,
        samples=None if samples is None else tuple(samples), sweeps=sweeps, memory_loops=memory_loops, ops=ops,
        tf_versions=None if tf is None else tuple(tf) if not isinstance(tf, str) else tf.split(","),
    )
    return run(config, progress=progress, out_dir=out_dir)


def bisect(model_or_path=None, *, good: str, bad: str, strategy: str = "predict", threshold: float = 1.2,
           example: Optional[str] = None, inputs=None, batch_size: Optional[int] = None,
           input_shapes: Optional[Mapping[str, Sequence[int]]] = None, budget_s: float = 1.0, min_calls: int = 5,
           time_limit_s: float = 60.0, unsafe: bool = False, custom_objects: Optional[str] = None,
           progress: Optional[Progress] = None, on_probe: Optional[Callable] = None, command: str = ""):
    """The first TensorFlow release from `good` to `bad` where `strategy` (a key, default predict) is slower
    than under `good` beyond the noise by at least `threshold`: a BisectResult.

    Binary search over every release the package index serves between the two (inclusive), each
    probed release measured against the good one in alternating timing rounds on one input batch;
    at most ceil(log2(n)) + 2 environments for n releases. `on_probe(result so far, probe)` is called as
    each probe ends. A flat series gives `first_slow` None. custom_objects: the path of a module file defining
    the model's classes (its code runs). Options are checked as `kdiag bisect` checks them.
    Ctrl-C raises kdiag.versions.rounds.Stopped (a KeyboardInterrupt) whose `report` is the partial result.
    """
    from kdiag.datamodel.config import check_strategy_keys
    from kdiag.datamodel.versions import check_release, check_threshold
    from kdiag.versions.bisect import bisect as run_bisect

    good, bad = check_release("--good", good), check_release("--bad", bad)
    threshold = check_threshold(threshold)
    check_strategy_keys([strategy])
    loaded_objects = None
    if custom_objects is not None:
        from kdiag.engine.custom_objects import load_custom_objects

        loaded_objects = load_custom_objects(custom_objects)
    config = RunConfig(model=model_or_path, example=example, inputs=inputs, batch_size=batch_size,
                       input_shapes=dict(input_shapes or {}), strategies=(strategy,), budget_s=budget_s,
                       min_calls=min_calls, unsafe=unsafe, custom_objects=loaded_objects,
                       custom_objects_file=custom_objects, profile=False, time_limit_s=time_limit_s, sweeps=False,
                       memory_loops=False, ops=False, command=command)
    config.check_child_model("kdiag bisect")
    return run_bisect(config, good, bad, strategy=strategy, threshold=threshold, progress=progress,
                      on_probe=on_probe or (lambda result, probe: None))


class _Steps:
    """Counts the run's steps and tells `progress` each one, with the time spent and left."""

    def __init__(self, progress: Optional[Progress], total: int, deadline: Optional[float], clock=time.perf_counter):
        self.progress = progress
        self.total = total
        self.deadline = deadline
        self.clock = clock
        self.started = clock()
        self.step = 0
        self.stage = ""

    def next(self, stage: str, detail: str) -> None:
        self.step += 1
        self.total = max(self.total, self.step)
        self.stage = stage
        self.update(detail)

    def update(self, detail: str) -> None:
        if self.progress is None:
            return
        now = self.clock()
        left = max(0.0, self.deadline - now) if self.deadline is not None else None
        self.progress(ProgressUpdate(self.step, self.total, self.stage, detail, now - self.started, left))

    def elapsed(self) -> float:
        return self.clock() - self.started

    def left(self) -> float:
        return math.inf if self.deadline is None else self.deadline - self.clock()


@dataclasses.dataclass
class _RunState:
    """What a run has found so far. Private and mutable while running; `report()` freezes it."""

    config: RunConfig
    loaded: LoadedModel
    inputs: ModelInputs
    started: str
    steps: _Steps
    results: List[StrategyResult] = dataclasses.field(default_factory=list)
    reference_name: Optional[str] = None  # whose outputs every strategy is checked against
    reference_outputs: Optional[Outputs] = None
    notes: List[str] = dataclasses.field(default_factory=list)
    profiles: List[ProfileResult] = dataclasses.field(default_factory=list)
    training_dependent_layers: List[str] = dataclasses.field(default_factory=list)
    training_true_max_abs_diff: Optional[float] = None
    time_notes: List[str] = dataclasses.field(default_factory=list)  # what the time limit cut, besides rows
    time_needed_s: float = 0.0  # a time limit under which nothing would have been cut (an estimate)
    data_size_sweep: Optional[DataSizeSweep] = None
    batch_size_sweep: Optional[BatchSizeSweep] = None
    memory_loops: Optional[MemoryLoops] = None
    op_breakdown: Optional[OpBreakdown] = None
    threads_effect: Optional[ThreadsEffect] = None

    def report(self, incomplete: bool = False) -> Report:
        from kdiag.analysis.diagnose import diagnose
        from kdiag.engine.environment import collect

        report = Report(
            settings=RunSettings(
                command=self.config.command,
                budget_s=self.config.budget_s,
                min_calls=self.config.min_calls,
                max_wall_s=self.config.wall_cap_s,
                batch_size=self.inputs.batch_size,
                timestamp=self.started,
                time_limit_s=self.config.time_limit_s,
                elapsed_s=self.steps.elapsed(),
                redact_paths=self.config.redact,
            ),
            environment=collect(),
            model=dataclasses.replace(
                model_info(self.loaded, self.inputs),
                training_dependent_layers=list(self.training_dependent_layers),
                training_true_max_abs_diff=self.training_true_max_abs_diff,
            ),
            strategies=list(self.results),
            profiles=list(self.profiles),
            notes=list(self.loaded.load_notes) + self.notes,
            incomplete=incomplete,
            data_size_sweep=self.data_size_sweep,
            batch_size_sweep=self.batch_size_sweep,
            memory_loops=self.memory_loops,
            op_breakdown=self.op_breakdown,
            threads_effect=self.threads_effect,
        )
        return dataclasses.replace(report, findings=diagnose(report))


def run(config: RunConfig, progress: Optional[Progress] = None, out_dir: Optional[Path] = None,
        work_dir: Optional[Path] = None) -> Report:
    """Carry out one validated RunConfig; see `inspect` for what each step does."""
    from kdiag.engine.keras_child import current_keras

    if config.tf_versions is not None:  # --tf: each release in its own environment (kdiag.versions)
        return _run_tf_versions(config, progress, out_dir)
    if config.keras not in (None, current_keras()):  # --keras both, or the Keras this process does not run
        return _run_keras_sides(config, progress, out_dir, work_dir)
    selected = [BY_KEY[k] for k in dict.fromkeys(config.strategies)] if config.strategies else list(STRATEGIES)
    deadline = time.perf_counter() + config.time_limit_s if config.time_limit_s else None
    planned_profiles = (len(DEFAULT_PROFILES) + len(config.profile_strategies)) if config.profile else 0
    beyond = int(config.sweeps or config.memory_loops or config.ops)
    steps = _Steps(progress, 2 + len(selected) + 1 + int(config.cpp) + planned_profiles + beyond + 2, deadline)
    steps.next("load", f"example {config.example}" if config.example else str(config.model))
    loaded = _load(config)
    steps.next("inputs", "building the input batch")
    state = _RunState(config, loaded, _make_inputs(loaded, config),
                      started=datetime.datetime.now().astimezone().isoformat(timespec="seconds"), steps=steps)
    if config.save_inputs:  # --save-inputs: the batch, for another run to time the same data (--tf does)
        from kdiag.engine.inputs import save_inputs

        save_inputs(state.inputs, config.save_inputs)
    # Timing gets the time left but what the later steps need: the report always, and roughly
    # what loading took again for each fresh profiled instance (a compute-bound model's profile
    # then still gets its calls).
    reserve = REPORT_RESERVE_S + (loaded.load_time_s * planned_profiles if config.profile else 0.0)
    settings = MeasureSettings(budget_s=config.budget_s, min_calls=config.min_calls, max_wall_s=config.wall_cap_s,
                               deadline=None if deadline is None else deadline - reserve)
    from kdiag.engine.limits import PROFILE_KEY, memory_plan_for

    # Strategies whose copies of the weights and inputs would not fit get a "not measured" row.
    memory = memory_plan_for(loaded, state.inputs.arrays, [s.identity.key for s in selected], profile=config.profile)
    if PROFILE_KEY in memory.skip:
        state.notes.append(memory.skip[PROFILE_KEY])
    with _scratch_dir(work_dir) as scratch:
        ctx = StrategyContext(loaded, state.inputs, Path(scratch))
        if not time_strategies(ctx, selected, settings, state, steps, skip=memory.skip):
            state.notes.insert(0, f"Interrupted by {stop_cause()} while timing: the figures are those measured "
                                  "before the interruption; the report holds no profiles.")
            raise RunInterrupted(state.report(incomplete=True))
        try:
            if config.cpp:
                steps.next("cpp", "the C++ floor")
                state.results.append(run_cpp_floor(ctx, settings, state, steps))
            if config.profile and PROFILE_KEY not in memory.skip:
                # Without out_dir the .prof files live and die with the scratch folder: the Report
                # then names no file, rather than files that are gone.
                profile_dir = Path(out_dir) if out_dir is not None else Path(scratch) / "profiles"
                scenarios = profile_scenarios(state.results, config.profile_strategies)
                steps.total -= planned_profiles - len(scenarios)
                profiles = run_profiles(ctx, state, scenarios, profile_dir, steps)
                state.profiles = profiles if out_dir is not None else [
                    dataclasses.replace(p, prof_path="", cold_prof_path="") for p in profiles]
            if config.sweeps or config.memory_loops or config.ops:
                beyond_one_batch(ctx, config, state, steps)
            steps.next("training check", "model(x, training=True) against predict")
            layers, stray = training_mode_check(ctx, state.reference_outputs)
            state.training_dependent_layers, state.training_true_max_abs_diff = layers, stray
            steps.next("report", "findings")
            note = _time_limit_note(config, state) if config.time_limit_s else ""
            if note:
                state.notes.insert(0, note)
            report = state.report()
            if report.settings.redact_paths and out_dir is not None:
                write_redacted_profiles(report)
            return report
        # What was timed is kept, however late the stop or the failure (the report itself included).
        except KeyboardInterrupt:
            state.notes.insert(0, f"Interrupted by {stop_cause()} after timing (C++ floor, profiling, the steps "
                                  "beyond one batch or the report): the figures are those measured before the "
                                  "interruption; the report holds no profiles.")
            state.profiles = []
            raise RunInterrupted(state.report(incomplete=True)) from None
        except Exception as exc:
            state.notes.insert(0, f"Stopped after timing by {type(exc).__name__}: {first_line(exc)}; the figures "
                                  "are those measured before it; the report holds no profiles.")
            state.profiles = []
            raise RunFailed(state.report(incomplete=True)) from exc


def _time_limit_note(config: RunConfig, state: _RunState) -> str:
    """What the time limit left out, and the limit that would let it all run."""
    left_out = [r.name for r in state.results if r.reason.startswith("not measured: would take")]
    short = [r.name for r in state.results if r.available and r.measurement.stopped_early]
    parts = [f"Time limit {config.time_limit_s:g} s (--time-limit; 0 for none); this run took "
             f"{state.steps.elapsed():.0f} s."]
    if left_out:
        parts.append(f"Not started, for want of time: {', '.join(left_out)}.")
    if short:
        parts.append(f"Fewer than {config.min_calls} timed calls: {', '.join(short)}.")
    parts += state.time_notes
    if len(parts) == 1:
        return ""  # nothing was left out: the limit is in the report's settings
    if state.time_needed_s:
        parts.append(f"Rerun with --time-limit {math.ceil(state.time_needed_s / 10) * 10:.0f} to measure it all.")
    return " ".join(parts)


def _run_tf_versions(config: RunConfig, progress: Optional[Progress], out_dir: Optional[Path]) -> Report:
    """--tf: the releases in turns (kdiag.versions.rounds); Ctrl-C keeps the runs that finished."""
    from kdiag.versions.rounds import Stopped, compare_versions

    try:
        return compare_versions(config, progress=progress, out_dir=out_dir)
    except Stopped as stopped:
        if stopped.report is None:
            raise KeyboardInterrupt() from None  # nothing was measured: nothing to keep
        raise RunInterrupted(stopped.report) from None


def _run_keras_sides(config: RunConfig, progress: Optional[Progress], out_dir: Optional[Path],
                     work_dir: Optional[Path]) -> Report:
    """--keras 2|3|both: this process's Keras here, first (a refusal comes once, from it), the other
    in a child process whose run folder is `keras-N/` inside this run's. Under both, the Keras 3 run
    is the Report and the Keras 2 run its `other_keras`; a Keras that cannot measure the model after
    the other did is a note, not a failure."""
    from kdiag.analysis.diagnose import diagnose
    from kdiag.engine import keras_child

    keras_child.require_tf_keras(config.keras)
    plan = keras_child.sides(config)
    steps = _Steps(progress, 1, None)

    def say(stage: str, detail: str) -> None:  # the child's own steps, as details of this one
        steps.update(f"{stage}: {detail}")

    folder = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="kdiag-keras-"))
    if len(plan) == 1:  # --keras N, N not this process's
        steps.next(f"Keras {plan[0]}", "in a child process")
        measured = keras_child.run_child(config, plan[0], folder / f"keras-{plan[0]}", say)
        return dataclasses.replace(measured, settings=dataclasses.replace(measured.settings, command=config.command))
    here, there = plan
    report = run(dataclasses.replace(config, keras=None), progress, out_dir, work_dir)
    # The other side gets what is left of the limit, and never less than a short run needs.
    left = None if not config.time_limit_s else max(20.0, config.time_limit_s - (report.settings.elapsed_s or 0.0))
    steps.next(f"Keras {there}", "in a child process")
    try:
        other = keras_child.run_child(config, there, folder / f"keras-{there}", say, left)
    except KdiagError as exc:
        note = f"--keras both: {exc.message}; this report holds the {keras_child.LABELS[here]} run only."
        return dataclasses.replace(report, notes=[note] + report.notes)
    except KeyboardInterrupt:
        note = (f"Interrupted by {stop_cause()} while measuring under {keras_child.LABELS[there]}: this report "
                f"holds the {keras_child.LABELS[here]} run only.")
        raise RunInterrupted(dataclasses.replace(report, incomplete=True, notes=[note] + report.notes)) from None
    keras3, keras2 = (report, other) if here == "3" else (other, report)
    both = dataclasses.replace(keras3, other_keras=keras2,
                               settings=dataclasses.replace(keras3.settings, command=config.command))
    return dataclasses.replace(both, findings=diagnose(both))


def time_strategies(ctx: StrategyContext, selected: List[Strategy], settings: MeasureSettings,
                    state: _RunState, steps: _Steps, skip: Optional[Dict[str, str]] = None) -> bool:
    """Prepare and time every selected strategy, then check their outputs against the reference.

    Adds a StrategyResult per strategy to `state` and sets its reference outputs. Returns
    False when Ctrl-C cut the timing short (what was measured is kept). `skip`: strategy
    key -> why it is not measured (kdiag.engine.limits.MemoryPlan.skip).
    """
    prepared: Dict[str, Callable] = {}
    unavailable: Dict[str, str] = {}
    notes: Dict[str, List[str]] = {}
    for strategy in selected:
        if settings.deadline is not None and time.perf_counter() > settings.deadline and strategy.name != PREDICT.name:
            unavailable[strategy.name] = ("not measured: the time limit was reached while preparing the strategies "
                                          "before it; rerun with a larger --time-limit")
            steps.total -= 1
            continue
        if strategy.needs_keras and not ctx.loaded.is_keras:
            unavailable[strategy.name] = "not applicable: needs a Keras model; this is a plain SavedModel"
            continue
        if skip and strategy.identity.key in skip:
            unavailable[strategy.name] = skip[strategy.identity.key]
            continue
        steps.next("prepare", strategy.name + _PREPARE_DETAIL.get(strategy.identity.key, ""))
        with warnings.catch_warnings(record=True) as caught, native_stderr_captured():
            warnings.simplefilter("always")
            try:
                prepared[strategy.name] = strategy.prepare(ctx)
            except NotApplicable as exc:
                unavailable[strategy.name] = f"not available: {exc}"
            except KdiagError as exc:  # one strategy that cannot run never sinks the run
                unavailable[strategy.name] = f"failed to prepare: {exc.message}"
            except Exception as exc:
                unavailable[strategy.name] = f"failed to prepare: {type(exc).__name__}: {first_line(exc)}"
        notes[strategy.name] = _unique_warnings(caught)
    users_path = PREDICT.name if ctx.loaded.is_keras else REFERENCE_ORDER[1]
    if users_path in unavailable:  # fail before spending time on the others
        _refuse_unmeasurable(users_path, unavailable[users_path])

    from kdiag.engine.profiling import capture_tf_warnings

    completed = True
    with capture_tf_warnings() as tf_warnings:  # retracing warnings go into the report, not the terminal
        try:
            steps.next("measure", f"{len(prepared)} strategies, interleaved")
            timed = measure_interleaved(prepared, settings,
                                        on_progress=lambda name, what: steps.update(f"{name}: {what}"),
                                        around_first_call=native_stderr_captured)
        except MeasurementInterrupted as stop:
            timed, completed = stop.partial, False
    # TensorFlow names the function, not the strategy: its warnings belong to the report as a whole.
    state.notes += [f"TensorFlow warned while timing: {warning}" for warning in tf_warnings]
    state.reference_name, state.reference_outputs = _reference(timed)
    for strategy in selected:
        state.results.append(_result(strategy, unavailable, timed, notes.get(strategy.name, []), completed,
                                     state.reference_name, state.reference_outputs))
    if completed:
        _require_the_users_path(ctx, state.results)
    return completed


def _require_the_users_path(ctx: StrategyContext, results: List[StrategyResult]) -> None:
    """Exit 2 is for a run that cannot measure the user's own path at all: predict, or for a
    plain SavedModel its serving signature. Every other failure is a row of the report."""
    name = PREDICT.name if ctx.loaded.is_keras else REFERENCE_ORDER[1]
    result = next((r for r in results if r.name == name), None)
    if result is not None and not result.available:
        _refuse_unmeasurable(name, result.reason)


def _refuse_unmeasurable(name: str, reason: str) -> None:
    fix = ("rerun with a larger --time-limit" if "time limit" in reason else
           "check the model and its inputs (--inputs, --input-shape); --debug shows the traceback")
    raise KdiagError(f"{name} could not be measured on this model ({reason})", fix)


def _result(strategy: Strategy, unavailable: Dict[str, str], timed: Dict[str, Timed], notes: List[str],
            completed: bool, reference_name: Optional[str], reference: Optional[Outputs]) -> StrategyResult:
    identity = strategy.identity
    if strategy.name in unavailable:
        return StrategyResult(identity.name, identity.snippet, False, unavailable[strategy.name], notes=notes)
    outcome = timed[strategy.name]
    if not completed and outcome.measurement.count == 0:
        return StrategyResult(identity.name, identity.snippet, False, f"not measured: interrupted ({stop_cause()})",
                              notes=notes)
    if outcome.error:
        return StrategyResult(identity.name, identity.snippet, False, f"failed when called: {outcome.error}",
                              notes=notes)
    if outcome.skipped:
        return StrategyResult(identity.name, identity.snippet, False, outcome.skipped + "; rerun with a larger "
                              "--time-limit", notes=notes)
    if outcome.measurement.count == 0:
        return StrategyResult(identity.name, identity.snippet, False, "not measured: the time limit was reached "
                              "after its first call, before any timed call; rerun with a larger --time-limit",
                              notes=notes)
    outputs = check.compare(reference_name, reference, outcome.first_output) if reference is not None else None
    return StrategyResult(identity.name, identity.snippet, True, measurement=outcome.measurement, outputs=outputs,
                          notes=notes)


def run_cpp_floor(ctx: StrategyContext, settings: MeasureSettings, state: _RunState,
                  steps: _Steps) -> StrategyResult:
    """The SavedModel run from C++ through the TF C API, checked against the same reference.

    It runs in its own process after the Python strategies, so it is not interleaved
    with them; the report says so.
    """
    from kdiag.engine import cpp
    from kdiag.engine.strategies import export_saved_model

    note = ["measured in its own process after the Python strategies (not interleaved with them)"]
    reason = cpp.unavailable_reason()
    if reason is not None:
        return StrategyResult(CPP.name, CPP.snippet, False, f"not available: {reason}")
    # Its own process loads TensorFlow and the SavedModel (about 5-10 s here), then times for the budget.
    needs = 10.0 + settings.budget_s + REPORT_RESERVE_S
    if steps.left() < needs:
        state.time_needed_s = max(state.time_needed_s, steps.elapsed() + needs)
        return StrategyResult(CPP.name, CPP.snippet, False, f"not measured: would take ~{needs:.0f} s, and "
                              f"{max(0.0, steps.left()):.0f} s of the time limit were left; rerun with a larger "
                              "--time-limit")
    reference_name, reference = state.reference_name, state.reference_outputs
    try:
        steps.update("building cpp_baseline/ (cached per TensorFlow version)")
        binary = cpp.build()
        directory = export_saved_model(ctx)
        steps.update(f"running {binary.name}")
        run_ = cpp.run_baseline(directory, ctx.inputs.arrays, settings, work_dir=ctx.work_dir / "cpp", binary=binary)
    except KdiagError as exc:
        return StrategyResult(CPP.name, CPP.snippet, False, f"not available: {exc.message}", notes=note)
    outputs = None
    if reference is not None:
        outputs = check.compare(reference_name, reference, to_host(run_.outputs))
    return StrategyResult(CPP.name, CPP.snippet, True, measurement=run_.measurement, outputs=outputs, notes=note)


def profile_scenarios(results: List[StrategyResult], extra_keys: Sequence[str]) -> List[Strategy]:
    """predict before and after compile(), then the extra ones asked for; only those that ran."""
    wanted = [BY_NAME[name] for name in DEFAULT_PROFILES] + [BY_KEY[k] for k in extra_keys]
    available = {r.name for r in results if r.available}
    return [s for s in dict.fromkeys(wanted) if s.name in available]


def run_profiles(ctx: StrategyContext, state: _RunState, scenarios: List[Strategy], out_dir: Path,
                 steps: _Steps) -> List[ProfileResult]:
    """A cProfile pass per scenario, each on a fresh model instance so its first call is cold.

    Under a time limit each pass gets an equal share of what is left: fewer warm calls (at least
    one), or none and a note saying what it would have taken.
    """
    from kdiag.engine.profiling import file_stem, profile_scenario
    from kdiag.engine.tf import legacy_keras_requested

    wanted_calls = state.config.profile_calls
    results = {r.name: r for r in state.results if r.available}
    profiles = []
    for index, strategy in enumerate(scenarios):
        result = results[strategy.name]
        median = result.median_s
        # A fresh instance (about what loading took), its cold call and the warm calls, under cProfile.
        start_cost = ctx.loaded.load_time_s + PROFILE_INFLATION * result.measurement.first_call_s
        share = (steps.left() - REPORT_RESERVE_S) / (len(scenarios) - index)
        calls = wanted_calls
        if math.isfinite(share) and math.isfinite(start_cost):
            calls = min(wanted_calls, int((share - start_cost) // (PROFILE_INFLATION * median)))
        if calls < 1:
            needs = start_cost + PROFILE_INFLATION * median * wanted_calls
            state.time_needed_s = max(state.time_needed_s, steps.elapsed() + needs * (len(scenarios) - index)
                                      + REPORT_RESERVE_S)
            state.time_notes.append(f"Not profiled: {strategy.name} (would take ~{needs:.0f} s).")
            steps.total -= 1
            continue
        if calls < wanted_calls:
            needs = start_cost + PROFILE_INFLATION * median * wanted_calls
            state.time_needed_s = max(state.time_needed_s, steps.elapsed() + needs * (len(scenarios) - index)
                                      + REPORT_RESERVE_S)
            state.time_notes.append(f"{strategy.name} was profiled over {calls} warm calls instead of "
                                    f"{wanted_calls}.")
        steps.next("profile", f"{strategy.name}: 1 cold + {calls} warm calls under cProfile")
        stem = file_stem(strategy.name)

        def make_call(strategy=strategy, stem=stem):
            loaded = ctx.loaded
            if loaded.is_keras and loaded.uncompiled_factory is not None:
                loaded = dataclasses.replace(loaded, model=loaded.uncompiled_factory())
            fresh = StrategyContext(loaded, ctx.inputs, ctx.work_dir / f"profile-{stem}")
            return strategy.prepare(fresh)

        with native_stderr_captured():
            profiles.append(profile_scenario(strategy.name, make_call, out_dir, calls, median,
                                             legacy_keras_requested(), stem))
    return profiles


def write_redacted_profiles(report: Report) -> None:
    """A copy of each .prof file with local paths redacted, in `redacted/` beside it: the files
    report.md tells users to attach to an issue."""
    from kdiag.datamodel.redaction import Redactor, redacted_prof_path
    from kdiag.engine.profiling import write_redacted

    redactor = Redactor.for_report(report)
    for profile in report.profiles:
        for path in (profile.prof_path, profile.cold_prof_path):
            if path:
                write_redacted(Path(path), Path(redacted_prof_path(path)), redactor.redact)


# How the slow steps of preparing look while they run (the display keeps ticking meanwhile).
_PREPARE_DETAIL = {"tflite": " (exporting and converting)", "xla": " (compiling with XLA)",
                   "savedmodel": " (exporting)", "predict-compiled": " (loading a compiled instance)"}


def beyond_one_batch(ctx: StrategyContext, config: RunConfig, state: _RunState, steps: _Steps) -> None:
    """The steps beyond one batch, each within its own budget: data size, batch size, memory over
    many calls, and what the best path's execution is made of.

    Under a time limit, each budget is also capped by its share of what is left (less the
    report's reserve); a step whose share is gone is left out, and the report says so.
    """
    from kdiag.engine import beyond

    steps.next("beyond one batch", "sweeps, memory over many calls, op breakdown")

    def say(stage: str, detail: str) -> None:
        steps.update(f"{stage}: {detail}")

    best = best_direct_path(state.results)
    wanted = {"sweeps": (DATA_SIZE_SWEEP_S + BATCH_SIZE_SWEEP_S) if config.sweeps else 0.0,
              "memory": MEMORY_LOOPS_S if config.memory_loops else 0.0,
              "ops": (OP_TRACE_S + THREADS_S) if config.ops else 0.0}
    total = sum(wanted.values()) * config.budget_s  # the budgets above are per second of --budget
    left = steps.left() - REPORT_RESERVE_S
    scale = config.budget_s * min(1.0, max(0.0, left) / total) if total and math.isfinite(left) else config.budget_s
    if scale < config.budget_s:
        state.time_needed_s = max(state.time_needed_s, steps.elapsed() + total + REPORT_RESERVE_S)
        state.time_notes.append(f"The steps beyond one batch ran on {scale / config.budget_s:.0%} of their "
                                "budgets.")
    if scale <= 0:
        state.time_notes[-1] = "The steps beyond one batch were left out (no time left)."
        return
    if config.sweeps:
        state.data_size_sweep = beyond.data_size_step(ctx, state.results, best, config.samples,
                                                      budget_s=DATA_SIZE_SWEEP_S * scale, say=say)
        state.batch_size_sweep = beyond.batch_size_step(ctx, best, budget_s=BATCH_SIZE_SWEEP_S * scale, say=say)
    if config.memory_loops:
        state.memory_loops = beyond.memory_step(ctx, state.results, best, budget_s=MEMORY_LOOPS_S * scale, say=say)
    if config.ops:
        state.op_breakdown = beyond.op_breakdown_step(ctx, best, budget_s=OP_TRACE_S * scale, say=say)
        state.threads_effect = beyond.threads_step(ctx, best, state.op_breakdown, budget_s=THREADS_S * scale,
                                                   say=say)


def best_direct_path(results: List[StrategyResult]) -> Optional[StrategyResult]:
    """The fastest direct path (predict_on_batch, tf.function, the concrete function) measured with
    matching outputs: the graph predict runs, called without predict's pipeline. XLA and the
    SavedModel are other runtimes: their differences are not predict's overhead."""
    from kdiag import views
    from kdiag.datamodel.strategies import DIRECT_PATHS

    usable = [r for r in results if r.name in DIRECT_PATHS and views.median(r) is not None
              and views.outputs_match(r)]
    return min(usable, key=views.median) if usable else None


def training_mode_check(ctx: StrategyContext, reference: Optional[Outputs]):
    """Layers that behave differently when training, and how far model(x, training=True) strays.

    Runs last: training=True updates BatchNormalization's moving statistics.
    """
    if not ctx.loaded.is_keras:
        return [], None
    layers = [f"{layer.name} ({type(layer).__name__})" for layer in _all_layers(ctx.loaded.model)
              if type(layer).__name__ in TRAINING_DEPENDENT]
    if not layers or reference is None:
        return layers, None
    try:
        stray = check.compare(PREDICT.name, reference, to_host(ctx.loaded.model(ctx.keras_inputs(), training=True)))
    except Exception:  # a model that cannot run in training mode has no such risk to measure
        return layers, None
    return layers, stray.max_abs_diff


def _all_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def _reference(timed: Dict[str, Timed]):
    for name in REFERENCE_ORDER:
        outcome = timed.get(name)
        if outcome is not None and not outcome.error:
            return name, outcome.first_output
    return None, None


def _unique_warnings(caught) -> List[str]:
    seen = []
    for item in caught:
        text = "warning: " + " ".join(str(item.message).split())[:300]
        if text not in seen:
            seen.append(text)
    return seen


def _load(config: RunConfig) -> LoadedModel:
    if config.example is not None:
        return load_example(config.example)
    if isinstance(config.model, (str, Path)):
        return load_path(config.model, unsafe=config.unsafe,
                         custom_objects=dict(config.custom_objects) if config.custom_objects else None)
    return from_model(config.model)


def _make_inputs(loaded: LoadedModel, config: RunConfig) -> ModelInputs:
    specs = loaded.input_specs
    if config.inputs is not None:
        if isinstance(config.inputs, (str, Path)):
            return load_user_inputs(Path(config.inputs), specs)
        arrays = config.inputs if isinstance(config.inputs, dict) else {specs[0].name: config.inputs}
        checked = {s.name: check_user_array(s, arrays[s.name]) for s in specs}
        return ModelInputs(checked, {n: "user data" for n in checked})
    batch = _batch_size(loaded, config.batch_size)
    from kdiag.engine.limits import check_input_memory, estimate_output_bytes

    shapes = resolve_shapes(specs, batch, config.input_shapes)
    check_input_memory(specs, shapes, estimate_output_bytes(loaded, batch))
    return synthetic_inputs(specs, shapes)


def _batch_size(loaded: LoadedModel, requested: Optional[int]) -> int:
    fixed = {s.shape[0] for s in loaded.input_specs if s.shape and s.shape[0] is not None}
    if fixed:
        size = fixed.pop()
        if requested is not None and requested != size:
            raise KdiagError(
                f"the model's batch size is fixed at {size}, so --batch-size {requested} cannot be used",
                f"drop --batch-size or pass --batch-size {size}",
            )
        return size
    if requested is not None:
        return requested
    return loaded.default_batch_size or 1


def model_info(loaded: LoadedModel, inputs: ModelInputs) -> ModelInfo:
    return ModelInfo(
        name=loaded.name,
        source=loaded.source,
        format=loaded.format,
        parameters=loaded.parameter_count(),
        inputs=[
            InputInfo(s.name, list(inputs.arrays[s.name].shape), s.dtype, inputs.descriptions[s.name])
            for s in loaded.input_specs
        ],
        batch_size=inputs.batch_size,
        load_time_s=loaded.load_time_s,
        compile_config=loaded.compile_config,
        keras_model=loaded.is_keras,
        directory=_model_directory(loaded),
        keras2_signs=list(loaded.keras2_signs),
    )


def _model_directory(loaded: LoadedModel) -> str:
    """The absolute folder holding the model file or SavedModel; "" for an example or an object.

    Absolute but not resolved: a symlinked folder stays as the user typed it, which is how it
    appears in the command that report.md shows.
    """
    if loaded.format in ("example", "in-memory"):
        return ""
    return str(Path(loaded.source).absolute().parent)


class _scratch_dir:
    """A scratch directory: the caller's, or a temporary one removed afterwards."""

    def __init__(self, given: Optional[Path]):
        self.given = given
        self.tmp = None

    def __enter__(self):
        if self.given is not None:
            Path(self.given).mkdir(parents=True, exist_ok=True)
            return self.given
        self.tmp = tempfile.TemporaryDirectory(prefix="kdiag-")
        return self.tmp.name

    def __exit__(self, *exc):
        if self.tmp is not None:
            self.tmp.cleanup()
        return False
