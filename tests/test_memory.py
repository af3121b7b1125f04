"""Memory is estimated before it is spent: refusals and skips with "needs ~N, M available".

The available-memory figure is mocked (kdiag.engine.intake.limits.available_memory_bytes), so every refusal here
is the same on a laptop and on a large CI runner; the hostile files are made in the tests, and the
2 GiB zip bomb costs 2 MiB of disk and about a second to write.
"""

import io
import json
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import kdiag.engine.intake.limits
from checks import assert_refused, run
from kdiag.errors import KdiagError
from kdiag.engine.intake.inputs import InputSpec, load_user_inputs, synthetic_inputs
from kdiag.engine.intake.limits import (MemoryPlan, cgroup_headroom_bytes, check_input_memory, plan_memory)

from conftest import FAST

GIB, MIB = 1 << 30, 1 << 20
REFUSAL_S = 3.0  # a refusal comes before any loading: well under this, even on a busy machine


@pytest.fixture
def memory(monkeypatch):
    """Set the memory kdiag believes is available: memory(2 * GIB)."""

    def set_available(n_bytes):
        monkeypatch.setattr(kdiag.engine.intake.limits, "available_memory_bytes", lambda: int(n_bytes))

    return set_available


# --- available memory: psutil and the cgroup --------------------------------------------


def test_available_memory_is_the_tighter_of_the_system_and_the_cgroup(monkeypatch):
    import psutil

    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=8 * GIB))
    monkeypatch.setattr(kdiag.engine.intake.limits, "cgroup_headroom_bytes", lambda: 2 * GIB)
    assert kdiag.engine.intake.limits.available_memory_bytes() == 2 * GIB
    monkeypatch.setattr(kdiag.engine.intake.limits, "cgroup_headroom_bytes", lambda: None)  # no cgroup limit
    assert kdiag.engine.intake.limits.available_memory_bytes() == 8 * GIB


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_limit_minus_usage_less_reclaimable_cache_at_the_tightest_level(tmp_path):
    root, proc = tmp_path / "cgroup", tmp_path / "proc_cgroup"
    _write(root / "cgroup.controllers", "cpu memory")
    _write(root / "memory.max", "max")  # the mount's root: no limit
    _write(root / "kdiag.slice/memory.max", str(6 * GIB))  # a parent: 6 GiB, 1 GiB used
    _write(root / "kdiag.slice/memory.current", str(1 * GIB))
    _write(root / "kdiag.slice/run/memory.max", str(4 * GIB))  # the process's own: 4 GiB
    _write(root / "kdiag.slice/run/memory.current", str(3 * GIB))
    _write(root / "kdiag.slice/run/memory.stat", f"anon 1234\ninactive_file {1 * GIB}\n")
    _write(proc, "0::/kdiag.slice/run\n")
    assert cgroup_headroom_bytes(root, proc) == 2 * GIB  # 4 - (3 - 1), tighter than 6 - 1


def test_cgroup_v1_limit_and_its_no_limit_value(tmp_path):
    root, proc = tmp_path / "cgroup", tmp_path / "proc_cgroup"
    # The host's path is not visible inside the container: the mount is the container's own cgroup.
    _write(proc, "4:memory:/docker/0123abcd\n1:cpu:/\n")
    _write(root / "memory/memory.limit_in_bytes", str(3 * GIB))
    _write(root / "memory/memory.usage_in_bytes", str(1 * GIB))
    assert cgroup_headroom_bytes(root, proc) == 2 * GIB
    _write(root / "memory/memory.limit_in_bytes", "9223372036854771712")  # v1's "no limit"
    assert cgroup_headroom_bytes(root, proc) is None
    assert cgroup_headroom_bytes(root, tmp_path / "missing") is None


# --- refused before loading: the weights, from the file's sizes ------------------------


