"""Does the model depend on the `training` flag? Its layers that do, and how far
`model(x, training=True)` strays from the reference outputs: measured, not assumed."""

from __future__ import annotations

from typing import List, Optional, Tuple

from kdiag.datamodel.strategies import PREDICT
from kdiag.engine import check

TRAINING_DEPENDENT = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "AlphaDropout",
                      "GaussianDropout", "GaussianNoise", "BatchNormalization")


def training_mode_check(ctx, reference) -> Tuple[List[str], Optional[float]]:
    """(layers that behave differently when training, max |diff| of model(x, training=True) from the reference).

    Run last: training=True updates BatchNormalization's moving statistics.
    """
    from kdiag.engine.runtimes.base import to_host

    if not ctx.loaded.is_keras:
        return [], None
    layers = [f"{layer.name} ({type(layer).__name__})" for layer in all_layers(ctx.loaded.model)
              if type(layer).__name__ in TRAINING_DEPENDENT]
    if not layers or reference is None:
        return layers, None
    try:
        stray = check.compare(PREDICT.name, reference, to_host(ctx.loaded.model(ctx.keras_inputs(), training=True)))
    except Exception:  # a model that cannot run in training mode has no such risk to measure
        return layers, None
    return layers, stray.max_abs_diff


def all_layers(model):
    """Every layer of a Keras model, nested models' layers included."""
    for layer in getattr(model, "layers", []):
        yield layer
        if hasattr(layer, "layers"):
            yield from all_layers(layer)
