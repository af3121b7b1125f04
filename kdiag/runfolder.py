"""Run folders: `reports/<model>-<timestamp>/` with report.md, report.json and the .prof files.

An existing run is never overwritten, and files are written atomically (a temporary
file in the same folder, then a rename), so a reader never sees half a report.

A run folder is claimed with an exclusive create, so of two runs started at the same
instant exactly one gets it: a default folder by `mkdir` of a name nobody has (a suffix
when the timestamp collides), a folder given with --out by a lock (`fcntl.flock`) on a file
inside it, which the kernel releases when the run's process ends, however it ends: the
leftovers of a killed run (no report.json) are removed by the next run on that --out.
File-system faults (read-only, full, a file in the way) are one line naming the folder and
`--out DIR`. What was measured is never thrown away: when the run
folder cannot take the report, it is saved in a fallback folder in the system's temporary
folder, and the message names it.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from kdiag.datamodel.redaction import REDACTED_FOLDER
from kdiag.errors import ExitStatus, KdiagError, first_line
from kdiag.tempdirs import HeldLock

DEFAULT_ROOT = Path("reports")
# Present while a run owns a folder given with --out; the flock on it is the claim (kdiag.tempdirs.HeldLock).
LOCK_NAME = ".kdiag-run.lock"
FALLBACK_PREFIX = "kdiag-rescued-"
OUT_FIX = "pass --out DIR naming a new or empty folder you can write to, on a disk with free space"


def new_run_folder(model_name: str, out: Optional[Path] = None, root: Path = DEFAULT_ROOT) -> Path:
    """Create the folder for this run: `out` if given (must be new or empty), else a fresh one under root.

    A given folder keeps its lock file until `discard` or `RunFolder.save`; use `RunFolder.claim`
    to have both.
    """
    return RunFolder.claim(model_name, out, root).path


@dataclasses.dataclass(frozen=True)
class Saved:
    """Where a report went: the run folder, or a fallback when the run folder could not take it."""

    folder: Path
    refused_by: Optional[Path] = None  # the run folder that could not take it
    reason: str = ""  # why, e.g. "No space left on device"

    def where(self) -> str:
        if self.refused_by is None:
            return f"in {self.folder}/"
        return f"in {self.folder}/ because {self.refused_by}/ could not take it ({self.reason})"


class RunFolder:
    """A run folder this run alone owns: claimed atomically, saved into, or removed."""

    def __init__(self, path: Path, created: bool, lock: Optional[HeldLock] = None, name: str = "model",
                 made_parents: Sequence[Path] = (), took_over: Sequence[str] = ()):
        self.path = path
        self.created = created  # made by this run, so removed whole when nothing is kept
        self.lock = lock
        self.name = name
        self.made_parents = tuple(made_parents)  # folders above it made for it, innermost first
        self.took_over = tuple(took_over)  # what a killed run had left in it, removed for this one

    @classmethod
    def claim(cls, model_name: str, out: Optional[Path] = None, root: Path = DEFAULT_ROOT) -> "RunFolder":
        """Claim `out` (new, or an empty folder), else a fresh `root/<model>-<timestamp>[-N]/`."""
        where = f"--out {out}" if out is not None else f"in {root}/ (the default, under the current folder {_cwd()})"
        try:
            if out is None:
                return cls._claim_default(model_name, Path(root), where)
            return cls._claim_given(model_name, Path(out), where)
        except KdiagError:
            raise
        except OSError as exc:
            raise KdiagError(f"cannot create the run folder {where}: {os_reason(exc, with_file=False)}",
                             OUT_FIX) from None

    @classmethod
    def _claim_default(cls, model_name: str, root: Path, where: str) -> "RunFolder":
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = root / f"{_safe(model_name)}-{stamp}"
        candidate, n = base, 1
        made = _make_parents(base, where)
        while True:
            try:
                candidate.mkdir()  # exclusive: of two runs in the same second, one gets the -2 suffix
                return cls(candidate, created=True, name=model_name, made_parents=made)
            except FileExistsError:
                n += 1
                candidate = base.with_name(f"{base.name}-{n}")

    @classmethod
    def _claim_given(cls, model_name: str, out: Path, where: str) -> "RunFolder":
        _refuse_unusable(out)
        created, made = False, []
        if not out.is_dir():
            made = _make_parents(out, where)
            try:
                out.mkdir()
                created = True
            except FileExistsError:  # made by someone else since we looked: the lock below decides
                _refuse_unusable(out)
        path = out / LOCK_NAME
        stale = os.path.lexists(path)  # left by a run that is gone, when we get its lock
        try:
            lock = HeldLock.try_acquire(path)
        except OSError:
            if created:
                cls(out, created, name=model_name, made_parents=made).discard()
            raise
        if lock is None:
            raise KdiagError(_claimed(out), OUT_FIX)
        others = sorted(child.name for child in out.iterdir() if child.name != LOCK_NAME)
        if others and not (stale and "report.json" not in others):  # filled since we looked
            lock.release()
            _refuse_unusable(out)
        took_over = []
        if others:  # a killed run's partial files (it never saved a report): this run takes the folder
            for child in out.iterdir():
                if child.name == LOCK_NAME:
                    continue
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
            took_over = others
        return cls(out, created=created, lock=lock, name=model_name, made_parents=made, took_over=took_over)

    def release(self) -> None:
        """Drop the claim: the saved report now marks the folder as a finished run."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def discard(self) -> None:
        """Remove everything this run wrote (nothing was measured, so nothing is kept)."""
        if self.path.is_dir():
            discard(self.path, keep_folder=not self.created)
        if self.lock is not None:
            self.lock.release(remove=False)  # its file went with the rest
            self.lock = None
        for parent in self.made_parents:
            try:
                parent.rmdir()  # only while empty: another run may have put its folder there since
            except OSError:
                break

    def save(self, report, write: Callable[[object, Path], None]) -> Saved:
        """Write the report with `write(report, folder)`; a stop signal waits until it is written.

        When the run folder cannot take it (read-only, full, removed), what was written there
        is removed and the report, with its .prof files, goes to a fallback folder instead.
        """
        from kdiag.signals import active_stop

        with active_stop().saving():
            try:
                write(report, self.path)
                self.release()
                return Saved(self.path)
            except OSError as exc:
                reason = os_reason(exc)
            except BaseException:  # a bug in a renderer: keep what it wrote, and the traceback
                if any(child.name != LOCK_NAME for child in self.path.iterdir()):
                    self.release()
                else:
                    self.discard()
                raise
            fallback = None
            try:
                fallback = Path(tempfile.mkdtemp(prefix=f"{FALLBACK_PREFIX}{_safe(self.name)}-"))
                report = _move_profiles(report, self.path, fallback)
                self.discard()  # half-written: a reader must not take it for a run
                write(report, fallback)
            except OSError as exc:
                if fallback is not None:
                    shutil.rmtree(fallback, ignore_errors=True)
                raise KdiagError(f"cannot save the report in {self.path}/ ({reason}) nor in "
                                 f"{fallback or tempfile.gettempdir()}/ ({os_reason(exc)})", OUT_FIX) from None
            return Saved(fallback, self.path, reason)

    def keep_measured(self, stopped: BaseException, write: Callable[[object, Path], None], stderr) -> int:
        """Save the incomplete report of a run stopped after measuring; the exit status.

        `stopped` carries `.report`: a KeyboardInterrupt (Ctrl-C or SIGTERM) gives exit 130 or
        143; a failure gives one line and exit 2 when it is the user's or the disk's (KdiagError,
        OSError), else it is re-raised with its traceback, as any bug in kdiag.
        """
        from kdiag.signals import active_stop

        saved = self.save(stopped.report, write)
        kept = f"what was measured is saved, marked incomplete, {saved.where()}"
        if isinstance(stopped, KeyboardInterrupt):
            stop = active_stop()
            print(f"kdiag: interrupted ({stop.cause}); {kept}", file=stderr)
            return stop.exit_status or ExitStatus.INTERRUPTED
        cause = stopped.__cause__ or stopped
        if isinstance(cause, KdiagError):
            raise KdiagError(f"{cause.problem}; {kept}", cause.fix) from cause
        if isinstance(cause, OSError):
            raise KdiagError(f"the run failed after timing ({os_reason(cause)}); {kept}", OUT_FIX) from cause
        print(f"kdiag: {kept}", file=stderr)
        raise cause


