"""Step 5 of the plan: beyond one batch (data size, batch size, memory over many calls, the op
breakdown, threads), with what is left.

Each registered step (kdiag.engine.beyond.steps.BEYOND_STEPS) keeps to its own budget. Which run:
the sweeps by default; the memory loops with --memory-loop; the op breakdown and the threads
comparison with --ops, or by default where predict's profile shows graph execution takes most of
its time (elsewhere the time goes to Python, which neither explains). A step that does not run
gets a part saying why and which flag runs it; one the user turned off gets none.

Under a time limit each step's budget, and the later steps', are scaled to what is left when it
starts (less the report's reserve); the data-size sweep first gets the time the plan kept for its
three smallest counts (`allot`). A step left no time is left out, and the report says so.
"""

from __future__ import annotations

import dataclasses
import math
from typing import List, Optional

from kdiag.datamodel.config import RunConfig
from kdiag.datamodel.profile import GRAPH
from kdiag.datamodel.report import StrategyResult
from kdiag.datamodel.strategies import DIRECT_PATHS, PREDICT, PREDICT_ON_BATCH
from kdiag.steps.state import RunState

#: The op breakdown runs by default when graph execution is at least this share of predict's profiled time.
GRAPH_SHARE_FOR_OPS = 0.5
#: A step may take up to this many times its budget more, when the run has the time to spare.
MAX_STRETCH = 20


def planned_steps(config: RunConfig) -> int:
    """A progress step for each step that may run (those the run decides on included)."""
    from kdiag.engine.beyond.steps import BEYOND_STEPS

    return sum(step.choice(config) is not False for step in BEYOND_STEPS)


@dataclasses.dataclass(frozen=True)
class Allotment:
    """A step's time: the budget it keeps to, and what it may take past it for its smallest useful answer."""

    budget_s: float
    spare_s: float
    fraction: float  # of its nominal budget


def allot(nominal_s: float, later_nominal_s: float, available_s: float, floor_s: float = 0.0) -> Allotment:
    """One step's share of `available_s` (what is left now, less the report's reserve), beside the
    nominal budgets of the steps after it.

    Its budget and theirs are scaled alike to fit. What it may take past its budget is what the later
    steps leave (at most MAX_STRETCH budgets), but never less than `floor_s` in all when the run has
    it: the data-size sweep's three smallest counts, which the plan kept from the costliest strategies
    (kdiag.steps.timing); had the later steps' budgets come first, that time would have bought nothing
    (fewer than three counts claim nothing) and the strategy left out for it would be lost for no gain.
    """
    wanted = nominal_s + later_nominal_s
    fraction = 1.0 if not wanted or not math.isfinite(available_s) else min(1.0, max(0.0, available_s) / wanted)
    budget = nominal_s * fraction
    spare = available_s - later_nominal_s * fraction - budget
    if floor_s > budget:
        spare = max(spare, min(floor_s, available_s) - budget)
    return Allotment(budget, max(0.0, min(spare, MAX_STRETCH * budget)), fraction)


def run(state: RunState) -> None:
    from kdiag.engine.beyond.steps import BEYOND_STEPS, Given

    config = state.config
    decided = [(step, _decide(state, step)) for step in BEYOND_STEPS]
    for step, why in decided:
        if why and step.choice(config) is False and step.off_by_default:
            state.beyond[step.field] = step.not_run(why)
    wanted = [step for step, why in decided if not why]
    fractions = []
    for position, (step, why) in enumerate(decided):
        if step.choice(config) is False:
            continue  # not planned: no progress step
        nominal_s = step.seconds_per_budget * config.budget_s
        later_s = sum(s.seconds_per_budget for s, w in decided[position + 1:] if not w) * config.budget_s
        floor_s = data_sweep_minimum_s(state) if step.field == "data_size_sweep" else 0.0
        share = allot(nominal_s, later_s, state.budget.left() - state.budget.reserve_s, floor_s)
        if not why and share.fraction <= 0:
            why = "not measured: no time was left; rerun with a larger --time-limit"
            state.budget.cut(needs_s=nominal_s + later_s + state.budget.reserve_s)
        if why:
            state.steps.skip("beyond one batch", step.label, why.split(":")[0])
            state.beyond[step.field] = step.not_run(why)
            continue
        state.steps.next("beyond one batch", step.label)
        fractions.append(share.fraction)
        given = Given(state.context, config, state.results, best_direct_path(state.results), dict(state.beyond),
                      spare_s=share.spare_s)
        state.beyond[step.field] = state.worker.call(
            lambda step=step, given=given, budget_s=share.budget_s: step.run(given, budget_s, state.steps.say))
    _say_what_was_cut(state, wanted, fractions)


