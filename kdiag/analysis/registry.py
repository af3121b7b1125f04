"""The registry of findings: each rule is one function registered with its finding id, its place in
the order a user needs findings in, and the thresholds it compares against (printed by `kdiag rules`).

    @rule("eager-slow", rank=HABITS + 3, thresholds=[("min_ratio", 2.0, "model(x) eager's median / ...")])
    def eager_slow(report: Report) -> List[Finding]:
        ... threshold("eager-slow", "min_ratio") ...

A rule is a pure function of the Report that returns the findings its evidence supports (none
when the evidence is absent: nothing is estimated to fill a gap). It recommends a strategy only
through `kdiag.analysis.findings.recommend`, which refuses what was not measured or whose outputs
do not match.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Iterable, List, Sequence, Tuple

from kdiag.datamodel.report import Finding, Report

SEVERITIES = ("high", "medium", "low", "info")
_SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}

# The order a user needs findings in, by band: correctness (a call the user would make computes
# different outputs), then drop-in fixes (the same process and model object: the verdict's fix first,
# then compile(), the Keras version, data sizes, direct calls, retracing), then advice that backfires
# on this model, then memory over many calls, then runtime changes and tuning (leaving Keras,
# threads, batch size), then notes, then how firm the figures are. Within a band, a rule's rank
# places it; within one rank, by severity, then measured gain. Each band is a kind of finding
# (kdiag.datamodel.report.FINDING_KINDS), which the reports use as headings.
CORRECTNESS = 10
DROP_IN = 20
BACKFIRES = 30
MEMORY = 40
RUNTIMES = 50
NOTES = 60
NOISE = 70
#: The kind of finding each band holds (FINDING_KINDS' keys).
BAND_KINDS = {CORRECTNESS: "correctness", DROP_IN: "drop-in", BACKFIRES: "backfires", MEMORY: "memory",
              RUNTIMES: "runtime", NOTES: "note", NOISE: "noise"}


def kind_of(rank: int) -> str:
    """The kind of a rule's findings, from its rank's band (a rank before the first band is in the first)."""
    return BAND_KINDS[max((band for band in BAND_KINDS if band <= rank), default=CORRECTNESS)]


@dataclasses.dataclass(frozen=True)
class Threshold:
    finding_id: str
    name: str
    value: float
    meaning: str


@dataclasses.dataclass(frozen=True)
class Rule:
    finding_id: str
    rank: int
    check: Callable[[Report], List[Finding]]
    thresholds: Tuple[Threshold, ...]


RULES: List[Rule] = []
_THRESHOLD_VALUES: Dict[Tuple[str, str], float] = {}


def rule(finding_id: str, rank: int, thresholds: Sequence[Tuple[str, float, str]] = ()):
    """Register `check` as the rule of `finding_id`, with its thresholds as (name, value, meaning)."""
    def register(check: Callable[[Report], List[Finding]]):
        if any(r.finding_id == finding_id for r in RULES):
            raise ValueError(f"two rules for {finding_id}")
        rows = tuple(Threshold(finding_id, name, value, meaning) for name, value, meaning in thresholds)
        RULES.append(Rule(finding_id, rank, check, rows))
        for row in rows:
            _THRESHOLD_VALUES[(finding_id, row.name)] = row.value
        return check

    return register


def threshold(finding_id: str, name: str) -> float:
    """The value of one threshold; KeyError for one that no rule registered."""
    return _THRESHOLD_VALUES[(finding_id, name)]


#: The thresholds `ratio_severity` reads: a finding that grades a ratio registers all three.
SEVERITY_LADDER = (("high", "high_ratio"), ("medium", "medium_ratio"), ("low", "min_ratio"))


def ratio_severity(finding_id: str, ratio: float) -> str:
    """'high', 'medium' or 'low' as `ratio` reaches the finding's high_ratio, medium_ratio or min_ratio
    threshold; 'info' below all three. One ladder for every finding that grades a measured ratio."""
    return next((severity for severity, name in SEVERITY_LADDER if ratio >= threshold(finding_id, name)), "info")


def ordered_rules() -> List[Rule]:
    return sorted(RULES, key=lambda r: r.rank)


def finding_order() -> Tuple[str, ...]:
    """Every finding id, in the order a user needs them."""
    return tuple(r.finding_id for r in ordered_rules())


def thresholds() -> Tuple[Threshold, ...]:
    """Every threshold, rule by rule in the findings' order."""
    return tuple(t for r in ordered_rules() for t in r.thresholds)


def thresholds_table() -> List[Tuple[str, str, str, str]]:
    """Rows (finding id, threshold name, value, meaning) for `kdiag rules`."""
    return [(t.finding_id, t.name, f"{t.value:g}", t.meaning) for t in thresholds()]


def run_rules(report: Report) -> List[Finding]:
    """Every finding the registered rules find in the report, in the order a user needs them."""
    findings: List[Finding] = []
    for registered in RULES:
        kind = kind_of(registered.rank)
        findings.extend(dataclasses.replace(f, kind=kind) for f in registered.check(report))
    return sort_findings(findings)


def sort_findings(findings: Iterable[Finding]) -> List[Finding]:
    """By rank (the rule's place in the order), then severity, then measured speed-up, largest first (stable)."""
    ranks = {r.finding_id: r.rank for r in RULES}
    indexed = list(enumerate(findings))
    indexed.sort(key=lambda item: (
        ranks.get(item[1].id, NOISE + 100),
        _SEVERITY_RANK.get(item[1].severity, len(SEVERITIES)),
        -(item[1].measured_speedup or 0.0),
        item[0],
    ))
    return [f for _, f in indexed]
