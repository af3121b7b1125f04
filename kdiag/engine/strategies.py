"""The ways of calling a model that kdiag times, each with the snippet a user would write.

A Strategy's `prepare(ctx)` does the one-off work (tracing is *not* done here: the
first call stays cold, as it is for the user) and returns a zero-argument callable
that runs the model once on the prepared inputs and returns its outputs as a flat
list of NumPy arrays: host memory, so asynchronous devices cannot hide work.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from kdiag.datamodel import strategies as ids
from kdiag.datamodel.strategies import StrategyIdentity
from kdiag.engine.inputs import ModelInputs
from kdiag.engine.load import LoadedModel, serving_signature
from kdiag.errors import NotApplicable, first_line
from kdiag.sanitize import joined

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
        tf = _tf()
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
    """A strategy's identity (from the data model) and the code that prepares its call.

    `prepare_chunked`, where the strategy has one, prepares the same way of calling the model on
    arrays given at each call, of any batch size: the data-size and batch-size sweeps feed it
    chunks of other samples than the run's batch.
    """

    identity: StrategyIdentity
    prepare: Callable[[StrategyContext], Callable[[], Outputs]]
    prepare_chunked: Optional[Callable[[StrategyContext], ChunkCall]] = None

    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def needs_keras(self) -> bool:
        return self.identity.needs_keras


# --- output normalisation -----------------------------------------------------------


def to_host(outputs) -> Outputs:
    """Flatten any output structure to a list of NumPy arrays (dict values in key order)."""
    flat = []
    _flatten_outputs(outputs, flat)
    return flat


def _flatten_outputs(value, out: list) -> None:
    if isinstance(value, dict):
        for key in sorted(value, key=_natural_key):
            _flatten_outputs(value[key], out)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _flatten_outputs(item, out)
    elif hasattr(value, "numpy"):
        out.append(value.numpy())  # copies a tensor to host memory
    else:
        out.append(np.asarray(value))


def _natural_key(key) -> list:
    # output_2 before output_10
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(key))]


def _tf():
    from kdiag.engine.tf import tf_and_keras

    return tf_and_keras()[0]


def _require_keras(ctx: StrategyContext, what: str):
    if not ctx.loaded.is_keras:
        raise NotApplicable(f"{what} needs a Keras model; this is a plain SavedModel (no Keras object to call)")
    return ctx.loaded.model


# --- the strategies -------------------------------------------------------------------


def _predict(ctx):
    model = _require_keras(ctx, "predict")
    x = ctx.keras_inputs()
    return lambda: to_host(model.predict(x, verbose=0))


def _predict_compiled(ctx):
    _require_keras(ctx, "predict after compile()")
    model = ctx.loaded.compiled_factory()  # its own instance: no predict function shared
    x = ctx.keras_inputs()
    return lambda: to_host(model.predict(x, verbose=0))


def _predict_on_batch(ctx):
    model = _require_keras(ctx, "predict_on_batch")
    x = ctx.keras_inputs()
    return lambda: to_host(model.predict_on_batch(x))


def _eager_call(ctx):
    model = _require_keras(ctx, "model(x)")
    x = ctx.keras_inputs()
    return lambda: to_host(model(x, training=False))


def _serving_function(ctx, jit_compile: bool):
    """tf.function(model(x, training=False)) with an input signature; traced on first call."""
    tf = _tf()
    model = _require_keras(ctx, "tf.function(model)")

    @tf.autograph.experimental.do_not_convert  # plain model call: nothing for AutoGraph to convert
    def call(x):
        return model(x, training=False)

    return tf.function(call, input_signature=[ctx.tensor_specs()], jit_compile=jit_compile)


def _tf_function(ctx):
    fn = ctx.cached("tf.function", lambda: _serving_function(ctx, jit_compile=False))
    x = ctx.keras_inputs()
    return lambda: to_host(fn(x))


def _concrete_function(ctx):
    tf = _tf()
    # A separate tf.function from the one above: getting its concrete function traces it,
    # and that trace must not warm the `tf.function` strategy's first call.
    fn = _serving_function(ctx, jit_compile=False)
    concrete = fn.get_concrete_function()
    tensors = tf.nest.map_structure(tf.constant, ctx.keras_inputs())
    return lambda: to_host(concrete(tensors))


def _xla(ctx):
    fn = _serving_function(ctx, jit_compile=True)
    x = ctx.keras_inputs()
    try:
        to_host(fn(x))  # fails here if XLA cannot compile an op; the timing run re-traces nothing
    except Exception as exc:
        raise NotApplicable(f"XLA could not compile the model: {first_line(exc)}") from exc
    # That probe call warmed the function, so give the timing run a fresh one: its first
    # call must include the XLA compilation, as it does for the user.
    fn = _serving_function(ctx, jit_compile=True)
    return lambda: to_host(fn(x))


# --- the same strategies on chunks given at each call -------------------------------------
# Each prepares what its zero-argument twin above prepares, and converts the chunk inside the
# call, as a user feeding NumPy arrays must: a conversion is part of that path's cost.


def _predict_on_batch_chunked(ctx) -> ChunkCall:
    model = _require_keras(ctx, "predict_on_batch")
    return lambda arrays: to_host(model.predict_on_batch(ctx.pack(arrays)))


def _eager_chunked(ctx) -> ChunkCall:
    model = _require_keras(ctx, "model(x)")
    return lambda arrays: to_host(model(ctx.pack(arrays), training=False))


def _tf_function_chunked(ctx) -> ChunkCall:
    fn = ctx.cached("tf.function", lambda: _serving_function(ctx, jit_compile=False))
    return lambda arrays: to_host(fn(ctx.pack(arrays)))


def _concrete_chunked(ctx) -> ChunkCall:
    tf = _tf()
    concrete = _serving_function(ctx, jit_compile=False).get_concrete_function()
    return lambda arrays: to_host(concrete(tf.nest.map_structure(tf.constant, ctx.pack(arrays))))


def _xla_chunked(ctx) -> ChunkCall:
    # XLA compiles once per input shape: a new chunk size pays a compilation on its first call.
    fn = _serving_function(ctx, jit_compile=True)
    return lambda arrays: to_host(fn(ctx.pack(arrays)))


def _saved_model_chunked(ctx) -> ChunkCall:
    if ctx.loaded.saved_model is not None:
        signature = serving_signature(ctx.loaded.saved_model, ctx.loaded.source)
        return lambda arrays: to_host(signature(**arrays))
    try:
        directory = export_saved_model(ctx)
    except Exception as exc:
        raise NotApplicable(f"model.export() failed: {first_line(exc)}") from exc
    restored = _tf().saved_model.load(str(directory))
    if getattr(restored, "serve", None) is not None:
        return lambda arrays: to_host(restored.serve(ctx.pack(arrays)))
    signature = serving_signature(restored, directory)
    return lambda arrays: to_host(signature(**arrays))


def predict_whole(ctx: StrategyContext, batch_size: int) -> ChunkCall:
    """model.predict over a whole array, in batches of `batch_size`: the data-size sweep's baseline."""
    model = _require_keras(ctx, "predict")
    return lambda arrays: to_host(model.predict(ctx.pack(arrays), batch_size=batch_size, verbose=0))


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
            _tf().saved_model.save(model, str(target))
        return target

    return ctx.cached("saved_model", export)


