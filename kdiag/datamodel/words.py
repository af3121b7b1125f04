"""How a count is written in every text kdiag keeps or shows: "1 sample", "4,096 samples".

Here, at the bottom, because the engine writes such lines into the data model (a sweep's
"not measured" lines) and may not import kdiag.format; kdiag.format re-exports it for the layers above.
"""

from __future__ import annotations

from typing import Optional


def count(n: int, noun: str, plural: Optional[str] = None) -> str:
    """A count and its noun, singular or plural as the count asks: "1 sample", "4,096 samples",
    "3 strategies"."""
    if n == 1:
        return f"{n:,} {noun}"
    if not plural:
        plural = noun[:-1] + "ies" if noun.endswith("y") and noun[-2:-1] not in "aeiou" else noun + "s"
    return f"{n:,} {plural}"
