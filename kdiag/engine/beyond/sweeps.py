"""The data-size and batch-size sweeps: the model called on other sample counts than the run's batch.

Data size: for each sample count N, the same N samples are scored end to end three ways,
interleaved (predict, then each loop, then again), so drift hits them alike:

- `model.predict(X, batch_size=B)` on the whole array;
- a loop of `predict_on_batch` over chunks of B;
- a loop of the best matching direct path over chunks of B.

Every distinct chunk shape is called once before the clock runs (XLA compiles per shape, a
tf.function traces per shape), so the sweep times warm paths, as a long-running scorer has.

Batch size: the best path called on batches of 1, 2, 4, ... samples until the budget, the memory or
the throughput says stop.

Samples are the run's inputs (synthetic, or the user's --inputs) repeated along the batch axis.
Every count and batch is checked against the memory available before its arrays are built, and
against what is left of the step's time budget before it runs; what is left out is reported.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from kdiag.datamodel.beyond import THROUGHPUT_GAIN, BatchSizeSweep, DataSizeSweep, SweepSeries, median_of
from kdiag.datamodel.measurement import round_significant, uniform_subset
from kdiag.engine.intake.limits import available_memory_bytes, needs_line

#: The automatic sample counts after one batch; the largest ones are left out when the budget is short.
DEFAULT_SAMPLE_COUNTS = (256, 4096, 65536)
#: A count's arrays (inputs, predict's outputs, one chunk's copies) may take this share of free memory.
MEMORY_SHARE = 0.5
#: A filler count must fit in this share of what is left; at run time a count runs unless its estimate
#: exceeds what is left by more than 1 / PLAN_MARGIN.
PLAN_MARGIN = 0.8
#: Runs per count at most, interleaved across the paths; a count whose run is long gets one.
MAX_RUNS = 5
#: Batch sizes tried at most in the batch-size sweep.
MAX_BATCH = 1 << 16
#: Timed calls per batch size at least, and the seconds per batch size they aim to fill.
MIN_CALLS_PER_BATCH = 5
SECONDS_PER_BATCH = 0.1
#: Timed calls kept per batch size in the report (a uniform subset, rounded as a Measurement's samples
#: are): the point's median is computed from every call first. A fast path makes up to 1,000 calls
#: per batch size, which would put ~100 kB of samples in report.json for a line of figures.
KEPT_RUNS_PER_BATCH = 50
#: The doubling stops after this many doublings in a row that raised samples/s by THROUGHPUT_GAIN or less.
FLAT_DOUBLINGS = 2

Arrays = Dict[str, np.ndarray]
ChunkCall = Callable[[Arrays], list]


def tiled(arrays: Mapping[str, np.ndarray], samples: int) -> Arrays:
    """`samples` rows of every input: the run's rows repeated along the batch axis."""
    out = {}
    for name, array in arrays.items():
        index = np.arange(samples) % array.shape[0]
        out[name] = np.take(array, index, axis=0)
    return out


def chunk_slices(samples: int, size: int) -> List[slice]:
    return [slice(start, min(start + size, samples)) for start in range(0, samples, size)]


def _chunk(arrays: Arrays, where: slice) -> Arrays:
    return {name: array[where] for name, array in arrays.items()}


@dataclasses.dataclass(frozen=True)
class SweepPath:
    """One way of scoring a whole array, ready to call."""

    strategy: str  # display name
    how: str
    run: Callable[[Arrays], object]  # scores the whole array, outputs on the host
    warm: Callable[[Arrays], None]  # calls every chunk shape of this array once
    chunk_s: float  # its measured seconds per call at the run's batch (for the plan)


def whole_array_path(strategy: str, predict: ChunkCall, batch: int, chunk_s: float) -> SweepPath:
    """predict(X, batch_size=B): one call on the whole array."""

    def warm(arrays):
        samples = next(iter(arrays.values())).shape[0]
        # One full batch and the ragged last one, so a new shape is not traced inside the timing.
        rest = samples % batch
        predict(_chunk(arrays, slice(0, min(samples, batch + rest))))

    return SweepPath(strategy, f"model.predict(X, batch_size={batch})", predict, warm, chunk_s)


