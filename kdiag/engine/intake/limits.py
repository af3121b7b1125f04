"""Refuse work that would exhaust the machine before starting it, or skip the parts that would not fit.

Every figure here is an estimate made before the memory is spent: from the sizes a model file
declares (HDF5 dataset shapes, a .keras archive's entry sizes, a SavedModel's variables/), from the
input and output batch shapes, and from how many copies of the weights each strategy makes. It is
compared with the memory this process can still take (`available_memory_bytes`): psutil's
"available" figure, bounded by the cgroup's limit when kdiag runs in a container, since psutil reads
/proc/meminfo, which shows the host's memory and not the container's. An out-of-memory kill gives
the user exit 137 and nothing else; a refusal names the need and what is free.
"""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np

from kdiag.engine.intake.specs import InputSpec
from kdiag.errors import KdiagError

GIB = 1 << 30
FREE_MEMORY_FIX = "free some memory, or run kdiag on a machine with more"

# Loading holds up to two copies of the weights at once: Keras 3 reads a .keras archive's
# model.weights.h5 whole into memory (saving_lib: io.BytesIO(zf.open(...).read())) and fills the
# variables from it; HDF5 .h5 files and SavedModel checkpoints are read tensor by tensor, so they
# need less, but one factor for every format keeps the estimate on the safe side.
LOAD_COPIES = 2.0

# The member of a .keras archive that holds the weights (keras/src/saving/saving_lib.py _VARS_FNAME_H5).
KERAS_WEIGHTS_MEMBER = "model.weights.h5"


def available_memory_bytes() -> int:
    """What this process can still allocate: the smaller of the system's and the cgroup's headroom."""
    import psutil

    available = int(psutil.virtual_memory().available)
    headroom = cgroup_headroom_bytes()
    return available if headroom is None else min(available, headroom)


# --- cgroup limits ------------------------------------------------------------------

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
# cgroup v1 writes "no limit" as a page-rounded 2**63 - 1; anything this large is no limit.
UNLIMITED = 1 << 60


