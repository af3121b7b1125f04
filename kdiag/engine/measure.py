"""Timing only: cold first call, warm-up, interleaved rounds until each median is known well enough.

No profiler is active here (profiling is its own pass in `kdiag.engine.phases.profiling`), and
every call's result is forced back to host memory before the clock stops, so an
asynchronous device cannot hide work.

Strategies are timed in interleaved rounds (A B C A B C ...) rather than one after
another: a shared machine drifts (we saw the same median move 2x minutes apart),
and interleaving makes the drift hit every strategy alike, so ratios stay honest.

When to stop (the precision rule): a strategy is timed until the 95% confidence interval of its
median (order statistics: kdiag.datamodel.measurement) is within ±`precision` of the median, or
its `budget_s` of timed calls is spent, whichever comes first; never below `min_calls` samples,
and never in fewer than `rounds` interleaved slices, so that its samples span the time the others
are timed in. A µs-scale path is settled after a few hundred samples: tens of milliseconds, not
the whole budget.

A fast call is timed in batches: each sample is the mean of k back-to-back calls, k chosen as
timeit's autorange does (1, 2, 5, 10, 20, ...) so that a sample lasts at least `min_sample_s`;
reading the clock and kdiag's loop then cost under ~2% of a sample. Every call of the batch
still returns its outputs in host memory (each prepared call copies them itself).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from typing import Callable, ContextManager, Dict, List, Optional, Tuple

from kdiag.datamodel.measurement import MIN_SAMPLES_FOR_CI, Measurement, median_interval
from kdiag.errors import first_line

#: Samples taken in the first round at most (its time slice permitting): enough for a first
#: interval, from which the samples the rule still needs are spread over the rounds left.
PILOT_SAMPLES = 20
#: autorange's sequence of batch sizes, times powers of ten.
_AUTORANGE = (1, 2, 5)


@dataclasses.dataclass(frozen=True)
class MeasureSettings:
    budget_s: float = 1.0  # timed seconds per strategy at most (--budget: the cap)
    min_calls: int = 5  # timed samples at least (--min-calls: the floor; neither cap cuts below it)
    max_wall_s: float = 6.0  # wall time (warm-up and timed calls) after which a strategy stops, once at the floor
    warmup_calls: int = 1  # untimed calls after the cold one, unless that one took over budget_s / min_calls
    rounds: int = 5  # a strategy's samples are spread over this many interleaved rounds at least
    precision: float = 0.02  # stop once the median's 95% CI is within ±this fraction of it; 0: spend the budget
    min_sample_s: float = 50e-6  # a sample lasts at least this long: faster calls are timed k at a time
    # A clock() value by which timing must end (the run's --time-limit, less what later steps need);
    # None: no limit. Strategies whose first call would not fit are not started, and each
    # strategy's share of the budget shrinks to fit what is left.
    deadline: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class Anchor:
    """A strategy timed before, re-timed beside a later group: one sample a round, `samples` at most,
    `calls_per_sample` as before so its samples can be pooled with the earlier ones. No cold call:
    it was called before."""

    name: str
    call: Callable[[], object]
    calls_per_sample: int = 1
    samples: int = 5


class _Timer:
    """Times one strategy across rounds."""

    def __init__(self, name: str, call: Callable[[], object], settings: MeasureSettings, clock):
        self.name = name
        self.call = call
        self.settings = settings
        self.clock = clock
        self.samples: List[float] = []  # seconds per call: a batch's time over its k calls
        self.k = 1  # calls per sample
        self.first_call_s = math.nan
        self.second_call_s = math.nan  # the warm-up call, or the first sample: for the plan's estimates
        self.spent_s = 0.0  # wall time spent on timed calls and warm-up, not the cold call
        self.sampled_s = 0.0  # time of all timed calls, kept as a running total: checked after every sample
        self.first_output = None  # what the cold call returned, for the outputs check
        self._last_output = None
        self.untimed_calls = 0  # the cold call, warm-up and autorange calls: to number a failing call
        self.error = ""  # set when the strategy raised: it is reported, not timed further
        self.skipped = ""  # set when the time limit left no room to start it: why, with the time it needs
        self.budget_s = settings.budget_s  # may shrink to fit the time limit
        self.cold_s = math.nan  # first call plus warm-up: what starting this strategy cost
        self.rounds = 0  # slices run
        self.quota = PILOT_SAMPLES  # samples to take in the next slice, its time permitting
        self.precise = False
        self.cut_by_deadline = False
        self.anchor_samples: Optional[int] = None  # set for an anchor: one sample a round, this many

    def timed_sample(self) -> float:
        """k calls back to back; seconds per call. Every call's outputs reach host memory in the call."""
        call, k = self.call, self.k
        start = self.clock()
        for _ in range(k):
            output = call()
        elapsed = self.clock() - start
        self._last_output = output
        return elapsed / k

    def _untimed_batch(self, k: int) -> float:
        start = self.clock()
        for _ in range(k):
            self.untimed_calls += 1
            self._last_output = self.call()
        return self.clock() - start

    def failing_call(self) -> str:
        """"call 3" (the model's third call since kdiag prepared it, cold and warm-up included), or "one of
        calls 41-50" when the failing call was one of a timed batch of k."""
        first = self.untimed_calls + len(self.samples) * self.k + 1
        return f"call {first}" if self.k == 1 else f"one of calls {first}-{first + self.k - 1}"

    def cold(self) -> None:
        start = self.clock()
        try:
            self.first_call_s = self._untimed_batch(1)
            self.first_output = self._last_output
            # A slow call gets no warm-up: its median over at least min_calls samples absorbs a
            # second call that is still partly cold, and the call would cost a fifth of its budget.
            if self.first_call_s <= self.settings.budget_s / max(1, self.settings.min_calls):
                for index in range(self.settings.warmup_calls):
                    took = self._untimed_batch(1)
                    if index == 0:
                        self.second_call_s = took
                    self.spent_s += took
                self._autorange()
        except Exception as exc:  # one broken strategy must not sink the others
            self.error = f"{type(exc).__name__}: {first_line(exc)}"
        self.cold_s = self.clock() - start

    def _autorange(self) -> None:
        """k calls per sample: the first of 1, 2, 5, 10, 20, ... whose batch lasts min_sample_s, each
        batch size tried three times and judged by its fastest try (one preempted try must not decide)."""
        floor = self.settings.min_sample_s
        if math.isnan(self.second_call_s) or self.second_call_s >= 10 * floor:
            return  # clearly slower than a sample needs to be: one call per sample
        decade = 1
        while True:
            for factor in _AUTORANGE:
                k = factor * decade
                tries = [self._untimed_batch(k) for _ in range(3)]
                self.spent_s += sum(tries)
                if min(tries) >= floor:
                    self.k = k
                    return
            decade *= 10

    # --- when to stop ---------------------------------------------------------------------

    @property
    def at_floor(self) -> bool:
        return len(self.samples) >= self.settings.min_calls

    @property
    def budget_spent(self) -> bool:
        return self.sampled_s >= self.budget_s

    @property
    def out_of_time(self) -> bool:
        return self.spent_s >= self.settings.max_wall_s

    @property
    def done(self) -> bool:
        """Errors and skips end it; otherwise the floor first, then precision, the budget or the wall cap."""
        if self.error or self.skipped:
            return True
        if self.anchor_samples is not None:
            return len(self.samples) >= self.anchor_samples
        return self.at_floor and (self.precise or self.budget_spent or self.out_of_time)

    def after_slice(self) -> None:
        """Judge the precision (a sort: once a slice, not once a sample) and set the next slice's quota."""
        self.rounds += 1
        if self.anchor_samples is not None:
            return
        settings = self.settings
        if not settings.precision:
            self.quota = math.inf  # the old rule: each slice spends its share of the budget
            return
        n = len(self.samples)
        low, high = median_interval(sorted(self.samples)) if n >= MIN_SAMPLES_FOR_CI else (None, None)
        median = _median(self.samples)
        if low is None or not median > 0:
            self.quota = max(1, PILOT_SAMPLES - n) if self.rounds == 1 else max(1, MIN_SAMPLES_FOR_CI - n)
            return
        half_width = max(median - low, high - median) / median
        if half_width <= settings.precision and self.rounds >= settings.rounds:
            self.precise = True
            return
        # An interval's width shrinks as 1/sqrt(n): the samples it still needs, spread over the rounds left,
        # and at most doubling them in a round: an interval from a few noisy samples can ask for far too many.
        needed = max(n + 1, math.ceil(n * (half_width / settings.precision) ** 2)) - n
        self.quota = max(1, min(math.ceil(needed / max(1, settings.rounds - self.rounds)), max(n, PILOT_SAMPLES)))

    def run_slice(self, slice_s: float) -> None:
        """At least one sample, then more until this slice's quota or its share of the budget is spent."""
        spent_in_slice = 0.0
        taken = 0
        quota = 1 if self.anchor_samples is not None else self.quota
        while True:
            try:
                elapsed = self.timed_sample()
            except Exception as exc:
                self.error = f"{type(exc).__name__} on {self.failing_call()}: {first_line(exc)}"
                return
            if math.isnan(self.second_call_s):
                self.second_call_s = elapsed
            if math.isnan(self.first_call_s) and self.anchor_samples is not None:
                self.first_call_s = elapsed  # an anchor has no cold call: its first call here stands for it
            self.samples.append(elapsed)
            batch_s = elapsed * self.k
            self.sampled_s += batch_s
            self.spent_s += batch_s
            spent_in_slice += batch_s
            taken += 1
            if taken >= quota or spent_in_slice >= slice_s or self.budget_spent or self.out_of_time:
                return

    @property
    def stopped_by(self) -> str:
        if self.anchor_samples is not None:
            return "anchor"
        if self.precise:
            return "precision"
        if self.cut_by_deadline:
            return "time limit"
        if self.budget_spent:
            return "budget"
        if self.out_of_time:
            return "wall cap"
        return ""

    def result(self) -> Measurement:
        return Measurement.from_samples(
            strategy=self.name,
            first_call_s=self.first_call_s,
            samples=self.samples,
            stopped_early=len(self.samples) < self.settings.min_calls,
            calls_per_sample=self.k,
            stopped_by=self.stopped_by,
        )


