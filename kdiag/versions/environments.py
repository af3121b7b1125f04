"""Cached environments, one per (TensorFlow release, Python version), and kdiag inside each.

They live in the user's cache folder (platformdirs: ~/.cache/kdiag/tf-envs on Linux;
KDIAG_ENV_CACHE overrides it), one folder each, named after what it holds:
`tensorflow-cpu-2.15.1-py3.11`. An environment is built in a temporary folder next to the cache's
others (`.building-NAME-PID-*`) and renamed into place only when complete, its description
(`kdiag-env.json`) written last: an interrupted build is never mistaken for an environment. A
build that fails is removed, and so is what an interrupted one left behind (its process is gone).

Built with uv when it is on PATH, else `python -m venv` and pip: the running Python's own venv
module, so every environment runs the Python this kdiag runs. It gets TensorFlow, NumPy and h5py
as that release pins them, and only what kdiag needs besides (rich, psutil); not snakeviz or
matplotlib (report.html's charts say "not drawn" there).

kdiag itself goes in from the running copy, not from the index: a copy of the package folder (the
`kdiag` folder alone) under `kdiag-copies/<content hash>/`, which the child puts first on its
import path, so every release runs exactly the kdiag that asked for it.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import re
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from kdiag.datamodel.versions import EnvironmentInfo
from kdiag.errors import KdiagError
from kdiag.versions import processes
from kdiag.versions.index import Target, pip_reason, python_tag

CACHE_VARIABLE = "KDIAG_ENV_CACHE"
DESCRIPTION = "kdiag-env.json"  # written last: an environment without it is not one
LAST_USED = "kdiag-last-used"  # touched at every use; `kdiag envs` shows its time
BUILDING = ".building-"
COPIES = "kdiag-copies"
COPIES_KEPT = 3  # copies of kdiag kept per environment (the newest); older ones are removed
#: What kdiag imports in a child besides TensorFlow and what it pins (NumPy, h5py): the terminal report
#: and the memory checks. Pinned to the versions this kdiag runs with, so every release gets the same.
KDIAG_NEEDS = ("rich", "psutil", "h5py")

Say = Callable[[str], None]


def cache_root() -> Path:
    """Where the environments live: $KDIAG_ENV_CACHE, else the user cache folder's tf-envs/."""
    given = os.environ.get(CACHE_VARIABLE)
    if given:
        return Path(given).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("kdiag", appauthor=False)) / "tf-envs"


def environment_name(target: Target) -> str:
    return f"{target.package}-{target.version}-py{python_tag()}"


def env_python(folder: Path) -> Path:
    return folder / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def disk_usage(folder: Path) -> int:
    """Bytes on disk under `folder`, as du counts them: allocated blocks, each hard-linked file once."""
    seen, total = set(), 0
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            try:
                info = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            total += getattr(info, "st_blocks", 0) * 512 or info.st_size
    return total


def requirements(target: Target) -> List[str]:
    """What an environment for `target` installs: the release, and what kdiag needs at the versions it runs with."""
    from importlib import metadata

    wanted = [f"{target.package}=={target.version}"]
    for name in KDIAG_NEEDS:
        if name == "h5py":  # TensorFlow pins its own range: let the resolver pick within it
            wanted.append(name)
            continue
        try:
            wanted.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            wanted.append(name)
    return wanted


# --- installers ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class InstallFigures:
    downloaded_bytes: Optional[int]  # None: the installer does not say
    cached_bytes: Optional[int]


class BuildFailed(Exception):
    """An installer failed; the message is its own reason, in one line."""


