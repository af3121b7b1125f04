"""`kdiag view FILE.prof`: snakeviz; `kdiag view RUN_FOLDER`: its report.html. Both on 127.0.0.1
unless the user explicitly asks otherwise, and both answer only `Host:` headers naming this machine
(kdiag.localhost).

snakeviz runs as `python -I kdiag/localhost.py` from a private empty folder, so a `snakeviz.py` (or
`tornado.py`) lying next to the profile or in the working directory is never imported; the profile
is passed as an absolute path after `--`, so a file named `-dash.prof` is a file, not an option.
"""

from __future__ import annotations

import errno
import http.server
import os
import pstats
import re
import signal
import subprocess
import sys
import tempfile
import threading
import webbrowser
from pathlib import Path
from typing import Optional, TextIO

from kdiag import localhost
from kdiag.errors import ExitStatus, KdiagError
from kdiag.localhost import LOCAL_NAMES, LOCALHOST, allowed_host_headers

# snakeviz moves to another port when the one asked for is taken, and says which it took.
STARTED = re.compile(r"started on (?P<host>\S+):(?P<port>\d+)")


def snakeviz_command(prof: Path, server: bool, host: Optional[str], port: int) -> list:
    # -I: isolated (no working directory, script folder, user site-packages or PYTHON* variables
    # on the path); -u: unbuffered, so the line naming the port arrives as it is printed. The script
    # is snakeviz's command line behind kdiag's Host check.
    command = [sys.executable, "-Iu", os.path.abspath(localhost.__file__), "-H", host or LOCALHOST, "-p", str(port)]
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
    if prof.is_dir():
        return view_run(prof, server, host, port, stdout)
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


def run_page(folder: Path) -> bytes:
    """The run's report.html; for a run saved before kdiag wrote one, rendered from its report.json
    (in memory: a run folder is never written to after its run)."""
    page = folder / "report.html"
    if page.is_file():
        return page.read_bytes()
    if (folder / "report.json").is_file():
        from kdiag.datamodel.report import read_report
        from kdiag.render.html import render

        return render(read_report(folder / "report.json")).encode("utf-8")
    raise KdiagError(f"{folder} holds no report.html or report.json",
                     "give a run folder written by kdiag inspect, or a .prof file from one")


def report_server(page: bytes, host: str, port: int, names=LOCAL_NAMES) -> http.server.ThreadingHTTPServer:
    """An HTTP server for one page, at / and /report.html; anything else is 404. A taken port
    is replaced by a free one, as snakeviz does.

    Only requests whose `Host:` header names this machine (`names`, with the bound port) are
    answered; others get 421. A page of a web site the user visits can make the browser resolve its
    own name to 127.0.0.1 (DNS rebinding) and read whatever localhost serves: its requests carry the
    site's name in `Host:`, so they are refused.
    """

    class OnePage(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the name http.server calls)
            allowed = allowed_host_headers(names, self.server.server_address[1])
            if (self.headers.get("Host") or "").strip().lower() not in allowed:
                self.send_error(421, "Misdirected Request: this server answers only requests for "
                                     + " or ".join(sorted(allowed)))
                return
            if self.path.split("?", 1)[0] not in ("/", "/report.html"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(page)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, format, *args):  # one line per request would bury the URL
            pass

    try:
        return http.server.ThreadingHTTPServer((host, port), OnePage)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise KdiagError(f"cannot serve on {host}:{port} ({exc.strerror})", "pick another --host or --port")
        return http.server.ThreadingHTTPServer((host, 0), OnePage)


def view_run(folder: Path, server: bool, host: Optional[str], port: int, stdout: TextIO) -> int:
    page = run_page(folder)
    # An address given with --host is a name the user will browse to, besides the local ones.
    httpd = report_server(page, host or LOCALHOST, port, LOCAL_NAMES + ((host,) if host else ()))
    bound_host, bound_port = httpd.server_address[:2]
    url = f"http://{bound_host}:{bound_port}/report.html"
    if host and host != LOCALHOST:
        print(f"kdiag: warning: serving on {host}: anyone who can reach it can read this report", file=stdout)
    print(f"kdiag: serving the report of {folder} at {url}  (Ctrl-C stops it)", file=stdout)
    stdout.flush()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        if not server:
            webbrowser.open(url)
        httpd.serve_forever()
    except KeyboardInterrupt:
        return ExitStatus.OK
    finally:
        signal.signal(signal.SIGTERM, previous)
        httpd.server_close()
    return ExitStatus.OK
