"""A run bounded in time and stoppable at any moment, and outputs checked sanely (issue 20, items 8, 9, 11),
on real models built here: a 2,000-layer config, custom layers loaded by consent that sleep in every call,
add noise or raise from their third call on, and a model whose outputs are NaN.

The time limit and signals are checked as a user meets them, `python -m kdiag` in a child process with
its own temporary folder, timed from outside.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

from conftest import FAST
from test_runfolder_faults import wait_for

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def kdiag_child(*argv, tmp: Path, **env) -> subprocess.Popen:
    """`python -m kdiag ARGV`, with its own TMPDIR (nothing it leaves there escapes the test)."""
    return subprocess.Popen([sys.executable, "-m", "kdiag", *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp,
                            env={**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp / "system-tmp"), **env})


@pytest.fixture
def tmp(tmp_path):
    (tmp_path / "system-tmp").mkdir()
    return tmp_path


def leftovers(tmp: Path) -> list:
    """What kdiag (its temporary root, the folders in it) or TensorFlow's autograph left in the run's TMPDIR."""
    return sorted(p.name for p in (tmp / "system-tmp").iterdir())


def error_lines(stderr: str) -> list:
    return [line for line in stderr.splitlines() if line.startswith("kdiag: error:")]


# --- custom layers, loaded by consent (--custom-objects) -----------------------------------------------

def py_function_layer(class_name: str, body: str, prelude: str = "") -> str:
    """A module defining `class_name`, a layer whose call runs `_body(x)` (Python) in a tf.py_function."""
    return textwrap.dedent(f'''
        import os, time
        import keras, tensorflow as tf
        {prelude}
        def _body(x):
            {body}
            return x

        @keras.saving.register_keras_serializable(package="kdiag_tests")
        class {class_name}(keras.layers.Layer):
            def call(self, x):
                y = tf.py_function(_body, [x], Tout=x.dtype)
                y.set_shape(x.shape)
                return y
    ''')


SLOW = py_function_layer("Slow", 'time.sleep(float(os.environ["SLOW_S"]))')
FAILING = py_function_layer("ThirdCallFails", 'CALLS.append(x)\n            if len(CALLS) >= 3: raise RuntimeError("the third call fails")',
                            prelude="CALLS = []")

NOISY = textwrap.dedent('''
    import keras, tensorflow as tf

    @keras.saving.register_keras_serializable(package="kdiag_tests")
    class Noisy(keras.layers.Layer):
        def call(self, x):
            return x + tf.random.uniform(tf.shape(x))
''')


def custom_model(folder: Path, source: str, class_name: str):
    """(model.keras, module.py): Dense(3) then the module's layer, saved by this process."""
    module = folder / f"{class_name.lower()}_layer.py"
    module.write_text(source)
    namespace = {}
    exec(compile(source, str(module), "exec"), namespace)  # the test's own code, to save the model with
    import keras

    inputs = keras.Input((4,))
    model = keras.Model(inputs, namespace[class_name]()(keras.layers.Dense(3)(inputs)))
    path = folder / f"{class_name.lower()}.keras"
    model.save(path)
    return path, module, namespace[class_name]


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory):
    return custom_model(tmp_path_factory.mktemp("slow"), SLOW, "Slow")[:2]


# --- the time limit holds from the first byte (item 8) ---------------------------------------------------

def deep_config(path: Path, layers: int) -> Path:
    """A Sequential of `layers` ReLUs, as Keras 3 writes it, with no weights (a few KB)."""
    config = {"module": "keras", "class_name": "Sequential", "registered_name": None,
              "config": {"name": "deep", "build_input_shape": [None, 4], "layers": [
                  {"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
                   "config": {"batch_shape": [None, 4], "dtype": "float32", "name": "in"}}] + [
                  {"module": "keras.layers", "class_name": "ReLU", "registered_name": None, "config": {"name": f"r{i}"}}
                  for i in range(layers)]},
              "build_config": {"input_shape": [None, 4]}}
    import h5py

    weights = path.with_suffix(".weights.h5")
    with h5py.File(weights, "w") as handle:  # what Keras writes for a model without weights
        handle.create_group("layers")
        handle.create_group("vars")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.writestr("config.json", json.dumps(config))
        archive.write(weights, "model.weights.h5")
    return path


def test_a_2000_layer_config_is_stopped_by_the_time_limit_with_one_line(tmp):
    model = deep_config(tmp / "deep.keras", 2000)
    assert model.stat().st_size < 16_000
    start = time.perf_counter()
    process = kdiag_child("inspect", model, "--time-limit", 20, "--out", tmp / "run", tmp=tmp)
    stdout, stderr = process.communicate(timeout=120)
    elapsed = time.perf_counter() - start
    assert process.returncode == 2, stderr[-3000:]
    assert elapsed < 20 + 4, f"ended {elapsed - 20:.1f} s after the limit"
    assert error_lines(stderr) == [
        "kdiag: error: loading the model did not finish within --time-limit 20 s (stopped after 20 s; nothing was "
        "measured). rerun with a larger --time-limit (0 for none) if the model is meant to take this long"]
    assert "Traceback" not in stderr and stdout == ""
    assert not (tmp / "run").exists(), "nothing half-written"
    assert leftovers(tmp) == []