def _export_takes_verbose(model) -> bool:
    import inspect as pyinspect

    return "verbose" in pyinspect.signature(model.export).parameters


def _saved_model(ctx):
    tf = _tf()
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


def _tflite_model(ctx) -> bytes:
    tf = _tf()
    if ctx.loaded.saved_model_dir is not None:
        return tf.lite.TFLiteConverter.from_saved_model(str(ctx.loaded.saved_model_dir)).convert()
    model = ctx.loaded.model
    if _supports_export_signature(model):
        # Export with the batch axis fixed: Keras 3 LSTMs fail to convert with a dynamic batch.
        fixed = ctx.work_dir / "tflite_source"
        model.export(str(fixed), input_signature=[ctx.tensor_specs(batch=ctx.inputs.batch_size)], verbose=False)
        return tf.lite.TFLiteConverter.from_saved_model(str(fixed)).convert()
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def _supports_export_signature(model) -> bool:
    import inspect as pyinspect

    export = getattr(model, "export", None)
    if export is None:
        return False
    params = pyinspect.signature(export).parameters
    return "input_signature" in params and "verbose" in params


def tflite_interpreter(blob: bytes):
    """LiteRT's interpreter (ai-edge-litert) when installed, else TensorFlow's tf.lite.Interpreter,
    which TensorFlow 2.20 deprecated in LiteRT's favour; the name of the one used."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the deprecation warning, once per run, says nothing new
            return _tf().lite.Interpreter(model_content=blob), "tf.lite.Interpreter"
    return Interpreter(model_content=blob), "LiteRT"


def _tflite(ctx):
    try:
        blob = _tflite_model(ctx)
    except Exception as exc:
        raise NotApplicable(f"TFLite conversion failed: {first_line(exc)}") from exc
    interpreter, _ = tflite_interpreter(blob)
    signatures = interpreter.get_signature_list()
    if not signatures:
        raise NotApplicable("the converted TFLite model has no signature to call")
    key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
    expected = signatures[key]["inputs"]
    arrays = ctx.inputs.arrays
    if set(expected) != set(arrays):
        raise NotApplicable(f"TFLite signature inputs {joined(map(repr, expected))} do not match the model's "
                            f"{joined(map(repr, sorted(arrays)))}")
    _resize_for_batch(interpreter, key, arrays)
    interpreter.allocate_tensors()
    # The fastest way to call it from Python: tensor indices looked up once, then set_tensor,
    # invoke, get_tensor. The signature runner (dicts in and out) costs 2-4x more per call on a
    # small model. The runner is used only to read the indices and dropped at once: while one is
    # alive, invoke() refuses to run.
    runner = interpreter.get_signature_runner(key)
    feeds = [(runner.get_input_details()[name]["index"], arrays[name]) for name in expected]
    outputs = runner.get_output_details()
    # Flattened in output-name order, as to_host flattens every row's dict; sorted once here, so
    # the timed call holds only the interpreter's own work (to_host's sort cost ~3 µs a call).
    fetches = [outputs[name]["index"] for name in sorted(outputs, key=_natural_key)]
    del runner

    def call():
        for index, array in feeds:
            interpreter.set_tensor(index, array)
        interpreter.invoke()
        return [interpreter.get_tensor(index) for index in fetches]  # get_tensor copies to host memory

    return call


def _resize_for_batch(interpreter, key, arrays) -> None:
    """A model converted with a dynamic batch gets batch 1: resize to the inputs used."""
    # Tensor indices by signature name from the signature list, not from a runner: a live
    # runner holds references to the interpreter's buffers, and resizing is then refused.
    indices = interpreter._get_full_signature_list()[key]["inputs"]  # {name: tensor index}
    shapes = {d["index"]: tuple(d["shape"]) for d in interpreter.get_input_details()}
    changed = False
    for name, array in arrays.items():
        if shapes[indices[name]] != array.shape:
            interpreter.resize_tensor_input(indices[name], array.shape)
            changed = True
    if changed:
        interpreter.allocate_tensors()


#: What --strategies chooses from, in the order the data model lists them.
STRATEGIES: List[Strategy] = [
    Strategy(ids.PREDICT, _predict),
    Strategy(ids.PREDICT_COMPILED, _predict_compiled),
    Strategy(ids.PREDICT_ON_BATCH, _predict_on_batch, _predict_on_batch_chunked),
    Strategy(ids.EAGER, _eager_call, _eager_chunked),
    Strategy(ids.TF_FUNCTION, _tf_function, _tf_function_chunked),
    Strategy(ids.CONCRETE, _concrete_function, _concrete_chunked),
    Strategy(ids.XLA, _xla, _xla_chunked),
    Strategy(ids.SAVEDMODEL, _saved_model, _saved_model_chunked),
    # TFLite's interpreter is resized and re-allocated for every new batch size: no chunked twin.
    Strategy(ids.TFLITE, _tflite),
]

BY_KEY = {s.identity.key: s for s in STRATEGIES}
BY_NAME = {s.name: s for s in STRATEGIES}
