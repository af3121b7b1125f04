"""--time-limit: the timing loop on a fake clock, the run's steps, and what the report says it left out."""

from __future__ import annotations

import io

import pytest

from kdiag.datamodel.progress import ProgressUpdate
from kdiag.engine.measure import MeasureSettings, measure_interleaved
from kdiag.render.terminal import StderrProgress
from test_measure import FakeClock


def test_a_strategy_whose_start_would_pass_the_deadline_is_not_started():
    clock = FakeClock()
    # predict starts in 4 s (cold 3 s + warm-up 1 s); 5 s are left for everything.
    calls = {"predict": clock.strategy("predict", [3.0] + [1.0] * 100),
             "xla": clock.strategy("xla", [3.0] + [1.0] * 100)}
    timed = measure_interleaved(calls, MeasureSettings(budget_s=20.0, min_calls=5, deadline=5.0), clock=clock)
    assert timed["xla"].skipped.startswith("not measured: would take ~4.0 s to start")
    assert "xla" not in clock.order
    assert timed["predict"].measurement.count >= 1  # the first strategy always gets its calls


def test_budgets_shrink_to_fit_and_rounds_stop_at_the_deadline():
    clock = FakeClock()
    calls = {name: clock.strategy(name, [0.01] * 10_000) for name in ("a", "b", "c")}
    timed = measure_interleaved(calls, MeasureSettings(budget_s=100.0, min_calls=5, deadline=3.0), clock=clock)
    assert clock.now <= 3.0 + 0.01 * 3  # at most one call of each past the deadline
    for name in calls:
        m = timed[name].measurement
        assert m.count >= 5 and not m.stopped_early
        assert sum(m.samples_s) < 1.1  # a third of what was left, not the 100 s budget


def test_no_deadline_keeps_the_budget():
    clock = FakeClock()
    settings = MeasureSettings(budget_s=2.0, precision=0)  # no precision target: the budget is spent
    timed = measure_interleaved({"a": clock.strategy("a", [0.1] * 1000)}, settings, clock=clock)
    assert sum(timed["a"].measurement.samples_s) == pytest.approx(2.0, abs=0.11)


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "1e9"])
def test_time_limit_rejects_bad_values_in_cli_and_api(value):
    import kdiag
    from kdiag.cli import Env, main
    from kdiag.errors import KdiagError

    with pytest.raises(KdiagError) as refused:
        kdiag.inspect(example="tiny", time_limit_s=float(value))
    err = io.StringIO()
    assert main(["inspect", "--example", "tiny", "--time-limit", value], Env(io.StringIO(), err)) == 2
    assert err.getvalue() == f"kdiag: error: {refused.value.message}\n"
    assert "--time-limit" in refused.value.message


def test_progress_lines_off_a_terminal_are_timestamped_steps():
    stream = io.StringIO()
    progress = StderrProgress(stream)
    progress(ProgressUpdate(1, 3, "load", "model.keras", 0.0, 60.0))
    progress(ProgressUpdate(2, 3, "measure", "predict: first call", 4.25, 55.75))
    progress(ProgressUpdate(2, 3, "measure", "predict: 12 calls", 5.0, 55.0))  # same step: no new line
    progress.close()
    assert stream.getvalue().splitlines() == [
        "kdiag: [   0.0 s, ≤ 60 s left] [1/3] load: model.keras",
        "kdiag: [   4.2 s, ≤ 56 s left] [2/3] measure: predict: first call",
    ]


def test_a_long_step_gets_a_still_line_in_a_log(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(StderrProgress, "HEARTBEAT_S", 0.3)
    progress = StderrProgress(stream)
    progress(ProgressUpdate(5, 9, "prepare", "TFLite (exporting and converting)", 10.0, None))
    import time

    time.sleep(0.8)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "kdiag: [  10.0 s] [5/9] prepare: TFLite (exporting and converting)"
    assert any(line.startswith("kdiag: [") and "still at [5/9] prepare: TFLite" in line for line in lines[1:])


@pytest.mark.slow
def test_a_short_limit_leaves_steps_out_and_says_which(tmp_path):
    import kdiag
    import tensorflow  # noqa: F401  (before the clock starts: alone, its ~3 s import took most of the 4 s limit)

    updates = []
    report = kdiag.inspect(example="tiny", budget_s=1.0, time_limit_s=4.0, profile_calls=10,
                           progress=updates.append)
    assert report.settings.time_limit_s == 4.0
    note = report.notes[0]
    assert note.startswith("Time limit 4 s (--time-limit; 0 for none); this run took ")
    left_out = [s for s in report.strategies if s.reason.startswith("not measured: would take")]
    cut = left_out or [s for s in report.strategies if s.available and s.measurement.stopped_early]
    assert cut or "Not profiled" in note or "instead of 10" in note, note
    # Progress: steps counted up to the total, elapsed never going back.
    assert [u.step for u in updates] == sorted(u.step for u in updates)
    assert updates[-1].step == updates[-1].total_steps
    assert all(b.elapsed_s >= a.elapsed_s for a, b in zip(updates, updates[1:]))
    assert all(u.left_s is not None for u in updates)


@pytest.mark.slow
def test_no_limit_runs_everything_and_says_nothing_about_time():
    import kdiag

    report = kdiag.inspect(example="tiny", budget_s=0.05, min_calls=5, time_limit_s=0, profile_calls=2)
    assert not any(n.startswith("Time limit") for n in report.notes)
    assert all(s.available for s in report.strategies)
    assert report.settings.elapsed_s > 0


def test_still_lines_read_the_run_s_clock_and_never_run_ahead_of_it(monkeypatch):
    """A "still" line adds the time since the last *update* arrived to that update's elapsed time (it
    used to add the time since the last *printed line*, and showed seconds that had not passed yet:
    "[57.2 s] still at [15/17]" before "[52.5 s] [16/17]")."""
    import time

    start = time.perf_counter()

    class Stamped(io.StringIO):
        """Remembers when each line was written, on the clock the updates' elapsed times use."""

        def __init__(self):
            super().__init__()
            self.written = []

        def write(self, text):
            self.written.append((time.perf_counter() - start, text))
            return super().write(text)

    stream = Stamped()
    monkeypatch.setattr(StderrProgress, "HEARTBEAT_S", 0.3)
    progress = StderrProgress(stream)

    def update(step, detail):
        progress(ProgressUpdate(step, 3, "measure", detail, time.perf_counter() - start, None))

    update(1, "predict: first call")  # a line at 0.0
    time.sleep(0.25)
    update(1, "predict: 5 calls")  # the same step: no line, but the clock moved on
    time.sleep(0.5)  # a "still" line comes in here
    update(2, "profile")
    progress.close()
    lines = [(at, text) for at, text in stream.written if text.startswith("kdiag: [")]
    assert any("still at [1/3]" in text for _, text in lines)
    shown = [float(text.split("[", 1)[1].split(" s")[0]) for _, text in lines]
    assert shown == sorted(shown), lines
    for (at, text), said in zip(lines, shown):
        assert said <= at + 0.05, f"{text!r} printed at {at:.2f} s"  # never ahead of the clock
