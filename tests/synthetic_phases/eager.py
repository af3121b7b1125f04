"""Eager op dispatch landmarks (a weak phase)."""

from synthetic_phases import busy


def op(seconds):
    busy.spin(seconds)
