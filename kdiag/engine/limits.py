"""Refuse work that would exhaust the machine before starting it."""

from __future__ import annotations

import os
from typing import Mapping, Sequence, Tuple

import numpy as np

from kdiag.errors import KdiagError
from kdiag.engine.inputs import InputSpec

# Several copies of the inputs exist at once (NumPy, tensors, TFLite buffers, outputs),
# so refuse inputs above this share of the machine's memory.
MEMORY_SHARE = 0.25


def available_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def check_input_memory(specs: Sequence[InputSpec], shapes: Mapping[str, Tuple[int, ...]]) -> None:
    total = 0
    for spec in specs:
        total += int(np.prod(shapes[spec.name], dtype=np.float64)) * np.dtype(spec.dtype).itemsize
    limit = available_memory_bytes() * MEMORY_SHARE
    if total > limit:
        raise KdiagError(
            f"these inputs would take {_gib(total)} of memory (batch axis included), more than "
            f"{int(MEMORY_SHARE * 100)}% of this machine's {_gib(available_memory_bytes())}",
            "use a smaller --batch-size",
        )


def _gib(n: float) -> str:
    return f"{n / (1 << 30):.1f} GiB"
