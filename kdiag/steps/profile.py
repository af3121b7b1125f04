"""Step: a cProfile pass per scenario (predict before and after compile(), plus those asked for),
each on a fresh model instance so that its first call is cold.

Under a time limit each pass gets an equal share of what is left: fewer warm calls (at least one),
or none and a note saying what it would have taken.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import List, Sequence

from kdiag.datamodel.config import RunConfig
from kdiag.datamodel.profile import ProfileResult
from kdiag.datamodel.report import StrategyResult
from kdiag.datamodel.strategies import PREDICT, PREDICT_COMPILED
from kdiag.engine.runtimes.base import Strategy, StrategyContext
from kdiag.engine.runtimes.strategies import BY_KEY, BY_NAME
from kdiag.engine.tf import native_stderr_captured
from kdiag.steps.state import RunState

#: Profiled by default: the two scenarios of the TF 2.1-era "predict is slower after compile()" report.
DEFAULT_PROFILES = (PREDICT.name, PREDICT_COMPILED.name)
#: cProfile makes Python-heavy calls about 1.2-2x slower (measured: 1.2-1.7x on the examples).
PROFILE_INFLATION = 2.0


def planned_steps(config: RunConfig) -> int:
    return (len(DEFAULT_PROFILES) + len(config.profile_strategies)) if config.profile else 0


def reserve_s(state: RunState) -> float:
    """What the profiles need after timing: roughly what loading took again, per fresh instance."""
    return state.loaded.load_time_s * planned_steps(state.config)


def run(state: RunState, scratch: Path) -> None:
    from kdiag.engine.intake.limits import PROFILE_KEY

    config = state.config
    if not config.profile or PROFILE_KEY in state.memory_skip:
        return
    # Without out_dir the .prof files live and die with the scratch folder: the Report then names
    # no file, rather than files that are gone.
    profile_dir = Path(state.out_dir) if state.out_dir is not None else Path(scratch) / "profiles"
    scenarios = profile_scenarios(state.results, config.profile_strategies)
    state.steps.skip(planned_steps(config) - len(scenarios))
    profiles: List[ProfileResult] = []
    try:
        run_profiles(state, scenarios, profile_dir, profiles)
    finally:  # the time limit may stop a pass under way: those that finished are kept
        state.profiles = profiles if state.out_dir is not None else [
            dataclasses.replace(p, prof_path="", cold_prof_path="") for p in profiles]


def profile_scenarios(results: List[StrategyResult], extra_keys: Sequence[str]) -> List[Strategy]:
    """predict before and after compile(), then the extra ones asked for; only those that ran."""
    wanted = [BY_NAME[name] for name in DEFAULT_PROFILES] + [BY_KEY[k] for k in extra_keys]
    available = {r.name for r in results if r.available}
    return [s for s in dict.fromkeys(wanted) if s.name in available]


def run_profiles(state: RunState, scenarios: List[Strategy], out_dir: Path, profiles: List[ProfileResult]) -> None:
    """Profile each scenario on the run's worker, adding each ProfileResult to `profiles` as it ends."""
    from kdiag.engine.phases.profiling import file_stem, profile_scenario
    from kdiag.engine.tf import legacy_keras_requested

    ctx = state.context
    results = {r.name: r for r in state.results if r.available}
    for index, strategy in enumerate(scenarios):
        calls = _warm_calls(state, results[strategy.name], strategy.name, len(scenarios) - index)
        if calls < 1:
            state.steps.skip()
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


def _warm_calls(state: RunState, result: StrategyResult, name: str, passes_left: int) -> int:
    """How many warm calls this pass gets from its share of the time left; tells the Budget what it cut."""
    wanted = state.config.profile_calls
    median = result.median_s
    # A fresh instance (about what loading took), its cold call and the warm calls, under cProfile.
    start_cost = state.loaded.load_time_s + PROFILE_INFLATION * result.measurement.first_call_s
    share = state.budget.share(passes_left)
    calls = wanted
    if math.isfinite(share) and math.isfinite(start_cost):
        calls = min(wanted, int((share - start_cost) // (PROFILE_INFLATION * median)))
    if calls < wanted:
        needs = start_cost + PROFILE_INFLATION * median * wanted
        note = (f"Not profiled: {name} (would take ~{needs:.0f} s)." if calls < 1 else
                f"{name} was profiled over {calls} warm calls instead of {wanted}.")
        state.budget.cut(note, needs * passes_left + state.budget.reserve_s)
    return calls
