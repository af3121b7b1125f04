"""The C++ floor: build and run `cpp_baseline/` (TF C API), parse its JSON into a Measurement.

`build()` compiles `cpp_baseline/kdiag_cpp_baseline.cc` with CMake against the installed
TensorFlow wheel's headers and `libtensorflow_cc.so.2` (no bazel, no download) and caches the
binary per TensorFlow version and install. `run_baseline()` writes the inputs as `.npy`, runs
the binary on a SavedModel (cold call, warm-up, time-budgeted calls, all timed in C++ with
`std::chrono::steady_clock`) and returns a `CppRun`: a `Measurement` like any strategy's, plus
the cold call's outputs keyed by the serving signature's output keys, for the outputs check.

TensorFlow is imported lazily, only to read the SignatureDef; building needs no import at all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from kdiag.datamodel.strategies import CPP
from kdiag.engine.measure import MeasureSettings
from kdiag.errors import KdiagError, first_line
from kdiag.datamodel.measurement import Measurement
from kdiag.sanitize import joined
from kdiag.tempdirs import temporary_directory

BINARY_NAME = "kdiag_cpp_baseline"
_ERROR_PREFIX = BINARY_NAME + ": error: "
_SOURCE_FILES = ("kdiag_cpp_baseline.cc", "CMakeLists.txt")
# Input dtypes the binary's .npy reader accepts (little-endian, C order).
_FEEDABLE = tuple(np.dtype(t) for t in ("<f4", "<f8", "<i4", "<i8"))


@dataclasses.dataclass(frozen=True)
class CppRun:
    """One run of the C++ baseline."""

    measurement: Measurement
    outputs: Dict[str, np.ndarray]  # the cold call's outputs, keyed by signature output key
    load_s: float = float("nan")  # TF_LoadSessionFromSavedModel, not part of the measurement
    command: Tuple[str, ...] = ()  # the exact command that produced these figures
    tf_version: str = ""  # TF_Version() as the binary reported it


@dataclasses.dataclass(frozen=True)
class _Toolchain:
    tf_version: str
    include_dir: pathlib.Path
    lib_dir: pathlib.Path
    cmake: str
    cxx: str


# ---------------------------------------------------------------- finding and building


def source_dir() -> pathlib.Path:
    """Where `kdiag_cpp_baseline.cc` and its CMakeLists.txt live."""
    return pathlib.Path(__file__).resolve().parents[3] / "cpp_baseline"  # kdiag/engine/runtimes/cpp.py → the checkout


def cache_root() -> pathlib.Path:
    """`$KDIAG_CACHE_DIR/cpp`, else `$XDG_CACHE_HOME/kdiag/cpp`, else `~/.cache/kdiag/cpp`."""
    if os.environ.get("KDIAG_CACHE_DIR"):
        return pathlib.Path(os.environ["KDIAG_CACHE_DIR"]).expanduser() / "cpp"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "kdiag" / "cpp"


def _tensorflow_dir() -> pathlib.Path:
    """The installed tensorflow package directory (= tf.sysconfig.get_lib()), without importing it."""
    spec = importlib.util.find_spec("tensorflow")
    if spec is None or not spec.submodule_search_locations:
        raise KdiagError("TensorFlow is not installed", "pip install tensorflow")
    return pathlib.Path(list(spec.submodule_search_locations)[0]).resolve()


def _tensorflow_version(tf_dir: pathlib.Path) -> str:
    for dist_name in ("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tf-nightly", "tf-nightly-cpu"):
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if (pathlib.Path(dist.locate_file("tensorflow")).resolve()) == tf_dir:
            return dist.version
    import tensorflow as tf  # an unusual install: ask TensorFlow itself

    return tf.__version__


def _find_cxx() -> Optional[str]:
    candidates = [os.environ["CXX"]] if os.environ.get("CXX") else []
    candidates += ["c++", "g++", "clang++"]
    for name in candidates:
        path = shutil.which(name)
        if path:
            return path
    return None


def _toolchain() -> _Toolchain:
    tf_dir = _tensorflow_dir()
    include_dir = tf_dir / "include"
    header = include_dir / "tensorflow" / "c" / "c_api.h"
    if not header.is_file():
        raise KdiagError(
            f"TensorFlow's C API header is missing ({header})",
            "install the official tensorflow wheel, which ships tensorflow/include",
        )
    for lib in ("libtensorflow_cc.so.2", "libtensorflow_framework.so.2"):
        if not (tf_dir / lib).is_file():
            raise KdiagError(
                f"TensorFlow's {lib} is not in {tf_dir}",
                "the C++ baseline needs the official Linux tensorflow wheel (it ships both libraries)",
            )
    cmake = shutil.which("cmake")
    if cmake is None:
        raise KdiagError(
            "cmake is not installed (the C++ baseline is built with it)",
            "install it: apt-get install cmake, or pip install cmake",
        )
    cxx = _find_cxx()
    if cxx is None:
        raise KdiagError(
            "no C++17 compiler found (tried $CXX, c++, g++, clang++)",
            "install one: apt-get install g++",
        )
    return _Toolchain(_tensorflow_version(tf_dir), include_dir, tf_dir, cmake, cxx)


def unavailable_reason() -> Optional[str]:
    """Why the C++ baseline cannot be built here, or None when it can (builds nothing)."""
    try:
        _toolchain()
    except KdiagError as err:
        return err.message
    missing = [n for n in _SOURCE_FILES if not (source_dir() / n).is_file()]
    if missing:
        return f"the C++ baseline's sources are missing from {source_dir()}"
    return None


def _binary_dir(tc: _Toolchain) -> pathlib.Path:
    # One directory per TensorFlow version and install: the binary's rpath points into one
    # install, so two virtualenvs with the same version must not share it.
    install = hashlib.sha256(str(tc.lib_dir).encode()).hexdigest()[:8]
    return cache_root() / f"tf-{tc.tf_version}-{install}"


def _stamp(tc: _Toolchain) -> str:
    digest = hashlib.sha256()
    for name in _SOURCE_FILES:
        digest.update(name.encode() + b"\0" + (source_dir() / name).read_bytes() + b"\0")
    lib = tc.lib_dir / "libtensorflow_cc.so.2"
    return json.dumps(
        {
            "sources_sha256": digest.hexdigest(),
            "tf_version": tc.tf_version,
            "lib_dir": str(tc.lib_dir),
            "lib_size": lib.stat().st_size,
            "cxx": tc.cxx,
        },
        sort_keys=True,
    )


def _up_to_date(binary: pathlib.Path, stamp_file: pathlib.Path, stamp: str) -> bool:
    if not (binary.is_file() and os.access(binary, os.X_OK) and stamp_file.is_file()):
        return False
    if stamp_file.read_text() != stamp:
        return False
    built = binary.stat().st_mtime
    return all((source_dir() / n).stat().st_mtime <= built for n in _SOURCE_FILES)


@contextlib.contextmanager
def _lock(path: pathlib.Path):
    """An exclusive lock on `path`, so parallel test workers do not build at once."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        yield
        return
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build(force: bool = False) -> pathlib.Path:
    """Build the C++ baseline (or reuse the cached build) and return the binary's path.

    Cached in `cache_root()/tf-<version>-<install hash>/`; rebuilt when `force`, when a
    source file is newer than the binary, or when the sources, TensorFlow install or
    compiler differ from those recorded in the `build.stamp` next to it.
    """
    missing = [n for n in _SOURCE_FILES if not (source_dir() / n).is_file()]
    if missing:
        raise KdiagError(
            f"the C++ baseline's sources are missing ({', '.join(missing)} in {source_dir()})",
            "run kdiag from a source checkout that has cpp_baseline/",
        )
    tc = _toolchain()
    out_dir = _binary_dir(tc)
    out_dir.mkdir(parents=True, exist_ok=True)
    binary = out_dir / BINARY_NAME
    stamp_file = out_dir / "build.stamp"
    stamp = _stamp(tc)
    with _lock(out_dir / ".lock"):
        if not force and _up_to_date(binary, stamp_file, stamp):
            return binary
        build_dir = pathlib.Path(tempfile.mkdtemp(prefix="build-", dir=out_dir))
        log_file = out_dir / "build.log"
        try:
            steps = [
                [
                    tc.cmake, "-S", str(source_dir()), "-B", str(build_dir),
                    "-DCMAKE_BUILD_TYPE=Release",
                    f"-DCMAKE_CXX_COMPILER={tc.cxx}",
                    f"-DTF_INCLUDE_DIR={tc.include_dir}",
                    f"-DTF_LIB_DIR={tc.lib_dir}",
                ],
                [tc.cmake, "--build", str(build_dir), "--parallel", "2"],
            ]
            log = []
            for step in steps:
                proc = subprocess.run(step, capture_output=True, text=True)
                log.append("$ " + " ".join(step) + "\n" + proc.stdout + proc.stderr)
                log_file.write_text("\n".join(log))
                if proc.returncode != 0:
                    raise KdiagError(
                        f"building the C++ baseline failed: {_first_error_line(proc.stdout + proc.stderr)}",
                        f"the full log is in {log_file}",
                    )
            os.replace(build_dir / BINARY_NAME, binary)  # atomic: a reader never sees half a file
            stamp_file.write_text(stamp)
        finally:
            shutil.rmtree(build_dir, ignore_errors=True)
    return binary


