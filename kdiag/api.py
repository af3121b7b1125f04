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
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from kdiag.datamodel.beyond import BatchSizeSweep, DataSizeSweep, MemoryLoops, OpBreakdown, ThreadsEffect
from kdiag.datamodel.config import RunConfig
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

# Progress callback: (stage, detail), e.g. ("measure", "predict: 12 calls").
Progress = Callable[[str, str], None]

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
            profile_strategies: Sequence[str] = (), profile_calls: int = 10, out_dir: Optional[Path] = None,
            progress: Optional[Progress] = None, samples: Optional[Sequence[int]] = None, sweeps: bool = True,
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
    out_dir: where the .prof files go (a new temporary folder, kept, when None).
    progress: called with (stage, detail) as the run goes.
    samples, sweeps: the data-size sweep's sample counts (None: automatic), and whether to run the
        data-size and batch-size sweeps at all; memory_loops: the sustained loops that watch RSS;
        ops: the op breakdown (needs XProf: pip install kdiag[ops]) and the threads comparison.

    Options are checked exactly as the CLI checks them: a bad value raises KdiagError.
    """
    config = RunConfig(
        model=model_or_path, example=example, inputs=inputs, batch_size=batch_size,
        input_shapes=dict(input_shapes or {}), strategies=None if strategies is None else tuple(strategies),
        budget_s=budget_s, min_calls=min_calls, max_wall_s=max_wall_s, unsafe=unsafe,
        custom_objects=custom_objects, cpp=cpp, profile=profile, profile_strategies=tuple(profile_strategies),
        profile_calls=profile_calls, samples=None if samples is None else tuple(samples), sweeps=sweeps,
        memory_loops=memory_loops, ops=ops,
    )
    return run(config, progress=progress, out_dir=out_dir)


@dataclasses.dataclass
class _RunState:
    """What a run has found so far. Private and mutable while running; `report()` freezes it."""

    config: RunConfig
    loaded: LoadedModel
    inputs: ModelInputs
    started: str
    results: List[StrategyResult] = dataclasses.field(default_factory=list)
    reference_name: Optional[str] = None  # whose outputs every strategy is checked against
    reference_outputs: Optional[Outputs] = None
    notes: List[str] = dataclasses.field(default_factory=list)
    profiles: List[ProfileResult] = dataclasses.field(default_factory=list)
    training_dependent_layers: List[str] = dataclasses.field(default_factory=list)
    training_true_max_abs_diff: Optional[float] = None
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
    say = progress or (lambda stage, detail: None)
    selected = [BY_KEY[k] for k in dict.fromkeys(config.strategies)] if config.strategies else list(STRATEGIES)
    say("load", f"example {config.example}" if config.example else str(config.model))
    loaded = _load(config)
    state = _RunState(config, loaded, _make_inputs(loaded, config),
                      started=datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
    settings = MeasureSettings(budget_s=config.budget_s, min_calls=config.min_calls, max_wall_s=config.wall_cap_s)
    from kdiag.engine.limits import PROFILE_KEY, memory_plan_for

    # Strategies whose copies of the weights and inputs would not fit get a "not measured" row.
    memory = memory_plan_for(loaded, state.inputs.arrays, [s.identity.key for s in selected], profile=config.profile)
    if PROFILE_KEY in memory.skip:
        state.notes.append(memory.skip[PROFILE_KEY])
    with _scratch_dir(work_dir) as scratch:
        ctx = StrategyContext(loaded, state.inputs, Path(scratch))
        if not time_strategies(ctx, selected, settings, state, say, skip=memory.skip):
            state.notes.insert(0, f"Interrupted by {stop_cause()} while timing: the figures are those measured "
                                  "before the interruption; the report holds no profiles.")
            raise RunInterrupted(state.report(incomplete=True))
        try:
            if config.cpp:
                state.results.append(run_cpp_floor(ctx, settings, state.reference_name, state.reference_outputs, say))
            if config.profile and PROFILE_KEY not in memory.skip:
                profile_dir = Path(out_dir) if out_dir is not None else Path(
                    tempfile.mkdtemp(prefix="kdiag-profiles-"))
                scenarios = profile_scenarios(state.results, config.profile_strategies)
                state.profiles = run_profiles(ctx, state.results, scenarios, profile_dir, config.profile_calls, say)
            beyond_one_batch(ctx, config, state, say)
            layers, stray = training_mode_check(ctx, state.reference_outputs)
            state.training_dependent_layers, state.training_true_max_abs_diff = layers, stray
            return state.report()
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


def time_strategies(ctx: StrategyContext, selected: List[Strategy], settings: MeasureSettings,
                    state: _RunState, say: Progress, skip: Optional[Dict[str, str]] = None) -> bool:
    """Prepare and time every selected strategy, then check their outputs against the reference.

    Adds a StrategyResult per strategy to `state` and sets its reference outputs. Returns
    False when Ctrl-C cut the timing short (what was measured is kept). `skip`: strategy
    key -> why it is not measured (kdiag.engine.limits.MemoryPlan.skip).
    """
    prepared: Dict[str, Callable] = {}
    unavailable: Dict[str, str] = {}
    notes: Dict[str, List[str]] = {}
    for strategy in selected:
        if strategy.needs_keras and not ctx.loaded.is_keras:
            unavailable[strategy.name] = "not applicable: needs a Keras model; this is a plain SavedModel"
            continue
        if skip and strategy.identity.key in skip:
            unavailable[strategy.name] = skip[strategy.identity.key]
            continue
        say("prepare", strategy.name)
        with warnings.catch_warnings(record=True) as caught, native_stderr_captured():
            warnings.simplefilter("always")
            try:
                prepared[strategy.name] = strategy.prepare(ctx)
            except NotApplicable as exc:
                unavailable[strategy.name] = f"not available: {exc}"
            except KdiagError:
                raise
            except Exception as exc:
                unavailable[strategy.name] = f"failed to prepare: {type(exc).__name__}: {first_line(exc)}"
        notes[strategy.name] = _unique_warnings(caught)

    from kdiag.engine.profiling import capture_tf_warnings

    completed = True
    with capture_tf_warnings() as tf_warnings:  # retracing warnings go into the report, not the terminal
        try:
            timed = measure_interleaved(prepared, settings,
                                        on_progress=lambda name, what: say("measure", f"{name}: {what}"),
                                        around_first_call=native_stderr_captured)
        except MeasurementInterrupted as stop:
            timed, completed = stop.partial, False
    # TensorFlow names the function, not the strategy: its warnings belong to the report as a whole.
    state.notes += [f"TensorFlow warned while timing: {warning}" for warning in tf_warnings]
    state.reference_name, state.reference_outputs = _reference(timed)
    for strategy in selected:
        state.results.append(_result(strategy, unavailable, timed, notes.get(strategy.name, []), completed,
                                     state.reference_name, state.reference_outputs))
    return completed


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
    outputs = check.compare(reference_name, reference, outcome.first_output) if reference is not None else None
    return StrategyResult(identity.name, identity.snippet, True, measurement=outcome.measurement, outputs=outputs,
                          notes=notes)


def run_cpp_floor(ctx: StrategyContext, settings: MeasureSettings, reference_name: Optional[str],
                  reference: Optional[Outputs], say: Progress) -> StrategyResult:
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
    try:
        say("cpp", "building cpp_baseline/ (cached per TensorFlow version)")
        binary = cpp.build()
        directory = export_saved_model(ctx)
        say("cpp", f"running {binary.name}")
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


def run_profiles(ctx: StrategyContext, results: List[StrategyResult], scenarios: List[Strategy],
                 out_dir: Path, warm_calls: int, say: Progress) -> List[ProfileResult]:
    """A cProfile pass per scenario, each on a fresh model instance so its first call is cold."""
    from kdiag.engine.profiling import file_stem, profile_scenario
    from kdiag.engine.tf import legacy_keras_requested

    medians = {r.name: r.median_s for r in results if r.available}
    profiles = []
    for strategy in scenarios:
        say("profile", f"{strategy.name}: 1 cold + {warm_calls} warm calls under cProfile")
        stem = file_stem(strategy.name)

        def make_call(strategy=strategy, stem=stem):
            loaded = ctx.loaded
            if loaded.is_keras and loaded.uncompiled_factory is not None:
                loaded = dataclasses.replace(loaded, model=loaded.uncompiled_factory())
            fresh = StrategyContext(loaded, ctx.inputs, ctx.work_dir / f"profile-{stem}")
            return strategy.prepare(fresh)

        with native_stderr_captured():
            profiles.append(profile_scenario(strategy.name, make_call, out_dir, warm_calls,
                                             medians.get(strategy.name), legacy_keras_requested(), stem))
    return profiles


def beyond_one_batch(ctx: StrategyContext, config: RunConfig, state: _RunState, say: Progress) -> None:
    """The steps beyond one batch, each within its own budget: data size, batch size, memory over
    many calls, and what the best path's execution is made of."""
    from kdiag.engine import beyond

    best = best_direct_path(state.results)
    scale = config.budget_s  # the budgets above are per second of --budget
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
    )


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
