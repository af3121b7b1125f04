"""The model exported as a SavedModel and reloaded: its `serve` endpoint (or a plain SavedModel's signature)."""

from __future__ import annotations

from kdiag.datamodel import strategies as ids
from kdiag.engine.intake.limits import StrategyCost
from kdiag.engine.intake.load import serving_signature
from kdiag.engine.runtimes.base import ChunkCall, Strategy, export_saved_model, tf_module, to_host
from kdiag.errors import NotApplicable, first_line


def prepare(ctx):
    tf = tf_module()
    if ctx.loaded.saved_model is not None:
        signature = serving_signature(ctx.loaded.saved_model, ctx.loaded.source)
        tensors = {n: tf.constant(a) for n, a in ctx.inputs.arrays.items()}
        return lambda: to_host(signature(**tensors))
    try:
        directory = export_saved_model(ctx)
    except Exception as exc:
        raise NotApplicable(f"model.export() failed: {first_line(exc)}") from exc
    restored = tf.saved_model.load(str(directory))
    x = ctx.keras_inputs()
    # The closures hold `restored` itself: its functions alone do not keep the
    # restored variables alive.
    if getattr(restored, "serve", None) is not None:
        return lambda: to_host(restored.serve(x))
    return lambda: to_host(serving_signature(restored, directory)(**ctx.inputs.arrays))


def prepare_chunked(ctx) -> ChunkCall:
    if ctx.loaded.saved_model is not None:
        signature = serving_signature(ctx.loaded.saved_model, ctx.loaded.source)
        return lambda arrays: to_host(signature(**arrays))
    try:
        directory = export_saved_model(ctx)
    except Exception as exc:
        raise NotApplicable(f"model.export() failed: {first_line(exc)}") from exc
    restored = tf_module().saved_model.load(str(directory))
    if getattr(restored, "serve", None) is not None:
        return lambda arrays: to_host(restored.serve(ctx.pack(arrays)))
    signature = serving_signature(restored, directory)
    return lambda arrays: to_host(signature(**arrays))


# Exporting serialises the variables (up to one copy in flight) and tf.saved_model.load restores them
# into new variables (one copy kept). A plain SavedModel is already loaded: it keeps only the
# tf.constant inputs.
STRATEGY = Strategy(ids.SAVEDMODEL, prepare, cost=StrategyCost(1, 1), prepare_chunked=prepare_chunked,
                    cost_on_savedmodel=StrategyCost(0, 0, 1))
