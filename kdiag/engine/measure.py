"""Timing only: cold first call, warm-up, time-budgeted interleaved repeats.

No profiler is active here (profiling is its own pass in `kdiag.engine.phases.profiling`), and
every call's result is forced back to host memory before the clock stops, so an
asynchronous device cannot hide work.

Strategies are timed in interleaved rounds (A B C A B C ...) rather than one after
another: a shared machine drifts (we saw the same median move 2x minutes apart),
and interleaving makes the drift hit every strategy alike, so ratios stay honest.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from typing import Callable, ContextManager, Dict, List, Optional

from kdiag.datamodel.measurement import Measurement
from kdiag.errors import first_line


@dataclasses.dataclass(frozen=True)
class MeasureSettings:
    budget_s: float = 1.0  # timed seconds per strategy (after the cold call and warm-up)
    min_calls: int = 5  # and at least this many timed calls...
    max_wall_s: float = 6.0  # ...unless this much wall time was spent: stop early, say so
    warmup_calls: int = 1
    rounds: int = 5  # the budget is spread over this many interleaved rounds
    # A clock() value by which timing must end (the run's --time-limit, less what later steps need);
    # None: no limit. Strategies whose first call would not fit are not started, and each
    # strategy's share of the budget shrinks to fit what is left.
    deadline: Optional[float] = None


class _Timer:
    """Times one strategy across rounds."""

    def __init__(self, name: str, call: Callable[[], object], settings: MeasureSettings, clock):
        self.name = name
        self.call = call
        self.settings = settings
        self.clock = clock
        self.samples: List[float] = []
        self.first_call_s = math.nan
        self.spent_s = 0.0  # wall time spent on timed calls and warm-up, not the cold call
        self.sampled_s = 0.0  # sum(self.samples), kept as a running total: checked after every call
        self.first_output = None  # what the cold call returned, for the outputs check
        self._last_output = None
        self.error = ""  # set when the strategy raised: it is reported, not timed further
        self.skipped = ""  # set when the time limit left no room to start it: why, with the time it needs
        self.budget_s = settings.budget_s  # may shrink to fit the time limit
        self.cold_s = math.nan  # first call plus warm-up: what starting this strategy cost

    def timed_call(self) -> float:
        start = self.clock()
        self._last_output = self.call()  # the callable forces its outputs to host memory itself
        return self.clock() - start

    def cold(self) -> None:
        start = self.clock()
        try:
            self.first_call_s = self.timed_call()
            self.first_output = self._last_output
            for _ in range(self.settings.warmup_calls):
                self.spent_s += self.timed_call()
        except Exception as exc:  # one broken strategy must not sink the others
            self.error = f"{type(exc).__name__}: {first_line(exc)}"
        self.cold_s = self.clock() - start

    @property
    def satisfied(self) -> bool:
        return self.sampled_s >= self.budget_s and len(self.samples) >= self.settings.min_calls

    @property
    def out_of_time(self) -> bool:
        return self.spent_s >= self.settings.max_wall_s

    @property
    def done(self) -> bool:
        # The wall cap never leaves a strategy without a single timed call.
        return bool(self.error or self.skipped) or self.satisfied or (self.out_of_time and bool(self.samples))

    def run_slice(self, slice_s: float) -> None:
        """At least one call, then more until this round's slice of the budget is spent."""
        spent_in_slice = 0.0
        while True:
            try:
                elapsed = self.timed_call()
            except Exception as exc:
                self.error = f"{type(exc).__name__} on call {len(self.samples) + 1}: {first_line(exc)}"
                return
            self.samples.append(elapsed)
            self.sampled_s += elapsed
            self.spent_s += elapsed
            spent_in_slice += elapsed
            if spent_in_slice >= slice_s or self.done:
                return

    def result(self) -> Measurement:
        return Measurement.from_samples(
            strategy=self.name,
            first_call_s=self.first_call_s,
            samples=self.samples,
            stopped_early=len(self.samples) < self.settings.min_calls,
        )


