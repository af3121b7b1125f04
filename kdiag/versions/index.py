"""Which TensorFlow releases the package index serves for this Python, asked of pip itself.

`pip index versions PACKAGE` lists the releases pip would consider installing on this interpreter
(its platform and Python tags), through the user's own pip configuration: index URLs, proxies,
certificates. So "2.15" resolves to the newest 2.15.x that `pip install` would find, and a release
the index does not serve for this Python is refused with pip's own words, before anything is
downloaded. Where the running Python has no pip (an environment uv made), `uv tool run pip` asks
the same question.

Version arithmetic is `packaging`'s (PEP 440, the library pip itself uses), not hand-written.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from packaging.version import InvalidVersion, Version

from kdiag.datamodel.versions import INSTALLED, NIGHTLY
from kdiag.errors import KdiagError

CPU_PACKAGE = "tensorflow-cpu"
GPU_PACKAGE = "tensorflow"
NIGHTLY_PACKAGE = "tf-nightly"
#: An index query is one small page; without a network pip would otherwise retry for minutes.
QUERY_OPTIONS = ("--retries", "2", "--timeout", "20")
QUERY_TIMEOUT_S = 180.0


@dataclasses.dataclass(frozen=True)
class Target:
    """A `--tf` entry resolved: the distribution and release to install (or the running one)."""

    requested: str  # "2.15", "2.15.1", "installed", "nightly"
    package: str  # "tensorflow-cpu", "tensorflow", "tf-nightly"
    version: str  # "2.15.1"

    @property
    def installed(self) -> bool:
        return self.requested == INSTALLED


class IndexQueryError(KdiagError):
    """The index could not be asked, or does not serve what was asked: one line, pip's reason in it."""


def python_tag() -> str:
    """"3.11": the Python an environment is made for (the running one)."""
    return ".".join(platform.python_version_tuple()[:2])


def gpu_present() -> bool:
    """Whether an NVIDIA GPU is driven here (the only GPU TensorFlow's Linux wheels use), without TensorFlow."""
    try:
        return any(Path("/proc/driver/nvidia/gpus").iterdir())
    except OSError:
        return False


#: Runs a pip-like command, returning (exit status, stdout, stderr). Injectable for tests.
Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess"]


def _run(command: Sequence[str]) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          errors="replace", timeout=QUERY_TIMEOUT_S)


def pip_command() -> List[str]:
    """pip of the running Python, else pip run by uv; one line when neither is there."""
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"]
    uv = shutil.which("uv")
    if uv:
        return [uv, "tool", "run", "pip"]
    raise KdiagError("--tf needs pip (or uv) to ask the package index which TensorFlow releases it serves",
                     "install pip in this Python (python -m ensurepip) or put uv on PATH")


class PackageIndex:
    """`pip index versions`, asked once per package and remembered for the run."""

    def __init__(self, command: Optional[Sequence[str]] = None, run: Runner = _run):
        self.command = list(command) if command is not None else None
        self.run = run
        self._seen: Dict[tuple, List[str]] = {}

    def versions(self, package: str, pre: bool = False) -> List[str]:
        """Every release of `package` served for this Python, newest first; IndexQueryError naming pip's reason."""
        key = (package, pre)
        if key not in self._seen:
            command = (self.command or pip_command()) + ["index", "versions", package, *QUERY_OPTIONS]
            if pre:
                command.append("--pre")
            try:
                done = self.run(command)
            except (OSError, subprocess.SubprocessError) as exc:
                raise IndexQueryError(f"could not ask the package index about {package} ({type(exc).__name__}: "
                                  f"{exc})", "check that pip runs: python -m pip --version") from None
            listed = _available(done.stdout)
            if done.returncode != 0 or listed is None:
                raise IndexQueryError(f"{package} is not served for Python {python_tag()} by the package index "
                                  f"(pip: {pip_reason(done.stderr, done.stdout)})",
                                  "check the name and your network or index settings (pip config list)")
            self._seen[key] = listed
        return list(self._seen[key])


def _available(stdout: str) -> Optional[List[str]]:
    """The releases pip lists, each as PEP 440 writes it (digits, letters, dots: nothing else from pip's
    output reaches a report or a command line); what does not parse as a version is dropped."""
    for line in stdout.splitlines():
        if line.startswith("Available versions:"):
            parsed = (_version(v.strip()) for v in line.split(":", 1)[1].split(",") if v.strip())
            return [str(v) for v in parsed if v is not None]
    return None


def pip_reason(stderr: str, stdout: str = "") -> str:
    """pip's own reason in one line: its last ERROR, with the network failure behind it when there was one."""
    lines = [line.strip() for line in (stderr + "\n" + stdout).splitlines() if line.strip()]
    errors = [line[len("ERROR:"):].strip() for line in lines if line.startswith("ERROR:")]
    network = [line for line in lines if "NewConnectionError" in line or "Failed to establish" in line
               or "Temporary failure in name resolution" in line or "Max retries exceeded" in line]
    reason = errors[-1] if errors else (lines[-1] if lines else "no output")
    if network and network[-1] not in reason:
        reason += f"; {_short_network(network[-1])}"
    return reason[:300]


def _short_network(line: str) -> str:
    for marker in ("Temporary failure in name resolution", "Connection refused", "Network is unreachable",
                   "timed out", "Name or service not known"):
        if marker in line:
            return f"the index could not be reached ({marker})"
    return "the index could not be reached"


