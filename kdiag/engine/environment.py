"""Where the figures came from: versions, build, CPU, threads, oneDNN, devices."""

from __future__ import annotations

import os
import platform

from kdiag.datamodel.report import Environment


def collect() -> Environment:
    from kdiag.engine.tf import legacy_keras_requested, tf_and_keras

    tf, keras = tf_and_keras()
    build = _build_info(tf)
    cuda = (
        f"CUDA {build.get('cuda_version')}, cuDNN {build.get('cudnn_version')}"
        if build.get("is_cuda_build")
        else "not a CUDA build"
    )
    from kdiag.engine.tf import native_stderr_captured

    try:
        with native_stderr_captured():  # cuInit's complaint on a CPU-only machine
            gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    except Exception:  # no driver at all: still a CPU-only run
        gpus = []
    return Environment(
        python=platform.python_version(),
        os=platform.platform(),
        cpu_model=_cpu_model(),
        cpu_cores=os.cpu_count() or 0,
        tensorflow=tf.__version__,
        tensorflow_git=getattr(tf, "__git_version__", None) or tf.version.GIT_VERSION,
        keras=getattr(keras, "__version__", "unknown"),
        keras_backend=_keras_backend(keras),
        legacy_keras=legacy_keras_requested(),
        intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads(),
        inter_op_threads=tf.config.threading.get_inter_op_parallelism_threads(),
        onednn=_onednn_setting(),
        cuda_build=cuda,
        gpus=gpus,
    )


def _build_info(tf) -> dict:
    try:
        return dict(tf.sysconfig.get_build_info())
    except Exception:
        return {}


def _keras_backend(keras) -> str:
    backend = getattr(keras, "backend", None)
    fn = getattr(backend, "backend", None)
    try:
        return fn() if callable(fn) else "tensorflow"
    except Exception:
        return "unknown"


def _onednn_setting() -> str:
    value = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    if value is None:
        return "default (on for x86 Linux builds since TF 2.9)"
    return f"TF_ENABLE_ONEDNN_OPTS={value}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
