"""Memory over many calls: a sustained loop of one call, with the process's RSS sampled as it runs.

The loop runs until `TARGET_CALLS` calls or `MAX_LOOP_S` seconds, whichever comes first, within
its budget. A warm-up before it (the first calls allocate caches, traces and pools that a leak
detector must not count) is excluded. RSS is read with psutil every `stride` calls, the stride
chosen from the warm-up's pace so that a slow call is sampled every time and a fast one about
`TARGET_SAMPLES` times. What the samples mean (a slope and its band) is the data model's
arithmetic: `kdiag.datamodel.beyond.MemoryLoop`.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from kdiag.datamodel.beyond import MemoryLoop

TARGET_CALLS = 1000
MAX_LOOP_S = 10.0
TARGET_SAMPLES = 200
#: Below this budget a loop gives too few calls for a slope: it is not run.
MIN_BUDGET_S = 0.5
#: The warm-up: this share of the budget, and at least this many calls.
WARMUP_SHARE = 0.1
MIN_WARMUP_CALLS = 3


def process_rss() -> Callable[[], int]:
    import psutil

    process = psutil.Process()
    return lambda: int(process.memory_info().rss)


def sustained_loop(strategy: str, call: Callable[[], object], budget_s: float, target_calls: int = TARGET_CALLS,
                   max_loop_s: float = MAX_LOOP_S, rss: Optional[Callable[[], int]] = None,
                   clock: Callable[[], float] = time.perf_counter) -> MemoryLoop:
    """Call `call` over and over, sampling RSS; the warm-up's calls and time count against `budget_s`."""
    if budget_s < MIN_BUDGET_S:
        return MemoryLoop(strategy, reason=f"not measured: a sustained loop needs {MIN_BUDGET_S:g} s at least, and its "
                                           f"budget is {budget_s:.2g} s (a larger --budget gives it more)")
    rss = rss or process_rss()
    start = clock()
    warmup = 0
    while warmup < MIN_WARMUP_CALLS or (clock() - start < WARMUP_SHARE * budget_s and warmup < target_calls):
        call()
        warmup += 1
    warmup_s = clock() - start
    per_call = warmup_s / warmup
    limit = min(max_loop_s, max(0.0, budget_s - (clock() - start)))
    expected = min(target_calls, int(limit / per_call) if per_call > 0 else target_calls)
    stride = max(1, expected // TARGET_SAMPLES)
    points = [(0, rss())]
    calls = 0
    began = clock()
    while calls < target_calls and clock() - began < limit:
        call()
        calls += 1
        if calls % stride == 0:
            points.append((calls, rss()))
    if points[-1][0] != calls:
        points.append((calls, rss()))
    return MemoryLoop(strategy, calls, clock() - began, warmup, warmup_s, points)
