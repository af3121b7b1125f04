"""What changed between two Reports (`kdiag compare`): per strategy, per phase, and the regressions."""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple, Union

#: A phase change smaller than this fraction of its scenario's median (before) is never a
#: regression, however large its ratio: a phase going from 0.01 ms to 0.05 ms is not news.
PHASE_MIN_SHARE_OF_TOTAL = 0.01

# Strategy statuses
COMPARED = "compared"  # measured in both
ADDED = "added"  # only in the after report
REMOVED = "removed"  # only in the before report
UNMEASURED = "unmeasured"  # in both, but not measured in one or both (unavailable, failed)


@dataclasses.dataclass(frozen=True)
class StrategyChange:
    name: str
    status: str  # COMPARED, ADDED, REMOVED or UNMEASURED
    before_s: Optional[float]  # median
    after_s: Optional[float]
    before_iqr_s: Optional[float]
    after_iqr_s: Optional[float]
    ratio: Optional[float]  # after / before: > 1 is slower
    beyond_noise: bool  # |after - before| > both IQRs summed
    regression: bool
    outputs_before: Optional[bool]  # outputs matched the reference (None: not checked or not measured)
    outputs_after: Optional[bool]
    detail: str = ""  # why a side is unmeasured
    judged: bool = True  # both sides have calls enough for the noise rule (kdiag.views.judge); else no verdict

    @property
    def percent(self) -> Optional[float]:
        return None if self.ratio is None else (self.ratio - 1.0) * 100.0


@dataclasses.dataclass(frozen=True)
class PhaseChange:
    scenario: str
    phase: str
    before_ms: float  # ms per call, scaled to the scenario's unprofiled median
    after_ms: float
    ratio: Optional[float]  # after / before (None when before is 0)
    noise_ms: Optional[float]  # share x IQR on each side, summed; None when a side has no measurement
    beyond_noise: bool
    regression: bool

    @property
    def delta_ms(self) -> float:
        return self.after_ms - self.before_ms


@dataclasses.dataclass(frozen=True)
class Comparison:
    before_label: str
    after_label: str
    fail_above: float  # percent
    strategies: Tuple[StrategyChange, ...]
    phases: Tuple[PhaseChange, ...]
    regressions: Tuple[Union[StrategyChange, PhaseChange], ...]
    warnings: Tuple[str, ...]  # differences in machine, versions or settings that make figures less comparable
    # Strategies measured before with no measured counterpart after (gone, renamed, failed, cut):
    # the gate fails on them unless `allow_missing`.
    missing: Tuple[str, ...] = ()
    # Strategies no key could be found for (a name kdiag does not know, or a second row with the same
    # key), as "'name' (before|after): why".
    unmatched: Tuple[str, ...] = ()
    allow_missing: bool = False

    @property
    def compared(self) -> int:
        """How many strategies were measured in both runs and compared."""
        return sum(1 for s in self.strategies if s.status == COMPARED)
