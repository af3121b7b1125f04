"""Recursive non-landmark helpers."""

from time import thread_time as clock

from synthetic_phases import callbacks  # a cycle of imports, used at call time only


def walk(depth, seconds):
    """`seconds` of own time per level, `depth` levels deep (self-recursion)."""
    end = clock() + seconds
    while clock() < end:
        for _ in range(5000):
            pass
    if depth > 1:
        walk(depth - 1, seconds)


def ping(levels, seconds):
    """`seconds` of own time, then recursion through callbacks.pong (a landmark)."""
    end = clock() + seconds
    while clock() < end:
        for _ in range(5000):
            pass
    if levels > 0:
        callbacks.pong(levels, seconds)
