"""Raw timing samples of one strategy, and the statistics computed from them."""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

#: IQR/median above this makes a measurement "noisy" in every output.
NOISE_THRESHOLD = 0.10


@dataclasses.dataclass(frozen=True)
class Measurement:
    """Raw samples of one strategy; statistics are computed from them, not stored."""

    strategy: str
    first_call_s: float
    samples_s: tuple  # seconds per timed call, in call order
    stopped_early: bool = False  # hit the wall cap before min_calls
    source: str = "python"  # "python", or "cpp" for the C API baseline

    @property
    def count(self) -> int:
        return len(self.samples_s)

    @property
    def median_s(self) -> float:
        """Median of the timed calls (linear interpolation between the two middle samples)."""
        return percentile(self.samples_s, 50)

    @property
    def p90_s(self) -> float:
        """90th percentile, linear interpolation (numpy's default method)."""
        return percentile(self.samples_s, 90)

    @property
    def p99_s(self) -> float:
        """99th percentile, linear interpolation (numpy's default method)."""
        return percentile(self.samples_s, 99)

    @property
    def iqr_s(self) -> float:
        """Interquartile range: 75th minus 25th percentile."""
        return percentile(self.samples_s, 75) - percentile(self.samples_s, 25)

    @property
    def calls_per_s(self) -> float:
        m = self.median_s
        return 1.0 / m if m > 0 else math.inf

    @property
    def noisy(self) -> bool:
        """True when IQR/median exceeds NOISE_THRESHOLD (10%)."""
        m = self.median_s
        return m > 0 and self.iqr_s / m > NOISE_THRESHOLD


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile with linear interpolation, as numpy.percentile's default."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
