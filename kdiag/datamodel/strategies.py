"""Who the strategies are: keys, display names, snippets. The only copy.

The engine (`kdiag.engine.runtimes.strategies`) maps each key to the code that prepares the call;
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
    # What leaving Keras for this runtime takes ("needs conversion"); "" for a call on the model object.
    leaving_keras: str = ""


# Every Python snippet runs as pasted, given only `model` (the loaded Keras model) and `x`
# (the batch as the user holds it: a NumPy array, or a list or dict of them), under Keras 3
# and tf-keras alike: it imports what it uses, creates the files it reads, and leaves the
# outputs in `y`. Its last paragraph (after the last blank line) is one call, the rest is
# set-up done once: repro.py times that paragraph alone. tests/test_snippets.py runs each
# snippet on every built-in example.


def split_snippet(snippet: str) -> Tuple[str, str]:
    """(set-up, one call): a Python snippet's last paragraph is the call, everything before it runs once."""
    setup, _, call = snippet.strip("\n").rpartition("\n\n")
    return setup, call


#: The input signature every traced snippet builds from `x`: the batch axis None, so one graph
#: serves every batch size (a fixed shape would trace again for each new batch size).
_SIGNATURE = """\
spec = tf.nest.map_structure(
    lambda a: tf.TensorSpec((None,) + tuple(a.shape[1:]), a.dtype), x)"""

#: The longest line of any snippet: each fits an 80-column terminal unwrapped, and a GitHub issue
#: column (report.md) without scrolling. tests/test_snippets.py holds every snippet to it.
SNIPPET_WIDTH = 78

# autograph=False: the lambda only calls the model, so there is nothing for AutoGraph to
# convert; kdiag's own tf.function is built the same way.
TF_FUNCTION_SNIPPET = f"""\
import tensorflow as tf

{_SIGNATURE}
serve = tf.function(lambda x: model(x, training=False),
                    input_signature=[spec], autograph=False)

y = serve(x)"""

CONCRETE_SNIPPET = f"""\
import tensorflow as tf

{_SIGNATURE}
serve = tf.function(lambda x: model(x, training=False),
                    input_signature=[spec], autograph=False)
fn = serve.get_concrete_function()
# A concrete function takes tensors, not arrays: convert the batch once.
x_t = tf.nest.map_structure(tf.constant, x)

y = fn(x_t)"""

XLA_SNIPPET = f"""\
import tensorflow as tf

{_SIGNATURE}
serve = tf.function(lambda x: model(x, training=False),
                    input_signature=[spec], autograph=False, jit_compile=True)

y = serve(x)  # the first call compiles with XLA"""

SAVEDMODEL_SNIPPET = """\
import tempfile
import tensorflow as tf

export_dir = tempfile.mkdtemp()
model.export(export_dir)  # its `serve` endpoint takes any batch size
reloaded = tf.saved_model.load(export_dir)

y = reloaded.serve(x)"""

TFLITE_SNIPPET = """\
import inspect
import tempfile
import tensorflow as tf
try:  # LiteRT: pip install ai-edge-litert
    from ai_edge_litert.interpreter import Interpreter
except ImportError:  # deprecated since TensorFlow 2.20 in favour of LiteRT
    Interpreter = tf.lite.Interpreter

# Convert with the batch axis fixed to x's (Keras 3 LSTMs convert only so),
# each input named so that its tensor can be found in the converted model.
flat = tf.nest.flatten(x)
spec = tf.nest.pack_sequence_as(x, [
    tf.TensorSpec(a.shape, a.dtype, name=f"input_{i}")
    for i, a in enumerate(flat)])
export_dir = tempfile.mkdtemp()
if "input_signature" in inspect.signature(model.export).parameters:  # Keras 3
    model.export(export_dir, input_signature=[spec], verbose=False)
else:  # tf-keras, whose export() takes no signature
    serve = tf.function(lambda x: model(x, training=False),
                        input_signature=[spec], autograph=False)
    tf.saved_model.save(model, export_dir,
                        signatures=serve.get_concrete_function())
converter = tf.lite.TFLiteConverter.from_saved_model(export_dir)
interpreter = Interpreter(model_content=converter.convert())
interpreter.allocate_tensors()
# Tensor indices looked up once; each call is then set_tensor, invoke,
# get_tensor. The signature runners are dropped at once: while one is
# alive, invoke() refuses to run.
inputs = interpreter.get_signature_runner().get_input_details()
outputs = interpreter.get_signature_runner().get_output_details()
input_indices = [inputs[f"input_{i}"]["index"] for i in range(len(flat))]
output_indices = {name: d["index"] for name, d in outputs.items()}

for index, array in zip(input_indices, tf.nest.flatten(x)):
    interpreter.set_tensor(index, array)
interpreter.invoke()
y = {name: interpreter.get_tensor(i) for name, i in output_indices.items()}"""

