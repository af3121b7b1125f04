"""Step 5 of the plan: beyond one batch (data size, batch size, memory over many calls, the op
breakdown, threads), with what is left.

Each registered step (kdiag.engine.beyond.steps.BEYOND_STEPS) keeps to its own budget. Which run:
the sweeps by default; the memory loops with --memory-loop; the op breakdown and the threads
comparison with --ops, or by default where predict's profile shows graph execution takes most of
its time (elsewhere the time goes to Python, which neither explains). A step that does not run
gets a part saying why and which flag runs it; one the user turned off gets none.

Under a time limit every budget is scaled by the share of what is left (less the report's reserve)
that they fit in together; when none is left they are left out, and the report says so.
"""

from __future__ import annotations

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


def run(state: RunState) -> None:
    from kdiag.engine.beyond.steps import BEYOND_STEPS, Given

    config = state.config
    decided = [(step, _decide(state, step)) for step in BEYOND_STEPS]
    for step, why in decided:
        if why and step.choice(config) is False and step.off_by_default:
            state.beyond[step.field] = step.not_run(why)
    wanted = [step for step, why in decided if not why]
    total = sum(step.seconds_per_budget for step in wanted) * config.budget_s
    fraction = state.budget.scale(total)
    if wanted and fraction < 1.0:
        note = (f"The steps beyond one batch ran on {fraction:.0%} of their budgets." if fraction > 0 else
                "The steps beyond one batch were left out (no time left).")
        state.budget.cut(note, total + state.budget.reserve_s)
    for position, (step, why) in enumerate(decided):
        if step.choice(config) is False:
            continue  # not planned: no progress step
        if why or fraction <= 0:
            why = why or "not measured: no time was left; rerun with a larger --time-limit"
            state.steps.skip("beyond one batch", step.label, why.split(":")[0])
            state.beyond[step.field] = step.not_run(why)
            continue
        state.steps.next("beyond one batch", step.label)
        budget_s = step.seconds_per_budget * config.budget_s * fraction
        later_s = sum(s.seconds_per_budget for s, w in decided[position + 1:] if not w) * config.budget_s * fraction
        # What a step may take past its budget for its smallest useful answer (a slow model's three
        # sample counts): what the run has to spare once the later steps keep theirs, at most MAX_STRETCH budgets.
        spare = min(state.budget.left() - state.budget.reserve_s - later_s - budget_s, MAX_STRETCH * budget_s)
        given = Given(state.context, config, state.results, best_direct_path(state.results), dict(state.beyond),
                      spare_s=max(0.0, spare))
        state.beyond[step.field] = state.worker.call(
            lambda step=step, given=given, budget_s=budget_s: step.run(given, budget_s, state.steps.say))


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
    """What the sweeps need for their smallest useful answer: the data-size sweep's three sample counts
    (estimated from the medians measured so far) and the batch-size sweep's budget, and a second for the
    training check. Kept from the strategies started after the direct paths, since a data-size sweep of
    fewer counts claims nothing. 0 when the sweeps are off, were given their counts, or cannot be estimated."""
    from kdiag.engine.beyond import sweeps
    from kdiag.engine.beyond.steps import BEYOND_STEPS

    config = state.config
    if not config.sweeps or config.samples is not None:
        return 0.0
    batch_sweep = next(s.seconds_per_budget for s in BEYOND_STEPS if s.field == "batch_size_sweep") * config.budget_s
    medians = {r.name: r.median_s for r in state.results if r.available and r.measurement.count}
    best = best_direct_path(state.results)
    if PREDICT.name not in medians or best is None:
        return 0.0
    fixed = {s.shape[0] for s in state.loaded.input_specs if s.shape and s.shape[0] is not None}
    multiple = fixed.pop() if fixed else 1
    from kdiag.engine.beyond.steps import trace_s

    names = [name for name in dict.fromkeys((PREDICT_ON_BATCH.name, best.name)) if name in medians]
    traces = [trace_s(state.results, name) for name in [PREDICT.name] + names]
    data = sweeps.minimum_seconds(medians[PREDICT.name], [medians[n] for n in names], state.inputs.batch_size,
                                  multiple, traces)
    return data + batch_sweep + 1.0


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
