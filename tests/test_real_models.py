"""Real model files, made here in code: a Keras 2-era .h5 whose training config Keras 3 rejects, a
keras.applications model, and a model whose compiled load fails. One strategy that cannot run never
sinks the run: each gives exit 0 with the substituted or failed row explained."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FAST = ["--budget", "0.05", "--min-calls", "2", "--no-profile"]

KERAS2_H5 = textwrap.dedent("""
    import json, sys
    import h5py
    import tf_keras
    model = tf_keras.Sequential([tf_keras.layers.Input((8,)), tf_keras.layers.Dense(16, activation="relu"),
                                 tf_keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.save(sys.argv[1])
    # What Keras 2.2-era files carry: a bare Adam with `lr` and `decay`, which Keras 3 rejects.
    with h5py.File(sys.argv[1], "r+") as f:
        config = json.loads(f.attrs["training_config"])
        config["optimizer_config"] = {"class_name": "Adam", "config": {
            "lr": 0.001, "beta_1": 0.9, "beta_2": 0.999, "decay": 0.0, "epsilon": 1e-07, "amsgrad": False}}
        config["metrics"] = ["accuracy"]
        if sys.argv[2] == "unloadable":  # a damaged config: neither it nor its loss can be compiled
            config["loss_weights"] = "heavy"
        f.attrs["training_config"] = json.dumps(config)
        f.attrs["keras_version"] = "2.2.4"
""")


def _keras2_h5(tmp_path: Path, variant: str) -> Path:
    path = tmp_path / f"keras2-{variant}.h5"
    subprocess.run([sys.executable, "-c", KERAS2_H5, str(path), variant], check=True, capture_output=True,
                   timeout=300)
    return path


def _inspect(model: Path, out: Path, *options: str):
    result = subprocess.run([sys.executable, "-m", "kdiag", "inspect", str(model), "--out", str(out), *FAST,
                             *options], capture_output=True, text=True, timeout=600, cwd=ROOT)
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else None
    return result, report


def _row(report, name):
    return next(s for s in report["strategies"] if s["name"] == name)


@pytest.mark.slow
def test_keras2_h5_with_lr_gives_a_report_with_the_substitution_explained(tmp_path):
    result, report = _inspect(_keras2_h5(tmp_path, "lr"), tmp_path / "run")
    assert result.returncode == 0, result.stderr
    compiled = _row(report, "predict (compiled)")
    assert compiled["available"] and compiled["median_s"] > 0
    how = report["model"]["compile_config"]
    assert "could not be restored" in how and "lr" in how
    assert "'categorical_crossentropy'" in how and "['accuracy']" in how and "'rmsprop'" in how


@pytest.mark.slow
def test_a_compiled_load_that_fails_twice_is_one_failed_row(tmp_path):
    result, report = _inspect(_keras2_h5(tmp_path, "unloadable"), tmp_path / "run")
    assert result.returncode == 0, result.stderr
    compiled = _row(report, "predict (compiled)")
    assert not compiled["available"]
    assert compiled["reason"].startswith("failed to prepare:")
    assert _row(report, "predict")["median_s"] > 0  # the rest of the run went on
    assert sum(1 for s in report["strategies"] if s["available"]) >= 6


@pytest.mark.slow
def test_a_keras_applications_model_is_inspected(tmp_path):
    path = tmp_path / "mobilenet_v3_small.keras"
    build = textwrap.dedent("""
        import sys, keras
        model = keras.applications.MobileNetV3Small(input_shape=(64, 64, 3), weights=None, classes=10,
                                                    include_preprocessing=False)
        model.save(sys.argv[1])
    """)
    subprocess.run([sys.executable, "-c", build, str(path)], check=True, capture_output=True, timeout=300)
    result, report = _inspect(path, tmp_path / "run", "--strategies", "predict,predict_on_batch,concrete")
    assert result.returncode == 0, result.stderr
    assert report["model"]["parameters"] > 100_000
    for name in ("predict", "predict_on_batch", "concrete function"):
        row = _row(report, name)
        assert row["available"] and row["outputs_match"], row


def test_predict_that_cannot_run_is_the_one_exit_2(monkeypatch):
    import io

    from kdiag.cli import Env, main
    from kdiag.engine.runtimes import strategies

    def broken(ctx):
        raise RuntimeError("predict cannot run on this model")

    import dataclasses

    monkeypatch.setitem(strategies.BY_KEY, "predict", dataclasses.replace(strategies.BY_KEY["predict"], prepare=broken))
    err = io.StringIO()
    code = main(["inspect", "--example", "tiny", "--no-profile", "--budget", "0.01", "--min-calls", "1",
                 "--strategies", "predict,predict_on_batch"], Env(io.StringIO(), err))
    assert code == 2
    errors = [line for line in err.getvalue().splitlines() if line.startswith("kdiag: error:")]
    assert len(errors) == 1 and "Traceback" not in err.getvalue()
    assert errors[0].startswith("kdiag: error: predict could not be measured on this model "
                                "(failed to prepare: RuntimeError: predict cannot run on this model)")
    assert "] measure: " not in err.getvalue()  # refused before timing the others


@pytest.mark.slow
def test_mobilenetv2_built_in_code_gets_the_drop_in_fix_first_and_the_verdict_names_it(tmp_path):
    """keras.applications.MobileNetV2 (weights=None: nothing downloaded), its BatchNormalization layers
    behaving differently under training=True: finding 1 is the drop-in fix with its snippet, the
    training flag a note after it, and the terminal's last line names the same path."""
    path = tmp_path / "mobilenet_v2.keras"
    build = textwrap.dedent("""
        import sys, keras
        model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=10)
        model.save(sys.argv[1])
    """)
    subprocess.run([sys.executable, "-c", build, str(path)], check=True, capture_output=True, timeout=300)
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "-m", "kdiag", "inspect", str(path), "--out", str(out), "--budget", "0.3",
                             "--no-profile", "--no-sweeps", "--no-memory-loop", "--no-ops",
                             "--strategies", "predict,predict_on_batch,eager,concrete"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["training_dependent_layers"]  # BatchNormalization
    first = report["findings"][0]
    assert first["id"] == "predict-overhead" and first["snippet"], [f["id"] for f in report["findings"]]
    assert report["verdict"]["fix"]["strategy"] == first["strategy"] and report["verdict"]["fix_recommended"]
    last = result.stdout.rstrip("\n").splitlines()[-1]
    assert f"fix: {first['strategy']}" in last, last
    notes = [f for f in report["findings"] if f["id"] == "training-dependent-layers"]
    assert all(f["severity"] == "info" and not f["snippet"] for f in notes)
