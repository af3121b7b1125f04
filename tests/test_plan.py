"""The plan (kdiag.steps.plan) on a fake clock: the order of its steps, what it says up front about
the time a full answer needs, and the progress it reports. No TensorFlow: fake strategies advance
the Budget's clock by scripted durations, and the profiles, the steps beyond one batch and the
training check are stand-ins that say when they ran.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest

import factories as fx
from kdiag.datamodel import strategies as ids
from kdiag.datamodel.config import RunConfig
from kdiag.engine.intake.inputs import ModelInputs
from kdiag.engine.intake.limits import StrategyCost
from kdiag.engine.intake.load import LoadedModel
from kdiag.engine.intake.specs import InputSpec
from kdiag.engine.runtimes.base import Strategy
from kdiag.steps import pipeline, plan
from kdiag.steps.budget import Budget
from kdiag.steps.state import RunState, StepCounter


class InlineWorker:
    """The run's worker on the fake clock: each job runs here, at once (kdiag.steps.worker waits in real time)."""

    def call(self, fn, keep_s=0.0):
        return fn()


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class FakeModel:
    def count_params(self):
        return 13


# Seconds per call of each fake strategy (first call, then the others), and what preparing it takes.
FAST_MODEL = {"predict": (0.2, 0.04), "predict-compiled": (0.2, 0.04), "predict_on_batch": (0.02, 4e-4),
              "concrete": (0.01, 2e-4), "eager": (0.01, 1.2e-3), "tf-function": (0.02, 3.6e-4),
              "xla": (0.1, 3e-4), "savedmodel": (0.02, 3.7e-4), "tflite": (1e-4, 2e-6)}
PREPARE_S = {"savedmodel": 0.4, "tflite": 0.5, "xla": 0.05}


@dataclasses.dataclass
class Harness:
    """A run with fake strategies on a fake clock; `events` says what ran, in order."""

    clock: Clock
    events: List[str]
    updates: list

    def strategy(self, identity, first_s: float, call_s: float) -> Strategy:
        def prepare(ctx):
            self.events.append(f"prepare {identity.name}")
            self.clock.now += PREPARE_S.get(identity.key, 0.0)
            made = []

            def call():
                if not made or self.events[-1] != f"call {identity.name}":
                    self.events.append(f"call {identity.name}")
                self.clock.now += first_s if not made else call_s
                made.append(1)
                return [np.ones(3, "float32")]

            return call

        return Strategy(identity, prepare, cost=StrategyCost(0))


def run_fake(monkeypatch, tmp_path: Path, config: RunConfig, timings: Dict[str, tuple] = FAST_MODEL,
             keras: bool = True, graph_share: Optional[float] = None) -> tuple:
    """The run's steps after loading, on fake strategies; (the Report, the harness)."""
    clock = Clock()
    harness = Harness(clock, [], [])
    fakes = {key: harness.strategy(ids.BY_KEY[key], *timings[key]) for key in timings}
    by_name = {s.name: s for s in fakes.values()}
    monkeypatch.setattr("kdiag.steps.timing.BY_KEY", fakes)
    monkeypatch.setattr("kdiag.steps.timing.BY_NAME", by_name)
    monkeypatch.setattr("kdiag.steps.profile.BY_KEY", fakes)
    monkeypatch.setattr("kdiag.steps.profile.BY_NAME", by_name)

    def fake_profiles(state, scenarios, out_dir, profiles, later_s=0.0):
        for strategy in scenarios:
            harness.events.append(f"profile {strategy.name}")
            state.steps.next("profile", strategy.name)
            clock.now += 3 * timings[strategy.identity.key][1]
            shares = {"graph execution": graph_share or 0.0, "tf.data pipeline": 1 - (graph_share or 0.0)}
            profiles.append(fx.profile(strategy.name, shares, 40.0))

    monkeypatch.setattr("kdiag.steps.profile.run_profiles", fake_profiles)
    from kdiag.engine.beyond import steps as beyond_steps

    def stand_in(step):
        def run(given, budget_s, say):
            harness.events.append(f"beyond {step.label}")
            clock.now += budget_s / 2
            return step.not_run("stand-in")

        return dataclasses.replace(step, run=run)

    monkeypatch.setattr(beyond_steps, "BEYOND_STEPS", tuple(stand_in(s) for s in beyond_steps.BEYOND_STEPS))
    monkeypatch.setattr("kdiag.engine.training.training_mode_check",
                        lambda ctx, reference: (harness.events.append("training check") or ([], None)))
    monkeypatch.setattr("kdiag.engine.environment.collect", lambda: fx.environment())
    budget = Budget(config.time_limit_s, clock=clock)
    state = RunState(config, budget, StepCounter(harness.updates.append, pipeline.planned_total(config), budget),
                     started="2025-01-01T00:00:00+00:00", worker=InlineWorker())
    state.steps.next("load", "fake")
    state.loaded = LoadedModel("fake", "example:fake", "example", [InputSpec("x", (None, 4), "float32")], "single",
                               load_time_s=0.5, model=FakeModel() if keras else None)
    state.steps.next("inputs", "fake")
    state.inputs = ModelInputs({"x": np.zeros((32, 4), "float32")}, {"x": "zeros"})
    state.context = object()
    report = pipeline._measure(state, tmp_path)
    return report, harness