#: A whole program: the C API has no notion of `model` or `x`, so it loads the exported SavedModel
#: and builds its own input. The tensor names differ per model; saved_model_cli lists them.
CPP_SNIPPET = """\
// The SavedModel written by model.export("exported"), called through the
// TensorFlow C API as kdiag's cpp_baseline/ does. Build it against the
// tensorflow wheel's own library, in a shell:
// TF="$(python3 -c 'import tensorflow as tf; print(tf.sysconfig.get_lib())')"
// LIBS="-l:libtensorflow_cc.so.2 -l:libtensorflow_framework.so.2"
// c++ -std=c++17 run.cc -o run -I"$TF/include" -L"$TF" -Wl,-rpath,"$TF" $LIBS
#include <tensorflow/c/c_api.h>

#include <cstdint>
#include <cstdio>

// The names and input shape of kdiag's tiny example (one float32 input x,
// batch 32 x 4 features), as Keras 3 exports it; list your model's with
//   saved_model_cli show --all --dir exported
const char* kInput = "serving_default_x";
const char* kOutput = "StatefulPartitionedCall_1";
const int64_t kDims[] = {32, 4};

static bool Check(TF_Status* status) {
  if (TF_GetCode(status) == TF_OK) return true;
  std::fprintf(stderr, "%s\\n", TF_Message(status));
  return false;
}

int main() {
  TF_Status* status = TF_NewStatus();
  TF_SessionOptions* opts = TF_NewSessionOptions();
  TF_Graph* graph = TF_NewGraph();
  const char* tags[] = {"serve"};
  TF_Session* session = TF_LoadSessionFromSavedModel(
      opts, nullptr, "exported", tags, 1, graph, nullptr, status);
  if (!Check(status)) return 1;

  const int64_t count = kDims[0] * kDims[1];
  TF_Tensor* x = TF_AllocateTensor(TF_FLOAT, kDims, 2, count * sizeof(float));
  float* data = static_cast<float*>(TF_TensorData(x));
  for (int64_t i = 0; i < count; ++i) data[i] = 0.5f;  // your batch here

  TF_Output in{TF_GraphOperationByName(graph, kInput), 0};
  TF_Output out{TF_GraphOperationByName(graph, kOutput), 0};
  if (in.oper == nullptr || out.oper == nullptr) {
    std::fprintf(stderr, "no operation %s or %s in this SavedModel\\n", kInput,
                 kOutput);
    return 1;
  }
  TF_Tensor* y = nullptr;
  // Synchronous: y is in host memory when it returns.
  TF_SessionRun(session, nullptr, &in, &x, 1, &out, &y, 1, nullptr, 0,
                nullptr, status);
  if (!Check(status)) return 1;
  std::printf("y[0] = %g\\n", static_cast<const float*>(TF_TensorData(y))[0]);

  TF_DeleteTensor(y);
  TF_DeleteTensor(x);
  TF_CloseSession(session, status);
  TF_DeleteSession(session, status);
  TF_DeleteSessionOptions(opts);
  TF_DeleteGraph(graph);
  TF_DeleteStatus(status);
  return 0;
}"""

#: Where the two predict scenarios' models come from; in a comment, since `model` is given.
_LOAD_NOTE = ("# model = keras.models.load_model(path, compile=False): inference needs\n"
              "# no optimizer, loss or metrics; kdiag's `predict` was timed so loaded.\n")

PREDICT = StrategyIdentity(
    "predict", "predict", _LOAD_NOTE + "y = model.predict(x, verbose=0)",
    "Keras predict, model loaded without compile()")
PREDICT_COMPILED = StrategyIdentity(
    "predict-compiled", "predict (compiled)",
    "# model = keras.models.load_model(path): compiled with the training\n"
    "# config saved in the file\n"
    "y = model.predict(x, verbose=0)", "Keras predict after compile()")
PREDICT_ON_BATCH = StrategyIdentity(
    "predict_on_batch", "predict_on_batch", "y = model.predict_on_batch(x)", "one batch, no data pipeline")
EAGER = StrategyIdentity(
    "eager", "model(x) eager", "y = model(x, training=False)", "direct call, eager op-by-op execution")
TF_FUNCTION = StrategyIdentity(
    "tf-function", "tf.function", TF_FUNCTION_SNIPPET, "direct call compiled to a graph, called with NumPy arrays")
CONCRETE = StrategyIdentity(
    "concrete", "concrete function", CONCRETE_SNIPPET,
    "the traced graph called on tensors, no dispatch or conversion")
XLA = StrategyIdentity("xla", "XLA (jit_compile)", XLA_SNIPPET, "graph compiled by XLA")
SAVEDMODEL = StrategyIdentity(
    "savedmodel", "SavedModel serve", SAVEDMODEL_SNIPPET,
    "the exported SavedModel's serving endpoint", needs_keras=False, leaving_keras="needs an export")
TFLITE = StrategyIdentity(
    "tflite", "TFLite", TFLITE_SNIPPET, "TFLite interpreter (XNNPACK on CPU)", needs_keras=False,
    leaving_keras="needs conversion")
#: Not selectable with --strategies: `--cpp` adds it, timed in its own process.
CPP = StrategyIdentity(
    "cpp", "C++ (TF C API)", CPP_SNIPPET, "the exported SavedModel through TF_SessionRun, from cpp_baseline/",
    needs_keras=False, language="cpp", leaving_keras="needs a C++ program")

#: What --strategies chooses from, in the order they are timed and listed.
PYTHON_STRATEGIES: Tuple[StrategyIdentity, ...] = (
    PREDICT, PREDICT_COMPILED, PREDICT_ON_BATCH, EAGER, TF_FUNCTION, CONCRETE, XLA, SAVEDMODEL, TFLITE)
ALL_STRATEGIES: Tuple[StrategyIdentity, ...] = PYTHON_STRATEGIES + (CPP,)

BY_KEY: Dict[str, StrategyIdentity] = {s.key: s for s in PYTHON_STRATEGIES}
BY_NAME: Dict[str, StrategyIdentity] = {s.name: s for s in ALL_STRATEGIES}

# Groups that findings compare, by display name.
#: The three kinds of advice. Drop-in fixes: the same process and the same model object, one call
#: changed. Runtime changes: leaving Keras (an export, a conversion, a program in another language).
#: Tuning (threads, batch size) changes no call: findings of their own.
DROP_IN_FIXES = (PREDICT_ON_BATCH.name, TF_FUNCTION.name, CONCRETE.name, XLA.name)
RUNTIME_CHANGES = (SAVEDMODEL.name, TFLITE.name, CPP.name)
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
