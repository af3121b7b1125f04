"""`kdiag inspect --keras 2|3|both`: Keras 2 (tf-keras) and Keras 3 side by side.

Factory Reports check the data model, the findings and the renderers without TensorFlow; the
slow tests run the real CLI on tiny tf-keras files written here, the Keras 2 side in a child
process, with small budgets.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import factories as fx
from checks import assert_refused
from kdiag import views
from kdiag.analysis.compare import compare_reports
from kdiag.analysis.diagnose import diagnose
from checks import run
from kdiag.datamodel.config import RunConfig
from kdiag.datamodel.profile import GRAPH, TFDATA, TRACING
from kdiag.datamodel.report import Report, read_report
from kdiag.engine import keras_child
from kdiag.engine.intake.keras_era import keras2_signs
from kdiag.errors import KdiagError
from kdiag.render import render

FAST = ["--budget", "0.05", "--min-calls", "5"]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Default run folders (reports/...) land in a temporary directory, not the checkout."""
    monkeypatch.chdir(tmp_path)


def run_cli(*argv):
    """(exit status, stdout, stderr) of `kdiag ARGV`, in-process."""
    return run(*argv)[:3]


# --- factory Reports: data model, findings, renderers ------------------------------------


def side(predict_ms, predict_iqr_ms=0.5, *, legacy, calls=5, tfdata_share=0.6, keras="3.15.1", findings=()):
    """One Keras' run: predict at `predict_ms`, a concrete function at 0.2 ms, predict profiled."""
    strategies = [fx.strategy("predict", predict_ms, predict_iqr_ms, calls=calls),
                  fx.strategy("predict_on_batch", 0.7, 0.02), fx.strategy("concrete function", 0.2, 0.01)]
    profile = fx.profile("predict", {TFDATA: tfdata_share, TRACING: 0.3, GRAPH: 1 - tfdata_share - 0.3}, predict_ms)
    env = fx.environment(legacy_keras=legacy, keras="2.21.0" if legacy else keras)
    return fx.report(strategies, [profile], findings=list(findings), env=env)


def both(keras3_ms, keras2_ms, **options) -> Report:
    """A --keras both Report as the API makes it: Keras 3 on top, Keras 2 nested, findings re-derived."""
    report = dataclasses.replace(side(keras3_ms, legacy=False, **options),
                                 other_keras=side(keras2_ms, legacy=True, **options))
    return dataclasses.replace(report, findings=diagnose(report))


def keras_finding(report: Report):
    found = [f for f in report.findings if f.id == "keras-versions"]
    assert len(found) <= 1
    return found[0] if found else None


def test_a_both_report_survives_the_json_round_trip_and_old_reports_still_load():
    report = both(66.0, 4.7)
    data = json.loads(render(report, "json"))
    assert data["other_keras"]["environment"]["legacy_keras"] is True
    assert data["environment"]["legacy_keras"] is False
    assert Report.from_dict(data) == report
    data.pop("other_keras")  # a report.json written before the field existed
    assert Report.from_dict(data).other_keras is None


def test_keras_3_measurably_slower_is_a_finding_with_both_figures():
    report = both(66.0, 4.7)
    finding = keras_finding(report)
    assert finding.title == "predict under Keras 3 is 14.0x slower than under Keras 2 (tf-keras): 66 ms vs 4.7 ms"
    assert finding.severity == "high"
    assert finding.strategy == "concrete function" and finding.measured_speedup == pytest.approx(330.0)
    assert any("tf.data pipeline" in line for line in finding.evidence)  # the phases that changed, named
    assert "TF_USE_LEGACY_KERAS=1" in finding.advice
    assert [f.id for f in report.findings].index("keras-versions") <= 1  # the user's own path comes early


def test_keras_3_faster_is_said_as_faster_never_as_a_ratio_below_one():
    finding = keras_finding(both(4.7, 66.0))
    assert finding.title.startswith("predict under Keras 3 is 14.0x faster than under Keras 2")
    assert finding.severity == "info" and "0." not in finding.title.split("faster")[0]


def test_equal_medians_and_few_calls_give_no_verdict_either_way():
    same = keras_finding(both(5.0, 5.0))
    assert "differ by less than the noise" in same.title and same.severity == "info"
    assert "slower" not in same.title and "faster" not in same.title
    few = keras_finding(both(66.0, 4.7, calls=3))
    assert few.title.startswith("Not enough calls to compare predict") and "n=3" in few.title
    assert "slower" not in few.title and "faster" not in few.title and few.strategy is None


