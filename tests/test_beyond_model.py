"""The data model beyond one batch: the least-squares band, the crossover, the knee, and the JSON round trip.

Pure arithmetic on hand-made points: no TensorFlow, no timing.
"""

from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import factories as fx  # noqa: E402
from kdiag.datamodel import beyond as b  # noqa: E402
from kdiag.datamodel.measurement import Measurement  # noqa: E402
from kdiag.datamodel.report import Report  # noqa: E402
from kdiag.render.json import render as render_json  # noqa: E402


# --- the line fit -------------------------------------------------------------------------


def test_fit_line_recovers_an_exact_line_with_zero_error():
    fit = b.fit_line([0, 1, 2, 3, 4], [10, 13, 16, 19, 22])
    assert fit.slope == pytest.approx(3.0) and fit.intercept == pytest.approx(10.0)
    assert fit.stderr == pytest.approx(0.0, abs=1e-12)
    assert fit.band() == pytest.approx((3.0, 3.0))


def test_fit_line_standard_error_matches_the_textbook_formula():
    xs, ys = [1, 2, 3, 4, 5, 6], [2.1, 3.9, 6.2, 7.8, 10.1, 12.2]
    fit = b.fit_line(xs, ys)
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    residual = sum((y - (my - slope * mx) - slope * x) ** 2 for x, y in zip(xs, ys))
    assert fit.slope == pytest.approx(slope)
    assert fit.stderr == pytest.approx(math.sqrt(residual / (n - 2) / sxx))
    low, high = fit.band(0.95)
    assert high - fit.slope == pytest.approx(2.776 * fit.stderr, rel=1e-3)  # t(0.975, 4 dof) = 2.776
    assert fit.slope - low == pytest.approx(high - fit.slope)


@pytest.mark.parametrize("dof,exact", [(1, 12.706), (2, 4.303), (3, 3.182), (5, 2.571), (10, 2.228), (30, 2.042),
                                       (1000, 1.962)])
def test_t_quantile_is_within_a_fifth_of_a_percent_of_the_tables(dof, exact):
    assert b.t_quantile(0.975, dof) == pytest.approx(exact, rel=2e-3)


def test_fit_line_refuses_what_has_no_slope():
    assert b.fit_line([1, 2], [3, 4]) is None  # too few points
    assert b.fit_line([5, 5, 5], [1, 2, 3]) is None  # a single x
    assert b.fit_line([1, 2, 3], [1, 2]) is None  # lengths differ


# --- memory growth ------------------------------------------------------------------------


def _loop(per_call_bytes: float, calls: int = 1000, jitter: int = 0, every: int = 5, seed: int = 0) -> b.MemoryLoop:
    rng = random.Random(seed)
    base = 500_000_000
    points = [(c, int(base + per_call_bytes * c + rng.randint(-jitter, jitter))) for c in range(0, calls + 1, every)]
    return b.MemoryLoop("predict", calls, 3.0, 10, 0.3, points)


def test_a_steady_leak_of_a_kilobyte_per_call_grows_and_its_band_excludes_zero():
    loop = _loop(1024, jitter=40_000)
    assert loop.growth_per_1000_calls_bytes == pytest.approx(1024_000, rel=0.05)
    low, high = loop.growth_band_bytes
    assert 0 < low < loop.growth_per_1000_calls_bytes < high
    assert loop.grows() and loop.growing
    assert loop.peak_rss_bytes == max(r for _, r in loop.points)


def test_a_flat_loop_with_page_sized_noise_does_not_grow():
    loop = _loop(0, jitter=40_000)
    low, high = loop.growth_band_bytes
    assert low < 0 < high
    assert not loop.grows()


def test_growth_beyond_the_band_but_below_the_practical_floors_is_not_reported():
    # 100 bytes a call over 1,000 calls: a firm slope of ~100 kB per 1,000 calls, below 128 KiB.
    tiny_slope = _loop(100)
    assert tiny_slope.growth_band_bytes[0] > 0
    assert not tiny_slope.grows()
    # 300 bytes a call, but over 122 calls only: ~37 kB in all, a few pages.
    short = _loop(300, calls=122, every=1)
    assert short.growth_per_1000_calls_bytes >= b.MIN_GROWTH_PER_1000_CALLS
    assert short.total_growth_bytes < b.MIN_TOTAL_GROWTH
    assert not short.grows()
    assert short.grows(minimum_total=0)


def test_growth_in_a_few_steps_rises_but_is_not_steady_growth():
    # RSS as a TensorFlow loop shows it while its allocators warm up: two jumps of ~600 kB, flat between.
    points = [(c, 700_000_000 + 600_000 * (c >= 56) + 600_000 * (c >= 112)) for c in range(0, 192)]
    loop = b.MemoryLoop("concrete function", 191, 5.0, 20, 0.5, points)
    assert loop.rises() and loop.growth_band_bytes[0] > 0
    assert loop.steady_parts() == 2
    assert not loop.grows()
    steady = _loop(1024, jitter=40_000)
    assert steady.steady_parts() == b.GROWTH_PARTS