def os_reason(exc: OSError, with_file: bool = True) -> str:
    """'No space left on device: reports/x' rather than '[Errno 28] ...' and a traceback."""
    text = exc.strerror or first_line(exc)
    return f"{text}: {exc.filename}" if with_file and exc.filename else text


def _make_parents(folder: Path, where: str) -> list:
    """Make the missing folders above `folder`; those made, innermost first (removed again if unused)."""
    missing = []
    for parent in folder.parents:
        if parent.is_dir():
            break
        if parent.exists() or parent.is_symlink():
            if parent.is_dir():  # made by a run beside us between the two looks: a folder after all
                break
            raise KdiagError(f"cannot create the run folder {where}: {parent} is a file, not a folder", OUT_FIX)
        missing.append(parent)
    made = []
    for parent in reversed(missing):
        try:
            parent.mkdir()
            made.insert(0, parent)
        except FileExistsError:  # made by a run beside us: theirs, not ours to remove
            if not parent.is_dir():
                raise
    return made


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:  # the current folder was removed
        return "."


def _refuse_unusable(out: Path) -> None:
    """Refuse an --out that is a file, or a folder holding anything (a run, or a run under way)."""
    if out.is_symlink() and not out.exists():
        raise KdiagError(f"--out {out} is a link to nothing, not a folder", OUT_FIX)
    if out.exists() and not out.is_dir():
        raise KdiagError(f"--out {out} is a file, not a folder; kdiag never overwrites it", OUT_FIX)
    if not out.is_dir():
        return
    names = {child.name for child in out.iterdir()}
    if LOCK_NAME in names:
        if HeldLock.is_held(out / LOCK_NAME):
            raise KdiagError(_claimed(out), OUT_FIX)
        if "report.json" not in names:
            return  # the leftovers of a run that was killed before it saved a report: taken over
    if names:
        raise KdiagError(f"--out {out} already exists and is not an empty folder; kdiag never overwrites a run",
                         OUT_FIX + ", or remove the old run first")


