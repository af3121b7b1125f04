"""The run's worker thread (kdiag.steps.worker): model work that the main thread waits on with the
time limit, and leaves behind when a signal or the limit comes while one call will not return.

A job "stuck in a native call" is simulated by a wait on a threading.Event: like a TensorFlow op, it
blocks in C, where no Python exception can reach it until it returns. Fast: no TensorFlow.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import time

import pytest

from kdiag.signals import StopSignals, Terminated
from kdiag.steps import worker as worker_module
from kdiag.steps.budget import Budget
from kdiag.steps.worker import STOP_GRACE_S, ModelWorker, TimeUp


@pytest.fixture
def stuck_job():
    """An Event-blocked job and its release; released (and the worker's leftovers forgotten) afterwards."""
    release = threading.Event()
    yield release
    release.set()
    deadline = time.monotonic() + 5
    while worker_module.stuck() and time.monotonic() < deadline:
        time.sleep(0.01)
    worker_module._ABANDONED.clear()


def test_jobs_run_in_order_on_one_thread_and_their_errors_come_back():
    worker = ModelWorker(Budget(0))
    threads = [worker.call(lambda: threading.get_ident()) for _ in range(3)]
    assert len(set(threads)) == 1 and threads[0] != threading.get_ident()
    with pytest.raises(ValueError, match="from the job"):
        worker.call(lambda: (_ for _ in ()).throw(ValueError("from the job")))
    assert worker.call(lambda: 41 + 1) == 42, "a job that failed does not end the worker"
    worker.close()


def test_python_work_is_stopped_at_the_limit_and_the_worker_takes_no_more():
    budget = Budget(2.5)  # stop moment: 2.5 s - SAVE_S (2 s) = 0.5 s from now
    worker = ModelWorker(budget)
    spins = []

    def spin():
        while True:
            spins.append(1)

    start = time.perf_counter()
    with pytest.raises(TimeUp) as up:
        worker.call(spin)
    assert 0.4 < time.perf_counter() - start < 0.5 + STOP_GRACE_S
    assert up.value.started and up.value.ran_s >= 0.4
    assert not worker_module.stuck(), "Python code stops at its next bytecode: nothing is abandoned"
    with pytest.raises(TimeUp) as again:
        worker.call(lambda: 1)
    assert not again.value.started


def test_no_job_starts_once_the_stop_moment_has_passed():
    budget = Budget(1.0)  # its stop moment (1 s - 2 s) is already past
    ran = []
    with pytest.raises(TimeUp) as up:
        ModelWorker(budget).call(lambda: ran.append(1))
    assert not up.value.started and ran == []
    # Loading keeps nothing back (keep_s=0): it may run until the limit itself.
    assert ModelWorker(budget).call(lambda: "loaded", keep_s=0.0) == "loaded"


def test_a_call_that_never_returns_is_abandoned_within_the_grace(stuck_job):
    worker = ModelWorker(Budget(2.2))  # stop moment in 0.2 s
    start = time.perf_counter()
    with pytest.raises(TimeUp):
        worker.call(stuck_job.wait)
    assert time.perf_counter() - start < 0.2 + STOP_GRACE_S + 0.5
    assert worker_module.stuck()
    stuck_job.set()  # the native call returns: the stop fires in the worker, which ends
    deadline = time.monotonic() + 5
    while worker_module.stuck() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not worker_module.stuck()


@pytest.mark.parametrize("signum, raised", [(signal.SIGTERM, Terminated), (signal.SIGINT, KeyboardInterrupt)])
def test_a_signal_reaches_the_main_thread_while_the_worker_is_stuck(stuck_job, signum, raised):
    worker = ModelWorker(Budget(0))  # no limit: only the signal ends the wait
    threading.Timer(0.3, os.kill, (os.getpid(), signum)).start()
    start = time.perf_counter()
    with StopSignals(io.StringIO()):
        with pytest.raises(raised):
            worker.call(stuck_job.wait)
    assert time.perf_counter() - start < 0.3 + STOP_GRACE_S + 0.5
    assert worker_module.stuck()


LOST_STOP_SCRIPT = """
import os, signal, sys, threading, time
from kdiag.signals import StopSignals, Terminated
from kdiag.steps.budget import Budget
from kdiag.steps.worker import ModelWorker

class Freed:
    def __del__(self):  # nearly every bytecode the job runs is here, where Python cannot raise
        total = 0
        for number in range(20000):
            total += number

def frees_objects_forever():
    while True:
        Freed()

with StopSignals():
    worker = ModelWorker(Budget(0))
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
    try:
        worker.call(frees_objects_forever)
    except Terminated:
        print("stopped", file=sys.stderr, flush=True)
    time.sleep(2.5)  # the stop is sent again while the job runs: each lands in a finalizer too
"""


def test_a_stop_that_lands_in_a_finalizer_on_the_worker_prints_no_traceback():
    # A finalizer cannot raise: Python hands the exception to sys.unraisablehook, whose default prints
    # "Exception ignored in ... Traceback ... KeyboardInterrupt" (CI saw one in a SIGTERM run's stderr).
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", LOST_STOP_SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "stopped", done.stderr


def test_other_unraisable_errors_still_reach_the_hook_that_was_there(monkeypatch):
    import sys

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: seen.append(unraisable.exc_type))
    ModelWorker(Budget(0)).close()

    class Broken:
        def __del__(self):
            raise ValueError("a real error in a finalizer")

    Broken()
    assert seen == [ValueError]