def keras_archive(path: Path, weights_bytes: int) -> Path:
    """A .keras-shaped archive whose model.weights.h5 holds one dataset of `weights_bytes` (zeros,
    deflated: the zip directory states the uncompressed size, which is what Keras reads into memory)."""
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        handle.create_dataset("layers/dense/vars/0", data=np.zeros(weights_bytes // 4, "float32"))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", json.dumps({"class_name": "Functional", "config": {}}))
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1"}))
        archive.writestr("model.weights.h5", buffer.getvalue())
    return path


def test_keras_archive_whose_weights_will_not_fit_is_refused_before_loading(tmp_path, memory):
    model = keras_archive(tmp_path / "big.keras", 8 * MIB)
    memory(10 * MIB)  # loading holds the weights twice: ~16 MiB
    line = assert_refused(run("inspect", model, "--out", tmp_path / "run"), "big.keras", "needs ~16.",
                          "10.0 MiB available", "free some memory", within_s=REFUSAL_S)
    assert not (tmp_path / "run").exists(), line  # nothing half-written


def test_h5_whose_datasets_claim_more_than_memory_is_refused_by_its_probe(tmp_path, memory):
    import h5py

    # 16 GiB of Dense weights, declared but never written: a 2 KiB file. Keras would allocate it all.
    with h5py.File(tmp_path / "dense16g.h5", "w") as handle:
        handle.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"layers": []}})
        handle.create_dataset("model_weights/dense/dense/kernel:0", shape=(65536, 65536), dtype="float32")
    assert (tmp_path / "dense16g.h5").stat().st_size < 1 * MIB
    memory(24 * GIB)
    assert_refused(run("inspect", tmp_path / "dense16g.h5", "--out", tmp_path / "run"), "dense16g.h5",
                   "needs ~32.0 GiB, 24.0 GiB available", within_s=REFUSAL_S)
    assert not (tmp_path / "run").exists()


def test_savedmodel_whose_variables_will_not_fit_is_refused_before_tensorflow_loads_it(tmp_path, memory):
    folder = tmp_path / "exported"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"not read: refused first")
    with open(folder / "variables/variables.data-00000-of-00001", "wb") as handle:
        handle.truncate(3 * GIB)  # sparse: no disk used
    memory(4 * GIB)
    assert_refused(run("inspect", folder, "--out", tmp_path / "run"), "exported",
                   "needs ~6.0 GiB, 4.0 GiB available", within_s=REFUSAL_S)


# --- the inputs ---------------------------------------------------------------------------


def test_synthetic_batch_that_will_not_fit_is_refused_with_the_fix(memory):
    spec = InputSpec("x", (None, 1024), "float32")
    memory(1 * GIB)
    check_input_memory([spec], {"x": (65536, 1024)}, output_bytes=0)  # 256 MiB, held twice: fits
    memory(400 * MIB)
    with pytest.raises(KdiagError) as info:
        check_input_memory([spec], {"x": (65536, 1024)}, output_bytes=0)
    assert "needs ~512.0 MiB, 400.0 MiB available" in info.value.message
    assert "use a smaller --batch-size" in info.value.message


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_synthetic_floats_are_drawn_in_their_final_dtype(dtype):
    spec = InputSpec("x", (None, 1024), dtype)
    shape = (4096, 1024)
    final = np.prod(shape) * np.dtype(dtype).itemsize
    tracemalloc.start()
    try:
        arrays = synthetic_inputs([spec], {"x": shape}).arrays
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert arrays["x"].dtype == np.dtype(dtype) and arrays["x"].nbytes == final
    # Drawn as float64 and cast, the peak would be 3x (float32) or 5x (float16) the final size.
    assert peak < final + 8 * MIB, f"peak {peak / MIB:.0f} MiB for a {final / MIB:.0f} MiB batch"
    assert 0.0 <= float(arrays["x"].min()) and float(arrays["x"].max()) <= 1.0


def test_integer_range_wider_than_the_dtype_is_clamped_not_wrapped():
    spec = InputSpec("ids", (None, 8), "int8", (0, 1000), "Embedding 'e' accepts indices below 1000")
    inputs = synthetic_inputs([spec], {"ids": (64, 8)})
    assert inputs.arrays["ids"].dtype == np.int8 and inputs.arrays["ids"].min() >= 0
    assert "[0, 128)" in inputs.descriptions["ids"]


