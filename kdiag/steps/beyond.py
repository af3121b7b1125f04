"""Step: beyond one batch (data size, batch size, memory over many calls, the op breakdown, threads).

Each registered step (kdiag.engine.beyond.steps.BEYOND_STEPS) keeps to its own budget. Under a
time limit every budget is scaled by the share of what is left (less the report's reserve) that
they fit in together; when none is left they are left out, and the report says so.
"""

from __future__ import annotations

from typing import List, Optional

from kdiag.datamodel.config import RunConfig
from kdiag.datamodel.report import StrategyResult
from kdiag.datamodel.strategies import DIRECT_PATHS
from kdiag.steps.state import RunState


def planned_steps(config: RunConfig) -> int:
    from kdiag.engine.beyond.steps import BEYOND_STEPS

    return int(any(step.enabled(config) for step in BEYOND_STEPS))


def run(state: RunState) -> None:
    from kdiag.engine.beyond.steps import BEYOND_STEPS, Given

    config = state.config
    wanted = [step for step in BEYOND_STEPS if step.enabled(config)]
    if not wanted:
        return
    state.steps.next("beyond one batch", "sweeps, memory over many calls, op breakdown")
    total = sum(step.seconds_per_budget for step in wanted) * config.budget_s
    fraction = state.budget.scale(total)
    if fraction < 1.0:
        note = (f"The steps beyond one batch ran on {fraction:.0%} of their budgets." if fraction > 0 else
                "The steps beyond one batch were left out (no time left).")
        state.budget.cut(note, total + state.budget.reserve_s)
    if fraction <= 0:
        return
    for step in wanted:
        given = Given(state.context, config, state.results, best_direct_path(state.results), dict(state.beyond))
        state.beyond[step.field] = state.worker.call(
            lambda: step.run(given, step.seconds_per_budget * config.budget_s * fraction, state.steps.say))


def best_direct_path(results: List[StrategyResult]) -> Optional[StrategyResult]:
    """The fastest direct path (predict_on_batch, tf.function, the concrete function) measured with
    matching outputs: the graph predict runs, called without predict's pipeline. XLA and the
    SavedModel are other runtimes: their differences are not predict's overhead."""
    from kdiag import views

    usable = [r for r in results if r.name in DIRECT_PATHS and views.median(r) is not None
              and views.outputs_match(r)]
    return min(usable, key=views.median) if usable else None
