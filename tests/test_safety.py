"""Nothing from a model file runs without consent (kdiag/safety.py).

Hostile files are made here: Lambda layers that write a marker file (tf-keras .h5 under legacy mode
and Keras 3, nested in submodels and wrappers), configs naming modules, registered classes and
vocabulary files, and SavedModels that read or write files, call Python or print to a file. Each is
refused with exit 2 and one `kdiag: error:` line, no traceback, no run folder and no marker file. Each
hostile file is also shown to do what it claims when consent is given (--unsafe), so the refusals
cannot pass by accident.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

import kdiag.engine.intake.load
from kdiag.engine.intake import safety
from kdiag.engine.check import compare
from checks import Result, assert_refused, run
from kdiag.errors import KdiagError

REPO = Path(__file__).resolve().parent.parent
SHORT = ["--no-profile", "--budget", "0.01", "--min-calls", "1"]
def run_subprocess(*argv, legacy: bool, cwd: Path) -> Result:
    """`python -m kdiag` in a child process, as a user runs it, with or without TF_USE_LEGACY_KERAS=1."""
    argv = [str(a) for a in argv]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_USE_LEGACY_KERAS": "1" if legacy else "0"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "kdiag", *argv], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)
    out = Path(argv[argv.index("--out") + 1]) if "--out" in argv else None
    return Result(done.returncode, done.stdout, done.stderr, time.perf_counter() - start, out)


def keras_zip_with_config(source: Path, target: Path, change) -> Path:
    """A copy of a .keras archive whose config.json is change(config)."""
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w") as copy:
        for info in archive.infolist():
            body = archive.read(info.filename)
            if info.filename == "config.json":
                body = json.dumps(change(json.loads(body))).encode()
            copy.writestr(info, body)
    return target


def layer_configs(config):
    """Every layer config dict in a model config, nested ones included."""
    stack = [config]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if "class_name" in value and isinstance(value.get("config"), dict):
                yield value
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


# --- the config scanner, on configs written here (no TensorFlow) ------------------


def _layer(class_name, name, module="keras.layers", **config):
    return {"module": module, "class_name": class_name, "config": {"name": name, **config},
            "registered_name": None}


def _model(*layers):
    return {"module": "keras.src.models.functional", "class_name": "Functional",
            "config": {"name": "outer", "layers": list(layers)}, "registered_name": "Functional"}


def _scan(model, allowed=(), training=None):
    return safety.scan_keras_config(safety.KerasConfig(model, training), allowed)


LAMBDA_CODE = {"class_name": "__lambda__", "config": {"code": "4wEAAAA=", "defaults": None, "closure": None}}


@pytest.mark.parametrize("config, kind, words", [
    (_model(_layer("Lambda", "lam", function=LAMBDA_CODE)), "code", ("Lambda layer 'lam'",)),
    (_model(_layer("TimeDistributed", "td", layer=_model(_layer("Lambda", "deep", function=LAMBDA_CODE)))),
     "code", ("'deep' (inside 'td' > 'outer')",)),
    (_model(_layer("Dense", "d", activation=LAMBDA_CODE)), "code", ("serialized Python lambda", "'d'")),
    ({"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "Lambda", "config": {"name": "old", "function": ["4wEAAAA=", None, None],
                                           "function_type": "lambda", "module": "__main__"}}]}},
     "code", ("Lambda layer 'old'",)),
    ({"class_name": "Functional", "config": {"name": "m", "layers": [
        {"class_name": "TFOpLambda", "config": {"name": "w", "function": "io.write_file"}}]}},
     "code", ("tf.io.write_file",)),
    ({"class_name": "Functional", "config": {"name": "m", "layers": [
        {"class_name": "TFOpLambda", "config": {"name": "p", "function": "print"}}]}}, "code", ("tf.print",)),
    (_model(_layer("StringLookup", "lookup", vocabulary="/etc/passwd")), "file",
     ("StringLookup layer 'lookup'", "would read '/etc/passwd' from disk", "set_vocabulary")),
    (_model(_layer("TextVectorization", "tv", vocabulary="/home/u/.ssh/id_rsa")), "file",
     ("TextVectorization", "'/home/u/.ssh/id_rsa'")),
    (_model(_layer("TFSMLayer", "tfsm", filepath="/srv/other_model")), "file", ("TFSMLayer", "/srv/other_model")),
    (_model(_layer("system", "s", module="os")), "custom", ("custom object", "os.system")),
    (_model({"module": None, "class_name": "Doubler", "config": {"name": "dbl"}, "registered_name": "pkg>Doubler"}),
     "custom", ("'pkg>Doubler'",)),
    ({"class_name": "Functional", "config": {"name": "m", "layers": [
        {"class_name": "pkg>Doubler", "config": {"name": "dbl"}}]}}, "custom", ("'pkg>Doubler'",)),
    (_model(_layer("Dense", "d", activation={"module": "builtins", "class_name": "function",
                                             "config": "pkg>swish2", "registered_name": "function"})),
     "custom", ("'pkg>swish2'",)),
    (_model(_layer("Dense", "d", activation={"module": "keras.utils", "class_name": "function",
                                             "config": "get_file", "registered_name": "function"})),
     "custom", ("get_file",)),
    (_model(_layer("Dense", "d", activation={"module": "subprocess", "class_name": "function",
                                             "config": "getoutput", "registered_name": "function"})),
     "custom", ("subprocess.getoutput",)),
], ids=["lambda", "lambda-in-wrapped-submodel", "lambda-activation", "tf-keras-marshalled-lambda",
        "tfoplambda-write-file", "tfoplambda-print", "stringlookup-vocabulary-file", "textvectorization-file",
        "tfsmlayer", "module-outside-keras", "registered-class", "legacy-registered-class", "registered-function",
        "keras-non-modeling-function", "function-from-another-module"])
def test_scanner_refuses(config, kind, words):
    findings = _scan(config)
    assert findings and findings[0].kind == kind, findings
    line = safety.refusal("m.keras", findings).message
    for word in words:
        assert word in line, line
    if kind == "file":  # its own message: not the Lambda one, and it says how to allow it
        assert "Lambda layer" not in line and "--unsafe" in line


def test_scanner_passes_keras_builtins():
    config = _model(
        _layer("TFOpLambda", "add", function="__operators__.add"),
        _layer("TFOpLambda", "sum", function="math.reduce_sum"),
        _layer("Dense", "d", activation="relu", kernel_initializer={
            "module": "keras.initializers", "class_name": "GlorotUniform", "config": {}, "registered_name": None}),
        _layer("Dense", "e", activation={"module": "keras.activations", "class_name": "function",
                                         "config": "gelu", "registered_name": "function"}),
        _layer("StringLookup", "lookup", vocabulary=["a", "b"]),
        {"class_name": "__keras_tensor__", "config": {"shape": [None, 3], "dtype": "float32"}},
    )
    training = {"optimizer_config": {"class_name": "Custom>Adam", "config": {}}, "loss": "mse"}
    assert _scan(config, training=training) == []


def test_custom_objects_vouch_only_for_the_names_they_define():
    config = _model({"module": None, "class_name": "Doubler", "config": {"name": "dbl"},
                     "registered_name": "pkg>Doubler"},
                    _layer("Lambda", "lam", function=LAMBDA_CODE))
    findings = _scan(config, allowed={"Doubler"})
    assert {f.kind for f in findings} == {"code"}  # the class is vouched for; the bytecode is not


def test_training_config_lambdas_are_code():
    assert [f.kind for f in _scan(_model(), training={"loss": LAMBDA_CODE})] == ["code"]


def test_deeply_nested_config_does_not_exhaust_the_stack():
    config = _model(_layer("Lambda", "bottom", function=LAMBDA_CODE))
    for depth in range(5000):
        config = {"class_name": "Sequential", "config": {"name": f"s{depth}", "layers": [config]}}
    findings = _scan(config)
    assert findings[0].kind == "code"
    line = safety.refusal("deep.h5", findings).message
    assert "'bottom' (inside ... > 's1' > 's0' > 'outer')" in line and len(line) < 300, line


@pytest.mark.parametrize("message, words", [
    ("Requested the loading of a vocabulary file outside of the model archive. ... Vocabulary file: '/etc/passwd'",
     ("would read '/etc/passwd'", "set_vocabulary")),
    ("Requested the deserialization of a `Lambda` layer whose `function` is a Python lambda. ... `safe_mode=False`",
     ("Lambda layer", "--unsafe")),
    ("Requested the deserialization of a `TFSMLayer`, which loads an external SavedModel. `safe_mode=False`",
     ("TFSMLayer", "--unsafe")),
    ("Could not locate class 'Doubler'. Make sure custom classes are decorated", ("custom object", "--custom-objects")),
])
def test_keras_own_refusals_are_worded_by_safety(message, words):
    """Keras' safe_mode is the second lock: its refusals get the same wording (the vocabulary one used
    to be reported as a Lambda layer)."""
    line = safety.explain_keras_refusal("m.keras", ValueError(message)).message
    for word in words:
        assert word in line, line
    assert safety.explain_keras_refusal("m.keras", ValueError("shapes (3,) and (4,) differ")) is None


# --- Keras files made with Keras --------------------------------------------------


def _marker_lambda(layers, marker: Path):
    """A Lambda whose code appends to `marker` each time Keras builds or calls it."""
    return layers.Lambda(lambda x, path=str(marker): (open(path, "a").close(), x)[1], name="touch")


@pytest.fixture(scope="module")
def legacy_lambda_files(tmp_path_factory):
    """tf-keras .h5 files whose Lambda writes a marker file: at top level, and inside a submodel."""
    tf_keras = pytest.importorskip("tf_keras")
    root = tmp_path_factory.mktemp("legacy")
    marker = root / "marker"
    inputs = tf_keras.Input((3,))
    tf_keras.Model(inputs, _marker_lambda(tf_keras.layers, marker)(inputs)).save(root / "flat.h5")
    inner_in = tf_keras.Input((3,))
    inner = tf_keras.Model(inner_in, _marker_lambda(tf_keras.layers, marker)(tf_keras.layers.Dense(3)(inner_in)),
                           name="inner")
    outer_in = tf_keras.Input((3,))
    tf_keras.Model(outer_in, inner(tf_keras.layers.Dense(3)(outer_in)), name="outer").save(root / "nested.h5")
    marker.unlink()  # building the models ran the Lambdas once
    return root, marker


@pytest.mark.slow
@pytest.mark.parametrize("legacy", [True, False], ids=["TF_USE_LEGACY_KERAS=1", "keras3"])
@pytest.mark.parametrize("name, words", [("flat.h5", ("Lambda layer 'touch'",)),
                                          ("nested.h5", ("Lambda layer 'touch' (inside 'inner')",))])
def test_tf_keras_h5_lambda_writing_a_marker_is_refused(legacy_lambda_files, tmp_path, legacy, name, words):
    root, marker = legacy_lambda_files
    result = run_subprocess("inspect", root / name, "--out", tmp_path / "run", *SHORT, legacy=legacy, cwd=tmp_path)
    assert_refused(result, name, *words, "--unsafe", marker=marker)


@pytest.mark.slow
def test_tf_keras_h5_lambda_does_write_its_marker_with_unsafe(legacy_lambda_files, monkeypatch):
    """The fixture is what it claims: with consent, legacy mode runs the Lambda's code."""
    root, marker = legacy_lambda_files
    monkeypatch.setenv("TF_USE_LEGACY_KERAS", "1")
    try:
        loaded = kdiag.engine.intake.load.load_path(root / "nested.h5", unsafe=True)
        assert type(loaded.model).__module__.startswith("tf_keras")
        assert marker.exists()
    finally:
        marker.unlink(missing_ok=True)


