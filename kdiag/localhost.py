"""Who a local viewer answers: the `Host:` check of `kdiag view`, and snakeviz run behind it.

A page of a web site the user visits can make the browser resolve the site's own name to
127.0.0.1 (DNS rebinding) and then read whatever localhost serves; its requests carry the site's
name in `Host:`. Both viewers answer only requests naming this machine, and 421 otherwise.

Run as a script (`python -I kdiag/localhost.py SNAKEVIZ-ARGS`), it is snakeviz's own command line
with two guards added before the server starts: the `Host:` check on every request, and only the
profile named on the command line served (snakeviz as shipped lists any folder and reads any
profile its URL names). It imports nothing of kdiag, so `python -I` (no working directory, no
PYTHONPATH, no user site-packages on the path) runs it from any checkout.
"""

from __future__ import annotations

import os
import sys

LOCALHOST = "127.0.0.1"
#: The names a browser on this machine uses for a local server, whatever address it is bound to.
LOCAL_NAMES = (LOCALHOST, "localhost")


def allowed_host_headers(names, port: int) -> frozenset:
    """The `Host:` values a request may carry: each name with the port (IPv6 in brackets), and bare
    when the port is 80 (browsers leave the default port out)."""
    allowed = set()
    for name in names:
        shown = f"[{name}]" if ":" in name and not name.startswith("[") else name
        allowed.add(f"{shown}:{port}".lower())
        if port == 80:
            allowed.add(shown.lower())
    return frozenset(allowed)


def guarded_snakeviz(argv) -> int:
    """snakeviz's `main(argv)`, answering only local `Host:` headers and only the profile in argv."""
    import snakeviz.cli
    import snakeviz.main
    import tornado.web

    args = snakeviz.cli.build_parser().parse_args(argv)
    names = LOCAL_NAMES + ((args.hostname,) if args.hostname not in LOCAL_NAMES else ())
    profile = os.path.abspath(args.filename)

    def prepare(handler):
        port = handler.request.connection.stream.socket.getsockname()[1]
        if handler.request.headers.get("Host", "").strip().lower() not in allowed_host_headers(names, port):
            raise tornado.web.HTTPError(421, reason="Misdirected Request")

    show_profile = snakeviz.main.VizHandler.get

    def get(handler, profile_name):
        if os.path.abspath(profile_name) != profile:  # no folder listing, no other file
            raise tornado.web.HTTPError(404)
        return show_profile(handler, profile_name)

    tornado.web.RequestHandler.prepare = prepare  # every handler, snakeviz's static files included
    snakeviz.main.VizHandler.get = get
    return snakeviz.cli.main(argv)


if __name__ == "__main__":
    sys.exit(guarded_snakeviz(sys.argv[1:]))
