"""Model work on one worker thread, which the main thread waits on with the run's deadline.

A call into TensorFlow cannot be interrupted from Python: a signal handler runs in the main thread
only between two bytecodes, so while the main thread was inside one long call (a layer taking
150 s, a 2,000-layer config deserialising for minutes) SIGTERM, Ctrl-C and --time-limit all waited
for it (issue 20). So every piece of model work (loading, preparing a strategy, the timing loop,
the profiles, the steps beyond one batch, the training check) runs here, on the run's one worker
thread, and the main thread only waits: until the job ends, until the Budget's stop moment, or until
a signal's handler raises in it, whichever comes first.

Why a thread and not a child process: the model, its strategies, their outputs and the timing
loop's samples would all have to cross a process boundary (models and concrete functions do not
pickle), and the run's steps would have to be rebuilt around messages; the whole engine would move.
A thread shares all of it, costs nothing per call (the timing loop runs whole on the worker, so no
timed call crosses threads), and its only drawback, that a native call cannot be killed, is met at
the exit (`leave`). One thread for the whole run, not one per job: Keras 3 keeps some state per
thread (scopes, the global dtype policy), so the model is loaded, prepared and called on one thread.

How a stop works (a signal, or the time limit):

1. The main thread, waiting on a job, is interrupted: a signal's handler raises KeyboardInterrupt
   (or `Terminated`) in it, or the wait reaches the Budget's stop moment (`TimeUp`).
2. It asks the worker to stop: a KeyboardInterrupt raised in the worker thread
   (`PyThreadState_SetAsyncExc`, CPython's documented call for this), which fires at the worker's
   next bytecode, exactly as Ctrl-C did when the calls ran on the main thread: the timing loop's
   `except KeyboardInterrupt` and every `finally` of the engine (child processes stopped, temporary
   folders removed) run as before. It is sent again every STOP_RESEND_S until the job ends, because
   TensorFlow turns a KeyboardInterrupt raised inside a `tf.py_function` into an error of the call.
3. The main thread waits STOP_GRACE_S for the job to end. When it does not (one native call is
   still running), the job is abandoned: the run goes on without it and saves the report of what
   was measured (the timing loop's samples are read from its live snapshot), and the process must
   not wait for that call when it exits: `leave`.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from typing import Callable, List, Optional, Set, TypeVar

from kdiag.signals import active_stop
from kdiag.steps.budget import SAVE_S, Budget

T = TypeVar("T")

#: How long the main thread waits for a job to end once it asked it to stop.
STOP_GRACE_S = 1.0
#: How often the main thread, waiting on a job, looks for a stop signal that could not be raised where it came.
POLL_S = 0.25
#: How often the stop is raised again in the worker while its job has not ended.
STOP_RESEND_S = 1.0
#: The worker's stack. The main thread's grows to RLIMIT_STACK (8 MiB by default); a thread's is fixed
#: when it starts (glibc: RLIMIT_STACK, or 2 MiB when that is unlimited), and a deep config (a
#: 2,000-layer model) recurses deeply while it loads: where the main thread would raise RecursionError,
#: the worker must not overflow its stack. Address space, used only as deep as the calls go.
WORKER_STACK_BYTES = 32 << 20


class TimeUp(KeyboardInterrupt):
    """The time limit stopped model work (`started`), or left no time to start it. Raised in the main
    thread. A KeyboardInterrupt, so that no `except Exception` on the way swallows it."""

    def __init__(self, ran_s: float = 0.0, started: bool = True):
        super().__init__("the time limit was reached")
        self.ran_s = ran_s  # how long the job had run when it was stopped
        self.started = started


class _Job:
    def __init__(self, fn: Callable[[], object]):
        self.fn = fn
        self.done = threading.Event()
        self.result: object = None
        self.error: Optional[BaseException] = None


#: Jobs abandoned while still running, in any run of this process (see `leave`).
_ABANDONED: List[_Job] = []

#: Worker threads asked to stop (`_raise_in`): a KeyboardInterrupt that Python cannot raise in them
#: is our own stop, not an error of theirs.
_STOPPING: "Set[int]" = set()


class ModelWorker:
    """The run's worker thread. `call(fn)` runs `fn` there and waits for it under the Budget."""

    def __init__(self, budget: Budget):
        self.budget = budget
        self._jobs: "queue.SimpleQueue[Optional[_Job]]" = queue.SimpleQueue()
        self._stopped: Optional[BaseException] = None  # what stopped it: no further job runs
        _quiet_lost_stops()
        previous = threading.stack_size()
        try:
            threading.stack_size(max(previous, WORKER_STACK_BYTES))
        except (ValueError, RuntimeError):  # a platform that does not let us choose: its default
            pass
        try:
            self._thread = threading.Thread(target=self._serve, name="kdiag-model", daemon=True)
            self._thread.start()
        finally:
            threading.stack_size(previous)

    def call(self, fn: Callable[[], T], keep_s: float = SAVE_S) -> T:
        """`fn()` on the worker: its result, or its exception raised here.

        Raises TimeUp when the Budget's stop moment (the limit less `keep_s`, what the caller needs
        afterwards) comes first or has passed, and the signal's exception when a signal comes; in
        both cases the job is asked to stop, and abandoned if it does not within STOP_GRACE_S.
        """
        active_stop().raise_pending()
        if self._stopped is not None:
            raise TimeUp(started=False) if isinstance(self._stopped, TimeUp) else self._stopped
        stop_at = self.budget.stop_at(keep_s)
        if stop_at is not None and self.budget.clock() >= stop_at:
            raise TimeUp(started=False)
        job = _Job(fn)
        started = self.budget.clock()
        self._jobs.put(job)
        try:
            # In slices: a signal that came inside a finalizer is raised here (kdiag.signals), not lost.
            while not job.done.wait(POLL_S if stop_at is None else
                                    min(POLL_S, max(0.0, stop_at - self.budget.clock()))):
                active_stop().raise_pending()
                if stop_at is not None and self.budget.clock() >= stop_at:
                    raise TimeUp(self.budget.clock() - started)
        except BaseException as stop:  # the time limit, or a signal's handler raised in the wait
            self._stop(job, stop)
            raise
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    def close(self) -> None:
        """End the worker thread once it is idle (a stopped one ends by itself)."""
        if self._stopped is None:
            self._jobs.put(None)

    def _serve(self) -> None:
        _STOPPING.discard(threading.get_ident())  # an ended worker's ident, given to this thread
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                try:
                    job.result = job.fn()
                except BaseException as exc:  # handed to the main thread, which decides
                    job.error = exc
                finally:
                    job.done.set()
                if self._stopped is not None:
                    return
        except BaseException:  # a stop that arrived after its job ended: the worker ends quietly
            return

    def _stop(self, job: _Job, reason: BaseException) -> None:
        self._stopped = reason
        if job.done.is_set():
            return
        _raise_in(self._thread)
        threading.Thread(target=_resend_until_done, args=(job, self._thread), name="kdiag-stop", daemon=True).start()
        try:
            job.done.wait(STOP_GRACE_S)  # a second Ctrl-C without StopSignals (the API) cuts this short
        finally:
            if not job.done.is_set():
                _ABANDONED.append(job)
                # The job may be stuck inside a block that holds TensorFlow's native output back (fd 2
                # points at a file): what this thread prints now must reach the terminal.
                from kdiag.engine.tf import release_native_stderr

                release_native_stderr()


