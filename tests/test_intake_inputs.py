"""Inputs, sanely (issue 20, item 11, intake half): 0-sized axes refused, one-line messages that stay
one readable line however many names a file holds, and extra --inputs arrays named in the report."""

from __future__ import annotations

import numpy as np
import pytest

from kdiag.datamodel.config import RunConfig
from kdiag.engine.intake.inputs import InputSpec, check_user_array, load_user_inputs, resolve_shapes
from kdiag.errors import KdiagError

SPEC = InputSpec("x", (None, 4), "float32")


@pytest.mark.parametrize("spec, overrides, words", [
    (InputSpec("x", (None, 0, 4), "float32"), {}, "input 'x' gets a 0-sized axis 1 from the model (shape (1, 0, 4))"),
    (InputSpec("x", (None, None, 4), "float32"), {"x": (0, 4)}, "gets a 0-sized axis 1 from --input-shape"),
])
def test_a_zero_sized_axis_is_refused_not_measured(spec, overrides, words):
    with pytest.raises(KdiagError) as refused:
        resolve_shapes([spec], 1, overrides)
    assert words in refused.value.message and "a call on no data times nothing" in refused.value.message


def test_a_fixed_batch_of_zero_is_refused():
    with pytest.raises(KdiagError, match="batch size is fixed at 0"):
        resolve_shapes([InputSpec("x", (0, 4), "float32")], 0, {})


def test_user_arrays_with_a_zero_sized_axis_are_refused():
    with pytest.raises(KdiagError, match=r"has shape \(8, 0\), with a 0-sized axis"):
        check_user_array(InputSpec("x", (None, None), "float32"), np.zeros((8, 0), "float32"))


def test_a_refusal_naming_thousands_of_arrays_stays_one_short_line(tmp_path):
    path = tmp_path / "many.npz"
    np.savez(path, **{f"array_{i}": np.zeros((1, 4), "float32") for i in range(5000)})
    with pytest.raises(KdiagError) as refused:
        load_user_inputs(path, [SPEC])
    message = refused.value.message
    assert len(message) < 500 and "\n" not in message
    assert "holds the arrays 'array_0', 'array_1', 'array_10' and 4,997 more" in message
    assert "model's inputs are 'x'" in message


def test_thousands_of_unknown_strategy_names_stay_one_short_line():
    with pytest.raises(KdiagError) as refused:
        RunConfig(example="tiny", strategies=tuple(f"s{i}" for i in range(5000)))
    assert len(refused.value.message) < 500 and "and 4,997 more" in refused.value.message


def test_extra_arrays_are_named_in_a_note(tmp_path):
    path = tmp_path / "extra.npz"
    np.savez(path, x=np.ones((2, 4), "float32"), **{f"unused_{i}": np.zeros(1) for i in range(5)})
    inputs = load_user_inputs(path, [SPEC])
    assert list(inputs.arrays) == ["x"]
    assert inputs.notes == ("--inputs extra.npz holds 5 arrays the model takes no input for, not used: "
                            "'unused_0', 'unused_1', 'unused_2' and 2 more.",)
    assert load_user_inputs(tmp_path / "extra.npz", [SPEC]).notes  # the same, every time
    np.savez(tmp_path / "exact.npz", x=np.ones((2, 4), "float32"))
    assert load_user_inputs(tmp_path / "exact.npz", [SPEC]).notes == ()


def test_the_note_reaches_the_report(tmp_path):
    import kdiag
    from conftest import FAST

    path = tmp_path / "extra.npz"
    np.savez(path, x=np.ones((2, 4), "float32"), labels=np.zeros(2))
    report = kdiag.inspect(example="tiny", inputs=str(path), strategies=["predict", "predict_on_batch"], **FAST)
    assert "--inputs extra.npz holds 1 array the model takes no input for, not used: 'labels'." in report.notes
    given = kdiag.inspect(example="tiny", inputs={"x": np.ones((2, 4), "float32"), "y": np.zeros(2)},
                          strategies=["predict", "predict_on_batch"], **FAST)
    assert "the inputs given holds 1 array the model takes no input for, not used: 'y'." in given.notes
