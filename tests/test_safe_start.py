"""Safe start: no module lying next to a model or a profile, or in the working directory, is imported.

Each planted module writes a marker file when imported; the folder is also the working directory,
as it is for a user who runs kdiag in their downloads folder.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import kdiag
from kdiag.engine.intake.h5probe import probe
from kdiag.view import snakeviz_command

ROOT = Path(kdiag.__file__).resolve().parent.parent  # this checkout
HIJACKED = ("h5py", "numpy", "zipfile", "argparse", "json", "snakeviz", "tornado")


def plant(folder: Path, names=HIJACKED) -> Path:
    """A `NAME.py` for each name that writes `NAME.imported` in `folder` when imported."""
    for name in names:
        marker = folder / f"{name}.imported"
        (folder / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n")
    return folder


def markers(folder: Path):
    return sorted(p.name for p in folder.glob("*.imported"))


def small_model_h5(path: Path) -> Path:
    import h5py

    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = "not JSON: refused after the probe, before TensorFlow"
        handle.create_dataset("model_weights/dense/kernel", data=np.ones((4, 2), "float32"))
    return path


def kdiag_subprocess(*argv, cwd: Path, **kwargs):
    # PYTHONPATH names this checkout, as a developer's does; the working directory is the
    # downloads folder with the planted modules.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, "-m", "kdiag", *map(str, argv)], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_probe_child_imports_nothing_from_the_model_folder(tmp_path, monkeypatch):
    folder = plant(tmp_path)
    model = small_model_h5(folder / "model.h5")
    monkeypatch.chdir(folder)
    summary = probe(model)
    assert summary is not None and summary.datasets == 1  # the real h5py read it
    assert markers(folder) == []


def test_probe_reads_a_keras_archive_member_without_the_planted_zipfile(tmp_path, monkeypatch):
    import io
    import zipfile

    import h5py

    folder = plant(tmp_path)
    weights = io.BytesIO()
    with h5py.File(weights, "w") as handle:
        handle.create_dataset("vars/0", data=np.ones((3, 3), "float32"))
    with zipfile.ZipFile(folder / "model.keras", "w") as archive:
        archive.writestr("config.json", json.dumps({"class_name": "Functional", "config": {}}))
        archive.writestr("model.weights.h5", weights.getvalue())
    monkeypatch.chdir(folder)
    summary = probe(folder / "model.keras", "model.weights.h5")
    assert summary is not None and summary.claimed_bytes == 36
    assert markers(folder) == []


def test_python_m_kdiag_does_not_import_from_the_working_directory(tmp_path):
    folder = plant(tmp_path)
    small_model_h5(folder / "model.h5")
    process = kdiag_subprocess("inspect", "model.h5", "--out", folder / "run", cwd=folder)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 2, stderr
    assert "its model_config is not valid UTF-8 JSON" in stderr and "Traceback" not in stderr
    assert markers(folder) == []  # argparse and json (kdiag), numpy, zipfile and h5py (the probe)


def test_snakeviz_gets_an_absolute_path_after_double_dash_and_runs_isolated():
    command = snakeviz_command(Path("./-dash.prof"), True, None, 8080)
    assert command[1] == "-Iu" and command[2].endswith(os.path.join("kdiag", "localhost.py"))  # snakeviz, guarded
    assert command[-2:] == ["--", os.path.abspath("-dash.prof")]


def _profile(path: Path) -> Path:
    import cProfile

    profiler = cProfile.Profile()
    profiler.runcall(sum, range(1000))
    profiler.dump_stats(str(path))
    return path


def _wait_for_line(process, words, timeout=30.0):
    """Lines of the process's stdout up to the first holding every word (fails at the timeout).

    A thread reads them: select() on a buffered text stream misses lines already in its buffer."""
    import queue
    import threading

    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout] + [lines.put(None)],
                     daemon=True).start()
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if all(word in line for word in words):
            return seen
    pytest.fail(f"no line with {words} in {seen}")


@pytest.mark.slow
def test_view_serves_a_dash_named_profile_isolated_and_prints_the_port_it_took(tmp_path):
    folder = plant(tmp_path)
    prof = _profile(folder / "-dash.prof")
    with socket.socket() as taken:  # the asked-for port is busy: snakeviz moves to another
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        process = kdiag_subprocess("view", "./-dash.prof", "--server", "--port", busy, cwd=folder)
        try:
            lines = _wait_for_line(process, ["kdiag: snakeviz serves on 127.0.0.1:"])
            port = int(lines[-1].split("127.0.0.1:")[1].split()[0])
            assert port != busy
            assert not any(f"-p {busy}" in line or f":{busy} " in line for line in lines), lines
            url = f"http://127.0.0.1:{port}/snakeviz/" + urllib.parse.quote(str(prof), safe="")
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.status == 200 and "snakeviz" in response.read().decode().lower()
        finally:
            process.terminate()
            process.wait(timeout=20)
    assert markers(folder) == []  # neither snakeviz.py nor tornado.py from the profile's folder
