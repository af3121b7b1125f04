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


def keras_config(*layers, name="model", width=4) -> dict:
    """A Keras 3 functional config of a chain of layers after Input((width,)) (its tensors recorded as
    (None, width), as Keras writes them for shape-preserving layers)."""
    entries = [{"module": "keras.layers", "class_name": "InputLayer", "registered_name": None,
                "config": {"batch_shape": [None, width], "dtype": "float32", "sparse": False, "name": "in"},
                "name": "in", "inbound_nodes": []}]
    previous = "in"
    for layer in layers:
        entry = dict(layer)
        entry.setdefault("module", "keras.layers")
        entry.setdefault("registered_name", None)
        entry["name"] = entry["config"]["name"]
        entry["inbound_nodes"] = [{"args": [{"class_name": "__keras_tensor__", "config": {
            "shape": [None, width], "dtype": "float32", "keras_history": [previous, 0, 0]}}], "kwargs": {}}]
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


# --- decompression bombs (item 1) -------------------------------------------------------------


def deflated_spaces(mib: int) -> bytes:
    """A raw DEFLATE stream of `mib` MiB of spaces, made in milliseconds: one fully flushed block of
    1 MiB, repeated (a full flush makes each copy stand alone), then an empty final block."""
    import zlib

    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(b" " * (1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * mib + zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)


def raw_zip(path: Path, entries) -> Path:
    """A zip written byte by byte, so that its directory can say what a test needs: entries of
    (name, stored bytes, method, declared inflated size, CRC-32). zipfile cannot write lies."""
    import struct

    body, directory = b"", b""
    for name, data, method, size, crc in entries:
        encoded = name.encode()
        offset = len(body)
        body += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0, crc, len(data), size,
                            len(encoded), 0) + encoded + data
        directory += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0, crc, len(data), size,
                                 len(encoded), 0, 0, 0, 0, 0, offset) + encoded
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(directory), len(body), 0)
    path.write_bytes(body + directory + end)
    return path


def _stored(name: str, data: bytes):
    import zlib

    return (name, data, zipfile.ZIP_STORED, len(data), zlib.crc32(data))


METADATA = _stored("metadata.json", b'{"keras_version": "3.15.1"}')
WEIGHTS = _stored("model.weights.h5", b"")
BOMB_MIB = 3 * 1024  # 3 GiB inflated, from 3 MB on disk; nothing in the tests inflates it


def _bomb_cases(tmp_path: Path):
    import zlib

    spaces = deflated_spaces(BOMB_MIB)
    first_kib_crc = zlib.crc32(b" " * 1024)
    small = deflated_spaces(15)
    yield "honest", raw_zip(tmp_path / "honest.keras", [
        METADATA, ("config.json", spaces, zipfile.ZIP_DEFLATED, BOMB_MIB << 20, 0), WEIGHTS]), \
        ("config.json declares 3.0 GiB inflated", "decompression bomb")
    # The directory says 1 KiB: zipfile stops inflating there, and the CRC of that first KiB matches.
    yield "lying", raw_zip(tmp_path / "lying.keras", [
        METADATA, ("config.json", spaces, zipfile.ZIP_DEFLATED, 1024, first_kib_crc), WEIGHTS]), \
        ("config.json is not valid JSON",)
    yield "lying-crc", raw_zip(tmp_path / "lying-crc.keras", [
        METADATA, ("config.json", spaces, zipfile.ZIP_DEFLATED, 1024, 0), WEIGHTS]), \
        ("entry config.json fails its checksum",)
    yield "weights", raw_zip(tmp_path / "weights.keras", [
        METADATA, _stored("config.json", json.dumps(keras_config()).encode()),
        ("model.weights.h5", spaces, zipfile.ZIP_DEFLATED, BOMB_MIB << 20, 0)]), \
        ("model.weights.h5 would inflate from", "decompression bomb")
    yield "many", raw_zip(tmp_path / "many.keras", [
        METADATA, _stored("config.json", json.dumps(keras_config()).encode()),
        *[(f"assets/{i}.txt", small, zipfile.ZIP_DEFLATED, 15 << 20, 0) for i in range(200)]]), \
        ("202 entries would inflate", "decompression bomb")


def test_decompression_bombs_are_refused_in_well_under_a_second(tmp_path):
    for case, bomb, words in _bomb_cases(tmp_path):
        assert bomb.stat().st_size < 8 << 20, case
        result = run_kdiag("inspect", bomb, "--out", tmp_path / f"run-{case}", cwd=tmp_path)
        assert_one_line_refusal(result, bomb.name, *words, seconds=2.0, peak_rss=500 << 20)
        assert not (tmp_path / f"run-{case}").exists()


def test_config_json_is_read_and_parsed_once_for_load_safety_and_era(model_files, monkeypatch):
    """load, the safety scan and the Keras-era signs share one reading of config.json."""
    import kdiag.engine.intake.load

    opened = []
    original = zipfile.ZipFile.open

    def counting_open(self, name, *args, **kwargs):
        opened.append(name if isinstance(name, str) else name.filename)
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "open", counting_open)
    monkeypatch.setattr(kdiag.engine.intake.load, "_keras_load", lambda *args: (_ for _ in ()).throw(RuntimeError("stop")))
    with pytest.raises(RuntimeError, match="stop"):  # everything before Keras ran
        kdiag.engine.intake.load.load_path(model_files / "tiny.keras")
    assert opened.count("config.json") == 1 and opened.count("metadata.json") == 1, opened


