"""The outputs check: does a strategy compute what `predict` computes on the same inputs?"""

from __future__ import annotations

from typing import List

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
        ref64 = ref.astype(wide)
        diff = np.abs(got.astype(wide) - ref64)
        if not np.all(np.isfinite(diff)):
            return OutputCheck(reference_name, float("inf"), atol, rtol, False,
                               f"output {index} has non-finite values where the reference has none"
                               if np.all(np.isfinite(ref64)) else f"output {index} is not finite")
        worst = max(worst, float(diff.max()))
        matches = matches and bool(np.all(diff <= atol + rtol * np.abs(ref64)))
    return OutputCheck(reference_name, worst, atol, rtol, matches)


def _numeric(array: np.ndarray) -> bool:
    return array.dtype == np.bool_ or np.issubdtype(array.dtype, np.number)


def _kind(array: np.ndarray) -> str:
    if _numeric(array):
        return f"{array.dtype} numbers"
    return "text" if array.dtype.kind in "OSU" else f"{array.dtype} values"


def _texts(array: np.ndarray) -> list:
    """The elements as bytes: TensorFlow hands tf.string back as bytes, NumPy text may be str."""
    return [item.encode("utf-8") if isinstance(item, str) else item for item in array.ravel().tolist()]