def measure_interleaved(
    calls: Dict[str, Callable[[], object]],
    settings: MeasureSettings = MeasureSettings(),
    clock: Callable[[], float] = time.perf_counter,
    on_progress: Optional[Callable[[str, str], None]] = None,
    around_first_call: Callable[[], ContextManager] = contextlib.nullcontext,
    anchor: Optional[Callable[[], Optional[Anchor]]] = None,
    on_second_call: Optional[Callable[[str, float, float], None]] = None,
    keep_s: Callable[[], float] = lambda: 0.0,
    snapshot: Optional[Callable[[Callable[[], Dict[str, "Timed"]]], None]] = None,
) -> Dict[str, "Timed"]:
    """Time every callable: cold call and warm-up each, then interleaved rounds.

    `calls` maps a strategy name to a zero-argument callable that runs the model once
    and returns host-memory results. Returns, per name, the Measurement and the
    outputs of the cold call (for the outputs check). `around_first_call` wraps each
    cold call and warm-up (kdiag holds back native one-off log lines there); it is
    entered before the clock starts. `anchor()`, asked once every strategy has started (what their
    first calls showed is known by then): a strategy timed before, to re-time alongside, or None (its
    Timed is returned under its name too). `on_second_call(name, first_s, second_s)` is told
    once per strategy as soon as its first two calls are done (the plan estimates from them).
    `keep_s()`, asked once every strategy has started: the seconds before the deadline that the
    budgets leave to what comes after (the floor, --min-calls, still runs on to the deadline).
    `snapshot`, when given, is handed a function that returns what was measured so far, for a
    caller on another thread that cannot wait for a call to return (kdiag.steps.worker).
    """
    progress = on_progress or (lambda name, what: None)
    told = set()

    def tell(timer: _Timer) -> None:
        if timer.anchor_samples is not None:
            return  # called before: its first two calls were told then
        if on_second_call is not None and timer.name not in told and not math.isnan(timer.second_call_s):
            told.add(timer.name)
            on_second_call(timer.name, timer.first_call_s, timer.second_call_s)

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
            tell(timer)
        again = anchor() if anchor is not None else None
        if again is not None:
            timers.append(_anchor_timer(again, settings, clock))
        if deadline is not None:
            _fit_budgets(timers, deadline - keep_s() - clock())
        _rounds(timers, settings, clock, progress, tell)
    except KeyboardInterrupt:
        # Ctrl-C: what was measured so far is kept; the caller marks the run incomplete.
        raise MeasurementInterrupted({t.name: _timed(t) for t in timers}) from None
    return {t.name: _timed(t) for t in timers}


