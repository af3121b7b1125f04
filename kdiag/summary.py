"""Derived views of a Report that every renderer shows the same way."""

from __future__ import annotations

import dataclasses
from typing import List, Optional

from kdiag.cpp import STRATEGY_NAME as CPP
from kdiag.render.format import duration
from kdiag.report import Report, StrategyResult
from kdiag.strategies import PREDICT


@dataclasses.dataclass(frozen=True)
class Row:
    result: StrategyResult
    vs_predict: Optional[float]  # predict's median / this median: >1 means faster than predict
    vs_fastest: Optional[float]  # this median / the fastest median: 1.0 for the fastest


def strategy_rows(report: Report) -> List[Row]:
    """Measured strategies fastest first, then the unavailable ones."""
    measured = report.measured()
    predict = report.strategy(PREDICT)
    predict_median = predict.median_s if predict and predict.measurement and predict.measurement.count else None
    fastest = measured[0].median_s if measured else None
    rows = []
    for result in measured:
        median = result.median_s
        rows.append(Row(
            result,
            predict_median / median if predict_median and median else None,
            median / fastest if fastest else None,
        ))
    rows += [Row(r, None, None) for r in report.strategies if r not in measured]
    return rows


def fastest_matching(report: Report) -> Optional[StrategyResult]:
    """The fastest strategy whose outputs match the reference."""
    for result in report.measured():
        if result.outputs is None or result.outputs.matches:
            return result
    return None





def floor_gaps(report: Report) -> List[str]:
    """How far predict and the best Python path are from the C++ floor, when it was measured."""
    floor = report.strategy(CPP)
    if floor is None or not floor.available or not floor.measurement or not floor.measurement.count:
        return []
    if floor.outputs is not None and not floor.outputs.matches:
        return [f"{CPP}: its outputs differ, so it is not used as the floor."]
    lines = []
    predict = report.strategy(PREDICT)
    if predict is not None and predict.median_s:
        lines.append(f"predict takes {predict.median_s / floor.median_s:,.0f}x the C++ floor "
                     f"({duration(predict.median_s)} vs {duration(floor.median_s)} per call): that much is Python and Keras.")
    python = [r for r in report.measured() if r.name != CPP and (r.outputs is None or r.outputs.matches)]
    if python:
        best = python[0]
        lines.append(f"The best Python path, {best.name}, takes {best.median_s / floor.median_s:.2f}x the C++ floor "
                     f"({duration(best.median_s)} vs {duration(floor.median_s)}).")
    return lines


@dataclasses.dataclass(frozen=True)
class PhaseDelta:
    phase: str
    before_ms: float
    after_ms: float
    text: str  # "+1.20 ms", or "~0 (±x ms noise)" when inside the noise


def compile_delta_rows(report: Report) -> List[PhaseDelta]:
    """Per phase, what compile() changed between the two predict profiles (empty if either is missing).

    A change smaller than the noise of the two timing passes (their IQRs, spread over the
    phase by its share) is "no measurable effect": we do not invent a slowdown.
    """
    from kdiag.strategies import PREDICT_COMPILED

    before, after = report.profile(PREDICT), report.profile(PREDICT_COMPILED)
    plain, compiled = report.strategy(PREDICT), report.strategy(PREDICT_COMPILED)
    if before is None or after is None or not plain or not compiled:
        return []
    noise_s = plain.measurement.iqr_s + compiled.measurement.iqr_s
    rows = []
    for b, a in zip(before.phases, after.phases):
        change = a.ms_per_call - b.ms_per_call
        noise_ms = noise_s * 1e3 * max(a.share, b.share)
        if abs(change) <= noise_ms:
            text = f"~0 (±{noise_ms:.2f} noise)"
        else:
            text = f"{change:+.2f} ms"
        rows.append(PhaseDelta(b.name, b.ms_per_call, a.ms_per_call, text))
    return rows