def test_a_run_under_one_keras_has_no_keras_versions_finding():
    assert keras_finding(side(66.0, legacy=False)) is None
    assert views.keras_sides(side(66.0, legacy=False)) is None


def test_a_keras2_era_file_points_at_keras_both_unless_it_ran_both():
    model = fx.model_info(source="old model.h5", format="h5", keras2_signs=["its keras_version attribute is '2.2.4'"])
    single = dataclasses.replace(side(66.0, legacy=False), model=model)
    finding = next(f for f in diagnose(single) if f.id == "keras2-file")
    assert "2.2.4" in " ".join(finding.evidence)
    assert "kdiag inspect 'old model.h5' --keras both" in finding.advice
    paired = dataclasses.replace(both(66.0, 4.7), model=model)
    assert "keras2-file" not in [f.id for f in diagnose(paired)]


def test_terminal_and_markdown_show_a_column_per_keras_and_predicts_phases_per_keras():
    keras2_findings = [fx.Finding("predict-overhead", "high", "model.predict takes 23x the time", [], "", "")]
    report = both(66.0, 4.7, findings=keras2_findings)
    # Verbose: the default terminal shows a verdict within the noise as "within noise", without its figures.
    for text in (render(report, "terminal", width=200, verbose=True), render(report, "markdown")):
        assert "Keras 2 (tf-keras 2.21.0) and Keras 3 (3.15.1) side by side" in text
        assert "Keras 3 14.0x slower" in text  # predict's row
        assert "within the noise (±40 µs)" in text  # predict_on_batch: the same figures on both sides
        assert "predict's phases under each Keras" in text
        assert "+" in text.split("predict's phases under each Keras")[1].split("tf.data pipeline")[1][:200]
        assert "model.predict takes 23x the time" in text  # the Keras 2 run's own findings
        assert "predict under Keras 3 is 14.0x slower" in text  # the finding
    assert views.keras_pairs(views.keras_sides(report))[0].name == "concrete function"  # fastest first


def test_side_by_side_verdicts_never_show_a_ratio_below_one_nor_judge_few_calls():
    faster = views.keras_pairs(views.keras_sides(both(4.7, 66.0)))
    assert next(p for p in faster if p.name == "predict").verdict_text == "Keras 3 14.0x faster"
    few = views.keras_pairs(views.keras_sides(both(66.0, 4.7, calls=3)))
    assert next(p for p in few if p.name == "predict").verdict_text == "no verdict (n=3 and n=3; at least 5 each)"
    noisy = views.keras_pairs(views.keras_sides(both(5.0, 4.0, predict_iqr_ms=2.0)))
    assert next(p for p in noisy if p.name == "predict").verdict_text == "within the noise (±4 ms)"


def test_kdiag_compare_works_on_both_reports_and_says_which_run_it_compared(tmp_path):
    report = both(66.0, 4.7)
    comparison = compare_reports(report, report, 10.0)
    assert not comparison.regressions
    assert any("--keras both" in w and "Keras 3 (3.15.1) run" in w for w in comparison.warnings)
    path = tmp_path / "report.json"
    path.write_text(render(report, "json"))
    assert read_report(path).other_keras is not None
    code, out, err = run_cli("compare", path, path)
    assert code == 0, err
    assert "predict" in out


# --- choosing the Keras, and the refusals ----------------------------------------------


@pytest.mark.parametrize("keras", ["2", "both"])
def test_without_tf_keras_keras_2_and_both_are_refused_in_one_line(monkeypatch, tmp_path, keras):
    monkeypatch.setattr(keras_child, "tf_keras_installed", lambda: False)
    out = tmp_path / "run"
    result = run_cli("inspect", "--example", "tiny", "--keras", keras, "--out", out, *FAST)
    assert_refused(result, "tf-keras is not installed", "pip install kdiag[legacy]")
    assert not out.exists()


def test_keras_option_is_checked_once_for_the_cli_and_the_api(capsys):
    code, _, _ = run_cli("inspect", "--example", "tiny", "--keras", "4")
    assert code == 2 and "argument --keras: invalid choice: '4'" in capsys.readouterr().err  # argparse's own line
    with pytest.raises(KdiagError, match="--keras must be one of 2, 3, both"):
        RunConfig(example="tiny", keras="4")
    assert RunConfig(example="tiny", keras=2).keras == "2"