def _rounds(timers: List[_Timer], settings: MeasureSettings, clock, progress, tell) -> None:
    """Interleaved rounds until every strategy is done, or the deadline."""
    deadline = settings.deadline
    rounds = max(1, settings.rounds)

    def past_deadline() -> bool:
        # Like the wall cap, the deadline never leaves a started strategy without a timed call.
        return (deadline is not None and clock() >= deadline
                and all(t.samples or t.error or t.skipped for t in timers))

    while True:
        # An anchor is timed only while the group it anchors is.
        active = [t for t in timers if not t.done]
        if not any(t.anchor_samples is None for t in active) or past_deadline():
            break
        for timer in active:
            progress(timer.name, f"{len(timer.samples) * timer.k:,} calls")
            timer.run_slice(timer.budget_s / rounds)
            timer.after_slice()
            tell(timer)
            if past_deadline():
                break
    if past_deadline():
        for timer in timers:
            if not timer.done:
                timer.cut_by_deadline = True


def _anchor_timer(anchor: Anchor, settings: MeasureSettings, clock) -> _Timer:
    timer = _Timer(anchor.name, anchor.call, settings, clock)
    timer.k = anchor.calls_per_sample
    timer.anchor_samples = anchor.samples
    return timer


def _median(values: List[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    if not n:
        return math.nan
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


def _timed(timer: _Timer) -> "Timed":
    # The outputs of its latest call besides the cold one, so that outputs are compared on two calls.
    later = timer._last_output if timer._last_output is not timer.first_output else None
    return Timed(timer.result(), timer.first_output, timer.error, timer.skipped, samples=tuple(timer.samples),
                 second_call_s=timer.second_call_s, later_output=later)


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
    samples: Tuple[float, ...] = ()  # every sample, unrounded: an anchor's are pooled with the earlier ones
    second_call_s: float = math.nan  # the warm-up call, or the first timed one
    later_output: object = None  # what its latest call after the cold one returned; None: no such call