class _RepeatedZeros:
    """A deflate compressor that compresses a chunk of zeros once and repeats its output: after a
    full flush a deflate stream refers to nothing before it, so the copies are a valid stream."""

    def __init__(self):
        self._deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
        self._done = {}

    def compress(self, data):
        # Only the .npy header (small) and chunks of zeros are written through it.
        key = bytes(data) if len(data) < 4096 else len(data)
        assert len(data) < 4096 or data.count(0) == len(data)
        if key not in self._done:
            self._done[key] = self._deflate.compress(data) + self._deflate.flush(zlib.Z_FULL_FLUSH)
        return self._done[key]

    def flush(self):
        return self._deflate.flush()


def npz_bomb(path: Path, data_bytes: int, monkeypatch) -> Path:
    """A valid .npz whose one entry, x.npy, is `data_bytes` of float32 zeros: 2 GiB deflate to ~2 MiB."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (data_bytes // 4 // 4, 4)})
    chunk = bytes(16 * MIB)
    with monkeypatch.context() as patch:
        patch.setattr(zipfile, "_get_compressor", lambda *args, **kwargs: _RepeatedZeros())
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            with archive.open("x.npy", "w", force_zip64=True) as entry:
                entry.write(header.getvalue())
                for _ in range(data_bytes // len(chunk)):
                    entry.write(chunk)
    return path


def test_npz_zip_bomb_is_refused_before_it_is_decompressed(tmp_path, monkeypatch):
    bomb = npz_bomb(tmp_path / "bomb.npz", 2 * GIB, monkeypatch)
    assert bomb.stat().st_size < 8 * MIB
    with zipfile.ZipFile(bomb) as archive, archive.open("x.npy") as entry:
        assert archive.getinfo("x.npy").file_size > 2 * GIB  # a valid archive: the refusal is about size
        assert np.lib.format.read_magic(entry) == (1, 0)
        assert np.lib.format.read_array_header_1_0(entry)[0] == (2 * GIB // 16, 4)
        assert entry.read(MIB) == bytes(MIB)  # it decompresses: zeros
    start = time.monotonic()
    with pytest.raises(KdiagError) as info:
        load_user_inputs(bomb, [InputSpec("x", (None, 4), "float32")])
    elapsed = time.monotonic() - start
    assert "zip bomb" in info.value.message and "2.0 GiB" in info.value.message
    assert elapsed < 1.0, f"refused after {elapsed:.2f} s: it was decompressed"


def test_npz_whose_arrays_will_not_fit_is_refused_before_reading(tmp_path, memory):
    np.savez_compressed(tmp_path / "in.npz", x=np.zeros((65536, 16), "float64"))  # 8 MiB, 64x
    memory(12 * MIB)  # 8 MiB as stored + 4 MiB cast to float32 + 4 MiB as tensors
    start = time.monotonic()
    with pytest.raises(KdiagError) as info:
        load_user_inputs(tmp_path / "in.npz", [InputSpec("x", (None, 16), "float32")])
    assert "needs ~16.0 MiB, 12.0 MiB available" in info.value.message
    assert time.monotonic() - start < 1.0
    memory(17 * MIB)
    assert load_user_inputs(tmp_path / "in.npz", [InputSpec("x", (None, 16), "float32")]).batch_size == 65536


def test_npz_entry_whose_header_declares_more_than_the_entry_holds_is_refused(tmp_path):
    # A 1 KiB entry whose .npy header claims 5.4 GiB: numpy would allocate for the header's shape.
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (362387865, 4)})
    with zipfile.ZipFile(tmp_path / "liar.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", header.getvalue() + bytes(1024))
    with pytest.raises(KdiagError) as info:
        load_user_inputs(tmp_path / "liar.npz", [InputSpec("x", (None, 4), "float32")])
    assert "damaged" in info.value.message and "5.4 GiB" in info.value.message
    assert "1.0 KiB follow it" in info.value.message


def test_npy_whose_header_declares_more_than_the_file_holds_is_refused(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (1 << 30, 4)})
    (tmp_path / "short.npy").write_bytes(header.getvalue() + bytes(64))
    with pytest.raises(KdiagError, match="damaged: its header declares 16.0 GiB"):
        load_user_inputs(tmp_path / "short.npy", [InputSpec("x", (None, 4), "float32")])


def test_only_the_entries_for_the_model_inputs_are_read(tmp_path, memory):
    np.savez(tmp_path / "in.npz", x=np.ones((4, 2), "float32"), unused=np.zeros((1 << 20, 4), "float32"))
    memory(1 * MIB)  # the unused 16 MiB entry is never read, so it need not fit
    assert load_user_inputs(tmp_path / "in.npz", [InputSpec("x", (None, 2), "float32")]).batch_size == 4


# --- the strategies: skipped, not measured, when their copies would not fit --------------


KEYS = ["predict", "predict-compiled", "predict_on_batch", "eager", "tf-function", "concrete", "xla",
        "savedmodel", "tflite"]


def costs(keras: bool = True):
    """Every strategy's own memory cost (kdiag.engine.runtimes), by key, for a Keras model or a plain SavedModel."""
    from kdiag.engine.runtimes.strategies import BY_KEY, memory_costs

    return memory_costs([BY_KEY[key] for key in KEYS], keras)


