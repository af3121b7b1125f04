"""Inputs for the model: synthetic ones built from its signature, or the user's own.

Values are drawn with a fixed seed so every strategy, and the C++ baseline, sees the
same data. Integer inputs stay inside the range the consuming layer accepts (an
Embedding's vocabulary), so a lookup cannot fail or read out of range.
"""

from __future__ import annotations

import dataclasses
import math
import os
import zipfile
from pathlib import Path
from typing import Dict, Mapping, Sequence, Tuple

import numpy as np

from kdiag.engine.intake import limits
from kdiag.errors import KdiagError
from kdiag.engine.intake.limits import size_text
from kdiag.engine.intake.specs import InputSpec  # noqa: F401 (also imported from here)
from kdiag.sanitize import joined

DEFAULT_INT_RANGE = (0, 10)  # when no consuming layer says otherwise: small, valid for most lookups
SEED = 0


@dataclasses.dataclass(frozen=True)
class ModelInputs:
    """Arrays keyed by input name, in the model's input order."""

    arrays: Dict[str, np.ndarray]
    descriptions: Dict[str, str]  # how each was made ("uniform [0, 1)", "user data")
    notes: Tuple[str, ...] = ()  # for the report: what of the user's data was not used

    @property
    def batch_size(self) -> int:
        return next(iter(self.arrays.values())).shape[0]


def save_inputs(inputs: ModelInputs, path) -> Path:
    """The batch as a .npz by input name, as --inputs reads it back; written whole (a temporary file, then
    linked into place, which fails rather than replace a file that appeared meanwhile): never over a file."""
    path = Path(path)
    if path.exists():
        raise KdiagError(f"--save-inputs {path} exists already", "name a new file; kdiag overwrites nothing")
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with open(partial, "wb") as handle:
            np.savez(handle, **inputs.arrays)
        os.link(partial, path)
    except FileExistsError:
        raise KdiagError(f"--save-inputs {path} exists already", "name a new file; kdiag overwrites nothing") from None
    except OSError as exc:
        raise KdiagError(f"--save-inputs {path} could not be written ({exc.strerror or exc})",
                         "name a file in a folder you can write to") from None
    finally:
        partial.unlink(missing_ok=True)
    return path


def resolve_shapes(
    specs: Sequence[InputSpec], batch_size: int, overrides: Mapping[str, Tuple[int, ...]]
) -> Dict[str, Tuple[int, ...]]:
    """Concrete shapes for every input, or a KdiagError naming the unresolved axis."""
    unknown = set(overrides) - {s.name for s in specs} - {""}
    if unknown:
        raise KdiagError(
            f"--input-shape names {joined(sorted(unknown))}, which the model has no input called",
            f"the model's inputs are: {joined(s.name for s in specs)}",
        )
    if "" in overrides and len(specs) != 1:
        raise KdiagError(
            "--input-shape without a NAME= is ambiguous for a model with several inputs",
            f"write NAME=D1,D2 with NAME one of: {joined(s.name for s in specs)}",
        )
    if batch_size < 1:
        raise KdiagError(f"the model's batch size is fixed at {batch_size}: a call on no samples times nothing",
                         "export the model with a batch axis of at least 1, or a dynamic one")
    shapes = {}
    for spec in specs:
        declared = spec.shape[1:]
        given = overrides.get(spec.name, overrides.get("") if len(specs) == 1 else None)
        if given is not None:
            if len(given) != len(declared) or any(
                d is not None and d != g for d, g in zip(declared, given)
            ):
                raise KdiagError(
                    f"--input-shape {spec.name}={','.join(map(str, given))} does not fit the declared "
                    f"shape {_fmt_shape(declared)} (after the batch axis)",
                    "give one positive size per axis, keeping the fixed ones",
                )
            _refuse_empty_axis(spec, (batch_size,) + tuple(given), "--input-shape")
            shapes[spec.name] = (batch_size,) + tuple(given)
            continue
        if any(d is None for d in declared):
            axes = [str(i + 1) for i, d in enumerate(declared) if d is None]
            raise KdiagError(
                f"input {spec.name!r} has shape {_fmt_shape(spec.shape)} with dynamic axis "
                f"{', '.join(axes)} besides the batch",
                f"give its size with --input-shape {spec.name}="
                + ",".join("D" if d is None else str(d) for d in declared),
            )
        _refuse_empty_axis(spec, (batch_size,) + tuple(declared), "the model")
        shapes[spec.name] = (batch_size,) + tuple(declared)
    return shapes


