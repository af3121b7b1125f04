"""Steps 1, 3 and 4 of the plan (kdiag.steps.plan): a group of strategies prepared, timed
interleaved, their outputs checked.

Each strategy gets a StrategyResult: measured (with its outputs check against the reference), or
a reason it was not. One strategy that fails never sinks the run; only the user's own path
(predict, or a plain SavedModel's serving signature) not being measurable is a refusal.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Callable, Dict, List, Optional, Tuple

from kdiag.datamodel import strategies as ids
from kdiag.datamodel.report import StrategyResult
from kdiag.datamodel.strategies import PREDICT, REFERENCE_ORDER
from kdiag.engine import check
from kdiag.engine.measure import Anchor, MeasureSettings, MeasurementInterrupted, Timed, measure_interleaved
from kdiag.engine.runtimes.base import Strategy
from kdiag.engine.runtimes.strategies import BY_KEY, BY_NAME
from kdiag.engine.tf import native_stderr_captured
from kdiag.errors import KdiagError, NotApplicable, first_line
from kdiag.signals import stop_cause
from kdiag.steps import beyond, plan
from kdiag.steps.budget import RERUN
from kdiag.steps.state import RunState
from kdiag.steps.worker import TimeUp


def settings(state: RunState) -> MeasureSettings:
    """The timing loop's settings; its deadline keeps the report's reserve."""
    config = state.config
    return MeasureSettings(budget_s=config.budget_s, min_calls=config.min_calls, max_wall_s=config.wall_cap_s,
                           precision=config.precision, deadline=state.budget.deadline_for(state.budget.reserve_s))


def known(state: RunState) -> plan.Known:
    """What the plan's estimates go on: medians and first calls measured, preparations timed (by key)."""
    medians, firsts = {}, {}
    for result in state.results:
        identity = ids.BY_NAME.get(result.name)
        if identity is None or not result.available or not result.measurement.count:
            continue
        medians[identity.key] = result.measurement.median_s
        firsts[identity.key] = result.measurement.first_call_s
    for name, (first, second) in state.first_calls.items():  # a group still being timed
        key = ids.BY_NAME[name].key
        firsts.setdefault(key, first)
        medians.setdefault(key, second)
    return plan.Known(medians, firsts, dict(state.prepared_s), state.config.min_calls)