def test_strategies_whose_copies_would_not_fit_are_skipped_in_order():
    plan = plan_memory(costs(), weights_bytes=1 * GIB, input_bytes=1 * MIB, output_bytes=1 * MIB,
                       profile=True, available=int(3.5 * GIB))
    # predict-compiled: 1 copy kept + 1 while loading; savedmodel: +1 kept, +1 while exporting
    # (3 copies with the compiled one); tflite: +2 kept, +3 while converting, on top of those 2: 7.
    assert set(plan.skip) == {"tflite"}
    assert plan.skip["tflite"].startswith("not measured: too little memory (needs ~7.0 GiB, 3.5 GiB available")
    assert plan.needs["savedmodel"] < 3.5 * GIB < plan.needs["tflite"]
    tight = plan_memory(costs(), weights_bytes=1 * GIB, input_bytes=1 * MIB, output_bytes=1 * MIB,
                        profile=True, available=int(1.5 * GIB))
    assert set(tight.skip) == {"predict-compiled", "savedmodel", "tflite", "profile"}
    assert "profiling skipped" in tight.skip["profile"]
    # A skipped strategy's copies are not counted against the ones after it.
    assert tight.needs["concrete"] < 1.5 * GIB


def test_plain_savedmodel_counts_only_the_strategies_that_run_on_it():
    plan = plan_memory(costs(keras=False), weights_bytes=1 * GIB, input_bytes=0, output_bytes=0, keras=False,
                       available=int(1.5 * GIB))
    assert set(plan.needs) == {"savedmodel", "tflite"} and set(plan.skip) == {"tflite"}


@pytest.mark.slow
def test_memory_plan_of_a_loaded_model_uses_its_weights_and_output_shapes(keras):
    from kdiag.engine.intake.load import from_model

    inputs = keras.Input((256,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(1024)(inputs))
    loaded = from_model(model)
    arrays = {"x": np.zeros((32, 256), "float32")}
    plan = kdiag.engine.intake.limits.memory_plan_for(loaded, arrays, costs(), profile=True)
    assert plan.weights_bytes == (256 * 1024 + 1024) * 4
    assert plan.input_bytes == 32 * 256 * 4 and plan.output_bytes == 32 * 1024 * 4
    assert plan.available_bytes > 0


@pytest.mark.slow
def test_inspect_reports_skipped_strategies_as_not_measured(monkeypatch):
    from kdiag.api import inspect

    def plan(costs, **figures):
        return MemoryPlan(1 * GIB, 9 * GIB, 0, 0, {}, {
            "tflite": "not measured: too little memory (needs ~54.0 GiB, 1.0 GiB available)",
            "profile": "profiling skipped: too little memory (needs ~27.0 GiB, 1.0 GiB available)"})

    monkeypatch.setattr(kdiag.engine.intake.limits, "plan_memory", plan)
    report = inspect(example="tiny", strategies=["predict", "tflite"], **{**FAST, "profile": True})
    rows = {r.name: r for r in report.strategies}
    assert rows["predict"].available
    assert not rows["TFLite"].available
    assert rows["TFLite"].reason == "not measured: too little memory (needs ~54.0 GiB, 1.0 GiB available)"
    assert report.profiles == [] and any("profiling skipped" in note for note in report.notes)
