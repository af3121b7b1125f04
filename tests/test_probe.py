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


# --- links (issue 20): h5py follows soft and external links when a loader looks a name up ------------


def _with_links(path: Path, **links) -> Path:
    import h5py

    small_model_h5(path)
    with h5py.File(path, "a") as handle:
        for name, link in links.items():
            handle[name.replace("__", "/")] = link
    return path


def test_an_external_link_is_refused_naming_it(tmp_path):
    import h5py

    other = small_model_h5(tmp_path / "other.h5")
    many = {f"ext{i}": h5py.ExternalLink(str(other), "/model_weights") for i in range(5)}
    with pytest.raises(KdiagError) as refused:
        probe(_with_links(tmp_path / "external.h5", **many))
    message = refused.value.message
    assert "external.h5 holds 5 external links to other files (/ext0 -> " in message
    assert "other.h5:/model_weights" in message and "and 2 more)" in message
    assert "model.save()" in message and "\n" not in message


def test_an_external_link_to_a_fifo_is_refused_without_opening_it(tmp_path):
    import h5py

    fifo = tmp_path / "pipe.h5"
    os.mkfifo(fifo)  # opening it would block until someone writes
    start = time.monotonic()
    with pytest.raises(KdiagError, match="an external link to other files"):
        probe(_with_links(tmp_path / "to_fifo.h5", weights=h5py.ExternalLink(str(fifo), "/x")))
    assert time.monotonic() - start < 10


def test_soft_links_inside_the_file_are_followed_and_counted_once(tmp_path):
    import h5py

    path = _with_links(tmp_path / "soft.h5", alias=h5py.SoftLink("/model_weights/dense"),
                       relative__alias=h5py.SoftLink("../model_weights/dense/dense"),
                       chain=h5py.SoftLink("/alias"))
    with h5py.File(path, "a") as handle:
        handle.create_dataset("only_by_link/big", data=np.ones((8, 8), "float32"))
        handle["linked"] = h5py.SoftLink("/only_by_link")
    summary = probe(path)
    assert summary.external_link_count == summary.broken_link_count == 0
    assert summary.datasets == 2  # the kernel once, however many links lead to it, and the 8x8 dataset
    assert summary.claimed_bytes == 32 + 256


@pytest.mark.parametrize("links, why", [
    (dict(dangling="/nowhere"), "/dangling -> /nowhere (points at nothing in the file)"),
    (dict(a="/b", b="/a"), "(a loop of soft links)"),
    (dict(self_loop="/self_loop"), "(a loop of soft links)"),
    (dict(through="/missing/deeper"), "points at nothing in the file"),
])
def test_dangling_and_looping_soft_links_are_refused(tmp_path, links, why):
    import h5py

    path = _with_links(tmp_path / "broken.h5", **{name: h5py.SoftLink(target) for name, target in links.items()})
    with pytest.raises(KdiagError) as refused:
        probe(path)
    assert "broken.h5 holds" in refused.value.message and "soft link" in refused.value.message
    assert why in refused.value.message


def test_a_model_file_with_an_external_link_is_refused_by_the_cli(tmp_path):
    import h5py

    other = small_model_h5(tmp_path / "secret.h5")
    model = _with_links(tmp_path / "linked.h5", model_weights__dense__ext=h5py.ExternalLink(str(other), "/"))
    code, stderr, elapsed = run_cli("inspect", model, "--out", tmp_path / "run")
    errors = [line for line in stderr.splitlines() if line.startswith("kdiag: error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in stderr, stderr
    assert "linked.h5 holds an external link to other files (/model_weights/dense/ext -> " in stderr
    assert not (tmp_path / "run").exists()