def _raise_in(thread: threading.Thread) -> None:
    """A KeyboardInterrupt in `thread`, at its next bytecode."""
    import ctypes

    if thread.ident is not None and thread.is_alive():
        _STOPPING.add(thread.ident)
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(KeyboardInterrupt))


def _quiet_lost_stops() -> None:
    """Keep Python from printing "Exception ignored ... Traceback ... KeyboardInterrupt" for a stop
    that landed in a finalizer on the worker.

    The stop fires at the worker's next bytecode, and that bytecode may belong to a finalizer (a
    `__del__`, a weak reference's callback: TensorFlow runs many while it frees functions and
    tensors). Python cannot raise there: it hands the exception to sys.unraisablehook, whose default
    prints it with a traceback on stderr, in the middle of kdiag's "interrupted ... saved" lines (seen
    in CI, SIGTERM during a SavedModel strategy), and drops it. Dropping it is right (the stop is sent
    again every STOP_RESEND_S, and a job that does not end is abandoned after STOP_GRACE_S); printing
    it is not. Every other unraisable exception goes to the hook that was in place. Installed once per
    process, by the first worker.
    """
    if getattr(sys.unraisablehook, "_kdiag_quiets_lost_stops", False):
        return
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and threading.get_ident() in _STOPPING:
            return
        previous(unraisable)

    hook._kdiag_quiets_lost_stops = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def _resend_until_done(job: _Job, thread: threading.Thread) -> None:
    while not job.done.wait(STOP_RESEND_S) and thread.is_alive():
        _raise_in(thread)


