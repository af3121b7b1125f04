"""Every strategy on the tiny example: measured, outputs checked against predict."""

import json

import numpy as np
import pytest

from kdiag import views
from kdiag.api import inspect
from kdiag.engine.check import compare
from kdiag.errors import KdiagError
from kdiag.render.json import render as render_json
from kdiag.datamodel.report import Report
from kdiag.engine.runtimes.strategies import STRATEGIES

from conftest import FAST


@pytest.fixture(scope="module")
def tiny_report():
    return inspect(example="tiny", **FAST)


@pytest.mark.slow
def test_every_strategy_is_measured_on_tiny_with_matching_outputs(tiny_report):
    names = [s.name for s in tiny_report.strategies]
    assert names == [s.name for s in STRATEGIES]
    for result in tiny_report.strategies:
        assert result.available, (result.name, result.reason)
        m = result.measurement
        assert m.count >= FAST["min_calls"] and m.median_s > 0 and m.first_call_s > 0
        assert result.outputs.reference == "predict"
        assert result.outputs.matches, (result.name, result.outputs)
    assert tiny_report.model.batch_size == 32


@pytest.mark.slow
def test_predict_is_slower_than_the_fastest_strategy(tiny_report):
    # A behavioural fact of Keras 3 (tf.data pipeline per call), not a timing target:
    # at least one direct path beats predict on a 13-parameter model.
    fastest = views.measured(tiny_report)[0]
    assert fastest.name != "predict"
    assert tiny_report.strategy("predict").median_s > fastest.median_s


@pytest.mark.slow
def test_json_has_the_documented_fields_and_round_trips(tiny_report):
    data = json.loads(render_json(tiny_report))
    assert data["schema_version"] == 2
    predict = next(s for s in data["strategies"] if s["name"] == "predict")
    for field in ("name", "available", "median_s", "p90_s", "first_call_s", "outputs_match", "max_abs_diff",
                  "snippet"):
        assert field in predict
    assert predict["outputs_match"] is True
    assert 0 < len(predict["measurement"]["samples_s"]) <= predict["measurement"]["count"]
    again = Report.from_dict(data)
    assert again.strategy("predict").median_s == pytest.approx(tiny_report.strategy("predict").median_s)
    assert again == Report.from_dict(json.loads(render_json(again)))


@pytest.mark.slow
def test_strategy_selection_runs_only_those(keras):
    report = inspect(example="tiny", strategies=["predict_on_batch", "concrete"], **FAST)
    assert [s.name for s in report.strategies] == ["predict_on_batch", "concrete function"]
    # No predict ran, so there is no reference: outputs are not checked rather than assumed.
    assert all(s.outputs is None for s in report.strategies)


def test_unknown_strategy_names_the_choices():
    with pytest.raises(KdiagError, match="choose from: predict, predict-compiled"):
        inspect(example="tiny", strategies=["predcit"])


def test_outputs_check_catches_a_different_computation():
    ref = [np.array([[0.5], [0.25]], dtype=np.float32)]
    assert compare("predict", ref, [ref[0] + 1e-7]).matches
    wrong = compare("predict", ref, [ref[0] + 0.01])
    assert not wrong.matches and wrong.max_abs_diff == pytest.approx(0.01, rel=1e-3)
    shape = compare("predict", ref, [np.zeros((3, 1))])
    assert not shape.matches and "shape" in shape.detail
    assert not compare("predict", ref, ref + ref).matches
    assert not compare("predict", ref, [np.array([[np.nan], [0.25]])]).matches


@pytest.mark.slow
def test_model_in_memory_with_user_inputs(keras, tiny_input):
    from conftest import build_tiny

    report = inspect(build_tiny(keras), inputs=tiny_input, strategies=["predict", "eager"], **FAST)
    assert report.model.batch_size == 8
    assert report.model.inputs[0].value_range == "user data"
    assert report.strategy("model(x) eager").outputs.matches


def test_inspect_shows_its_options_in_its_signature():
    import inspect as pyinspect

    import kdiag

    parameters = pyinspect.signature(kdiag.inspect).parameters
    for option in ("model_or_path", "inputs", "example", "batch_size", "input_shapes", "strategies", "budget_s",
                   "min_calls", "unsafe", "custom_objects", "cpp", "profile", "profile_strategies",
                   "profile_calls", "out_dir", "progress"):
        assert option in parameters, option
    assert "budget_s" in (kdiag.inspect.__doc__ or "")


@pytest.mark.parametrize("option, value, cli", [
    ("budget_s", -1.0, ["--budget", "-1"]),
    ("budget_s", float("nan"), ["--budget", "nan"]),
    ("budget_s", float("inf"), ["--budget", "inf"]),
    ("budget_s", 1e9, ["--budget", "1e9"]),
    ("batch_size", 0, ["--batch-size", "0"]),
    ("min_calls", 0, ["--min-calls", "0"]),
    ("profile_calls", -2, ["--profile-calls", "-2"]),
])
def test_api_and_cli_refuse_a_bad_option_with_the_same_line(option, value, cli):
    import io

    import kdiag
    from kdiag.cli import Env, main

    with pytest.raises(KdiagError) as refused:
        kdiag.inspect(example="tiny", **{option: value})
    err = io.StringIO()
    assert main(["inspect", "--example", "tiny", *cli], Env(io.StringIO(), err)) == 2
    assert err.getvalue() == f"kdiag: error: {refused.value.message}\n"


@pytest.mark.slow
@pytest.mark.parametrize("litert", [True, False], ids=["LiteRT", "tf.lite fallback"])
def test_tflite_row_calls_set_invoke_get_on_litert_or_tf_lite(monkeypatch, litert):
    import sys

    from kdiag.engine.runtimes import tflite

    if not litert:
        monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # as if not installed
        monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    used = []
    real = tflite.tflite_interpreter
    monkeypatch.setattr(tflite, "tflite_interpreter", lambda blob: used.append(real(blob)) or used[-1])
    report = inspect(example="tiny", strategies=["predict", "tflite"], budget_s=0.05, min_calls=3, profile=False)
    row = report.strategy("TFLite")
    assert row.available and row.outputs.matches, row
    assert used[0][1] == ("LiteRT" if litert else "tf.lite.Interpreter")


def test_every_strategy_is_one_module_with_its_memory_cost():
    """A strategy's cost is a required field beside its code: none can be planned as costing no memory."""
    import dataclasses as dc

    from kdiag.engine.intake.limits import StrategyCost
    from kdiag.engine.runtimes.base import Strategy
    from kdiag.engine.runtimes.strategies import STRATEGIES

    cost = next(f for f in dc.fields(Strategy) if f.name == "cost")
    assert cost.default is dc.MISSING and cost.default_factory is dc.MISSING
    modules = [s.prepare.__module__ for s in STRATEGIES]
    assert len(set(modules)) == len(STRATEGIES), "one module per strategy"
    for strategy in STRATEGIES:
        assert isinstance(strategy.cost, StrategyCost), strategy.name
        assert (strategy.memory_cost(keras=False) is None) == strategy.needs_keras, strategy.name