def first_index(events: List[str], prefix: str) -> int:
    return next(i for i, e in enumerate(events) if e.startswith(prefix))


def last_index(events: List[str], prefix: str) -> int:
    return max(i for i, e in enumerate(events) if e.startswith(prefix))


# --- the order ----------------------------------------------------------------------------------


def test_the_plan_answers_the_question_first_then_profiles_then_direct_paths_then_the_rest(monkeypatch, tmp_path):
    config = RunConfig(example="tiny", memory_loops=True, ops=True)
    report, run = run_fake(monkeypatch, tmp_path, config)
    e = run.events
    # (i) predict and predict (compiled), interleaved, before anything else is prepared
    assert e[:2] == ["prepare predict", "prepare predict (compiled)"]
    assert e[2:4] == ["call predict", "call predict (compiled)"]  # their cold calls, then rounds of both
    question_done = last_index(e, "call predict (compiled)")
    # (ii) both profiled, right after
    assert e[question_done + 1:question_done + 3] == ["profile predict", "profile predict (compiled)"]
    # (iii) the direct paths, prepared and timed before any other strategy is prepared
    direct = first_index(e, "prepare predict_on_batch")
    assert direct == question_done + 3 and e[direct + 1] == "prepare concrete function"
    others = first_index(e, "prepare model(x) eager")
    assert last_index(e, "call concrete function") < others and last_index(e, "call predict_on_batch") < others
    # (iv) the others, cheapest preparation first, each prepared before the group is timed
    prepared = [x.removeprefix("prepare ") for x in e[others:others + 5]]
    assert prepared == ["model(x) eager", "tf.function", "XLA (jit_compile)", "SavedModel serve", "TFLite"]
    # (v) then the steps beyond one batch, the training check, and nothing after it
    beyond = first_index(e, "beyond")
    assert last_index(e, "call") < beyond
    assert [x for x in e[beyond:]] == ["beyond data size", "beyond batch size", "beyond memory over many calls",
                                       "beyond op breakdown", "beyond intra-op threads", "training check"]
    assert all(r.available and r.measurement.count >= 5 for r in report.strategies)


def test_predict_is_timed_again_beside_a_group_only_when_that_costs_no_more_than_the_group(monkeypatch, tmp_path):
    # Here predict costs 40 ms a call against the direct paths' 0.2-0.4 ms: no anchor. A drift of 2x
    # cannot turn a 100x verdict, so no note either.
    report, run = run_fake(monkeypatch, tmp_path, RunConfig(example="tiny"))
    direct = run.events[first_index(run.events, "prepare predict_on_batch"):first_index(run.events, "prepare model")]
    assert "call predict" not in direct
    assert not any("not timed again" in n for n in report.notes)
    # A slow model under the time limit: no time for the anchor, and its direct paths within 2x of
    # predict, where a drift could turn the verdict: the note says how far apart they were timed.
    slow = {k: (2.0, 1.6 if k.startswith("predict") else 1.2) for k in FAST_MODEL}
    report, _ = run_fake(monkeypatch, tmp_path, RunConfig(example="tiny", time_limit_s=60), timings=slow)
    note = next(n for n in report.notes if "not timed again" in n)
    assert note.startswith("predict was not timed again beside the direct paths (its calls would cost more than "
                           "theirs, or than the time left): ratios of predict against them rest on medians timed ~")
    # A slow model, where predict costs about what its direct paths do: predict joins them, one call a round.
    slow = {k: (2.0, 1.6 if k.startswith("predict") else 1.2) for k in FAST_MODEL}
    report, run = run_fake(monkeypatch, tmp_path, RunConfig(example="tiny", time_limit_s=0), timings=slow)
    direct = run.events[first_index(run.events, "prepare predict_on_batch"):first_index(run.events, "prepare model")]
    assert direct.count("call predict") == 5
    predict = report.strategy("predict")
    assert predict.measurement.count == 5 and len(predict.retimed) == 2  # the figures stay the first group's


