"""The C++ floor: build once (module-scoped), run on exported Keras models, compare with predict."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from kdiag.datamodel.strategies import CPP
from kdiag.engine.runtimes import cpp
from kdiag.engine.measure import MeasureSettings
from kdiag.errors import KdiagError

pytestmark = pytest.mark.slow

ERROR_PREFIX = "kdiag_cpp_baseline: error: "


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A private build cache, so the tests neither use nor disturb ~/.cache/kdiag."""
    path = tmp_path_factory.mktemp("kdiag-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KDIAG_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="module")
def binary(cache_dir):
    reason = cpp.unavailable_reason()
    if reason:
        if os.environ.get("CI"):  # CI has g++ and cmake: a missing toolchain there is a failure
            pytest.fail(f"cannot build the C++ baseline in CI: {reason}")
        pytest.skip(f"cannot build the C++ baseline here: {reason}")
    return cpp.build()


@pytest.fixture(scope="module")
def keras():
    from kdiag.engine.tf import tf_and_keras

    _, keras = tf_and_keras()
    return keras


@pytest.fixture(scope="module")
def tiny(keras, tmp_path_factory):
    """Input(4) -> Dense(2, relu) -> Dense(1, sigmoid), exported with model.export."""
    keras.utils.set_random_seed(1)
    x = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(2, activation="relu", bias_initializer="ones")(x)
    model = keras.Model(x, keras.layers.Dense(1, activation="sigmoid")(hidden))
    export_dir = tmp_path_factory.mktemp("tiny") / "saved_model"
    model.export(str(export_dir), verbose=False)
    return model, export_dir


@pytest.fixture(scope="module")
def two_inputs(keras, tmp_path_factory):
    """Two inputs of different dtypes (float32, int32) and two outputs."""
    keras.utils.set_random_seed(2)
    a = keras.Input((3,), name="a")
    b = keras.Input((2,), name="b", dtype="int32")
    joined = keras.layers.Concatenate()([keras.layers.Dense(4)(a), keras.ops.cast(b, "float32")])
    model = keras.Model([a, b], [keras.layers.Dense(2)(joined), keras.layers.Dense(1, activation="tanh")(joined)])
    export_dir = tmp_path_factory.mktemp("two") / "saved_model"
    model.export(str(export_dir), verbose=False)
    return model, export_dir


def _run_binary(binary, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True, env=env, timeout=120)


def _assert_clean_error(proc, *fragments):
    """Non-zero exit, nothing on stdout, exactly one line of ours on stderr and it is the last."""
    assert proc.returncode != 0
    assert proc.stdout == ""
    ours = [ln for ln in proc.stderr.splitlines() if ln.startswith(ERROR_PREFIX)]
    assert len(ours) == 1, proc.stderr
    assert proc.stderr.rstrip("\n").splitlines()[-1] == ours[0]
    assert "terminate called" not in proc.stderr and "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in ours[0]
    return ours[0]


# ---------------------------------------------------------------- building


def test_build_is_cached_per_tensorflow_version(binary, cache_dir):
    from importlib.metadata import version

    assert binary.is_file() and os.access(binary, os.X_OK)
    assert binary.parent.parent == cache_dir / "cpp"
    assert binary.parent.name.startswith(f"tf-{version('tensorflow')}-")
    built_at = binary.stat().st_mtime_ns
    assert cpp.build() == binary
    assert binary.stat().st_mtime_ns == built_at  # reused, not rebuilt
    stamp = json.loads((binary.parent / "build.stamp").read_text())
    assert stamp["tf_version"] == version("tensorflow")
    # Different sources or another TensorFlow install would not match the stamp.
    assert cpp._up_to_date(binary, binary.parent / "build.stamp", (binary.parent / "build.stamp").read_text())
    assert not cpp._up_to_date(binary, binary.parent / "build.stamp", json.dumps({**stamp, "sources_sha256": "x"}))


def test_missing_cmake_or_compiler_is_a_kdiag_error(monkeypatch):
    real_which = cpp.shutil.which
    monkeypatch.setattr(cpp.shutil, "which", lambda name: None if name == "cmake" else real_which(name))
    with pytest.raises(KdiagError, match="cmake is not installed") as err:
        cpp.build()
    assert "install" in err.value.fix
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(cpp.shutil, "which", lambda name: None if name.endswith("++") else real_which(name))
    with pytest.raises(KdiagError, match="no C\\+\\+17 compiler"):
        cpp.build()
    assert cpp.unavailable_reason().startswith("no C++17 compiler")


def test_importing_kdiag_cpp_does_not_import_tensorflow():
    code = "import sys, kdiag.engine.runtimes.cpp; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ---------------------------------------------------------------- running through Python


def test_tiny_model_outputs_match_predict(binary, tiny, tmp_path):
    model, export_dir = tiny
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    run = cpp.run_baseline(export_dir, {"x": x}, MeasureSettings(budget_s=0.1, min_calls=5), work_dir=tmp_path)

    expected = model.predict(x, verbose=0)
    assert set(run.outputs) == {"output_0"}
    got = run.outputs["output_0"]
    assert got.shape == expected.shape == (6, 1) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert np.ptp(got) > 1e-3  # a real function of x, not a constant

    m = run.measurement
    assert (m.strategy, m.source) == (CPP.name, "cpp")
    assert m.count >= 5 and not m.stopped_early
    assert m.mean_s * m.count >= 0.1  # the budget, over every timed call (samples_s may be a subset)
    assert all(s > 0 for s in m.samples_s) and m.first_call_s > 0
    assert m.median_s < 0.05  # a 4-2-1 MLP through TF_SessionRun is far below predict's cost
    assert run.load_s > 0 and run.tf_version
    assert run.command[0] == str(binary) and "--input" in run.command
    assert (tmp_path / "outputs" / "out_0.npy").is_file()  # work_dir kept what it was given


def test_two_input_model_outputs_match_predict(binary, two_inputs):
    model, export_dir = two_inputs
    rng = np.random.default_rng(1)
    a = rng.normal(size=(3, 3)).astype(np.float32)
    b = rng.integers(-3, 4, size=(3, 2)).astype(np.int64)  # cast to the signature's int32
    run = cpp.run_baseline(export_dir, {"a": a, "b": b}, MeasureSettings(budget_s=0.05, min_calls=3))

    expected = model.predict([a, b.astype(np.int32)], verbose=0)
    assert set(run.outputs) == {"output_0", "output_1"}
    np.testing.assert_allclose(run.outputs["output_0"], expected[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(run.outputs["output_1"], expected[1], rtol=0, atol=1e-5)
    assert run.outputs["output_0"].shape == (3, 2) and run.outputs["output_1"].shape == (3, 1)
    assert run.measurement.count >= 3


def test_wrong_inputs_are_kdiag_errors(tiny):
    _, export_dir = tiny
    with pytest.raises(KdiagError, match="missing input\\(s\\) x and unknown input\\(s\\) y"):
        cpp.run_baseline(export_dir, {"y": np.zeros((1, 4), np.float32)})
    with pytest.raises(KdiagError, match=r"shape \(1, 5\), the signature expects \(None, 4\)"):
        cpp.run_baseline(export_dir, {"x": np.zeros((1, 5), np.float32)})
    with pytest.raises(KdiagError, match="no signature 'nope'"):
        cpp.run_baseline(export_dir, {"x": np.zeros((1, 4), np.float32)}, signature="nope")
    with pytest.raises(KdiagError, match="not a SavedModel directory"):
        cpp.run_baseline(export_dir.parent, {"x": np.zeros((1, 4), np.float32)})


def test_binary_failure_becomes_one_line_kdiag_error(binary, tiny, tmp_path):
    _, export_dir = tiny
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 4), np.float32))
    command = [str(binary), "--saved-model", str(export_dir), "--out-dir", str(tmp_path / "out"),
               "--input", f"serving_default_x:0={x}", "--output", "no_such_op:0"]
    with pytest.raises(KdiagError) as err:
        cpp._invoke(command, timeout_s=120)
    assert err.value.message == (
        "C++ baseline: output tensor 'no_such_op:0' is not in the SavedModel's graph "
        "(check the serving signature's tensor names)"
    )


