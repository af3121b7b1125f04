"""kdiag.analysis.compare on hand-built Reports and JSON files. No TensorFlow here."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import factories as fx  # noqa: E402
from kdiag.analysis import compare as cmp  # noqa: E402
from kdiag.datamodel.report import read_report  # noqa: E402
from kdiag.render.comparison import render as render_comparison  # noqa: E402
from kdiag.render.comparison import verdict_of  # noqa: E402
from kdiag.render.json import render as render_json_report  # noqa: E402
from kdiag.analysis.diagnose import diagnose  # noqa: E402
from kdiag.errors import ExitStatus, KdiagError  # noqa: E402
from kdiag.datamodel.report import Report  # noqa: E402

SHARES = {"tf.data pipeline": 0.5, "tracing": 0.3, "other Python": 0.2}


def run(**overrides):
    """A report like typical_keras3, with profiles of predict and tf.function."""
    strategies = fx.typical_keras3(**overrides)
    medians = {s.name: s.median_s * 1e3 for s in strategies if s.measurement}
    profiles = [fx.profile("predict", SHARES, medians["predict"]),
                fx.profile("tf.function", {"graph execution": 0.9, "other Python": 0.1}, medians["tf.function"])]
    return fx.report(strategies, profiles=profiles)


def change(comparison, name):
    return next(s for s in comparison.strategies if s.name == name)


def test_no_change_is_exit_0():
    comparison = cmp.compare_reports(run(), run(), fail_above=10.0)
    assert comparison.regressions == ()
    assert cmp.exit_status(comparison) == 0
    assert all(s.status == cmp.COMPARED and s.ratio == pytest.approx(1.0) for s in comparison.strategies)
    assert all(not p.regression for p in comparison.phases)
    assert "No regression" in render_comparison(comparison)


def test_a_2x_slower_strategy_is_a_regression_and_listed():
    after = run(**{"tf.function": (0.5, 0.01)})
    comparison = cmp.compare_reports(run(), after, fail_above=10.0)
    assert cmp.exit_status(comparison) == ExitStatus.REGRESSION == 3
    slower = change(comparison, "tf.function")
    assert slower.regression and slower.beyond_noise and slower.ratio == pytest.approx(2.0)
    assert slower.percent == pytest.approx(100.0)
    assert [r.name for r in comparison.regressions if isinstance(r, cmp.StrategyChange)] == ["tf.function"]
    text = render_comparison(comparison)
    assert verdict_of(text).startswith("REGRESSION: ") and "tf.function" in verdict_of(text)
    assert "+100%" in text and all(len(line) <= 80 for line in text.splitlines())


def test_the_phases_of_a_slower_scenario_regress_too():
    after = run(**{"predict": (120.0, 2.0)})
    comparison = cmp.compare_reports(run(), after, fail_above=10.0)
    phases = {(p.scenario, p.phase): p for p in comparison.phases}
    tfdata = phases[("predict", "tf.data pipeline")]
    assert tfdata.before_ms == pytest.approx(30.0) and tfdata.after_ms == pytest.approx(60.0)
    assert tfdata.noise_ms == pytest.approx(0.5 * 2.0 + 0.5 * 2.0)
    assert tfdata.regression
    assert not phases[("predict", "graph execution")].regression  # 0 ms both times
    assert ("tf.function", "graph execution") in phases and not phases[("tf.function", "graph execution")].regression
    text = render_comparison(comparison)
    assert "Phases of predict" in text and "predict / tf.data pipeline" in verdict_of(text)


def test_a_change_inside_the_noise_is_not_a_regression():
    before = run(**{"predict": (60.0, 10.0)})
    after = run(**{"predict": (75.0, 10.0)})  # +25%, but the IQRs sum to 20 ms > 15 ms
    comparison = cmp.compare_reports(before, after, fail_above=10.0)
    predict = change(comparison, "predict")
    assert predict.ratio == pytest.approx(1.25) and not predict.beyond_noise and not predict.regression
    assert cmp.exit_status(comparison) == 0
    assert "within noise" in render_comparison(comparison)


def test_a_change_beyond_noise_below_the_threshold_is_not_a_regression():
    after = run(**{"predict": (64.0, 0.1)})
    comparison = cmp.compare_reports(run(**{"predict": (60.0, 0.1)}), after, fail_above=10.0)
    predict = change(comparison, "predict")
    assert predict.beyond_noise and not predict.regression
    assert cmp.exit_status(cmp.compare_reports(run(**{"predict": (60.0, 0.1)}), after, fail_above=5.0)) == 3


def test_a_large_change_of_a_tiny_phase_is_called_tiny_not_below_the_threshold():
    """+173% of a phase under 1% of its scenario read "slower, below the threshold" with --fail-above 10."""
    shares = {"tf.data pipeline": 0.5, "tracing": 0.3, "other Python": 0.197, "output conversion": 0.003}
    before = fx.report(fx.typical_keras3(), profiles=[fx.profile("predict", shares, 60.0)])
    after_shares = dict(shares, **{"output conversion": 0.0082, "other Python": 0.1918})
    after = fx.report(fx.typical_keras3(), profiles=[fx.profile("predict", after_shares, 60.0)])
    comparison = cmp.compare_reports(before, after, fail_above=10.0)
    tiny = next(p for p in comparison.phases if p.phase == "output conversion")
    assert tiny.ratio == pytest.approx(2.73, rel=0.01) and not tiny.regression
    line = next(line for line in render_comparison(comparison).splitlines() if line.startswith("output conversion"))
    assert "+173%" in line and "slower, tiny (<1% of total)" in line and "threshold" not in line


def test_too_few_calls_give_no_verdict_and_no_regression():
    before = fx.report([fx.strategy("predict", 60.0, 1.0, calls=2), fx.strategy("tf.function", 1.0, 0.01)])
    after = fx.report([fx.strategy("predict", 180.0, 1.0, calls=2), fx.strategy("tf.function", 1.0, 0.01)])
    comparison = cmp.compare_reports(before, after, fail_above=10.0)
    predict = change(comparison, "predict")
    assert not predict.judged and not predict.regression and not predict.beyond_noise
    assert "n<5: no verdict" in render_comparison(comparison)


def test_every_line_fits_80_columns_with_long_labels():
    comparison = cmp.compare_reports(run(), run(**{"predict": (120.0, 2.0)}), fail_above=10.0,
                                     before_label="/very/long/path/" * 8 + "report.json", after_label="b/report.json")
    assert all(len(line) <= 80 for line in render_comparison(comparison).splitlines())


def test_faster_is_never_a_regression():
    comparison = cmp.compare_reports(run(), run(**{"predict": (20.0, 1.0)}), fail_above=0.0)
    assert cmp.exit_status(comparison) == 0
    assert "faster" in render_comparison(comparison)


def test_strategies_in_only_one_report_are_added_or_removed_not_crashed_on():
    before = run()
    after = dataclasses.replace(run(), strategies=[s for s in run().strategies if s.name != "TFLite"]
                                + [fx.strategy("C++ (TF C API)", 0.03)])
    comparison = cmp.compare_reports(before, after, fail_above=10.0)
    assert change(comparison, "TFLite").status == cmp.REMOVED
    assert change(comparison, "C++ (TF C API)").status == cmp.ADDED
    assert change(comparison, "C++ (TF C API)").ratio is None
    # A strategy measured before and gone after is a pair the gate could not compare: it fails,
    # unless --allow-missing says that is expected.
    assert comparison.missing == ("TFLite",)
    assert cmp.exit_status(comparison) == ExitStatus.REGRESSION
    text = render_comparison(comparison)
    assert "only before" in text and "only after" in text
    assert verdict_of(text).startswith("MISSING: 1 measured before and not after, so not compared: TFLite")
    allowed = cmp.compare_reports(before, after, fail_above=10.0, allow_missing=True)
    assert cmp.exit_status(allowed) == 0
    assert "TFLite missing after: allowed by --allow-missing" in verdict_of(render_comparison(allowed))


def test_a_strategy_unavailable_on_one_side_is_not_compared_and_says_why():
    after = dataclasses.replace(run(), strategies=[
        fx.strategy("XLA (jit_compile)", available=False, reason="failed to prepare: boom")
        if s.name == "XLA (jit_compile)" else s for s in run().strategies])
    comparison = cmp.compare_reports(run(), after, fail_above=10.0)
    xla = change(comparison, "XLA (jit_compile)")
    assert xla.status == cmp.UNMEASURED and "after: failed to prepare: boom" in xla.detail
    assert not xla.regression


def test_outputs_that_start_to_differ_are_flagged_in_the_text():
    after = dataclasses.replace(run(), strategies=[
        fx.strategy("TFLite", 0.05, 0.002, matches=False, max_abs_diff=0.3) if s.name == "TFLite" else s
        for s in run().strategies])
    text = render_comparison(cmp.compare_reports(run(), after, fail_above=10.0))
    assert "TFLite: outputs matched the reference before and differ after" in text


def test_different_machines_are_called_out():
    after = dataclasses.replace(run(), environment=fx.environment(cpu_cores=8))
    comparison = cmp.compare_reports(run(), after, fail_above=10.0)
    assert comparison.warnings == ("CPU cores differs: 2 before, 8 after",)


def test_negative_fail_above_is_refused():
    with pytest.raises(KdiagError):
        cmp.compare_reports(run(), run(), fail_above=-1.0)


# --- files ----------------------------------------------------------------------------------


def test_json_round_trip_keeps_findings_and_profiles(tmp_path):
    report = run(**{"predict (compiled)": (90.0, 1.0)})
    report = dataclasses.replace(report, findings=diagnose(report))
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report.to_dict(), allow_nan=False))
    again = read_report(path)
    assert again.findings == report.findings and len(again.findings) >= 2
    assert again.profiles == report.profiles
    assert again.strategies == report.strategies
    assert again == report


def test_loaded_reports_compare(tmp_path):
    for name, report in (("a.json", run()), ("b.json", run(**{"predict": (120.0, 2.0)}))):
        (tmp_path / name).write_text(json.dumps(report.to_dict()))
    comparison = cmp.compare_reports(read_report(tmp_path / "a.json"), read_report(tmp_path / "b.json"),
                                     fail_above=10.0, before_label="a.json", after_label="b.json")
    assert cmp.exit_status(comparison) == 3
    assert render_comparison(comparison).startswith("kdiag compare: a.json -> b.json")


@pytest.mark.parametrize("content, problem", [
    (None, "no such file"),
    ("{not json", "is not valid JSON (Expecting property name enclosed in double quotes at line 1, column 2)"),
    ("[1, 2]", "is not a kdiag report"),
    ('{"schema_version": 99}', "report schema_version 99 is not one this kdiag reads (1, 2)"),
    ('{"schema_version": 1, "settings": {}}', "is not a kdiag report: report.settings has no command"),
])
def test_read_report_errors_are_one_line(tmp_path, content, problem):
    path = tmp_path / "report.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(KdiagError) as info:
        read_report(path)
    message = info.value.message
    assert problem in message and str(path) in message
    assert "\n" not in message
    assert info.value.fix


def test_read_report_on_a_directory(tmp_path):
    with pytest.raises(KdiagError, match="is a directory"):
        read_report(tmp_path)


def test_round_trip_of_report_objects_in_memory():
    report = run()
    assert Report.from_dict(report.to_dict()) == report


@pytest.mark.parametrize("change, problem", [
    (lambda d: d.update(strategies=None), "report.strategies is null"),
    (lambda d: d.update(settings="fast"), "report.settings should be an object, not str"),
    (lambda d: d["strategies"][1].update(available="yes"), "report.strategies[1].available should be bool, not str"),
    (lambda d: d["model"].pop("name"), "report.model has no name"),
])
def test_read_report_refuses_wrong_field_types_with_one_line(tmp_path, change, problem):
    data = json.loads(render_json_report(fx.report(fx.typical_keras3())))
    change(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(KdiagError, match=re.escape(problem)):
        read_report(path)


def test_read_report_refuses_deeply_nested_json(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(KdiagError, match="nests deeper than any kdiag report"):
        read_report(path)


def test_read_report_checks_the_types_inside_strategies(tmp_path):
    good = json.loads(render_json_report(fx.report(fx.typical_keras3())))
    good["strategies"][0]["measurement"]["samples_s"] = ["fast", "slow"]
    path = tmp_path / "typed.json"
    path.write_text(json.dumps(good))
    with pytest.raises(KdiagError, match=r"report\.strategies\[0\]\.measurement\.samples_s should be a list of numbers"):
        read_report(path)


def test_read_report_refuses_a_device_without_reading_it():
    with pytest.raises(KdiagError, match="not a regular file"):
        read_report("/dev/zero")  # reading it would never end


def test_read_report_refuses_a_file_larger_than_any_report(tmp_path, monkeypatch):
    from kdiag.datamodel import report as report_module

    path = tmp_path / "huge.json"
    path.write_text("{}" + " " * 2048)
    monkeypatch.setattr(report_module, "MAX_REPORT_BYTES", 1024)
    with pytest.raises(KdiagError, match="larger than any kdiag report"):
        read_report(path)


@pytest.mark.parametrize("value", ["nan", "inf", "-5", "1e9"])
def test_fail_above_rejects_nan_infinity_negative_and_absurd_values(tmp_path, value):
    import io

    from kdiag.cli import Env, main

    path = tmp_path / "r.json"
    path.write_text(render_json_report(fx.report(fx.typical_keras3())))
    err = io.StringIO()
    assert main(["compare", str(path), str(path), "--fail-above", value], Env(io.StringIO(), err)) == 2
    assert err.getvalue().startswith("kdiag: error: --fail-above must be a percentage from 0 to 10,000")
    assert len(err.getvalue().splitlines()) == 1


# --- hostile report.json files (issue 20: renamed strategies, nonsense figures, escape codes) ---------------


def _report_files(tmp_path, change_after=lambda data: None, change_before=lambda data: None):
    paths = []
    for name, change in (("before.json", change_before), ("after.json", change_after)):
        data = json.loads(render_json_report(run()))
        change(data)
        path = tmp_path / name
        path.write_text(json.dumps(data))  # json writes NaN and Infinity as JavaScript does, and reads them back
        paths.append(path)
    return paths


def _cli_compare(*argv):
    import io

    from kdiag.cli import Env, main

    out, err = io.StringIO(), io.StringIO()
    code = main(["compare", *map(str, argv)], Env(out, err))
    return code, out.getvalue(), err.getvalue()


def _rename(data, old, new, recorded=True):
    for item in data["strategies"]:
        if item["name"] == old:
            item["name"] = new
            if recorded and item.get("measurement"):
                item["measurement"]["strategy"] = new


@pytest.mark.parametrize("recorded", [True, False], ids=["name-and-record", "name-only"])
def test_a_strategy_renamed_in_the_candidate_fails_the_gate(tmp_path, recorded):
    # The candidate's predict became 4x slower, and was renamed so that no row pairs with the baseline's.
    def slower_and_renamed(data):
        for item in data["strategies"]:
            if item["name"] == "predict":
                item["measurement"]["median_s"] *= 4
        _rename(data, "predict", "predict\u200b", recorded)

    before, after = _report_files(tmp_path, slower_and_renamed)
    code, out, err = _cli_compare(before, after, "--fail-above", "10")
    assert code == ExitStatus.REGRESSION, out + err
    assert "'predict\\u200b' (after): " in out  # listed as not matched, the zero-width space shown
    assert ("its measurement was recorded as 'predict'" in " ".join(out.split())) != recorded
    assert verdict_of(out).startswith("MISSING: 1 measured before and not after, so not compared: predict")
    code, out, _ = _cli_compare(before, after, "--fail-above", "10", "--allow-missing")
    assert code == 0, out
    assert "predict missing after: allowed by --allow-missing" in verdict_of(out)


def test_nothing_compared_never_passes_the_gate(tmp_path):
    def nothing_measured(data):
        for item in data["strategies"]:
            item.update(available=False, reason="failed to prepare: boom", measurement=None, outputs=None)

    before, after = _report_files(tmp_path, nothing_measured, nothing_measured)
    code, out, _ = _cli_compare(before, after, "--fail-above", "10", "--allow-missing")
    assert code == ExitStatus.REGRESSION, out
    assert verdict_of(out) == "NOT COMPARED: no strategy was measured in both runs."


@pytest.mark.parametrize("field, value, shown", [
    ("median_s", float("nan"), "nan"),
    ("median_s", float("inf"), "inf"),
    ("median_s", 1e308, "1e+308"),
    ("median_s", -0.05, "-0.05"),
    ("median_s", 0.0, "0.0"),
    ("iqr_s", 1e308, "1e+308"),
    ("iqr_s", float("nan"), "nan"),
    ("iqr_s", -1.0, "-1.0"),
])
def test_nonsense_figures_are_refused_with_one_line_naming_the_field(tmp_path, field, value, shown):
    def damage(data):
        data["strategies"][0]["measurement"][field] = value

    before, after = _report_files(tmp_path, damage)
    code, out, err = _cli_compare(before, after, "--fail-above", "10")
    assert code == ExitStatus.BAD_INPUT and out == "", (code, out, err)
    assert err.startswith(f"kdiag: error: {after}: report.strategies[0].measurement.{field} is {shown}, "
                          "not a time kdiag measures"), err
    assert len(err.splitlines()) == 1


def test_nonsense_medians_on_both_sides_never_exit_0(tmp_path):
    # The case that used to pass a CI gate: NaN medians made every row "not compared", then "No regression".
    def nan_everywhere(data):
        for item in data["strategies"]:
            if item.get("measurement"):
                item["measurement"]["median_s"] = float("nan")

    before, after = _report_files(tmp_path, nan_everywhere, nan_everywhere)
    code, _, err = _cli_compare(before, after, "--fail-above", "10", "--allow-missing")
    assert code == ExitStatus.BAD_INPUT and "median_s is nan" in err


def test_a_second_row_with_the_same_strategy_is_not_matched(tmp_path):
    def duplicate(data):
        data["strategies"].append(dict(data["strategies"][0]))

    before, after = _report_files(tmp_path, duplicate)
    code, out, _ = _cli_compare(before, after, "--fail-above", "10")
    assert code == 0 and "'predict' (after): a second row with the same strategy" in out


def test_text_from_the_reports_reaches_the_terminal_as_escapes(tmp_path):
    hostile = "\x1b]52;c;cHduZWQ=\x07\r\x1b[2K\x1b[32mNo regression\x1b[0m\n"

    def hostile_text(data):
        data["environment"]["cpu_model"] = "cpu" + hostile
        data["strategies"][1]["reason"] = hostile
        _rename(data, "TFLite", "TFLite" + hostile)

    before, after = _report_files(tmp_path, hostile_text)
    code, out, _ = _cli_compare(before, after, "--fail-above", "10")
    assert code == ExitStatus.REGRESSION  # TFLite is renamed away: missing
    assert "\x1b" not in out and "\r" not in out and "\x07" not in out
    assert "\\x1b[32mNo regression" in out
    assert all(line.isprintable() for line in out.splitlines())
