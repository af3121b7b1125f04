"""kdiag: why is my Keras model's inference slow, and what should I do about it?

`kdiag.inspect(model_or_path, ...)` returns a Report (see `kdiag.api.inspect` for every
option; `tf=["2.15", "installed"]` measures TensorFlow releases side by side);
`kdiag.bisect(model_or_path, good="2.12", bad="2.21")` finds the release that made predict
slow; `kdiag.print_report(report)` and `kdiag.render_report(report, "markdown")` show a Report,
and `kdiag.read_report(path)` reads a saved report.json back. Importing this package stays cheap:
each name is fetched from `kdiag.api` on first use, and TensorFlow only when a model is loaded,
so `kdiag --help` answers at once.
"""

from kdiag.version import __version__

__all__ = ["bisect", "inspect", "print_report", "read_report", "render_report", "__version__"]


def __getattr__(name):
    # PEP 562 lazy attribute: the real function (its signature and docstring), imported on first use.
    if name in ("bisect", "inspect", "print_report", "read_report", "render_report"):
        from kdiag import api

        return getattr(api, name)
    raise AttributeError(f"module 'kdiag' has no attribute {name!r}")
