"""Step 3: prepare every selected strategy, time them interleaved, check their outputs.

Each strategy gets a StrategyResult: measured (with its outputs check against the reference), or
a reason it was not. One strategy that fails never sinks the run; only the user's own path
(predict, or a plain SavedModel's serving signature) not being measurable is a refusal.
"""

from __future__ import annotations

import warnings
from typing import Callable, Dict, List, Optional

from kdiag.datamodel.config import RunConfig
from kdiag.datamodel.report import StrategyResult
from kdiag.datamodel.strategies import PREDICT, REFERENCE_ORDER
from kdiag.engine import check
from kdiag.engine.measure import MeasureSettings, MeasurementInterrupted, Timed, measure_interleaved
from kdiag.engine.runtimes.base import Outputs, Strategy
from kdiag.engine.runtimes.strategies import BY_KEY, STRATEGIES
from kdiag.engine.tf import native_stderr_captured
from kdiag.errors import KdiagError, NotApplicable, first_line
from kdiag.signals import stop_cause
from kdiag.steps.budget import RERUN
from kdiag.steps.state import RunState
from kdiag.steps.worker import TimeUp


def selected(config: RunConfig) -> List[Strategy]:
    """The strategies to time: those asked for (in that order, once each), else all of them."""
    return [BY_KEY[k] for k in dict.fromkeys(config.strategies)] if config.strategies else list(STRATEGIES)


def planned_steps(config: RunConfig) -> int:
    return len(selected(config)) + 1  # one per strategy prepared, one for timing them together


def settings(state: RunState, reserve_s: float) -> MeasureSettings:
    """The timing loop's settings; its deadline keeps `reserve_s` for the steps after it."""
    config = state.config
    return MeasureSettings(budget_s=config.budget_s, min_calls=config.min_calls, max_wall_s=config.wall_cap_s,
                           deadline=state.budget.deadline_for(reserve_s))


def run(state: RunState, strategies: List[Strategy], settings: MeasureSettings) -> bool:
    """Prepare and time every strategy, then check their outputs against the reference.

    Adds a StrategyResult per strategy to `state` and sets its reference outputs. Returns False
    when Ctrl-C cut the timing short (what was measured is kept).
    """
    prepared, unavailable, notes = _prepare_all(state, strategies, settings)
    users_path = PREDICT.name if state.loaded.is_keras else REFERENCE_ORDER[1]
    if users_path in unavailable:  # fail before spending time on the others
        _refuse_unmeasurable(users_path, unavailable[users_path])

    from kdiag.engine.phases.profiling import capture_tf_warnings

    completed, time_up = True, None
    live = []  # the timing loop's view of what it measured so far, for a stop it cannot wait for
    with capture_tf_warnings() as tf_warnings:  # retracing warnings go into the report, not the terminal
        try:
            state.steps.next("measure", f"{len(prepared)} strategies, interleaved")
            timed = state.worker.call(lambda: measure_interleaved(
                prepared, settings, on_progress=lambda name, what: state.steps.update(f"{name}: {what}"),
                around_first_call=native_stderr_captured, snapshot=live.append))
        except MeasurementInterrupted as stop:  # stopped on this thread (a worker's job that ended so)
            timed, completed = stop.partial, False
        except KeyboardInterrupt as stop:  # Ctrl-C, SIGTERM or the time limit, whatever the call was doing
            timed, completed = (live[0]() if live else {}), False
            time_up = stop if isinstance(stop, TimeUp) else None
    # TensorFlow names the function, not the strategy: its warnings belong to the report as a whole.
    state.notes += [f"TensorFlow warned while timing: {warning}" for warning in tf_warnings]
    state.reference_name, state.reference_outputs = _reference(timed)
    for strategy in strategies:
        state.results.append(_result(strategy, unavailable, timed, notes.get(strategy.name, []),
                                     "" if completed else _stopped_text(time_up),
                                     state.reference_name, state.reference_outputs))
    if time_up is not None:
        raise time_up  # the steps after timing have no time left: the pipeline reports what was measured
    if completed:
        require_the_users_path(state)
    return completed


# How the slow steps of preparing look while they run (the display keeps ticking meanwhile).
_PREPARE_DETAIL = {"tflite": " (exporting and converting)", "xla": " (compiling with XLA)",
                   "savedmodel": " (exporting)", "predict-compiled": " (loading a compiled instance)"}


