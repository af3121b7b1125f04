"""`kdiag compare`: what changed between two saved reports, and a regression gate for CI.

Only reads Reports (rebuilt from JSON with `read_report`); nothing is re-run, and
`kdiag.render.comparison` renders the result. A change counts as a regression when it is slower by more than `fail_above` percent AND
beyond the noise: the difference of medians exceeds the sum of both IQRs. For a phase,
whose milliseconds are its profiled share x the scenario's unprofiled median, the noise
is each side's share x its scenario's IQR, summed.
"""

from __future__ import annotations

import math
from typing import List, Optional

from kdiag import views
from kdiag.datamodel.comparison import (ADDED, COMPARED, REMOVED, UNMEASURED, Comparison, PhaseChange,
                                        StrategyChange)
from kdiag.datamodel.report import Report, StrategyResult
from kdiag.errors import ExitStatus, KdiagError

#: A phase change smaller than this fraction of its scenario's median (before) is never a
#: regression, however large its ratio: a phase going from 0.01 ms to 0.05 ms is not news.
PHASE_MIN_SHARE_OF_TOTAL = 0.01


def compare_reports(before: Report, after: Report, fail_above: float,
                    before_label: str = "before", after_label: str = "after") -> Comparison:
    """Per-strategy and per-phase changes from `before` to `after`; regressions beyond `fail_above` %."""
    if not math.isfinite(fail_above) or not 0 <= fail_above <= 10_000:
        raise KdiagError(f"--fail-above must be a percentage from 0 to 10,000, not {fail_above:g}", "use e.g. 10")
    limit = 1.0 + fail_above / 100.0
    strategies = tuple(_strategy_changes(before, after, limit))
    phases = tuple(_phase_changes(before, after, limit))
    regressions = tuple([s for s in strategies if s.regression] + [p for p in phases if p.regression])
    return Comparison(before_label, after_label, fail_above, strategies, phases, regressions,
                      tuple(_warnings(before, after)))


def exit_status(comparison: Comparison) -> int:
    """ExitStatus.REGRESSION (3) when anything regressed, else 0."""
    return int(ExitStatus.REGRESSION if comparison.regressions else ExitStatus.OK)


def _median(result: Optional[StrategyResult]) -> Optional[float]:
    return views.median(result)


def _iqr(result: Optional[StrategyResult]) -> Optional[float]:
    return views.iqr(result) if views.median(result) is not None else None


def _matched(result: Optional[StrategyResult]) -> Optional[bool]:
    if views.median(result) is None or result.outputs is None:
        return None
    return views.outputs_match(result)


def _strategy_changes(before: Report, after: Report, limit: float) -> List[StrategyChange]:
    names = [s.name for s in before.strategies]
    names += [s.name for s in after.strategies if s.name not in names]
    changes = []
    for name in names:
        b, a = before.strategy(name), after.strategy(name)
        mb, ma = _median(b), _median(a)
        qb, qa = _iqr(b), _iqr(a)
        if b is None or a is None:
            status, detail = (ADDED, "") if b is None else (REMOVED, "")
        elif mb is None or ma is None:
            status = UNMEASURED
            detail = "; ".join(f"{label}: {r.reason or 'not measured'}"
                               for label, r, m in (("before", b, mb), ("after", a, ma)) if m is None)
        else:
            status, detail = COMPARED, ""
        ratio = ma / mb if status == COMPARED else None
        beyond = status == COMPARED and abs(ma - mb) > qb + qa
        changes.append(StrategyChange(
            name=name, status=status, before_s=mb, after_s=ma, before_iqr_s=qb, after_iqr_s=qa, ratio=ratio,
            beyond_noise=beyond, regression=bool(beyond and ratio is not None and ratio > limit),
            outputs_before=_matched(b), outputs_after=_matched(a), detail=detail,
        ))
    return changes


def _phase_changes(before: Report, after: Report, limit: float) -> List[PhaseChange]:
    changes = []
    for profile_b in before.profiles:
        profile_a = after.profile(profile_b.scenario)
        if profile_a is None:
            continue
        total_b = sum(p.ms_per_call for p in profile_b.phases)
        deltas = views.phase_deltas(profile_b, before.strategy(profile_b.scenario),
                                    profile_a, after.strategy(profile_b.scenario))
        for d in deltas:
            ratio = d.after_ms / d.before_ms if d.before_ms > 0 else None
            big_enough = d.delta_ms >= PHASE_MIN_SHARE_OF_TOTAL * total_b
            regression = bool(d.beyond_noise and big_enough and ratio is not None and ratio > limit)
            changes.append(PhaseChange(profile_b.scenario, d.phase, d.before_ms, d.after_ms, ratio, d.noise_ms,
                                       d.beyond_noise, regression))
    return changes


def _warnings(before: Report, after: Report) -> List[str]:
    pairs = [
        ("CPU", before.environment.cpu_model, after.environment.cpu_model),
        ("CPU cores", before.environment.cpu_cores, after.environment.cpu_cores),
        ("TensorFlow", before.environment.tensorflow, after.environment.tensorflow),
        ("Keras", before.environment.keras, after.environment.keras),
        ("intra-op threads", before.environment.intra_op_threads, after.environment.intra_op_threads),
        ("inter-op threads", before.environment.inter_op_threads, after.environment.inter_op_threads),
        ("oneDNN", before.environment.onednn, after.environment.onednn),
        ("batch size", before.model.batch_size, after.model.batch_size),
        ("model", before.model.source, after.model.source),
    ]
    lines = [f"{what} differs: {b} before, {a} after" for what, b, a in pairs if b != a]
    before_scenarios = [p.scenario for p in before.profiles]
    after_scenarios = [p.scenario for p in after.profiles]
    lines += [f"{s} was profiled only before" for s in before_scenarios if s not in after_scenarios]
    lines += [f"{s} was profiled only after" for s in after_scenarios if s not in before_scenarios]
    lines += [f"the {which} report holds runs under two Keras versions (--keras both): its "
              f"{views.keras_label(report)} run is the one compared"
              for which, report in (("before", before), ("after", after)) if report.other_keras is not None]
    return lines