def _say_what_was_cut(state: RunState, wanted: list, fractions: List[float]) -> None:
    """The report's line on the steps the time limit scaled down or left out (their rows say which)."""
    if not wanted or (len(fractions) == len(wanted) and min(fractions) >= 1.0):
        return
    if not fractions:
        note = "The steps beyond one batch were left out (no time left)."
    else:
        low, high = min(fractions), max(fractions)
        share = f"{low:.0%}" if round(low, 2) == round(high, 2) else f"{low:.0%}-{high:.0%}"
        note = f"The steps beyond one batch ran on {share} of their budgets"
        left_out = len(wanted) - len(fractions)
        note += f"; {left_out} {'was' if left_out == 1 else 'were'} left out (no time left)." if left_out else "."
    total = sum(step.seconds_per_budget for step in wanted) * state.config.budget_s
    state.budget.cut(note, total + state.budget.reserve_s)


def _decide(state: RunState, step) -> str:
    """Why `step` does not run ("" when it does)."""
    choice = step.choice(state.config)
    if choice is True:
        return ""
    if choice is False:
        return f"not run: off by default; {step.flag} runs it" if step.off_by_default else "turned off"
    share = graph_share(state)
    if share is None:
        return (f"not run: by default it runs when predict's profile shows graph execution takes most of its time, "
                f"and predict was not profiled; {step.flag} runs it")
    if share < GRAPH_SHARE_FOR_OPS:
        return (f"not run: graph execution is {share:.0%} of predict's profiled time (it runs by default from "
                f"{GRAPH_SHARE_FOR_OPS:.0%}: below that the time goes to Python, which the ops do not show); "
                f"{step.flag} runs it")
    return ""


def minimum_s(state: RunState) -> float:
    """What the sweeps need for their smallest useful answer: the data-size sweep's three sample counts,
    the batch-size sweep's budget, and a second for the training check. Kept from the strategies started
    after the direct paths, since a data-size sweep of fewer counts claims nothing; `run` then gives the
    data-size sweep that time before the later steps' budgets (`allot`). 0 when the sweeps are off, were
    given their counts, or cannot be estimated."""
    from kdiag.engine.beyond.steps import BEYOND_STEPS

    data = data_sweep_minimum_s(state)
    if not data:
        return 0.0
    batch_sweep = next(s.seconds_per_budget for s in BEYOND_STEPS if s.field == "batch_size_sweep")
    return data + batch_sweep * state.config.budget_s + 1.0


def data_sweep_minimum_s(state: RunState) -> float:
    """The data-size sweep's three smallest sample counts, estimated from the medians measured so far;
    0 when the sweeps are off, were given their counts, or cannot be estimated."""
    from kdiag.engine.beyond import sweeps

    config = state.config
    if not config.sweeps or config.samples is not None:
        return 0.0
    medians = {r.name: r.median_s for r in state.results if r.available and r.measurement.count}
    best = best_direct_path(state.results)
    if PREDICT.name not in medians or best is None:
        return 0.0
    fixed = {s.shape[0] for s in state.loaded.input_specs if s.shape and s.shape[0] is not None}
    multiple = fixed.pop() if fixed else 1
    from kdiag.engine.beyond.steps import trace_s

    names = [name for name in dict.fromkeys((PREDICT_ON_BATCH.name, best.name)) if name in medians]
    traces = [trace_s(state.results, name) for name in [PREDICT.name] + names]
    return sweeps.minimum_seconds(medians[PREDICT.name], [medians[n] for n in names], state.inputs.batch_size,
                                  multiple, traces)


def graph_share(state: RunState) -> Optional[float]:
    """Graph execution's share of predict's warm profile; None when predict was not profiled."""
    profile = next((p for p in state.profiles if p.scenario == PREDICT.name), None)
    row = profile.phase(GRAPH) if profile is not None else None
    return row.share if row is not None else None


def best_direct_path(results: List[StrategyResult]) -> Optional[StrategyResult]:
    """The fastest direct path (predict_on_batch, tf.function, the concrete function) measured with
    matching outputs: the graph predict runs, called without predict's pipeline. XLA and the
    SavedModel are other runtimes: their differences are not predict's overhead."""
    from kdiag import views

    usable = [r for r in results if r.name in DIRECT_PATHS and views.median(r) is not None
              and views.outputs_match(r)]
    return min(usable, key=views.median) if usable else None