def measure_interleaved(
    calls: Dict[str, Callable[[], object]],
    settings: MeasureSettings = MeasureSettings(),
    clock: Callable[[], float] = time.perf_counter,
    on_progress: Optional[Callable[[str, str], None]] = None,
    around_first_call: Callable[[], ContextManager] = contextlib.nullcontext,
    snapshot: Optional[Callable[[Callable[[], Dict[str, "Timed"]]], None]] = None,
) -> Dict[str, "Timed"]:
    """Time every callable: cold call and warm-up each, then interleaved rounds.

    `calls` maps a strategy name to a zero-argument callable that runs the model once
    and returns host-memory results. Returns, per name, the Measurement and the
    outputs of the cold call (for the outputs check). `around_first_call` wraps each
    cold call and warm-up (kdiag holds back native one-off log lines there); it is
    entered before the clock starts. `snapshot`, when given, is handed a function that returns what
    was measured so far, for a caller on another thread that cannot wait for a call to return
    (kdiag.steps.worker).
    """
    progress = on_progress or (lambda name, what: None)
    timers = [_Timer(name, call, settings, clock) for name, call in calls.items()]
    if snapshot is not None:
        snapshot(lambda: {t.name: _timed(t) for t in timers})
    deadline = settings.deadline
    try:
        for timer in timers:
            needs = _start_estimate(timers)
            if deadline is not None and needs is not None and clock() + needs > deadline:
                timer.skipped = (f"not measured: would take ~{_seconds(needs)} to start (first call and warm-up, "
                                 "estimated from the strategies before it) and the time limit is reached")
                continue
            progress(timer.name, "first call")
            with around_first_call():
                timer.cold()
        if deadline is not None:
            _fit_budgets(timers, deadline - clock())
        slice_fraction = 1.0 / max(1, settings.rounds)

        def past_deadline() -> bool:
            # Like the wall cap, the deadline never leaves a started strategy without a timed call.
            return (deadline is not None and clock() >= deadline
                    and all(t.samples or t.error or t.skipped for t in timers))

        while True:
            active = [t for t in timers if not t.done]
            if not active or past_deadline():
                break
            for timer in active:
                progress(timer.name, f"{len(timer.samples)} calls")
                timer.run_slice(timer.budget_s * slice_fraction)
                if past_deadline():
                    break
    except KeyboardInterrupt:
        # Ctrl-C: what was measured so far is kept; the caller marks the run incomplete.
        raise MeasurementInterrupted({t.name: _timed(t) for t in timers}) from None
    return {t.name: _timed(t) for t in timers}


def _timed(timer: _Timer) -> "Timed":
    # The outputs of its latest call besides the cold one, so that outputs are compared on two calls.
    later = timer._last_output if timer._last_output is not timer.first_output else None
    return Timed(timer.result(), timer.first_output, timer.error, timer.skipped, later)


def _start_estimate(timers: List[_Timer]) -> Optional[float]:
    """What starting one more strategy may cost: the slowest start so far (None before the first).

    Without a measurement of its own, the strategies already started are the best evidence: on a
    heavy model every path's first call (tracing, conversion, XLA compilation) takes seconds.
    """
    started = [t.cold_s for t in timers if not math.isnan(t.cold_s)]
    return max(started) if started else None


def _fit_budgets(timers: List[_Timer], left_s: float) -> None:
    """Shrink each strategy's timed budget so that all of them fit in `left_s` together.

    A round costs at least one call of each strategy, so a strategy whose call alone takes a large
    part of what is left gets fewer calls: the report then says it stopped early, and no verdict
    rests on fewer than five calls.
    """
    running = [t for t in timers if not (t.error or t.skipped)]
    if not running:
        return
    share = max(0.0, left_s) / len(running)
    for timer in running:
        timer.budget_s = min(timer.budget_s, share)


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


class MeasurementInterrupted(KeyboardInterrupt):
    """Ctrl-C during timing; `partial` holds every strategy's samples so far."""

    def __init__(self, partial: Dict[str, "Timed"]):
        super().__init__("interrupted")
        self.partial = partial


@dataclasses.dataclass(frozen=True)
class Timed:
    measurement: Measurement
    first_output: object
    error: str = ""
    skipped: str = ""  # "not measured: would take ~N s ..." when the time limit left no room
    later_output: object = None  # what its latest call after the cold one returned; None: no such call
