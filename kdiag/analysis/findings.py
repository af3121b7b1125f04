"""What every rule writes with: `recommend` (the one place a finding recommends a strategy) and the
wording of a measurement that several rules cite."""

from __future__ import annotations

from typing import Any, Dict, Optional

from kdiag import views
from kdiag.datamodel.profile import ProfileResult
from kdiag.datamodel.report import Report, StrategyResult
from kdiag.format import diff as fmt_diff
from kdiag.format import duration


def recommend(report: Report, result: Optional[StrategyResult], speedup: Optional[float] = None) -> Dict[str, Any]:
    """The fields of a Finding that recommend `result` (snippet, strategy, measured_speedup, outputs_match):
    `Finding(..., **recommend(report, best, speedup))`.

    A strategy is recommended only when it was measured in `report` and its outputs were checked and
    match the reference (the reference itself counts as matching); otherwise the fields say nothing
    is recommended. No rule sets these fields itself (tests/test_diagnose.py checks the rules' code).
    """
    if result is None or views.usable(report, result.name) is None:
        return dict(snippet="", strategy=None, measured_speedup=None, outputs_match=None)
    return dict(snippet=result.snippet, strategy=result.name, measured_speedup=speedup, outputs_match=True)


def median_text(result: StrategyResult) -> str:
    """"61.2 ms (IQR 3.1 ms, n=12)"."""
    return f"{duration(result.median_s)} (IQR {duration(views.iqr(result))}, n={result.measurement.count:,})"


def match_text(result: StrategyResult) -> str:
    """"outputs match predict's, max |diff| 2.0e-08", or that it is the reference."""
    check = result.outputs
    if check.reference == result.name:
        return f"it is the reference ({check.reference})"
    return f"outputs match {check.reference}'s, max |diff| {fmt_diff(check.max_abs_diff)}"


def scaled_note(profile: ProfileResult) -> str:
    """How a profile's milliseconds were scaled, in words."""
    if profile.unprofiled_median_s:
        return f"shares × the unprofiled median; {views.inflation_text(profile)}"
    return "as profiled: no unprofiled median to scale to, so cProfile's overhead is included"


def phase_list(rows, min_share: float = 0.0, limit: Optional[int] = None) -> str:
    """"tf.data pipeline 27.6 ms (45%), tracing 18.4 ms (30%)": the largest phases first."""
    chosen = sorted((p for p in rows if p.share >= min_share), key=lambda p: -p.share)
    if limit is not None:
        chosen = chosen[:limit]
    return ", ".join(f"{p.name} {duration(p.ms_per_call / 1e3)} ({p.share:.0%})" for p in chosen)
