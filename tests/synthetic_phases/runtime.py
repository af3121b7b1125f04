"""Graph execution landmarks."""

from synthetic_phases import busy, recursion


def execute(seconds):
    busy.spin(seconds)


def walk_from_runtime(depth, seconds):
    recursion.walk(depth, seconds)


def run_ping(levels, seconds):
    recursion.ping(levels, seconds)
