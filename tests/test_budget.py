"""The Budget, on a fake clock: the one reader of the time limit, and the wording of what it cut."""

from __future__ import annotations

import math

import pytest

from kdiag.steps.budget import Budget


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_without_a_limit_everything_fits_and_nothing_is_said():
    clock = Clock()
    budget = Budget(0, clock=clock)
    clock.now += 1_000
    assert budget.left() == math.inf and budget.left_or_none() is None
    assert budget.fits(1e9) and budget.scale(1e9) == 1.0
    assert budget.deadline_for(5.0) is None and budget.for_child(20.0) is None
    assert budget.note(["TFLite"], [], 5) == ""


def test_steps_ask_for_their_share_and_the_report_keeps_its_reserve():
    clock = Clock()
    budget = Budget(60, clock=clock, reserve_s=5.0)
    clock.now += 35  # 25 s left, 20 after the report's reserve
    assert budget.left() == 25 and budget.elapsed() == 35
    assert budget.share(2) == 10
    assert budget.scale(40) == 0.5  # half of what was wanted fits
    assert budget.deadline_for(5.0) == 100 + 60 - 5
    assert budget.fits(25) and not budget.fits(25.5)
    assert budget.for_child(30.0) == 30.0 and budget.for_child(10.0) == 25
    clock.now += 30
    assert budget.scale(40) == 0.0 and budget.left_or_none() == 0.0 and budget.past(budget.deadline_for(0))


def test_what_was_cut_is_said_once_with_the_limit_that_would_fit_it():
    clock = Clock()
    budget = Budget(60, clock=clock)
    clock.now += 50
    budget.cut("The steps beyond one batch ran on 40% of their budgets.", needs_s=31)  # needed until 81 s
    budget.cut(needs_s=12)  # a row that says so itself: no note, and less than the first
    assert budget.not_started(30).startswith("not measured: would take ~30 s (estimates), and 10 s of the time limit "
                                             "were left")
    assert budget.not_started(4, 14).startswith("not measured: would take ~4 s after the ~14 s of those started "
                                                "before it (estimates), and 10 s")
    assert budget.not_started(2, 1, 8).startswith("not measured: would take ~2 s after the ~1 s of those started "
                                                  "before it (estimates), with ~8 s kept for the report and the steps "
                                                  "beyond one batch, and 10 s of the time limit were left")
    note = budget.note(["C++ (TF C API)"], ["predict"], 5)
    assert note == ("Time limit 60 s (--time-limit; 0 for none); this run took 50 s. Not started, for want of time: "
                    "C++ (TF C API). Fewer than 5 timed calls: predict. The steps beyond one batch ran on 40% of their "
                    "budgets. Rerun with --time-limit 90 to measure it all.")
    assert Budget(60, clock=clock).note([], [], 5) == ""  # nothing left out: the limit is in the settings


def test_the_rerun_limit_is_never_the_one_the_run_had():
    # A strategy held back by the gate's margin may be estimated to fit the limit it did not start under.
    clock = Clock()
    budget = Budget(60, clock=clock)
    clock.now += 40
    budget.cut(needs_s=15)  # needed until 55 s: under the 60 s limit
    assert budget.rerun_text() == "Rerun with --time-limit 70 to measure it all."


# --- the steps beyond one batch: one allotment (kdiag.steps.beyond.allot) ---------------------------------


def test_with_time_for_all_a_step_gets_its_budget_and_the_spare_the_later_ones_leave():
    from kdiag.steps.beyond import MAX_STRETCH, allot

    share = allot(nominal_s=1.0, later_nominal_s=15.5, available_s=20.0)
    assert (share.budget_s, share.fraction) == (1.0, 1.0)
    assert share.spare_s == pytest.approx(20.0 - 15.5 - 1.0)
    assert allot(1.0, 0.0, float("inf")).spare_s == MAX_STRETCH * 1.0, "without a limit: at most MAX_STRETCH budgets"


def test_short_of_time_every_budget_is_scaled_alike_and_none_is_left_when_none_is():
    from kdiag.steps.beyond import allot

    share = allot(nominal_s=1.0, later_nominal_s=15.0, available_s=8.0)
    assert share.fraction == pytest.approx(0.5) and share.budget_s == pytest.approx(0.5) and share.spare_s == 0.0
    assert allot(1.0, 15.0, -3.0).fraction == 0.0


def test_the_data_size_sweep_gets_the_time_kept_for_its_three_counts_before_the_later_steps():
    # The LSTM(512) case: the plan left TFLite out to keep ~10 s for the sweep's three smallest counts;
    # with the op breakdown's and the threads' 15.5 s taken first, the sweep measured no count at all.
    from kdiag.steps.beyond import allot

    share = allot(nominal_s=1.0, later_nominal_s=15.5, available_s=20.0, floor_s=10.0)
    assert share.budget_s + share.spare_s == pytest.approx(10.0)
    short = allot(1.0, 15.5, 6.0, floor_s=10.0)
    assert short.budget_s + short.spare_s == pytest.approx(6.0), "never more than what is left"
    assert allot(1.0, 2.0, 12.0, floor_s=5.0).spare_s == pytest.approx(12.0 - 2.0 - 1.0), "more when the later steps leave it"
