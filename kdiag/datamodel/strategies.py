"""Who the strategies are: keys, display names, snippets. The only copy.

The engine (`kdiag.engine.strategies`) maps each key to the code that prepares the call;
everything that shows or groups strategies (the CLI's choices, findings, renderers,
`kdiag compare`) reads the names from here, so no copy can drift.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Tuple


@dataclasses.dataclass(frozen=True)
class StrategyIdentity:
    key: str  # what --strategies takes
    name: str  # what reports show; the plain predict is exactly "predict"
    snippet: str  # what a user writes to call the model this way
    summary: str
    needs_keras: bool = True  # False: also runs on a plain SavedModel
    language: str = "python"  # of the snippet


TF_FUNCTION_SNIPPET = """\
serve = tf.function(lambda x: model(x, training=False),
                    input_signature=[tf.TensorSpec(x.shape[1:] with None batch, x.dtype)])
serve(x)"""

CPP_SNIPPET = """\
TF_Graph* graph = TF_NewGraph();
const char* tags[] = {"serve"};
TF_Session* session = TF_LoadSessionFromSavedModel(
    opts, nullptr, "saved_model_dir", tags, 1, graph, nullptr, status);
TF_Output in{TF_GraphOperationByName(graph, "serving_default_x"), 0};
TF_Output out{TF_GraphOperationByName(graph, "StatefulPartitionedCall_1"), 0};
TF_Tensor* result = nullptr;
TF_SessionRun(session, nullptr, &in, &x, 1, &out, &result, 1,
              nullptr, 0, nullptr, status);  // synchronous: result is in host memory
const float* y = static_cast<const float*>(TF_TensorData(result));"""

PREDICT = StrategyIdentity(
    "predict", "predict", "model = keras.models.load_model(path, compile=False)\nmodel.predict(x, verbose=0)",
    "Keras predict, model loaded without compile()")
PREDICT_COMPILED = StrategyIdentity(
    "predict-compiled", "predict (compiled)",
    "model = keras.models.load_model(path)  # compiled\nmodel.predict(x, verbose=0)", "Keras predict after compile()")
PREDICT_ON_BATCH = StrategyIdentity(
    "predict_on_batch", "predict_on_batch", "model.predict_on_batch(x)", "one batch, no data pipeline")
EAGER = StrategyIdentity(
    "eager", "model(x) eager", "model(x, training=False)", "direct call, eager op-by-op execution")
TF_FUNCTION = StrategyIdentity(
    "tf-function", "tf.function", TF_FUNCTION_SNIPPET, "direct call compiled to a graph, called with NumPy arrays")
CONCRETE = StrategyIdentity(
    "concrete", "concrete function", "fn = serve.get_concrete_function()\nx_t = tf.constant(x)\nfn(x_t)",
    "the traced graph called on tensors, no dispatch or conversion")
XLA = StrategyIdentity(
    "xla", "XLA (jit_compile)",
    "serve = tf.function(lambda x: model(x, training=False), jit_compile=True,\n"
    "                    input_signature=[...])\nserve(x)", "graph compiled by XLA")
SAVEDMODEL = StrategyIdentity(
    "savedmodel", "SavedModel serve",
    "model.export('exported')\nreloaded = tf.saved_model.load('exported')\nreloaded.serve(x)",
    "the exported SavedModel's serving endpoint", needs_keras=False)
TFLITE = StrategyIdentity(
    "tflite", "TFLite",
    "blob = tf.lite.TFLiteConverter.from_saved_model('exported').convert()\n"
    "runner = tf.lite.Interpreter(model_content=blob).get_signature_runner()\n"
    "runner(x=x)", "TFLite interpreter (XNNPACK on CPU)", needs_keras=False)
#: Not selectable with --strategies: `--cpp` adds it, timed in its own process.
CPP = StrategyIdentity(
    "cpp", "C++ (TF C API)", CPP_SNIPPET, "the exported SavedModel through TF_SessionRun, from cpp_baseline/",
    needs_keras=False, language="cpp")

#: What --strategies chooses from, in the order they are timed and listed.
PYTHON_STRATEGIES: Tuple[StrategyIdentity, ...] = (
    PREDICT, PREDICT_COMPILED, PREDICT_ON_BATCH, EAGER, TF_FUNCTION, CONCRETE, XLA, SAVEDMODEL, TFLITE)
ALL_STRATEGIES: Tuple[StrategyIdentity, ...] = PYTHON_STRATEGIES + (CPP,)

BY_KEY: Dict[str, StrategyIdentity] = {s.key: s for s in PYTHON_STRATEGIES}
BY_NAME: Dict[str, StrategyIdentity] = {s.name: s for s in ALL_STRATEGIES}

# Groups that findings compare, by display name.
#: What may replace predict for a batch already in memory.
DIRECT_PATHS = (PREDICT_ON_BATCH.name, TF_FUNCTION.name, CONCRETE.name)
#: What may replace an eager call.
GRAPH_PATHS = (TF_FUNCTION.name, CONCRETE.name)
#: Ways of calling the Keras model itself.
KERAS_PATHS = (PREDICT.name, PREDICT_COMPILED.name, PREDICT_ON_BATCH.name, EAGER.name, TF_FUNCTION.name,
               CONCRETE.name)
#: Other runtimes for a compute-bound model.
COMPUTE_ALTERNATIVES = (XLA.name, TFLITE.name)
#: The fastest ways to run the graph kdiag measures: no Keras, no TF Python.
FLOORS = (TFLITE.name, CPP.name)
#: predict before and after compile(): per-call tracing there is predict's own (tf.data map functions).
PREDICT_SCENARIOS = (PREDICT.name, PREDICT_COMPILED.name)
#: Reference for the outputs check, in order of preference.
REFERENCE_ORDER = (PREDICT.name, SAVEDMODEL.name)
