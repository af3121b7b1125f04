"""Hostile files, round 2 (issue 20), the intake half: what is refused before anything is loaded.

Each case is built here, small: a .keras whose config.json is a decompression bomb, one whose zip
directory lies about its sizes, a Lambda model named with terminal escape codes, SavedModels with an
asset symlinked out of the folder or a FIFO among their variables, and models whose declared sizes
(a Dense of 10**8 units, an input of 10**8 values) would not fit in memory. Refusals run as a user
runs them, `python -m kdiag` in a child process, whose peak RSS and time are measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import NamedTuple, Optional

import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent


class Child(NamedTuple):
    code: int
    stdout: bytes
    stderr: bytes
    elapsed: float
    peak_rss: int  # bytes: the child's largest resident set, sampled every few milliseconds

    @property
    def error_lines(self):
        return [line for line in self.stderr.decode("utf-8", "replace").splitlines() if line.startswith("kdiag: error:")]


def run_kdiag(*argv, cwd: Path, timeout: float = 120.0, prelude: str = "") -> Child:
    """`python -m kdiag ARGV` (or, with a `prelude`, the same main() after that Python runs) in a child,
    with its peak RSS sampled by psutil. The prelude patches what a test must fix, such as the
    memory available."""
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    if prelude:
        code = f"import sys\n{prelude}\nfrom kdiag.cli import main\nsys.exit(main(sys.argv[1:]))\n"
        command = [sys.executable, "-c", code, *map(str, argv)]
    else:
        command = [sys.executable, "-m", "kdiag", *map(str, argv)]
    start = time.perf_counter()
    child = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process = psutil.Process(child.pid)
    peak = 0
    import threading

    def sample():
        nonlocal peak
        while child.poll() is None:
            try:
                peak = max(peak, process.memory_info().rss)
            except psutil.Error:
                break
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        stdout, stderr = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        stdout, stderr = child.communicate()
        raise AssertionError(f"kdiag did not finish in {timeout} s: {stderr.decode(errors='replace')[-2000:]}")
    sampler.join()
    return Child(child.returncode, stdout, stderr, time.perf_counter() - start, peak)


def assert_one_line_refusal(result: Child, *words: str, seconds: Optional[float] = None,
                            peak_rss: Optional[int] = None) -> str:
    text = result.stderr.decode("utf-8", "replace")
    assert result.code == 2, f"exit {result.code}: {text[-3000:]}"
    assert len(result.error_lines) == 1 and "Traceback" not in text, text[-3000:]
    assert result.stdout == b""
    line = result.error_lines[0]
    for word in words:
        assert word in line, line
    if seconds is not None:
        assert result.elapsed < seconds, f"took {result.elapsed:.2f} s"
    if peak_rss is not None:
        assert result.peak_rss < peak_rss, f"peak RSS {result.peak_rss / 2**20:.0f} MiB"
    return line


def stderr_is_clean(stderr: bytes) -> None:
    """Nothing below 0x20 but newline, no ESC, no C1 control (U+0080-U+009F, UTF-8 C2 80-9F)."""
    assert not [b for b in stderr if b < 0x20 and b != 0x0A], stderr
    assert b"\x1b" not in stderr
    text = stderr.decode("utf-8")
    assert not [c for c in text if 0x7F <= ord(c) <= 0x9F or c == "\u202e"], text


# --- escape codes in names (item 2) ------------------------------------------------------------

ESCAPES = ("\x1b]0;pwned\x07"  # set the window title
           "\x1b]52;c;ZWNobyBwd25lZA==\x07"  # write the clipboard (OSC 52)
           "\r\x1b[2K"  # erase the line
           "\x1b[32mkdiag: all checks passed\x1b[0m\n"  # fake green text, then a fake new line
           "\x9b31m\u202e")  # a one-character CSI, a right-to-left override


def keras_config(*layers, name="model") -> dict:
    """A Keras 3 functional config of a chain of layers after Input((4,))."""
    entries = [{"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
                "config": {"batch_shape": [None, 4], "dtype": "float32", "sparse": False, "name": "in"},
                "name": "in", "inbound_nodes": []}]
    previous = "in"
    for layer in layers:
        entry = dict(layer)
        entry.setdefault("module", "keras.layers")
        entry.setdefault("registered_name", None)
        entry["name"] = entry["config"]["name"]
        entry["inbound_nodes"] = [{"args": [{"class_name": "__keras_tensor__", "config": {
            "shape": [None, 4], "dtype": "float32", "keras_history": [previous, 0, 0]}}], "kwargs": {}}]
        entries.append(entry)
        previous = entry["name"]
    return {"module": "keras", "class_name": "Functional", "registered_name": "Functional",
            "config": {"name": name, "trainable": True, "layers": entries, "input_layers": ["in", 0, 0],
                       "output_layers": [previous, 0, 0]}}


def write_keras(path: Path, config: dict, metadata: Optional[dict] = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps(metadata or {"keras_version": "3.15.1"}))
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", b"")
    return path


def test_a_lambda_named_with_escape_codes_is_refused_without_them(tmp_path):
    lam = {"class_name": "Lambda", "config": {"name": "evil" + ESCAPES, "function": {
        "class_name": "__lambda__", "config": {"code": "4wEAAAA=", "defaults": None, "closure": None}}}}
    model = write_keras(tmp_path / ("model" + ESCAPES.replace("\n", "") + ".keras"), keras_config(lam))
    result = run_kdiag("inspect", model, "--out", tmp_path / "run", cwd=tmp_path)
    line = assert_one_line_refusal(result, "Lambda", "--unsafe")
    stderr_is_clean(result.stderr)
    assert "\\x1b]52;c;" in line and "\\x1b[32mkdiag: all checks passed" in line  # shown, not acted on
    assert not (tmp_path / "run").exists()
