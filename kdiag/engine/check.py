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
    """Element-wise |candidate - reference| <= atol + rtol * |reference|, on every output."""
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
        ref64 = ref.astype(np.float64)
        diff = np.abs(got.astype(np.float64) - ref64)
        if not np.all(np.isfinite(diff)):
            return OutputCheck(reference_name, float("inf"), atol, rtol, False,
                               f"output {index} has non-finite values where the reference has none"
                               if np.all(np.isfinite(ref64)) else f"output {index} is not finite")
        worst = max(worst, float(diff.max()))
        matches = matches and bool(np.all(diff <= atol + rtol * np.abs(ref64)))
    return OutputCheck(reference_name, worst, atol, rtol, matches)
