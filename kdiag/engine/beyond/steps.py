"""The steps beyond one batch, and `BEYOND_STEPS`: the registry the run goes through after profiling.

Each step takes the strategy context, what the timing pass measured, and an explicit budget in
seconds that it keeps to; each returns its part of the Report (kdiag.datamodel.beyond), with a
"not measured: ..." reason instead of figures when it cannot run. The best path is the one the
caller chose: the fastest direct path whose outputs match the reference.

A new step is its measuring code, its part of the data model (a Report field), and one entry in
`BEYOND_STEPS` saying which Report field it fills, its share of the budget and the option that
turns it off; kdiag.steps.beyond runs the entries in order.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from kdiag.datamodel.config import RunConfig
from kdiag.datamodel.beyond import BatchSizeSweep, DataSizeSweep, MemoryLoop, MemoryLoops, OpBreakdown, ThreadsEffect
from kdiag.datamodel.report import StrategyResult
from kdiag.datamodel.strategies import PREDICT, PREDICT_ON_BATCH
from kdiag.engine.runtimes.base import StrategyContext
from kdiag.engine.runtimes.predict import predict_whole
from kdiag.engine.runtimes.strategies import BY_NAME
from kdiag.errors import KdiagError, NotApplicable, first_line

Say = Callable[[str, str], None]

NO_BEST_PATH = "not measured: no direct path was measured with outputs matching the reference"


def _median(results: Sequence[StrategyResult], name: str) -> Optional[float]:
    result = next((r for r in results if r.name == name), None)
    if result is None or not result.available or result.measurement is None or not result.measurement.count:
        return None
    value = result.measurement.median_s
    return value if value > 0 and math.isfinite(value) else None


def _fixed_batch(ctx: StrategyContext) -> Optional[int]:
    fixed = {s.shape[0] for s in ctx.loaded.input_specs if s.shape and s.shape[0] is not None}
    return fixed.pop() if fixed else None


def _per_sample_bytes(ctx: StrategyContext) -> float:
    """A sample's share of the arrays a sweep holds: the tiled inputs, and its outputs three times
    (predict's joined result, the loop's pieces, and their join)."""
    from kdiag.engine.intake.limits import estimate_output_bytes

    batch = ctx.inputs.batch_size
    inputs = sum(a.nbytes for a in ctx.inputs.arrays.values()) / batch
    outputs = estimate_output_bytes(ctx.loaded, 1)
    return inputs + 3 * (inputs if outputs is None else outputs)


def _chunked(ctx: StrategyContext, name: str):
    strategy = BY_NAME[name]
    if strategy.prepare_chunked is None:
        raise NotApplicable(f"{name} has no way to take other batches")
    return strategy.prepare_chunked(ctx)


def _failed(what: str, exc: BaseException) -> str:
    if isinstance(exc, NotApplicable):
        return f"not measured: {exc}"
    if isinstance(exc, KdiagError):
        return f"not measured: {exc.message}"
    return f"not measured: {what} failed: {type(exc).__name__}: {first_line(exc)}"


# --- the steps ------------------------------------------------------------------------------


def data_size_step(ctx: StrategyContext, results: Sequence[StrategyResult], best: Optional[StrategyResult],
                   samples: Optional[Sequence[int]], budget_s: float, say: Say) -> DataSizeSweep:
    """predict(X, batch_size=B), a predict_on_batch loop and a loop of the best path, end to end."""
    from kdiag.engine.beyond import sweeps

    batch = ctx.inputs.batch_size
    predict_s = _median(results, PREDICT.name)
    if predict_s is None:
        return DataSizeSweep(batch, reason="not measured: predict was not measured in this run")
    if best is None:
        return DataSizeSweep(batch, reason=NO_BEST_PATH)
    fixed = _fixed_batch(ctx)
    if fixed is not None and samples is not None and any(n % fixed for n in samples):
        return DataSizeSweep(batch, best.name, reason=f"not measured: the model's batch size is fixed at {fixed}, "
                                                      f"so every --samples count must be a multiple of {fixed}")
    try:
        paths = [sweeps.whole_array_path(PREDICT.name, predict_whole(ctx, batch), batch, predict_s)]
        names = [PREDICT_ON_BATCH.name] if _median(results, PREDICT_ON_BATCH.name) is not None else []
        names += [best.name] if best.name not in names else []
        for name in names:
            paths.append(sweeps.loop_path(name, _chunked(ctx, name), batch, _median(results, name)))
        memory = sweeps.memory_check(_per_sample_bytes(ctx))
        return sweeps.data_size_sweep(paths, ctx.inputs.arrays, batch, best.name, budget_s, samples, memory,
                                      progress=lambda what: say("sweep", f"data size: {what}"), multiple=fixed or 1)
    except Exception as exc:
        return DataSizeSweep(batch, best.name, reason=_failed("the data-size sweep", exc), budget_s=budget_s)


def batch_size_step(ctx: StrategyContext, best: Optional[StrategyResult], budget_s: float,
                    say: Say) -> BatchSizeSweep:
    """The best path at batch 1, 2, 4, ... within the budget and the memory."""
    from kdiag.engine.beyond import sweeps

    if best is None:
        return BatchSizeSweep(reason=NO_BEST_PATH, budget_s=budget_s)
    fixed = _fixed_batch(ctx)
    if fixed is not None:
        return BatchSizeSweep(best.name, reason=f"not measured: the model's batch size is fixed at {fixed}",
                              budget_s=budget_s)
    try:
        call = _chunked(ctx, best.name)
        memory = sweeps.memory_check(_per_sample_bytes(ctx))
        return sweeps.batch_size_sweep(best.name, call, ctx.inputs.arrays, budget_s, memory,
                                       progress=lambda what: say("sweep", f"{best.name} at {what}"))
    except Exception as exc:
        return BatchSizeSweep(best.name, reason=_failed("the batch-size sweep", exc), budget_s=budget_s)


def memory_step(ctx: StrategyContext, results: Sequence[StrategyResult], best: Optional[StrategyResult],
                budget_s: float, say: Say) -> MemoryLoops:
    """A sustained loop of predict and one of the best path, RSS sampled; the budget split between them."""
    from kdiag.engine.beyond.memloop import sustained_loop

    names: List[str] = [PREDICT.name] if _median(results, PREDICT.name) is not None else []
    if best is not None and best.name not in names:
        names.append(best.name)
    if not names:
        return MemoryLoops(budget_s=budget_s, reason="not measured: neither predict nor a direct path was measured")
    # The best path first: it usually reaches its calls quickly, and predict gets the time it left.
    loops = {}
    spent = 0.0
    for position, name in enumerate(reversed(names)):
        say("memory", f"{name}: a sustained loop, RSS sampled")
        share = (budget_s - spent) / (len(names) - position)
        try:
            loops[name] = sustained_loop(name, BY_NAME[name].prepare(ctx), share)
            spent += loops[name].seconds + loops[name].warmup_s
        except Exception as exc:
            loops[name] = MemoryLoop(name, reason=_failed("the loop", exc))
    return MemoryLoops([loops[name] for name in names], budget_s)


def op_breakdown_step(ctx: StrategyContext, best: Optional[StrategyResult], budget_s: float,
                      say: Say) -> OpBreakdown:
    """The best path's ops by self time, from a profiler trace converted by XProf."""
    from kdiag.engine.beyond.ops import op_breakdown

    if best is None:
        return OpBreakdown("", reason=NO_BEST_PATH)
    say("ops", f"{best.name}: a few calls under the TensorFlow profiler")
    try:
        return op_breakdown(best.name, BY_NAME[best.name].prepare(ctx), budget_s, best.median_s)
    except Exception as exc:
        return OpBreakdown(best.name, reason=_failed("the op breakdown", exc))


