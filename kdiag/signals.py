"""Stopping on a signal without losing what was measured.

SIGTERM is what `docker stop`, CI cancellation and `timeout` send. Python's default is
to die on the spot: no report, temporary folders left behind. Here it raises
`Terminated`, a KeyboardInterrupt, so it takes the same road as Ctrl-C: the measurements
so far are saved, marked incomplete, temporary folders are removed on the way out, and
the exit status is 143 (130 for Ctrl-C).

Once kdiag is stopping, or while it saves a report, a further Ctrl-C or SIGTERM must not
break the save half-way: it is noted, a line says kdiag is finishing the save, and the
first signal decides the exit status. Python runs signal handlers between bytecodes, so
the save (milliseconds of file writes) always finishes; only SIGKILL can cut it short.

Handlers run in the main thread only, and only between bytecodes: inside one long TensorFlow
call they would wait for it. So the main thread never makes model calls; it waits on the run's
worker thread (kdiag.steps.worker), and a handler raises in that wait at once.
"""

from __future__ import annotations

import _weakrefset
import contextlib
import signal
import sys
import threading
import weakref
from typing import Iterator, Optional

from kdiag.errors import ExitStatus

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM: handled like Ctrl-C, but the run ends with exit status 143."""


class StopSignals:
    """SIGINT and SIGTERM while a run is under way: the first one stops it, later ones wait.

    Use as a context manager in the main thread; elsewhere (a worker thread, where
    Python cannot install handlers) it changes nothing and Ctrl-C behaves as usual.
    """

    def __init__(self, stderr=None):
        self.first: Optional[int] = None  # the signal that stopped (or will stop) the run
        self.raised = False  # whether `first` has been raised as an exception yet
        self.pending = False  # `first` came inside a finalizer: raised at the next safe point instead
        self.saving_depth = 0
        self.stderr = stderr
        self._previous = {}
        self._told = False

    @property
    def exit_status(self) -> int:
        """0 while no stop signal came; else 130 (Ctrl-C) or 143 (SIGTERM)."""
        if self.first is None:
            return ExitStatus.OK
        return ExitStatus.TERMINATED if self.first == signal.SIGTERM else ExitStatus.INTERRUPTED

    @property
    def cause(self) -> str:
        """How the run was stopped, for messages and the report's note."""
        return "SIGTERM" if self.first == signal.SIGTERM else "Ctrl-C"

    @contextlib.contextmanager
    def saving(self) -> Iterator[None]:
        """A stretch (writing a report) that a stop signal must not cut: signals wait until it ends."""
        self.saving_depth += 1
        try:
            yield
        finally:
            self.saving_depth -= 1

    def _handle(self, signum, frame) -> None:
        if self.first is None:
            self.first = signum
            if not self.saving_depth:
                if _inside_finalizer(frame):
                    # Raised there, Python would print "Exception ignored in ..." with a traceback and drop
                    # the stop; the wait on the run's worker raises it instead (raise_pending).
                    self.pending = True
                    return
                self.raised = True
                raise Terminated("terminated") if signum == signal.SIGTERM else KeyboardInterrupt()
            return  # a report is being written: let it finish, the exit status says what came
        # Already stopping: breaking off now would lose the report being saved.
        if not self._told:
            self._told = True
            print("kdiag: saving what was measured, then stopping (a moment, please)",
                  file=self.stderr or sys.stderr, flush=True)

    def raise_pending(self) -> None:
        """Raise the stop that came inside a finalizer, now that the main thread is at a safe point."""
        if self.pending and not self.saving_depth:
            self.pending = False
            self.raised = True
            raise Terminated("terminated") if self.first == signal.SIGTERM else KeyboardInterrupt()

    def __enter__(self) -> "StopSignals":
        global _active
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
            self._outer, _active = _active, self
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        global _active
        if self._previous:
            for number, previous in self._previous.items():
                signal.signal(number, previous)
            _active = self._outer
        if (exc is not None and isinstance(exc, KeyboardInterrupt) and not isinstance(exc, Terminated)
                and self.first == signal.SIGTERM):
            # Code on the way out (measurement, the API) re-raised the stop as its own
            # KeyboardInterrupt; the caller still needs to know it was SIGTERM.
            raise Terminated("terminated") from exc
        return False


_active: Optional[StopSignals] = None

#: Where weak references' callbacks run (during garbage collection, at any bytecode).
_FINALIZER_FILES = (weakref.__file__, _weakrefset.__file__)


def _inside_finalizer(frame) -> bool:
    """Whether the interrupted code runs in a finalizer (a weakref callback, a __del__), where an
    exception is printed as "Exception ignored" with a traceback, and lost."""
    while frame is not None:
        if frame.f_code.co_name == "__del__" or frame.f_code.co_filename in _FINALIZER_FILES:
            return True
        frame = frame.f_back
    return False


def active_stop() -> StopSignals:
    """The StopSignals in force, or an idle one (no handlers) when none is."""
    return _active if _active is not None else StopSignals()


def stop_cause() -> str:
    """'SIGTERM' or 'Ctrl-C': what stopped the run, for the incomplete report's note."""
    return active_stop().cause
