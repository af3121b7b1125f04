"""The environments of `--tf` and bisect: what the index serves, the cache, the installers, process groups.

No download: the index answers through a fake pip (or a real pip pointed at an index that cannot be
reached), the cache builds with a fake builder, and the process-group test runs plain Python.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from checks import assert_refused
from kdiag.cli import Env, main
from kdiag.errors import KdiagError
from kdiag.versions import environments as envs
from kdiag.versions import processes
from kdiag.versions.index import PackageIndex, Target, pip_reason, releases_between, resolve

CPU = ("2.21.0, 2.20.0, 2.19.1, 2.19.0, 2.18.1, 2.17.1, 2.16.2, 2.16.1, 2.15.1, 2.15.0.post1, 2.15.0, 2.14.1, "
       "2.13.1, 2.12.1, 2.12.0")


def fake_pip(listings, failures=None):
    """A pip runner answering `pip index versions PACKAGE` from `listings`; `failures[package]` is its stderr."""
    asked = []

    def run(command):
        package = command[command.index("versions") + 1]
        asked.append((package, "--pre" in command))
        if failures and package in failures:
            return subprocess.CompletedProcess(command, 1, "", failures[package])
        versions = listings[package]
        return subprocess.CompletedProcess(command, 0, f"{package} ({versions.split(',')[0]})\n"
                                                      f"Available versions: {versions}\n", "WARNING: experimental\n")
    run.asked = asked
    return run


# --- the package index -----------------------------------------------------------------------------


def test_a_series_resolves_to_its_newest_release_and_an_exact_release_to_itself():
    index = PackageIndex(run=fake_pip({"tensorflow-cpu": CPU, "tensorflow": CPU}))
    assert resolve("2.15", index, gpu=False) == Target("2.15", "tensorflow-cpu", "2.15.1")
    assert resolve("2.15.0", index, gpu=False).version == "2.15.0"
    assert resolve("2.16", index, gpu=True) == Target("2.16", "tensorflow", "2.16.2")  # a GPU: the full wheel
    assert index.run.asked.count(("tensorflow-cpu", False)) == 1  # asked once per package, remembered


def test_tensorflow_cpu_is_used_only_where_it_exists_for_that_release():
    index = PackageIndex(run=fake_pip({"tensorflow-cpu": "2.16.2", "tensorflow": "2.17.0, 2.16.2"}))
    assert resolve("2.17", index, gpu=False) == Target("2.17", "tensorflow", "2.17.0")


def test_a_release_the_index_does_not_serve_is_refused_naming_what_it_serves():
    index = PackageIndex(run=fake_pip({"tensorflow-cpu": CPU, "tensorflow": CPU}))
    with pytest.raises(KdiagError) as refused:
        resolve("2.99", index, gpu=False)
    message = refused.value.message
    assert "TensorFlow 2.99 is not served for Python" in message and "2.12.0 to 2.21.0" in message
    assert "e.g. 2.19, 2.20, 2.21" in message


def test_nightly_not_served_is_one_line_with_pip_s_own_reason():
    index = PackageIndex(run=fake_pip({}, failures={"tf-nightly": "WARNING: x\nERROR: No matching distribution "
                                                                  "found for tf-nightly\n"}))
    with pytest.raises(KdiagError, match=r"^--tf nightly: tf-nightly is not served for Python \d+\.\d+ by the "
                                         r"package index \(pip: No matching distribution found for tf-nightly\)"):
        resolve("nightly", index)
    assert index.run.asked == [("tf-nightly", True)]  # development builds need --pre


def test_nightly_resolves_to_the_newest_development_build():
    index = PackageIndex(run=fake_pip({"tf-nightly": "2.23.0.dev20261026, 2.23.0.dev20261025, 2.22.0.dev20260924"}))
    assert resolve("nightly", index).version == "2.23.0.dev20261026"


def test_without_a_network_the_real_pip_s_reason_comes_back_in_one_line(monkeypatch, tmp_path):
    # A real pip, pointed at an index nobody serves (port 9, discard): it fails at once, downloading nothing.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    started = time.monotonic()
    with pytest.raises(KdiagError) as refused:
        resolve("2.15", PackageIndex(), gpu=True)
    assert time.monotonic() - started < 120
    message = refused.value.message
    assert message.startswith("TensorFlow 2.15: tensorflow is not served for Python")
    assert "(pip: No matching distribution found for tensorflow" in message and "\n" not in message


def test_pip_s_reason_names_an_unreachable_index():
    stderr = ("WARNING: Retrying (Retry(total=0)) after connection broken by 'NewConnectionError(': Failed to "
              "establish a new connection: [Errno -3] Temporary failure in name resolution')': /simple/x/\n"
              "ERROR: No matching distribution found for x\n")
    assert pip_reason(stderr) == ("No matching distribution found for x; the index could not be reached (Temporary "
                                  "failure in name resolution)")


def test_bisect_walks_every_final_release_once_oldest_first():
    index = PackageIndex(run=fake_pip({"tensorflow-cpu": CPU + ", 2.16.0rc0", "tensorflow": CPU}))
    found = releases_between("2.12", "2.21", index, gpu=False)
    versions = [t.version for t in found]
    assert versions == ["2.12.1", "2.13.1", "2.14.1", "2.15.0.post1", "2.15.1", "2.16.1", "2.16.2", "2.17.1",
                        "2.18.1", "2.19.0", "2.19.1", "2.20.0", "2.21.0"]  # no rc; 2.15.0 once, as its .post1
    assert found[0].requested == "2.12" and found[-1].requested == "2.21"


# --- the cache ---------------------------------------------------------------------------------------


class FakeBuilder:
    """Makes a folder with bin/python (a link to this Python); `fail` raises like an installer would."""

    name = "pip"

    def __init__(self, fail=None):
        self.fail, self.built = fail, []

    def create(self, folder: Path) -> None:
        (folder / "bin").mkdir(parents=True)
        (folder / "bin" / "python").symlink_to(sys.executable)
        (folder / "bin" / "tool").write_text(f"#!{folder}/bin/python\n", encoding="utf-8")

    def install(self, folder: Path, wanted, say):
        self.built.append(list(wanted))
        say("downloading tensorflow_cpu (207.8 MB)")
        (folder / "lib").mkdir()
        (folder / "lib" / "big.bin").write_bytes(b"x" * 100_000)
        if self.fail is not None:
            raise self.fail
        return envs.InstallFigures(207_800_000, 0)

    def finish(self, folder: Path, final: Path) -> None:
        envs.PipBuilder.finish(self, folder, final)


TARGET = Target("2.15", "tensorflow-cpu", "2.15.1")


def test_a_build_is_renamed_into_place_when_complete_and_reused_after(tmp_path):
    builder = FakeBuilder()
    cache = envs.EnvironmentCache(tmp_path / "cache", builder)
    said = []
    first = cache.ensure(TARGET, said.append)
    assert first.fresh and first.name == f"tensorflow-cpu-2.15.1-py{sys.version_info[0]}.{sys.version_info[1]}"
    assert first.downloaded_bytes == 207_800_000 and first.size_bytes >= 100_000 and first.build_s is not None
    folder = cache.root / first.name
    assert json.loads((folder / envs.DESCRIPTION).read_text())["tensorflow"] == "2.15.1"
    assert [p.name for p in cache.root.iterdir()] == [first.name]  # no temporary folder left
    assert (folder / "bin" / "tool").read_text() == f"#!{folder}/bin/python\n"  # scripts name the final folder
    assert builder.built == [envs.requirements(TARGET)] and builder.built[0][0] == "tensorflow-cpu==2.15.1"
    assert {"rich", "psutil"} <= {r.split("==")[0] for r in builder.built[0]}
    assert not any(r.startswith(("snakeviz", "matplotlib")) for r in builder.built[0])
    again = cache.ensure(TARGET)
    assert not again.fresh and again.how == "reused from the cache" and len(builder.built) == 1
    assert "downloading tensorflow_cpu (207.8 MB)" in said


def test_a_failed_build_is_removed_and_refused_in_one_line_with_the_installer_s_reason(tmp_path):
    cache = envs.EnvironmentCache(tmp_path / "cache", FakeBuilder(
        fail=envs.BuildFailed("pip: Could not install packages due to an OSError: [Errno 28] No space left on device")))
    with pytest.raises(KdiagError) as refused:
        cache.ensure(TARGET)
    assert refused.value.problem == ("TensorFlow 2.15.1: its environment could not be built (pip: Could not install "
                                     "packages due to an OSError: [Errno 28] No space left on device); the partial "
                                     "environment was removed")
    assert "free some disk space" in refused.value.fix
    assert list(cache.root.iterdir()) == []


def test_an_interrupted_build_is_removed_and_never_reused(tmp_path):
    cache = envs.EnvironmentCache(tmp_path / "cache", FakeBuilder(fail=KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        cache.ensure(TARGET)
    assert list(cache.root.iterdir()) == []
    # What a killed build left (its process gone) is removed; a running one's is not; a folder without
    # its description is no environment.
    dead = cache.root / f".building-x-{_dead_pid()}-0123abcd"
    alive = cache.root / f".building-y-{os.getpid()}-0123abcd"
    for folder in (dead, alive, cache.root / envs.environment_name(TARGET)):
        folder.mkdir(parents=True)
    assert cache.remove_leftovers() == [dead] and alive.exists()
    assert cache.find(TARGET) is None and cache.environments() == []


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_envs_lists_sizes_and_last_use_and_rm_removes(tmp_path, monkeypatch):
    monkeypatch.setenv(envs.CACHE_VARIABLE, str(tmp_path / "cache"))
    cache = envs.EnvironmentCache(builder=FakeBuilder())
    assert cache.root == tmp_path / "cache"
    cache.ensure(TARGET)
    cache.ensure(Target("2.16", "tensorflow-cpu", "2.16.2"))

    def cli(*argv):
        out, err = io.StringIO(), io.StringIO()
        return main(list(argv), Env(out, err)), out.getvalue(), err.getvalue()

    code, out, _ = cli("envs")
    assert code == 0 and "2 cached environments in" in out
    assert "tensorflow-cpu-2.15.1-py" in out and "last used 20" in out and "kB" in out
    assert_refused(cli("envs", "rm", "2.99"), "no cached environment holds TensorFlow 2.99")
    assert_refused(cli("envs", "rm"), "a VERSION or --all")
    code, out, _ = cli("envs", "rm", "2.15")
    assert code == 0 and "removed tensorflow-cpu-2.15.1" in out and "1 environment removed" in out
    assert [e.tensorflow for e in cache.environments()] == ["2.16.2"]
    code, out, _ = cli("envs", "rm", "--all")
    assert code == 0 and cache.environments() == [] and list(cache.root.iterdir()) == []


def test_kdiag_goes_in_as_a_copy_of_the_package_alone_once_per_version_of_its_code(tmp_path):
    package = tmp_path / "src" / "kdiag"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("x = 1\n")
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "junk.pyc").write_bytes(b"0")
    environment = tmp_path / "env"
    first = envs.install_kdiag(environment, package)
    assert [p.name for p in first.iterdir()] == ["kdiag"]  # nothing but the package on the child's path
    assert sorted(p.name for p in (first / "kdiag").iterdir()) == ["__init__.py"]
    assert envs.install_kdiag(environment, package) == first
    (package / "__init__.py").write_text("x = 2\n")
    second = envs.install_kdiag(environment, package)
    assert second != first and (second / "kdiag" / "__init__.py").read_text() == "x = 2\n"


def test_pip_s_download_lines_add_up_to_what_was_fetched():
    said = []
    sizes = envs._DownloadSizes(said.append)
    for line in ["Collecting tensorflow-cpu==2.15.1",
                 "  Downloading tensorflow_cpu-2.15.1-cp311-cp311-manylinux_2_17_x86_64.whl (207.8 MB)",
                 "  Using cached rich-13.7.0-py3-none-any.whl (240 kB)",
                 "  Downloading numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl (18.3 MB)",
                 "Installing collected packages: numpy, rich, tensorflow-cpu"]:
        sizes.line(line)
    assert sizes.downloaded == 226_100_000 and sizes.cached == 240_000
    assert said == ["downloading tensorflow_cpu (207.8 MB)", "from pip cache rich (240 kB)",
                    "downloading numpy (18.3 MB)", "installing"]


# --- process groups ------------------------------------------------------------------------------------


def test_stopping_a_child_stops_its_whole_group(tmp_path):
    marker = tmp_path / "grandchild.pid"
    code = (f"import subprocess, sys, time\n"
            f"g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            f"open({str(marker)!r}, 'w').write(str(g.pid))\n"
            f"time.sleep(60)\n")
    child = processes.start([sys.executable, "-c", code])
    deadline = time.monotonic() + 30
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    grandchild = int(marker.read_text())
    processes.stop(child, grace_s=2.0)
    assert child.returncode == -signal.SIGTERM
    deadline = time.monotonic() + 10
    while _running(grandchild):
        assert time.monotonic() < deadline, "the grandchild outlived its group"
        time.sleep(0.05)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_an_environment_whose_python_is_gone_is_built_again(tmp_path):
    builder = FakeBuilder()
    cache = envs.EnvironmentCache(tmp_path / "cache", builder)
    first = cache.ensure(TARGET)
    (cache.root / first.name / "bin" / "python").unlink()  # its base interpreter was removed
    said = []
    again = cache.ensure(TARGET, said.append)
    assert again.fresh and len(builder.built) == 2 and (cache.root / again.name / "bin" / "python").exists()
    assert "the cached environment no longer runs: building it again" in said
