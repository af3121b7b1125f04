"""The run's time limit, and the one place that reads it.

Every step asks the Budget: how much is left (`left`), whether a cost fits (`fits`), what share of
what is left it gets (`share`, `scale`), the deadline to hand the timing loop (`deadline_for`). A
step that leaves something out or cuts it short tells it (`cut`), with what the whole step would
have needed; the Budget then words the report's note, and the `--time-limit` that would have let
everything run (`note`).
"""

from __future__ import annotations

import math
import time
from typing import Callable, List, Optional, Sequence

#: What the time limit keeps back for the steps after timing that it cannot skip: the findings,
#: the training-mode check's one call, and writing report.json, report.md and report.html
#: (about 2 s here, most of it drawing the HTML charts).
REPORT_RESERVE_S = 5.0

#: What the main thread keeps, once it stops waiting for model work at the time limit, to freeze the
#: report of what was measured and save it (report.html's charts are most of it: 1-2 s here), so
#: that the run ends about when the limit says (kdiag.steps.worker).
SAVE_S = 2.0

#: The end of every "not measured" reason that the time limit caused.
RERUN = "rerun with a larger --time-limit"


class Budget:
    """A time limit of `limit_s` seconds (0: none) from `started` (a `clock()` value; default: the moment
    it is made), on `clock`."""

    def __init__(self, limit_s: float, clock: Callable[[], float] = time.perf_counter,
                 reserve_s: float = REPORT_RESERVE_S, started: Optional[float] = None):
        self.limit_s = limit_s
        self.clock = clock
        self.reserve_s = reserve_s
        self.started = clock() if started is None else started
        self.deadline = self.started + limit_s if limit_s else None
        self.cuts: List[str] = []  # what the limit cut, besides the rows that say so themselves
        self.needed_s = 0.0  # a limit under which nothing would have been cut (an estimate)

    def limit_from_now(self, limit_s: float) -> None:
        """The limit starts now, `limit_s` seconds (0: none): for a run whose first part it does not cover
        (kdiag inspect --tf builds its environments, which take what the downloads take, before it measures)."""
        self.limit_s = limit_s
        self.deadline = self.clock() + limit_s if limit_s else None

    @property
    def limited(self) -> bool:
        return self.deadline is not None

    def elapsed(self) -> float:
        return self.clock() - self.started

    def left(self) -> float:
        """Seconds left to the deadline (negative once past it); infinite without a limit."""
        return math.inf if self.deadline is None else self.deadline - self.clock()

    def left_or_none(self) -> Optional[float]:
        """Seconds left, never negative; None without a limit (what progress lines show)."""
        return None if self.deadline is None else max(0.0, self.deadline - self.clock())

    def past(self, deadline: Optional[float]) -> bool:
        return deadline is not None and self.clock() > deadline

    def deadline_for(self, reserve_s: float) -> Optional[float]:
        """The deadline a step hands its own loop, keeping `reserve_s` for what comes after it."""
        return None if self.deadline is None else self.deadline - reserve_s

    def stop_at(self, keep_s: float = SAVE_S) -> Optional[float]:
        """When model work still running is stopped, whatever it is doing: the limit less `keep_s`
        (what comes after it); None without a limit. No model work starts after it."""
        return None if self.deadline is None else self.deadline - keep_s

    def fits(self, needs_s: float) -> bool:
        """Whether a step needing `needs_s` seconds (the report's reserve included by the caller) fits."""
        return self.left() >= needs_s

    def share(self, parts: int) -> float:
        """An equal share of what is left after the report's reserve, for one of `parts` steps."""
        return (self.left() - self.reserve_s) / parts

    def scale(self, wanted_s: float) -> float:
        """The fraction (0 to 1) of `wanted_s` seconds that fits in what is left after the report's reserve."""
        left = self.left() - self.reserve_s
        if not wanted_s or not math.isfinite(left):
            return 1.0
        return min(1.0, max(0.0, left) / wanted_s)

    def for_child(self, minimum_s: float) -> Optional[float]:
        """The time limit to hand a child run: what is left, never less than `minimum_s`; None without a limit."""
        return None if self.deadline is None else max(minimum_s, self.left())

    def cut(self, note: str = "", needs_s: float = 0.0) -> None:
        """Something was left out or cut short: `note` says what (empty when its row says so), `needs_s`
        how many more seconds from now the whole of it needed."""
        if note:
            self.cuts.append(note)
        if needs_s:
            self.needed_s = max(self.needed_s, self.elapsed() + needs_s)

    def not_started(self, needs_s: float, after_s: float = 0.0, kept_s: float = 0.0) -> str:
        """The reason of a row the limit left out: how long it would take (after `after_s` for what was
        started before it), what was kept for the steps after it, and what was left. Without the time
        kept, "~2 s ... and 39 s were left" would read as no reason at all."""
        after = f" after the ~{after_s:.0f} s of those started before it" if after_s >= 0.5 else ""
        kept = f", with ~{kept_s:.0f} s kept for the report and the steps beyond one batch" if kept_s >= 0.5 else ""
        return (f"not measured: would take ~{needs_s:.0f} s{after} (estimates){kept}, and "
                f"{max(0.0, self.left()):.0f} s of the time limit were left; {RERUN}")

    def rerun_text(self) -> str:
        """"Rerun with --time-limit 90 to measure it all.", rounded up to tens; "" when nothing was cut."""
        if not self.needed_s:
            return ""
        # Never the limit it ran under: what was cut was cut because it did not fit that one.
        needed = max(self.needed_s, self.limit_s + 1) if self.limited else self.needed_s
        return f"Rerun with --time-limit {math.ceil(needed / 10) * 10:.0f} to measure it all."

    def note(self, left_out: Sequence[str], short: Sequence[str], min_calls: int) -> str:
        """What the time limit left out, and the limit that would let it all run; "" when nothing was."""
        if not self.limited:
            return ""
        parts = [f"Time limit {self.limit_s:g} s (--time-limit; 0 for none); this run took {self.elapsed():.0f} s."]
        if left_out:
            parts.append(f"Not started, for want of time: {', '.join(left_out)}.")
        if short:
            parts.append(f"Fewer than {min_calls} timed calls: {', '.join(short)}.")
        parts += self.cuts
        if len(parts) == 1:
            return ""  # nothing was left out: the limit is in the report's settings
        rerun = self.rerun_text()
        return " ".join(parts + ([rerun] if rerun else []))
