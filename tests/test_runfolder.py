"""Run folders: never overwritten, written atomically, removed after a failed run, kept after Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from kdiag.errors import KdiagError
from kdiag.runfolder import discard, new_run_folder, write_atomic


def test_default_folders_are_unique(tmp_path):
    a = new_run_folder("tiny", root=tmp_path)
    b = new_run_folder("tiny", root=tmp_path)
    assert a != b and a.is_dir() and b.is_dir()
    assert a.name.startswith("tiny-")


def test_an_existing_run_is_never_overwritten(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.json").write_text("{}")
    with pytest.raises(KdiagError, match="never overwrites"):
        new_run_folder("tiny", run)
    assert (run / "report.json").read_text() == "{}"


def test_an_empty_given_folder_is_used_and_kept_on_discard(tmp_path):
    run = tmp_path / "empty"
    run.mkdir()
    assert new_run_folder("tiny", run) == run
    (run / "predict.prof").write_bytes(b"x")
    discard(run, keep_folder=True)
    assert run.is_dir() and not any(run.iterdir())


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    write_atomic(tmp_path / "report.md", "hello")
    write_atomic(tmp_path / "report.md", "again")
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]
    assert (tmp_path / "report.md").read_text() == "again"


@pytest.mark.slow
def test_ctrl_c_keeps_what_was_measured_marked_incomplete_and_exits_130(tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "kdiag", "inspect", "--example", "tiny", "--budget", "30", "--precision", "0", "--no-profile",
         "--out", str(out), "--format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    # Wait until timing has begun (progress on stderr), give it a moment to measure, then Ctrl-C.
    # --precision 0: timing spends the whole budget, so the run is still measuring when Ctrl-C comes.
    deadline = time.time() + 120
    seen = ""
    while time.time() < deadline and "] measure: " not in seen:
        seen += process.stderr.readline()
    assert "] measure: " in seen
    time.sleep(4)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    report = json.loads((out / "report.json").read_text())
    assert report["incomplete"] is True
    measured = [s for s in report["strategies"] if s["median_s"]]
    assert measured, "something was measured before the interruption"
    assert (out / "report.md").is_file()
