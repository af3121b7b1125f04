"""The traced graph's concrete function, called on tensors: no dispatch, no conversion."""

from __future__ import annotations

from kdiag.datamodel import strategies as ids
from kdiag.engine.intake.limits import StrategyCost
from kdiag.engine.runtimes.base import ChunkCall, Strategy, serving_function, tf_module, to_host


def prepare(ctx):
    tf = tf_module()
    # A separate tf.function from tf.function's own: getting its concrete function traces it,
    # and that trace must not warm the `tf.function` strategy's first call.
    fn = serving_function(ctx, jit_compile=False)
    concrete = fn.get_concrete_function()
    tensors = tf.nest.map_structure(tf.constant, ctx.keras_inputs())
    return lambda: to_host(concrete(tensors))


def prepare_chunked(ctx) -> ChunkCall:
    tf = tf_module()
    concrete = serving_function(ctx, jit_compile=False).get_concrete_function()
    return lambda arrays: to_host(concrete(tf.nest.map_structure(tf.constant, ctx.pack(arrays))))


# It feeds tf.constant copies of the inputs (one batch kept); the weights are the loaded instance's.
STRATEGY = Strategy(ids.CONCRETE, prepare, cost=StrategyCost(0, 0, 1), prepare_chunked=prepare_chunked)
