"""What every strategy is made of, and what they share.

A Strategy binds an identity from the data model (key, display name, snippet: what reports show)
to the code that prepares its call and to its memory cost, which is required: a strategy whose
copies of the weights were not thought about cannot be registered (kdiag.engine.intake.limits
plans the run's memory from these costs).

A Strategy's `prepare(ctx)` does the one-off work (tracing is *not* done here: the first call
stays cold, as it is for the user) and returns a zero-argument callable that runs the model once
on the prepared inputs and returns its outputs as a flat list of NumPy arrays: host memory, so
asynchronous devices cannot hide work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from kdiag.datamodel.strategies import StrategyIdentity
from kdiag.engine.intake.inputs import ModelInputs
from kdiag.engine.intake.limits import StrategyCost
from kdiag.engine.intake.load import LoadedModel
from kdiag.errors import NotApplicable

Outputs = List[np.ndarray]


@dataclasses.dataclass
class StrategyContext:
    """What every strategy prepares from: the model, the inputs, a scratch folder.

    `cached` shares one-off artefacts (an exported SavedModel) between strategies; nothing
    else is written to it after construction.
    """

    loaded: LoadedModel
    inputs: ModelInputs
    work_dir: Path  # for exported SavedModels and TFLite files
    _cache: Dict[str, object] = dataclasses.field(default_factory=dict)

    def keras_inputs(self):
        """The inputs packed as the Keras model takes them: one array, a list or a dict."""
        return self.pack(self.inputs.arrays)

    def pack(self, arrays: Dict[str, np.ndarray]):
        """Arrays by input name (the run's inputs, or a chunk of other samples) packed as the Keras
        model takes them: one array, a list or a dict."""
        names = [s.name for s in self.loaded.input_specs]
        if self.loaded.input_structure == "dict":
            return {n: arrays[n] for n in names}
        if self.loaded.input_structure == "list":
            return [arrays[n] for n in names]
        return arrays[names[0]]

    def tensor_specs(self, batch: Optional[int] = None):
        """tf.TensorSpecs in the Keras input structure; batch axis None unless given."""
        tf = tf_module()
        specs = {
            s.name: tf.TensorSpec((batch,) + tuple(self.inputs.arrays[s.name].shape[1:]), s.dtype, name=s.name)
            for s in self.loaded.input_specs
        }
        names = [s.name for s in self.loaded.input_specs]
        if self.loaded.input_structure == "dict":
            return specs
        if self.loaded.input_structure == "list":
            return [specs[n] for n in names]
        return specs[names[0]]

    def cached(self, key: str, make: Callable[[], object]):
        """One-off artefacts shared between strategies (an exported SavedModel, a traced function)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]


#: A prepared call on a chunk of samples: arrays by input name (any batch size) -> outputs on the host.
ChunkCall = Callable[[Dict[str, np.ndarray]], Outputs]


@dataclasses.dataclass(frozen=True)
class Strategy:
    """A strategy's identity (from the data model), the code that prepares its call, and its memory cost.

    `prepare_chunked`, where the strategy has one, prepares the same way of calling the model on
    arrays given at each call, of any batch size: the data-size and batch-size sweeps feed it
    chunks of other samples than the run's batch. `cost_on_savedmodel`: its cost on a plain
    SavedModel (no Keras object), when it runs there and differs.
    """

    identity: StrategyIdentity
    prepare: Callable[[StrategyContext], Callable[[], Outputs]]
    cost: StrategyCost
    prepare_chunked: Optional[Callable[[StrategyContext], ChunkCall]] = None
    cost_on_savedmodel: Optional[StrategyCost] = None

    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def needs_keras(self) -> bool:
        return self.identity.needs_keras

    def memory_cost(self, keras: bool) -> Optional[StrategyCost]:
        """Its cost on a Keras model, or on a plain SavedModel; None when it does not run there."""
        if keras:
            return self.cost
        if self.needs_keras:
            return None
        return self.cost_on_savedmodel or self.cost


# --- output normalisation -----------------------------------------------------------


def to_host(outputs) -> Outputs:
    """Flatten any output structure to a list of NumPy arrays (dict values in key order)."""
    flat = []
    _flatten_outputs(outputs, flat)
    return flat


def _flatten_outputs(value, out: list) -> None:
    if isinstance(value, dict):
        for key in sorted(value, key=natural_key):
            _flatten_outputs(value[key], out)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _flatten_outputs(item, out)
    elif hasattr(value, "numpy"):
        out.append(value.numpy())  # copies a tensor to host memory
    else:
        out.append(np.asarray(value))


def natural_key(key) -> list:
    # output_2 before output_10
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(key))]


def tf_module():
    from kdiag.engine.tf import tf_and_keras

    return tf_and_keras()[0]


def require_keras(ctx: StrategyContext, what: str):
    if not ctx.loaded.is_keras:
        raise NotApplicable(f"{what} needs a Keras model; this is a plain SavedModel (no Keras object to call)")
    return ctx.loaded.model


# --- what several strategies share -------------------------------------------------------


def serving_function(ctx, jit_compile: bool):
    """tf.function(model(x, training=False)) with an input signature; traced on first call."""
    tf = tf_module()
    model = require_keras(ctx, "tf.function(model)")

    @tf.autograph.experimental.do_not_convert  # plain model call: nothing for AutoGraph to convert
    def call(x):
        return model(x, training=False)

    return tf.function(call, input_signature=[ctx.tensor_specs()], jit_compile=jit_compile)


def export_saved_model(ctx: StrategyContext) -> Path:
    """The Keras model exported as a SavedModel once per run (also used by the C++ baseline)."""

    def export():
        if ctx.loaded.saved_model_dir is not None:
            return ctx.loaded.saved_model_dir
        model = ctx.loaded.model
        target = ctx.work_dir / "saved_model"
        if hasattr(model, "export"):
            if _export_takes_verbose(model):
                model.export(str(target), verbose=False)
            else:
                # tf-keras' export prints its endpoints on stdout, which may be carrying JSON.
                with contextlib.redirect_stdout(io.StringIO()):
                    model.export(str(target))
        else:
            tf_module().saved_model.save(model, str(target))
        return target

    return ctx.cached("saved_model", export)


def _export_takes_verbose(model) -> bool:
    import inspect as pyinspect

    return "verbose" in pyinspect.signature(model.export).parameters


