"""The Python API; the CLI is a thin layer over `inspect`."""

from __future__ import annotations

import dataclasses
import datetime
import tempfile
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from kdiag import check
from kdiag.errors import KdiagError, NotApplicable, first_line
from kdiag.inputs import ModelInputs, load_user_inputs, resolve_shapes, synthetic_inputs, check_user_array
from kdiag.load import LoadedModel, from_model, load_example, load_path
from kdiag.measure import MeasureSettings, MeasurementInterrupted, measure_interleaved
from kdiag.report import InputInfo, ModelInfo, Report, RunSettings, StrategyResult
from kdiag.tf import native_stderr_captured
from kdiag.profiling import ProfileResult
from kdiag.strategies import BY_KEY, BY_NAME, PREDICT, PREDICT_COMPILED, STRATEGIES, Strategy, StrategyContext

# Reference for the outputs check, in order of preference.
REFERENCE_ORDER = (PREDICT, "SavedModel serve")

# Progress callback: (stage, detail), e.g. ("measure", "predict: 12 calls").
Progress = Callable[[str, str], None]


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during timing. `report` (marked incomplete) holds what was measured."""

    def __init__(self, results: List[StrategyResult]):
        super().__init__("interrupted")
        self.results = results
        self.report: Optional[Report] = None


@dataclasses.dataclass(frozen=True)
class InspectOptions:
    batch_size: Optional[int] = None
    input_shapes: Dict[str, tuple] = dataclasses.field(default_factory=dict)
    strategies: Optional[Sequence[str]] = None  # keys; None means all
    budget_s: float = 1.0
    min_calls: int = 5
    max_wall_s: Optional[float] = None  # default: 6x the budget
    unsafe: bool = False
    custom_objects: Optional[dict] = None
    cpp: bool = False  # also time the C++ floor (cpp_baseline/, TF C API)
    profile: bool = True  # the cProfile pass (predict before and after compile, plus `profile_strategies`)
    profile_strategies: Sequence[str] = ()  # extra strategy keys to profile
    profile_calls: int = 10  # warm calls per profile
    command: str = ""


def inspect(model_or_path=None, inputs=None, *, example: Optional[str] = None,
            progress: Optional[Progress] = None, work_dir: Optional[Path] = None,
            out_dir: Optional[Path] = None, **options) -> Report:
    """Load the model, build inputs, time every strategy, check outputs: a Report.

    `model_or_path`: a Keras model, or a path to .keras / .h5 / a SavedModel directory.
    `example`: the name of a built-in example instead. `inputs`: a NumPy array, a dict of
    arrays by input name, or a path to .npy/.npz; synthetic inputs otherwise.
    `out_dir`: where the `.prof` files go (a new temporary folder, kept, when None).
    Other options are the fields of `InspectOptions`.
    """
    opts = InspectOptions(**options)
    say = progress or (lambda stage, detail: None)
    selected = select_strategies(opts.strategies)
    say("load", str(model_or_path if example is None else f"example {example}"))
    loaded = _load(model_or_path, example, opts)
    model_inputs = _make_inputs(loaded, inputs, opts)
    from kdiag.limits import PROFILE_KEY, memory_plan_for

    # Strategies whose copies of the weights and inputs would not fit get a "not measured" row.
    memory = memory_plan_for(loaded, model_inputs.arrays, [s.key for s in selected], profile=opts.profile)
    memory_notes = [memory.skip[PROFILE_KEY]] if PROFILE_KEY in memory.skip else []
    settings = MeasureSettings(
        budget_s=opts.budget_s,
        min_calls=opts.min_calls,
        max_wall_s=opts.max_wall_s if opts.max_wall_s is not None else 6 * opts.budget_s,
    )
    from kdiag.environment import collect

    def build_report(results, profiles=(), model=None, incomplete=False, notes=()):
        from kdiag.diagnose import diagnose

        report = Report(
            settings=RunSettings(
                command=opts.command,
                budget_s=settings.budget_s,
                min_calls=settings.min_calls,
                max_wall_s=settings.max_wall_s,
                batch_size=model_inputs.batch_size,
                timestamp=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            ),
            environment=collect(),
            model=model or model_info(loaded, model_inputs),
            strategies=results,
            profiles=list(profiles),
            notes=list(notes),
            incomplete=incomplete,
        )
        return dataclasses.replace(report, findings=diagnose(report))

    def interrupted(results, when: str) -> RunInterrupted:
        stop = RunInterrupted(results)
        stop.report = build_report(results, incomplete=True, notes=[
            f"Interrupted by Ctrl-C {when}: the figures are those measured before the interruption; "
            "the report holds no profiles."] + loaded.load_notes + ctx.timing_warnings)
        return stop

    with _work_dir(work_dir) as scratch:
        ctx = StrategyContext(loaded, model_inputs, Path(scratch))
        try:
            results = run_strategies(ctx, selected, settings, say, skip=memory.skip)
        except RunInterrupted as stop:
            raise interrupted(stop.results, "while timing") from None
        try:
            if opts.cpp:
                results.append(run_cpp_floor(ctx, settings, results, say))
            profiles = []
            if opts.profile and PROFILE_KEY not in memory.skip:
                profile_dir = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="kdiag-profiles-"))
                profiles = run_profiles(ctx, results, profile_scenarios(results, opts.profile_strategies),
                                        profile_dir, opts.profile_calls, say)
        except KeyboardInterrupt:
            raise interrupted(results, "after timing (C++ floor or profiling)") from None
        layers, training_diff = training_mode_check(ctx)
    model = dataclasses.replace(model_info(loaded, model_inputs), training_dependent_layers=layers,
                                training_true_max_abs_diff=training_diff)
    return build_report(results, profiles, model, notes=loaded.load_notes + memory_notes + ctx.timing_warnings)


def select_strategies(keys: Optional[Sequence[str]]) -> List[Strategy]:
    if not keys:
        return list(STRATEGIES)
    unknown = [k for k in keys if k not in BY_KEY]
    if unknown:
        raise KdiagError(
            f"unknown strategy {', '.join(map(repr, unknown))}",
            f"choose from: {', '.join(BY_KEY)}",
        )
    return [BY_KEY[k] for k in dict.fromkeys(keys)]


def run_strategies(ctx: StrategyContext, selected: List[Strategy], settings: MeasureSettings,
                   say: Progress, skip: Optional[Dict[str, str]] = None) -> List[StrategyResult]:
    """`skip`: strategy key -> why it is not measured (kdiag.limits.MemoryPlan.skip)."""
    prepared: Dict[str, Callable] = {}
    unavailable: Dict[str, str] = {}
    notes: Dict[str, List[str]] = {}
    for strategy in selected:
        if strategy.needs_keras and not ctx.loaded.is_keras:
            unavailable[strategy.name] = "not applicable: needs a Keras model; this is a plain SavedModel"
            continue
        if skip and strategy.key in skip:
            unavailable[strategy.name] = skip[strategy.key]
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

    from kdiag.profiling import capture_tf_warnings

    interrupted = None
    with capture_tf_warnings() as tf_warnings:  # retracing warnings go into the report, not the terminal
        try:
            timed = measure_interleaved(prepared, settings,
                                        on_progress=lambda name, what: say("measure", f"{name}: {what}"),
                                        around_first_call=native_stderr_captured)
        except MeasurementInterrupted as stop:
            timed, interrupted = stop.partial, stop
    for warning in tf_warnings:
        # TensorFlow names the function, not the strategy: attach it to the report as a whole.
        ctx.timing_warnings.append(f"TensorFlow warned while timing: {warning}")
    reference_name, reference = _reference(timed)
    ctx.reference_outputs = reference
    results = []
    for strategy in selected:
        name = strategy.name
        if name in unavailable:
            results.append(StrategyResult(name, strategy.snippet, False, unavailable[name], notes=notes.get(name, [])))
            continue
        outcome = timed[name]
        if interrupted is not None and outcome.measurement.count == 0:
            results.append(StrategyResult(name, strategy.snippet, False, "not measured: interrupted (Ctrl-C)",
                                          notes=notes[name]))
            continue
        if outcome.error:
            results.append(StrategyResult(name, strategy.snippet, False, f"failed when called: {outcome.error}",
                                          notes=notes[name]))
            continue
        outputs = None
        if reference is not None:
            outputs = check.compare(reference_name, reference, outcome.first_output)
        results.append(StrategyResult(name, strategy.snippet, True, measurement=outcome.measurement,
                                      outputs=outputs, notes=notes[name]))
    if interrupted is not None:
        raise RunInterrupted(results) from None
    return results


def run_cpp_floor(ctx: StrategyContext, settings: MeasureSettings, results: List[StrategyResult],
                  say: Progress) -> StrategyResult:
    """The SavedModel run from C++ through the TF C API, checked against the same reference.

    It runs in its own process after the Python strategies, so it is not interleaved
    with them; the report says so.
    """
    from kdiag import cpp
    from kdiag.strategies import export_saved_model, to_host

    note = ["measured in its own process after the Python strategies (not interleaved with them)"]
    reason = cpp.unavailable_reason()
    if reason is not None:
        return StrategyResult(cpp.STRATEGY_NAME, cpp.SNIPPET, False, f"not available: {reason}")
    try:
        say("cpp", "building cpp_baseline/ (cached per TensorFlow version)")
        binary = cpp.build()
        directory = export_saved_model(ctx)
        say("cpp", f"running {binary.name}")
        run = cpp.run_baseline(directory, ctx.inputs.arrays, budget_s=settings.budget_s,
                               min_calls=settings.min_calls, max_wall_s=settings.max_wall_s,
                               work_dir=ctx.work_dir / "cpp", binary=binary)
    except KdiagError as exc:
        return StrategyResult(cpp.STRATEGY_NAME, cpp.SNIPPET, False, f"not available: {exc.message}", notes=note)
    reference = next((r for r in results if r.name in REFERENCE_ORDER and r.available), None)
    outputs = None
    ref_outputs = ctx.reference_outputs
    if reference is not None and ref_outputs is not None:
        outputs = check.compare(reference.name, ref_outputs, to_host(run.outputs))
    return StrategyResult(cpp.STRATEGY_NAME, cpp.SNIPPET, True, measurement=run.measurement, outputs=outputs,
                          notes=note)


# Profiled by default: the two scenarios of the TF 2.1-era "predict is slower after compile()" report.
DEFAULT_PROFILES = (PREDICT, PREDICT_COMPILED)


def profile_scenarios(results: List[StrategyResult], extra_keys: Sequence[str]) -> List[Strategy]:
    """predict before and after compile(), then the extra ones asked for; only those that ran."""
    extra = select_strategies(extra_keys) if extra_keys else []
    wanted = [BY_NAME[name] for name in DEFAULT_PROFILES] + extra
    available = {r.name for r in results if r.available}
    return [s for s in dict.fromkeys(wanted) if s.name in available]


def run_profiles(ctx: StrategyContext, results: List[StrategyResult], scenarios: List[Strategy],
                 out_dir: Path, warm_calls: int, say: Progress) -> List[ProfileResult]:
    """A cProfile pass per scenario, each on a fresh model instance so its first call is cold."""
    from kdiag.profiling import file_stem, profile_scenario
    from kdiag.tf import legacy_keras_requested

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


TRAINING_DEPENDENT = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "AlphaDropout",
                      "GaussianDropout", "GaussianNoise", "BatchNormalization")


def training_mode_check(ctx: StrategyContext):
    """Layers that behave differently when training, and how far model(x, training=True) strays.

    Runs last: training=True updates BatchNormalization's moving statistics.
    """
    if not ctx.loaded.is_keras:
        return [], None
    layers = [f"{layer.name} ({type(layer).__name__})" for layer in _all_layers(ctx.loaded.model)
              if type(layer).__name__ in TRAINING_DEPENDENT]
    if not layers or ctx.reference_outputs is None:
        return layers, None
    from kdiag.strategies import to_host

    try:
        stray = check.compare("predict", ctx.reference_outputs, to_host(ctx.loaded.model(ctx.keras_inputs(), training=True)))
    except Exception:  # a model that cannot run in training mode has no such risk to measure
        return layers, None
    return layers, stray.max_abs_diff


def _all_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


def _reference(timed):
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


def _load(model_or_path, example, opts: InspectOptions) -> LoadedModel:
    if example is not None:
        if model_or_path is not None:
            raise KdiagError("give either a model path or --example, not both", "drop one of them")
        return load_example(example)
    if model_or_path is None:
        raise KdiagError("no model given", "pass a path to a .keras/.h5 file or SavedModel directory, or --example tiny")
    if isinstance(model_or_path, (str, Path)):
        return load_path(model_or_path, unsafe=opts.unsafe, custom_objects=opts.custom_objects)
    return from_model(model_or_path)


def _make_inputs(loaded: LoadedModel, inputs, opts: InspectOptions) -> ModelInputs:
    if opts.batch_size is not None and opts.batch_size < 1:
        raise KdiagError(f"--batch-size must be a positive integer, not {opts.batch_size}", "use e.g. --batch-size 1")
    specs = loaded.input_specs
    if inputs is not None:
        if isinstance(inputs, (str, Path)):
            return load_user_inputs(Path(inputs), specs)
        arrays = inputs if isinstance(inputs, dict) else {specs[0].name: inputs}
        checked = {s.name: check_user_array(s, arrays[s.name]) for s in specs}
        return ModelInputs(checked, {n: "user data" for n in checked})
    batch = _batch_size(loaded, opts.batch_size)
    from kdiag.limits import check_input_memory, estimate_output_bytes

    shapes = resolve_shapes(specs, batch, opts.input_shapes)
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


class _work_dir:
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