def run_group(state: RunState, group: plan.TimingGroup, keep_s: Callable[[], float] = lambda: 0.0) -> bool:
    """Prepare and time one group, then check its outputs against the reference.

    Adds a StrategyResult per strategy to `state`. Returns False when Ctrl-C cut the timing short
    (what was measured is kept). `keep_s()`: what the budgets leave before the deadline for later steps.
    """
    strategies = [BY_KEY[k] for k in group.keys]
    prepared, unavailable, notes = _prepare_all(state, group, strategies)
    users_path = _users_path(state)
    if users_path in unavailable:
        _refuse_unmeasurable(users_path, unavailable[users_path])  # before spending time on the others
    names = ", ".join(prepared)
    if not prepared:
        _record(state, strategies, unavailable, {}, notes, True)
        state.steps.skip("measure", group.label, "nothing to time")
        return True
    anchored: List[Anchor] = []

    def anchor() -> Optional[Anchor]:  # decided once the group's first calls are known
        chosen = _anchor(state, group, prepared)
        anchored.extend([chosen] if chosen is not None else [])
        return chosen

    state.steps.next("measure", f"{names}, interleaved")
    from kdiag.engine.phases.profiling import capture_tf_warnings

    completed, time_up = True, None
    clock = state.budget.clock  # one clock for the run: the Budget's, progress's and the timing loop's
    started = clock()
    live = []  # the timing loop's view of what it measured so far, for a stop it cannot wait for
    with capture_tf_warnings() as tf_warnings:  # retracing warnings go into the report, not the terminal
        try:
            timed = state.worker.call(lambda: measure_interleaved(
                prepared, settings(state), on_progress=lambda name, what: state.steps.update(f"{name}: {what}"),
                around_first_call=native_stderr_captured, anchor=anchor,
                on_second_call=lambda *told: _second_call(state, *told), keep_s=keep_s, clock=clock,
                snapshot=live.append))
        except MeasurementInterrupted as stop:  # stopped on this thread (a worker's job that ended so)
            timed, completed = stop.partial, False
        except KeyboardInterrupt as stop:  # Ctrl-C, SIGTERM or the time limit, whatever the call was doing
            timed, completed = (live[0]() if live else {}), False
            time_up = stop if isinstance(stop, TimeUp) else None
    # TensorFlow names the function, not the strategy: its warnings belong to the report as a whole.
    state.notes += [f"TensorFlow warned while timing: {warning}" for warning in tf_warnings
                    if f"TensorFlow warned while timing: {warning}" not in state.notes]
    if anchored and PREDICT.name in timed:
        _check_drift(state, group, timed.pop(PREDICT.name), started)
    elif group.anchored and PREDICT.name in state.timed_samples:
        state.unanchored.append((group.label, started - state.group_started.get(plan.QUESTION.label, started)))
    state.group_started[group.label] = started
    if PREDICT.name in prepared:
        state.predict_call = prepared[PREDICT.name]  # for the anchors of the later groups
    _record(state, strategies, unavailable, timed, notes, "" if completed else _stopped_text(time_up))
    if time_up is not None:
        raise time_up  # the steps after timing have no time left: the pipeline reports what was measured
    if completed and users_path in group_names(group):
        require_the_users_path(state)
    return completed


#: How far one median moved between runs minutes apart on our 2-core machine (DESIGN.md).
MEASURED_DRIFT = 2.0


def unanchored_note(state: RunState) -> str:
    """One note for the groups predict was not timed again beside, where a drift could turn a verdict:
    a strategy within MEASURED_DRIFT of predict either way; "" when there are none."""
    predict = next((r for r in state.results if r.name == PREDICT.name and r.available), None)
    if predict is None:
        return ""
    groups = {g.label: g for g in plan.GROUPS}

    def close(label: str) -> bool:
        names = {BY_KEY[k].name for k in groups[label].keys if k in BY_KEY}
        ratios = [r.median_s / predict.median_s for r in state.results
                  if r.name in names and r.available and r.measurement.count]
        return any(1 / MEASURED_DRIFT <= ratio <= MEASURED_DRIFT for ratio in ratios)

    unanchored = [(label, seconds) for label, seconds in state.unanchored if close(label)]
    if not unanchored:
        return ""
    labels = " and ".join(label for label, _ in unanchored)
    apart = " and ".join(f"~{seconds:.0f} s" for _, seconds in unanchored)
    return (f"predict was not timed again beside {labels} (its calls would cost more than theirs, or than the time "
            f"left): ratios of predict against them rest on medians timed {apart} apart.")


def group_names(group: plan.TimingGroup) -> List[str]:
    return [BY_KEY[k].name for k in group.keys]


def _users_path(state: RunState) -> str:
    return PREDICT.name if state.loaded.is_keras else REFERENCE_ORDER[1]


# How the slow steps of preparing look while they run (the display keeps ticking meanwhile).
_PREPARE_DETAIL = {"tflite": " (exporting and converting)", "xla": " (compiling with XLA)",
                   "savedmodel": " (exporting)", "predict-compiled": " (loading a compiled instance)"}


