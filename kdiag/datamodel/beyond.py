"""Beyond one batch: what a run measures over many samples, batch sizes and calls, and inside execution.

- `DataSizeSweep`: predict(X, batch_size=B) against loops over chunks of B, end to end, at several
  sample counts, and the count from which predict catches up with the best path (the crossover).
- `BatchSizeSweep`: the best path's time per call at batch 1, 2, 4, ...; where throughput stops growing.
- `MemoryLoop`: the process's RSS sampled over a sustained loop of calls, and its growth per 1,000
  calls as a fitted slope with a confidence band.
- `OpBreakdown`: the ops that take the best path's execution time, from XProf's framework op stats.
- `ThreadsEffect`: the best path's graph with 1 intra-op thread and with one per core.

Standard library only. Each class keeps the raw figures (points ready to plot: lists of
(x, y) tuples) and derives the verdicts from them, so the JSON, the findings and every
renderer agree. The thresholds below are the defaults; `kdiag.analysis.diagnose.THRESHOLDS`
lists them for `kdiag rules` and passes its own values in.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import List, Optional, Sequence, Tuple

from kdiag.datamodel.measurement import Measurement, percentile

#: predict within this fraction of the best path's end-to-end time has caught up with it.
CROSSOVER_WITHIN = 0.10
#: A data-size sweep over fewer sample counts than this makes no crossover claim, either way.
MIN_SWEEP_COUNTS = 3
#: Doubling the batch must raise samples/s by more than this to be worth collecting for.
THROUGHPUT_GAIN = 0.10
#: The confidence of the band around a memory growth slope.
GROWTH_CONFIDENCE = 0.95
#: Growth below this many bytes per 1,000 calls is not reported, however firm the fit: the
#: allocator's arenas and pages move RSS by that much without any leak.
MIN_GROWTH_PER_1000_CALLS = 128 * 1024
#: Nor growth whose fitted total over the loop is below this: a few pages, whatever the slope says.
MIN_TOTAL_GROWTH = 256 * 1024
#: A leak grows all through the loop; allocator arenas and caches grow in a few steps while they warm up
#: and then stop. So the loop is cut into GROWTH_PARTS equal parts, and at least MIN_STEADY_PARTS of them
#: must each grow by STEADY_SHARE of their even share of the fitted growth or more.
GROWTH_PARTS = 5
MIN_STEADY_PARTS = 4
STEADY_SHARE = 0.5
#: Fewer RSS samples than this give no slope worth a band.
MIN_RSS_SAMPLES = 10


# --- statistics ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LineFit:
    """y = intercept + slope * x by ordinary least squares, with the slope's standard error."""

    slope: float
    intercept: float
    stderr: float
    count: int

    def half_width(self, confidence: float = GROWTH_CONFIDENCE) -> float:
        """Half the width of the slope's two-sided confidence band (Student's t, n - 2 degrees of freedom)."""
        return t_quantile(0.5 + confidence / 2, self.count - 2) * self.stderr

    def band(self, confidence: float = GROWTH_CONFIDENCE) -> Tuple[float, float]:
        half = self.half_width(confidence)
        return self.slope - half, self.slope + half


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> Optional[LineFit]:
    """Least squares through (xs, ys); None with fewer than 3 points or a single x."""
    n = len(xs)
    if n != len(ys) or n < 3:
        return None
    mean_x, mean_y = math.fsum(xs) / n, math.fsum(ys) / n
    sxx = math.fsum((x - mean_x) ** 2 for x in xs)
    if sxx <= 0:
        return None
    slope = math.fsum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sxx
    intercept = mean_y - slope * mean_x
    residual = math.fsum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys))
    stderr = math.sqrt(residual / (n - 2) / sxx)
    return LineFit(slope, intercept, stderr, n)


