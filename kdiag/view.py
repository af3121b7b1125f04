"""`kdiag view FILE.prof`: snakeviz; `kdiag view RUN_FOLDER`: its report.html. Both on
127.0.0.1 unless the user explicitly asks otherwise."""

from __future__ import annotations

import errno
import http.server
import pstats
import signal
import subprocess
import sys
import webbrowser
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
    if prof.is_dir():
        return view_run(prof, server, host, port, stdout)
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


def report_server(page: bytes, host: str, port: int) -> http.server.ThreadingHTTPServer:
    """An HTTP server for one page, at / and /report.html; anything else is 404. A taken port
    is replaced by a free one, as snakeviz does."""

    class OnePage(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the name http.server calls)
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
    httpd = report_server(page, host or LOCALHOST, port)
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