def test_sides_put_this_process_first(monkeypatch):
    monkeypatch.delenv("TF_USE_LEGACY_KERAS", raising=False)
    assert keras_child.sides(RunConfig(example="tiny", keras="both")) == ["3", "2"]
    assert keras_child.sides(RunConfig(example="tiny", keras="2")) == ["2"]
    assert keras_child.sides(RunConfig(example="tiny")) == ["3"]
    monkeypatch.setenv("TF_USE_LEGACY_KERAS", "1")
    assert keras_child.sides(RunConfig(example="tiny", keras="both")) == ["2", "3"]


def test_the_child_gets_the_same_request_with_absolute_paths(tmp_path):
    (tmp_path / "m.h5").write_bytes(b"")
    config = RunConfig(model="m.h5", inputs="x.npy", batch_size=4, input_shapes={"tokens": (8,)},
                       strategies=("predict", "concrete"), budget_s=0.25, min_calls=7, unsafe=True,
                       custom_objects={"Thing": object}, custom_objects_file="layers.py", profile=False,
                       keras="both")
    argv = keras_child.child_arguments(config, "2", Path("out/keras-2"), tmp_path)
    assert argv[:2] == ["inspect", str(tmp_path / "m.h5")]
    pairs = dict(zip(argv, argv[1:]))
    assert pairs["--inputs"] == str(tmp_path / "x.npy")
    assert pairs["--custom-objects"] == str(tmp_path / "layers.py")
    assert pairs["--out"] == str(tmp_path / "out" / "keras-2")
    assert (pairs["--batch-size"], pairs["--input-shape"], pairs["--strategies"]) == ("4", "tokens=8",
                                                                                     "predict,concrete")
    assert (pairs["--budget"], pairs["--min-calls"], pairs["--keras"], pairs["--format"]) == ("0.25", "7", "2",
                                                                                             "json")
    assert "--unsafe" in argv and "--no-profile" in argv
    with pytest.raises(KdiagError, match="in-memory model"):
        keras_child.child_arguments(dataclasses.replace(config, model=object()), "2", tmp_path, tmp_path)
    with pytest.raises(KdiagError, match="--custom-objects module.py"):
        keras_child.child_arguments(dataclasses.replace(config, custom_objects_file=None), "2", tmp_path, tmp_path)


def test_the_child_imports_this_kdiag_first_and_never_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", ["", str(tmp_path), *__import__("sys").path])
    path = keras_child.import_path()
    assert path[0] == str(Path(keras_child.__file__).resolve().parents[2])
    assert "" not in path and str(tmp_path) not in path


# --- Keras 2-era files -------------------------------------------------------------------


def _keras2_era_h5(path: Path, version: str = "2.2.4") -> Path:
    """The attributes Keras 2.2.4 wrote: no `module` keys, batch_input_shape (h5py only, no Keras)."""
    import h5py

    config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        {"class_name": "Dense", "config": {"name": "dense", "batch_input_shape": [None, 4], "units": 1,
                                           "kernel_initializer": {"class_name": "GlorotUniform",
                                                                  "config": {"seed": None}}}}]}}
    with h5py.File(path, "w") as handle:
        handle.attrs["keras_version"] = version
        handle.attrs["backend"] = "tensorflow"
        handle.attrs["model_config"] = json.dumps(config)
    return path


def test_keras2_signs_read_from_the_file(tmp_path):
    signs = keras2_signs(_keras2_era_h5(tmp_path / "old.h5"))
    assert signs[0] == "its keras_version attribute is '2.2.4'"
    assert any("batch_input_shape" in s for s in signs) and any("'module'" in s for s in signs)
    theano = _keras2_era_h5(tmp_path / "theano.h5", version="1.2.2")
    import h5py

    with h5py.File(theano, "r+") as handle:
        handle.attrs["backend"] = "theano"
    assert any("'theano'" in s for s in keras2_signs(theano))
    assert keras2_signs(tmp_path / "missing.h5") == []  # informational: a file it cannot read has no signs


# --- real runs: a tf-keras .h5 made here ------------------------------------------------


@pytest.fixture(scope="module")
def tf_keras_h5(tmp_path_factory):
    tf_keras = pytest.importorskip("tf_keras")
    path = tmp_path_factory.mktemp("k2") / "legacy.h5"
    tf_keras.utils.set_random_seed(0)
    tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(3, activation="relu"),
                         tf_keras.layers.Dense(1)]).save(path)
    return path