def _prepare_all(state: RunState, strategies: List[Strategy], settings: MeasureSettings):
    """(prepared calls, reasons of those that are not, captured warnings), by strategy name."""
    prepared: Dict[str, Callable] = {}
    unavailable: Dict[str, str] = {}
    notes: Dict[str, List[str]] = {}
    for strategy in strategies:
        why = _not_started(state, strategy, settings)
        if why:
            unavailable[strategy.name] = why
            continue
        state.steps.next("prepare", strategy.name + _PREPARE_DETAIL.get(strategy.identity.key, ""))
        try:
            call, why, caught = state.worker.call(lambda: _prepare(state, strategy))
        except TimeUp as up:  # the limit came while preparing it (or before): it is not measured
            call, caught = None, []
            why = (f"not measured: preparing it did not finish within the time limit (stopped after "
                   f"{up.ran_s:.0f} s); {RERUN}" if up.started else
                   f"not measured: the time limit left no time to prepare it; {RERUN}")
        if call is None:
            unavailable[strategy.name] = why
        else:
            prepared[strategy.name] = call
        notes[strategy.name] = _unique_warnings(caught)
    return prepared, unavailable, notes


def _prepare(state: RunState, strategy: Strategy):
    """On the worker: (the prepared call or None, why not, the warnings it raised)."""
    with warnings.catch_warnings(record=True) as caught, native_stderr_captured():
        warnings.simplefilter("always")
        try:
            return strategy.prepare(state.context), "", caught
        except NotApplicable as exc:
            return None, f"not available: {exc}", caught
        except KdiagError as exc:  # one strategy that cannot run never sinks the run
            return None, f"failed to prepare: {exc.message}", caught
        except Exception as exc:
            return None, f"failed to prepare: {type(exc).__name__}: {first_line(exc)}", caught


def _not_started(state: RunState, strategy: Strategy, settings: MeasureSettings) -> str:
    """Why a strategy is not even prepared ("" when it is): the time limit, no Keras model, the memory."""
    if state.budget.past(settings.deadline) and strategy.name != PREDICT.name:
        state.steps.skip()
        return f"not measured: the time limit was reached while preparing the strategies before it; {RERUN}"
    if strategy.needs_keras and not state.loaded.is_keras:
        return "not applicable: needs a Keras model; this is a plain SavedModel"
    return state.memory_skip.get(strategy.identity.key, "")


def require_the_users_path(state: RunState) -> None:
    """Exit 2 is for a run that cannot measure the user's own path at all: predict, or for a
    plain SavedModel its serving signature. Every other failure is a row of the report."""
    name = PREDICT.name if state.loaded.is_keras else REFERENCE_ORDER[1]
    result = next((r for r in state.results if r.name == name), None)
    if result is not None and not result.available:
        _refuse_unmeasurable(name, result.reason)


def _refuse_unmeasurable(name: str, reason: str) -> None:
    fix = (RERUN if "time limit" in reason else
           "check the model and its inputs (--inputs, --input-shape); --debug shows the traceback")
    raise KdiagError(f"{name} could not be measured on this model ({reason.removesuffix('; ' + RERUN)})", fix)


def _result(strategy: Strategy, unavailable: Dict[str, str], timed: Dict[str, Timed], notes: List[str],
            stopped: str, reference_name: Optional[str], reference: Optional[Outputs]) -> StrategyResult:
    identity = strategy.identity

    def not_measured(reason: str) -> StrategyResult:
        return StrategyResult(identity.name, identity.snippet, False, reason, notes=notes)

    if strategy.name in unavailable:
        return not_measured(unavailable[strategy.name])
    outcome = timed.get(strategy.name)
    if outcome is None or (stopped and outcome.measurement.count == 0):  # None: stopped before timing began
        return not_measured(f"not measured: {stopped}")
    if outcome.error:
        return not_measured(f"failed when called: {outcome.error}")
    if outcome.skipped:
        return not_measured(f"{outcome.skipped}; {RERUN}")
    if outcome.measurement.count == 0:
        return not_measured(f"not measured: the time limit was reached after its first call, before any timed "
                            f"call; {RERUN}")
    outputs = (check.checked(reference_name, reference, outcome.first_output, outcome.later_output)
               if reference is not None else None)
    return StrategyResult(identity.name, identity.snippet, True, measurement=outcome.measurement, outputs=outputs,
                          notes=notes)


def _stopped_text(time_up: Optional[TimeUp]) -> str:
    """Why a strategy the stop caught before its first timed call has no figures."""
    if time_up is None:
        return f"interrupted ({stop_cause()})"
    return f"the time limit was reached before its first timed call; {RERUN}"


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
