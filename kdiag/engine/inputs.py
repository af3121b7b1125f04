"""Inputs for the model: synthetic ones built from its signature, or the user's own.

Values are drawn with a fixed seed so every strategy, and the C++ baseline, sees the
same data. Integer inputs stay inside the range the consuming layer accepts (an
Embedding's vocabulary), so a lookup cannot fail or read out of range.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from kdiag.errors import KdiagError

DEFAULT_INT_RANGE = (0, 10)  # when no consuming layer says otherwise: small, valid for most lookups
SEED = 0


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One model input as declared: shape includes the batch axis (None when dynamic)."""

    name: str
    shape: Tuple[Optional[int], ...]
    dtype: str
    int_range: Optional[Tuple[int, int]] = None  # [low, high) for integer inputs
    range_reason: str = ""  # e.g. "Embedding 'emb' vocabulary 1000"


@dataclasses.dataclass(frozen=True)
class ModelInputs:
    """Arrays keyed by input name, in the model's input order."""

    arrays: Dict[str, np.ndarray]
    descriptions: Dict[str, str]  # how each was made ("uniform [0, 1)", "user data")

    @property
    def batch_size(self) -> int:
        return next(iter(self.arrays.values())).shape[0]


def resolve_shapes(
    specs: Sequence[InputSpec], batch_size: int, overrides: Mapping[str, Tuple[int, ...]]
) -> Dict[str, Tuple[int, ...]]:
    """Concrete shapes for every input, or a KdiagError naming the unresolved axis."""
    unknown = set(overrides) - {s.name for s in specs} - {""}
    if unknown:
        raise KdiagError(
            f"--input-shape names {', '.join(sorted(unknown))}, which the model has no input called",
            f"the model's inputs are: {', '.join(s.name for s in specs)}",
        )
    if "" in overrides and len(specs) != 1:
        raise KdiagError(
            "--input-shape without a NAME= is ambiguous for a model with several inputs",
            f"write NAME=D1,D2 with NAME one of: {', '.join(s.name for s in specs)}",
        )
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
        shapes[spec.name] = (batch_size,) + tuple(declared)
    return shapes


def synthetic_inputs(specs: Sequence[InputSpec], shapes: Mapping[str, Tuple[int, ...]]) -> ModelInputs:
    rng = np.random.default_rng(SEED)
    arrays, descriptions = {}, {}
    for spec in specs:
        shape = shapes[spec.name]
        dtype = np.dtype(spec.dtype)
        if dtype.kind in "iu":
            low, high = spec.int_range or DEFAULT_INT_RANGE
            arrays[spec.name] = rng.integers(low, high, size=shape).astype(dtype)
            why = spec.range_reason or "no consuming layer limits it"
            descriptions[spec.name] = f"integers in [{low}, {high}) ({why})"
        elif dtype.kind == "b":
            arrays[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
            descriptions[spec.name] = "random booleans"
        elif dtype.kind == "f":
            arrays[spec.name] = rng.random(shape, dtype=np.float64).astype(dtype)
            descriptions[spec.name] = "uniform floats in [0, 1)"
        else:
            raise KdiagError(
                f"input {spec.name!r} has dtype {spec.dtype}, which kdiag cannot synthesise",
                "pass your own data with --inputs FILE.npz",
            )
    return ModelInputs(arrays, descriptions)


def load_user_inputs(path: Path, specs: Sequence[InputSpec]) -> ModelInputs:
    """`.npy` for a single-input model, `.npz` keyed by input name (or arr_0, arr_1 in order)."""
    path = Path(path)
    if not path.is_file():
        raise KdiagError(f"--inputs file {path} does not exist", "check the path")
    try:
        if path.suffix == ".npy":
            if len(specs) != 1:
                raise KdiagError(
                    f"--inputs {path.name} holds one array but the model has {len(specs)} inputs",
                    "save them with numpy.savez(FILE, **{name: array}) and pass the .npz",
                )
            loaded = {specs[0].name: np.load(path, allow_pickle=False)}
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                loaded = {k: archive[k] for k in archive.files}
            loaded = _match_npz_keys(loaded, specs, path)
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
            f"--inputs arrays have different batch sizes {sorted(batch)}",
            "give every input the same first dimension",
        )
    return ModelInputs(arrays, {name: f"user data from {path.name}" for name in arrays})


def _match_npz_keys(loaded: Dict[str, np.ndarray], specs: Sequence[InputSpec], path: Path):
    names = [s.name for s in specs]
    if set(names) <= set(loaded):
        return loaded
    positional = [f"arr_{i}" for i in range(len(specs))]
    if set(positional) <= set(loaded):
        return {name: loaded[key] for name, key in zip(names, positional)}
    raise KdiagError(
        f"--inputs {path.name} has arrays {sorted(loaded)} but the model's inputs are {names}",
        "save them with numpy.savez(FILE, **{name: array}) using the input names",
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


def _fmt_shape(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"