class PipBuilder:
    """`python -m venv` (this Python), then the environment's own pip."""

    name = "pip"

    def __init__(self, python: str = sys.executable):
        self.python = python

    def create(self, folder: Path) -> None:
        status, tail = processes.run_logged([self.python, "-m", "venv", str(folder)])
        if status != 0:
            raise BuildFailed(f"python -m venv failed: {pip_reason(chr(10).join(tail))}")

    def install(self, folder: Path, wanted: Sequence[str], say: Say) -> InstallFigures:
        sizes = _DownloadSizes(say)
        command = [str(env_python(folder)), "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
                   "--progress-bar", "off", "--prefer-binary", *wanted]
        status, tail = processes.run_logged(command, sizes.line)
        if status != 0:
            raise BuildFailed(f"pip: {pip_reason(chr(10).join(tail))}")
        return InstallFigures(sizes.downloaded, sizes.cached)

    def finish(self, folder: Path, final: Path) -> None:
        """The scripts venv and pip wrote name the temporary folder: point them at the final one."""
        old, new = str(folder), str(final)
        for script in (folder / ("Scripts" if sys.platform == "win32" else "bin")).iterdir():
            if script.is_symlink() or not script.is_file():
                continue
            try:
                text = script.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue  # a binary
            if old in text:
                script.write_text(text.replace(old, new), encoding="utf-8")


class UvBuilder:
    """uv: `uv venv --python THIS_PYTHON`, then `uv pip install --python ENV/bin/python`."""

    name = "uv"

    def __init__(self, uv: str, python: str = sys.executable):
        self.uv = uv
        self.python = python

    def create(self, folder: Path) -> None:
        status, tail = processes.run_logged([self.uv, "venv", "--quiet", "--relocatable", "--python", self.python,
                                             str(folder)])
        if status != 0:
            raise BuildFailed(f"uv venv: {pip_reason(chr(10).join(tail))}")

    def install(self, folder: Path, wanted: Sequence[str], say: Say) -> InstallFigures:
        def line(text: str) -> None:
            if text.strip():
                say(text.strip())

        status, tail = processes.run_logged([self.uv, "pip", "install", "--python", str(env_python(folder)),
                                             *wanted], line)
        if status != 0:
            raise BuildFailed(f"uv: {pip_reason(chr(10).join(tail))}")
        return InstallFigures(None, None)  # uv does not print the sizes it fetches

    def finish(self, folder: Path, final: Path) -> None:
        pass  # --relocatable: its scripts find their environment wherever it lies


def default_builder():
    uv = shutil.which("uv")
    return UvBuilder(uv) if uv else PipBuilder()


# pip's "  Downloading tensorflow_cpu-2.15.1-...whl (207.8 MB)" and "  Using cached rich-13.7.0-...whl (240 kB)".
_PIP_FILE = re.compile(r"^\s*(Downloading|Using cached)\s+(\S+)\s+\(([\d.]+)\s*([kMG]?B)\)")
_UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}


class _DownloadSizes:
    """Adds up what pip says it downloads and takes from its cache, and passes each file on."""

    def __init__(self, say: Say):
        self.say = say
        self.downloaded = 0
        self.cached = 0

    def line(self, text: str) -> None:
        match = _PIP_FILE.match(text)
        if match:
            what, name, number, unit = match.groups()
            size = int(float(number) * _UNITS[unit])
            if what == "Downloading":
                self.downloaded += size
            else:
                self.cached += size
            self.say(f"{'downloading' if what == 'Downloading' else 'from pip cache'} {name.split('-')[0]} "
                     f"({number} {unit})")
        elif text.startswith("Installing collected packages"):
            self.say("installing")


# --- the cache -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CachedEnvironment:
    """An environment in the cache, as its description says."""

    path: Path
    package: str
    tensorflow: str
    python: str
    installer: str
    built: str  # ISO time
    build_s: Optional[float] = None
    downloaded_bytes: Optional[int] = None
    cached_bytes: Optional[int] = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def python_executable(self) -> Path:
        return env_python(self.path)

    @property
    def last_used(self) -> Optional[float]:
        for marker in (LAST_USED, DESCRIPTION):
            try:
                return (self.path / marker).stat().st_mtime
            except OSError:
                continue
        return None

    def info(self, fresh: bool, size: bool = True) -> EnvironmentInfo:
        return EnvironmentInfo(self.name, self.package, self.tensorflow, self.python, self.installer, fresh,
                               self.build_s if fresh else None, self.downloaded_bytes if fresh else None,
                               self.cached_bytes if fresh else None, disk_usage(self.path) if size else None)