# ---------------------------------------------------------------- the binary itself


def test_binary_prints_json_and_writes_npy_outputs(binary, tiny, tmp_path):
    model, export_dir = tiny
    x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
    np.save(tmp_path / "x.npy", x)
    proc = _run_binary(binary, "--saved-model", export_dir, "--input", f"serving_default_x:0={tmp_path / 'x.npy'}",
                       "--output", "StatefulPartitionedCall_1:0", "--out-dir", tmp_path / "out",
                       "--budget-s", "0", "--min-calls", "7", "--warmup", "2")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert len(result["samples_s"]) == 7  # budget met at once: exactly the minimum count
    assert result["warmup_calls"] == 2 and result["stopped_early"] is False
    assert result["cold_s"] > 0 and result["load_s"] > 0
    [out] = result["outputs"]
    assert out["name"] == "StatefulPartitionedCall_1:0" and out["dtype"] == "<f4" and out["shape"] == [2, 1]
    np.testing.assert_allclose(np.load(out["file"]), model.predict(x, verbose=0), rtol=0, atol=1e-5)


def test_wall_cap_stops_early(binary, tiny, tmp_path):
    _, export_dir = tiny
    np.save(tmp_path / "x.npy", np.zeros((1, 4), np.float32))
    proc = _run_binary(binary, "--saved-model", export_dir, "--input", f"serving_default_x:0={tmp_path / 'x.npy'}",
                       "--output", "StatefulPartitionedCall_1:0", "--out-dir", tmp_path / "out",
                       "--min-calls", "100000000", "--max-wall-s", "0.05")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["stopped_early"] is True
    assert 0 < len(result["samples_s"]) < 100000000
    assert sum(result["samples_s"]) < 1.0  # the cap held (0.05 s plus one call)