def threads_step(ctx: StrategyContext, best: Optional[StrategyResult], ops: Optional[OpBreakdown],
                 budget_s: float, say: Say) -> ThreadsEffect:
    """1 intra-op thread against the core count, when graph execution is what the best path spends."""
    from kdiag.engine.beyond.ops import NOT_INSTALLED
    from kdiag.engine.runtimes.base import export_saved_model
    from kdiag.engine.beyond.threads import threads_effect

    label = "SavedModel serve (the exported graph)"
    if best is None:
        return ThreadsEffect(label, reason=NO_BEST_PATH, budget_s=budget_s)
    if ops is None or ops.reason == NOT_INSTALLED:
        return ThreadsEffect(label, reason="not measured: it runs when XProf's op breakdown shows graph execution "
                                           "takes most of the best path's time: pip install kdiag[ops]",
                             budget_s=budget_s)
    if ops.reason.startswith("not measured"):
        return ThreadsEffect(label, reason="not measured: it runs when the op breakdown shows graph execution takes "
                                           "most of the best path's time, and the op breakdown was not measured",
                             budget_s=budget_s)
    if ops.reason:
        return ThreadsEffect(label, reason="not measured: graph execution is not most of the best path's time "
                                           f"({ops.reason.removeprefix('not listed: ')})", budget_s=budget_s)
    say("threads", "1 intra-op thread against the core count, in two child processes")
    try:
        directory = export_saved_model(ctx)
    except Exception as exc:
        return ThreadsEffect(label, reason=_failed("model.export()", exc), budget_s=budget_s)
    return threads_effect(label, directory, ctx.inputs.arrays, budget_s)


# --- the registry -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Given:
    """What every step beyond one batch measures from."""

    ctx: StrategyContext
    config: RunConfig
    results: Sequence[StrategyResult]
    best: Optional[StrategyResult]  # the fastest direct path with matching outputs
    parts: Dict[str, Any]  # the parts measured before this one, by Report field


@dataclasses.dataclass(frozen=True)
class BeyondStep:
    """One step beyond one batch: the Report field it fills, how it runs, and what it may spend."""

    field: str  # the Report field its part goes in
    seconds_per_budget: float  # seconds it may take per second of --budget
    enabled: Callable[[RunConfig], bool]  # the option that turns it off
    run: Callable[[Given, float, Say], Any]  # (what it measures from, its budget in seconds, say) -> its part


#: In the order they run. At the default budget of 1 s they add about 20 s, plus the threads
#: comparison on a model whose time goes to graph execution.
BEYOND_STEPS: Tuple[BeyondStep, ...] = (
    BeyondStep("data_size_sweep", 6.0, lambda c: c.sweeps,
               lambda g, s, say: data_size_step(g.ctx, g.results, g.best, g.config.samples, s, say)),
    BeyondStep("batch_size_sweep", 2.0, lambda c: c.sweeps, lambda g, s, say: batch_size_step(g.ctx, g.best, s, say)),
    # predict's loop and the best path's together
    BeyondStep("memory_loops", 10.0, lambda c: c.memory_loops,
               lambda g, s, say: memory_step(g.ctx, g.results, g.best, s, say)),
    BeyondStep("op_breakdown", 3.0, lambda c: c.ops, lambda g, s, say: op_breakdown_step(g.ctx, g.best, s, say)),
    # two child processes importing TensorFlow and loading the model included
    BeyondStep("threads_effect", 12.0, lambda c: c.ops,
               lambda g, s, say: threads_step(g.ctx, g.best, g.parts.get("op_breakdown"), s, say)),
)
