"""`kdiag compare`: two saved reports side by side, and a regression gate for CI.

Only reads Reports (rebuilt from JSON with `Report.from_dict`); nothing is re-run. A
change counts as a regression when it is slower by more than `fail_above` percent AND
beyond the noise: the difference of medians exceeds the sum of both IQRs. For a phase,
whose milliseconds are its profiled share x the scenario's unprofiled median, the noise
is each side's share x its scenario's IQR, summed.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

from kdiag.errors import ExitStatus, KdiagError
from kdiag.render.format import duration
from kdiag.report import Report, StrategyResult

#: A phase change smaller than this fraction of its scenario's median (before) is never a
#: regression, however large its ratio: a phase going from 0.01 ms to 0.05 ms is not news.
PHASE_MIN_SHARE_OF_TOTAL = 0.01

# Strategy statuses
COMPARED = "compared"  # measured in both
ADDED = "added"  # only in the after report
REMOVED = "removed"  # only in the before report
UNMEASURED = "unmeasured"  # in both, but not measured in one or both (unavailable, failed)


@dataclasses.dataclass(frozen=True)
class StrategyChange:
    name: str
    status: str  # COMPARED, ADDED, REMOVED or UNMEASURED
    before_s: Optional[float]  # median
    after_s: Optional[float]
    before_iqr_s: Optional[float]
    after_iqr_s: Optional[float]
    ratio: Optional[float]  # after / before: > 1 is slower
    beyond_noise: bool  # |after - before| > both IQRs summed
    regression: bool
    outputs_before: Optional[bool]  # outputs matched the reference (None: not checked or not measured)
    outputs_after: Optional[bool]
    detail: str = ""  # why a side is unmeasured

    @property
    def percent(self) -> Optional[float]:
        return None if self.ratio is None else (self.ratio - 1.0) * 100.0


@dataclasses.dataclass(frozen=True)
class PhaseChange:
    scenario: str
    phase: str
    before_ms: float  # ms per call, scaled to the scenario's unprofiled median
    after_ms: float
    ratio: Optional[float]  # after / before (None when before is 0)
    noise_ms: Optional[float]  # share x IQR on each side, summed; None when a side has no measurement
    beyond_noise: bool
    regression: bool

    @property
    def delta_ms(self) -> float:
        return self.after_ms - self.before_ms


@dataclasses.dataclass(frozen=True)
class Comparison:
    before_label: str
    after_label: str
    fail_above: float  # percent
    strategies: Tuple[StrategyChange, ...]
    phases: Tuple[PhaseChange, ...]
    regressions: Tuple[Union[StrategyChange, PhaseChange], ...]
    warnings: Tuple[str, ...]  # differences in machine, versions or settings that make figures less comparable


def load_report(path: Union[str, Path]) -> Report:
    """A Report from a JSON file written by kdiag; KdiagError (one line) when it cannot be read."""
    path = Path(path)
    fix = "give the report.json that `kdiag inspect` saved in its run folder"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KdiagError(f"{path}: no such file", fix) from None
    except IsADirectoryError:
        raise KdiagError(f"{path} is a directory, not a report", f"{fix}, e.g. {path / 'report.json'}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KdiagError(f"cannot read {path}: {_one_line(exc)}", fix) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KdiagError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})",
                         fix) from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise KdiagError(f"{path} is not a kdiag report (no schema_version)", fix)
    try:
        return Report.from_dict(data)
    except KdiagError as exc:
        raise KdiagError(f"{path}: {exc.problem}", exc.fix) from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise KdiagError(f"{path} does not have the fields of a kdiag report ({_one_line(exc)})", fix) from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]


def compare_reports(before: Report, after: Report, fail_above: float,
                    before_label: str = "before", after_label: str = "after") -> Comparison:
    """Per-strategy and per-phase changes from `before` to `after`; regressions beyond `fail_above` %."""
    if fail_above < 0 or math.isnan(fail_above):
        raise KdiagError(f"--fail-above must be a percentage of 0 or more, not {fail_above}", "use e.g. 10")
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
    if result is None or not result.available or result.measurement is None or not result.measurement.count:
        return None
    median = result.median_s
    return median if median is not None and median > 0 and math.isfinite(median) else None


def _iqr(result: Optional[StrategyResult]) -> Optional[float]:
    if _median(result) is None:
        return None
    iqr = result.measurement.iqr_s
    return iqr if math.isfinite(iqr) else 0.0


def _matched(result: Optional[StrategyResult]) -> Optional[bool]:
    if _median(result) is None or result.outputs is None:
        return None
    return result.outputs.matches or result.outputs.reference == result.name


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
        iqr_b = _iqr(before.strategy(profile_b.scenario))
        iqr_a = _iqr(after.strategy(profile_b.scenario))
        total_b = sum(p.ms_per_call for p in profile_b.phases)
        rows_a = {p.name: p for p in profile_a.phases}
        for row_b in profile_b.phases:
            row_a = rows_a.get(row_b.name)
            if row_a is None:
                continue
            ratio = row_a.ms_per_call / row_b.ms_per_call if row_b.ms_per_call > 0 else None
            noise = (row_b.share * iqr_b + row_a.share * iqr_a) * 1e3 if iqr_b is not None and iqr_a is not None \
                else None
            delta = row_a.ms_per_call - row_b.ms_per_call
            beyond = noise is not None and abs(delta) > noise
            big_enough = delta >= PHASE_MIN_SHARE_OF_TOTAL * total_b
            regression = bool(beyond and big_enough and ratio is not None and ratio > limit)
            changes.append(PhaseChange(profile_b.scenario, row_b.name, row_b.ms_per_call, row_a.ms_per_call, ratio,
                                       noise, beyond, regression))
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
    return lines


# --- text -----------------------------------------------------------------------------


def render_comparison(comparison: Comparison) -> str:
    """A plain-text table (no rich): safe in CI logs."""
    c = comparison
    lines = [f"kdiag compare: {c.before_label} -> {c.after_label} (regression: slower by more than "
             f"{c.fail_above:g}% and beyond the noise, the sum of both IQRs)", ""]
    rows = [(s.name, _time(s.before_s, s.before_iqr_s), _time(s.after_s, s.after_iqr_s), _change(s),
             _verdict(s)) for s in c.strategies]
    lines += _columns(("strategy", "before (median ± IQR)", "after", "change", "verdict"), rows)
    outputs = [s for s in c.strategies if s.outputs_before is True and s.outputs_after is False]
    for s in outputs:
        lines.append(f"warning: {s.name}: outputs matched the reference before and differ after")
    phases = [p for p in c.phases if p.before_ms or p.after_ms]  # phases empty in both runs say nothing
    if phases:
        lines += ["", "Phases (ms per call: profiled shares scaled to each run's unprofiled median)", ""]
        rows = [(f"{p.scenario} / {p.phase}", f"{p.before_ms:.3g}", f"{p.after_ms:.3g}",
                 f"{p.delta_ms:+.3g} ms" + (f" ({(p.ratio - 1) * 100:+.0f}%)" if p.ratio is not None else ""),
                 _phase_verdict(p)) for p in phases]
        lines += _columns(("scenario / phase", "before ms", "after ms", "change", "verdict"), rows)
    if c.warnings:
        lines += ["", "The two runs differ in setup, so some changes may come from that:"]
        lines += [f"  {w}" for w in c.warnings]
    lines.append("")
    if c.regressions:
        names = [r.name if isinstance(r, StrategyChange) else f"{r.scenario} / {r.phase}" for r in c.regressions]
        lines.append(f"REGRESSION: {len(names)} slower by more than {c.fail_above:g}% beyond the noise: "
                     + ", ".join(names))
    else:
        lines.append(f"No regression: nothing slower by more than {c.fail_above:g}% beyond the noise.")
    return "\n".join(lines) + "\n"


def _time(median: Optional[float], iqr: Optional[float]) -> str:
    if median is None:
        return "—"
    return f"{duration(median)} ± {duration(iqr or 0.0)}"


def _change(s: StrategyChange) -> str:
    if s.ratio is None:
        return "—"
    return f"{s.ratio:.2f}x ({s.percent:+.1f}%)"


def _verdict(s: StrategyChange) -> str:
    if s.status == ADDED:
        return "added (only after)"
    if s.status == REMOVED:
        return "removed (only before)"
    if s.status == UNMEASURED:
        return f"not compared ({s.detail})"
    if s.regression:
        return "REGRESSION"
    if not s.beyond_noise:
        return "within noise"
    return "faster" if s.ratio < 1 else "slower, below the threshold"


def _phase_verdict(p: PhaseChange) -> str:
    if p.regression:
        return "REGRESSION"
    if p.noise_ms is None:
        return "noise unknown"
    if not p.beyond_noise:
        return "within noise"
    return "faster" if p.delta_ms < 0 else "slower, below the threshold"


def _columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()

    return [line(header), line(["-" * w for w in widths]), *[line(r) for r in rows]]
