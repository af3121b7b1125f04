"""Scenarios: each runs the synthetic program and returns the true seconds per phase."""

from synthetic_phases import busy, eager, loader, output, pipeline, runtime, tracer

MS = 1e-3


def nested():
    """Landmarks three deep: the innermost wins."""
    loader.load(20 * MS, 30 * MS, 25 * MS)
    return {"input handling": 20 * MS, "tf.data pipeline": 30 * MS, "graph execution": 25 * MS}


def shared():
    """One non-landmark callee (two levels deep) called from two phases, 3:1."""
    loader.load_shared(60 * MS)
    output.convert_shared(20 * MS)
    return {"input handling": 60 * MS, "output conversion": 20 * MS}


def recursive():
    """A self-recursive non-landmark from two phases, a recursive landmark, and a
    recursion that passes through a landmark of another phase on every level."""
    pipeline.walk_from_pipeline(3, 10 * MS)  # 30 ms of tf.data
    runtime.walk_from_runtime(2, 10 * MS)  # 20 ms of graph execution
    loader.load_and_trace(3, 10 * MS)  # 30 ms of tracing
    runtime.run_ping(2, 10 * MS)  # ping: 10 ms graph, then 2 x 10 ms under callbacks.pong
    return {
        "tf.data pipeline": 30 * MS,
        "graph execution": 30 * MS,
        "tracing": 30 * MS,
        "callbacks & progress bar": 20 * MS,
    }


def outside():
    """Time under no landmark, next to a landmark."""
    busy.spin(25 * MS)
    eager.op(15 * MS)  # weak, but called from other Python: eager op dispatch
    return {"other Python": 25 * MS, "eager op dispatch": 15 * MS}


def absorbing_and_weak():
    """Tracing keeps a tf.data landmark below it; eager op dispatch below output
    conversion stays output conversion."""
    tracer.trace(15 * MS, 20 * MS)
    output.convert(10 * MS, 15 * MS)
    return {"tracing": 35 * MS, "output conversion": 25 * MS}


def qualified():
    """A decorated method matched by qualified name next to a same-file non-landmark."""
    ds = pipeline.Dataset()
    ds.map(30 * MS)
    ds.helper(20 * MS)
    return {"tf.data pipeline": 30 * MS, "other Python": 20 * MS}


SCENARIOS = {
    "nested": nested,
    "shared": shared,
    "recursive": recursive,
    "outside": outside,
    "absorbing_and_weak": absorbing_and_weak,
    "qualified": qualified,
}
