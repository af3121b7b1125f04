"""`kdiag compare`'s table: a Comparison as plain text (no rich), safe in CI logs."""

from __future__ import annotations

from typing import List, Optional, Sequence

from kdiag.datamodel.comparison import ADDED, REMOVED, UNMEASURED, Comparison, PhaseChange, StrategyChange
from kdiag.format import duration
from kdiag.sanitize import joined, terminal


def render(comparison: Comparison) -> str:
    """The comparison as aligned plain-text tables, ending with the verdict line.

    Names, labels, reasons and warnings come from the report.json files: each is shown through
    kdiag.sanitize.terminal, so a control character in them is an escape, never an action.
    """
    c = comparison
    lines = [f"kdiag compare: {_safe(c.before_label)} -> {_safe(c.after_label)} (regression: slower by more than "
             f"{c.fail_above:g}% and beyond the noise, the sum of both IQRs)", ""]
    rows = [(_safe(s.name), _time(s.before_s, s.before_iqr_s), _time(s.after_s, s.after_iqr_s), _change(s),
             _verdict(s)) for s in c.strategies]
    lines += _columns(("strategy", "before (median ± IQR)", "after", "change", "verdict"), rows)
    outputs = [s for s in c.strategies if s.outputs_before is True and s.outputs_after is False]
    for s in outputs:
        lines.append(f"warning: {_safe(s.name)}: outputs matched the reference before and differ after")
    if c.unmatched:
        lines += ["", "Not matched to any strategy, so not compared:"]
        lines += [f"  {_safe(u)}" for u in c.unmatched]
    phases = [p for p in c.phases if p.before_ms or p.after_ms]  # phases empty in both runs say nothing
    if phases:
        lines += ["", "Phases (ms per call: profiled shares scaled to each run's unprofiled median)", ""]
        rows = [(_safe(f"{p.scenario} / {p.phase}"), f"{p.before_ms:.3g}", f"{p.after_ms:.3g}",
                 f"{p.delta_ms:+.3g} ms" + (f" ({(p.ratio - 1) * 100:+.0f}%)" if p.ratio is not None else ""),
                 _phase_verdict(p)) for p in phases]
        lines += _columns(("scenario / phase", "before ms", "after ms", "change", "verdict"), rows)
    if c.warnings:
        lines += ["", "The two runs differ in setup, so some changes may come from that:"]
        lines += [f"  {_safe(w)}" for w in c.warnings]
    lines.append("")
    lines.append(_verdict_line(c))
    return "\n".join(lines) + "\n"


def _verdict_line(c: Comparison) -> str:
    missing = joined(_safe(name) for name in c.missing)
    if c.regressions:
        names = [r.name if isinstance(r, StrategyChange) else f"{r.scenario} / {r.phase}" for r in c.regressions]
        return (f"REGRESSION: {len(names)} slower by more than {c.fail_above:g}% beyond the noise: "
                + ", ".join(_safe(n) for n in names))
    if c.missing and not c.allow_missing:
        return (f"MISSING: {len(c.missing)} measured before and not after, so not compared: {missing} "
                "(--allow-missing accepts that)")
    if not c.compared:
        return "NOT COMPARED: no strategy was measured in both runs."
    allowed = f" ({missing} missing after: allowed by --allow-missing)" if c.missing else ""
    return f"No regression: nothing slower by more than {c.fail_above:g}% beyond the noise{allowed}."


def _safe(text: str) -> str:
    return terminal(str(text))


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
        return f"not compared ({_safe(s.detail)})"
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