def loop_path(strategy: str, call: ChunkCall, batch: int, chunk_s: float) -> SweepPath:
    """`call` on each chunk of `batch` samples, outputs joined as predict joins them."""

    def run(arrays):
        samples = next(iter(arrays.values())).shape[0]
        pieces = [call(_chunk(arrays, where)) for where in chunk_slices(samples, batch)]
        return [np.concatenate(parts) for parts in zip(*pieces)]

    def warm(arrays):
        samples = next(iter(arrays.values())).shape[0]
        shapes = {w.stop - w.start: w for w in chunk_slices(samples, batch)}
        for where in shapes.values():
            call(_chunk(arrays, where))

    return SweepPath(strategy, f"{strategy} on each chunk of {batch}", run, warm, chunk_s)


def round_seconds(paths: Sequence[SweepPath], samples: int, batch: int) -> float:
    """The estimated seconds of one run of every path on `samples` samples (from the per-call medians).

    predict's per-batch step is taken as the slowest loop's call: the timing pass measured
    predict's whole call on one batch, not its step.
    """
    chunks = math.ceil(samples / batch)
    step = max((p.chunk_s for p in paths[1:]), default=paths[0].chunk_s)
    total = paths[0].chunk_s + (chunks - 1) * step
    return total + sum(chunks * p.chunk_s for p in paths[1:])


def plan_counts(requested: Optional[Sequence[int]], batch: int, cost: Callable[[int], float], budget_s: float,
                memory: Callable[[int], Optional[str]], multiple: int = 1) -> Tuple[List[int], List[str]]:
    """The counts to measure, smallest first, and a line for each one left out.

    `cost(n)`: estimated seconds of one run of every path on n samples; `memory(n)`: why n samples
    do not fit, or None. With no `requested` counts the list is automatic: one batch, then
    DEFAULT_SAMPLE_COUNTS; when one of those does not fit the budget, the largest doubling of the
    last count that does fit takes its place. `multiple`: a model whose batch size is fixed takes only
    whole batches, so the automatic counts are rounded up to multiples of it.
    """
    automatic = requested is None
    defaults = {batch, *(math.ceil(n / multiple) * multiple for n in DEFAULT_SAMPLE_COUNTS)}
    counts = sorted(defaults if automatic else set(requested))
    if automatic:
        counts = [n for n in counts if n >= batch]
    chosen: List[int] = []
    skipped: List[str] = []
    left = budget_s
    out_of_time = False
    for n in counts:
        why = memory(n)
        if why is not None:
            skipped.append(f"{n:,} samples: {why}")
            continue
        estimate = cost(n)
        if out_of_time or estimate > left:
            if automatic and not out_of_time:
                # With a margin: the estimates come from one batch's medians, and warm-up calls add to them.
                filler = _largest_doubling(chosen[-1] if chosen else batch, n, cost, PLAN_MARGIN * left, memory)
                if filler is not None:
                    chosen.append(filler)
                    left -= cost(filler)
            out_of_time = True
            skipped.append(f"{n:,} samples: not measured: would take ~{_seconds(estimate)}, beyond what is left of "
                           f"this sweep's {_seconds(budget_s)} budget")
            continue
        chosen.append(n)
        left -= estimate
    return chosen, skipped


def _largest_doubling(low: int, high: int, cost, left: float, memory) -> Optional[int]:
    best = None
    n = low * 2
    while n < high:
        if cost(n) <= left and memory(n) is None:
            best = n
        n *= 2
    return best


def _seconds(value: float) -> str:
    return f"{value:.2g} s" if value < 10 else f"{value:,.0f} s"


def memory_check(per_sample_bytes: float, share: float = MEMORY_SHARE,
                 available: Optional[int] = None) -> Callable[[int], Optional[str]]:
    """`check(n)`: why n samples' arrays do not fit in `share` of the free memory, or None."""
    free = available_memory_bytes() if available is None else available

    def check(samples: int) -> Optional[str]:
        need = samples * per_sample_bytes
        if need > share * free:
            return f"not measured: too little memory ({needs_line(need, share * free)} for the sweep)"
        return None

    return check