def test_a_strategy_whose_start_does_not_fit_is_not_prepared_and_the_row_says_why(monkeypatch, tmp_path):
    slow = dict(FAST_MODEL, predict=(2.0, 1.6), **{"predict-compiled": (2.0, 1.6)})
    slow.update({k: (1.5, 1.2) for k in ("predict_on_batch", "concrete", "eager", "tf-function", "xla",
                                         "savedmodel", "tflite")})
    report, run = run_fake(monkeypatch, tmp_path, RunConfig(example="tiny", time_limit_s=60), timings=slow)
    for name in ("predict", "predict (compiled)", "predict_on_batch", "concrete function"):
        assert report.strategy(name).measurement.count >= 5, name  # steps 1 and 3: judged
    assert {p.scenario for p in report.profiles} == {"predict", "predict (compiled)"}  # step 2
    left_out = [r for r in report.strategies if r.reason.startswith("not measured: would take")]
    assert left_out and all(f"prepare {r.name}" not in run.events for r in left_out)
    assert run.clock.now - 1000.0 <= 60.0


# --- stopping, and what a full answer costs -----------------------------------------------------


def test_a_slow_model_is_told_up_front_what_a_judged_answer_needs(monkeypatch, tmp_path):
    slow = {k: (2.0, 1.6 if k.startswith("predict") else 1.2) for k in FAST_MODEL}
    report, run = run_fake(monkeypatch, tmp_path, RunConfig(example="tiny", time_limit_s=30), timings=slow)
    said = [u.notice for u in run.updates if u.notice]
    assert len(said) == 1
    assert said[0].startswith("one predict call takes ~1.6 s: a judged answer needs ~")
    needs = int(said[0].split("needs ~")[1].split(" s")[0])
    assert needs > 30 and said[0].endswith(f"the limit is 30 s (--time-limit {-(-needs * 12 // 100) * 10} to get it)")
    assert any(n.startswith("One predict call takes ~1.6 s") for n in report.notes)
    # Said after predict's first two calls, before anything else was timed.
    told = next(i for i, u in enumerate(run.updates) if u.notice)
    assert all(u.stage in ("load", "inputs", "prepare", "measure") for u in run.updates[:told + 1])


def test_a_model_whose_answer_fits_is_told_nothing(monkeypatch, tmp_path):
    report, run = run_fake(monkeypatch, tmp_path, RunConfig(example="tiny"))
    assert not any(u.notice for u in run.updates)
    assert not any("judged answer" in n for n in report.notes)


def test_the_estimate_behind_the_line_adds_up_the_steps_to_the_verdicts():
    cost = plan.answer_cost(RunConfig(example="tiny", time_limit_s=60), elapsed_s=6.0, reserve_s=5.0,
                            instance_s=0.5, first_s=2.0, second_s=1.6)
    # predict 5 calls; compiled: a load, a first call, 5 calls; two profiles (a load, a cold call under
    # cProfile, 2 warm ones); two direct paths (a first call and 5 calls each); the report's reserve.
    profiled = 0.5 + (2.0 + 1.0) + 2 * (1.6 + 0.1)
    expected = 6.0 + 5 * 1.6 + (0.5 + 2.0 + 5 * 1.6) + 2 * profiled + 2 * (2.0 + 5 * 1.6) + 5.0
    assert cost.needs_s == pytest.approx(expected)
    assert cost.line() == (f"one predict call takes ~1.6 s: a judged answer needs ~{expected:.0f} s; the limit is "
                           f"60 s (--time-limit {-(-expected * 1.2 // 10) * 10:.0f} to get it)")


