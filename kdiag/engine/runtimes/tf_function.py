"""`tf.function(model(x, training=False))` with an input signature, called with NumPy arrays."""

from __future__ import annotations

from kdiag.datamodel import strategies as ids
from kdiag.engine.intake.limits import StrategyCost
from kdiag.engine.runtimes.base import ChunkCall, Strategy, serving_function, to_host


def prepare(ctx):
    fn = ctx.cached("tf.function", lambda: serving_function(ctx, jit_compile=False))
    x = ctx.keras_inputs()
    return lambda: to_host(fn(x))


def prepare_chunked(ctx) -> ChunkCall:
    fn = ctx.cached("tf.function", lambda: serving_function(ctx, jit_compile=False))
    return lambda arrays: to_host(fn(ctx.pack(arrays)))


# Its graph captures the loaded instance's variables as resources: no copy of the weights.
STRATEGY = Strategy(ids.TF_FUNCTION, prepare, cost=StrategyCost(0), prepare_chunked=prepare_chunked)
