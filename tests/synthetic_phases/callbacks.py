"""Callback landmarks; `pong` closes a ping-pong recursion through a landmark."""

from synthetic_phases import recursion


def pong(levels, seconds):
    recursion.ping(levels - 1, seconds)
