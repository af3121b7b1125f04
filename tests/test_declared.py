"""Memory from what a model config declares (kdiag.engine.intake.declared), before Keras builds anything.

Parameter counts worked out from configs are checked against Keras' own count_params() on real
models built here (keras.applications with weights=None, recurrent and attention models, a Keras
2-era config written by tf-keras, whose shapes must be propagated); the estimate is checked not
to refuse real models that fit; and models whose declared sizes cannot fit are refused in seconds,
in a child process whose peak RSS is measured.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdiag.engine.intake import declared, memory_model
from kdiag.errors import KdiagError
from test_intake_hostile import assert_one_line_refusal, keras_config, run_kdiag, write_keras

GIB = 1 << 30


def _config(keras, model) -> dict:
    return json.loads(json.dumps(keras.saving.serialize_keras_object(model)))


def _text_model(keras):
    layers = keras.layers
    inputs = keras.Input((200,), dtype="int32")
    x = layers.Embedding(20_000, 64)(inputs)
    x = layers.Bidirectional(layers.GRU(32, return_sequences=True))(x)
    x = layers.Bidirectional(layers.LSTM(16), merge_mode="sum")(x)
    x = layers.LayerNormalization()(x)
    return keras.Model(inputs, layers.Dense(3, activation="softmax")(x))


def _conv_zoo(keras):
    layers = keras.layers
    inputs = keras.Input((33, 31, 5))
    a = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inputs)
    a = layers.BatchNormalization()(a)
    b = layers.SeparableConv2D(8, (3, 5), depth_multiplier=2, dilation_rate=2)(inputs)
    b = layers.ZeroPadding2D(((2, 3), (1, 1)))(b)
    b = layers.Cropping2D(((0, 17), (0, 9)))(b)
    c = layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=3)(inputs)
    c = layers.Conv2D(8, 1, groups=1)(c)
    x = layers.Concatenate()([a, b, c])
    x = layers.Conv2DTranspose(4, 3, strides=2, padding="valid")(x)
    x = layers.MaxPooling2D(3, strides=2)(x)
    x = layers.UpSampling2D(2)(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.Conv1D(6, 3)(layers.Reshape((-1, 4))(x))
    x = layers.GlobalMaxPooling1D()(x)
    return keras.Model(inputs, layers.Dense(2)(x))


def _attention(keras):
    layers = keras.layers
    query = keras.Input((10, 16))
    value = keras.Input((12, 24))
    x = layers.MultiHeadAttention(num_heads=3, key_dim=8, value_dim=5)(query, value)
    x = layers.TimeDistributed(layers.Dense(7))(x)
    inner = keras.Sequential([keras.Input((7,)), layers.Dense(9), layers.Dense(2)])
    x = layers.TimeDistributed(inner)(x)
    x = layers.Flatten()(x)
    return keras.Model([query, value], layers.Dense(1)(x))


@pytest.mark.parametrize("build", [
    lambda k: k.applications.MobileNetV2(weights=None),
    lambda k: k.applications.ResNet50(weights=None),
    _text_model, _conv_zoo, _attention,
], ids=["MobileNetV2", "ResNet50", "text", "convolutions", "attention"])
def test_parameters_from_the_config_match_keras(keras, build):
    model = build(keras)
    found = declared.declared_model(_config(keras, model))
    assert found.parameters == model.count_params()
    assert found.unknown == ()
    assert len(found.outputs) == len(model.outputs)


def test_parameters_of_a_keras_2_config_are_propagated_from_its_inputs():
    """A Keras 2-era model_config records no shapes besides the inputs': every other is worked out."""
    tf_keras = pytest.importorskip("tf_keras")
    layers = tf_keras.layers
    inputs = tf_keras.Input((28, 28, 1))
    x = layers.Conv2D(16, 3, activation="relu")(inputs)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(32, 3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.Flatten()(x)
    branch = layers.Dense(10)(x)
    x = layers.Add()([layers.Dense(10)(x), branch])
    model = tf_keras.Model(inputs, layers.Dense(3)(x))
    config = _as_keras_2_2(json.loads(model.to_json()))
    assert "build_config" not in json.dumps(config)  # nothing recorded: the propagation does it all
    assert declared.declared_model(config).parameters == model.count_params()
    sequential = tf_keras.Sequential([layers.Embedding(1000, 8, input_length=20), layers.LSTM(12),
                                      layers.Dense(4)])
    sequential.build((None, 20))
    config = _as_keras_2_2(json.loads(sequential.to_json()))
    assert declared.declared_model(config).parameters == sequential.count_params()


def _as_keras_2_2(value):
    """A tf-keras config as Keras before 2.13 wrote it: no build_config, module or registered_name."""
    if isinstance(value, dict):
        return {k: _as_keras_2_2(v) for k, v in value.items() if k not in ("build_config", "module", "registered_name")}
    if isinstance(value, list):
        return [_as_keras_2_2(v) for v in value]
    return value


@pytest.mark.parametrize("build, batch", [
    (lambda k: k.applications.MobileNetV2(weights=None), 1),
    (lambda k: k.applications.ResNet50(weights=None), 1),
    (lambda k: k.applications.ResNet50(weights=None), 8),
])
def test_real_models_that_fit_are_not_refused(keras, build, batch, monkeypatch):
    """On a machine with 2 GiB free (a laptop), these run (bench/calibrate_memory.py measures them
    under 1 GiB with TensorFlow itself); the estimate must let them."""
    from kdiag.engine.intake import limits

    config = _config(keras, build(keras))
    estimate = memory_model.intake_estimate(config, batch)
    assert estimate.need_bytes < 1.5 * GIB, estimate
    monkeypatch.setattr(limits, "available_memory_bytes", lambda: 2 * GIB)
    memory_model.check_declared_memory("model.keras", config, batch)


def test_every_strategy_needs_more_than_its_measured_peak_on_a_calibration_model(keras):
    """The fitted model with its margin, on one calibration case (bench/calibrate_memory.py, ResNet50 at
    batch 8, measured here: predict 131 MiB, eager 1,186 MiB, XLA 328 MiB)."""
    model = declared.declared_model(_config(keras, keras.applications.ResNet50(weights=None)))
    mib = 1 << 20
    for key, measured in (("predict", 131), ("eager", 1186), ("xla", 328)):
        assert memory_model.strategy_need(model, key, 8).transient_bytes > measured * mib * 1.2, key


# --- refusals, as a user meets them ---------------------------------------------------------------

AVAILABLE_2_GIB = "import kdiag.engine.intake.limits as limits\nlimits.available_memory_bytes = lambda: 2 << 30"


def _dense(units: int, inputs: int) -> dict:
    return keras_config({"class_name": "Dense", "config": {"name": "huge", "units": units, "use_bias": True},
                         "build_config": {"input_shape": [None, inputs]}}, width=inputs)


@pytest.mark.parametrize("inputs, prelude, words", [
    (1000, "", "100,100,000,000 parameters (372.9 GiB, held twice while loading)"),
    (4, AVAILABLE_2_GIB, "500,000,000 parameters (1.9 GiB, held twice while loading)"),
], ids=["any machine", "2 GiB free"])
def test_a_keras_file_declaring_dense_1e8_without_weights_is_refused_in_seconds(tmp_path, inputs, prelude, words):
    model = write_keras(tmp_path / "dense.keras", _dense(10**8, inputs))
    assert model.stat().st_size < 4096
    result = run_kdiag("inspect", model, "--out", tmp_path / "run", cwd=tmp_path, prelude=prelude)
    line = assert_one_line_refusal(result, "not enough memory to run dense.keras: needs ~", words,
                                   seconds=10.0, peak_rss=1 << 30)
    assert "--batch-size" not in line  # the parameters alone do not fit: a smaller batch would not help
    assert not (tmp_path / "run").exists()


def test_an_input_of_1e8_values_is_refused_by_the_activation_estimate(tmp_path):
    config = keras_config({"class_name": "ReLU", "config": {"name": "relu"}}, width=10**8)
    model = write_keras(tmp_path / "wide.keras", config)
    result = run_kdiag("inspect", model, "--out", tmp_path / "run", cwd=tmp_path, prelude=AVAILABLE_2_GIB)
    assert_one_line_refusal(result, "not enough memory to run wide.keras: needs ~", "2.0 GiB available",
                            "0 parameters", "inputs of 381.5 MiB", "activations of up to 762.9 MiB per layer",
                            "use a smaller --batch-size", seconds=10.0, peak_rss=1 << 30)


def test_the_old_estimate_let_the_wide_input_through():
    """What the file's bytes said (no weights) and what the inputs check counted (2 x inputs + 2 x
    outputs = 1.5 GiB) fit in 2 GiB; the run then took several times that (issue 20: 5.85 GB at 5e7)."""
    relu = keras_config({"class_name": "ReLU", "config": {"name": "relu"}}, width=10**8)
    estimate = memory_model.intake_estimate(relu, 1)
    assert 4 * 4 * 10**8 < 2 * GIB < estimate.need_bytes
