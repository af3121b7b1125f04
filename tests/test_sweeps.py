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


def test_the_automatic_list_is_in_samples_whatever_the_batch_size_when_the_budget_allows():
    for batch in (1, 8, 32):
        counts, skipped = sweeps.plan_counts(None, batch, lambda n: n * 1e-6, 10.0, no_memory_limit)
        assert counts == [1, 32, 256, 1024, 4096, 16384, 65536] and skipped == []


def test_a_short_budget_leaves_out_the_largest_counts_and_fills_in_the_largest_doubling_that_fits():
    cost = lambda n: n * 1e-3  # noqa: E731  1 ms a sample
    counts, skipped = sweeps.plan_counts(None, 32, cost, 1.0, no_memory_limit)
    # 1, 32 and 256 take 0.289 s; 1,024 would take 1.02 s; the largest doubling of 256 within 80% of
    # the 0.711 s left is 512 (0.51 s).
    assert counts == [1, 32, 256, 512]
    assert [line.split(":")[0] for line in skipped] == ["1,024 samples", "4,096 samples", "16,384 samples",
                                                        "65,536 samples"]
    assert "would take ~1 s" in skipped[0] and "1 s budget" in skipped[0]


def test_a_slow_model_still_gets_three_counts_filled_in_between():
    cost = lambda n: n * 0.05  # noqa: E731  50 ms a sample (ResNet50 at batch 1, say)
    counts, skipped = sweeps.plan_counts(None, 1, cost, 3.0, no_memory_limit)
    # 1 and 32 take 1.65 s; 256 and 64 do not fit; 8, the middle doubling of 1..32, fits in 80% of the 1.35 s left.
    assert counts == [1, 8, 32]
    assert skipped[0].startswith("256 samples: not measured")


def test_a_fixed_batch_rounds_the_automatic_counts_up_to_whole_batches():
    counts, _ = sweeps.plan_counts(None, 100, lambda n: 0.0, 10.0, no_memory_limit, multiple=100)
    assert counts == [100, 300, 1100, 4100, 16400, 65600]


def test_requested_counts_are_measured_as_asked_and_never_filled_in():
    counts, skipped = sweeps.plan_counts([1000, 10, 10], 32, lambda n: n * 1e-3, 2.0, no_memory_limit)
    assert counts == [10, 1000] and skipped == []
    counts, skipped = sweeps.plan_counts([100, 5000], 32, lambda n: n * 1e-3, 2.0, no_memory_limit)
    assert counts == [100] and len(skipped) == 1 and skipped[0].startswith("5,000 samples: not measured")


def test_counts_that_would_not_fit_in_memory_are_left_out_with_the_need():
    check = sweeps.memory_check(per_sample_bytes=1000.0, available=10_000_000)  # 5 MB usable: 5,000 samples
    counts, skipped = sweeps.plan_counts(None, 32, lambda n: 0.0, 100.0, check)
    assert counts == [1, 32, 256, 1024, 4096]
    assert skipped == ["16,384 samples: not measured: too little memory (needs ~15.6 MiB, 4.8 MiB available "
                       "for the sweep)",
                       "65,536 samples: not measured: too little memory (needs ~62.5 MiB, 4.8 MiB available "
                       "for the sweep)"]


def test_the_estimate_counts_predict_once_and_each_loop_per_chunk_and_the_warm_up():
    paths = [sweeps.SweepPath("predict", "", None, None, 0.05), sweeps.SweepPath("a", "", None, None, 0.002),
             sweeps.SweepPath("b", "", None, None, 0.001)]
    # predict: 50 ms for its first batch of 32, then the 224 other samples at the slowest loop's
    # pace (2 ms / 32); loops: 8 chunks each; the warm-up: predict on a batch (50 ms), each loop on two chunks.
    warm = 0.05 + 2 * 0.002 + 2 * 0.001
    assert sweeps.round_seconds(paths, 256, 32) == pytest.approx(0.05 + 224 * 0.002 / 32 + 8 * 0.003 + warm)
    # The loops at batch 1, predict at its own 32: its warm-up is a batch of 32 samples.
    warm = (0.05 + 31 * 0.002) + 2 * 0.003
    assert sweeps.round_seconds(paths, 256, 1, predict_batch=32) == pytest.approx(
        0.05 + 255 * 0.002 + 256 * 0.003 + warm)
    # One sample: one call of each, and the warm-up the same again.
    assert sweeps.round_seconds(paths, 1, 1, predict_batch=32) == pytest.approx(2 * (0.05 + 0.003))


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
    # The run's own batch (3 rows here) before the sweep's clock, then the count's warm-up: a full
    # chunk and the last one, before any timed run.
    assert loop_sizes[:3] == [3, 32, 6]
    assert sorted(set(loop_sizes[3:])) == [6, 32]


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


