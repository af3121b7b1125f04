"""Timing samples of one strategy, and their statistics computed from every sample.

A long run times a fast strategy a hundred thousand times. The report keeps a uniform
sample of at most MAX_SAMPLES of those calls, rounded to SAMPLE_DIGITS significant digits
(what a clock read twice agrees on), so report.json stays small; the statistics are
computed once, at measurement time, from *all* the calls at full precision, and stored.
They stay exact however the samples were thinned.

A fast strategy is timed over batches of calls (`calls_per_sample` calls per sample, each sample
their mean), so that reading the clock costs little beside the call; its statistics are those of
the samples. The median comes with its 95% confidence interval (`ci_low_s`, `ci_high_s`), from
order statistics: distribution-free, which suits latencies (skewed, with a long tail).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import statistics
from typing import Optional, Sequence, Tuple

#: IQR/median above this makes a measurement "noisy" in every output.
NOISE_THRESHOLD = 0.10

#: At most this many samples are kept per strategy (a uniform sample, in call order): enough for the
#: 1st and 99th percentiles report.html draws, and report.json of the tiny example stays under 300 kB.
MAX_SAMPLES = 1000
#: Significant digits kept of each sample: a perf_counter reading is not steadier than that.
SAMPLE_DIGITS = 4

_STATS = ("count", "median_s", "iqr_s", "p90_s", "p99_s", "min_s", "max_s", "mean_s")

#: The confidence of the median's interval (ci_low_s, ci_high_s).
CI_CONFIDENCE = 0.95
#: Fewer samples give no 95% interval from order statistics: [min, max] of 5 covers the median
#: with probability 1 - 2/32 = 93.75%.
MIN_SAMPLES_FOR_CI = 6
#: Up to this many samples the interval's ranks come from the exact binomial distribution; above
#: it, from its normal approximation (off by at most a rank there).
EXACT_CI_UP_TO = 1000

#: Why timing a strategy stopped (Measurement.stopped_by).
STOPPED_BY = {
    "precision": "its median was known precisely enough",
    "budget": "its --budget was spent",
    "wall cap": "its wall-time cap (--max-wall) was reached",
    "time limit": "the run's --time-limit was reached",
    "anchor": "it was re-timed only as an anchor beside other strategies",
    "interrupted": "the run was interrupted",
}


@dataclasses.dataclass(frozen=True)
class Measurement:
    """The timed calls of one strategy.

    `samples_s` is the record of the calls; the statistics are stored fields. Given only
    samples (`Measurement(name, first, samples)`, as tests do), the statistics are computed
    from them. `from_samples` computes them from every call first, then keeps a rounded,
    capped sample: when `count` exceeds `len(samples_s)`, the samples are a subset and the
    statistics still describe all `count` calls. Build a new Measurement rather than
    `dataclasses.replace(m, samples_s=...)`, which would keep the old statistics.
    """

    strategy: str
    first_call_s: float
    samples_s: tuple  # seconds per timed call, in call order (rounded and thinned: see from_samples)
    stopped_early: bool = False  # fewer than --min-calls timed calls (the time limit cut it short)
    source: str = "python"  # "python", or "cpp" for the C API baseline
    # Statistics of every timed call, at full precision. None: compute them from samples_s.
    count: Optional[int] = None
    median_s: Optional[float] = None  # linear interpolation, as numpy.percentile's default
    iqr_s: Optional[float] = None  # 75th minus 25th percentile
    p90_s: Optional[float] = None
    p99_s: Optional[float] = None
    min_s: Optional[float] = None
    max_s: Optional[float] = None
    mean_s: Optional[float] = None
    # Added after schema 2's first files, which load with the defaults: one call per sample, no interval.
    calls_per_sample: int = 1  # each sample is the mean of this many back-to-back calls
    ci_low_s: Optional[float] = None  # the median's 95% confidence interval; None: under 6 samples
    ci_high_s: Optional[float] = None
    stopped_by: str = ""  # a key of STOPPED_BY; "" when not recorded

    def __post_init__(self):
        object.__setattr__(self, "samples_s", tuple(self.samples_s))
        if self.count is None:
            for name, value in summary(self.samples_s).items():
                object.__setattr__(self, name, value)
            return
        if self.count < len(self.samples_s):
            raise ValueError(f"measurement of {self.strategy!r} says count {self.count} but holds "
                             f"{len(self.samples_s)} samples")
        for name in _STATS[1:]:  # a report saved with a statistic missing: NaN, never a guess
            if getattr(self, name) is None:
                object.__setattr__(self, name, math.nan)

    @classmethod
    def from_samples(cls, strategy: str, first_call_s: float, samples: Sequence[float], stopped_early: bool = False,
                     source: str = "python", max_samples: int = MAX_SAMPLES, calls_per_sample: int = 1,
                     stopped_by: str = "") -> "Measurement":
        """Statistics from every sample; then at most `max_samples` of them kept, rounded."""
        stats = summary(samples)
        kept = tuple(round_significant(s) for s in uniform_subset(samples, max_samples))
        return cls(strategy, first_call_s, kept, stopped_early, source, calls_per_sample=calls_per_sample,
                   stopped_by=stopped_by, **stats)

    @property
    def calls(self) -> int:
        """Timed calls: samples times the calls each sample is the mean of."""
        return self.count * self.calls_per_sample

    @property
    def ci_half_width(self) -> Optional[float]:
        """The wider side of the median's 95% interval, as a fraction of the median; None without one."""
        if self.ci_low_s is None or self.ci_high_s is None or not self.median_s or self.median_s != self.median_s:
            return None
        return max(self.median_s - self.ci_low_s, self.ci_high_s - self.median_s) / self.median_s

    @property
    def thinned(self) -> bool:
        """True when samples_s holds only a uniform subset of the `count` timed calls."""
        return self.count > len(self.samples_s)

    @property
    def calls_per_s(self) -> float:
        m = self.median_s
        return 1.0 / m if m > 0 else math.inf

    @property
    def noisy(self) -> bool:
        """True when IQR/median exceeds NOISE_THRESHOLD (10%)."""
        m = self.median_s
        return m > 0 and self.iqr_s / m > NOISE_THRESHOLD


