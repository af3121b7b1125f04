"""The real CLI, in-process and as a subprocess; bad input gets one clean line and exit 2."""

import json
import os
import subprocess
import sys
import zipfile

import pytest

from checks import assert_refused, run


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Default run folders (reports/...) land in a temporary directory, not the checkout."""
    monkeypatch.chdir(tmp_path)


FAST_ARGS = ["--budget", "0.02", "--min-calls", "2", "--no-profile"]


def run_cli(*argv):
    """(exit status, stdout, stderr) of `kdiag ARGV`, in-process."""
    return run(*argv)[:3]


def run_subprocess(*argv, cwd=None):
    return subprocess.run([sys.executable, "-m", "kdiag", *argv], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})


def test_help_is_instant_and_does_not_import_tensorflow():
    code = ("import sys, io\nfrom kdiag.cli import main, Env\n"
            "main(['--help'], Env(io.StringIO(), io.StringIO()))\n"
            "main(['inspect', '--help'], Env(io.StringIO(), io.StringIO()))\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_help_lists_exactly_the_strategy_keys():
    from kdiag.cli import build_parser
    from kdiag.engine.runtimes.strategies import STRATEGIES

    inspect_parser = build_parser()._subparsers._group_actions[0].choices["inspect"]
    strategies_help = next(a.help for a in inspect_parser._actions if a.dest == "strategies")
    assert strategies_help == "only these, comma-separated, from: " + ", ".join(s.identity.key for s in STRATEGIES)


@pytest.mark.parametrize("columns", [60, 80, 100])
def test_inspect_help_never_breaks_a_strategy_key_or_an_example_name(columns, monkeypatch):
    from kdiag.cli import build_parser
    from kdiag.datamodel.strategies import BY_KEY

    monkeypatch.setenv("COLUMNS", str(columns))
    text = build_parser()._subparsers._group_actions[0].choices["inspect"].format_help()
    words = {word.strip(",.:;()") for line in text.splitlines() for word in line.split()}
    for name in list(BY_KEY) + ["mnist-softmax", "mnist-cnn"]:
        assert name in words, name  # whole on one line, never "predict-" then "compiled"
    assert all(len(line) <= columns for line in text.splitlines() if "[--" not in line)  # usage: argparse


def test_no_command_prints_help():
    code, out, _ = run_cli()
    assert code == 0 and "inspect" in out


@pytest.mark.slow
def test_inspect_example_in_process_json(tmp_path):
    code, out, err = run_cli("inspect", "--example", "tiny", "--format", "json", "--out", str(tmp_path / "run"),
                             *FAST_ARGS)
    assert code == 0, err
    data = json.loads(out)
    measured = [s for s in data["strategies"] if s["available"] and s["median_s"]]
    assert len(measured) >= 8
    assert all(s["outputs_match"] for s in measured)
    assert data["settings"]["command"].startswith("kdiag inspect --example tiny")
    assert "] load: example tiny" in err  # progress goes to stderr, never into the JSON
    saved = json.loads((tmp_path / "run" / "report.json").read_text())
    assert saved["strategies"] == data["strategies"]
    assert (tmp_path / "run" / "report.md").read_text().startswith("#")


@pytest.mark.slow
def test_inspect_as_subprocess_terminal_report(model_files, tmp_path):
    result = run_subprocess("inspect", str(model_files / "tiny.keras"), "--strategies",
                            "predict,predict-compiled,tf-function", "--out", str(tmp_path / "run"), "--verbose",
                            *FAST_ARGS)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for text in ("Environment", "TensorFlow", "Strategies", "predict (compiled)", "tf.function", "match",
                 "the training config saved in the file"):  # --verbose: the environment and model sections
        assert text in out
    assert "Traceback" not in result.stderr
    assert "cuInit" not in result.stderr  # native start-up noise is held back


def test_missing_path():
    assert_refused(run_cli("inspect", "/nonexistent/model.keras"), "does not exist")


def test_no_model_at_all():
    assert_refused(run_cli("inspect"), "no model given", "--example")


def test_directory_that_is_not_a_savedmodel(tmp_path):
    assert_refused(run_cli("inspect", str(tmp_path)), "not a SavedModel", "saved_model.pb")


@pytest.mark.parametrize("name", ["empty.h5", "empty.keras"])
def test_empty_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    assert_refused(run_cli("inspect", str(tmp_path / name)), "is empty")


def test_text_renamed_h5(tmp_path):
    (tmp_path / "notes.h5").write_text("this is not a model\n")
    assert_refused(run_cli("inspect", str(tmp_path / "notes.h5")), "not an HDF5 file")


def test_text_renamed_keras(tmp_path):
    (tmp_path / "notes.keras").write_text("this is not a model\n")
    assert_refused(run_cli("inspect", str(tmp_path / "notes.keras")), "not a valid .keras file")


def test_unknown_extension(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"\x08\x01")
    assert_refused(run_cli("inspect", str(tmp_path / "model.onnx")), "extension", ".keras")


@pytest.mark.slow
def test_truncated_h5(model_files, tmp_path):
    data = (model_files / "tiny.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    assert_refused(run_cli("inspect", str(tmp_path / "cut.h5")), "cut.h5")


@pytest.mark.slow
def test_truncated_keras_zip(model_files, tmp_path):
    data = (model_files / "tiny.keras").read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    assert_refused(run_cli("inspect", str(tmp_path / "cut.keras")), "cut.keras")


def test_zip_without_config(tmp_path):
    with zipfile.ZipFile(tmp_path / "noconfig.keras", "w") as archive:
        archive.writestr("metadata.json", "{}")
    assert_refused(run_cli("inspect", str(tmp_path / "noconfig.keras")), "without config.json")


@pytest.mark.slow
def test_model_needing_custom_objects(keras, tmp_path):
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    Doubler.__module__ = "somebody_elses_package.layers"  # not importable here
    inputs = keras.Input((3,))
    keras.Model(inputs, Doubler()(inputs)).save(tmp_path / "custom.keras")
    assert_refused(run_cli("inspect", str(tmp_path / "custom.keras")), "custom object", "--custom-objects")


@pytest.mark.slow
def test_lambda_layer_is_refused_without_unsafe(keras, tmp_path):
    inputs = keras.Input((3,))
    keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs)).save(tmp_path / "lambda.keras")
    assert_refused(run_cli("inspect", str(tmp_path / "lambda.keras")), "Lambda", "--unsafe")
    code, out, err = run_cli("inspect", str(tmp_path / "lambda.keras"), "--unsafe", "--strategies", "predict",
                             "--format", "json", "--out", str(tmp_path / "run"), *FAST_ARGS)
    assert code == 0, err
    assert json.loads(out)["strategies"][0]["available"]


@pytest.mark.slow
def test_unresolved_dynamic_axis(keras, tmp_path):
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    keras.Model(tokens, keras.layers.Embedding(10, 2)(tokens)).save(tmp_path / "seq.keras")
    assert_refused(run_cli("inspect", str(tmp_path / "seq.keras")), "dynamic axis", "--input-shape tokens=")


@pytest.mark.parametrize("size", ["0", "-4"])
def test_nonpositive_batch_size(size):
    assert_refused(run_cli("inspect", "--example", "tiny", "--batch-size", size), "--batch-size")


@pytest.mark.slow
def test_batch_size_that_would_exhaust_memory_is_refused_with_the_estimate():
    code, out, err = run_cli("inspect", "--example", "mnist-cnn", "--batch-size", "100000000")
    assert_refused((code, out, err), "GiB", "--batch-size")


def test_bad_budget():
    assert_refused(run_cli("inspect", "--example", "tiny", "--budget", "0"), "--budget")


def test_unknown_option_is_a_usage_error():
    code, out, err = run_cli("inspect", "--frobnicate")
    assert code == 2


@pytest.mark.slow
def test_debug_shows_the_traceback(tmp_path):
    (tmp_path / "notes.h5").write_text("not a model")
    code, _, err = run_cli("--debug", "inspect", str(tmp_path / "notes.h5"))
    assert code == 2 and "Traceback" in err and "kdiag: error:" in err


def test_refusal_as_subprocess_has_no_traceback(tmp_path):
    (tmp_path / "notes.keras").write_text("not a model")
    result = run_subprocess("inspect", str(tmp_path / "notes.keras"))
    assert_refused((result.returncode, result.stdout, result.stderr), "not a valid .keras file")


def test_compare_exit_code_gates_on_a_regression(tmp_path):
    import dataclasses

    from kdiag.datamodel.measurement import Measurement
    from kdiag.render.json import render as render_json

    sys.path.insert(0, os.path.dirname(__file__))
    import factories as fx

    before = fx.report(fx.typical_keras3())
    slower = [dataclasses.replace(s, measurement=Measurement(s.name, s.measurement.first_call_s,
                                                             tuple(t * 3 for t in s.measurement.samples_s)))
              if s.name == "predict_on_batch" else s for s in before.strategies]
    after = dataclasses.replace(before, strategies=slower)
    (tmp_path / "a.json").write_text(render_json(before))
    (tmp_path / "b.json").write_text(render_json(after))
    code, out, _ = run_cli("compare", str(tmp_path / "a.json"), str(tmp_path / "a.json"), "--fail-above", "10")
    assert code == 0 and "No regression" in out
    code, out, _ = run_cli("compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--fail-above", "10")
    assert code == 3 and "predict_on_batch" in out
    code, _, _ = run_cli("compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert code == 0  # without --fail-above it reports, it does not gate
    assert_refused(run_cli("compare", str(tmp_path / "a.json"), str(tmp_path / "missing.json")), "missing.json")


def test_rules_prints_phases_landmarks_and_thresholds():
    code, out, _ = run_cli("rules")
    assert code == 0
    for text in ("tracing", "keras/src/trainers/data_adapters/", "tf_keras/src/engine/", "predict-overhead",
                 "_create_graph_function"):
        assert text in out