def _refuse_empty_axis(spec: InputSpec, shape: Tuple[int, ...], where: str) -> None:
    """A 0-sized axis makes every call a call on no data: its time says nothing about the model, and
    every strategy "matches" on empty outputs. Refused rather than measured (and recommended on)."""
    empty = [str(i) for i, d in enumerate(shape) if d == 0 and i > 0]
    if not empty:
        return
    fix = (f"give every axis a size of at least 1 with --input-shape {spec.name}=..." if where == "--input-shape"
           else f"export the model with a real size for that axis, or a dynamic one and --input-shape {spec.name}=...")
    raise KdiagError(f"input {spec.name!r} gets a 0-sized axis {', '.join(empty)} from {where} (shape "
                     f"{_fmt_shape(shape)}): a call on no data times nothing the model does", fix)


def synthetic_inputs(specs: Sequence[InputSpec], shapes: Mapping[str, Tuple[int, ...]]) -> ModelInputs:
    """Arrays drawn straight into the input's own dtype: a float64 draw cast down would need
    three times a float32 batch's memory at its peak."""
    rng = np.random.default_rng(SEED)
    arrays, descriptions = {}, {}
    for spec in specs:
        shape = shapes[spec.name]
        try:
            dtype = np.dtype(spec.dtype)
        except TypeError:  # "string" (a StringLookup model's input) has no NumPy dtype to draw from
            dtype = np.dtype(object)
        if dtype.kind in "iu":
            low, high = spec.int_range or DEFAULT_INT_RANGE
            bounds = np.iinfo(dtype)  # a range wider than the dtype would wrap round
            low, high = max(low, int(bounds.min)), min(high, int(bounds.max) + 1)
            arrays[spec.name] = rng.integers(low, high, size=shape, dtype=dtype)
            why = spec.range_reason or "no consuming layer limits it"
            descriptions[spec.name] = f"integers in [{low}, {high}) ({why})"
        elif dtype.kind == "b":
            arrays[spec.name] = rng.integers(0, 2, size=shape, dtype=bool)
            descriptions[spec.name] = "random booleans"
        elif dtype.kind == "f":
            arrays[spec.name] = _uniform_floats(rng, shape, dtype)
            descriptions[spec.name] = "uniform floats in [0, 1)"
        else:
            raise KdiagError(
                f"input {spec.name!r} has dtype {spec.dtype}, which kdiag cannot synthesise",
                "pass your own data with --inputs FILE.npz",
            )
    return ModelInputs(arrays, descriptions)


DRAW_CHUNK = 1 << 20  # elements drawn at a time for dtypes NumPy cannot draw directly


def _uniform_floats(rng, shape, dtype: np.dtype) -> np.ndarray:
    array = np.empty(shape, dtype)
    if dtype in (np.float32, np.float64):
        rng.random(dtype=dtype, out=array)
        return array
    # float16 and the like: drawn as float32 a chunk at a time, so the peak stays near the final size.
    flat = array.reshape(-1)
    for start in range(0, flat.size, DRAW_CHUNK):
        stop = min(start + DRAW_CHUNK, flat.size)
        flat[start:stop] = rng.random(stop - start, dtype=np.float32)
    return array