def test_a_slow_model_may_stretch_its_budget_for_three_counts_as_far_apart_as_that_allows():
    clock = FakeClock()

    def slow(arrays):  # 0.3 s a call plus 10 ms a sample, as a Conv1D+LSTM(512) model at batch 32
        clock.now += 0.3 + 0.01 * samples_in(arrays)
        return [np.zeros((samples_in(arrays), 1))]

    paths = [sweeps.whole_array_path("predict", slow, 32, 0.62), sweeps.loop_path("concrete function", slow, 32, 0.62)]
    arrays = {"x": np.zeros((32, 4), "float32")}
    alone = sweeps.data_size_sweep(paths, arrays, 32, "concrete function", budget_s=1.0, clock=clock, multiple=32)
    assert len(alone.counts) < 3 and not alone.judged
    stretched = sweeps.data_size_sweep(paths, arrays, 32, "concrete function", budget_s=1.0, clock=clock,
                                       multiple=32, stretch_s=20.0)
    assert stretched.judged and stretched.counts[0] == 32 and stretched.counts[-1] >= 128
    assert stretched.spent_s <= 21.0 * 1.3
    assert all(line.split(":")[0].endswith("samples") for line in stretched.skipped)
    # The next count would come on top of the smaller ones: said so, with what the run could give (1 + 20 s).
    assert "more than the ~" in stretched.skipped[0] and "beyond the ~21 s the run had to spare" in stretched.skipped[0]


def test_the_minimum_a_slow_model_keeps_for_three_counts_adds_up_their_estimates():
    # ResNet50 at batch 1 here: predict 174 ms, predict_on_batch 89 ms and the concrete function 70 ms a call.
    loops = [0.089, 0.070]
    paths = [sweeps.SweepPath("predict", "", None, None, 0.174)] + [sweeps.SweepPath("l", "", None, None, s)
                                                                   for s in loops]
    counts = sum(sweeps.round_seconds(paths, n, 1, 32) for n in (1, 2, 4))
    assert sweeps.minimum_seconds(0.174, loops, batch=1) == pytest.approx(0.174 + 0.159 + counts / sweeps.PLAN_MARGIN)
    # With predict's cost of tracing again (once: 2 and 4 samples are new shapes for it).
    assert sweeps.minimum_seconds(0.174, loops, batch=1, traces_s=[1.5, 0.0, 0.0]) == pytest.approx(
        0.174 + 0.159 + 1.5 + counts / sweeps.PLAN_MARGIN)
    assert 4.0 < sweeps.minimum_seconds(0.174, loops, batch=1) < 6.0
    # A model whose batch is fixed at 32 counts in whole batches: 32, 64 and 128 samples.
    fixed = sum(sweeps.round_seconds(paths, n, 32, 32) for n in (32, 64, 128))
    assert sweeps.minimum_seconds(0.174, loops, batch=32, multiple=32) == pytest.approx(
        0.174 + 0.159 + fixed / sweeps.PLAN_MARGIN)


def test_a_sweep_that_calls_for_new_batch_shapes_is_costed_one_trace_a_path():
    # ResNet50 at batch 1: predict's first call took 1.15 s more than its median (tracing).
    paths = [sweeps.SweepPath("predict", "", None, None, 0.17, trace_s=1.15),
             sweeps.SweepPath("predict_on_batch", "", None, None, 0.09, trace_s=0.9)]
    # One sample: the run's own batch shape, seen already. Two and four: predict on batches of 2 and 4,
    # new shapes, but one trace: TensorFlow relaxes the function to any batch size on the second shape.
    # The loops still call on batches of 1.
    assert sweeps.retrace_seconds(paths, [1], 1, 32) == 0.0
    assert sweeps.retrace_seconds(paths, [1, 2, 4], 1, 32) == pytest.approx(1.15)
    # The loops at batch 32: fewer samples than that is a new shape for them too.
    assert sweeps.retrace_seconds(paths, [1, 2, 4], 32, 32) == pytest.approx(2.05)
    # A model whose batch is fixed: whole batches only, no new shape.
    assert sweeps.retrace_seconds(paths, [32, 64, 128], 32, 32) == 0.0