def _claimed(out: Path) -> str:
    return f"--out {out} is claimed by another kdiag run, still running (it holds the lock on {LOCK_NAME})"


def _move_profiles(report, old: Path, new: Path):
    """Move the run's .prof files to `new` and point the report at them (best effort: they are extras).

    Their redacted copies (`redacted/`, which report.md names) move along.
    """
    profiles = getattr(report, "profiles", None)
    if not profiles:
        return report
    if (old / REDACTED_FOLDER).is_dir():
        try:
            shutil.move(str(old / REDACTED_FOLDER), str(new / REDACTED_FOLDER))
        except OSError:
            pass
    moved = []
    for profile in profiles:
        paths = {}
        for field in ("prof_path", "cold_prof_path"):
            source = Path(getattr(profile, field))
            if source.parent == old and source.is_file():
                try:
                    paths[field] = str(shutil.move(str(source), str(new / source.name)))
                except OSError:
                    pass
        moved.append(dataclasses.replace(profile, **paths))
    return dataclasses.replace(report, profiles=moved)


def write_atomic(path: Path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # backslashreplace: a file name with a non-UTF-8 byte (a Latin-1 download) must
        # not make the report unwritable.
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_run(report, folder: Path) -> Dict[str, str]:
    """Write every format that has a file (kdiag.render.FORMATS) into the run folder; returns the texts
    by format, so that stdout need not render one twice."""
    from kdiag.render import FORMATS

    texts = {}
    for name, output in FORMATS.items():
        if output.file_name is not None:
            texts[name] = output.render(report)
            write_atomic(folder / output.file_name, texts[name])
    return texts


def saved_files() -> List[str]:
    """The file names a run folder holds, the HTML page first (what `kdiag view RUN_FOLDER` opens)."""
    from kdiag.render import FORMATS

    saved = sorted((f for f in FORMATS.values() if f.file_name is not None), key=lambda f: f.name != "html")
    return [f.file_name for f in saved]


def discard(folder: Path, keep_folder: bool = False) -> None:
    """Remove what this run wrote after a failure; the folder too unless the user made it."""
    if not keep_folder:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for child in Path(folder).iterdir():  # the folder was empty when the run began
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "model"