def t_quantile(p: float, dof: int) -> float:
    """Student's t quantile, by the Cornish-Fisher expansion around the normal one.

    Abramowitz & Stegun 26.7.5: within 0.2% of the exact value from 3 degrees of freedom up
    (3.179 for 3.182 at 97.5%); 1 and 2 degrees of freedom get the exact closed forms.
    """
    if dof < 1:
        return math.inf
    if dof == 1:
        return math.tan(math.pi * (p - 0.5))
    if dof == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    z = statistics.NormalDist().inv_cdf(p)
    g1 = (z ** 3 + z) / 4
    g2 = (5 * z ** 5 + 16 * z ** 3 + 3 * z) / 96
    g3 = (3 * z ** 7 + 19 * z ** 5 + 17 * z ** 3 - 15 * z) / 384
    g4 = (79 * z ** 9 + 776 * z ** 7 + 1482 * z ** 5 - 1920 * z ** 3 - 945 * z) / 92160
    return z + g1 / dof + g2 / dof ** 2 + g3 / dof ** 3 + g4 / dof ** 4


# --- data size ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SweepSeries:
    """One way of scoring a whole array: its end-to-end seconds at each sample count."""

    strategy: str  # the strategy's display name
    how: str  # "predict(X, batch_size=32)", "a loop over chunks of 32"
    points: List[tuple] = dataclasses.field(default_factory=list)  # (samples, median seconds end to end)
    runs_s: List[tuple] = dataclasses.field(default_factory=list)  # every run's seconds, per point

    def seconds_at(self, samples: int) -> Optional[float]:
        return next((s for n, s in self.points if n == samples), None)


@dataclasses.dataclass(frozen=True)
class DataSizeSweep:
    """predict against the loops, end to end, over growing sample counts."""

    batch_size: int
    best_path: str = ""  # the direct path looped over chunks (a strategy name)
    series: List[SweepSeries] = dataclasses.field(default_factory=list)  # predict first
    skipped: List[str] = dataclasses.field(default_factory=list)  # counts not measured, and why
    budget_s: float = 0.0
    spent_s: float = 0.0
    reason: str = ""  # why no sweep ran ("" when it did)
    # predict's own batch size (32, its default, unless the model's is fixed); None in reports written
    # before it was recorded, where predict ran at `batch_size`, the loops' chunk.
    predict_batch_size: Optional[int] = None

    @property
    def predict(self) -> Optional[SweepSeries]:
        return self.series[0] if self.series else None

    @property
    def counts(self) -> List[int]:
        """The sample counts every series measured, smallest first."""
        if not self.series:
            return []
        common = set.intersection(*({n for n, _ in s.points} for s in self.series))
        return sorted(common)

    @property
    def largest(self) -> Optional[int]:
        return self.counts[-1] if self.counts else None

    @property
    def judged(self) -> bool:
        """Whether enough sample counts were measured for a crossover claim, either way."""
        return len(self.counts) >= MIN_SWEEP_COUNTS

    def best_at(self, samples: int) -> Optional[SweepSeries]:
        """The fastest series other than predict at this count."""
        others = [s for s in self.series[1:] if s.seconds_at(samples) is not None]
        return min(others, key=lambda s: s.seconds_at(samples)) if others else None

    def ratio_at(self, samples: int) -> Optional[float]:
        """predict's seconds over the best loop's at this count: above 1 when predict is slower."""
        best = self.best_at(samples)
        if self.predict is None or best is None or not best.seconds_at(samples):
            return None
        return self.predict.seconds_at(samples) / best.seconds_at(samples)

    def crossover(self, within: float = CROSSOVER_WITHIN) -> Optional[int]:
        """The smallest count from which predict stays within `within` of the best loop; None if never."""
        found = None
        for samples in reversed(self.counts):
            ratio = self.ratio_at(samples)
            if ratio is None or ratio > 1 + within:
                break
            found = samples
        return found

    @property
    def crossover_samples(self) -> Optional[int]:
        return self.crossover()

    def spread_at(self, samples: int) -> Optional[float]:
        """The slowest series' seconds over the fastest's at this count."""
        times = [s.seconds_at(samples) for s in self.series]
        if any(t is None or t <= 0 for t in times) or not times:
            return None
        return max(times) / min(times)

    @property
    def spread_at_largest(self) -> Optional[float]:
        return self.spread_at(self.largest) if self.largest is not None else None


def per_1000(seconds: float, samples: int) -> float:
    """Seconds per 1,000 samples."""
    return seconds * 1000.0 / samples