def _prepare_all(state: RunState, group: plan.TimingGroup, strategies: List[Strategy]):
    """(prepared calls, reasons of those that are not, captured warnings), by strategy name."""
    prepared: Dict[str, Callable] = {}
    unavailable: Dict[str, str] = {}
    notes: Dict[str, List[str]] = {}
    admitted_s = 0.0  # what the strategies admitted so far in a gated group are estimated to need
    for strategy in strategies:
        why, needs = _not_started(state, group, strategy, admitted_s)
        if why:
            unavailable[strategy.name] = why
            state.steps.skip("prepare", strategy.name, why.split(":")[0])
            continue
        admitted_s += needs
        state.steps.next("prepare", strategy.name + _PREPARE_DETAIL.get(strategy.identity.key, ""))
        began = state.budget.clock()
        try:
            call, why, caught = state.worker.call(lambda: _prepare(state, strategy))
        except TimeUp as up:  # the limit came while preparing it (or before): it is not measured
            call, caught = None, []
            why = (f"not measured: preparing it did not finish within the time limit (stopped after "
                   f"{up.ran_s:.0f} s); {RERUN}" if up.started else
                   f"not measured: the time limit left no time to prepare it; {RERUN}")
        state.prepared_s[strategy.identity.key] = state.budget.clock() - began
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


def _not_started(state: RunState, group: plan.TimingGroup, strategy: Strategy,
                 admitted_s: float) -> Tuple[str, float]:
    """Why a strategy is not even prepared ("" when it is), and its estimated cost: the time limit
    (for a gated group, its estimated start and --min-calls calls), no Keras model, the memory."""
    budget = state.budget
    users_path = strategy.name == _users_path(state)
    if budget.past(budget.deadline_for(budget.reserve_s)) and not users_path:
        return f"not measured: the time limit was reached before it was prepared; {RERUN}", 0.0
    if strategy.needs_keras and not state.loaded.is_keras:
        return "not applicable: needs a Keras model; this is a plain SavedModel", 0.0
    if strategy.identity.key in state.memory_skip:
        return state.memory_skip[strategy.identity.key], 0.0
    if not group.gated or users_path:
        return "", 0.0
    needs = plan.start_estimate_s(known(state), strategy.identity.key)
    # The data-size sweep keeps the time of its three smallest counts: fewer claim nothing.
    keep = budget.reserve_s + beyond.minimum_s(state)
    if needs is not None and not budget.fits(plan.START_MARGIN * (admitted_s + needs) + keep):
        budget.cut(needs_s=plan.START_MARGIN * (admitted_s + needs) + keep)  # what the gate asked for
        return budget.not_started(needs, admitted_s, keep), 0.0
    return "", needs or 0.0


def _anchor(state: RunState, group: plan.TimingGroup, prepared: Dict[str, Callable]) -> Optional[Anchor]:
    """predict again beside a later group, when planned, measured before, and it fits."""
    call = state.predict_call
    if not group.anchored or call is None or PREDICT.name in prepared:
        return None
    facts = known(state)
    estimate = sum(plan.start_estimate_s(facts, BY_NAME[name].identity.key, prepared=False) or 0.0
                   for name in prepared)
    calls = plan.anchor_calls(group, facts, estimate)
    if not calls or not state.budget.fits(estimate + calls * facts.medians[PREDICT.key] + state.budget.reserve_s):
        return None
    predict = next(r for r in state.results if r.name == PREDICT.name)
    return Anchor(PREDICT.name, call, predict.measurement.calls_per_sample, calls)


def instance_s(state: RunState) -> float:
    """What loading a fresh instance of the model takes: predict (compiled)'s preparation when it was
    timed (loading the run's first instance also imported TensorFlow), else loading's time."""
    return state.prepared_s.get(ids.PREDICT_COMPILED.key, state.loaded.load_time_s)


def _second_call(state: RunState, name: str, first_s: float, second_s: float) -> None:
    """After predict's first two calls: say once, up front, if the verdicts cannot come within the limit."""
    state.first_calls[name] = (first_s, second_s)
    budget = state.budget
    if name != PREDICT.name or not budget.limited or state.answer_cost_said:
        return
    cost = plan.answer_cost(state.config, budget.elapsed(), budget.reserve_s, instance_s(state), first_s, second_s)
    if cost.needs_s > budget.limit_s:
        state.answer_cost_said = True
        line = cost.line()
        state.steps.notice(line)
        state.notes.append(line[0].upper() + line[1:] + ".")


