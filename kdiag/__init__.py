"""kdiag: why is my Keras model's inference slow, and what should I do about it?

Importing this package must stay cheap: TensorFlow is imported lazily by the
modules that need it, so `kdiag --help` answers at once.
"""

__version__ = "0.1.0"


def inspect(model_or_path=None, inputs=None, **options):
    """Measure every way of calling a Keras model; see `kdiag.api.inspect`."""
    from kdiag.api import inspect as _inspect

    return _inspect(model_or_path, inputs=inputs, **options)


__all__ = ["inspect", "__version__"]
