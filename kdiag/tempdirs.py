"""Locks the kernel releases when their process dies, and kdiag's temporary folders. Standard library only.

A lock file made with O_EXCL outlives a killed process: after a SIGKILL (the out-of-memory killer,
`docker kill`, a CI runner's timeout) a rerun on the same `--out` was refused for good, and the
temporary copies of the model (an exported SavedModel, a TFLite file) stayed in /tmp (issue 20).
So a lock here is `fcntl.flock` on an open file: held while the process holds the file open, dropped
by the kernel when the process ends, however it ends. The file itself is only where the lock lives.

Temporary folders live in one kdiag-owned root (`<tmp>/kdiag-<uid>/`), each beside a lock file its
run holds; `remove_stale()` removes the folders whose lock nobody holds any more, so the next run
cleans up after a killed one, and never touches another live run's. The root itself is removed
whenever it empties.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Dict, Iterator, Optional

try:
    import fcntl
except ImportError:  # Windows: no flock; locks fall back to exclusive creation (a killed run's lock stays)
    fcntl = None

LOCK_SUFFIX = ".lock"


class HeldLock:
    """An exclusive lock on `path`, held until `release()` or the end of the process."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self.fd: Optional[int] = fd

    @classmethod
    def try_acquire(cls, path: Path) -> Optional["HeldLock"]:
        """The lock, creating its file if needed; None when another live process holds it.

        A lock file left by a process that died is taken over: the kernel released its lock.
        """
        path = Path(path)
        if fcntl is None:
            try:
                return cls(path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            except FileExistsError:
                return None
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # EWOULDBLOCK: a live process holds it
                os.close(fd)
                return None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                return cls(path, fd)
            os.close(fd)  # its holder released it and removed the file meanwhile: lock the new one

    @staticmethod
    def is_held(path: Path) -> bool:
        """Whether a live process holds the lock at `path` (False when there is no such file)."""
        if fcntl is None:
            return Path(path).exists()
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)  # closing drops a lock taken just now
        return False

    def release(self, remove: bool = True) -> None:
        """Remove the lock file (first, so no one takes a lock on a file about to vanish), then unlock."""
        if self.fd is None:
            return
        if remove:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        os.close(self.fd)
        self.fd = None


def temp_root() -> Path:
    """`<tmp>/kdiag-<uid>/`: a folder this user alone owns (0700), made on first use."""
    base = Path(tempfile.gettempdir())
    uid = os.getuid() if hasattr(os, "getuid") else 0
    root = base / f"kdiag-{uid}"
    try:
        root.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(root)
    if not stat.S_ISDIR(info.st_mode) or (hasattr(os, "getuid") and info.st_uid != uid):
        # Someone else's, or a link: not a place for copies of the user's model. A private folder of
        # our own instead (remove_stale cannot reach it; the run still removes it when it ends).
        return Path(tempfile.mkdtemp(prefix=f"kdiag-{uid}-"))
    return root


@contextlib.contextmanager
def temporary_directory(prefix: str = "kdiag-") -> Iterator[str]:
    """A temporary folder in the kdiag root, locked while it is in use and removed afterwards.

    Like `tempfile.TemporaryDirectory(prefix=...)`; what a killed run leaves is removed by the next
    run's `remove_stale()`.
    """
    while True:
        root = temp_root()
        try:
            fd, lock_name = tempfile.mkstemp(prefix=prefix, suffix=LOCK_SUFFIX, dir=root)
        except FileNotFoundError:  # another run removed the root as it emptied: make it again
            continue
        if fcntl is None:
            break
        # Another run's remove_stale may take this new, unlocked file for a dead run's and remove it
        # before the lock below is taken: then the lock is on a removed file, and a new name is tried.
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.path.samestat(os.fstat(fd), os.stat(lock_name)):
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    lock = HeldLock(Path(lock_name), fd)
    folder = Path(lock_name[: -len(LOCK_SUFFIX)])
    _OWN[folder] = lock
    try:
        folder.mkdir(mode=0o700)
        yield str(folder)
    finally:
        _remove(folder, lock)


#: This process's temporary folders in use, with their locks: what `remove_own` removes.
_OWN: Dict[Path, HeldLock] = {}


def _remove(folder: Path, lock: HeldLock) -> None:
    _OWN.pop(folder, None)
    shutil.rmtree(folder, ignore_errors=True)
    lock.release()
    try:
        folder.parent.rmdir()  # only when empty: nothing of kdiag's is left in the temporary folder
    except OSError:
        pass


def remove_own() -> None:
    """Remove every temporary folder this process still has in use, and release their locks.

    For a process about to end without unwinding the code that made them (kdiag.steps.worker.leave:
    a model call that could not be stopped holds them on its thread's stack).
    """
    for folder, lock in list(_OWN.items()):
        try:
            _remove(folder, lock)
        except OSError:  # its own code removed it meanwhile: gone either way
            pass


def remove_stale(root: Optional[Path] = None) -> list:
    """Remove the temporary folders of runs that ended without cleaning up (killed); returns them.

    A folder is stale when the lock beside it is held by no process (a live run holds its lock from
    before it makes the folder until after it removed it), or when it has no lock file at all.
    """
    if fcntl is None:
        return []
    root = temp_root() if root is None else Path(root)
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed
    locks = {entry.name[: -len(LOCK_SUFFIX)] for entry in entries if entry.name.endswith(LOCK_SUFFIX)}
    for entry in entries:
        path = Path(entry.path)
        if entry.name.endswith(LOCK_SUFFIX):
            lock = HeldLock.try_acquire(path)
            if lock is None:
                continue  # a live run's
            shutil.rmtree(path.with_name(entry.name[: -len(LOCK_SUFFIX)]), ignore_errors=True)
            lock.release()
            removed.append(path.with_name(entry.name[: -len(LOCK_SUFFIX)]))
        elif entry.is_dir(follow_symlinks=False) and entry.name not in locks \
                and not os.path.lexists(path.with_name(entry.name + LOCK_SUFFIX)):
            # No lock beside it (a live run makes its lock first and removes it last): its run died
            # while cleaning up.
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    try:
        root.rmdir()  # only when empty
    except OSError:
        pass
    return removed