@pytest.mark.slow
def test_tfoplambda_calling_write_file_is_refused_in_legacy_mode(tmp_path, monkeypatch):
    """tf-keras resolves a TFOpLambda's `function` among all of tf.*: rewritten to io.write_file, the
    saved `x + 1` would call tf.io.write_file while the model is rebuilt."""
    tf_keras = pytest.importorskip("tf_keras")
    import h5py

    inputs = tf_keras.Input((3,))
    tf_keras.Model(inputs, inputs + 1.0).save(tmp_path / "op.h5")
    with h5py.File(tmp_path / "op.h5", "r+") as handle:
        config = json.loads(handle.attrs["model_config"])
        ops = [layer for layer in layer_configs(config) if layer["class_name"] == "TFOpLambda"]
        assert ops and ops[0]["config"]["function"] == "__operators__.add"
        ops[0]["config"]["function"] = "io.write_file"
        handle.attrs["model_config"] = json.dumps(config)
    monkeypatch.setenv("TF_USE_LEGACY_KERAS", "1")
    with mock.patch.object(kdiag.engine.intake.load, "_keras_load", side_effect=AssertionError("Keras saw the file")):
        assert_refused(run("inspect", tmp_path / "op.h5", "--out", tmp_path / "run", *SHORT),
                       "op.h5", "tf.io.write_file", "--unsafe")


