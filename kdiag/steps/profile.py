"""Step 2 of the plan (kdiag.steps.plan): a cProfile pass per scenario, each on a fresh model
instance so that its first call is cold. predict before and after compile() right after they are
timed; the strategies asked for with --profile after theirs.

Under a time limit each pass gets an equal share of what is left: at least MIN_PROFILE_CALLS warm
calls when they fit, more only while the direct paths keep what they need at --min-calls; or none,
and a note saying what it would have taken.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import List

from kdiag.datamodel.config import RunConfig
from kdiag.datamodel.profile import ProfileResult
from kdiag.datamodel.report import StrategyResult
from kdiag.datamodel.strategies import PREDICT, PREDICT_COMPILED
from kdiag.engine.runtimes.base import Strategy, StrategyContext
from kdiag.engine.runtimes.strategies import BY_KEY, BY_NAME
from kdiag.engine.tf import native_stderr_captured
from kdiag.steps import plan
from kdiag.steps.state import RunState

#: Profiled by default: the two scenarios of the TF 2.1-era "predict is slower after compile()" report.
DEFAULT_PROFILES = (PREDICT.name, PREDICT_COMPILED.name)


def planned_steps(config: RunConfig, extras: bool = False) -> int:
    """Progress steps of the default passes (or, with `extras`, of those asked for with --profile)."""
    if not config.profile:
        return 0
    return len(extra_scenarios(config)) if extras else len(DEFAULT_PROFILES)


def extra_scenarios(config: RunConfig) -> List[Strategy]:
    """The strategies asked for with --profile, besides the default scenarios."""
    return [BY_KEY[k] for k in dict.fromkeys(config.profile_strategies) if BY_KEY[k].name not in DEFAULT_PROFILES]


def run(state: RunState, scratch: Path, extras: bool = False) -> None:
    """The default passes (step 2), or with `extras` those asked for with --profile (after their timing)."""
    from kdiag.engine.intake.limits import PROFILE_KEY

    config = state.config
    if not config.profile:
        return
    wanted = extra_scenarios(config) if extras else [BY_NAME[name] for name in DEFAULT_PROFILES]
    if PROFILE_KEY in state.memory_skip:
        for strategy in wanted:
            state.steps.skip("profile", strategy.name, "too little memory")
        return
    # Without out_dir the .prof files live and die with the scratch folder: the Report then names
    # no file, rather than files that are gone.
    profile_dir = Path(state.out_dir) if state.out_dir is not None else Path(scratch) / "profiles"
    available = {r.name for r in state.results if r.available}
    scenarios = [s for s in wanted if s.name in available]
    for strategy in wanted:
        if strategy.name not in available:
            state.steps.skip("profile", strategy.name, "not measured")
    profiles: List[ProfileResult] = []
    try:
        run_profiles(state, scenarios, profile_dir, profiles, later_s=0.0 if extras else _direct_minimum_s(state))
    finally:  # the time limit may stop a pass under way: those that finished are kept
        state.profiles += profiles if state.out_dir is not None else [
            dataclasses.replace(p, prof_path="", cold_prof_path="") for p in profiles]


def _instance_s(state: RunState) -> float:
    from kdiag.steps import timing

    return timing.instance_s(state)


def _direct_minimum_s(state: RunState) -> float:
    from kdiag.steps import timing

    return plan.direct_minimum_s(state.config, timing.known(state))


def run_profiles(state: RunState, scenarios: List[Strategy], out_dir: Path, profiles: List[ProfileResult],
                 later_s: float = 0.0) -> None:
    """Profile each scenario on the run's worker, adding each ProfileResult to `profiles` as it ends."""
    from kdiag.engine.phases.profiling import file_stem, profile_scenario
    from kdiag.engine.tf import legacy_keras_requested

    ctx = state.context
    results = {r.name: r for r in state.results if r.available}
    for index, strategy in enumerate(scenarios):
        calls = _warm_calls(state, results[strategy.name], strategy.name, len(scenarios) - index, later_s)
        if calls < 1:
            state.steps.skip("profile", strategy.name, "no time left")
            continue
        state.steps.next("profile", f"{strategy.name}: 1 cold + {calls} warm calls under cProfile")
        stem = file_stem(strategy.name)

        def make_call(strategy=strategy, stem=stem):
            loaded = ctx.loaded
            if loaded.is_keras and loaded.uncompiled_factory is not None:
                loaded = dataclasses.replace(loaded, model=loaded.uncompiled_factory())
            fresh = StrategyContext(loaded, ctx.inputs, ctx.work_dir / f"profile-{stem}")
            return strategy.prepare(fresh)

        def profiled(strategy=strategy, stem=stem, make_call=make_call, calls=calls):
            with native_stderr_captured():
                return profile_scenario(strategy.name, make_call, out_dir, calls, results[strategy.name].median_s,
                                        legacy_keras_requested(), stem)

        profiles.append(state.worker.call(profiled))


def _warm_calls(state: RunState, result: StrategyResult, name: str, passes_left: int, later_s: float) -> int:
    """How many warm calls this pass gets from its share of the time left; tells the Budget what it cut.

    At least MIN_PROFILE_CALLS when they fit (the profiles come before the direct paths); beyond
    that, only from what is left once `later_s` (the direct paths at --min-calls) is kept."""
    wanted = state.config.profile_calls
    per_call = plan.profiled_call_s(result.median_s)
    # A fresh instance (about what loading took), its cold call and the warm calls, under cProfile.
    start_cost = _instance_s(state) + plan.profiled_call_s(result.measurement.first_call_s, cold=True)
    share = state.budget.share(passes_left)
    calls = wanted
    if math.isfinite(share) and math.isfinite(start_cost):
        floor = min(plan.MIN_PROFILE_CALLS, int((share - start_cost) // per_call))
        spare = share - later_s / passes_left
        calls = min(wanted, max(floor, int((spare - start_cost) // per_call)))
    if calls < wanted:
        needs = start_cost + per_call * wanted
        note = (f"Not profiled: {name} (would take ~{needs:.0f} s)." if calls < 1 else
                f"{name} was profiled over {calls} warm calls instead of {wanted}.")
        state.budget.cut(note, needs * passes_left + state.budget.reserve_s)
    return calls