def load_user_inputs(path: Path, specs: Sequence[InputSpec]) -> ModelInputs:
    """`.npy` for a single-input model, `.npz` keyed by input name (or arr_0, arr_1 in order).

    Sizes are checked before any array is read: each array's .npy header against the bytes that
    hold it, a compressed entry's expansion, and the total against the memory available.
    """
    path = Path(path)
    if not path.is_file():
        raise KdiagError(f"--inputs file {path} does not exist", "check the path")
    extra = []
    try:
        if path.suffix == ".npy":
            if len(specs) != 1:
                raise KdiagError(
                    f"--inputs {path.name} holds one array but the model has {len(specs)} inputs",
                    "save them with numpy.savez(FILE, **{name: array}) and pass the .npz",
                )
            with open(path, "rb") as handle:
                header = _npy_header(handle, path.stat().st_size, path.name)
            _check_arrays_fit(path, {specs[0].name: header}, specs)
            loaded = {specs[0].name: np.load(path, allow_pickle=False)}
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                keys = _match_npz_keys(archive.files, specs, path)
                _check_arrays_fit(path, _npz_headers(path, keys), specs)
                loaded = {name: archive[key] for name, key in keys.items()}
                extra = [name for name in archive.files if name not in set(keys.values())]
        else:
            raise KdiagError(
                f"--inputs {path.name} is not a .npy or .npz file",
                "save your arrays with numpy.save (one input) or numpy.savez (several)",
            )
    except KdiagError:
        raise
    except Exception as exc:  # numpy's errors for damaged files vary by version
        raise KdiagError(
            f"--inputs {path.name} could not be read as NumPy data ({type(exc).__name__}: {exc})",
            "save it again with numpy.save / numpy.savez",
        ) from exc
    arrays = {}
    for spec in specs:
        arrays[spec.name] = check_user_array(spec, loaded[spec.name])
    batch = {a.shape[0] for a in arrays.values()}
    if len(batch) != 1:
        raise KdiagError(
            f"--inputs arrays have different batch sizes ({joined(map(str, sorted(batch)))})",
            "give every input the same first dimension",
        )
    return ModelInputs(arrays, {name: f"user data from {path.name}" for name in arrays},
                       unused_arrays_note(f"--inputs {path.name}", extra))


def _match_npz_keys(files: Sequence[str], specs: Sequence[InputSpec], path: Path) -> Dict[str, str]:
    """{input name: archive key}, from the archive's names alone (nothing read yet)."""
    names = [s.name for s in specs]
    if set(names) <= set(files):
        return {name: name for name in names}
    positional = [f"arr_{i}" for i in range(len(specs))]
    if set(positional) <= set(files):
        return dict(zip(names, positional))
    raise KdiagError(
        f"--inputs {path.name} holds the arrays {joined(map(repr, sorted(files)))} but the model's inputs are "
        f"{joined(map(repr, names))}",
        "save them with numpy.savez(FILE, **{name: array}) using the input names",
    )


# A compressed entry that expands past this size by more than this factor is a zip bomb, not
# measurement data (the thresholds Keras applies to .keras archives, with a lower floor: an input
# batch is far smaller than a model's weights). Refused before a byte is decompressed.
NPZ_BOMB_FLOOR_BYTES = 1 << 30
NPZ_MAX_EXPANSION = 100


@dataclasses.dataclass(frozen=True)
class NpyHeader:
    shape: Tuple[int, ...]
    dtype: np.dtype
    data_bytes: int  # what the header declares: the memory the array will take


def _npy_header(handle, stored_bytes: int, what: str) -> NpyHeader:
    """Read a .npy header (a few hundred bytes) and check the data after it is the size it declares."""
    version = np.lib.format.read_magic(handle)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, _, dtype = read_header(handle)
    header_bytes = handle.tell()
    data_bytes = math.prod(shape) * dtype.itemsize
    # Object arrays hold pickles of any length; np.load refuses them (allow_pickle=False) unread.
    if not dtype.hasobject and header_bytes + data_bytes != stored_bytes:
        raise KdiagError(
            f"--inputs {what} is damaged: its header declares {size_text(data_bytes)} of data "
            f"(shape {tuple(shape)}, {dtype}) but {size_text(max(0, stored_bytes - header_bytes))} follow it",
            "save it again with numpy.save / numpy.savez",
        )
    return NpyHeader(tuple(shape), dtype, data_bytes)