# --- batch size ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BatchSizeSweep:
    """The best path's time per call as the batch doubles."""

    strategy: str = ""
    points: List[tuple] = dataclasses.field(default_factory=list)  # (batch size, median seconds per call)
    # Per point, a uniform subset (at most 50, 4 significant digits) of its timed calls' seconds.
    runs_s: List[tuple] = dataclasses.field(default_factory=list)
    stopped_by: str = ""  # why the doubling stopped: "batch 256 would take ~0.74 s, more than is left ..."
    budget_s: float = 0.0
    spent_s: float = 0.0
    reason: str = ""  # why no sweep ran

    @property
    def throughput(self) -> List[tuple]:
        """(batch size, samples per second)."""
        return [(b, b / s) for b, s in self.points if s > 0]

    @property
    def latency(self) -> List[tuple]:
        """(batch size, seconds per sample)."""
        return [(b, s / b) for b, s in self.points]

    def knee(self, gain: float = THROUGHPUT_GAIN) -> Optional[int]:
        """The smallest batch size that no larger one measured beats by more than `gain` in samples/s;
        None when only the largest batch measured is such a size (throughput was still growing).

        Judged against every larger batch, not the next one alone: one noisy dip must not end the climb.
        """
        rates = self.throughput
        for index, (batch, rate) in enumerate(rates[:-1]):
            if all(later <= rate * (1 + gain) for _, later in rates[index + 1:]):
                return batch
        return None

    @property
    def knee_batch(self) -> Optional[int]:
        return self.knee()


# --- memory over many calls ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class MemoryLoop:
    """The process's RSS over a sustained loop of one strategy's calls (after a warm-up)."""

    strategy: str
    calls: int = 0  # timed in the loop, warm-up excluded
    seconds: float = 0.0
    warmup_calls: int = 0
    warmup_s: float = 0.0
    points: List[tuple] = dataclasses.field(default_factory=list)  # (calls so far, RSS bytes)
    reason: str = ""  # why no loop ran

    @property
    def fit(self) -> Optional[LineFit]:
        if len(self.points) < MIN_RSS_SAMPLES:
            return None
        return fit_line([c for c, _ in self.points], [r for _, r in self.points])

    @property
    def peak_rss_bytes(self) -> Optional[int]:
        return max(r for _, r in self.points) if self.points else None

    @property
    def growth_per_1000_calls_bytes(self) -> Optional[float]:
        fit = self.fit
        return fit.slope * 1000 if fit is not None else None

    def growth_band(self, confidence: float = GROWTH_CONFIDENCE) -> Optional[Tuple[float, float]]:
        """The confidence band of the growth per 1,000 calls, in bytes."""
        fit = self.fit
        if fit is None:
            return None
        low, high = fit.band(confidence)
        return low * 1000, high * 1000

    @property
    def growth_band_bytes(self) -> Optional[Tuple[float, float]]:
        return self.growth_band()

    @property
    def total_growth_bytes(self) -> Optional[float]:
        """The fitted growth over the whole loop: the slope times the calls."""
        fit = self.fit
        return fit.slope * self.calls if fit is not None else None

    @property
    def observed_growth_bytes(self) -> Optional[int]:
        """RSS at the loop's last sample minus its first."""
        return self.points[-1][1] - self.points[0][1] if self.points else None

    def steady_parts(self, share: float = STEADY_SHARE, parts: int = GROWTH_PARTS) -> int:
        """How many of the loop's `parts` equal parts (by RSS sample) grew by at least `share` of
        their even share of the fitted growth."""
        total = self.total_growth_bytes
        if total is None or total <= 0 or len(self.points) < parts + 1:
            return 0
        last = len(self.points) - 1
        bounds = [round(i * last / parts) for i in range(parts + 1)]
        rss = [r for _, r in self.points]
        return sum(1 for a, b in zip(bounds, bounds[1:]) if rss[b] - rss[a] >= share * total / parts)

    def rises(self, confidence: float = GROWTH_CONFIDENCE, minimum: float = MIN_GROWTH_PER_1000_CALLS,
              minimum_total: float = MIN_TOTAL_GROWTH) -> bool:
        """The whole band lies above zero, the slope is at least `minimum` bytes per 1,000 calls, and
        the fitted growth over the loop at least `minimum_total` bytes: RSS rose, steadily or not."""
        band = self.growth_band(confidence)
        return (band is not None and band[0] > 0 and self.growth_per_1000_calls_bytes >= minimum
                and self.total_growth_bytes >= minimum_total)

    def grows(self, confidence: float = GROWTH_CONFIDENCE, minimum: float = MIN_GROWTH_PER_1000_CALLS,
              minimum_total: float = MIN_TOTAL_GROWTH, steady_parts: int = MIN_STEADY_PARTS,
              steady_share: float = STEADY_SHARE) -> bool:
        """RSS rose (`rises`), and steadily: at least `steady_parts` of the loop's parts carried their share."""
        return (self.rises(confidence, minimum, minimum_total)
                and self.steady_parts(steady_share) >= steady_parts)

    @property
    def growing(self) -> bool:
        return self.grows()


