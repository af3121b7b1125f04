"""Tracing landmarks (an absorbing phase)."""

from synthetic_phases import busy, pipeline


def trace(own, inner):
    busy.spin(own)
    pipeline.build_in_trace(inner)


def trace_recursive(depth, seconds):
    busy.spin(seconds)
    if depth > 1:
        trace_recursive(depth - 1, seconds)
