"""Number formatting shared by the text renderers (terminal and Markdown)."""

from __future__ import annotations

import math
from typing import Optional

from kdiag.datamodel.words import count  # noqa: F401  (one helper for every layer: the engine writes counts too)


def duration(seconds: Optional[float]) -> str:
    """Seconds as µs / ms / s with three significant figures."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "—"
    # Compared after rounding to three figures: 999.6 µs reads "1 ms", not "1e+03 µs".
    if float(f"{seconds:.3g}") < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if float(f"{seconds:.3g}") < 1:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds:.3g} s"


def ratio(value: Optional[float]) -> str:
    if value is None or math.isnan(value) or math.isinf(value):
        return "—"
    if value >= 100:
        return f"{value:,.0f}x"
    if value >= 10:
        return f"{value:.1f}x"
    return f"{value:.2f}x"


def diff(value: Optional[float]) -> str:
    if value is None or math.isnan(value):
        return "—"
    if math.isinf(value):
        return "∞"
    return "0" if value == 0 else f"{value:.1e}"


def milliseconds(value: float, sign: str = "") -> str:
    """Milliseconds to two decimals, fewer from 10 ms on: no more figures than a noise band allows (not
    '135.18'). `sign`: "+" to show it always."""
    decimals = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
    return f"{value:{sign}.{decimals}f}"


def threads(count: int) -> str:
    return f"{count}" if count else "0 (TensorFlow picks: one per core)"


def interval(measurement) -> str:
    """The median's 95% confidence interval as ± its wider side: "±1.6%"; "—" under six samples."""
    half = measurement.ci_half_width
    return "—" if half is None else f"±{half:.1%}" if half < 0.1 else f"±{half:.0%}"


def samples(measurement) -> str:
    """Timed samples, and the calls each is the mean of when more than one: "5,145", "24 × 50"."""
    if measurement.calls_per_sample > 1:
        return f"{measurement.count:,} × {measurement.calls_per_sample:,}"
    return f"{measurement.count:,}"