def _check_drift(state: RunState, group: plan.TimingGroup, again: Timed, started: float) -> None:
    state.retimed.setdefault(PREDICT.name, []).append(again.measurement)
    first = state.timed_samples.get(PREDICT.name, ())
    apart = started - state.group_started.get(plan.QUESTION.label, started)
    note = plan.drift_note(group.label, first, again.samples, apart)
    if note:
        state.notes.append(note)


def _record(state: RunState, strategies: List[Strategy], unavailable: Dict[str, str], timed: Dict[str, Timed],
            notes: Dict[str, List[str]], stopped: str) -> None:
    """The group's results, its outputs kept for the check; every result checked once the reference is known."""
    for strategy in strategies:
        outcome = timed.get(strategy.name)
        if outcome is not None and not outcome.error and outcome.measurement.count:
            state.first_outputs[strategy.name] = outcome.first_output
            state.later_outputs[strategy.name] = outcome.later_output
            state.timed_samples[strategy.name] = outcome.samples
        state.results.append(_result(strategy, unavailable, outcome, notes.get(strategy.name, []), stopped))
    if state.reference_name is None:
        state.reference_name, state.reference_outputs = _reference(timed)
    _check_outputs(state)
    # The report lists them in the data model's order, whatever order the plan timed them in.
    order = {s.name: i for i, s in enumerate(ids.ALL_STRATEGIES)}
    state.results.sort(key=lambda r: order.get(r.name, math.inf))


def _check_outputs(state: RunState) -> None:
    if state.reference_outputs is None:
        return
    for index, result in enumerate(state.results):
        if result.available and result.outputs is None and result.name in state.first_outputs:
            outputs = check.checked(state.reference_name, state.reference_outputs, state.first_outputs[result.name],
                                    state.later_outputs.get(result.name))
            state.results[index] = dataclasses.replace(result, outputs=outputs)


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


def _result(strategy: Strategy, unavailable: Dict[str, str], outcome: Optional[Timed], notes: List[str],
            stopped: str) -> StrategyResult:
    identity = strategy.identity

    def not_measured(reason: str) -> StrategyResult:
        return StrategyResult(identity.name, identity.snippet, False, reason, notes=notes)

    if strategy.name in unavailable:
        return not_measured(unavailable[strategy.name])
    if outcome is None or (stopped and outcome.measurement.count == 0):  # None: stopped before timing began
        return not_measured(f"not measured: {stopped or 'the time limit was reached before its first timed call'}")
    if outcome.error:
        return not_measured(f"failed when called: {outcome.error}")
    if outcome.skipped:
        return not_measured(f"{outcome.skipped}; {RERUN}")
    if outcome.measurement.count == 0:
        return not_measured(f"not measured: the time limit was reached after its first call, before any timed "
                            f"call; {RERUN}")
    return StrategyResult(identity.name, identity.snippet, True, measurement=outcome.measurement, notes=notes)


def _stopped_text(time_up: Optional[TimeUp]) -> str:
    """Why a strategy the stop caught before its first timed call has no figures."""
    if time_up is None:
        return f"interrupted ({stop_cause()})"
    return f"the time limit was reached before its first timed call; {RERUN}"


def _reference(timed: Dict[str, Timed]):
    for name in REFERENCE_ORDER:
        outcome = timed.get(name)
        if outcome is not None and not outcome.error and outcome.measurement.count:
            return name, outcome.first_output
    return None, None


def _unique_warnings(caught) -> List[str]:
    seen = []
    for item in caught:
        text = "warning: " + " ".join(str(item.message).split())[:300]
        if text not in seen:
            seen.append(text)
    return seen
