"""`model.predict(x)` on the model as loaded (compile=False): the user's own path, and the reference."""

from __future__ import annotations

from kdiag.datamodel import strategies as ids
from kdiag.engine.intake.limits import StrategyCost
from kdiag.engine.runtimes.base import ChunkCall, Strategy, StrategyContext, require_keras, to_host


def prepare(ctx):
    model = require_keras(ctx, "predict")
    x = ctx.keras_inputs()
    return lambda: to_host(model.predict(x, verbose=0))


def predict_whole(ctx: StrategyContext, batch_size: int) -> ChunkCall:
    """model.predict over a whole array, in batches of `batch_size`: the data-size sweep's baseline."""
    model = require_keras(ctx, "predict")
    return lambda arrays: to_host(model.predict(ctx.pack(arrays), batch_size=batch_size, verbose=0))


# It calls the instance already loaded: no copy of the weights.
STRATEGY = Strategy(ids.PREDICT, prepare, cost=StrategyCost(0))
