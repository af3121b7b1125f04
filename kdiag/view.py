"""`kdiag view FILE.prof`: snakeviz on 127.0.0.1 unless the user explicitly asks otherwise.

snakeviz runs as `python -I` from a private empty folder, so a `snakeviz.py` (or `tornado.py`)
lying next to the profile or in the working directory is never imported; the profile is passed
as an absolute path after `--`, so a file named `-dash.prof` is a file, not an option.
"""

from __future__ import annotations

import os
import pstats
import re
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Optional, TextIO

from kdiag.errors import ExitStatus, KdiagError

LOCALHOST = "127.0.0.1"
# snakeviz moves to another port when the one asked for is taken, and says which it took.
STARTED = re.compile(r"started on (?P<host>\S+):(?P<port>\d+)")


def snakeviz_command(prof: Path, server: bool, host: Optional[str], port: int) -> list:
    # -I: isolated (no working directory, script folder, user site-packages or PYTHON* variables
    # on the path); -u: unbuffered, so the line naming the port arrives as it is printed.
    command = [sys.executable, "-Ium", "snakeviz", "-H", host or LOCALHOST, "-p", str(port)]
    if server:
        command.append("-s")
    return command + ["--", os.path.abspath(prof)]


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
    print(f"kdiag: starting snakeviz for {os.path.abspath(prof)}", file=stdout)
    stdout.flush()
    with tempfile.TemporaryDirectory(prefix="kdiag-view-") as private:
        server = subprocess.Popen(command, cwd=private, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, errors="replace")
        relay = threading.Thread(target=_relay, args=(server.stdout, stdout), daemon=True)
        relay.start()
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
                    server.wait()
            relay.join(timeout=2)


def _relay(lines, stdout: TextIO) -> None:
    """snakeviz's output, with kdiag's line naming the port it actually serves on."""
    try:
        for line in lines:
            started = STARTED.search(line)
            if started:
                print(f"kdiag: snakeviz serves on {started['host']}:{started['port']}  (Ctrl-C stops it)",
                      file=stdout)
            else:
                stdout.write(line)
            stdout.flush()
    except (OSError, ValueError):  # the stream was closed as kdiag stopped
        pass


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)
