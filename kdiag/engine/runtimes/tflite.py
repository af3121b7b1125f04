"""The model converted to TFLite, called through the interpreter's fastest Python path."""

from __future__ import annotations

from kdiag.datamodel import strategies as ids
from kdiag.engine.intake.limits import StrategyCost
from kdiag.engine.runtimes.base import Strategy, natural_key, tf_module
from kdiag.errors import NotApplicable, first_line
from kdiag.sanitize import joined


def tflite_model(ctx) -> bytes:
    tf = tf_module()
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
            return tf_module().lite.Interpreter(model_content=blob), "tf.lite.Interpreter"
    return Interpreter(model_content=blob), "LiteRT"


def prepare(ctx):
    try:
        blob = tflite_model(ctx)
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
    fetches = [outputs[name]["index"] for name in sorted(outputs, key=natural_key)]
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


# It exports once more, then the converter freezes the variables into graph constants, lowers them
# to MLIR and serialises a flatbuffer (about three copies at the peak); the flatbuffer and XNNPACK's
# repacked weights stay while the interpreter lives (two copies), and the interpreter has its own
# input tensors. The interpreter is resized and re-allocated for every new batch size: no chunked twin.
STRATEGY = Strategy(ids.TFLITE, prepare, cost=StrategyCost(2, 3, 1))