def _first_error_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if "error" in ln.lower():
            return ln
    return lines[-1] if lines else "no output"


# ---------------------------------------------------------------- the serving signature


@dataclasses.dataclass(frozen=True)
class _TensorInfo:
    name: str  # graph tensor name, "serving_default_x:0"
    dtype: Optional[np.dtype]  # None when numpy has no equivalent (strings, resources)
    dtype_name: str
    shape: Optional[Tuple[Optional[int], ...]] = None  # None: unknown rank; None dims: any size


def signature_tensors(
    saved_model_dir, signature: str = "serving_default", tag: str = "serve"
) -> Tuple[Dict[str, _TensorInfo], Dict[str, _TensorInfo]]:
    """The signature's inputs and outputs: key -> graph tensor name and dtype (imports TensorFlow)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    from tensorflow.python.tools import saved_model_utils

    try:
        meta_graph = saved_model_utils.get_meta_graph_def(str(saved_model_dir), tag)
    except (RuntimeError, OSError, ValueError) as err:
        raise KdiagError(
            f"cannot read the '{tag}' MetaGraph of SavedModel {saved_model_dir}: {first_line(err)}",
            "export the model with model.export(dir) (Keras 3) or tf.saved_model.save",
        ) from err
    signatures = meta_graph.signature_def
    if signature not in signatures:
        available = joined(sorted(k for k in signatures if not k.startswith("__"))) or "none"
        raise KdiagError(
            f"SavedModel {saved_model_dir} has no signature '{signature}' (it has: {available})",
            "pick one of those signatures",
        )
    sig = signatures[signature]

    def info(tensor_info) -> _TensorInfo:
        if not tensor_info.name:
            raise KdiagError(
                f"signature '{signature}' uses composite tensors, which the C++ baseline cannot feed",
                "give the model dense tensor inputs and outputs",
            )
        dtype = tf.dtypes.as_dtype(tensor_info.dtype)
        try:
            np_dtype = np.dtype(dtype.as_numpy_dtype)
        except TypeError:
            np_dtype = None
        proto_shape = tensor_info.tensor_shape
        shape = None
        if not proto_shape.unknown_rank:
            shape = tuple(d.size if d.size >= 0 else None for d in proto_shape.dim)
        return _TensorInfo(tensor_info.name, np_dtype, dtype.name, shape)

    inputs = {key: info(sig.inputs[key]) for key in sorted(sig.inputs)}
    outputs = {key: info(sig.outputs[key]) for key in sorted(sig.outputs)}
    return inputs, outputs


def _prepare_input(key: str, value, spec: _TensorInfo) -> np.ndarray:
    array = np.asarray(value)
    if spec.dtype is None or spec.dtype not in _FEEDABLE:
        raise KdiagError(
            f"input '{key}' has dtype {spec.dtype_name}, which the C++ baseline cannot feed",
            "it feeds float32, float64, int32 and int64 inputs only",
        )
    if array.dtype != spec.dtype:
        if not np.can_cast(array.dtype, spec.dtype, casting="same_kind"):
            raise KdiagError(
                f"input '{key}' is {array.dtype}, the signature expects {spec.dtype_name}",
                f"pass a {spec.dtype_name} array",
            )
    if spec.shape is not None and (
        array.ndim != len(spec.shape)
        or any(want is not None and want != got for want, got in zip(spec.shape, array.shape))
    ):
        expected = "(" + ", ".join("None" if d is None else str(d) for d in spec.shape) + ")"
        raise KdiagError(
            f"input '{key}' has shape {array.shape}, the signature expects {expected}",
            "pass an array of that shape (None: any size)",
        )
    # Little-endian and C order: what the binary's strict .npy reader accepts.
    return np.ascontiguousarray(array, dtype=spec.dtype.newbyteorder("<"))


# ---------------------------------------------------------------- running


def run_baseline(
    saved_model_dir,
    inputs: Mapping[str, np.ndarray],
    settings: MeasureSettings = MeasureSettings(),
    *,
    signature: str = "serving_default",
    tag: str = "serve",
    work_dir=None,
    binary=None,
    threads: Optional[Tuple[int, int]] = None,
    timeout_s: Optional[float] = None,
) -> CppRun:
    """Time the SavedModel's signature called through TF_SessionRun from C++.

    `inputs` is keyed by the signature's input keys (e.g. `x`). Input files, and the
    cold call's outputs, go to `work_dir` (a temporary directory, removed afterwards,
    when None). `binary` skips `build()`. `threads` (intra-op, inter-op) default to TensorFlow's own
    (all cores). The child gets `timeout_s` (default: 300 s plus the timing caps) in all.
    """
    saved_model_dir = pathlib.Path(saved_model_dir)
    if not (saved_model_dir / "saved_model.pb").is_file() and not (
        saved_model_dir / "saved_model.pbtxt"
    ).is_file():
        raise KdiagError(
            f"{saved_model_dir} is not a SavedModel directory (no saved_model.pb)",
            "export the model with model.export(dir)",
        )
    in_specs, out_specs = signature_tensors(saved_model_dir, signature, tag)
    missing = sorted(set(in_specs) - set(inputs))
    unknown = sorted(set(inputs) - set(in_specs))
    if missing or unknown:
        problem = []
        if missing:
            problem.append(f"missing input(s) {', '.join(missing)}")
        if unknown:
            problem.append(f"unknown input(s) {', '.join(unknown)}")
        raise KdiagError(
            f"the C++ baseline got {' and '.join(problem)} for signature '{signature}'",
            f"pass one array per signature input: {', '.join(in_specs)}",
        )
    arrays = {key: _prepare_input(key, inputs[key], spec) for key, spec in in_specs.items()}
    if binary is None:
        binary = build()

    with contextlib.ExitStack() as stack:
        if work_dir is None:
            work = pathlib.Path(stack.enter_context(temporary_directory(prefix="kdiag-cpp-")))
        else:
            work = pathlib.Path(work_dir)
            work.mkdir(parents=True, exist_ok=True)
        command = [
            str(binary),
            "--saved-model", str(saved_model_dir.resolve()),
            "--tag", tag,
            "--out-dir", str((work / "outputs").resolve()),
            "--budget-s", repr(float(settings.budget_s)),
            "--min-calls", str(int(settings.min_calls)),
            "--max-wall-s", repr(float(settings.max_wall_s)),
            "--warmup", str(int(settings.warmup_calls)),
        ]
        if threads is not None:
            intra, inter = threads
            command += ["--intra-op-threads", str(int(intra)), "--inter-op-threads", str(int(inter))]
        for i, (key, array) in enumerate(arrays.items()):
            path = (work / f"input_{i}.npy").resolve()
            np.save(path, array, allow_pickle=False)
            command += ["--input", f"{in_specs[key].name}={path}"]
        # Two signature keys may name one tensor: fetch each tensor once.
        fetch = list(dict.fromkeys(spec.name for spec in out_specs.values()))
        for name in fetch:
            command += ["--output", name]

        if timeout_s is None:
            timeout_s = 300.0 + float(settings.max_wall_s) + float(settings.budget_s)
        result = _invoke(command, timeout_s)

        fetched = {}
        for entry in result["outputs"]:
            fetched[entry["name"]] = np.load(entry["file"], allow_pickle=False)
        outputs = {}
        for key, spec in out_specs.items():
            name = spec.name if ":" in spec.name else spec.name + ":0"
            if name not in fetched:
                raise KdiagError(f"the C++ baseline did not return output '{key}' ({spec.name})")
            outputs[key] = fetched[name]

    measurement = Measurement.from_samples(
        strategy=CPP.name,
        first_call_s=float(result["cold_s"]),
        samples=[float(s) for s in result["samples_s"]],
        stopped_early=bool(result.get("stopped_early", False)),
        source="cpp",
    )
    return CppRun(
        measurement=measurement,
        outputs=outputs,
        load_s=float(result.get("load_s", float("nan"))),
        command=tuple(command),
        tf_version=str(result.get("tf_version", "")),
    )


def _child_env() -> Dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up logs are noise here
    return env


def _invoke(command: Sequence[str], timeout_s: float) -> dict:
    """Run the binary; its JSON, or a KdiagError carrying its one-line error message."""
    try:
        proc = subprocess.run(
            list(command), capture_output=True, text=True, env=_child_env(), timeout=timeout_s
        )
    except subprocess.TimeoutExpired as err:
        raise KdiagError(
            f"the C++ baseline did not finish within {timeout_s:.0f} s",
            "lower --budget or check that the SavedModel loads",
        ) from err
    except OSError as err:
        raise KdiagError(f"cannot run the C++ baseline {command[0]}: {err}", "rebuild it with force=True") from err
    if proc.returncode != 0:
        raise KdiagError(_failure_message(proc.returncode, proc.stderr))
    try:
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
        result = json.loads(lines[-1])
        _check_result(result)
    except (IndexError, ValueError, TypeError) as err:
        raise KdiagError(
            f"the C++ baseline printed unreadable JSON ({err}): {proc.stdout[:200]!r}",
            "rebuild it with kdiag.engine.runtimes.cpp.build(force=True)",
        ) from err
    return result


def _check_result(result) -> None:
    if not isinstance(result, dict):
        raise TypeError("not a JSON object")
    for key, kind in (("cold_s", (int, float)), ("samples_s", list), ("outputs", list)):
        if not isinstance(result.get(key), kind):
            raise TypeError(f"'{key}' missing or of the wrong type")
    if not all(isinstance(s, (int, float)) for s in result["samples_s"]):
        raise TypeError("'samples_s' holds a non-number")
    for entry in result["outputs"]:
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get("file"), str)):
            raise TypeError("an output lacks 'name' or 'file'")


def _failure_message(returncode: int, stderr: str) -> str:
    for line in reversed(stderr.splitlines()):
        if line.startswith(_ERROR_PREFIX):
            return "C++ baseline: " + line[len(_ERROR_PREFIX):].strip()
    # No message of ours: a crash (signal) or an abort inside TensorFlow.
    how = f"was killed by signal {-returncode}" if returncode < 0 else f"exited with status {returncode}"
    tail = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return f"the C++ baseline {how}" + (f": {tail[-1]}" if tail else "")