@pytest.fixture(scope="module")
def keras3_files(tmp_path_factory, keras):
    root = tmp_path_factory.mktemp("keras3")
    marker = root / "marker"
    inner_in = keras.Input((3,))
    inner = keras.Model(inner_in, _marker_lambda(keras.layers, marker)(inner_in), name="inner")
    sequence = keras.Input((2, 3))
    wrapped = keras.layers.TimeDistributed(inner, name="per_step")(sequence)
    keras.Model(sequence, wrapped).save(root / "wrapped.keras")

    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    inputs = keras.Input((3,), name="x")
    keras.Model(inputs, Doubler(name="doubler")(inputs)).save(root / "custom.keras")
    words = keras.Input((1,), dtype="string")
    lookup = keras.layers.StringLookup(vocabulary=["a", "b"], name="lookup")
    keras.Model(words, lookup(words)).save(root / "vocab.keras")  # the vocabulary travels in the archive
    marker.unlink(missing_ok=True)
    return root, marker


@pytest.mark.slow
def test_keras3_lambda_in_a_wrapped_submodel_is_refused_before_keras_sees_it(keras3_files, tmp_path):
    root, marker = keras3_files
    with mock.patch.object(kdiag.engine.intake.load, "_keras_load", side_effect=AssertionError("Keras saw the file")):
        assert_refused(run("inspect", root / "wrapped.keras", "--out", tmp_path / "run", *SHORT),
                       "Lambda layer 'touch' (inside 'per_step' > 'inner')", "--unsafe", marker=marker)


