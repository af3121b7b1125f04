"""Measurement and statistics, on a fake clock: no TensorFlow."""

import dataclasses
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
    # precision=0: the budget alone stops it (the rule before the precision target).
    settings = MeasureSettings(budget_s=1.0, min_calls=3, max_wall_s=100, warmup_calls=1, rounds=5, precision=0)
    timed = measure_interleaved(calls, settings, clock=clock)
    m = timed["slow"].measurement
    assert m.first_call_s == 5.0
    assert 5.0 not in m.samples_s  # the cold call is not a sample
    assert sum(m.samples_s) >= 1.0 and m.count >= 3
    assert m.count == pytest.approx(10, abs=1)
    assert not m.stopped_early and m.stopped_by == "budget"


def test_a_cheap_cold_call_is_followed_by_an_untimed_warm_up_and_a_slow_one_is_not():
    clock = FakeClock()
    cheap = {"cheap": clock.strategy("cheap", [0.3, 0.15] + [0.1] * 100)}
    settings = MeasureSettings(budget_s=1.0, min_calls=3, max_wall_s=100, warmup_calls=1, precision=0)
    m = measure_interleaved(cheap, settings, clock=clock)["cheap"].measurement
    assert 0.15 not in m.samples_s and set(m.samples_s) == {0.1}  # the warm-up is not a sample
    clock = FakeClock()
    # 0.5 s is more than budget / min_calls: the second call is the first sample.
    slow = {"slow": clock.strategy("slow", [0.5, 0.4] + [0.3] * 100)}
    m = measure_interleaved(slow, settings, clock=clock)["slow"].measurement
    assert m.samples_s[0] == 0.4


def test_minimum_count_wins_over_budget_for_slow_strategies():
    clock = FakeClock()
    calls = {"s": clock.strategy("s", [2.0] * 20)}
    timed = measure_interleaved(calls, MeasureSettings(budget_s=0.1, min_calls=4, max_wall_s=100), clock=clock)
    assert timed["s"].measurement.count == 4


def test_the_wall_cap_never_cuts_below_the_minimum():
    clock = FakeClock()
    calls = {"eager_lstm": clock.strategy("eager_lstm", [3.0] * 50)}
    settings = MeasureSettings(budget_s=1.0, min_calls=5, max_wall_s=6.0, warmup_calls=1)
    m = measure_interleaved(calls, settings, clock=clock)["eager_lstm"].measurement
    assert m.count == 5 and not m.stopped_early  # 15 s of calls, the 6 s wall cap notwithstanding
    assert m.stopped_by == "budget"


def test_the_wall_cap_stops_a_strategy_at_the_minimum_when_the_budget_is_larger():
    clock = FakeClock()
    calls = {"s": clock.strategy("s", [0.5] * 200)}
    settings = MeasureSettings(budget_s=50.0, min_calls=5, max_wall_s=4.0, precision=0)
    m = measure_interleaved(calls, settings, clock=clock)["s"].measurement
    assert m.count == 7 and m.stopped_by == "wall cap"  # 4 s of 0.5 s calls, the warm-up among them


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


def test_wall_cap_spent_in_warm_up_still_leaves_the_minimum():
    clock = FakeClock()
    calls = {"predict": clock.strategy("predict", [0.1] * 10)}
    settings = MeasureSettings(budget_s=0.02, min_calls=2, max_wall_s=0.05, warmup_calls=1)
    m = measure_interleaved(calls, settings, clock=clock)["predict"].measurement
    assert m.count == 2 and not m.stopped_early


# --- the precision rule ------------------------------------------------------------------------


def _lognormal_calls(clock, name, median, sigma, seed, count=12_000):
    import random

    rng = random.Random(seed)
    return clock.strategy(name, [median * math.exp(rng.gauss(0.0, sigma)) for _ in range(count)])


@pytest.mark.parametrize("sigma", [0.05, 0.1])
def test_a_timer_with_known_spread_stops_once_its_median_is_known_within_two_percent(sigma):
    # For a (nearly) normal spread s, the median's standard error is sqrt(pi/2)·s/sqrt(n): its 95%
    # interval is within ±2% after about (1.96 · 1.2533 · sigma / 0.02)² samples (38 and 151 here).
    # The interval from order statistics is itself noisy: one run stops anywhere from about a half to
    # three times that (checking after every sample would give 0.24x to 2.8x on these seeds), so
    # the test holds the median of 20 runs to the expectation, and each run to the rule.
    import statistics

    expected = (1.96 * math.sqrt(math.pi / 2) * sigma / 0.02) ** 2
    counts = []
    for seed in range(20):
        clock = FakeClock()
        calls = {"s": _lognormal_calls(clock, "s", 1e-3, sigma, seed)}
        m = measure_interleaved(calls, MeasureSettings(budget_s=10.0, min_calls=5, precision=0.02),
                                clock=clock)["s"].measurement
        assert m.stopped_by == "precision" and m.ci_half_width <= 0.02
        assert sum(m.samples_s) < 0.1 * 10.0  # a sliver of the budget
        counts.append(m.count)
    assert 0.8 * expected <= statistics.median(counts) <= 2.0 * expected, (counts, expected)
    assert max(counts) <= 4 * expected