@dataclasses.dataclass(frozen=True)
class MemoryLoops:
    loops: List[MemoryLoop] = dataclasses.field(default_factory=list)  # predict first, then the best path
    budget_s: float = 0.0
    reason: str = ""  # why no loop ran


# --- what execution is made of ------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OpRow:
    """One op (or one op type) of the traced calls, by self time."""

    name: str
    op_type: str  # the plain op name (MatMul), whatever kernel ran it
    occurrences: int
    self_s: float  # over all traced calls
    share: float  # of the traced execution time (XProf's self-time percentage)
    # The kernel TensorFlow ran, when it is not the plain op: oneDNN's `_MklMatMul`, a fused
    # `_FusedConv2D` (by op type: the kernels seen, comma-separated). "" when it is the plain op.
    kernel: str = ""


@dataclasses.dataclass(frozen=True)
class OpBreakdown:
    """The best path's execution time by op, from a TensorFlow profiler trace converted by XProf."""

    strategy: str
    calls: int = 0  # traced calls
    traced_s: float = 0.0  # the traced calls' wall time, profiler running
    op_time_s: float = 0.0  # every op's self time over the traced calls (idle excluded)
    ops: List[OpRow] = dataclasses.field(default_factory=list)  # top ops by self time, until 90% is covered
    other_ops: int = 0  # ops not listed
    other_share: float = 0.0  # their share together
    by_type: List[OpRow] = dataclasses.field(default_factory=list)  # every op type, name = type
    where: str = ""  # "host" (CPU) or "device" (an accelerator): whose ops are counted
    converter: str = ""  # the XProf version and tool that converted the trace
    reason: str = ""  # "not measured: ...", or why the ops are not listed

    @property
    def execution_share(self) -> Optional[float]:
        """The ops' self time over the traced calls' wall time: how much of a call is graph execution.

        Both are measured with the profiler running, so its overhead is on both sides. Ops that ran
        in parallel on several threads can add up to more than 1.
        """
        if not self.calls or self.traced_s <= 0:
            return None
        return self.op_time_s / self.traced_s

    @property
    def listed_share(self) -> float:
        return math.fsum(op.share for op in self.ops)


@dataclasses.dataclass(frozen=True)
class ThreadsEffect:
    """The same graph timed with 1 intra-op thread and with one per core, in interleaved child processes."""

    strategy: str  # what the children timed
    cores: int = 0
    one: Optional[Measurement] = None  # intra-op threads = 1
    many: Optional[Measurement] = None  # intra-op threads = cores
    budget_s: float = 0.0
    load_s: float = 0.0  # the children's start: TensorFlow's import and the model's load
    reason: str = ""  # why it was not measured

    @property
    def ratio(self) -> Optional[float]:
        """1 thread's median over the core count's: above 1 when more threads help."""
        if self.one is None or self.many is None or not self.one.count or not self.many.count:
            return None
        return self.one.median_s / self.many.median_s if self.many.median_s > 0 else None


def median_of(values: Sequence[float]) -> float:
    return percentile(list(values), 50)