@pytest.mark.slow
def test_custom_class_is_refused_then_loads_with_custom_objects(keras3_files, tmp_path):
    root, _ = keras3_files
    with mock.patch.object(kdiag.engine.intake.load, "_keras_load", side_effect=AssertionError("Keras saw the file")):
        assert_refused(run("inspect", root / "custom.keras", "--out", tmp_path / "refused", *SHORT),
                       "custom object", "Doubler", "--custom-objects")
    module = tmp_path / "layers.py"
    module.write_text("import keras\n\n\nclass Doubler(keras.layers.Layer):\n"
                      "    def call(self, x):\n        return x * 2\n")
    code, stdout, stderr, _, _ = run("inspect", root / "custom.keras", "--custom-objects", module,
                                     "--out", tmp_path / "run", "--strategies", "predict_on_batch",
                                     "--format", "json", *SHORT)
    assert code == 0, stderr
    assert json.loads(stdout)["strategies"][0]["available"]


@pytest.mark.slow
@pytest.mark.parametrize("vocabulary", ["/etc/passwd", "../../secrets/vocab.txt"])
def test_vocabulary_file_outside_the_archive_has_its_own_refusal(keras3_files, tmp_path, vocabulary):
    """Keras 3 keeps a vocabulary inside the .keras archive; a config naming a path would make the layer
    read it from disk. Refused with its own message (the issue saw 'contains a Lambda layer')."""
    root, _ = keras3_files

    def point_at_a_file(config):
        lookups = [layer for layer in layer_configs(config) if layer["class_name"] == "StringLookup"]
        assert lookups
        lookups[0]["config"]["vocabulary"] = vocabulary
        return config

    path = keras_zip_with_config(root / "vocab.keras", tmp_path / "vocab.keras", point_at_a_file)
    with mock.patch.object(kdiag.engine.intake.load, "_keras_load", side_effect=AssertionError("Keras saw the file")):
        line = assert_refused(run("inspect", path, "--out", tmp_path / "run", *SHORT),
                              "StringLookup layer 'lookup'", f"would read {vocabulary!r} from disk", "--unsafe",
                              "set_vocabulary")
    assert "Lambda" not in line.split(".")[0]