def test_a_stuck_call_inside_a_native_capture_gives_fd_2_back(stuck_job):
    from kdiag.engine.tf import native_stderr_captured

    before = os.fstat(2)
    entered = threading.Event()

    def held_back():
        with native_stderr_captured():
            entered.set()
            stuck_job.wait()

    worker = ModelWorker(Budget(2.5))
    with pytest.raises(TimeUp):
        worker.call(held_back)
    assert entered.is_set()
    assert os.path.samestat(os.fstat(2), before), "what the main thread prints next reaches the real stderr"


def test_leave_returns_when_nothing_is_stuck():
    worker_module.leave(0)  # would end this process otherwise


def test_the_temporary_folders_of_a_stuck_job_are_removed_with_their_locks(tmp_path, monkeypatch, stuck_job):
    from kdiag import tempdirs

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    held = []

    def in_a_temporary_folder():
        with tempdirs.temporary_directory(prefix="kdiag-test-") as folder:
            held.append(folder)
            stuck_job.wait()

    with pytest.raises(TimeUp):
        ModelWorker(Budget(2.3)).call(in_a_temporary_folder)
    assert os.path.isdir(held[0])
    tempdirs.remove_own()
    assert not os.path.exists(held[0]) and not os.path.exists(held[0] + tempdirs.LOCK_SUFFIX)
    assert not (tmp_path / f"kdiag-{os.getuid()}").exists(), "the emptied root goes too"


def test_a_strategy_whose_preparation_the_limit_stops_gets_a_row_saying_so():
    from types import SimpleNamespace

    from kdiag.engine.runtimes.strategies import BY_KEY
    from kdiag.steps import plan, timing
    from kdiag.steps.state import StepCounter

    class Worker:  # the first preparation runs, the limit stops the second, no time is left for the third
        outcomes = [None, TimeUp(ran_s=7.0), TimeUp(started=False)]

        def call(self, fn):
            outcome = self.outcomes.pop(0)
            if outcome is not None:
                raise outcome
            return (lambda: "prepared"), "", []

    budget = Budget(0)
    state = SimpleNamespace(worker=Worker(), budget=budget, steps=StepCounter(None, 3, budget), memory_skip={}, prepared_s={},
                            loaded=SimpleNamespace(is_keras=True), context=None)
    strategies = [BY_KEY["predict"], BY_KEY["concrete"], BY_KEY["tflite"]]
    group = plan.TimingGroup("the test's group", tuple(s.identity.key for s in strategies))
    prepared, unavailable, _ = timing._prepare_all(state, group, strategies)
    assert list(prepared) == ["predict"]
    assert unavailable == {
        "concrete function": "not measured: preparing it did not finish within the time limit (stopped after 7 s); "
                             "rerun with a larger --time-limit",
        "TFLite": "not measured: the time limit left no time to prepare it; rerun with a larger --time-limit"}
