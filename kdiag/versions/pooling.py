"""One release's runs pooled into one Report: every timed call of every round, per strategy.

The first run of a release is a full kdiag run (profiles, the steps beyond one batch, as asked);
the later ones are timing rounds, taken in turns with the other releases so that a drifting
machine hits each release alike. Each strategy's timed calls from all of them make one
Measurement: the statistics are those of every call when every run kept all its samples (fewer
than kdiag.datamodel.measurement.MAX_SAMPLES); when a run kept a uniform subset of many more
calls, each kept sample stands for the calls it represents (its run's count over its kept
samples), and the report says the percentiles are estimated so. The minimum, maximum, mean and
count are exact either way. predict's phases are re-scaled to its pooled median (a phase's
milliseconds are its profiled share times the unprofiled median).
"""

from __future__ import annotations

import dataclasses
import math
from typing import List, Optional, Sequence, Tuple

from kdiag.datamodel.measurement import MAX_SAMPLES, Measurement, round_significant, uniform_subset
from kdiag.datamodel.profile import ProfileResult
from kdiag.datamodel.report import OutputCheck, Report, StrategyResult


def pool_measurements(parts: Sequence[Measurement]) -> Measurement:
    """One Measurement of every timed call in `parts` (runs of one strategy), the first call of the first."""
    parts = [m for m in parts if m is not None and m.count]
    first = parts[0]
    samples = [s for m in parts for s in m.samples_s]
    stopped = any(m.stopped_early for m in parts)
    if not any(m.thinned for m in parts):
        return Measurement.from_samples(first.strategy, first.first_call_s, samples, stopped, first.source)
    weighted = sorted((s, m.count / len(m.samples_s)) for m in parts for s in m.samples_s)
    count = sum(m.count for m in parts)
    kept = tuple(round_significant(s) for s in uniform_subset(samples, MAX_SAMPLES))
    return Measurement(first.strategy, first.first_call_s, kept, stopped, first.source, count=count,
                       median_s=_weighted_percentile(weighted, 50),
                       iqr_s=_weighted_percentile(weighted, 75) - _weighted_percentile(weighted, 25),
                       p90_s=_weighted_percentile(weighted, 90), p99_s=_weighted_percentile(weighted, 99),
                       min_s=min(m.min_s for m in parts), max_s=max(m.max_s for m in parts),
                       mean_s=math.fsum(m.mean_s * m.count for m in parts) / count)


def _weighted_percentile(ordered: Sequence[Tuple[float, float]], q: float) -> float:
    """The q-th percentile of weighted values (sorted), each weight standing for that many calls:
    linear between the centres of the values' spans of the cumulative weight."""
    total = math.fsum(w for _, w in ordered)
    target = total * q / 100.0
    centres, running = [], 0.0
    for value, weight in ordered:
        centres.append((running + weight / 2, value))
        running += weight
    if target <= centres[0][0]:
        return centres[0][1]
    for (left, low), (right, high) in zip(centres, centres[1:]):
        if target <= right:
            return low + (high - low) * (target - left) / (right - left) if right > left else high
    return centres[-1][1]


def pool_strategy(results: Sequence[Optional[StrategyResult]]) -> StrategyResult:
    """One strategy over a release's runs: the first run's row (snippet, notes), every run's calls, and
    outputs that match only when they matched in every run that checked them."""
    present = [r for r in results if r is not None]
    measured = [r for r in present if r.available and r.measurement is not None and r.measurement.count]
    if not measured:
        return present[0]
    base = measured[0]
    checks = [r.outputs for r in measured if r.outputs is not None]
    outputs = base.outputs
    if outputs is not None and len(checks) > 1:
        # The worst check stands for all: a mismatch in any run, else the largest difference seen.
        worst = max(checks, key=lambda c: (not c.matches, _diff(c)))
        outputs = dataclasses.replace(worst, matches=all(c.matches for c in checks))
    return dataclasses.replace(base, measurement=pool_measurements([r.measurement for r in measured]),
                               outputs=outputs)


def _diff(check: OutputCheck) -> float:
    return check.max_abs_diff if math.isfinite(check.max_abs_diff) else math.inf


def pool_reports(reports: Sequence[Report]) -> Report:
    """A release's runs as one Report: the first (full) run's, with every strategy pooled over all of them."""
    first = reports[0]
    if len(reports) == 1:
        return first
    names = [s.name for s in first.strategies]
    names += [s.name for r in reports[1:] for s in r.strategies if s.name not in names]
    strategies = [pool_strategy([r.strategy(name) for r in reports]) for name in names]
    thinned = [s.name for s in strategies if s.measurement is not None and s.measurement.count
               and any(_thinned(r.strategy(s.name)) for r in reports)]
    note = (f"Timed calls pooled over {len(reports)} runs of this release (in rounds, taking turns with any other "
            "release measured with it); the profiles and the steps beyond one batch come from its first run.")
    if thinned:
        note += (f" Percentiles of {', '.join(thinned)} are estimated from the samples each run kept (each "
                 "standing for its share of that run's calls); counts, minimum, maximum and mean are exact.")
    pooled = dataclasses.replace(first, strategies=strategies, notes=[note] + list(first.notes),
                                 incomplete=any(r.incomplete for r in reports))
    return dataclasses.replace(pooled, profiles=[_rescaled(p, pooled) for p in first.profiles])


def _thinned(result: Optional[StrategyResult]) -> bool:
    return result is not None and result.measurement is not None and result.measurement.thinned


def _rescaled(profile: ProfileResult, report: Report) -> ProfileResult:
    """The profile's phases in milliseconds of the pooled median (their shares are the profile's own)."""
    result = report.strategy(profile.scenario)
    median = result.median_s if result is not None and result.measurement is not None and result.measurement.count \
        else None
    if median is None or not math.isfinite(median) or median <= 0:
        return profile
    phases: List = [dataclasses.replace(row, per_call_s=row.share * median) for row in profile.phases]
    return dataclasses.replace(profile, phases=phases, unprofiled_median_s=median)

