"""`model.predict(x)` on a compiled instance: the other half of "predict is slower after compile()"."""

from __future__ import annotations

from kdiag.datamodel import strategies as ids
from kdiag.engine.intake.limits import LOAD_COPIES, StrategyCost
from kdiag.engine.runtimes.base import Strategy, require_keras, to_host


def prepare(ctx):
    require_keras(ctx, "predict after compile()")
    model = ctx.loaded.compiled_factory()  # its own instance: no predict function shared
    x = ctx.keras_inputs()
    return lambda: to_host(model.predict(x, verbose=0))


# It loads its own, compiled instance (kdiag.engine.intake.load: compiled_factory), so nothing is
# shared with predict's: one copy kept, and a second while loading (LOAD_COPIES).
STRATEGY = Strategy(ids.PREDICT_COMPILED, prepare, cost=StrategyCost(1, LOAD_COPIES - 1))
