"""Child processes in their own process group, stopped whole: the installers and the kdiag runs.

Each child starts a new session (its own process group), so Ctrl-C at the terminal reaches only
this process, which then stops the group in order: SIGTERM first (a kdiag child saves what it
measured, pip cleans up), SIGKILL after a grace period. The grandchildren (a kdiag run's HDF5
probe and threads children, pip's build helpers) are in the same group and stop with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections import deque
from pathlib import Path
from typing import Callable, List, Mapping, Optional, Sequence, Tuple

#: Between SIGTERM (a kdiag child saves what it measured and exits 143) and SIGKILL.
STOP_GRACE_S = 10.0


def start(command: Sequence[str], *, env: Optional[Mapping[str, str]] = None, cwd: Optional[Path] = None,
          merge_output: bool = True) -> subprocess.Popen:
    """A child in its own process group, reading nothing, its output (stderr too when `merge_output`) piped."""
    return subprocess.Popen(list(command), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE if merge_output else subprocess.DEVNULL,
                            stderr=subprocess.STDOUT if merge_output else subprocess.PIPE,
                            cwd=str(cwd) if cwd is not None else None, env=dict(env) if env is not None else None,
                            text=True, errors="replace", start_new_session=True)


def stop(child: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """SIGTERM to the child's process group, then SIGKILL to what is left after `grace_s`."""
    if child.poll() is not None:
        _kill_group(child, signal.SIGKILL)  # the child is gone; a grandchild it left may not be
        return
    _kill_group(child, signal.SIGTERM)
    try:
        child.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    _kill_group(child, signal.SIGKILL)
    child.wait()


def _kill_group(child: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(child.pid, signum)  # start_new_session made the child its group's leader
    except (ProcessLookupError, PermissionError):
        pass


def follow_lines(child: subprocess.Popen, stream, on_line: Callable[[str], None],
                 keep: int = 40) -> Tuple[int, List[str]]:
    """Read `stream` to its end, each line to `on_line`; wait for the child. Stops the whole group on
    any exception (Ctrl-C, SIGTERM) before re-raising. Returns (exit status, the last `keep` lines)."""
    tail: deque = deque(maxlen=keep)
    try:
        for line in stream:
            line = line.rstrip("\n")
            tail.append(line)
            on_line(line)
        child.wait()
    except BaseException:
        stop(child)
        raise
    finally:
        stream.close()
    return child.returncode, list(tail)


def run_logged(command: Sequence[str], on_line: Callable[[str], None] = lambda line: None, *,
               env: Optional[Mapping[str, str]] = None, cwd: Optional[Path] = None) -> Tuple[int, List[str]]:
    """Run `command` to its end in its own group, stdout and stderr together, line by line to `on_line`."""
    child = start(command, env=env, cwd=cwd)
    return follow_lines(child, child.stdout, on_line)

