"""`model.predict_on_batch(x)`: one batch, no data pipeline."""

from __future__ import annotations

from kdiag.datamodel import strategies as ids
from kdiag.engine.intake.limits import StrategyCost
from kdiag.engine.runtimes.base import ChunkCall, Strategy, require_keras, to_host


def prepare(ctx):
    model = require_keras(ctx, "predict_on_batch")
    x = ctx.keras_inputs()
    return lambda: to_host(model.predict_on_batch(x))


def prepare_chunked(ctx) -> ChunkCall:
    # As every chunked twin: the chunk is converted inside the call, as a user feeding NumPy arrays
    # must, so the conversion is part of that path's cost.
    model = require_keras(ctx, "predict_on_batch")
    return lambda arrays: to_host(model.predict_on_batch(ctx.pack(arrays)))


# It calls the instance already loaded: no copy of the weights.
STRATEGY = Strategy(ids.PREDICT_ON_BATCH, prepare, cost=StrategyCost(0), prepare_chunked=prepare_chunked)