def test_without_a_time_limit_every_strategy_reaches_the_minimum_whatever_its_call_costs(monkeypatch, tmp_path):
    slow = dict(FAST_MODEL, eager=(30.0, 25.0))  # an LSTM run op by op: 25 s a call, past its 6 s wall cap
    report, _ = run_fake(monkeypatch, tmp_path, RunConfig(example="tiny", time_limit_s=0, min_calls=5), timings=slow)
    eager = report.strategy("model(x) eager").measurement
    assert eager.count == 5 and not eager.stopped_early
    assert all(r.measurement.count >= 5 for r in report.strategies)


# --- progress --------------------------------------------------------------------------------------


def test_progress_counts_every_planned_step_once_and_its_clock_never_goes_back(monkeypatch, tmp_path):
    slow = dict(FAST_MODEL, predict=(2.0, 1.6), **{"predict-compiled": (2.0, 1.6)})
    slow.update({k: (1.5, 1.2) for k in ("predict_on_batch", "concrete", "eager", "tf-function", "xla",
                                         "savedmodel", "tflite")})
    config = RunConfig(example="tiny", time_limit_s=40)
    report, run = run_fake(monkeypatch, tmp_path, config, timings=slow)
    updates = run.updates
    total = pipeline.planned_total(config)
    assert {u.total_steps for u in updates} == {total}  # fixed from the first line to the last
    steps = [u.step for u in updates]
    assert steps == sorted(steps) and sorted(set(steps)) == list(range(1, total + 1))  # each step, none left out
    assert all(b.elapsed_s >= a.elapsed_s for a, b in zip(updates, updates[1:]))
    skipped = [u.line for u in updates if "skipped (" in u.detail]
    assert any(line.startswith("[") and "prepare: TFLite: skipped (not measured)" in line for line in skipped)
    assert updates[-1].step == total and updates[-1].stage == "report"


def test_a_plain_savedmodel_shows_the_keras_only_steps_as_skipped(monkeypatch, tmp_path):
    config = RunConfig(example="tiny")
    report, run = run_fake(monkeypatch, tmp_path, config, keras=False)
    lines = [u.line for u in run.updates]
    assert any("prepare: predict: skipped (not applicable)" in line for line in lines)
    assert any("profile: predict: skipped (not measured)" in line for line in lines)
    assert {u.total_steps for u in run.updates} == {pipeline.planned_total(config)}
    assert report.strategy("SavedModel serve").measurement.count >= 5
    assert report.strategy("TFLite").outputs.reference == "SavedModel serve"


# --- which steps beyond one batch run ---------------------------------------------------------------


@pytest.mark.parametrize("share, runs", [(0.9, True), (0.1, False)])
def test_the_op_breakdown_runs_by_default_only_where_graph_execution_is_most_of_predict(monkeypatch, tmp_path,
                                                                                       share, runs):
    report, run = run_fake(monkeypatch, tmp_path, RunConfig(example="tiny"), graph_share=share)
    assert ("beyond op breakdown" in run.events) is runs
    assert ("beyond intra-op threads" in run.events) is runs
    assert "beyond memory over many calls" not in run.events  # off unless --memory-loop
    assert report.memory_loops.reason == "not run: off by default; --memory-loop runs it"
    if not runs:
        assert report.op_breakdown.reason.startswith("not run: graph execution is 10% of predict's profiled time")
        assert report.op_breakdown.reason.endswith("--ops runs it")
        skipped = [u.line for u in run.updates if "op breakdown: skipped" in u.line]
        assert len(skipped) == 1


def test_steps_the_user_turned_off_are_neither_planned_nor_reported(monkeypatch, tmp_path):
    config = RunConfig(example="tiny", sweeps=False, ops=False)
    report, run = run_fake(monkeypatch, tmp_path, config)
    assert not any(e.startswith("beyond") for e in run.events)
    assert report.data_size_sweep is None and report.op_breakdown is None and report.threads_effect is None
    assert report.memory_loops.reason.endswith("--memory-loop runs it")  # off by default: said, with its flag
    assert {u.total_steps for u in run.updates} == {pipeline.planned_total(config)}
