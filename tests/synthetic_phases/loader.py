"""Input handling landmarks."""

from synthetic_phases import busy, pipeline, tracer


def load(own, build_s, execute_s):
    busy.spin(own)
    pipeline.build(build_s, execute_s)


def load_shared(seconds):
    busy.work(seconds)


def load_and_trace(depth, seconds):
    tracer.trace_recursive(depth, seconds)
