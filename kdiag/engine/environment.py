"""Where the figures came from: versions, build, CPU, threads, oneDNN, devices.

Also what TensorFlow's bug template asks for (OS distribution, how TensorFlow was installed,
GPU model and memory), and the local paths report.md redacts (home, the Python install).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import site
import subprocess
import sys
import sysconfig
from typing import List, Sequence

from kdiag.datamodel.report import Environment

#: Distributions that install the `tensorflow` package, the usual one first.
TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel", "tensorflow-macos",
                            "tf-nightly", "tf-nightly-cpu", "intel-tensorflow")


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
            devices = tf.config.list_physical_devices("GPU")
    except Exception:  # no driver at all: still a CPU-only run
        devices = []
    gpus = [d.name for d in devices]
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
        os_distribution=os_distribution(),
        tensorflow_install=tensorflow_install(),
        numpy=_numpy_version(),
        gpu_models=gpu_models([_device_name(tf, d) for d in devices], _nvidia_smi()),
        home=os.path.expanduser("~"),
        python_paths=python_paths(),
    )


def os_distribution() -> str:
    """'Debian GNU/Linux 12 (bookworm)' from /etc/os-release; else the platform module's best."""
    try:
        release = platform.freedesktop_os_release()  # Python 3.10+
        name = release.get("PRETTY_NAME") or " ".join(filter(None, (release.get("NAME"), release.get("VERSION"))))
        if name:
            return name
    except (AttributeError, OSError):
        pass
    if sys.platform == "darwin":
        return f"macOS {platform.mac_ver()[0]}"
    if sys.platform == "win32":
        return f"Windows {platform.release()} ({platform.version()})"
    return platform.platform(terse=True)


def tensorflow_install() -> str:
    """How TensorFlow was installed, as the bug template's "Source": binary or source, and by what."""
    from importlib import metadata

    for name in TENSORFLOW_DISTRIBUTIONS:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        installer = (dist.read_text("INSTALLER") or "").strip() or "unknown installer"
        return install_source(name, installer, dist.read_text("direct_url.json"))
    return "unknown (no tensorflow distribution metadata)"


def install_source(name: str, installer: str, direct_url: str = None) -> str:
    """'binary (pip, tensorflow)'; a direct_url.json (PEP 610) tells a local build or checkout apart."""
    if installer == "conda" or os.path.isdir(os.path.join(sys.prefix, "conda-meta")) and installer != "pip":
        return f"binary (conda, {name})"
    if not direct_url:
        return f"binary ({installer}, {name})"
    try:
        info = json.loads(direct_url)
        url = str(info.get("url", ""))
    except (ValueError, AttributeError):
        return f"binary ({installer}, {name})"
    if "vcs_info" in info:
        return f"source ({installer}, {name} from {info['vcs_info'].get('vcs', 'vcs')} {url})"
    if "dir_info" in info:
        editable = " (editable)" if info["dir_info"].get("editable") else ""
        return f"source ({installer}, {name} from the folder {url}{editable})"
    if url.endswith(".whl"):
        return f"binary ({installer}, {name} from the wheel {url})"
    return f"source ({installer}, {name} from {url})"


def python_paths() -> List[str]:
    """The Python install's folders (stdlib, site-packages, a venv or pyenv prefix), for redaction.

    A shared prefix such as /usr is left out: it would also rename paths that are not Python's.
    """
    paths = sysconfig.get_paths()
    found = [paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")]
    try:
        found += site.getsitepackages() + [site.getusersitepackages()]
    except AttributeError:  # some virtualenvs' site module
        pass
    found += [p for p in (sys.prefix, sys.base_prefix, sys.exec_prefix) if p not in ("/", "/usr", "/usr/local")]
    return list(dict.fromkeys(os.path.abspath(p) for p in found if p))


def gpu_models(names: Sequence[str], smi_rows: Sequence[Sequence[str]]) -> List[str]:
    """'NVIDIA H100 80GB HBM3, 81559 MiB' per GPU TensorFlow sees; memory from nvidia-smi when it answers."""
    free = list(smi_rows)
    models = []
    for name in names:
        row = next((r for r in free if r[0] == name), free[0] if free else None)
        if row is not None:
            free.remove(row)
            models.append(f"{name or row[0]}, {row[1]} MiB")
        else:
            models.append(f"{name or 'unknown GPU'}, memory unknown")
    return models


def _device_name(tf, device) -> str:
    try:
        return str(tf.config.experimental.get_device_details(device).get("device_name", ""))
    except Exception:
        return ""


def _nvidia_smi() -> List[List[str]]:
    """(name, total MiB) per GPU from nvidia-smi; empty when it is missing or does not answer."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return []
    try:
        out = subprocess.run([binary, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [[part.strip() for part in line.rsplit(",", 1)] for line in out.splitlines() if "," in line]


def _numpy_version() -> str:
    try:
        import numpy

        return numpy.__version__
    except ImportError:
        return "not installed"


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
