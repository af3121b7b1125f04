"""The one place kdiag imports TensorFlow and Keras, lazily and quietly.

Importing `kdiag` must not import TensorFlow (so `kdiag --help` is instant); every
module that needs it calls `tf_and_keras()` inside a function.
"""

import contextlib
import os
import sys
import tempfile


def quiet_tensorflow():
    """Import TensorFlow with its native logs held back; the module.

    TensorFlow reads TF_CPP_MIN_LOG_LEVEL once, when it is first imported: whatever imports it first
    (kdiag, or a --custom-objects module) decides whether a failing call's warnings, with the Python
    traceback of a py_function inside, reach stderr. kdiag asks for errors only (2) unless the user set
    a level; `--debug` asks for warnings too (1, or the user's 0; kdiag.cli).
    """
    # TensorFlow's C++ start-up logs (CUDA probing, CPU features) are noise in a report;
    # users who want them can set the variable themselves.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        import tensorflow as tf
    else:
        with native_stderr_captured():
            import tensorflow as tf

            # Initialise the devices now, while native noise is held back: on a machine
            # without a GPU, cuInit's complaint would otherwise land in the middle of a report.
            tf.config.list_physical_devices("GPU")
    return tf


def tf_and_keras():
    """Import TensorFlow and its Keras (Keras 3, or tf-keras with TF_USE_LEGACY_KERAS=1)."""
    tf = quiet_tensorflow()
    if legacy_keras_requested():
        try:
            import tf_keras as keras
        except ImportError as exc:  # TF_USE_LEGACY_KERAS=1 without tf-keras: one line, not a traceback
            from kdiag.errors import KdiagError

            raise KdiagError("TF_USE_LEGACY_KERAS=1 asks for tf-keras, which is not installed",
                             "pip install kdiag[legacy], or unset TF_USE_LEGACY_KERAS") from exc
    else:
        import keras
    _quiet_absl()
    return tf, keras


@contextlib.contextmanager
def native_stderr_captured():
    """Hold back what native code writes to fd 2 (TensorFlow import, device probing, TFLite set-up).

    TensorFlow's C++ start-up lines (absl pre-init notices, CUDA probing on a machine
    without a GPU, "Created TensorFlow Lite XNNPACK delegate") ignore
    TF_CPP_MIN_LOG_LEVEL. They are replayed if the block fails. Never used around a
    timed call. KDIAG_SHOW_TF_LOGS=1 shows everything.
    """
    if os.environ.get("KDIAG_SHOW_TF_LOGS"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters): nothing to hide
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        _HELD.append(saved)
        try:
            yield
        except KeyboardInterrupt:  # a stop (Ctrl-C, SIGTERM, the time limit): its noise is not news
            raise
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            os.write(2, sink.read())
            raise
        finally:
            os.dup2(saved, 2)
            _HELD.remove(saved)
            os.close(saved)


#: The real fd 2 of each native_stderr_captured block under way, outermost first.
_HELD: list = []


def release_native_stderr() -> None:
    """Point fd 2 back at the real stderr now, whatever block holds it (kdiag.steps.worker: a model
    call stuck inside one while the main thread reports the stop). The block restores it again
    when it ends; its saved descriptor stays open until then."""
    if _HELD:
        try:
            os.dup2(_HELD[0], 2)
        except OSError:
            pass


def legacy_keras_requested() -> bool:
    return os.environ.get("TF_USE_LEGACY_KERAS", "").lower() in ("1", "true", "yes")


def _quiet_absl():
    import logging

    logging.getLogger("absl").setLevel(logging.ERROR)