def data_size_sweep(paths: Sequence[SweepPath], arrays: Mapping[str, np.ndarray], batch: int, best_path: str,
                    budget_s: float, requested: Optional[Sequence[int]] = None,
                    memory: Optional[Callable[[int], Optional[str]]] = None,
                    clock: Callable[[], float] = time.perf_counter,
                    progress: Callable[[str], None] = lambda what: None, multiple: int = 1) -> DataSizeSweep:
    """Time every path end to end at each planned count; predict is `paths[0]`."""
    start = clock()
    memory = memory or (lambda n: None)
    counts, skipped = plan_counts(requested, batch, lambda n: round_seconds(paths, n, batch), budget_s, memory,
                                  multiple)
    runs: Dict[Tuple[int, int], List[float]] = {}
    measured: List[int] = []
    for position, samples in enumerate(counts):
        left = budget_s - (clock() - start)
        estimate = round_seconds(paths, samples, batch)
        if PLAN_MARGIN * estimate > left and measured:
            skipped += [f"{n:,} samples: not measured: would take ~{_seconds(round_seconds(paths, n, batch))}, more "
                        f"than the {_seconds(max(0.0, left))} left of this sweep's {_seconds(budget_s)} budget"
                        for n in counts[position:]]
            break
        progress(f"{samples:,} samples")
        data = tiled(arrays, samples)
        for path in paths:
            path.warm(data)
        # Extra runs share only the slack: every larger count keeps the time for its one run.
        later = sum(round_seconds(paths, n, batch) for n in counts[position + 1:])
        slack = budget_s - (clock() - start) - later - estimate
        allowance = estimate + max(0.0, slack) / (len(counts) - position)
        spent = 0.0
        rounds = 0
        while rounds < MAX_RUNS and (rounds == 0 or spent + spent / rounds <= allowance):
            for index, path in enumerate(paths):
                began = clock()
                path.run(data)
                runs.setdefault((index, samples), []).append(clock() - began)
            rounds += 1
            spent = sum(sum(runs[(i, samples)]) for i in range(len(paths)))
        measured.append(samples)
        del data
    series = []
    for index, path in enumerate(paths):
        points = [(n, median_of(runs[(index, n)])) for n in measured]
        series.append(SweepSeries(path.strategy, path.how, points,
                                  [tuple(round_significant(s) for s in runs[(index, n)]) for n in measured]))
    skipped.sort(key=lambda line: int(line.split(" ", 1)[0].replace(",", "")))
    return DataSizeSweep(batch, best_path, series, skipped, budget_s, clock() - start)


def batch_size_sweep(strategy: str, call: ChunkCall, arrays: Mapping[str, np.ndarray], budget_s: float,
                     memory: Optional[Callable[[int], Optional[str]]] = None, max_batch: int = MAX_BATCH,
                     clock: Callable[[], float] = time.perf_counter,
                     progress: Callable[[str], None] = lambda what: None) -> BatchSizeSweep:
    """`call` at batch 1, 2, 4, ...: a warm-up call, then timed calls, per batch size."""
    start = clock()
    memory = memory or (lambda n: None)
    points: List[tuple] = []
    runs: List[tuple] = []
    stopped_by = f"batch {max_batch:,} is the largest tried"
    flat = 0
    batch = 1
    while batch <= max_batch:
        why = memory(batch)
        if why is not None:
            stopped_by = f"batch {batch:,} would not fit: {why.removeprefix('not measured: ')}"
            break
        left = budget_s - (clock() - start)
        # Doubling the batch at most doubles the call: the warm-up and the timed calls must fit.
        estimate = (1 + MIN_CALLS_PER_BATCH) * 2 * points[-1][1] if points else 0.0
        if points and estimate > left:
            stopped_by = (f"batch {batch:,} would take ~{_seconds(estimate)}, more than is left of this sweep's "
                          f"{_seconds(budget_s)} budget")
            break
        progress(f"batch {batch:,}")
        data = tiled(arrays, batch)
        call(data)  # warm: a new shape may trace or compile
        samples = []
        began = clock()
        while len(samples) < MIN_CALLS_PER_BATCH or (clock() - began < SECONDS_PER_BATCH and len(samples) < 1000):
            t0 = clock()
            call(data)
            samples.append(clock() - t0)
        points.append((batch, median_of(samples)))
        runs.append(tuple(round_significant(s) for s in uniform_subset(samples, KEPT_RUNS_PER_BATCH)))
        if len(points) >= 2:
            (_, before), (_, after) = points[-2], points[-1]
            gained = (batch / after) / ((batch // 2) / before) - 1 if after > 0 and before > 0 else 0.0
            flat = flat + 1 if gained <= THROUGHPUT_GAIN else 0
            if flat >= FLAT_DOUBLINGS:
                stopped_by = (f"{FLAT_DOUBLINGS} doublings in a row raised samples/s by {THROUGHPUT_GAIN:.0%} or "
                              "less")
                break
        batch *= 2
        if clock() - start >= budget_s:
            stopped_by = f"this sweep's {_seconds(budget_s)} budget was spent"
            break
    return BatchSizeSweep(strategy, points, runs, stopped_by, budget_s, clock() - start)