def cgroup_headroom_bytes(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> Optional[int]:
    """Limit minus usage of the tightest memory cgroup this process is in (v2 or v1), or None.

    Usage counts the page cache; its inactive file pages are subtracted, as `docker stats` does,
    since the kernel reclaims them before it kills anything. Every level from the process's own
    cgroup up to the mount's root is read: a parent's limit binds its children too. In a container
    with its own cgroup namespace the mount's root is the container's cgroup.
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    v2_path, v1_path = None, None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            v2_path = path
        elif "memory" in controllers.split(","):
            v1_path = path
    headrooms = []
    if v1_path is not None:
        for folder in _cgroup_folders(root / "memory", v1_path):
            headrooms.append(_headroom(folder, "memory.limit_in_bytes", "memory.usage_in_bytes",
                                       "total_inactive_file"))
    if v2_path is not None:
        mount = root if (root / "cgroup.controllers").is_file() else root / "unified"
        for folder in _cgroup_folders(mount, v2_path):
            headrooms.append(_headroom(folder, "memory.max", "memory.current", "inactive_file"))
    found = [h for h in headrooms if h is not None]
    return min(found) if found else None


def _cgroup_folders(mount: Path, path: str) -> Iterable[Path]:
    """The process's cgroup folder and its ancestors up to the mount, those that exist."""
    if not mount.is_dir():
        return []
    folder = mount / path.strip("/") if path.strip("/") else mount
    if not folder.is_dir():  # the path is the host's, the mount the container's own cgroup
        return [mount]
    folders = [folder]
    while folder != mount and mount in folder.parents:
        folder = folder.parent
        folders.append(folder)
    return folders


def _headroom(folder: Path, limit_file: str, usage_file: str, inactive_key: str) -> Optional[int]:
    try:
        text = (folder / limit_file).read_text().strip()
        if text == "max":
            return None
        limit = int(text)
        usage = int((folder / usage_file).read_text().strip())
    except (OSError, ValueError):
        return None
    if limit >= UNLIMITED:
        return None
    inactive = 0
    try:
        for line in (folder / "memory.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == inactive_key:
                inactive = int(value)
    except (OSError, ValueError):
        pass
    return max(0, limit - max(0, usage - inactive))


# --- refusals -----------------------------------------------------------------------


def size_text(n: float) -> str:
    """A byte count in the largest unit that keeps it above 1: "5.4 GiB", "312.5 KiB"."""
    for unit, scale in (("GiB", GIB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


def needs_line(need: float, available: float) -> str:
    """The one wording every memory refusal and skip uses."""
    return f"needs ~{size_text(need)}, {size_text(available)} available"


def check_load_memory(what: str, weights_bytes: int) -> None:
    """Refuse a model whose loading alone will not fit (the file's weights, `LOAD_COPIES` at once)."""
    need = LOAD_COPIES * weights_bytes
    available = available_memory_bytes()
    if need > available:
        raise KdiagError(
            f"not enough memory to load {what}: {needs_line(need, available)} "
            f"(its weights take {size_text(weights_bytes)}, held twice while loading)",
            FREE_MEMORY_FIX,
        )


def model_file_weights_bytes(path: Path) -> Optional[int]:
    """The weights' size as the file declares it, read without loading anything.

    A .keras archive: the uncompressed size of its model.weights.h5 entry (from the zip directory,
    nothing decompressed). A SavedModel directory: its variables/ files plus saved_model.pb (a frozen
    graph keeps its weights there as constants). An .h5 file: None, since only the HDF5 probe reads
    its dataset shapes, in a child process (kdiag.engine.intake.h5probe).
    """
    path = Path(path)
    if path.is_dir():
        total = 0
        for part in [path / "saved_model.pb", *sorted((path / "variables").glob("*"))]:
            try:
                if part.is_file():
                    total += part.stat().st_size
            except OSError:
                continue
        return total
    if path.suffix.lower() != ".keras":
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            return sum(info.file_size for info in archive.infolist()
                       if info.filename.lower().endswith((".h5", ".hdf5")))
    except (OSError, zipfile.BadZipFile, ValueError):
        return None  # not a zip: the loader refuses it with its own message


def check_model_file_memory(path: Path) -> None:
    """Before a .keras archive or a SavedModel is loaded (or probed): will loading it fit?"""
    weights = model_file_weights_bytes(path)
    if weights:
        check_load_memory(Path(path).name, weights)


def check_input_memory(specs: Sequence[InputSpec], shapes: Mapping[str, Tuple[int, ...]],
                       output_bytes: Optional[int] = None) -> None:
    """Before synthetic inputs are built: the batch, one call's copy of it, and the outputs must fit."""
    inputs = batch_bytes(specs, shapes)
    outputs = inputs if output_bytes is None else output_bytes
    # The arrays themselves, the tensors one call converts them to, the call's outputs and the
    # reference outputs kept for the outputs check.
    need = 2 * inputs + 2 * outputs
    available = available_memory_bytes()
    if need > available:
        raise KdiagError(
            f"these inputs would take {size_text(inputs)} of memory (batch axis included), and a call "
            f"on them {needs_line(need, available)}",
            "use a smaller --batch-size",
        )


def batch_bytes(specs: Sequence[InputSpec], shapes: Mapping[str, Tuple[int, ...]]) -> int:
    total = 0
    for spec in specs:
        # _itemsize: a "string" input has no NumPy size (synthetic_inputs refuses it with one line).
        total += int(np.prod(shapes[spec.name], dtype=np.float64)) * _itemsize(spec.dtype)
    return total


# --- what each strategy costs ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StrategyCost:
    """Memory a strategy adds, in copies of the weights and of the input batch."""

    kept: float  # weight copies it holds while every strategy is timed
    transient: float = 0.0  # further weight copies only while it is prepared
    kept_inputs: int = 0  # input-batch copies it holds (tensors, interpreter buffers)


# Each strategy's cost lives with its code (kdiag.engine.runtimes: a required field of Strategy).
# Profiling runs after timing, once the strategies' instances are gone, on a fresh uncompiled
# instance per scenario; the compiled scenario loads a compiled one on top: two instances, the
# second held twice while it loads.
PROFILE_KEY = "profile"
PROFILE_WEIGHT_COPIES = 1 + LOAD_COPIES


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """Which strategies fit in the memory left once the model is loaded and the inputs built."""

    available_bytes: int
    weights_bytes: int
    input_bytes: int
    output_bytes: int
    needs: Dict[str, int]  # strategy key (or "profile") -> estimated peak, in bytes, with it included
    skip: Dict[str, str]  # strategy key (or "profile") -> "not measured: ..." for those that do not fit


def plan_memory(costs: Mapping[str, StrategyCost], *, weights_bytes: int, input_bytes: int, output_bytes: int,
                keras: bool = True, profile: bool = False, available: Optional[int] = None,
                calibrated: Optional[Mapping[str, Tuple[int, int]]] = None) -> MemoryPlan:
    """Add the strategies in their order (`costs`: each one's cost by key, for this kind of model),
    skipping each one whose peak would not fit. `keras`: whether profiling can run at all.

    Every strategy keeps its first outputs (the outputs check) and each call converts the inputs
    once and makes one output batch; `available` is measured after the model was loaded and the
    inputs built, so neither is counted again. `calibrated`: key -> (kept, peak) bytes from
    kdiag.engine.intake.memory_model (measured on real models, activations included); where given,
    the larger of the two estimates is used.
    """
    available = available_memory_bytes() if available is None else available
    per_call = input_bytes + output_bytes
    kept = 0.0
    needs, skip = {}, {}
    for key, cost in costs.items():
        own = cost.kept * weights_bytes + cost.kept_inputs * input_bytes + output_bytes
        peak = own + cost.transient * weights_bytes + per_call
        if calibrated and key in calibrated:
            own = max(own, calibrated[key][0] + output_bytes)
            peak = max(peak, calibrated[key][1] + output_bytes + per_call)
        need = kept + peak
        needs[key] = int(need)
        if need > available:
            skip[key] = f"not measured: too little memory ({needs_line(need, available)})"
        else:
            kept += own
    if profile and keras:
        need = PROFILE_WEIGHT_COPIES * weights_bytes + per_call + output_bytes
        needs[PROFILE_KEY] = int(need)
        if need > available:
            skip[PROFILE_KEY] = f"profiling skipped: too little memory ({needs_line(need, available)})"
    return MemoryPlan(int(available), int(weights_bytes), int(input_bytes), int(output_bytes), needs, skip)


def memory_plan_for(loaded, arrays: Mapping[str, np.ndarray], costs: Mapping[str, StrategyCost],
                    profile: bool = False, calibrated: Optional[Mapping[str, Tuple[int, int]]] = None) -> MemoryPlan:
    """`plan_memory` for a loaded model (kdiag.engine.intake.load.LoadedModel) and its built inputs."""
    inputs = int(sum(a.nbytes for a in arrays.values()))
    batch = next(iter(arrays.values())).shape[0] if arrays else 1
    outputs = estimate_output_bytes(loaded, batch)
    return plan_memory(costs, weights_bytes=loaded_weights_bytes(loaded), input_bytes=inputs,
                       output_bytes=inputs if outputs is None else outputs,
                       keras=loaded.is_keras, profile=profile, calibrated=calibrated)


def loaded_weights_bytes(loaded) -> int:
    """The bytes of every variable of a loaded model, from shapes and dtypes (nothing read)."""
    if loaded.model is not None:
        variables = getattr(loaded.model, "weights", None) or []
    else:
        variables = getattr(loaded.saved_model, "variables", None) or []
    total = 0
    for variable in variables:
        try:
            total += _tensor_bytes(tuple(variable.shape), variable.dtype, batch=None) or 0
        except Exception:  # an exotic variable: it is an estimate
            continue
    return total


def estimate_output_bytes(loaded, batch: int) -> Optional[int]:
    """One call's outputs for this batch, from the declared output shapes; None when some axis is dynamic."""
    try:
        specs = loaded.output_specs()
    except Exception:  # subclassed models declare no outputs; the caller then assumes the input's size
        return None
    total = 0
    for shape, dtype in specs:
        size = _tensor_bytes(shape, dtype, batch)
        if size is None:
            return None
        total += size
    return total if specs else None


def _tensor_bytes(shape, dtype, batch: Optional[int]) -> Optional[int]:
    dims = [None if d is None else int(d) for d in shape]
    if dims and dims[0] is None and batch is not None:
        dims[0] = batch
    if any(d is None for d in dims):
        return None
    return int(np.prod(dims, dtype=np.float64)) * _itemsize(dtype)


def _itemsize(dtype) -> int:
    size = getattr(dtype, "size", None)  # a tf.DType
    if isinstance(size, int) and size > 0:
        return size
    try:
        return np.dtype(getattr(dtype, "name", dtype)).itemsize
    except TypeError:
        return 4  # e.g. bfloat16 without ml_dtypes registered: as float32, on the safe side
