"""One run, top to bottom: `run(config) -> Report`.

The steps are declared in order, each with the progress steps it plans (`planned_steps`, so the
count is known before the first) and a `run(state)`: load and inputs, timing, then after timing
the C++ floor, the profiles, the steps beyond one batch and the training-mode check, then the
report. Every one asks the run's Budget for its time. Ctrl-C at any step after timing raises
`RunInterrupted` holding a Report of what was measured, marked incomplete; a failure there,
`RunFailed` (kdiag.steps.state).
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Optional

from kdiag.datamodel.config import RunConfig
from kdiag.datamodel.report import Report
from kdiag.errors import first_line
from kdiag.signals import stop_cause
from kdiag.steps import beyond, cpp, load, profile, report, timing, training
from kdiag.steps.budget import Budget
from kdiag.steps.state import Progress, RunFailed, RunInterrupted, RunState, StepCounter
from kdiag.steps.worker import ModelWorker, TimeUp
from kdiag.tempdirs import remove_stale, temporary_directory

#: Every step in order, for the step count the progress line shows from the start.
PLANNED = (lambda c: load.PLANNED_STEPS, timing.planned_steps, cpp.planned_steps, profile.planned_steps,
           beyond.planned_steps, lambda c: training.PLANNED_STEPS, lambda c: report.PLANNED_STEPS)


def run(config: RunConfig, progress: Optional[Progress] = None, out_dir: Optional[Path] = None,
        work_dir: Optional[Path] = None, started: Optional[float] = None) -> Report:
    """Carry out one validated RunConfig; see `kdiag.api.inspect` for what each step does.

    `started`: when the time limit began (a time.perf_counter() value; the CLI's is the moment it
    started, so the limit holds from the first byte); default: now."""
    from kdiag.engine.keras_child import current_keras

    if config.keras not in (None, current_keras()):  # --keras both, or the Keras this process does not run
        from kdiag.steps import keras_sides

        return keras_sides.run(config, progress, out_dir, work_dir,
                               run_here=lambda *args: run(*args, started=started))
    remove_stale()  # the temporary copies of the model that killed runs left behind
    budget = Budget(config.time_limit_s, started=started)
    state = RunState(config, budget, StepCounter(progress, sum(p(config) for p in PLANNED), budget),
                     started=datetime.datetime.now().astimezone().isoformat(timespec="seconds"), out_dir=out_dir,
                     worker=ModelWorker(budget))  # the model's work runs there (kdiag.steps.worker)
    try:
        return _run(state, work_dir)
    finally:
        state.worker.close()


def _run(state: RunState, work_dir: Optional[Path]) -> Report:
    config, budget = state.config, state.budget
    load.run(state)
    strategies = timing.selected(config)
    load.plan_memory(state, strategies, profile=config.profile)
    # Timing gets the time left but what the later steps need: the report always, and roughly what
    # loading took again for each fresh profiled instance (a compute-bound model's profile then
    # still gets its calls).
    settings = timing.settings(state, budget.reserve_s + (profile.reserve_s(state) if config.profile else 0.0))
    with _scratch_dir(work_dir) as scratch:
        from kdiag.engine.runtimes.base import StrategyContext

        state.context = StrategyContext(state.loaded, state.inputs, Path(scratch))
        try:
            if not timing.run(state, strategies, settings):
                state.notes.insert(0, f"Interrupted by {stop_cause()} while timing: the figures are those "
                                      "measured before the interruption; the report holds no profiles.")
                raise RunInterrupted(state.freeze(incomplete=True))
            return _after_timing(state, settings, Path(scratch))
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


def _after_timing(state: RunState, settings, scratch: Path) -> Report:
    """The steps after timing; what was timed is kept, however late a stop or a failure comes."""
    try:
        cpp.run(state, settings)
        profile.run(state, scratch)
        beyond.run(state)
        training.run(state)
        return report.run(state)
    except TimeUp:
        raise  # the pipeline reports what was measured, profiles included
    except KeyboardInterrupt:
        state.notes.insert(0, f"Interrupted by {stop_cause()} after timing (C++ floor, profiling, the steps "
                              "beyond one batch or the report): the figures are those measured before the "
                              "interruption; the report holds no profiles.")
        state.profiles = []
        raise RunInterrupted(state.freeze(incomplete=True)) from None
    except Exception as exc:
        state.notes.insert(0, f"Stopped after timing by {type(exc).__name__}: {first_line(exc)}; the figures "
                              "are those measured before it; the report holds no profiles.")
        state.profiles = []
        raise RunFailed(state.freeze(incomplete=True)) from exc


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