def test_a_timer_too_noisy_for_the_target_spends_its_budget_and_reports_its_interval():
    clock = FakeClock()
    calls = {"s": _lognormal_calls(clock, "s", 0.01, 0.5, seed=1)}
    m = measure_interleaved(calls, MeasureSettings(budget_s=0.5, min_calls=5), clock=clock)["s"].measurement
    assert m.stopped_by == "budget" and sum(m.samples_s) >= 0.5
    assert m.ci_low_s < m.median_s < m.ci_high_s and m.ci_half_width > 0.02


def test_precise_strategies_still_spread_their_samples_over_every_round():
    clock = FakeClock()
    calls = {"steady": clock.strategy("steady", [0.001] * 10_000),
             "slow": clock.strategy("slow", [0.05] * 10_000)}
    timed = measure_interleaved(calls, MeasureSettings(budget_s=1.0, min_calls=5, rounds=5, warmup_calls=0),
                                clock=clock)
    order = clock.order[2:]  # after the cold calls
    # The steady one is precise at once, yet it takes part in 5 rounds, beside the slow one.
    turns = [name for i, name in enumerate(order) if i == 0 or order[i - 1] != name]
    assert turns[:10] == ["steady", "slow"] * 5
    assert timed["steady"].measurement.stopped_by == "precision"


def test_a_microsecond_call_is_timed_in_batches_of_at_least_fifty_microseconds():
    clock = FakeClock()
    calls = {"tflite": clock.strategy("tflite", [2e-6] * 1_000_000)}
    m = measure_interleaved(calls, MeasureSettings(budget_s=1.0, min_calls=5), clock=clock)["tflite"].measurement
    assert m.calls_per_sample == 50  # 1, 2, 5, 10, 20, 50: the first batch to last 50 µs
    assert m.median_s == pytest.approx(2e-6)  # seconds per call, not per batch
    assert m.calls == m.count * 50
    assert 0.05 * 1.0 > sum(m.samples_s) * 50  # settled in well under the budget


def test_an_anchor_is_timed_once_a_round_beside_the_group_and_pooled_by_the_caller():
    from kdiag.engine.measure import Anchor

    clock = FakeClock()
    calls = {"a": clock.strategy("a", [0.01] * 10_000)}
    anchor = Anchor("predict", clock.strategy("predict", [0.2] * 100), calls_per_sample=1, samples=5)
    told = []
    timed = measure_interleaved(calls, MeasureSettings(budget_s=1.0, min_calls=5, rounds=5), clock=clock,
                                anchor=lambda: anchor, on_second_call=lambda name, *_: told.append(name))
    assert clock.order.count("predict") == 5  # no cold call: it was called before
    assert told == ["a"]  # its first two calls were told when it was first timed, not again
    assert timed["predict"].measurement.stopped_by == "anchor"
    assert timed["predict"].samples == pytest.approx((0.2,) * 5)


def test_the_first_two_calls_are_told_once_per_strategy():
    clock = FakeClock()
    told = []
    calls = {"p": clock.strategy("p", [3.0, 1.5] + [1.0] * 10)}
    measure_interleaved(calls, MeasureSettings(budget_s=1.0, min_calls=5), clock=clock,
                        on_second_call=lambda *args: told.append(args))
    assert told == [("p", 3.0, 1.5)]  # no warm-up (3 s is over budget / min_calls): the first sample


def test_the_median_interval_comes_from_order_statistics():
    from kdiag.datamodel.measurement import median_ci_ranks

    assert median_ci_ranks(5) is None  # [min, max] of 5 covers the median 93.75% of the time: too little
    assert median_ci_ranks(6) == (0, 5)
    assert median_ci_ranks(20) == (5, 14)  # the textbook ranks 6 and 15
    assert median_ci_ranks(100) == (39, 60)  # 40 and 61
    lo, hi = median_ci_ranks(10_000)
    assert (lo, hi) == (4901, 5098)  # the normal approximation, n/2 ± 0.98·sqrt(n)
    m = Measurement("s", 1.0, tuple(range(1, 21)))
    assert (m.ci_low_s, m.ci_high_s) == (6, 15)


def test_a_measurement_saved_before_the_interval_loads_without_one_and_a_new_one_round_trips():
    import json

    import factories as fx
    from kdiag.datamodel.report import Report
    from kdiag.render.json import render as render_json

    new = Measurement.from_samples("predict", 0.5, [0.1 + i * 1e-3 for i in range(20)], calls_per_sample=5,
                                   stopped_by="precision")
    report = fx.report([fx.strategy("predict", 100.0)])
    report = dataclasses.replace(report, strategies=[dataclasses.replace(report.strategies[0], measurement=new)])
    data = json.loads(render_json(report))
    saved = data["strategies"][0]["measurement"]
    assert (saved["ci_low_s"], saved["ci_high_s"]) == (new.ci_low_s, new.ci_high_s)
    assert (new.ci_low_s, new.ci_high_s) == pytest.approx((0.105, 0.114))  # the 6th and 15th of 20: ranks 5 and 14
    assert Report.from_dict(data).strategies[0].measurement == new
    for field in ("ci_low_s", "ci_high_s", "calls_per_sample", "stopped_by"):  # as a report from before wrote it
        del saved[field]
    old = Report.from_dict(data).strategies[0].measurement
    assert old.ci_low_s is None and old.ci_half_width is None and old.calls_per_sample == 1 and old.stopped_by == ""
    assert old.median_s == new.median_s
