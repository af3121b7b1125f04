"""Every format loads, with its input signature; multi-input and dict models get the right inputs."""

import numpy as np
import pytest

from kdiag.errors import KdiagError
from kdiag.engine.intake.load import load_example, load_path
from kdiag.api import inspect

from conftest import FAST

pytestmark = pytest.mark.slow


def test_keras_file_keeps_its_training_config(model_files):
    loaded = load_path(model_files / "tiny.keras")
    assert loaded.format == "keras"
    assert [(s.name, s.shape, s.dtype) for s in loaded.input_specs] == [("x", (None, 4), "float32")]
    assert "training config saved in the file" in loaded.compile_config
    compiled = loaded.compiled_factory()
    assert compiled.optimizer is not None and compiled.optimizer.name == "adam"
    assert getattr(loaded.model, "optimizer", None) is None  # the "predict" instance stays uncompiled


def test_h5_without_training_config_states_the_default(model_files):
    loaded = load_path(model_files / "tiny.h5")
    assert loaded.format == "h5"
    assert "default compile(optimizer='rmsprop', loss='mse')" in loaded.compile_config
    assert loaded.compiled_factory().optimizer is not None


def test_keras2_era_h5_made_by_tf_keras(tmp_path, tiny_input):
    tf_keras = pytest.importorskip("tf_keras")
    model = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(3, activation="relu"),
                                 tf_keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.save(tmp_path / "keras2.h5")
    loaded = load_path(tmp_path / "keras2.h5")
    assert loaded.input_specs[0].shape == (None, 4)
    assert "training config" in loaded.compile_config
    expected = model.predict(tiny_input, verbose=0)
    np.testing.assert_allclose(loaded.model.predict(tiny_input, verbose=0), expected, rtol=1e-5, atol=1e-6)


def test_exported_savedmodel_uses_its_serving_signature(model_files):
    loaded = load_path(model_files / "tiny_savedmodel")
    assert loaded.format == "savedmodel" and not loaded.is_keras
    assert [(s.name, s.shape) for s in loaded.input_specs] == [("x", (None, 4))]


def test_plain_tf_module_savedmodel_reports_keras_strategies_not_applicable(tmp_path, tf):
    class Scale(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable([[2.0], [3.0]])

        @tf.function(input_signature=[tf.TensorSpec((None, 2), tf.float32, name="features")])
        def serve(self, features):
            return {"score": tf.matmul(features, self.w)}

    module = Scale()
    tf.saved_model.save(module, str(tmp_path / "plain"), signatures={"serving_default": module.serve})
    report = inspect(str(tmp_path / "plain"), strategies=["predict", "savedmodel"], **FAST)
    predict = report.strategy("predict")
    assert not predict.available and "needs a Keras model" in predict.reason
    served = report.strategy("SavedModel serve")
    assert served.available and served.measurement.count >= 2
    assert report.model.compile_config.startswith("not applicable")


def test_multi_input_list_and_dict_models_get_named_inputs(keras, tmp_path):
    a = keras.Input((3,), name="a")
    tokens = keras.Input((5,), name="tokens", dtype="int32")
    embedded = keras.layers.Flatten()(keras.layers.Embedding(7, 2)(tokens))
    out = keras.layers.Dense(1)(keras.layers.Concatenate()([a, embedded]))
    for structure, model in [("dict", keras.Model({"a": a, "tokens": tokens}, out)),
                             ("list", keras.Model([a, tokens], out))]:
        path = tmp_path / f"{structure}.keras"
        model.save(path)
        loaded = load_path(path)
        assert loaded.input_structure == structure
        specs = {s.name: s for s in loaded.input_specs}
        assert specs["tokens"].int_range == (0, 7)  # the Embedding's vocabulary
        assert specs["a"].int_range is None
        report = inspect(str(path), strategies=["predict", "predict_on_batch", "tf-function"], **FAST)
        assert all(s.available and s.outputs.matches for s in report.strategies), report.strategies
        token_info = next(i for i in report.model.inputs if i.name == "tokens")
        assert "below 7" in token_info.value_range


def test_dynamic_sequence_axis_needs_input_shape(keras, tmp_path):
    tokens = keras.Input((None,), name="tokens", dtype="int32")
    out = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(20, 4)(tokens))
    path = tmp_path / "seq.keras"
    keras.Model(tokens, out).save(path)
    with pytest.raises(KdiagError, match="--input-shape tokens=D"):
        inspect(str(path), **FAST)
    report = inspect(str(path), input_shapes={"tokens": (12,)}, batch_size=3, strategies=["predict"], **FAST)
    assert report.model.inputs[0].shape == [3, 12]


def test_examples_have_their_documented_batch_sizes_and_seeds():
    tiny = load_example("tiny")
    assert tiny.default_batch_size == 32
    again = load_example("tiny")
    for w1, w2 in zip(tiny.model.get_weights(), again.model.get_weights()):
        np.testing.assert_array_equal(w1, w2)
    assert load_example("mnist-softmax").input_specs[0].shape == (None, 784)
    cnn = load_example("mnist-cnn")
    assert cnn.input_specs[0].shape == (None, 28, 28, 1)
    assert any(type(layer).__name__ == "Dropout" for layer in cnn.model.layers)


def test_unknown_example_lists_the_known_ones():
    with pytest.raises(KdiagError, match="tiny, mnist-softmax, mnist-cnn, lstm"):
        load_example("resnet")