def summary(samples: Sequence[float]) -> dict:
    """Every stored statistic of a Measurement, from all `samples` (NaN where there are none)."""
    ordered = sorted(samples)
    if not ordered:
        return dict({name: math.nan for name in _STATS}, count=0)
    low, high = median_interval(ordered)
    return dict(
        ci_low_s=low,
        ci_high_s=high,
        count=len(ordered),
        median_s=_sorted_percentile(ordered, 50),
        iqr_s=_sorted_percentile(ordered, 75) - _sorted_percentile(ordered, 25),
        p90_s=_sorted_percentile(ordered, 90),
        p99_s=_sorted_percentile(ordered, 99),
        min_s=ordered[0],
        max_s=ordered[-1],
        mean_s=math.fsum(ordered) / len(ordered),
    )


def median_ci_ranks(n: int, confidence: float = CI_CONFIDENCE) -> Optional[Tuple[int, int]]:
    """The 0-based ranks (lo, hi) of the sorted samples that bound the median with at least
    `confidence`, or None under MIN_SAMPLES_FOR_CI samples.

    Order statistics: the median lies below the j-th smallest of n samples with probability
    P(Binomial(n, 1/2) >= j), whatever the distribution; [x(j), x(n-j+1)] is the interval. Exact up to
    EXACT_CI_UP_TO samples; above, j = floor((n - z·sqrt(n)) / 2) from the normal approximation.
    """
    if n < MIN_SAMPLES_FOR_CI:
        return None
    j = _lower_rank(n, confidence)  # 1-based
    return j - 1, n - j


@functools.lru_cache(maxsize=4096)
def _lower_rank(n: int, confidence: float) -> int:
    tail = (1.0 - confidence) / 2
    if n > EXACT_CI_UP_TO:
        z = statistics.NormalDist().inv_cdf(1.0 - tail)
        return max(1, math.floor((n - z * math.sqrt(n)) / 2))
    # The largest j with P(B <= j - 1) <= tail, B ~ Binomial(n, 1/2), in exact integer arithmetic.
    total = 1 << n
    cumulative = 0
    j = 0
    while True:
        cumulative += math.comb(n, j)  # now P(B <= j) * 2^n
        if cumulative * 2 > (1.0 - confidence) * total:
            return max(1, j)
        j += 1


def median_interval(ordered: Sequence[float], confidence: float = CI_CONFIDENCE) -> Tuple[Optional[float],
                                                                                        Optional[float]]:
    """The median's confidence interval from sorted samples; (None, None) under MIN_SAMPLES_FOR_CI."""
    ranks = median_ci_ranks(len(ordered), confidence)
    if ranks is None:
        return None, None
    return ordered[ranks[0]], ordered[ranks[1]]


def uniform_subset(samples: Sequence[float], limit: int) -> Sequence[float]:
    """At most `limit` samples, evenly spaced in call order (all of them when there are fewer).

    Evenly spaced rather than random: deterministic, and a drift over the run stays visible.
    """
    n = len(samples)
    if n <= limit:
        return samples
    return [samples[i * n // limit] for i in range(limit)]


def round_significant(value: float, digits: int = SAMPLE_DIGITS) -> float:
    """`value` to `digits` significant digits (NaN and infinities as they are)."""
    if not math.isfinite(value) or value == 0:
        return value
    return float(f"{value:.{digits}g}")


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile with linear interpolation, as numpy.percentile's default."""
    if not samples:
        return math.nan
    return _sorted_percentile(sorted(samples), q)


def _sorted_percentile(ordered: Sequence[float], q: float) -> float:
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