def test_a_leak_in_regular_chunks_is_steady_over_a_long_enough_loop():
    # 1 MB kept every 56 calls: over 1,000 calls every fifth of the loop holds three or four of them.
    points = [(c, 700_000_000 + 1_000_000 * (c // 56)) for c in range(0, 1001, 5)]
    loop = b.MemoryLoop("predict", 1000, 5.0, 20, 0.5, points)
    assert loop.grows()


def test_too_few_samples_give_no_fit_and_no_verdict():
    loop = b.MemoryLoop("predict", 5, 1.0, 3, 0.1, [(i, 1000 * i) for i in range(5)])
    assert loop.fit is None and loop.growth_band_bytes is None and not loop.grows()


# --- data size ----------------------------------------------------------------------------


def _sweep(predict, loop, other=None, counts=(32, 256, 4096)):
    series = [b.SweepSeries("predict", "model.predict(X, batch_size=32)", list(zip(counts, predict))),
              b.SweepSeries("concrete function", "loop", list(zip(counts, loop)))]
    if other is not None:
        series.append(b.SweepSeries("predict_on_batch", "loop", list(zip(counts, other))))
    return b.DataSizeSweep(32, "concrete function", series)


def test_crossover_is_the_smallest_count_from_which_predict_stays_within_ten_percent():
    sweep = _sweep(predict=[0.05, 0.06, 0.50], loop=[0.001, 0.01, 0.46])
    assert sweep.counts == [32, 256, 4096]
    assert sweep.ratio_at(4096) == pytest.approx(0.50 / 0.46)
    assert sweep.crossover() == 4096 and sweep.crossover_samples == 4096
    assert sweep.crossover(within=0.05) is None


def test_crossover_must_hold_at_every_larger_count():
    # Within 10% at 256 but not at 4096: predict has not caught up for good.
    sweep = _sweep(predict=[0.05, 0.011, 0.9], loop=[0.001, 0.010, 0.5])
    assert sweep.crossover() is None


def test_crossover_compares_predict_with_the_fastest_loop_at_each_count():
    sweep = _sweep(predict=[0.05, 0.06, 0.52], loop=[0.001, 0.01, 0.50], other=[0.002, 0.02, 0.40])
    assert sweep.best_at(4096).strategy == "predict_on_batch"
    assert sweep.ratio_at(4096) == pytest.approx(1.3)
    assert sweep.crossover() is None
    assert sweep.spread_at_largest == pytest.approx(0.52 / 0.40)


def test_counts_are_those_every_series_measured():
    sweep = _sweep(predict=[0.05, 0.06], loop=[0.001, 0.01], counts=(32, 256))
    sweep.series[1].points.append((4096, 0.4))
    assert sweep.counts == [32, 256] and sweep.largest == 256


# --- batch size ---------------------------------------------------------------------------


def _batches(per_call):
    return b.BatchSizeSweep("concrete function", [(2 ** i, s) for i, s in enumerate(per_call)])


def test_knee_is_where_no_larger_batch_beats_the_throughput_by_more_than_ten_percent():
    sweep = _batches([1.0, 1.0, 1.0, 1.2, 2.2, 4.5])  # samples/s 1, 2, 4, 6.7, 7.3, 7.1
    assert sweep.knee() == 8 and sweep.knee_batch == 8
    assert sweep.throughput[0] == (1, 1.0)
    assert sweep.latency[3] == (8, pytest.approx(0.15))


def test_one_noisy_dip_does_not_end_the_climb():
    sweep = _batches([1.0, 2.1, 1.0, 1.1, 1.2])  # samples/s 1, 0.95, 4, 7.3, 13.3: still climbing
    assert sweep.knee() is None


def test_still_growing_at_the_largest_batch_has_no_knee():
    assert _batches([1.0, 1.0, 1.0]).knee() is None


# --- the report ---------------------------------------------------------------------------


def _full_report() -> Report:
    report = fx.report(fx.typical_keras3())
    sweep = _sweep(predict=[0.05, 0.06, 0.50], loop=[0.001, 0.01, 0.46])
    sweep = b.DataSizeSweep(32, "concrete function", [
        b.SweepSeries(s.strategy, s.how, s.points, [(p[1], p[1] * 1.01) for p in s.points]) for s in sweep.series],
        ["65,536 samples: not measured: would take ~60 s"], 6.0, 4.2)
    ops = b.OpBreakdown("concrete function", 5, 0.2, 0.19,
                        [b.OpRow("lstm/MatMul", "MatMul", 320, 0.1, 0.6), b.OpRow("lstm/MatMul_1", "MatMul", 320,
                                                                                  0.06, 0.32)],
                        3, 0.08, [b.OpRow("MatMul", "MatMul", 640, 0.16, 0.92)], "host", "xprof 2.24.2")
    threads = b.ThreadsEffect("SavedModel serve", 2, Measurement("one", 0.1, (0.03, 0.031, 0.032, 0.03, 0.029)),
                              Measurement("many", 0.1, (0.02, 0.021, 0.02, 0.022, 0.019)), 12.0, 5.5)
    import dataclasses

    return dataclasses.replace(
        report, data_size_sweep=sweep, batch_size_sweep=_batches([1.0, 1.0, 1.2]),
        memory_loops=b.MemoryLoops([_loop(1024, jitter=1000), b.MemoryLoop("concrete function",
                                                                            reason="not measured: test")], 10.0),
        op_breakdown=ops, threads_effect=threads)


def test_every_new_field_survives_the_json_round_trip():
    report = _full_report()
    data = json.loads(render_json(report))
    assert data["data_size_sweep"]["crossover_samples"] == 4096  # derived, for readers of the JSON
    assert data["memory_loops"]["loops"][0]["growing"] is True
    assert data["data_size_sweep"]["series"][0]["points"][0] == [32, 0.05]  # (count, seconds): ready to plot
    again = Report.from_dict(data)
    assert again == report
    assert again.data_size_sweep.crossover() == 4096
    assert again.threads_effect.ratio == pytest.approx(0.03 / 0.020)


def test_a_report_written_before_these_fields_still_loads():
    data = json.loads(render_json(fx.report(fx.typical_keras3())))
    for field in ("data_size_sweep", "batch_size_sweep", "memory_loops", "op_breakdown", "threads_effect"):
        del data[field]
    report = Report.from_dict(data)
    assert report.data_size_sweep is None and report.threads_effect is None
