"""`kdiag compare`: what changed between two saved reports, and a regression gate for CI.

Only reads Reports (rebuilt from JSON with `read_report`); nothing is re-run, and
`kdiag.render.comparison` renders the result. A change counts as a regression when it is slower by more than `fail_above` percent AND
beyond the noise: the difference of medians exceeds the sum of both IQRs. For a phase,
whose milliseconds are its profiled share x the scenario's unprofiled median, the noise
is each side's share x its scenario's IQR, summed.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

from kdiag import views
from kdiag.datamodel.comparison import (ADDED, COMPARED, PHASE_MIN_SHARE_OF_TOTAL, REMOVED, UNMEASURED, Comparison,
                                        PhaseChange, StrategyChange)
from kdiag.datamodel.report import Report, StrategyResult
from kdiag.datamodel.strategies import ALL_STRATEGIES, BY_NAME
from kdiag.errors import ExitStatus, KdiagError



def compare_reports(before: Report, after: Report, fail_above: float,
                    before_label: str = "before", after_label: str = "after",
                    allow_missing: bool = False) -> Comparison:
    """Per-strategy and per-phase changes from `before` to `after`; regressions beyond `fail_above` %.

    Strategies are paired by key (kdiag.datamodel.strategies), never by a display name alone; what
    cannot be paired is listed in `unmatched`, and what was measured before but not after in
    `missing`. Figures a run cannot produce (NaN, infinite, negative, beyond a day) are refused.
    """
    if not math.isfinite(fail_above) or not 0 <= fail_above <= 10_000:
        raise KdiagError(f"--fail-above must be a percentage from 0 to 10,000, not {fail_above:g}", "use e.g. 10")
    check_figures(before, before_label)
    check_figures(after, after_label)
    limit = 1.0 + fail_above / 100.0
    keyed_before, unmatched_before = _by_key(before, "before")
    keyed_after, unmatched_after = _by_key(after, "after")
    strategies = tuple(_strategy_changes(keyed_before, keyed_after, limit))
    phases = tuple(_phase_changes(before, after, limit))
    regressions = tuple([s for s in strategies if s.regression] + [p for p in phases if p.regression])
    missing = tuple(s.name for s in strategies if s.before_s is not None and s.after_s is None)
    return Comparison(before_label, after_label, fail_above, strategies, phases, regressions,
                      tuple(_warnings(before, after)), missing, tuple(unmatched_before + unmatched_after),
                      allow_missing)


def exit_status(comparison: Comparison) -> int:
    """The gate: ExitStatus.REGRESSION (3) when anything regressed, when a strategy measured before is
    missing after (unless allow_missing), or when no strategy could be compared at all; else 0."""
    failed = (comparison.regressions or (comparison.missing and not comparison.allow_missing)
              or not comparison.compared)
    return int(ExitStatus.REGRESSION if failed else ExitStatus.OK)


#: Every strategy, the C++ row included, by key.
_IDENTITIES = {identity.key: identity for identity in ALL_STRATEGIES}

#: No call kdiag times takes a day: a median or an IQR beyond this is damage or an edit, not a figure.
MAX_SECONDS = 86_400.0
FIGURES_FIX = "compare the report.json files that kdiag inspect saved; this one was edited or damaged"


def check_figures(report: Report, label: str) -> None:
    """Refuse, with one line naming the field, a measured strategy whose median or IQR (or a profiled
    phase whose time) is NaN, infinite, negative or absurd: comparing it would pass or fail at random."""
    for index, result in enumerate(report.strategies):
        measurement = result.measurement
        if measurement is None or not measurement.count:
            continue  # not measured: nothing to compare, and said so in its row
        where = f"report.strategies[{index}].measurement"
        _check_seconds(label, f"{where}.median_s", measurement.median_s, positive=True)
        _check_seconds(label, f"{where}.iqr_s", measurement.iqr_s)
    for index, profile in enumerate(report.profiles):
        for row_index, row in enumerate(profile.phases):
            _check_seconds(label, f"report.profiles[{index}].phases[{row_index}].per_call_s", row.per_call_s)
            if not (math.isfinite(row.share) and 0 <= row.share <= 1):
                raise KdiagError(f"{label}: report.profiles[{index}].phases[{row_index}].share is {row.share!r}, "
                                 "not a share from 0 to 1", FIGURES_FIX)


def _check_seconds(label: str, field: str, value, positive: bool = False) -> None:
    if isinstance(value, (int, float)) and math.isfinite(value) and (value > 0 if positive else value >= 0) \
            and value <= MAX_SECONDS:
        return
    lowest = "above 0" if positive else "from 0"
    raise KdiagError(f"{label}: {field} is {value!r}, not a time kdiag measures ({lowest} to {MAX_SECONDS:,.0f} s)",
                     FIGURES_FIX)


def _by_key(report: Report, side: str) -> Tuple[Dict[str, StrategyResult], List[str]]:
    """The report's strategies by key, and those that have none (an unknown or conflicting name, or a
    second row with a key already taken), each as "'name' (side): why"."""
    keyed: Dict[str, StrategyResult] = {}
    unmatched = []
    for result in report.strategies:
        key, why = _key(result)
        if key is not None and key in keyed:
            key, why = None, "a second row with the same strategy"
        if key is None:
            unmatched.append(f"{result.name!r} ({side}): {why}")
        else:
            keyed[key] = result
    return keyed, unmatched


def _key(result: StrategyResult) -> Tuple[Optional[str], str]:
    """The strategy's key from its name, checked against the name its measurement was recorded under."""
    by_name = BY_NAME.get(result.name)
    recorded = result.measurement.strategy if result.measurement is not None else None
    by_record = BY_NAME.get(recorded) if isinstance(recorded, str) else None
    if by_name is None:
        also = f" (its measurement was recorded as {recorded!r})" if by_record is not None else ""
        return None, "no strategy kdiag knows has this name" + also
    if recorded is not None and by_record is not by_name:
        return None, f"its measurement was recorded as {recorded!r}"
    return by_name.key, ""


def _median(result: Optional[StrategyResult]) -> Optional[float]:
    return views.median(result)


def _iqr(result: Optional[StrategyResult]) -> Optional[float]:
    return views.iqr(result) if views.median(result) is not None else None


def _matched(result: Optional[StrategyResult]) -> Optional[bool]:
    if views.median(result) is None or result.outputs is None:
        return None
    return views.outputs_match(result)


def _strategy_changes(before: Dict[str, StrategyResult], after: Dict[str, StrategyResult],
                      limit: float) -> List[StrategyChange]:
    keys = list(before) + [key for key in after if key not in before]
    changes = []
    for key in keys:
        b, a = before.get(key), after.get(key)
        name = _IDENTITIES[key].name
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
        # The one noise rule, with its minimum of calls a side: no verdict either way on fewer.
        judged = status == COMPARED and views.judge(*((a, b) if ma >= mb else (b, a))).enough_calls
        beyond = judged and abs(ma - mb) > qb + qa
        changes.append(StrategyChange(
            name=name, status=status, before_s=mb, after_s=ma, before_iqr_s=qb, after_iqr_s=qa, ratio=ratio,
            beyond_noise=beyond, regression=bool(beyond and ratio is not None and ratio > limit),
            outputs_before=_matched(b), outputs_after=_matched(a), detail=detail, judged=judged or status != COMPARED,
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
