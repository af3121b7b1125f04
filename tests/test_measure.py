"""Measurement and statistics, on a fake clock: no TensorFlow."""

import math

import numpy as np
import pytest

from kdiag.datamodel.measurement import Measurement, percentile
from kdiag.engine.measure import MeasureSettings, measure_interleaved


class FakeClock:
    """Each call to a strategy advances time by its scripted duration."""

    def __init__(self):
        self.now = 0.0
        self.order = []

    def __call__(self):
        return self.now

    def strategy(self, name, durations):
        durations = iter(durations)

        def call():
            self.order.append(name)
            self.now += next(durations)
            return [np.array([1.0])]

        return call


def test_percentiles_match_numpy():
    samples = [0.5, 0.1, 0.3, 0.9, 0.2, 0.7, 0.4]
    for q in (25, 50, 75, 90, 99):
        assert percentile(samples, q) == pytest.approx(np.percentile(samples, q))


def test_statistics_are_computed_from_raw_samples():
    m = Measurement("s", first_call_s=1.0, samples_s=(1.0, 2.0, 3.0, 4.0, 100.0))
    assert m.median_s == 3.0
    assert m.iqr_s == pytest.approx(4.0 - 2.0)
    assert m.p90_s == pytest.approx(np.percentile(m.samples_s, 90))
    assert m.calls_per_s == pytest.approx(1 / 3.0)
    assert m.noisy  # IQR/median = 2/3 > 10%


def test_steady_samples_are_not_noisy():
    m = Measurement("s", first_call_s=1.0, samples_s=(1.0, 1.01, 0.99, 1.0, 1.02))
    assert not m.noisy


def test_cold_call_is_reported_apart_and_budget_and_minimum_both_met():
    clock = FakeClock()
    calls = {"slow": clock.strategy("slow", [5.0] + [0.1] * 100)}
    settings = MeasureSettings(budget_s=1.0, min_calls=3, max_wall_s=100, warmup_calls=1, rounds=5)
    timed = measure_interleaved(calls, settings, clock=clock)
    m = timed["slow"].measurement
    assert m.first_call_s == 5.0
    assert 5.0 not in m.samples_s  # neither the cold call nor the warm-up is a sample
    assert sum(m.samples_s) >= 1.0 and m.count >= 3
    assert m.count == pytest.approx(10, abs=1)
    assert not m.stopped_early


def test_minimum_count_wins_over_budget_for_slow_strategies():
    clock = FakeClock()
    calls = {"s": clock.strategy("s", [2.0] * 20)}
    timed = measure_interleaved(calls, MeasureSettings(budget_s=0.1, min_calls=4, max_wall_s=100), clock=clock)
    assert timed["s"].measurement.count == 4


def test_wall_cap_stops_a_very_slow_strategy_and_says_so():
    clock = FakeClock()
    calls = {"eager_lstm": clock.strategy("eager_lstm", [3.0] * 50)}
    settings = MeasureSettings(budget_s=1.0, min_calls=5, max_wall_s=6.0, warmup_calls=1)
    m = measure_interleaved(calls, settings, clock=clock)["eager_lstm"].measurement
    assert m.stopped_early
    assert m.count < 5
    assert m.count >= 1


def test_rounds_interleave_strategies():
    clock = FakeClock()
    # Binary-exact durations, so each round's slice holds exactly one call.
    calls = {"a": clock.strategy("a", [0.125] * 100), "b": clock.strategy("b", [0.125] * 100)}
    settings = MeasureSettings(budget_s=0.625, min_calls=1, max_wall_s=100, warmup_calls=0, rounds=5)
    measure_interleaved(calls, settings, clock=clock)
    assert clock.order[:2] == ["a", "b"]  # cold calls
    assert clock.order[2:] == ["a", "b"] * 5  # then A B A B ..., one slice each per round


def test_a_failing_strategy_is_reported_and_others_still_run():
    clock = FakeClock()

    def broken():
        raise RuntimeError("kernel not found\nmore detail")

    calls = {"ok": clock.strategy("ok", [0.1] * 100), "broken": broken}
    timed = measure_interleaved(calls, MeasureSettings(budget_s=0.3, min_calls=2), clock=clock)
    assert timed["broken"].error == "RuntimeError: kernel not found"
    assert timed["ok"].measurement.count >= 2


def test_first_output_is_kept_for_the_outputs_check():
    clock = FakeClock()
    timed = measure_interleaved({"a": clock.strategy("a", [0.1] * 50)}, MeasureSettings(budget_s=0.2), clock=clock)
    assert timed["a"].first_output[0][0] == 1.0


def test_empty_measurement_statistics_are_nan():
    m = Measurement("s", first_call_s=math.nan, samples_s=())
    assert math.isnan(m.median_s)


def test_wall_cap_spent_in_warm_up_still_leaves_one_timed_call():
    clock = FakeClock()
    calls = {"predict": clock.strategy("predict", [0.1] * 10)}
    settings = MeasureSettings(budget_s=0.02, min_calls=2, max_wall_s=0.05, warmup_calls=1)
    m = measure_interleaved(calls, settings, clock=clock)["predict"].measurement
    assert m.count == 1 and m.stopped_early