def _npz_headers(path: Path, keys: Mapping[str, str]) -> Dict[str, NpyHeader]:
    headers = {}
    with zipfile.ZipFile(path) as archive:
        members = set(archive.namelist())
        for name, key in keys.items():
            info = archive.getinfo(f"{key}.npy" if f"{key}.npy" in members else key)
            what = f"{path.name} entry {info.filename}"
            if (info.file_size > NPZ_BOMB_FLOOR_BYTES
                    and info.file_size > NPZ_MAX_EXPANSION * max(info.compress_size, 1)):
                raise KdiagError(
                    f"--inputs {what} expands from {size_text(info.compress_size)} to {size_text(info.file_size)} "
                    f"({info.file_size // max(info.compress_size, 1)}x): a zip bomb, not input data",
                    "save real inputs with numpy.savez (uncompressed)",
                )
            with archive.open(info) as member:
                headers[name] = _npy_header(member, info.file_size, what)
    return headers


def _check_arrays_fit(path: Path, headers: Mapping[str, NpyHeader], specs: Sequence[InputSpec]) -> None:
    """The arrays as stored, their copies in the model's dtypes, and one call's tensors must fit."""
    stored = sum(h.data_bytes for h in headers.values())
    need = stored
    for spec in specs:
        header = headers[spec.name]
        final = math.prod(header.shape) * np.dtype(spec.dtype).itemsize
        need += final  # the tensors one call converts them to
        if header.dtype != np.dtype(spec.dtype):
            need += final  # check_user_array's cast to the model's dtype
    available = limits.available_memory_bytes()
    if need > available:
        raise KdiagError(
            f"--inputs {path.name} holds {size_text(stored)} of arrays, and reading and using them "
            f"{limits.needs_line(need, available)}",
            "pass fewer rows (a smaller batch)",
        )


def check_user_array(spec: InputSpec, array: np.ndarray) -> np.ndarray:
    if array.ndim != len(spec.shape) or any(
        d is not None and d != a for d, a in zip(spec.shape[1:], array.shape[1:])
    ):
        raise KdiagError(
            f"--inputs array for {spec.name!r} has shape {tuple(array.shape)} but the model expects "
            f"{_fmt_shape(spec.shape)}",
            "reshape your data to the model's input shape",
        )
    if array.shape[0] == 0:
        raise KdiagError(f"--inputs array for {spec.name!r} is empty", "give at least one sample")
    if 0 in array.shape[1:]:
        raise KdiagError(f"--inputs array for {spec.name!r} has shape {tuple(array.shape)}, with a 0-sized axis: "
                         "a call on no data times nothing the model does", "give every axis a size of at least 1")
    want = np.dtype(spec.dtype)
    if not np.can_cast(array.dtype, want, casting="same_kind"):
        raise KdiagError(
            f"--inputs array for {spec.name!r} has dtype {array.dtype} but the model expects {want}",
            f"convert it with array.astype('{want}')",
        )
    with np.errstate(over="ignore", invalid="ignore"):  # checked just below, with a message
        converted = array.astype(want, copy=False)
    # Checked after the cast: float64 values beyond float32's range become inf in the model's dtype.
    if converted.dtype.kind == "f" and not np.isfinite(converted).all():
        overflow = array.dtype.kind != "f" or np.isfinite(array).all()
        raise KdiagError(
            f"--inputs array for {spec.name!r} contains NaN or infinite values"
            + (f" once converted to {want} (some values are beyond its range)" if overflow else ""),
            "replace them: timings and the outputs check need finite inputs",
        )
    return converted


def unused_arrays_note(what: str, names: Sequence[str]) -> Tuple[str, ...]:
    """The report's note on arrays given that the model does not take (none: no note)."""
    if not names:
        return ()
    return (f"{what} holds {len(names):,} array{'s' if len(names) != 1 else ''} the model takes no input for, "
            f"not used: {joined(map(repr, names))}.",)


def _fmt_shape(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"

