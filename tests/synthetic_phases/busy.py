"""Shared non-landmark helpers: busy-waits of a known length.

Lengths are in this thread's CPU time (`time.thread_time`), and the tests profile with
that clock too, so a busy machine that pauses the thread changes nothing: a wall-clock
deadline would overshoot by whatever pause straddles it. The clock is read once per few
thousand iterations, a negligible share of the time.
"""

import functools
from time import thread_time as clock


def spin(seconds):
    """Busy-wait `seconds`; the time is this function's own."""
    end = clock() + seconds
    while clock() < end:
        for _ in range(5000):
            pass


def work(seconds):
    """Half the time in its own loop, half in `spin`: a two-level shared callee."""
    end = clock() + seconds / 2
    while clock() < end:
        for _ in range(5000):
            pass
    spin(seconds / 2)


def passthrough(fn):
    """A decorator with a wrapper, as Keras and TF put around their entry points."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)

    return wrapper