class EnvironmentCache:
    """The folder of environments: find, build, list and remove them."""

    def __init__(self, root: Optional[Path] = None, builder=None):
        self.root = Path(root) if root is not None else cache_root()
        self._builder = builder

    @property
    def builder(self):
        if self._builder is None:
            self._builder = default_builder()
        return self._builder

    def environments(self) -> List[CachedEnvironment]:
        """Every complete environment, by name."""
        found = []
        if not self.root.is_dir():
            return found
        for folder in sorted(self.root.iterdir()):
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            described = _read_description(folder)
            if described is not None:
                found.append(described)
        return found

    def find(self, target: Target) -> Optional[CachedEnvironment]:
        folder = self.root / environment_name(target)
        described = _read_description(folder)
        if described is None or not described.python_executable.exists():
            return None
        return described

    def ensure(self, target: Target, say: Say = lambda text: None) -> EnvironmentInfo:
        """The environment for `target`, built now if the cache has none; marked as used."""
        found = self.find(target)
        fresh = found is None
        if fresh:
            broken = self.root / environment_name(target)
            if broken.exists():  # described but unusable (its base Python is gone): built again
                say("the cached environment no longer runs: building it again")
                shutil.rmtree(broken, ignore_errors=True)
            found = self.build(target, say)
        _touch(found.path / LAST_USED)
        return found.info(fresh)

    def build(self, target: Target, say: Say = lambda text: None) -> CachedEnvironment:
        """Build into a temporary folder, describe it, rename it into place; remove it on any failure."""
        self.remove_leftovers()
        final = self.root / environment_name(target)
        if final.exists() and _read_description(final) is None:
            shutil.rmtree(final, ignore_errors=True)  # no description: not an environment (a broken copy)
        self.root.mkdir(parents=True, exist_ok=True)
        building = self.root / f"{BUILDING}{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        builder = self.builder
        started = time.perf_counter()
        try:
            say(f"creating the environment ({builder.name})")
            builder.create(building)
            figures = builder.install(building, requirements(target), say)
            builder.finish(building, final)
            described = CachedEnvironment(
                final, target.package, target.version, python_tag(), builder.name,
                datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                time.perf_counter() - started, figures.downloaded_bytes, figures.cached_bytes)
            _write_description(building, described)
            try:
                os.rename(building, final)
            except OSError:
                if _read_description(final) is None:
                    raise
                shutil.rmtree(building, ignore_errors=True)  # another kdiag built it meanwhile: use that one
                return _read_description(final)
            return described
        except BuildFailed as failure:
            shutil.rmtree(building, ignore_errors=True)
            raise KdiagError(f"TensorFlow {target.version}: its environment could not be built ({failure}); the "
                             f"partial environment was removed", _fix_for(str(failure))) from None
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise

    def remove_leftovers(self) -> List[Path]:
        """Remove what interrupted builds left (their process is gone); returns what was removed."""
        removed = []
        if not self.root.is_dir():
            return removed
        for folder in self.root.glob(f"{BUILDING}*"):
            match = re.search(r"-(\d+)-[0-9a-f]{8}$", folder.name)
            if match and _alive(int(match.group(1))):
                continue
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
        return removed

    def matching(self, version: str) -> List[CachedEnvironment]:
        """Environments holding `version` ("2.15.1") or a release of the series `version` ("2.15")."""
        return [env for env in self.environments()
                if env.tensorflow == version or env.tensorflow.startswith(version + ".")
                or env.name == version]

    def remove(self, environment: CachedEnvironment) -> int:
        """Remove one environment; the bytes it took."""
        size = disk_usage(environment.path)
        # Renamed out of the way first, so no run can pick up a half-removed environment.
        doomed = self.root / f"{BUILDING}removing-{environment.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.rename(environment.path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)
        return size


def listing(cache: EnvironmentCache) -> str:
    """`kdiag envs`: every cached environment with its size on disk and its last use."""
    from kdiag.views import size_text

    found = cache.environments()
    sizes = [disk_usage(env.path) for env in found]
    lines = [f"kdiag: {len(found)} cached environment{'s' if len(found) != 1 else ''} in {cache.root}"
             + (f", {size_text(sum(sizes))} in all" if found else "")]
    for env, size in zip(found, sizes):
        used = env.last_used
        when = datetime.datetime.fromtimestamp(used).strftime("%Y-%m-%d %H:%M") if used else "never"
        built = f"built {env.built[:16].replace('T', ' ')} with {env.installer}"
        if env.build_s is not None:
            built += f" in {env.build_s:.0f} s"
        lines.append(f"  {env.name:<40} {size_text(size):>9}   last used {when}   ({built})")
    if not found:
        lines.append("  none yet: kdiag inspect MODEL --tf 2.15,installed builds them")
    return "\n".join(lines) + "\n"


