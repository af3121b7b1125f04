"""Outputs, sanely (issue 20, item 11): compared on two calls, NaN outputs a finding of their own, and a
strategy whose outputs vary between calls never recommended. Built from arrays and factory Reports
(fast); the real models are in tests/test_bounded.py."""

from __future__ import annotations

import dataclasses
import json

import numpy as np

import factories as f
from kdiag import views
from kdiag.analysis.diagnose import diagnose
from kdiag.datamodel.report import Report
from kdiag.engine import check
from kdiag.render.json import render as to_json

NAN = float("nan")


def test_nan_where_the_reference_has_nan_is_the_same_result():
    reference = [np.array([[1.0, NAN, np.inf]], np.float32)]
    same = check.compare("predict", reference, [np.array([[1.0 + 1e-7, NAN, np.inf]], np.float32)])
    assert same.matches and same.max_abs_diff < 1e-6
    for other in ([[1.0, 0.0, np.inf]], [[1.0, NAN, -np.inf]], [[NAN, NAN, np.inf]]):
        differs = check.compare("predict", reference, [np.array(other, np.float32)])
        assert not differs.matches and "not finite" in differs.detail
    finite = check.compare("predict", [np.ones((2, 2))], [np.array([[1, 1], [1, NAN]])])
    assert not finite.matches and "non-finite values where the reference has none" in finite.detail


def test_outputs_are_checked_on_two_calls_and_counted_when_not_finite():
    first = [np.array([[0.5, NAN]]), np.array([[np.inf]])]
    steady = check.checked("predict", first, first, [a.copy() for a in first])
    assert steady.repeatable is True and steady.repeat_max_abs_diff == 0.0
    assert (steady.nonfinite_values, steady.output_values) == (2, 3)
    noisy = check.checked("predict", first, first, [np.array([[0.9, NAN]]), np.array([[np.inf]])])
    assert noisy.repeatable is False and noisy.varies and abs(noisy.repeat_max_abs_diff - 0.4) < 1e-9
    reshaped = check.checked("predict", first, first, [np.array([[0.5, NAN, 1.0]]), np.array([[np.inf]])])
    assert reshaped.varies and "shape" in reshaped.repeat_detail
    once = check.checked("predict", first, first, None)
    assert once.repeatable is None and not once.varies, "one call: not checked, not held against it"


def _varying(result, diff=0.3):
    return dataclasses.replace(result, outputs=dataclasses.replace(result.outputs, repeatable=False,
                                                                   repeat_max_abs_diff=diff))


def test_a_strategy_whose_outputs_vary_is_never_recommended():
    strategies = f.typical_keras3()
    fastest = max(range(len(strategies)), key=lambda i: -strategies[i].median_s)
    strategies[fastest] = _varying(strategies[fastest])
    report = f.report(strategies)
    varying = strategies[fastest]
    assert not views.outputs_match(varying) and views.outputs_vary(varying)
    assert views.outputs_text(varying).startswith("vary between calls (max |diff| 3.0e-01)")
    assert views.fastest_matching(report).name != varying.name
    findings = diagnose(report)
    assert all(finding.strategy != varying.name for finding in findings)
    vary = next(finding for finding in findings if finding.id == "outputs-vary")
    assert vary.severity == "medium" and vary.title.endswith(varying.name)
    assert vary.strategy is None and vary.snippet == ""
    assert json.loads(to_json(report))["strategies"][fastest]["outputs_match"] is False


def test_when_predict_itself_varies_nothing_is_recommended():
    strategies = [_varying(s) if s.name == "predict" else s for s in f.typical_keras3()]
    report = f.report(strategies)
    findings = diagnose(report)
    vary = next(finding for finding in findings if finding.id == "outputs-vary")
    assert vary.severity == "high" and any("reference" in line for line in vary.evidence)
    predict_advice = [finding for finding in findings if finding.strategy == "predict"]
    assert predict_advice == []


def test_nan_outputs_from_predict_are_a_finding_of_their_own():
    strategies = [dataclasses.replace(s, outputs=dataclasses.replace(s.outputs, nonfinite_values=8, output_values=8))
                  for s in f.typical_keras3()]
    findings = diagnose(f.report(strategies))
    first = findings[0]
    assert first.id == "nonfinite-outputs" and first.severity == "high"
    assert first.title == "predict's outputs are not finite: 8 of 8 values are NaN or infinite"
    assert any("synthetic" in line for line in first.evidence), "synthetic inputs are named as a possible cause"
    assert not any(finding.id == "outputs-differ" for finding in findings)
    assert not any(finding.id == "nonfinite-outputs" for finding in diagnose(f.report(f.typical_keras3())))


def test_the_new_outputs_fields_survive_the_json_round_trip():
    strategies = f.typical_keras3()
    strategies[0] = dataclasses.replace(strategies[0], outputs=dataclasses.replace(
        strategies[0].outputs, repeatable=False, repeat_max_abs_diff=0.25, repeat_detail="output 0 has shape (2,)",
        nonfinite_values=3, output_values=8))
    strategies[1] = dataclasses.replace(strategies[1], outputs=dataclasses.replace(strategies[1].outputs,
                                                                                   repeatable=True))
    report = f.report(strategies)
    again = Report.from_dict(json.loads(to_json(report)))
    assert again.strategies[0].outputs == strategies[0].outputs
    assert again.strategies[1].outputs == strategies[1].outputs
    older = json.loads(to_json(f.report(f.typical_keras3())))
    for strategy in older["strategies"]:  # a report written before these fields reads as "not checked"
        for name in ("repeatable", "repeat_max_abs_diff", "repeat_detail", "nonfinite_values", "output_values"):
            strategy["outputs"].pop(name)
    assert Report.from_dict(older).strategies[0].outputs.repeatable is None


def test_every_output_shows_a_varying_strategy_as_varying():
    from kdiag.render import render

    strategies = f.typical_keras3()
    strategies[2] = _varying(strategies[2])  # predict_on_batch
    report = dataclasses.replace(f.report(strategies), findings=[])
    report = dataclasses.replace(report, findings=diagnose(report))
    for fmt in ("terminal", "markdown"):
        text = render(report, fmt, **({"width": 200, "verbose": True} if fmt == "terminal" else {}))
        lines = text.replace("\\_", "_").splitlines()  # report.md escapes the underscores of names
        rows = [line for line in lines if line.lstrip("| ").startswith("predict_on_batch ")
                and ("vary" in line or "match" in line)]  # the rows with an outputs column
        assert rows and all("vary" in row and "match" not in row for row in rows), rows
