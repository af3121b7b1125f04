"""Redacted .prof copies, and the environment fields of TensorFlow's bug template. No TensorFlow."""

from __future__ import annotations

import cProfile
import json
import marshal
import os
import pstats

import pytest

import factories as fx
from kdiag.datamodel.redaction import Redactor, redacted_prof_path
from kdiag.engine import environment
from kdiag.engine.phases.profiling import write_redacted

HOME = "/home/alice"
SITE = f"{HOME}/.venv/lib/python3.11/site-packages"
MODEL_DIR = f"{HOME}/Projects/alice-secret"
REDACTOR = Redactor.of([(MODEL_DIR, "<model-dir>"), (SITE, "<python>"), (HOME, "~")])


def _profile_of_code_in(tmp_path, files):
    """A real cProfile dump of functions whose code says it lives in `files` (paths need not exist)."""
    namespace = {}
    for i, name in enumerate(files):
        exec(compile(f"def f{i}(n):\n    return sum(range(n))\n", name, "exec"), namespace)
    caller_src = "def main():\n" + "".join(f"    f{i}(1000)\n" for i in range(len(files)))
    exec(compile(caller_src, f"{MODEL_DIR}/main.py", "exec"), namespace)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(3):
        namespace["main"]()
    profiler.disable()
    path = tmp_path / "run" / "predict.prof"
    path.parent.mkdir()
    profiler.dump_stats(str(path))
    return path


def test_a_redacted_prof_copy_loads_in_pstats_with_the_same_figures_and_no_local_path(tmp_path):
    original = _profile_of_code_in(tmp_path, [f"{SITE}/keras/src/trainer.py", f"{HOME}/code/layers.py",
                                              "/opt/other/lib.py"])
    copy = tmp_path / "run" / "redacted" / "predict.prof"
    assert redacted_prof_path(str(original)) == str(copy)
    write_redacted(original, copy, REDACTOR.redact)
    before, after = pstats.Stats(str(original)), pstats.Stats(str(copy))  # what snakeviz opens
    assert after.total_tt == before.total_tt and after.total_calls == before.total_calls
    files = {file for file, _, _ in after.stats}
    assert {"<python>/keras/src/trainer.py", "~/code/layers.py", "<model-dir>/main.py", "/opt/other/lib.py"} <= files
    raw = copy.read_bytes()
    assert b"alice" not in raw and b"site-packages" not in raw
    # Callers are keyed the same way: the call graph snakeviz draws survives.
    callee = next(k for k in after.stats if k[0] == "<python>/keras/src/trainer.py")
    assert ("<model-dir>/main.py", 1, "main") in after.stats[callee][4]
    after.sort_stats("cumulative").print_stats(0)  # pstats can sort and print it


def test_entries_that_redact_to_one_name_are_added_up(tmp_path):
    original = tmp_path / "x.prof"
    stats = {("/a/one.py", 1, "f"): (1, 2, 0.5, 1.0, {("/a/main.py", 1, "main"): (1, 2, 0.5, 1.0)}),
             ("/b/one.py", 1, "f"): (3, 4, 0.25, 2.0, {("/b/main.py", 1, "main"): (3, 4, 0.25, 2.0)})}
    original.write_bytes(marshal.dumps(stats))
    merge = Redactor.of([("/a", "<x>"), ("/b", "<x>")])
    write_redacted(original, tmp_path / "r" / "x.prof", merge.redact)
    merged = pstats.Stats(str(tmp_path / "r" / "x.prof")).stats
    assert merged == {("<x>/one.py", 1, "f"): (4, 6, 0.75, 3.0, {("<x>/main.py", 1, "main"): (4, 6, 0.75, 3.0)})}


def test_root_and_relative_paths_are_never_redacted_as_a_whole():
    redactor = Redactor.of([("/", "~"), ("relative/dir", "<model-dir>"), ("", "<python>"), ("/srv/m/", "<model-dir>")])
    assert redactor.replacements == (("/srv/m", "<model-dir>"),)
    assert redactor.redact("/usr/bin/python3 /srv/m/x.keras") == "/usr/bin/python3 <model-dir>/x.keras"


@pytest.mark.parametrize("installer, direct_url, expected", [
    ("pip", None, "binary (pip, tensorflow)"),
    ("uv", None, "binary (uv, tensorflow)"),
    ("conda", None, "binary (conda, tensorflow)"),
    ("pip", json.dumps({"url": "file:///home/a/tensorflow", "dir_info": {"editable": True}}),
     "source (pip, tensorflow from the folder file:///home/a/tensorflow (editable))"),
    ("pip", json.dumps({"url": "https://github.com/tensorflow/tensorflow", "vcs_info": {"vcs": "git"}}),
     "source (pip, tensorflow from git https://github.com/tensorflow/tensorflow)"),
    ("pip", json.dumps({"url": "file:///tmp/tensorflow-2.21.0-cp311-linux_x86_64.whl", "archive_info": {}}),
     "binary (pip, tensorflow from the wheel file:///tmp/tensorflow-2.21.0-cp311-linux_x86_64.whl)"),
    ("pip", "not json", "binary (pip, tensorflow)"),
])
def test_how_tensorflow_was_installed(installer, direct_url, expected):
    assert environment.install_source("tensorflow", installer, direct_url) == expected


def test_the_installed_tensorflow_is_named_from_its_metadata():
    assert environment.tensorflow_install().endswith("tensorflow)")  # this machine: pip, the tensorflow wheel


def test_gpu_model_and_memory():
    assert environment.gpu_models(["NVIDIA H100 80GB HBM3"], [["NVIDIA H100 80GB HBM3", "81559"]]) == [
        "NVIDIA H100 80GB HBM3, 81559 MiB"]
    assert environment.gpu_models(["A", "B"], [["B", "2"], ["A", "1"]]) == ["A, 1 MiB", "B, 2 MiB"]
    assert environment.gpu_models(["A"], []) == ["A, memory unknown"]
    assert environment.gpu_models([], [["A", "1"]]) == []  # TensorFlow sees no GPU: none is listed


def test_os_distribution_from_os_release_or_the_platform(monkeypatch):
    monkeypatch.setattr(environment.platform, "freedesktop_os_release",
                        lambda: {"NAME": "Ubuntu", "PRETTY_NAME": "Ubuntu 24.04.1 LTS"}, raising=False)
    assert environment.os_distribution() == "Ubuntu 24.04.1 LTS"

    def missing():
        raise OSError("no /etc/os-release")

    monkeypatch.setattr(environment.platform, "freedesktop_os_release", missing, raising=False)
    assert environment.os_distribution()  # the platform module's best, never empty


def test_python_paths_cover_site_packages_but_not_a_shared_prefix():
    paths = environment.python_paths()
    assert any(p.endswith("site-packages") or p.endswith("dist-packages") for p in paths)
    assert os.path.dirname(os.__file__) in paths  # the standard library
    assert not {"/", "/usr", "/usr/local"} & set(paths)
    assert all(os.path.isabs(p) for p in paths)


def test_the_factory_home_is_redacted_in_every_string_of_a_report():
    report = fx.report(fx.typical_keras3(), notes=[f"warning: {fx.HOME}/x.py: old"])
    redacted = Redactor.for_report(report).report(report)
    assert redacted.notes == ["warning: ~/x.py: old"]
    assert redacted.strategies == report.strategies  # nothing else changed
    assert redacted.environment.home == "~"  # the paths to redact are strings of the report too
