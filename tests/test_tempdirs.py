"""Locks the kernel releases when their process dies, and temporary folders a later run cleans up
(kdiag.tempdirs; issue 20: a SIGKILLed run left a lock that refused every rerun on its --out, and
copies of the model in /tmp)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kdiag import tempdirs
from kdiag.tempdirs import HeldLock

REPO = Path(__file__).resolve().parent.parent

HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from kdiag import tempdirs
    lock = tempdirs.HeldLock.try_acquire(Path(sys.argv[1]))
    with tempdirs.temporary_directory(prefix="kdiag-held-") as folder:
        (Path(folder) / "model-copy").write_text("weights")
        print(folder, flush=True)
        time.sleep(600)
""")


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    private = tmp_path / "system-tmp"
    private.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(private))
    monkeypatch.setenv("TMPDIR", str(private))
    return private


def _holder(lock: Path, private: Path):
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(private)})
    folder = Path(process.stdout.readline().strip())
    assert folder.is_dir(), folder
    return process, folder


def test_a_lock_is_released_by_the_kernel_when_its_process_is_killed(tmp_path, private_tmp):
    lock = tmp_path / "run.lock"
    process, folder = _holder(lock, private_tmp)
    try:
        assert HeldLock.try_acquire(lock) is None and HeldLock.is_held(lock)
        assert tempdirs.remove_stale() == [] and folder.is_dir()  # a live run's folder is left alone
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        process.stdout.close()
    assert lock.exists() and not HeldLock.is_held(lock)  # the file stays; nobody holds it
    taken = HeldLock.try_acquire(lock)
    assert taken is not None
    taken.release()
    assert not lock.exists()
    assert folder.is_dir()  # the killed run's copy of the model, until a later run looks
    assert tempdirs.remove_stale() == [folder]
    assert not folder.parent.exists()  # the killed run's folder and lock went, and so did the emptied root


def test_one_process_holding_a_lock_refuses_it_to_a_second_claim_in_the_same_process(tmp_path):
    first = HeldLock.try_acquire(tmp_path / "x.lock")
    assert first is not None and HeldLock.try_acquire(tmp_path / "x.lock") is None
    first.release()
    assert HeldLock.try_acquire(tmp_path / "x.lock") is not None


def test_temporary_folders_live_in_one_private_root_and_are_removed_after_use(private_tmp):
    with tempdirs.temporary_directory(prefix="kdiag-scratch-") as folder:
        folder = Path(folder)
        root = folder.parent
        assert root == private_tmp / f"kdiag-{os.getuid()}" and (root.stat().st_mode & 0o777) == 0o700
        assert (root / (folder.name + ".lock")).exists()
        assert tempdirs.remove_stale() == []  # in use
    assert not root.exists()  # emptied, so removed: nothing of kdiag's is left in the temporary folder


def test_a_root_that_is_someone_elses_link_is_not_used(private_tmp, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (private_tmp / f"kdiag-{os.getuid()}").symlink_to(elsewhere)
    with tempdirs.temporary_directory() as folder:
        assert Path(folder).parent != elsewhere and not Path(folder).parent.is_symlink()
    assert list(elsewhere.iterdir()) == []


@pytest.mark.slow
def test_a_sigkilled_run_does_not_block_a_rerun_and_leaves_no_temporary_copy(tmp_path, private_tmp):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(private_tmp), "TF_CPP_MIN_LOG_LEVEL": "2"}
    root = private_tmp / f"kdiag-{os.getuid()}"
    killed = subprocess.Popen([sys.executable, "-m", "kdiag", "inspect", "--example", "tiny", "--out", str(out),
                               "--strategies", "predict,savedmodel", "--budget", "5", "--precision", "0",
                               "--no-profile"],  # --precision 0: each budget is spent (predict's, then the export's)
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not list(root.glob("kdiag-*/saved_model")):  # the export: a copy of the model, mid-run
            assert killed.poll() is None and time.monotonic() < deadline, "the run ended before it was killed"
            time.sleep(0.2)
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
    assert (out / ".kdiag-run.lock").exists() and list(root.glob("kdiag-*/saved_model"))  # what it left
    rerun = subprocess.run([sys.executable, "-m", "kdiag", "inspect", "--example", "tiny", "--out", str(out),
                            "--strategies", "predict", "--budget", "0.05", "--min-calls", "2", "--no-profile",
                            "--no-sweeps", "--no-memory-loop", "--no-ops", "--format", "json"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.md", "repro.py"]
    assert not root.exists() or list(root.iterdir()) == [], "the killed run's temporary copy is removed by the next run"


def test_a_killed_runs_partial_files_are_taken_over_but_a_saved_report_never(tmp_path):
    from kdiag.errors import KdiagError
    from kdiag.runfolder import LOCK_NAME, RunFolder

    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text("")  # nobody holds it: its run is gone
    (out / "predict.prof").write_text("partial")
    (out / "redacted").mkdir()
    claimed = RunFolder.claim("tiny", out)
    assert claimed.took_over == ("predict.prof", "redacted")
    assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
    claimed.discard()

    (out / LOCK_NAME).write_text("")
    (out / "report.json").write_text("{}")  # killed between saving its report and dropping its lock
    with pytest.raises(KdiagError, match="never overwrites"):
        RunFolder.claim("tiny", out)
    assert (out / "report.json").read_text() == "{}"
