"""What a model declares about its inputs, before any array exists.

Its own module because both halves of intake read it: `limits` sizes a batch from it before the
arrays are made, and `inputs` makes the arrays (after asking `limits` whether they fit).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One model input as declared: shape includes the batch axis (None when dynamic)."""

    name: str
    shape: Tuple[Optional[int], ...]
    dtype: str
    int_range: Optional[Tuple[int, int]] = None  # [low, high) for integer inputs
    range_reason: str = ""  # e.g. "Embedding 'emb' vocabulary 1000"