def test_calls_that_overrun_the_limit_end_within_seconds_of_it(tmp, slow_model):
    model, module = slow_model
    start = time.perf_counter()
    process = kdiag_child("inspect", model, "--custom-objects", module, "--time-limit", 12, "--out", tmp / "run",
                          tmp=tmp, SLOW_S="5")
    _, stderr = process.communicate(timeout=120)
    elapsed = time.perf_counter() - start
    assert elapsed < 12 + 3, f"ended {elapsed - 12:.1f} s after the limit"
    # 5 s a call: a first call and a warm-up leave no timed call of predict within 12 s.
    assert process.returncode == 2, stderr[-3000:]
    assert error_lines(stderr) == ["kdiag: error: predict could not be measured on this model (not measured: the time "
                                   "limit was reached before its first timed call). rerun with a larger --time-limit"]
    assert "Traceback" not in stderr
    assert not (tmp / "run").exists() and leftovers(tmp) == []


# --- signals during a long call (item 9) ----------------------------------------------------------------

def test_sigterm_during_a_30_s_call_exits_143_within_5_s_and_leaves_nothing_behind(tmp, slow_model):
    model, module = slow_model
    out = tmp / "run"
    process = kdiag_child("inspect", model, "--custom-objects", module, "--strategies", "predict,concrete",
                          "--out", out, tmp=tmp, SLOW_S="30")
    seen = wait_for(process, "] measure: ")
    assert (out / ".kdiag-run.lock").exists() and leftovers(tmp) == [f"kdiag-{os.getuid()}"]
    time.sleep(2)  # inside predict's first call, 28 s from its end
    sent = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert time.perf_counter() - sent < 5, "SIGTERM waited for the call"
    assert process.returncode == 143, seen + stderr
    assert "Traceback" not in stderr
    assert f"interrupted (SIGTERM); what was measured is saved, marked incomplete, in {out}/" in stderr
    report = json.loads((out / "report.json").read_text())
    assert report["incomplete"] is True and any("SIGTERM" in note for note in report["notes"])
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.md", "repro.py"]
    assert leftovers(tmp) == [], "no temporary copy of the model, no lock, no autograph file"


# --- outputs (item 11) -----------------------------------------------------------------------------------

def test_a_model_raising_from_its_third_call_prints_no_tensorflow_traceback_without_debug(tmp):
    model, module, _ = custom_model(tmp, FAILING, "ThirdCallFails")
    results = {}
    for debug in ((), ("--debug",)):
        process = kdiag_child("inspect", model, "--custom-objects", module, "--strategies", "predict", "--no-profile",
                              "--budget", "0.1", *debug, tmp=tmp)
        results[bool(debug)] = (process.communicate(timeout=180), process.returncode)
    (_, quiet), code = results[False]
    assert code == 2, quiet[-3000:]
    assert error_lines(quiet) == [line for line in quiet.splitlines() if not line.startswith("kdiag: [")]
    line, = error_lines(quiet)
    assert "predict could not be measured" in line and "UnknownError on call 3" in line
    assert "Traceback" not in quiet and "the third call fails" not in quiet
    (_, loud), code = results[True]
    assert code == 2
    # TensorFlow's own report of the failing call, with the py_function's Python traceback.
    assert "RuntimeError: the third call fails" in loud and 'in _body\n' in loud


def test_a_nan_model_gets_its_finding_and_no_strategy_differs(keras):
    import kdiag

    inputs = keras.Input((4,))
    nan = keras.layers.Dense(3, kernel_initializer=keras.initializers.Constant(float("nan")))
    report = kdiag.inspect(keras.Model(inputs, nan(inputs)), strategies=["predict", "predict_on_batch", "concrete"],
                           **FAST)
    finding = report.findings[0]
    assert finding.id == "nonfinite-outputs" and finding.severity == "high"
    assert finding.title.startswith("predict's outputs are not finite: ") and "values are NaN or infinite" in finding.title
    assert not any(f.id == "outputs-differ" for f in report.findings)
    assert all(s.outputs.matches for s in report.strategies)


def test_a_model_whose_outputs_vary_is_never_recommended(tmp):
    import kdiag
    from kdiag import views

    model, _, noisy = custom_model(tmp, NOISY, "Noisy")
    report = kdiag.inspect(model, custom_objects={"Noisy": noisy},
                           strategies=["predict", "predict_on_batch", "concrete"], **FAST)
    assert all(s.outputs.varies for s in report.strategies)
    assert all(f.strategy is None and not f.snippet for f in report.findings if f.id != "training-dependent-layers")
    assert views.fastest_matching(report) is None
    assert any(f.id == "outputs-vary" and f.severity == "high" for f in report.findings)