# --- SavedModels ------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_savedmodels(tmp_path_factory, tf):
    """SavedModels whose serving function writes a file, reads one, calls Python or prints to a file."""
    root = tmp_path_factory.mktemp("savedmodels")
    marker, secret, printed = root / "marker", root / "secret.txt", root / "printed.txt"
    secret.write_text("not for the model\n")
    vocab = root / "vocab.txt"
    vocab.write_text("a\nb\nc\n")
    spec = tf.TensorSpec((None, 2), tf.float32, name="x")

    class Serve(tf.Module):
        def __init__(self, body):
            super().__init__()
            self.body = body

        @tf.function(input_signature=[spec])
        def serve(self, x):
            return self.body(self, x)

    def write(self, x):
        with tf.control_dependencies([tf.io.write_file(str(marker), "written by the model")]):
            return {"y": tf.identity(x)}

    def read(self, x):
        return {"y": x + tf.cast(tf.strings.length(tf.io.read_file(str(secret))), tf.float32)}

    def python(self, x):
        return {"y": tf.py_function(lambda t: t * 2, [x], tf.float32)}

    def print_to_file(self, x):
        with tf.control_dependencies([tf.print(x, output_stream=f"file://{printed}")]):
            return {"y": tf.identity(x)}

    def text(self, x):
        return {"label": tf.strings.join(["class_", tf.strings.as_string(tf.round(x))])}

    def lookup(self, x):
        return {"y": x * tf.cast(self.table.lookup(tf.constant("b")), tf.float32)}

    def table_from(filename):
        return tf.lookup.StaticHashTable(tf.lookup.TextFileInitializer(
            filename, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER), -1)

    def const_path_table(self, x):  # a table read from a path written into the graph, not an asset
        table = tf.raw_ops.HashTableV2(key_dtype=tf.string, value_dtype=tf.int64, shared_name="hostile")
        init = tf.raw_ops.InitializeTableFromTextFileV2(table_handle=table, filename=tf.constant(str(secret)),
                                                        key_index=-2, value_index=-1)
        with tf.control_dependencies([init]):
            found = tf.raw_ops.LookupTableFindV2(table_handle=table, keys=tf.constant("b"),
                                                 default_value=tf.constant(-1, tf.int64))
        return {"y": x * tf.cast(found, tf.float32)}

    bodies = {"write": write, "read": read, "python": python, "print_to_file": print_to_file, "text": text,
              "asset_table": lookup, "const_path_table": const_path_table}
    for name, body in bodies.items():
        module = Serve(body)
        if name == "asset_table":
            module.vocabulary = tf.saved_model.Asset(str(vocab))
            module.table = table_from(module.vocabulary)
        tf.saved_model.save(module, str(root / name), signatures={"serving_default": module.serve})
    assert not marker.exists() and not printed.exists()  # tracing alone runs no graph op
    return root, marker, printed


@pytest.mark.slow
@pytest.mark.parametrize("name, op", [("write", "WriteFile"), ("read", "ReadFile"), ("python", "EagerPyFunc"),
                                      ("print_to_file", "PrintV2 to file://"),
                                      ("const_path_table", "InitializeTableFromTextFileV2")])
