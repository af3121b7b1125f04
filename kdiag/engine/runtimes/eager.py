"""`model(x, training=False)`: the direct call, run op by op."""

from __future__ import annotations

from kdiag.datamodel import strategies as ids
from kdiag.engine.intake.limits import StrategyCost
from kdiag.engine.runtimes.base import ChunkCall, Strategy, require_keras, to_host


def prepare(ctx):
    model = require_keras(ctx, "model(x)")
    x = ctx.keras_inputs()
    return lambda: to_host(model(x, training=False))


def prepare_chunked(ctx) -> ChunkCall:
    model = require_keras(ctx, "model(x)")
    return lambda arrays: to_host(model(ctx.pack(arrays), training=False))


# It calls the instance already loaded: no copy of the weights.
STRATEGY = Strategy(ids.EAGER, prepare, cost=StrategyCost(0), prepare_chunked=prepare_chunked)
