"""One run, top to bottom: `run(config) -> Report`.

The steps follow the plan (kdiag.steps.plan): load and inputs; predict and predict (compiled)
timed together, then profiled; the direct paths; the other strategies; the C++ floor; the steps
beyond one batch; the training-mode check; the report. Each declares the progress steps it plans,
so the count is fixed before the first ("[k/N]" never changes its N: a step that does not run is
shown as skipped), and every one asks the run's Budget for its time. The model's work runs on the
run's worker thread (kdiag.steps.worker), which the main thread waits on until the Budget's stop
moment. Ctrl-C at any step after loading raises `RunInterrupted` holding a Report of what was
measured, marked incomplete; a failure once something was measured, `RunFailed`
(kdiag.steps.state); the time limit stopping a call under way, a Report marked incomplete. A run
under other Keras versions or TensorFlow releases is handed to kdiag.steps.keras_sides or
kdiag.steps.tf_versions, which run these steps in child processes.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Optional

from kdiag.datamodel.config import RunConfig
from kdiag.datamodel.report import Report
from kdiag.errors import KdiagError, first_line
from kdiag.signals import stop_cause
from kdiag.steps import beyond, cpp, load, plan, profile, report, timing, training
from kdiag.steps.budget import Budget
from kdiag.steps.state import Progress, RunFailed, RunInterrupted, RunState, StepCounter
from kdiag.steps.worker import ModelWorker, TimeUp
from kdiag.tempdirs import remove_stale, temporary_directory

#: Every step in order, for the step count the progress line shows from the start.
PLANNED = (lambda c: load.PLANNED_STEPS, plan.timing_steps, profile.planned_steps,
           lambda c: profile.planned_steps(c, extras=True), cpp.planned_steps, beyond.planned_steps,
           lambda c: training.PLANNED_STEPS, lambda c: report.PLANNED_STEPS)


def planned_total(config: RunConfig) -> int:
    return sum(p(config) for p in PLANNED)


def run(config: RunConfig, progress: Optional[Progress] = None, out_dir: Optional[Path] = None,
        work_dir: Optional[Path] = None, started: Optional[float] = None) -> Report:
    """Carry out one validated RunConfig; see `kdiag.api.inspect` for what each step does.

    `started`: when the time limit began (a time.perf_counter() value; the CLI's is the moment it
    started, so the limit holds from the first byte); default: now."""
    from kdiag.engine.keras_child import current_keras

    if config.tf_versions is not None:  # --tf: each release in its own environment, in child processes
        from kdiag.steps import tf_versions

        return tf_versions.run(config, progress, out_dir)
    if config.keras not in (None, current_keras()):  # --keras both, or the Keras this process does not run
        from kdiag.steps import keras_sides

        return keras_sides.run(config, progress, out_dir, work_dir,
                               run_here=lambda *args: run(*args, started=started))
    remove_stale()  # the temporary copies of the model that killed runs left behind
    budget = Budget(config.time_limit_s, started=started)
    state = RunState(config, budget, StepCounter(progress, planned_total(config), budget),
                     started=datetime.datetime.now().astimezone().isoformat(timespec="seconds"), out_dir=out_dir,
                     worker=ModelWorker(budget))  # the model's work runs there (kdiag.steps.worker)
    try:
        return _run(state, work_dir)
    finally:
        state.worker.close()


def _run(state: RunState, work_dir: Optional[Path]) -> Report:
    config = state.config
    load.run(state)
    from kdiag.engine.runtimes.strategies import BY_KEY

    load.plan_memory(state, [BY_KEY[k] for k in plan.selected_keys(config)], profile=config.profile)
    with _scratch_dir(work_dir) as scratch:
        from kdiag.engine.runtimes.base import StrategyContext

        state.context = StrategyContext(state.loaded, state.inputs, Path(scratch))
        try:
            return _measure(state, Path(scratch))
        except TimeUp as up:
            return _stopped_at_the_limit(state, up)


def _stopped_at_the_limit(state: RunState, up: TimeUp) -> Report:
    """The time limit stopped a step under way (its call had not returned) or left none to start one:
    the report of what was measured, marked incomplete; a refusal when predict itself was not measured."""
    timing.require_the_users_path(state)
    steps = state.steps
    where = f"{steps.stage}: {steps.detail}" if steps.detail else steps.stage
    limit = f"Stopped at the time limit (--time-limit {state.config.time_limit_s:g} s)"
    cut = (f"{limit} during {where}, a call that had not returned after {up.ran_s:.0f} s" if up.started else
           f"{limit} before {where}")
    state.budget.cut(f"{cut}; what was measured before it is kept.")
    return report.run(state, incomplete=True)


def _measure(state: RunState, scratch: Path) -> Report:
    """The plan's steps after loading; what was measured is kept, however late a stop or a failure comes."""
    doing = "timing predict"
    try:
        groups = plan.groups(state.config)
        if not groups or groups[0].label != plan.QUESTION.label:
            profile.run(state, scratch)  # nothing to profile: its steps are shown as skipped
        for group in groups:
            doing = f"timing {group.label}"
            keep = {plan.QUESTION.label: lambda: _after_question_s(state),
                    plan.OTHERS.label: lambda: beyond.minimum_s(state)}.get(group.label, lambda: 0.0)
            if not timing.run_group(state, group, keep):
                raise KeyboardInterrupt
            if group.label == plan.QUESTION.label:
                doing = "profiling predict"
                profile.run(state, scratch)
        note = timing.unanchored_note(state)
        state.notes += [note] if note else []
        doing = "the steps after timing (C++ floor, profiling, the steps beyond one batch or the report)"
        profile.run(state, scratch, extras=True)
        cpp.run(state, timing.settings(state))
        beyond.run(state)
        training.run(state)
        return report.run(state)
    except TimeUp:
        raise  # the pipeline reports what was measured, profiles included
    except TimeUp:
        raise  # the pipeline reports what was measured, profiles included
    except KeyboardInterrupt:
        state.notes.insert(0, f"Interrupted by {stop_cause()} while {doing}: the figures are those measured "
                              "before the interruption; the report holds no profiles.")
        state.profiles = []
        raise RunInterrupted(state.freeze(incomplete=True)) from None
    except KdiagError:
        raise  # a refusal (the user's own path cannot be measured): one line, exit 2
    except Exception as exc:
        if not any(r.available for r in state.results):
            raise
        state.notes.insert(0, f"Stopped while {doing} by {type(exc).__name__}: {first_line(exc)}; the figures "
                              "are those measured before it; the report holds no profiles.")
        state.profiles = []
        raise RunFailed(state.freeze(incomplete=True)) from exc


def _after_question_s(state: RunState) -> float:
    """What the timing of predict and compile() leaves before the deadline: the profiles and the
    direct paths at their minimum (estimated from the first calls)."""
    known = timing.known(state)
    first, second = state.first_calls.get(plan.ids.PREDICT.name, (0.0, 0.0))
    passes = profile.planned_steps(state.config)
    profiles = passes * (timing.instance_s(state) + plan.profiled_call_s(first, cold=True)
                         + plan.MIN_PROFILE_CALLS * plan.profiled_call_s(second))
    return profiles + plan.direct_minimum_s(state.config, known)


class _scratch_dir:
    """A scratch directory: the caller's, or a temporary one removed afterwards (kdiag.tempdirs: a
    killed run's is removed by the next run)."""

    def __init__(self, given: Optional[Path]):
        self.given = given
        self.tmp = None

    def __enter__(self):
        if self.given is not None:
            Path(self.given).mkdir(parents=True, exist_ok=True)
            return self.given
        self.tmp = temporary_directory(prefix="kdiag-")
        return self.tmp.__enter__()

    def __exit__(self, *exc):
        if self.tmp is not None:
            self.tmp.__exit__(*exc)
        return False
