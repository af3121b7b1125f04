"""Rules over a Report's measurements and profiles → findings, each with its measured numbers.

`diagnose(report)` runs every registered rule (kdiag.analysis.rules, one module per family;
kdiag.analysis.registry) and orders what they find. It is a pure function of the Report (no
TensorFlow, no rich). Every number a rule compares against is registered with the rule
(`THRESHOLDS`, printed by `kdiag rules`), so a reader can check why a finding fired. Two rules
hold for every finding:

* A strategy is recommended only when it was measured and its outputs were checked and
  match the reference (the reference itself counts as matching): `findings.recommend` is the
  one place a recommendation is made.
* A finding whose evidence is absent (strategy not measured, unavailable, no profile) is
  silent: nothing is estimated to fill the gap.

Findings come out in the order a user needs them (`FINDING_ORDER`, the rules' ranks): correctness
first (outputs that differ, the training flag), then the user's own path (predict against the best
path that matches), then advice that backfires on this model, then compile(), retracing and
eager calls, then floors, then noise; within one kind by severity, then measured gain.

No comparison is judged on fewer than `views.MIN_CALLS_FOR_VERDICT` timed calls a side: the
`not-enough-calls` finding says so instead of a claim in either direction.
"""

from __future__ import annotations

from typing import List

from kdiag.analysis import rules  # noqa: F401 (registers every rule)
from kdiag.analysis.registry import (SEVERITIES, Threshold, finding_order, run_rules, sort_findings,  # noqa: F401
                                     threshold, thresholds, thresholds_table)
from kdiag.datamodel.report import Finding, Report

#: Every threshold, and every finding id in the order a user needs them.
THRESHOLDS = thresholds()
FINDING_ORDER = finding_order()
FINDING_IDS = FINDING_ORDER


def diagnose(report: Report) -> List[Finding]:
    """Every finding the report's measurements support, in the order a user needs them."""
    return run_rules(report)
