"""kdiag: why is my Keras model's inference slow, and what should I do about it?

`kdiag.inspect(model_or_path, ...)` returns a Report (see `kdiag.api.inspect` for every
option); `kdiag.bisect(model_or_path, good=..., bad=...)` finds the TensorFlow release that made
predict slow (`kdiag.api.bisect`). Importing this package stays cheap: `inspect` is fetched from `kdiag.api` on
first use, and TensorFlow only when a model is loaded, so `kdiag --help` answers at once.
"""

from kdiag.version import __version__

__all__ = ["bisect", "inspect", "__version__"]


def __getattr__(name):
    # PEP 562 lazy attribute: the real function (its signature and docstring), imported on first use.
    if name == "inspect":
        from kdiag.api import inspect

        return inspect
    if name == "bisect":
        from kdiag.api import bisect

        return bisect
    raise AttributeError(f"module 'kdiag' has no attribute {name!r}")
