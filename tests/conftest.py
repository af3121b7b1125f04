"""Shared fixtures: small models saved in every format, made by the tests themselves."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Short budgets: tests check behaviour, not speed (speed lives in bench/). The steps beyond one batch
# have their own tests (test_beyond_*.py, test_sweeps.py, test_memloop.py, test_ops.py, test_threads.py).
FAST = dict(budget_s=0.02, min_calls=2, max_wall_s=2.0, profile=False, sweeps=False, memory_loops=False, ops=False)


@pytest.fixture(scope="session")
def keras():
    from kdiag.engine.tf import tf_and_keras

    return tf_and_keras()[1]


@pytest.fixture(scope="session")
def tf():
    from kdiag.engine.tf import tf_and_keras

    return tf_and_keras()[0]


def build_tiny(keras):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(2, activation="relu")(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid")(hidden)
    return keras.Model(inputs, outputs, name="tiny")


@pytest.fixture(scope="session")
def model_files(tmp_path_factory, keras):
    """The tiny model as .keras (compiled), .h5 (uncompiled) and an exported SavedModel."""
    root = tmp_path_factory.mktemp("models")
    model = build_tiny(keras)
    model.compile(optimizer="adam", loss="mse")
    model.save(root / "tiny.keras")
    plain = build_tiny(keras)
    plain.save(root / "tiny.h5")
    plain.export(str(root / "tiny_savedmodel"), verbose=False)
    return root


@pytest.fixture
def tiny_input():
    return np.random.default_rng(1).random((8, 4)).astype("float32")
