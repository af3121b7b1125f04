"""Inputs from a signature, shape overrides and the user's own data: no TensorFlow."""

import numpy as np
import pytest

from kdiag.errors import KdiagError
from kdiag.datamodel.config import parse_shape_overrides
from kdiag.engine.intake.inputs import (InputSpec, load_user_inputs, resolve_shapes,
                          synthetic_inputs)


def test_integer_inputs_stay_in_the_declared_range():
    spec = InputSpec("tokens", (None, 50), "int32", (0, 7), "Embedding 'e' accepts indices below 7")
    inputs = synthetic_inputs([spec], resolve_shapes([spec], 64, {}))
    tokens = inputs.arrays["tokens"]
    assert tokens.dtype == np.int32 and tokens.shape == (64, 50)
    assert tokens.min() >= 0 and tokens.max() < 7
    assert "below 7" in inputs.descriptions["tokens"]


def test_inputs_are_reproducible():
    spec = InputSpec("x", (None, 3), "float32")
    a = synthetic_inputs([spec], {"x": (2, 3)}).arrays["x"]
    b = synthetic_inputs([spec], {"x": (2, 3)}).arrays["x"]
    assert np.array_equal(a, b)


def test_dynamic_axis_is_refused_with_the_option_to_fix_it():
    spec = InputSpec("tokens", (None, None), "int32")
    with pytest.raises(KdiagError) as info:
        resolve_shapes([spec], 1, {})
    assert "--input-shape tokens=D" in info.value.message
    assert resolve_shapes([spec], 4, parse_shape_overrides(["tokens=128"])) == {"tokens": (4, 128)}


def test_shape_override_must_fit_fixed_axes():
    spec = InputSpec("img", (None, None, 3), "float32")
    assert resolve_shapes([spec], 1, parse_shape_overrides(["img=5,3"])) == {"img": (1, 5, 3)}
    with pytest.raises(KdiagError):
        resolve_shapes([spec], 1, parse_shape_overrides(["img=5,4"]))


@pytest.mark.parametrize("bad", ["tokens=", "tokens=a,b", "tokens=0", "tokens=-3"])
def test_malformed_shape_overrides(bad):
    with pytest.raises(KdiagError):
        parse_shape_overrides([bad])


def test_override_for_an_unknown_input_is_refused():
    with pytest.raises(KdiagError, match="no input called"):
        resolve_shapes([InputSpec("x", (None, 2), "float32")], 1, {"y": (2,)})


def test_user_npz_by_name_and_npy(tmp_path):
    specs = [InputSpec("a", (None, 3), "float32"), InputSpec("b", (None, 2), "int32")]
    np.savez(tmp_path / "in.npz", a=np.ones((5, 3), "float32"), b=np.zeros((5, 2), "int64"))
    inputs = load_user_inputs(tmp_path / "in.npz", specs)
    assert inputs.batch_size == 5 and inputs.arrays["b"].dtype == np.int32
    np.save(tmp_path / "one.npy", np.ones((2, 3), "float32"))
    assert load_user_inputs(tmp_path / "one.npy", specs[:1]).arrays["a"].shape == (2, 3)


@pytest.mark.parametrize("array, message", [
    (np.ones((2, 5), "float32"), "shape"),
    (np.array([["x", "y", "z"]]), "dtype"),
    (np.full((2, 3), np.nan, "float32"), "NaN"),
    (np.ones((0, 3), "float32"), "empty"),
])
def test_user_inputs_of_the_wrong_kind_are_refused(tmp_path, array, message):
    np.save(tmp_path / "bad.npy", array)
    with pytest.raises(KdiagError, match=message):
        load_user_inputs(tmp_path / "bad.npy", [InputSpec("a", (None, 3), "float32")])


def test_damaged_npy_is_refused(tmp_path):
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(KdiagError, match="could not be read"):
        load_user_inputs(tmp_path / "bad.npy", [InputSpec("a", (None, 3), "float32")])


def test_a_string_input_is_refused_with_one_line_not_a_traceback():
    from kdiag.engine.intake.limits import check_input_memory

    spec = InputSpec("text", (None, 1), "string", None, "")
    check_input_memory([spec], {"text": (4, 1)})  # no NumPy size for "string": estimated, not a crash
    with pytest.raises(KdiagError, match="input 'text' has dtype string, which kdiag cannot synthesise"):
        synthetic_inputs([spec], {"text": (4, 1)})
