"""The data-size and batch-size sweeps: the model called on other sample counts than the run's batch.

Data size: for each sample count N (1, 32, 256, 1,024, ... as the time allows, whatever the run's
batch size B), the same N samples are scored end to end three ways, interleaved (predict, then
each loop, then again), so drift hits them alike:

- `model.predict(X)` on the whole array, at predict's own default batch size (32; a model whose
  batch size is fixed, at that);
- a loop of `predict_on_batch` over chunks of B (one chunk of N when N < B);
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

from kdiag.datamodel.beyond import (MIN_SWEEP_COUNTS, THROUGHPUT_GAIN, BatchSizeSweep, DataSizeSweep, SweepSeries,
                                    median_of)
from kdiag.datamodel.measurement import round_significant, uniform_subset
from kdiag.datamodel.words import count
from kdiag.engine.intake.limits import available_memory_bytes, needs_line

#: The automatic sample counts; the largest ones are left out when the budget is short, and counts
#: in between are filled in until there are MIN_SWEEP_COUNTS.
DEFAULT_SAMPLE_COUNTS = (1, 32, 256, 1024, 4096, 16384, 65536)
#: What `model.predict(X)` uses when it is given no batch_size (Keras 2 and 3 alike).
PREDICT_DEFAULT_BATCH = 32
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
SECONDS_PER_BATCH = 0.05
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
    # What its first call on a batch shape it has not seen costs beyond a call (it traces again): its
    # first call's time less its median, from the timing pass (for the plan).
    trace_s: float = 0.0


def whole_array_path(strategy: str, predict: ChunkCall, batch: int, chunk_s: float, default: bool = True,
                     trace_s: float = 0.0) -> SweepPath:
    """predict(X): one call on the whole array, in batches of `batch` (`default`: predict's own)."""

    def warm(arrays):
        samples = next(iter(arrays.values())).shape[0]
        # One full batch and the ragged last one, so a new shape is not traced inside the timing.
        rest = samples % batch
        predict(_chunk(arrays, slice(0, min(samples, batch + rest))))

    how = "model.predict(X)" if default else f"model.predict(X, batch_size={batch})"
    return SweepPath(strategy, how, predict, warm, chunk_s, trace_s)


def loop_path(strategy: str, call: ChunkCall, batch: int, chunk_s: float, trace_s: float = 0.0) -> SweepPath:
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

    return SweepPath(strategy, f"{strategy} on each chunk of {batch}", run, warm, chunk_s, trace_s)


def round_seconds(paths: Sequence[SweepPath], samples: int, batch: int, predict_batch: Optional[int] = None) -> float:
    """The estimated seconds of one run of every path on `samples` samples (from the per-call medians
    at the run's batch `batch`), its warm-up included: run_seconds + warm_seconds."""
    return run_seconds(paths, samples, batch) + warm_seconds(paths, samples, batch, predict_batch)


def run_seconds(paths: Sequence[SweepPath], samples: int, batch: int) -> float:
    """One timed run of every path on `samples` samples, estimated.

    predict's measured call covers one batch; each further sample is taken at the slowest loop's
    pace per sample (an upper bound for predict's larger batches). A loop's call on fewer samples
    than a batch is taken as a whole call: an upper bound too.
    """
    chunks = math.ceil(samples / batch)
    return _predict_s(paths, samples, batch) + sum(chunks * p.chunk_s for p in paths[1:])


def warm_seconds(paths: Sequence[SweepPath], samples: int, batch: int, predict_batch: Optional[int] = None) -> float:
    """The warm-up before a count's runs, estimated: predict once on a batch of its own (`predict_batch`,
    default `batch`) and the ragged rest, each loop on two chunks. Tracing a new batch shape is
    `retrace_seconds`, once per sweep."""
    predict_batch = predict_batch or batch
    chunks = math.ceil(samples / batch)
    warm = _predict_s(paths, min(samples, predict_batch + samples % predict_batch), batch)
    return warm + sum(min(chunks, 2) * p.chunk_s for p in paths[1:])


def retrace_seconds(paths: Sequence[SweepPath], counts: Sequence[int], batch: int,
                    predict_batch: Optional[int] = None) -> float:
    """What tracing again costs the sweep over `counts`: each path's `trace_s`, once, if any count calls
    for a batch shape other than the run's. Once: TensorFlow relaxes a function retraced for a second
    shape to any batch size (reduce_retracing, which Keras' predict uses)."""
    predict_batch = predict_batch or batch
    steps = [predict_batch] + [batch] * (len(paths) - 1)
    return sum(path.trace_s for path, step in zip(paths, steps)
               if any(_new_shapes(n, step, batch) for n in counts))


def _predict_s(paths: Sequence[SweepPath], samples: int, batch: int) -> float:
    per_sample = max((p.chunk_s for p in paths[1:]), default=paths[0].chunk_s) / batch
    return paths[0].chunk_s + max(0, samples - batch) * per_sample


def _new_shapes(samples: int, step: int, seen: int) -> set:
    """The batch shapes that scoring `samples` samples in steps of `step` calls for, but `seen`."""
    shapes = {min(samples, step)} | ({samples % step} if samples > step and samples % step else set())
    return shapes - {seen}


def plan_counts(requested: Optional[Sequence[int]], batch: int, cost: Callable[[int], float], budget_s: float,
                memory: Callable[[int], Optional[str]], multiple: int = 1,
                overhead_s: float = 0.0) -> Tuple[List[int], List[str]]:
    """The counts to measure, smallest first, and a line for each one left out.

    `cost(n)`: estimated seconds of one run of every path on n samples; `memory(n)`: why n samples
    do not fit, or None. With no `requested` counts the list is automatic, DEFAULT_SAMPLE_COUNTS
    whatever the batch size `batch`: when one of those does not fit the budget, the largest doubling
    of the last count that does fit takes its place, and while fewer than MIN_SWEEP_COUNTS fit,
    doublings in between are filled in (a crossover needs three counts). `multiple`: a model whose
    batch size is fixed takes only whole batches, so the automatic counts are rounded up to multiples of it.
    `overhead_s`: what the sweep spends besides its counts (tracing again), out of `budget_s`.
    """
    automatic = requested is None
    counts = sorted({math.ceil(n / multiple) * multiple for n in DEFAULT_SAMPLE_COUNTS} if automatic
                    else set(requested))
    chosen: List[int] = []
    skipped: List[str] = []
    left = budget_s - overhead_s
    out_of_time = False
    for n in counts:
        why = memory(n)
        if why is not None:
            skipped.append(f"{count(n, 'sample')}: {why}")
            continue
        estimate = cost(n)
        if out_of_time or estimate > left:
            if automatic and not out_of_time:
                # With a margin: the estimates come from one batch's medians, and warm-up calls add to them.
                filler = _largest_doubling(chosen[-1] if chosen else multiple, n, cost, PLAN_MARGIN * left, memory)
                if filler is not None:
                    chosen.append(filler)
                    left -= cost(filler)
            out_of_time = True
            skipped.append(f"{count(n, 'sample')}: not measured: would take ~{_seconds(estimate)}, beyond what is "
                           f"left of this sweep's {_seconds(budget_s)} budget")
            continue
        chosen.append(n)
        left -= estimate
    if automatic:
        for filler in _fillers(chosen, multiple):
            if len(chosen) >= MIN_SWEEP_COUNTS:
                break
            if memory(filler) is None and cost(filler) <= PLAN_MARGIN * left:
                chosen.append(filler)
                left -= cost(filler)
                chosen.sort()
    return sorted(chosen), skipped


def _fillers(chosen: Sequence[int], multiple: int) -> List[int]:
    """Doublings (of `multiple`) between the counts chosen, the middle of the widest gap first."""
    candidates = []
    points = sorted(chosen)
    for low, high in zip(points, points[1:]):
        between = []
        n = low * 2
        while n < high:
            between.append(n)
            n *= 2
        if between:
            candidates.append((math.log(high / low), between[len(between) // 2]))
    return [n for _, n in sorted(candidates, reverse=True) if n % multiple == 0]


def minimum_seconds(predict_s: float, loops_s: Sequence[float], batch: int, multiple: int = 1,
                    traces_s: Sequence[float] = ()) -> float:
    """The estimated seconds of the three smallest automatic counts (`multiple`, its double and its
    quadruple) for predict and loops with these per-call medians at the run's batch (and these costs of
    tracing a new shape, predict's first), the warm-up on the run's batch and the estimates' margin included."""
    predict_batch = multiple if multiple > 1 else PREDICT_DEFAULT_BATCH
    traces = list(traces_s) + [0.0] * (1 + len(loops_s) - len(traces_s))
    paths = [SweepPath("predict", "", None, None, predict_s, traces[0])] + [
        SweepPath("loop", "", None, None, s, t) for s, t in zip(loops_s, traces[1:])]
    counts = [n * multiple for n in (1, 2, 4)]
    warm = predict_s + sum(loops_s) + retrace_seconds(paths, counts, batch, predict_batch)
    return warm + sum(round_seconds(paths, n, batch, predict_batch) for n in counts) / PLAN_MARGIN


def three_counts(cost: Callable[[int], float], budget_s: float, memory: Callable[[int], Optional[str]],
                 multiple: int = 1) -> Optional[List[int]]:
    """The smallest count (`multiple`), the largest doubling of it L and the doubling halfway between (in
    log scale) that fit in `budget_s` together, with the estimates' margin; None when not even the
    three smallest doublings fit."""
    best = None
    high = 4 * multiple
    while high <= max(DEFAULT_SAMPLE_COUNTS) * multiple and memory(high) is None:
        middle = multiple * 2 ** round(math.log2(high // multiple) / 2)
        counts = [multiple, middle, high]
        if sum(cost(n) for n in counts) > PLAN_MARGIN * budget_s:
            break
        best = counts
        high *= 2
    return best


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
                    progress: Callable[[str], None] = lambda what: None, multiple: int = 1,
                    predict_batch: Optional[int] = None, stretch_s: float = 0.0) -> DataSizeSweep:
    """Time every path end to end at each planned count; predict is `paths[0]`, in batches of
    `predict_batch` (default: `batch`), the loops in chunks of `batch`. `stretch_s`: seconds past
    `budget_s` it may take to reach MIN_SWEEP_COUNTS automatic counts.

    Every path is called once on the run's own batch before the sweep's clock starts: a new predict
    call or a newly traced function traces on its first call, a one-off that no sample count pays
    (it took the whole budget of the first count on a busy machine).
    """
    for path in paths:
        path.warm(dict(arrays))
    start = clock()
    memory = memory or (lambda n: None)

    def estimate_s(n: int) -> float:
        return round_seconds(paths, n, batch, predict_batch)

    automatic = sorted({math.ceil(n / multiple) * multiple for n in DEFAULT_SAMPLE_COUNTS})
    retrace = retrace_seconds(paths, requested or automatic[:MIN_SWEEP_COUNTS], batch, predict_batch)
    counts, skipped, budget_s = _plan_with_stretch(requested, batch, estimate_s, budget_s, memory, multiple, stretch_s,
                                                   retrace)
    pending = retrace  # kept from the extra runs until a count with a new batch shape has paid it
    runs: Dict[Tuple[int, int], List[float]] = {}
    measured: List[int] = []
    for position, samples in enumerate(counts):
        left = budget_s - (clock() - start)
        estimate = estimate_s(samples)
        if PLAN_MARGIN * estimate > left and measured:
            skipped += [f"{count(n, 'sample')}: not measured: would take ~{_seconds(estimate_s(n))}, more "
                        f"than the {_seconds(max(0.0, left))} left of this sweep's {_seconds(budget_s)} budget"
                        for n in counts[position:]]
            break
        progress(count(samples, "sample"))
        # Extra runs share only the slack: every larger count keeps the time for its warm-up and one run.
        later = sum(estimate_s(n) for n in counts[position + 1:])
        slack = budget_s - (clock() - start) - later - estimate - pending
        allowance = run_seconds(paths, samples, batch) + max(0.0, slack) / (len(counts) - position)
        _time_count(paths, tiled(arrays, samples), samples, allowance, runs, clock)
        pending = 0.0 if retrace_seconds(paths, [samples], batch, predict_batch) else pending
        measured.append(samples)
    series = []
    for index, path in enumerate(paths):
        points = [(n, median_of(runs[(index, n)])) for n in measured]
        series.append(SweepSeries(path.strategy, path.how, points,
                                  [tuple(round_significant(s) for s in runs[(index, n)]) for n in measured]))
    skipped.sort(key=lambda line: int(line.split(" ", 1)[0].replace(",", "")))
    return DataSizeSweep(batch, best_path, series, skipped, budget_s, clock() - start,
                         predict_batch_size=predict_batch or batch)


def _plan_with_stretch(requested, batch: int, estimate_s, budget_s: float, memory, multiple: int,
                       stretch_s: float, overhead_s: float) -> Tuple[List[int], List[str], float]:
    """(counts, lines of those left out, the budget they were planned in, `overhead_s` included)."""
    counts, skipped = plan_counts(requested, batch, estimate_s, budget_s, memory, multiple, overhead_s)
    if requested is not None or len(counts) >= MIN_SWEEP_COUNTS or stretch_s <= 0:
        return counts, skipped, budget_s
    # A slow model: its budget holds fewer counts than a crossover needs. It may take up to
    # `stretch_s` more (what the run has to spare) for three counts, as far apart as that allows.
    three = three_counts(estimate_s, budget_s + stretch_s - overhead_s, memory, multiple)
    if not three:
        return counts, skipped, budget_s
    spare_s = budget_s + stretch_s  # what the run could give this sweep
    budget_s = sum(estimate_s(n) for n in three) / PLAN_MARGIN + overhead_s
    # "~7.2 s, beyond the 11 s to spare" read as a contradiction: the count comes on top of the three.
    skipped = [f"{count(n, 'sample')}: " + (memory(n) or f"not measured: would take ~{_seconds(estimate_s(n))} more "
                                              f"than the ~{_seconds(budget_s)} of the smaller counts, beyond the "
                                              f"~{_seconds(spare_s)} the run had to spare for this sweep")
               for n in sorted({math.ceil(n / multiple) * multiple for n in DEFAULT_SAMPLE_COUNTS}) if n > three[-1]]
    return three, skipped, budget_s


def _time_count(paths: Sequence[SweepPath], data: Arrays, samples: int, allowance: float,
                runs: Dict[Tuple[int, int], List[float]], clock) -> None:
    """Every path warmed on `data`, then timed in turns, up to MAX_RUNS runs each within `allowance` seconds."""
    for path in paths:
        path.warm(data)
    spent = 0.0
    rounds = 0
    while rounds < MAX_RUNS and (rounds == 0 or spent + spent / rounds <= allowance):
        for index, path in enumerate(paths):
            began = clock()
            path.run(data)
            runs.setdefault((index, samples), []).append(clock() - began)
        rounds += 1
        spent = sum(sum(runs[(i, samples)]) for i in range(len(paths)))


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
