"""The HDF5 probe bounds every read: size against claims, one time limit, no orphaned child.

Large files here are sparse (truncate, or an HDF5 dataset written only at its end): they cost no disk.
"""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import kdiag.engine.intake.h5probe
import kdiag.engine.intake.limits
from kdiag.cli import Env, main
from kdiag.errors import KdiagError
from kdiag.engine.intake.h5probe import probe

GIB = 1 << 30
ROOT = Path(kdiag.__file__).resolve().parent.parent


def small_model_h5(path: Path) -> Path:
    import h5py

    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"layers": []}})
        handle.create_dataset("model_weights/dense/dense/kernel:0", data=np.ones((4, 2), "float32"))
    return path


def run_cli(*argv):
    env = Env(stdout=io.StringIO(), stderr=io.StringIO())
    start = time.monotonic()
    code = main([str(a) for a in argv], env)
    return code, env.stderr.getvalue(), time.monotonic() - start


def test_probe_reports_what_the_file_claims(tmp_path):
    summary = probe(small_model_h5(tmp_path / "m.h5"))
    assert summary.datasets == 1 and summary.claimed_bytes == summary.stored_bytes == 32
    assert summary.file_bytes == (tmp_path / "m.h5").stat().st_size


def test_h5_padded_to_50_gb_is_refused_at_once(tmp_path):
    model = small_model_h5(tmp_path / "padded.h5")
    os.truncate(model, 50 * 10**9)  # sparse: no disk used
    code, stderr, elapsed = run_cli("inspect", model, "--out", tmp_path / "run")
    assert code == 2, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("kdiag: error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    assert "padded.h5 is 46.6 GiB but the data it holds is only 32 bytes" in errors[0]
    assert "padding" in errors[0] and "save the model again" in errors[0]
    assert elapsed < 5.0, f"refused after {elapsed:.1f} s"
    assert not (tmp_path / "run").exists()


def sparse_dataset_h5(path: Path, data_bytes: int) -> Path:
    """A dataset of `data_bytes` whose storage is allocated (written at its last element) but sparse."""
    import h5py

    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = "{}"
        dataset = handle.create_dataset("w", shape=(data_bytes // 4,), dtype="float32")
        dataset[-1] = 1.0
    return path


def test_reading_a_huge_consistent_file_stops_at_the_time_limit(tmp_path, monkeypatch):
    model = sparse_dataset_h5(tmp_path / "huge.h5", 256 * GIB)
    assert model.stat().st_size > 256 * GIB and model.stat().st_blocks * 512 < 64 << 20
    monkeypatch.setattr(kdiag.engine.intake.limits, "available_memory_bytes", lambda: 1 << 40)  # a 1 TiB machine
    monkeypatch.setattr(kdiag.engine.intake.h5probe, "H5_PROBE_MAX_S", 3.0)
    start = time.monotonic()
    with pytest.raises(KdiagError, match=r"did not finish reading it in 3 s \(256.0 GiB of data\)"):
        probe(model)
    elapsed = time.monotonic() - start
    assert 3.0 <= elapsed < 3.0 + 2 * kdiag.engine.intake.h5probe.H5_PROBE_GRACE_S + 2.0, f"{elapsed:.1f} s"


def test_the_time_limit_covers_opening_the_file(tmp_path, monkeypatch):
    # Opening a FIFO blocks in the HDF5 library's open(2) until a writer comes: forever.
    fifo = tmp_path / "fifo.h5"
    os.mkfifo(fifo)
    monkeypatch.setattr(kdiag.engine.intake.h5probe, "H5_PROBE_TIMEOUT_S", 1.0)
    start = time.monotonic()
    with pytest.raises(KdiagError, match="did not finish reading it in 1 s"):
        probe(fifo)
    assert time.monotonic() - start < 1.0 + 2 * kdiag.engine.intake.h5probe.H5_PROBE_GRACE_S + 2.0


def _children_reading(path: Path):
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = process.info["cmdline"] or []
        if str(path) in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(process)
    return found


def test_probe_child_has_its_own_process_group_and_dies_with_a_killed_parent(tmp_path):
    fifo = tmp_path / "fifo.h5"
    os.mkfifo(fifo)
    parent = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from kdiag.engine.intake.h5probe import probe; "
                               "probe(Path(sys.argv[1]))", str(fifo)],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        children = []
        while not children and time.monotonic() < deadline:
            time.sleep(0.1)
            children = [c for c in _children_reading(fifo) if c.ppid() == parent.pid]
        assert children, "the probe's child never started"
        child = children[0]
        assert os.getsid(child.pid) == child.pid and os.getpgid(child.pid) == child.pid
        time.sleep(0.5)  # let it arm its death signal
        parent.send_signal(signal.SIGKILL)  # kdiag killed: no finally, no clean-up
        parent.wait(timeout=10)
        deadline = time.monotonic() + 5
        while _children_reading(fifo) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _children_reading(fifo), "the probe's child outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for orphan in _children_reading(fifo):
            orphan.kill()


def test_file_the_child_cannot_open_is_left_to_the_loader(tmp_path):
    (tmp_path / "text.h5").write_text("not HDF5 at all")
    assert probe(tmp_path / "text.h5") is None  # the loader reports it, in this process
