"""Noise last: strategies timed too few times to judge, and measurements whose spread is large."""

from __future__ import annotations

from typing import List

from kdiag import views
from kdiag.analysis.registry import NOISE, rule, threshold
from kdiag.datamodel.measurement import NOISE_THRESHOLD
from kdiag.datamodel.report import Finding, Report
from kdiag.format import duration
from kdiag.views.verdict import rerun_hint
from kdiag.views.wording import plural


@rule("not-enough-calls", NOISE)
def not_enough_calls(report: Report) -> List[Finding]:
    """Strategies timed too few times to be compared: no verdict in either direction rests on them."""
    fid = "not-enough-calls"
    few = [r for r in views.measured(report) if r.measurement.count < views.MIN_CALLS_FOR_VERDICT]
    if not few:
        return []
    stopped = [r.name for r in few if r.measurement.stopped_early]
    evidence = [f"{r.name}: n={r.measurement.count:,}, median {duration(r.median_s)}" for r in few]
    if stopped:
        evidence.append(f"Stopped early at the wall cap ({report.settings.max_wall_s:.3g} s): {', '.join(stopped)}.")
    return [Finding(
        id=fid,
        severity="info",
        title=f"Not enough calls to judge {plural(len(few), 'strategy', 'strategies')} "
              f"(fewer than {views.MIN_CALLS_FOR_VERDICT} timed calls)",
        evidence=evidence,
        advice=("No finding compares these: with so few calls there is no noise band to tell a real difference "
                f"from chance. To judge them, {rerun_hint(report, few)}."),
        snippet="",
    )]


@rule("noisy", NOISE + 1, thresholds=[
    ("iqr_over_median", NOISE_THRESHOLD, "a measurement whose IQR / median exceeds this is noisy "
                                         "(kdiag.datamodel.measurement.NOISE_THRESHOLD)"),
])
def noisy(report: Report) -> List[Finding]:
    limit = threshold("noisy", "iqr_over_median")
    evidence = []
    for result in report.strategies:
        m = result.measurement
        if m is not None and m.count and m.noisy:
            evidence.append(f"{result.name}: IQR {duration(m.iqr_s)}, {m.iqr_s / m.median_s:.0%} of its "
                            f"{duration(m.median_s)} median (n={m.count:,}).")
    if not evidence:
        return []
    return [Finding(
        id="noisy",
        severity="low",
        title=f"Noisy measurements: {plural(len(evidence), 'strategy', 'strategies')}",
        evidence=evidence,
        advice=(f"An IQR above {limit:.0%} of the median: another process may be using the CPU. Rounds were "
                "interleaved, so ratios stay comparable, but for firmer figures close other programs or raise "
                "--budget and re-run."),
        snippet="",
    )]
