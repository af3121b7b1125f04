"""Derived views of a Report that every renderer shows the same way."""

from __future__ import annotations

import dataclasses
from typing import List, Optional

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
