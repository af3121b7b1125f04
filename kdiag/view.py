"""`kdiag view FILE.prof`: snakeviz on 127.0.0.1 unless the user explicitly asks otherwise."""

from __future__ import annotations

import pstats
import signal
import subprocess
import sys
from pathlib import Path
from typing import Optional, TextIO

from kdiag.errors import ExitStatus, KdiagError

LOCALHOST = "127.0.0.1"


def snakeviz_command(prof: Path, server: bool, host: Optional[str], port: int) -> list:
    command = [sys.executable, "-m", "snakeviz", "-H", host or LOCALHOST, "-p", str(port)]
    if server:
        command.append("-s")
    return command + [str(prof)]


def check_profile(prof: Path) -> None:
    if not prof.is_file():
        raise KdiagError(f"{prof} does not exist", "give a .prof file from a kdiag run folder")
    try:
        pstats.Stats(str(prof))
    except Exception as exc:
        raise KdiagError(f"{prof} is not a cProfile/pstats file ({type(exc).__name__})",
                         "give a .prof file written by kdiag inspect") from exc


def view(prof: Path, server: bool, host: Optional[str], port: int, stdout: TextIO) -> int:
    check_profile(prof)
    command = snakeviz_command(prof, server, host, port)
    if host and host != LOCALHOST:
        print(f"kdiag: warning: serving on {host}: anyone who can reach it can read this profile", file=stdout)
    print(f"kdiag: {' '.join(command[1:])}  (Ctrl-C stops it)", file=stdout)
    stdout.flush()
    server = subprocess.Popen(command)
    # A SIGTERM to kdiag must stop snakeviz too, not leave it serving as an orphan.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return server.wait()
    except KeyboardInterrupt:
        return ExitStatus.OK
    finally:
        signal.signal(signal.SIGTERM, previous)
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)