# --- resolving the --tf entries --------------------------------------------------------------


def installed_tensorflow() -> Target:
    """The TensorFlow this process would import, from its distribution metadata (TensorFlow is not imported)."""
    from importlib import metadata

    from kdiag.engine.environment import TENSORFLOW_DISTRIBUTIONS

    for name in TENSORFLOW_DISTRIBUTIONS:
        try:
            return Target(INSTALLED, name, metadata.version(name))
        except metadata.PackageNotFoundError:
            continue
    raise KdiagError("--tf installed: no TensorFlow is installed in this environment",
                     "pip install tensorflow, or drop 'installed' from --tf")


def resolve(requested: str, index: PackageIndex, gpu: Optional[bool] = None) -> Target:
    """One `--tf` entry → the release to install; one line (pip's reason in it) when the index lacks it."""
    if requested == INSTALLED:
        return installed_tensorflow()
    if requested == NIGHTLY:
        try:
            listed = index.versions(NIGHTLY_PACKAGE, pre=True)
        except IndexQueryError as exc:
            raise KdiagError(f"--tf nightly: {exc.problem}", "drop nightly from --tf") from None
        newest = _newest(listed, lambda v: True)
        if newest is None:
            raise KdiagError(f"--tf nightly: the package index lists no release of {NIGHTLY_PACKAGE} for Python "
                             f"{python_tag()}", "drop nightly from --tf")
        return Target(requested, NIGHTLY_PACKAGE, newest)
    gpu = gpu_present() if gpu is None else gpu
    packages = (GPU_PACKAGE,) if gpu else (CPU_PACKAGE, GPU_PACKAGE)
    served: Dict[str, List[str]] = {}
    for package in packages:
        try:
            served[package] = index.versions(package, pre=_is_pre(requested))
        except IndexQueryError as exc:
            if package == packages[-1] and not served:
                raise KdiagError(f"TensorFlow {requested}: {exc.problem}", exc.fix) from None
            continue
        found = _newest(served[package], _matcher(requested))
        if found is not None:
            return Target(requested, package, found)
    listed = next(iter(served.values()), [])
    span = f"{_oldest(listed)} to {listed[0]}" if listed else "nothing"
    raise KdiagError(f"TensorFlow {requested} is not served for Python {python_tag()} by the package index (pip "
                     f"index versions {' / '.join(served) or packages[0]}: {span})",
                     "pick a release it serves, e.g. " + (", ".join(_series(listed)[-3:]) or "2.15"))


def releases_between(good: str, bad: str, index: PackageIndex, gpu: Optional[bool] = None) -> List[Target]:
    """Every final release from `good` to `bad` inclusive (each resolved as --tf would), oldest first.

    A release re-uploaded as .postN counts once, as its newest build (2.15.0.post1 for 2.15.0).
    """
    first, last = resolve(good, index, gpu), resolve(bad, index, gpu)
    if Version(first.version) >= Version(last.version):
        raise KdiagError(f"--good {good} ({first.version}) is not older than --bad {bad} ({last.version})",
                         "give the older release as --good and the newer as --bad")
    by_release: Dict[tuple, Target] = {}
    packages = {first.package, last.package, *([GPU_PACKAGE] if first.package != GPU_PACKAGE else [])}
    for package in sorted(packages, key=lambda p: p != first.package):  # the good one's package first
        try:
            listed = index.versions(package)
        except IndexQueryError:
            continue
        for text in listed:
            version = _version(text)
            if version is None or version.is_prerelease or version.is_devrelease:
                continue
            if Version(first.version) <= version <= Version(last.version):
                key = version.release
                held = by_release.get(key)
                if held is None or (held.package == package and version > Version(held.version)):
                    by_release[key] = Target(text, package, text)
    found = [by_release[key] for key in sorted(by_release)]
    found[0], found[-1] = dataclasses.replace(found[0], requested=good), dataclasses.replace(found[-1], requested=bad)
    return found


def _version(text: str) -> Optional[Version]:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _is_pre(requested: str) -> bool:
    version = _version(requested)
    return version is not None and version.is_prerelease


def _matcher(requested: str) -> Callable[[Version], bool]:
    """"2.15" matches every final 2.15.x; "2.15.1" (three parts or more) that release exactly."""
    asked = Version(requested)
    if len(requested.split(".")) == 2 and not asked.is_prerelease:
        return lambda v: v.release[:2] == asked.release[:2] and not v.is_prerelease and not v.is_devrelease
    return lambda v: v == asked


def _newest(listed: Sequence[str], wanted: Callable[[Version], bool]) -> Optional[str]:
    matching = [(v, text) for v, text in ((_version(t), t) for t in listed) if v is not None and wanted(v)]
    return max(matching)[1] if matching else None


def _oldest(listed: Sequence[str]) -> str:
    versions = [(v, t) for v, t in ((_version(t), t) for t in listed) if v is not None]
    return min(versions)[1] if versions else "?"


def _series(listed: Sequence[str]) -> List[str]:
    """"2.12", "2.13", ...: the release series in a listing, oldest first."""
    series = {v.release[:2] for v in (_version(t) for t in listed) if v is not None and len(v.release) >= 2}
    return [f"{major}.{minor}" for major, minor in sorted(series)]
