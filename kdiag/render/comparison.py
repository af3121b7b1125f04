"""`kdiag compare`'s table: a Comparison as plain text (no rich), safe in CI logs."""

from __future__ import annotations

import textwrap
from typing import List, Optional, Sequence

from kdiag.datamodel.comparison import (ADDED, PHASE_MIN_SHARE_OF_TOTAL, REMOVED, UNMEASURED, Comparison, PhaseChange,
                                        StrategyChange)
from kdiag.format import duration
from kdiag.sanitize import clip, joined, terminal


#: `kdiag compare` is read in terminals and CI logs: every line fits this many columns (names and
#: labels from the files are clipped, a long header wraps).
WIDTH = 80


def render(comparison: Comparison, width: int = WIDTH) -> str:
    """The comparison as aligned plain-text tables, `width` columns wide, ending with the verdict line.

    Names, labels, reasons and warnings come from the report.json files: each is shown through
    kdiag.sanitize.terminal, so a control character in them is an escape, never an action.
    """
    c = comparison
    head = (f"kdiag compare: {_safe(c.before_label)} -> {_safe(c.after_label)}. A regression is slower by more "
            f"than {c.fail_above:g}% and beyond the noise (the sum of both IQRs, at least 5 calls a side).")
    lines = textwrap.wrap(head, width, break_on_hyphens=False, break_long_words=True) + [""]
    rows = [(clip(_safe(s.name), 20), _time(s.before_s, s.before_iqr_s), _time(s.after_s, s.after_iqr_s), _change(s),
             _verdict(s)) for s in c.strategies]
    lines += _columns(("strategy", "before ± IQR", "after ± IQR", "change", "verdict"), rows)
    for s in c.strategies:
        if s.status == UNMEASURED:
            lines += textwrap.wrap(f"{_safe(s.name)} not compared: {_safe(s.detail)}", width,
                                   subsequent_indent="  ", break_on_hyphens=False)
    outputs = [s for s in c.strategies if s.outputs_before is True and s.outputs_after is False]
    for s in outputs:
        lines += textwrap.wrap(f"warning: {_safe(s.name)}: outputs matched the reference before and differ after",
                               width, subsequent_indent="  ")
    if c.unmatched:
        lines += ["", "Not matched to any strategy, so not compared:"]
        lines += [line for u in c.unmatched for line in textwrap.wrap(
            _safe(u), width, initial_indent="  ", subsequent_indent="    ", break_on_hyphens=False)]
    phases = [p for p in c.phases if p.before_ms or p.after_ms]  # phases empty in both runs say nothing
    for scenario in dict.fromkeys(p.scenario for p in phases):
        lines += ["", f"Phases of {clip(_safe(scenario), 40)} (ms per call: profiled shares x the unprofiled median)"]
        rows = [(clip(_safe(p.phase), 24), f"{p.before_ms:.3g}", f"{p.after_ms:.3g}", _phase_change(p),
                 _phase_verdict(p, c.fail_above)) for p in phases if p.scenario == scenario]
        lines += _columns(("phase", "before", "after", "change", "verdict"), rows)
    if c.warnings:
        lines += ["", "The two runs differ in setup, so some changes may come from that:"]
        lines += [line for w in c.warnings for line in textwrap.wrap(_safe(w), width, initial_indent="  ",
                                                                     subsequent_indent="    ")]
    lines.append("")
    lines += textwrap.wrap(_verdict_line(c), width, subsequent_indent="  ", break_on_hyphens=False)
    return "\n".join(lines) + "\n"


def _verdict_line(c: Comparison) -> str:
    """The gate's answer, last (wrapped to the width like everything else): names capped at three."""
    missing = joined(_safe(name) for name in c.missing)
    if c.regressions:
        names = [r.name if isinstance(r, StrategyChange) else f"{r.scenario} / {r.phase}" for r in c.regressions]
        return (f"REGRESSION: {len(names)} slower by more than {c.fail_above:g}% beyond the noise: "
                + joined((_safe(n) for n in names), each=40))
    if c.missing and not c.allow_missing:
        return (f"MISSING: {len(c.missing)} measured before and not after, so not compared: {missing} "
                "(--allow-missing accepts that)")
    if not c.compared:
        return "NOT COMPARED: no strategy was measured in both runs."
    allowed = f" ({missing} missing after: allowed by --allow-missing)" if c.missing else ""
    return f"No regression: nothing slower by more than {c.fail_above:g}% beyond the noise{allowed}."


def verdict_of(text: str) -> str:
    """The verdict of a rendered comparison, its wrapped lines joined: what follows the last blank line."""
    return " ".join(line.strip() for line in text.rstrip("\n").split("\n\n")[-1].splitlines())


def _safe(text: str) -> str:
    return terminal(str(text))


def _time(median: Optional[float], iqr: Optional[float]) -> str:
    if median is None:
        return "—"
    return f"{duration(median)} ±{duration(iqr or 0.0)}"


def _change(s: StrategyChange) -> str:
    return "—" if s.ratio is None else _percent(s.percent)


def _percent(value: float) -> str:
    """+3.8%, +173%, -99.7%: three significant figures at most."""
    return f"{value:+.1f}%" if abs(value) < 100 else f"{value:+,.0f}%"


def _verdict(s: StrategyChange) -> str:
    if s.status == ADDED:
        return "only after"
    if s.status == REMOVED:
        return "only before"
    if s.status == UNMEASURED:
        return "not compared"
    if s.regression:
        return "REGRESSION"
    if not s.judged:
        return "n<5: no verdict"
    if not s.beyond_noise:
        return "within noise"
    return "faster" if s.ratio < 1 else "slower, < threshold"


def _phase_change(p: PhaseChange) -> str:
    return f"{p.delta_ms:+.3g} ms" + (f" ({_percent((p.ratio - 1) * 100)})" if p.ratio is not None else "")


def _phase_verdict(p: PhaseChange, fail_above: float) -> str:
    """Why a phase is or is not a regression: a large percentage of a phase too small to matter is
    "slower, tiny" (under PHASE_MIN_SHARE_OF_TOTAL of the scenario), not "below the threshold"."""
    if p.regression:
        return "REGRESSION"
    if p.noise_ms is None:
        return "noise unknown"
    if not p.beyond_noise:
        return "within noise"
    if p.delta_ms < 0:
        return "faster"
    if p.ratio is None or (p.ratio - 1) * 100 > fail_above:
        return f"slower, tiny (<{PHASE_MIN_SHARE_OF_TOTAL:.0%} of total)"
    return "slower, < threshold"


def _columns(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()

    return [line(header), line(["-" * w for w in widths]), *[line(r) for r in rows]]
