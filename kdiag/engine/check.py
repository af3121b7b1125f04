"""The outputs check: does a strategy compute what `predict` computes on the same inputs?"""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Tuple

import numpy as np

from kdiag.datamodel.report import OutputCheck

# float32 arithmetic in a different order (XLA fusion, TFLite/XNNPACK kernels, oneDNN)
# moves results by a few ulps; anything beyond this is a different computation.
ATOL = 1e-5
RTOL = 1e-4


def compare(reference_name: str, reference: List[np.ndarray], candidate: List[np.ndarray],
            atol: float = ATOL, rtol: float = RTOL) -> OutputCheck:
    """Element-wise |candidate - reference| <= atol + rtol * |reference|, on every output.

    Outputs that are not numbers (tf.string tensors: bytes) are compared for equality; an output that
    is text on one side and numbers on the other is reported as not comparable.
    """
    if len(reference) != len(candidate):
        return OutputCheck(reference_name, float("inf"), atol, rtol, False,
                           f"{len(candidate)} outputs, the reference has {len(reference)}")
    worst = 0.0
    matches = True
    for index, (ref, got) in enumerate(zip(reference, candidate)):
        ref = np.asarray(ref)
        got = np.asarray(got)
        if ref.shape != got.shape:
            squeezed = got.reshape(ref.shape) if got.size == ref.size else None
            if squeezed is None:
                return OutputCheck(reference_name, float("inf"), atol, rtol, False,
                                   f"output {index} has shape {got.shape}, the reference {ref.shape}")
            got = squeezed
        if ref.size == 0:
            continue
        if not (_numeric(ref) and _numeric(got)):
            if _numeric(ref) or _numeric(got):
                return OutputCheck(reference_name, float("inf"), atol, rtol, False, f"output {index} is not "
                                   f"comparable: {_kind(got)} here, {_kind(ref)} in the reference")
            differing = sum(a != b for a, b in zip(_texts(ref), _texts(got)))
            if differing:
                return OutputCheck(reference_name, float("inf"), atol, rtol, False, f"output {index} holds "
                                   f"{_kind(ref)}: {differing} of {ref.size} differ from the reference")
            continue
        wide = np.complex128 if np.iscomplexobj(ref) or np.iscomplexobj(got) else np.float64
        ref64, got64 = ref.astype(wide), got.astype(wide)
        # NaN where the reference has NaN, and the same infinity where it has one, is the same result:
        # the model computes them (a NaN model is a finding of its own, not 8 strategies that differ).
        same_nonfinite = (np.isnan(ref64) & np.isnan(got64)) | (np.isinf(ref64) & (ref64 == got64))
        finite = np.isfinite(ref64) & np.isfinite(got64)
        if not np.all(finite | same_nonfinite):
            return OutputCheck(reference_name, float("inf"), atol, rtol, False,
                               f"output {index} has non-finite values where the reference has none"
                               if np.all(np.isfinite(ref64)) else
                               f"output {index} is not finite where the reference is, or the other way round")
        if not finite.any():
            continue
        diff = np.abs(got64[finite] - ref64[finite])
        worst = max(worst, float(diff.max()))
        matches = matches and bool(np.all(diff <= atol + rtol * np.abs(ref64[finite])))
    return OutputCheck(reference_name, worst, atol, rtol, matches)


def checked(reference_name: str, reference: List[np.ndarray], first: List[np.ndarray],
            later: Optional[List[np.ndarray]]) -> OutputCheck:
    """A strategy's outputs check: its cold call's outputs against the reference (`compare`), its
    later call's against its cold call's (the same tolerance: a strategy whose outputs vary between
    calls on the same inputs is never recommended), and how many of its values are not finite."""
    result = compare(reference_name, reference, first)
    nonfinite, values = nonfinite_count(first)
    result = dataclasses.replace(result, nonfinite_values=nonfinite, output_values=values)
    if later is None:
        return result
    again = compare("its cold call", first, later)
    return dataclasses.replace(result, repeatable=again.matches, repeat_max_abs_diff=again.max_abs_diff,
                               repeat_detail=again.detail)


def nonfinite_count(outputs: List[np.ndarray]) -> Tuple[int, int]:
    """(NaN or infinite values, all values) over the numeric outputs."""
    bad = total = 0
    for output in outputs:
        array = np.asarray(output)
        if not _numeric(array) or array.dtype == np.bool_:
            continue
        total += array.size
        bad += int(array.size - np.count_nonzero(np.isfinite(array)))
    return bad, total


def _numeric(array: np.ndarray) -> bool:
    return array.dtype == np.bool_ or np.issubdtype(array.dtype, np.number)


def _kind(array: np.ndarray) -> str:
    if _numeric(array):
        return f"{array.dtype} numbers"
    return "text" if array.dtype.kind in "OSU" else f"{array.dtype} values"


def _texts(array: np.ndarray) -> list:
    """The elements as bytes: TensorFlow hands tf.string back as bytes, NumPy text may be str."""
    return [item.encode("utf-8") if isinstance(item, str) else item for item in array.ravel().tolist()]