@pytest.mark.slow
def test_keras_both_on_a_tf_keras_h5_prints_both_columns_and_json_carries_both(tf_keras_h5, tmp_path):
    out = tmp_path / "run"
    code, stdout, stderr = run_cli("inspect", tf_keras_h5, "--keras", "both", "--strategies", "predict,concrete",
                                   "--profile-calls", "2", "--out", out, *FAST)
    assert code == 0, stderr
    assert "] Keras 2: in a child process" in stderr  # a step of its own in the parent's progress
    head = "Keras 2 (tf-keras 2.21.0) and Keras 3 (3.15.1) side by side"
    markdown = (out / "report.md").read_text()
    sign = "The file looks saved by Keras 2: its keras_version attribute is '2.21.0'"
    for text, shown in ((stdout, sign), (markdown, sign.replace("_", "\\_"))):  # Markdown escapes the file's text
        assert head in text and "predict's phases under each Keras" in text
        assert shown in " ".join(text.split())
    section = stdout.split(head)[1].split("Strategies:")[0]
    assert all(name in section for name in ("predict", "concrete function"))
    data = json.loads((out / "report.json").read_text())
    assert data["environment"]["legacy_keras"] is False
    assert data["other_keras"]["environment"]["legacy_keras"] is True
    assert data["other_keras"]["environment"]["keras"].startswith("2.")
    for run in (data, data["other_keras"]):
        assert [p["scenario"] for p in run["profiles"]] == ["predict"]
        assert {s["name"] for s in run["strategies"] if s["available"]} == {"predict", "concrete function"}
    assert "keras-versions" in [f["id"] for f in data["findings"]]
    assert data["settings"]["command"].startswith("kdiag inspect") and "--keras both" in data["settings"]["command"]
    assert (out / "keras-2" / "report.json").is_file()  # the Keras 2 run's own folder, inside this one
    assert read_report(out / "report.json").other_keras is not None


@pytest.mark.slow
def test_keras_2_alone_runs_under_tf_keras_in_a_child(tf_keras_h5, tmp_path):
    code, stdout, stderr = run_cli("inspect", tf_keras_h5, "--keras", "2", "--strategies", "predict",
                                   "--no-profile", "--format", "json", "--out", tmp_path / "run", *FAST)
    assert code == 0, stderr
    data = json.loads(stdout)
    assert data["environment"]["legacy_keras"] is True and data["environment"]["keras"].startswith("2.")
    assert data["other_keras"] is None
    assert data["settings"]["command"].startswith("kdiag inspect") and "--keras 2" in data["settings"]["command"]
    assert data["strategies"][0]["name"] == "predict" and data["strategies"][0]["median_s"] > 0
    # Under tf-keras the file is a Keras 2 file: the finding points at --keras both.
    assert "keras2-file" in [f["id"] for f in data["findings"]]


@pytest.mark.slow
def test_a_keras_2_era_h5_run_under_keras_3_names_keras_both(tmp_path):
    tf_keras = pytest.importorskip("tf_keras")
    import h5py

    path = tmp_path / "old.h5"
    tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(1)]).save(path)
    with h5py.File(path, "r+") as handle:
        handle.attrs["keras_version"] = "2.2.4"
    code, stdout, stderr = run_cli("inspect", path, "--strategies", "predict", "--no-profile", "--format", "markdown",
                                   "--out", tmp_path / "run", *FAST)
    assert code == 0, stderr
    assert "This file looks saved by Keras 2: measure it under both Keras with --keras both" in stdout
    assert "keras\\_version attribute is '2.2.4'" in stdout  # the file's text, escaped for Markdown
    assert "old.h5 --keras both" in stdout  # the folder is redacted in report.md (<model-dir>)


@pytest.mark.slow
def test_a_lambda_h5_under_keras_both_is_refused_once_before_any_child(tmp_path, monkeypatch):
    tf_keras = pytest.importorskip("tf_keras")
    marker = tmp_path / "marker"
    inputs = tf_keras.Input((3,))
    touch = tf_keras.layers.Lambda(lambda x, path=str(marker): (open(path, "a").close(), x)[1], name="touch")
    tf_keras.Model(inputs, touch(inputs)).save(tmp_path / "lambda.h5")
    marker.unlink()  # building the model ran the Lambda once

    def no_child(*args, **kwargs):
        raise AssertionError("a child process was started for a refused file")

    monkeypatch.setattr(keras_child, "run_child", no_child)
    out = tmp_path / "run"
    line = assert_refused(run_cli("inspect", tmp_path / "lambda.h5", "--keras", "both", "--out", out, *FAST),
                          "Lambda layer 'touch'", "--unsafe")
    assert line.count("Lambda") == 1
    assert not out.exists() and not marker.exists()