def stuck() -> bool:
    """Whether a job this process abandoned is still running (a native call that did not return)."""
    return any(not job.done.is_set() for job in _ABANDONED)


def leave(status: int, streams=()) -> None:
    """End the process with `status` now if an abandoned model call is still running; else return.

    Called by the `kdiag` command once the report is saved (or the refusal printed). A normal exit
    does not wait for the worker (a daemon thread), but it runs Python's shutdown with the call still
    under way: atexit handlers, among them native ones TensorFlow registers through pybind11, then
    the C++ runtime's teardown of TensorFlow's static objects while one of its kernels still runs.
    Measured here with a graph call spinning on the worker: a normal exit took 3-4 s more than
    `os._exit` (0.1 s), and running the atexit handlers by hand ended the process with status 0
    before kdiag could give its own. So what kdiag itself must leave clean is cleaned here first
    (its output flushed; its temporary folders removed and their locks released, kdiag.tempdirs;
    its child processes killed, psutil; the files TensorFlow's autograph generated removed, as its
    atexit handler would), then `os._exit(status)`. The run folder's lock was released when the
    report was saved (or the folder discarded with a refusal), and the kernel drops every flock
    with the process anyway. TensorFlow's own threads end with the process.
    Never called by `kdiag.inspect()`: an API caller's process goes on, and the abandoned call ends
    its worker thread (a daemon) when it returns.
    """
    if not stuck():
        return
    for stream in (*streams, sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    from kdiag.tempdirs import remove_own

    remove_own()
    _kill_children()
    _remove_autograph_files()
    os._exit(int(status))


def _remove_autograph_files() -> None:
    """The modules TensorFlow's autograph generated in the temporary folder, which an atexit handler
    of its own removes (tensorflow/python/autograph/pyct/loader.py, `load_source`: each is a
    `__autograph_generated_file*.py` kept in sys.modules under that name). os._exit skips atexit, and
    running every handler is no option: TensorFlow registers native ones (pybind11) that tear down
    what the stuck call still uses."""
    import tempfile

    folder = os.path.realpath(tempfile.gettempdir())
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None) or ""
        if name.startswith("__autograph_generated_file") and os.path.dirname(os.path.realpath(path)) == folder:
            try:
                os.remove(path)
            except OSError:
                pass


def _kill_children() -> None:
    """Kill the child processes the stuck job started (the HDF5 probe, the threads child, the C++ floor)."""
    try:
        import psutil

        children = psutil.Process().children(recursive=True)
    except Exception:  # psutil missing or /proc unreadable: their own parent watch ends them
        return
    for child in children:
        try:
            child.kill()
        except Exception:
            pass