def test_savedmodel_with_non_computation_ops_is_refused(hostile_savedmodels, tmp_path, name, op):
    root, marker, printed = hostile_savedmodels
    with mock.patch.object(kdiag.engine.intake.load, "_load_saved_model", side_effect=AssertionError("TensorFlow loaded it")):
        line = assert_refused(run("inspect", root / name, "--out", tmp_path / "run", *SHORT),
                              name, op, "not computation", "--unsafe", marker=marker)
    assert not printed.exists()
    assert "__inference_serve" in line  # names the function holding the op


@pytest.mark.slow
def test_savedmodel_writing_a_file_does_write_it_with_unsafe(hostile_savedmodels, tmp_path):
    """The fixture is what it claims: with consent, kdiag runs the graph and the file is written."""
    root, marker, _ = hostile_savedmodels
    try:
        code, _, stderr, _, _ = run("inspect", root / "write", "--unsafe", "--out", tmp_path / "run", *SHORT)
        assert code == 0, stderr
        assert marker.read_text() == "written by the model"
    finally:
        marker.unlink(missing_ok=True)


@pytest.mark.slow
def test_savedmodel_with_a_string_output_is_reported_without_a_traceback(hostile_savedmodels, tmp_path):
    root, _, _ = hostile_savedmodels
    code, stdout, stderr, _, _ = run("inspect", root / "text", "--out", tmp_path / "run", "--format", "json", *SHORT)
    assert code == 0, stderr
    served = next(s for s in json.loads(stdout)["strategies"] if s["name"] == "SavedModel serve")
    assert served["available"] and served["outputs"]["matches"], served


@pytest.mark.slow
def test_legitimate_savedmodels_pass_the_scan(hostile_savedmodels, model_files, tmp_path, keras):
    """Keras exports carry SaveV2/RestoreV2/MergeV2Checkpoints in their saver functions, and a lookup
    table reads its vocabulary from the SavedModel's own assets: none of that is refused."""
    root, _, _ = hostile_savedmodels
    assert safety.scan_saved_model(model_files / "tiny_savedmodel").refused == {}
    assert safety.scan_saved_model(root / "asset_table").refused == {}
    code, _, stderr, _, _ = run("inspect", model_files / "tiny_savedmodel", "--out", tmp_path / "run", *SHORT)
    assert code == 0, stderr


@pytest.mark.slow
def test_damaged_saved_model_pb_is_refused_with_one_line(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "saved_model.pb").write_bytes(b"\x0a\xff\xff\xff\xff not a protocol buffer")
    with pytest.raises(KdiagError, match="saved_model.pb is damaged"):
        safety.check_saved_model(tmp_path / "broken")


def test_unsafe_skips_the_scans(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "saved_model.pb").write_bytes(b"garbage")
    safety.check_saved_model(tmp_path / "broken", unsafe=True)  # nothing is read
    safety.check_keras_file(tmp_path / "missing.keras", unsafe=True)


def test_gradients_of_allowed_ops_are_computation():
    assert safety.op_is_computation("ReluGrad") and safety.op_is_computation("FusedBatchNormGradV3")
    assert not safety.op_is_computation("WriteFileGrad")
    assert not safety.op_is_computation("ReadFile") and not safety.op_is_computation("PyFuncStateless")


# --- the outputs check on values that are not numbers ------------------------------


def test_text_outputs_are_compared_for_equality():
    labels = np.array([b"cat", b"dog"], dtype=object)
    assert compare("predict", [labels], [np.array(["cat", "dog"])]).matches
    differing = compare("predict", [labels], [np.array([b"cat", b"cow"], dtype=object)])
    assert not differing.matches and "1 of 2 differ" in differing.detail


def test_text_against_numbers_is_not_comparable():
    result = compare("predict", [np.array([b"cat"], dtype=object)], [np.array([1.0], dtype="float32")])
    assert not result.matches and "not comparable" in result.detail


def test_complex_and_boolean_outputs_are_compared():
    assert compare("predict", [np.array([1 + 2j])], [np.array([1 + 2j])]).matches
    assert not compare("predict", [np.array([1 + 2j])], [np.array([1 - 2j])]).matches
    assert compare("predict", [np.array([True, False])], [np.array([True, False])]).matches