def removal(cache: EnvironmentCache, version: Optional[str]) -> str:
    """`kdiag envs rm VERSION` (a release or a series) or `--all` (None): remove them; what was removed."""
    from kdiag.views import size_text

    doomed = cache.environments() if version is None else cache.matching(version)
    if not doomed and version is not None:
        raise KdiagError(f"no cached environment holds TensorFlow {version}", "kdiag envs lists the cached environments")
    freed, lines = 0, []
    for environment in doomed:
        freed += cache.remove(environment)
        lines.append(f"kdiag: removed {environment.name}")
    lines.append(f"kdiag: {len(doomed)} environment{'s' if len(doomed) != 1 else ''} removed, {size_text(freed)} freed")
    return "\n".join(lines) + "\n"


def _fix_for(reason: str) -> str:
    lowered = reason.lower()
    if "no space left" in lowered or "errno 28" in lowered:
        return "free some disk space (kdiag envs lists the cached environments; kdiag envs rm VERSION removes one)"
    if "could not be reached" in lowered or "connection" in lowered or "network" in lowered:
        return "check your network, or your index settings (pip config list)"
    return "check that the release installs here with pip, or pick another one"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _touch(path: Path) -> None:
    try:
        path.touch()
    except OSError:
        pass  # a read-only cache still runs; `kdiag envs` then shows when it was built


def _write_description(folder: Path, env: CachedEnvironment) -> None:
    data = {f.name: getattr(env, f.name) for f in dataclasses.fields(env) if f.name != "path"}
    (folder / DESCRIPTION).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _read_description(folder: Path) -> Optional[CachedEnvironment]:
    try:
        data = json.loads((folder / DESCRIPTION).read_text(encoding="utf-8"))
        fields = {f.name for f in dataclasses.fields(CachedEnvironment)} - {"path"}
        return CachedEnvironment(folder, **{k: v for k, v in data.items() if k in fields})
    except (OSError, ValueError, TypeError):
        return None


# --- kdiag in each environment -------------------------------------------------------------------


def kdiag_source() -> Path:
    """The running kdiag package folder."""
    return Path(__file__).resolve().parents[1]


def source_hash(package: Path) -> str:
    """A hash of every file of the package (paths and contents), __pycache__ aside."""
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(package)).encode("utf-8", "surrogateescape") + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def install_kdiag(environment: Path, package: Optional[Path] = None) -> Path:
    """Copy the running kdiag into `environment` (once per version of its code); the folder to import it from.

    The folder holds the `kdiag` package alone, so putting it on a child's import path adds nothing else.
    """
    package = package or kdiag_source()
    copies = environment / COPIES
    target = copies / source_hash(package)
    if not (target / "kdiag" / "__init__.py").is_file():
        copies.mkdir(parents=True, exist_ok=True)
        staging = copies / f".copying-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        shutil.copytree(package, staging / "kdiag", ignore=shutil.ignore_patterns("__pycache__"))
        try:
            os.rename(staging, target)
        except OSError:  # another run copied the same code meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    _touch(target)
    _prune_copies(copies, keep=target)
    return target


def _prune_copies(copies: Path, keep: Path) -> None:
    """Older copies of kdiag go (the newest few stay, for runs still using them), and so do the
    half-made ones of runs that are gone."""
    others = sorted((p for p in copies.iterdir() if p != keep), key=lambda p: p.stat().st_mtime, reverse=True)
    complete = [p for p in others if not p.name.startswith(".")]
    for old in complete[COPIES_KEPT - 1:]:
        shutil.rmtree(old, ignore_errors=True)
    for staging in (p for p in others if p.name.startswith(".copying-")):
        match = re.search(r"-(\d+)-", staging.name)
        if match and not _alive(int(match.group(1))):
            shutil.rmtree(staging, ignore_errors=True)