def test_the_memory_estimate_counts_the_config_before_it_is_parsed(monkeypatch):
    from kdiag.engine.intake import keras_archive, limits
    from kdiag.errors import KdiagError

    monkeypatch.setattr(limits, "available_memory_bytes", lambda: 1 << 30)
    keras_archive.check_archive_memory("m.keras", weights_bytes=100 << 20, json_bytes=16 << 20)  # 712 MiB: fits
    with pytest.raises(KdiagError, match=r"needs ~1\.2 GiB, 1\.0 GiB available \(its weights take 100\.0 MiB, "
                                         r"its config 32\.0 MiB before parsing\)"):
        keras_archive.check_archive_memory("m.keras", weights_bytes=100 << 20, json_bytes=32 << 20)


def test_an_archive_with_two_config_json_entries_is_refused(tmp_path):
    """zipfile, and so Keras, reads the last of two entries with one name: a scan of the first would
    vouch for a config Keras never loads."""
    benign = _stored("config.json", json.dumps(keras_config()).encode())
    lam = {"class_name": "Lambda", "config": {"name": "l", "function": {"class_name": "__lambda__", "config": {}}}}
    hostile = _stored("config.json", json.dumps(keras_config(lam)).encode())
    model = raw_zip(tmp_path / "twice.keras", [METADATA, benign, hostile, WEIGHTS])
    result = run_kdiag("inspect", model, "--out", tmp_path / "run", cwd=tmp_path)
    assert_one_line_refusal(result, "twice.keras holds two entries named 'config.json'")


# --- SavedModel files (item 3, and the file half of item 8) --------------------------------------------


@pytest.fixture(scope="module")
def asset_table_savedmodel(tmp_path_factory, tf):
    """A SavedModel whose lookup table reads its vocabulary from its own assets/vocab.txt."""
    root = tmp_path_factory.mktemp("savedmodels")
    vocab = root / "vocab.txt"
    vocab.write_text("a\nb\nc\n")

    class Serve(tf.Module):
        def __init__(self):
            super().__init__()
            self.vocabulary = tf.saved_model.Asset(str(vocab))
            self.table = tf.lookup.StaticHashTable(tf.lookup.TextFileInitializer(
                self.vocabulary, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64,
                tf.lookup.TextFileIndex.LINE_NUMBER), -1)

        @tf.function(input_signature=[tf.TensorSpec((None, 2), tf.float32, name="x")])
        def serve(self, x):
            return {"y": x * tf.cast(self.table.lookup(tf.constant("b")), tf.float32)}

    module = Serve()
    tf.saved_model.save(module, str(root / "table"), signatures={"serving_default": module.serve})
    assert (root / "table" / "assets" / "vocab.txt").is_file()
    return root / "table"


def _copy(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target, symlinks=True)
    return target


def test_an_asset_linked_to_etc_passwd_is_refused_before_tensorflow_reads_it(asset_table_savedmodel, tmp_path):
    model = _copy(asset_table_savedmodel, tmp_path / "linked")
    (model / "assets" / "vocab.txt").unlink()
    (model / "assets" / "vocab.txt").symlink_to("/etc/passwd")
    result = run_kdiag("inspect", model, "--out", tmp_path / "run", cwd=tmp_path)
    assert_one_line_refusal(result, "linked's assets/vocab.txt is a symbolic link to /etc/passwd, outside the "
                                    "SavedModel folder", "--unsafe", seconds=5.0)
    assert b"oneDNN" not in result.stderr  # refused before TensorFlow was even imported


def test_a_link_inside_the_folder_is_followed_and_accepted(asset_table_savedmodel, tmp_path):
    from kdiag.engine.intake.savedmodel_files import check_saved_model_files

    model = _copy(asset_table_savedmodel, tmp_path / "inside")
    (model / "copy.txt").write_text("a\nb\nc\n")
    (model / "assets" / "vocab.txt").unlink()
    (model / "assets" / "vocab.txt").symlink_to("../copy.txt")
    check_saved_model_files(model)  # nothing refused


@pytest.mark.parametrize("make, words", [
    (lambda p: os.mkfifo(p), "is a FIFO (named pipe), not a file"),
    (lambda p: p.symlink_to("/dev/zero"), "is a symbolic link to /dev/zero, a character device, not a file"),
    (lambda p: p.symlink_to(p.parent / "missing"), "is a symbolic link to nothing"),
], ids=["fifo", "dev-zero", "dangling"])
def test_a_fifo_or_device_among_the_variables_is_refused_without_hanging(model_files, tmp_path, make, words):
    model = _copy(model_files / "tiny_savedmodel", tmp_path / "sm")
    index = model / "variables" / "variables.index"
    index.unlink()
    make(index)
    # --unsafe: a link out of the folder is then accepted, a FIFO or a device never is.
    result = run_kdiag("inspect", model, "--unsafe", "--out", tmp_path / "run", cwd=tmp_path, timeout=60)
    assert_one_line_refusal(result, "sm's variables/variables.index", words, seconds=5.0)


def test_a_linked_variables_folder_is_walked_too(model_files, tmp_path):
    from kdiag.engine.intake.savedmodel_files import check_saved_model_files
    from kdiag.errors import KdiagError

    model = _copy(model_files / "tiny_savedmodel", tmp_path / "sm")
    (model / "variables").rename(model / "real_variables")
    (model / "variables").symlink_to("real_variables")
    check_saved_model_files(model)  # a link inside the folder: fine
    os.mkfifo(model / "real_variables" / "pipe")
    with pytest.raises(KdiagError, match=r"sm's variables/pipe is a FIFO"):
        check_saved_model_files(model)
