"""Built-in example models, built in code with fixed seeds: nothing is downloaded."""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict


@dataclasses.dataclass(frozen=True)
class Example:
    name: str
    description: str
    batch_size: int
    build: Callable[[], object]  # returns an uncompiled Keras model


def _tiny(keras):
    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(2, activation="relu")(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid")(hidden)
    return keras.Model(inputs, outputs, name="tiny")


def _mnist_softmax(keras):
    inputs = keras.Input((784,), name="pixels")
    outputs = keras.layers.Dense(10, activation="softmax")(inputs)
    return keras.Model(inputs, outputs, name="mnist_softmax")


def _mnist_cnn(keras):
    # The classic TensorFlow "Deep MNIST for experts" network.
    layers = keras.layers
    inputs = keras.Input((28, 28, 1), name="image")
    x = layers.Conv2D(32, 5, padding="same", activation="relu")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 5, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(1024, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="mnist_cnn")


def _lstm(keras):
    # Big enough that one call is compute-bound (tens of ms at batch 32 on 2 cores),
    # so per-call overhead is not the story: the report must say so.
    layers = keras.layers
    inputs = keras.Input((64, 32), name="sequence")
    x = layers.Conv1D(64, 3, padding="same", activation="relu")(inputs)
    x = layers.LSTM(128, return_sequences=True)(x)
    x = layers.LSTM(128)(x)
    outputs = layers.Dense(1)(x)
    return keras.Model(inputs, outputs, name="lstm")


_BUILDERS = {
    "tiny": ("Dense 4→2 relu→1 sigmoid", 32, _tiny),
    "mnist-softmax": ("784→10 softmax", 1, _mnist_softmax),
    "mnist-cnn": ("Conv 5x5x32, pool, Conv 5x5x64, pool, Dense 1024, Dropout 0.5, Dense 10", 1, _mnist_cnn),
    "lstm": ("Conv1D 64 → LSTM 128 → LSTM 128 → Dense 1 over 64 steps", 32, _lstm),
}

NAMES = tuple(_BUILDERS)


def get_example(name: str) -> Example:
    from kdiag.errors import KdiagError

    if name not in _BUILDERS:
        raise KdiagError(
            f"unknown example {name!r}",
            f"choose one of: {', '.join(NAMES)}",
        )
    description, batch_size, builder = _BUILDERS[name]

    def build():
        from kdiag.engine.tf import tf_and_keras

        _, keras = tf_and_keras()
        keras.utils.set_random_seed(0)  # same weights every run
        return builder(keras)

    return Example(name, description, batch_size, build)


def all_examples() -> Dict[str, Example]:
    return {name: get_example(name) for name in NAMES}