def test_missing_input_file_is_a_clean_error(binary, tiny, tmp_path):
    _, export_dir = tiny
    missing = tmp_path / "nope.npy"
    proc = _run_binary(binary, "--saved-model", export_dir, "--input", f"serving_default_x:0={missing}",
                       "--output", "StatefulPartitionedCall_1:0", "--out-dir", tmp_path / "out")
    line = _assert_clean_error(proc, "cannot open input file", str(missing))
    assert line == f"{ERROR_PREFIX}cannot open input file {missing}"


def _npy_v1(header: str, payload: bytes) -> bytes:
    raw = header.encode("latin1")
    return b"\x93NUMPY\x01\x00" + len(raw).to_bytes(2, "little") + raw + payload


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda p: np.save(p, np.zeros((1, 4), ">f4")), "dtype '>f4' is not supported"),
        (lambda p: np.save(p, np.zeros((1, 4), np.float16)), "dtype '<f2' is not supported"),
        (lambda p: np.save(p, np.asfortranarray(np.zeros((2, 4), np.float32))), "Fortran-order arrays are not supported"),
        (lambda p: p.write_bytes(_npy_v1("{'descr': '<f4', 'fortran_order': False, 'shape': (1, 4), }\n", b"\0" * 12)),
         "holds 12 bytes of data, its header (1, 4) <f4 needs 16"),
        (lambda p: p.write_bytes(b"\x93NUMPY\x03\x00" + b"\0" * 64), ".npy format version 3.0 is not supported"),
        (lambda p: p.write_bytes(b"PK\x03\x04 not npy"), "not a .npy file"),
        (lambda p: np.save(p, np.zeros((1, 4), np.float64)), "expects float32, file"),
        (lambda p: np.save(p, np.zeros((1, 5), np.float32)), "expects shape [?, 4]"),
    ],
    ids=["big-endian", "float16", "fortran", "truncated", "version-3", "not-npy", "wrong-dtype", "wrong-shape"],
)
def test_strict_npy_reader_refuses_clearly(binary, tiny, tmp_path, make, fragment):
    _, export_dir = tiny
    path = tmp_path / "bad.npy"
    make(path)
    proc = _run_binary(binary, "--saved-model", export_dir, "--input", f"serving_default_x:0={path}",
                       "--output", "StatefulPartitionedCall_1:0", "--out-dir", tmp_path / "out")
    _assert_clean_error(proc, fragment)


def test_version_2_npy_is_read(binary, tiny, tmp_path):
    model, export_dir = tiny
    x = np.arange(8, dtype=np.float32).reshape(2, 4) / 4 - 1
    with open(tmp_path / "x.npy", "wb") as f:
        np.lib.format.write_array(f, x, version=(2, 0))
    proc = _run_binary(binary, "--saved-model", export_dir, "--input", f"serving_default_x:0={tmp_path / 'x.npy'}",
                       "--output", "StatefulPartitionedCall_1", "--out-dir", tmp_path / "out", "--budget-s", "0")
    assert proc.returncode == 0, proc.stderr
    [out] = json.loads(proc.stdout)["outputs"]
    assert out["name"] == "StatefulPartitionedCall_1:0"  # ":0" is implied
    np.testing.assert_allclose(np.load(out["file"]), model.predict(x, verbose=0), rtol=0, atol=1e-5)


def test_usage_errors_exit_2(binary, tmp_path):
    proc = _run_binary(binary, "--saved-model", tmp_path)
    assert _assert_clean_error(proc, "--out-dir DIR is required") and proc.returncode == 2
    proc = _run_binary(binary, "--budget-s", "-1")
    assert _assert_clean_error(proc, "--budget-s needs a non-negative number") and proc.returncode == 2


@pytest.mark.slow
def test_inspect_with_cpp_adds_a_checked_row_and_the_floor_gaps(binary):
    from kdiag.api import inspect
    from kdiag.render.terminal import render
    from kdiag.views import floor_gaps

    report = inspect(example="tiny", strategies=["predict", "concrete"], cpp=True,
                     budget_s=0.05, min_calls=5, max_wall_s=2.0)  # 5: enough calls a side to judge a gap
    row = report.strategy(CPP.name)
    assert row is not None and row.available, row
    assert row.measurement.source == "cpp" and row.measurement.count >= 3
    assert row.outputs.reference == "predict" and row.outputs.matches
    gaps = floor_gaps(report)
    assert gaps == [gaps[0]] and gaps[0].startswith("predict takes")  # one judged line: C++ is the floor here
    assert "the time of C++ (TF C API), the fastest path measured" in gaps[0]
    assert "C++ (TF C API)" in render(report)
