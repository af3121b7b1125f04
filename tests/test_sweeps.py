"""The sweeps' planning and timing loops, on fake paths and a fake clock: no TensorFlow.

A fake path advances the clock by a cost model (a fixed overhead per call plus a cost per sample),
so the sweep's arithmetic can be checked against numbers worked out by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

from kdiag.engine.beyond import sweeps


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def samples_in(arrays) -> int:
    return next(iter(arrays.values())).shape[0]


def test_tiled_repeats_the_run_s_rows_along_the_batch_axis():
    arrays = {"x": np.arange(6).reshape(3, 2), "y": np.array([7, 8, 9])}
    out = sweeps.tiled(arrays, 7)
    assert out["x"].shape == (7, 2) and out["x"][3].tolist() == [0, 1] and out["x"][6].tolist() == [0, 1]
    assert out["y"].tolist() == [7, 8, 9, 7, 8, 9, 7]


def test_chunk_slices_cover_every_sample_once_with_a_ragged_last_chunk():
    slices = sweeps.chunk_slices(70, 32)
    assert [(s.start, s.stop) for s in slices] == [(0, 32), (32, 64), (64, 70)]


# --- planning -------------------------------------------------------------------------------


def no_memory_limit(n):
    return None


def test_the_automatic_list_is_one_batch_then_256_4096_65536_when_the_budget_allows():
    counts, skipped = sweeps.plan_counts(None, 32, lambda n: n * 1e-6, 10.0, no_memory_limit)
    assert counts == [32, 256, 4096, 65536] and skipped == []


def test_a_short_budget_leaves_out_the_largest_counts_and_fills_in_the_largest_doubling_that_fits():
    cost = lambda n: n * 1e-3  # noqa: E731  1 ms a sample
    counts, skipped = sweeps.plan_counts(None, 32, cost, 3.0, no_memory_limit)
    # 32 and 256 take 0.29 s; 4,096 would take 4.1 s; the largest doubling of 256 within 80% of the
    # 2.7 s left is 2,048 (2.0 s).
    assert counts == [32, 256, 2048]
    assert [line.split(":")[0] for line in skipped] == ["4,096 samples", "65,536 samples"]
    assert "would take ~4.1 s" in skipped[0] and "3 s budget" in skipped[0]


def test_a_fixed_batch_rounds_the_automatic_counts_up_to_whole_batches():
    counts, _ = sweeps.plan_counts(None, 100, lambda n: 0.0, 10.0, no_memory_limit, multiple=100)
    assert counts == [100, 300, 4100, 65600]


def test_requested_counts_are_measured_as_asked_and_never_filled_in():
    counts, skipped = sweeps.plan_counts([1000, 10, 10], 32, lambda n: n * 1e-3, 2.0, no_memory_limit)
    assert counts == [10, 1000] and skipped == []
    counts, skipped = sweeps.plan_counts([100, 5000], 32, lambda n: n * 1e-3, 2.0, no_memory_limit)
    assert counts == [100] and len(skipped) == 1 and skipped[0].startswith("5,000 samples: not measured")


def test_counts_that_would_not_fit_in_memory_are_left_out_with_the_need():
    check = sweeps.memory_check(per_sample_bytes=1000.0, available=10_000_000)  # 5 MB usable: 5,000 samples
    counts, skipped = sweeps.plan_counts(None, 32, lambda n: 0.0, 100.0, check)
    assert counts == [32, 256, 4096]
    assert skipped == ["65,536 samples: not measured: too little memory (needs ~62.5 MiB, 4.8 MiB available "
                       "for the sweep)"]


def test_the_estimate_counts_predict_once_and_each_loop_per_chunk():
    paths = [sweeps.SweepPath("predict", "", None, None, 0.05), sweeps.SweepPath("a", "", None, None, 0.002),
             sweeps.SweepPath("b", "", None, None, 0.001)]
    # predict: 50 ms + 7 more steps at the slowest loop's 2 ms; loops: 8 chunks each.
    assert sweeps.round_seconds(paths, 256, 32) == pytest.approx(0.05 + 7 * 0.002 + 8 * 0.002 + 8 * 0.001)


# --- the data-size sweep ----------------------------------------------------------------------


def fake_paths(clock, batch):
    """predict: 100 ms a call plus 1 ms a sample; a loop: 0.2 ms a chunk plus 1 ms a sample."""
    calls = []

    def predict(arrays):
        clock.now += 0.1 + 1e-3 * samples_in(arrays)
        calls.append(("predict", samples_in(arrays)))
        return [np.zeros((samples_in(arrays), 1))]

    def chunk(arrays):
        clock.now += 2e-4 + 1e-3 * samples_in(arrays)
        calls.append(("loop", samples_in(arrays)))
        return [np.zeros((samples_in(arrays), 1))]

    paths = [sweeps.whole_array_path("predict", predict, batch, 0.1 + 1e-3 * batch),
             sweeps.loop_path("concrete function", chunk, batch, 2e-4 + 1e-3 * batch)]
    return paths, calls


def test_the_sweep_times_each_path_end_to_end_and_finds_the_crossover():
    clock = FakeClock()
    paths, calls = fake_paths(clock, 32)
    arrays = {"x": np.zeros((32, 4), "float32")}
    sweep = sweeps.data_size_sweep(paths, arrays, 32, "concrete function", budget_s=1000.0, requested=[32, 256, 4096],
                                   clock=clock)
    assert sweep.counts == [32, 256, 4096]
    assert sweep.predict.seconds_at(4096) == pytest.approx(0.1 + 4.096)
    assert sweep.series[1].seconds_at(4096) == pytest.approx(128 * 2e-4 + 4.096)
    assert sweep.ratio_at(32) == pytest.approx(0.132 / 0.0322)
    assert sweep.crossover() == 4096  # 4.196 s against 4.122 s: within 10%
    assert all(len(runs) == sweeps.MAX_RUNS for runs in sweep.series[0].runs_s)  # a roomy budget: five runs
    # Warm calls came first for every count: one batch's worth for predict, each chunk shape for the loop.
    assert ("predict", 32) in calls and ("loop", 32) in calls


def test_the_sweep_keeps_to_its_budget_and_says_what_it_left_out():
    clock = FakeClock()
    paths, _ = fake_paths(clock, 32)
    arrays = {"x": np.zeros((32, 4), "float32")}
    sweep = sweeps.data_size_sweep(paths, arrays, 32, "concrete function", budget_s=2.0, clock=clock)
    assert sweep.largest < 4096
    assert any(line.startswith("4,096 samples: not measured") for line in sweep.skipped)
    assert any(line.startswith("65,536 samples: not measured") for line in sweep.skipped)
    assert sweep.spent_s <= 2.0 * 1.3  # warm-up calls are outside the estimates
    assert sweep.crossover() is None


def test_a_ragged_last_chunk_is_warmed_before_it_is_timed():
    clock = FakeClock()
    paths, calls = fake_paths(clock, 32)
    sweeps.data_size_sweep(paths, {"x": np.zeros((3, 4))}, 32, "concrete function", 1000.0, requested=[70],
                           clock=clock)
    loop_sizes = [n for kind, n in calls if kind == "loop"]
    assert loop_sizes[:2] == [32, 6]  # the warm-up: a full chunk and the last one
    assert sorted(set(loop_sizes)) == [6, 32]


# --- the batch-size sweep ---------------------------------------------------------------------


def test_the_batch_sweep_doubles_until_throughput_stops_growing():
    clock = FakeClock()

    def call(arrays):
        # 10 ms of overhead, then 1 ms a sample: samples/s level off past a few dozen samples.
        clock.now += 0.01 + 1e-3 * samples_in(arrays)

    sweep = sweeps.batch_size_sweep("concrete function", call, {"x": np.zeros((1, 4))}, budget_s=100.0, clock=clock)
    batches = [b for b, _ in sweep.points]
    assert batches[:3] == [1, 2, 4]
    assert sweep.points[0][1] == pytest.approx(0.011)
    assert "doublings in a row" in sweep.stopped_by
    # 64 samples in 74 ms: 865 samples/s, and 256 give 962, more than 10% above; 128 give 928, and
    # nothing measured beats that by 10%.
    assert sweep.knee() == 128
    assert all(len(runs) >= sweeps.MIN_CALLS_PER_BATCH for runs in sweep.runs_s)


def test_a_fast_path_keeps_a_few_of_its_calls_per_batch_and_the_median_of_them_all():
    """report.json keeps at most KEPT_RUNS_PER_BATCH calls a batch size (rounded), not the 1,000 a
    fast path makes: on the tiny example the sweep's raw calls were 118 kB of a 450 kB file."""
    clock = FakeClock()
    calls = []

    def call(arrays):
        calls.append(1)
        clock.now += 1e-4 + 1e-9 * (len(calls) % 7)  # 100 µs, a few ns of jitter

    sweep = sweeps.batch_size_sweep("TFLite", call, {"x": np.zeros((1, 4))}, budget_s=100.0, clock=clock)
    assert all(len(runs) <= sweeps.KEPT_RUNS_PER_BATCH for runs in sweep.runs_s)
    assert len(calls) > 3 * sweeps.KEPT_RUNS_PER_BATCH * len(sweep.points)  # far more calls were timed
    assert all(run == float(f"{run:.4g}") for runs in sweep.runs_s for run in runs)
    assert sweep.points[0][1] == pytest.approx(1e-4, rel=1e-3)


def test_the_batch_sweep_stops_before_a_batch_that_would_not_fit():
    clock = FakeClock()

    def call(arrays):
        clock.now += 1e-4

    check = sweeps.memory_check(per_sample_bytes=1000.0, available=100_000)
    sweep = sweeps.batch_size_sweep("tf.function", call, {"x": np.zeros((1, 4))}, 100.0, check, clock=clock)
    assert [b for b, _ in sweep.points] == [1, 2, 4, 8, 16, 32]
    assert sweep.stopped_by.startswith("batch 64 would not fit: too little memory")


def test_the_batch_sweep_stops_when_the_next_batch_would_overrun_the_budget():
    clock = FakeClock()

    def call(arrays):
        clock.now += 0.05 + 1e-3 * samples_in(arrays)  # samples/s nearly double with every doubling

    sweep = sweeps.batch_size_sweep("tf.function", call, {"x": np.zeros((1, 4))}, budget_s=1.0, clock=clock)
    assert [b for b, _ in sweep.points] == [1, 2]
    assert sweep.spent_s <= 1.0
    assert "more than is left of this sweep's 1 s budget" in sweep.stopped_by
