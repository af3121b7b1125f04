"""The memory detector on synthetic callables: a leak of ~1 kB per call is flagged, a flat loop is not.

Each real loop runs in a fresh interpreter: in this process, memory freed by earlier tests sits in
the allocator's free lists, and a leak would reuse it without moving RSS at all. No TensorFlow.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kdiag.engine.beyond.memloop import TARGET_CALLS, sustained_loop

ROOT = Path(__file__).resolve().parent.parent

LOOP = """
import json, sys
from kdiag.engine.beyond.memloop import sustained_loop
kept = []
calls = {{"leak": lambda: kept.append(bytearray(1024)), "flat": lambda: bytearray(1024)}}
loop = sustained_loop("synthetic", calls[{kind!r}], budget_s=3.0)
print(json.dumps(dict(calls=loop.calls, growth=loop.growth_per_1000_calls_bytes, band=loop.growth_band_bytes,
                      growing=loop.grows(), samples=len(loop.points), kept=len(kept))))
"""


def run_loop(kind: str) -> dict:
    result = subprocess.run([sys.executable, "-c", LOOP.format(kind=kind)], capture_output=True, text=True,
                            cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_leak_of_a_kilobyte_per_call_is_flagged():
    loop = run_loop("leak")
    assert loop["calls"] == TARGET_CALLS
    assert loop["kept"] >= TARGET_CALLS  # the warm-up leaked too
    low, high = loop["band"]
    # 1,024 bytes of data plus the bytearray's own header, per call.
    assert 0.9e6 < loop["growth"] < 1.4e6
    assert 0 < low < loop["growth"] < high
    assert loop["growing"] is True


def test_a_flat_loop_is_not_flagged():
    loop = run_loop("flat")
    assert loop["calls"] == TARGET_CALLS and loop["samples"] > 100
    assert loop["growing"] is False
    assert abs(loop["growth"]) < 128 * 1024  # well under the smallest growth kdiag reports


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_fast_call_stops_at_the_target_calls_and_is_sampled_about_200_times():
    clock = FakeClock()

    def call():
        clock.now += 1e-4

    loop = sustained_loop("fast", call, budget_s=5.0, rss=lambda: 1000, clock=clock)
    assert loop.calls == TARGET_CALLS
    assert 150 <= len(loop.points) <= 260
    assert loop.points[0] == (0, 1000) and loop.points[-1][0] == TARGET_CALLS


def test_a_slow_call_stops_at_its_budget_and_is_sampled_every_call():
    clock = FakeClock()

    def call():
        clock.now += 0.25

    loop = sustained_loop("slow", call, budget_s=4.0, rss=lambda: 1000, clock=clock)
    assert loop.warmup_calls == 3  # at least three, whatever the budget says
    assert loop.warmup_s == pytest.approx(0.75)
    assert loop.seconds <= 4.0 - 0.75 + 0.25
    assert [c for c, _ in loop.points] == list(range(loop.calls + 1))


def test_a_budget_too_small_for_a_slope_runs_nothing():
    loop = sustained_loop("predict", lambda: pytest.fail("called"), budget_s=0.2)
    assert loop.reason.startswith("not measured: a sustained loop needs 0.5 s at least, and its budget is 0.2 s")


def test_the_loop_never_runs_past_ten_seconds_whatever_the_budget():
    clock = FakeClock()

    def call():
        clock.now += 0.5

    loop = sustained_loop("slow", call, budget_s=100.0, rss=lambda: 1000, clock=clock)
    assert loop.seconds == pytest.approx(10.0)
    assert loop.calls == 20
