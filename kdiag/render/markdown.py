"""The report as GitHub-flavoured Markdown, to paste into a GitHub issue.

Plain text, standard library only. It lays out the sections of kdiag.views.sections, in the order a
maintainer asks for them: the command, the environment (the fields of TensorFlow's issue template),
the model, then the measurements (a narrow table that fits an issue column, the full one folded in
a `<details>` block), the phases, the findings, the top functions (folded too), how to reproduce,
the standalone code to reproduce (repro.py, folded), and the `.prof` files.

Local paths are redacted unless the run said --no-redact: the home folder shows as `~`, the
Python install as `<python>`, the model's folder as `<model-dir>`, and the .prof files named
are the redacted copies in `redacted/` (kdiag.datamodel.redaction).

GitHub refuses an issue body over 65,536 characters. `render` shortens the longest parts
first (top functions, then the raw tables and lists, then long cells) until the text fits,
and says in the text what it left out.
"""

from __future__ import annotations

import dataclasses
import re
from typing import List, Optional, Sequence, Tuple

from kdiag.datamodel.redaction import HOME, MODEL_DIR, PYTHON, Redactor, redacted_prof_path
from kdiag.datamodel.report import Finding, Report
from kdiag.render import repro
from kdiag.version import __version__
from kdiag.views import sections, wording
from kdiag.views.sections import ENVIRONMENT_FIELDS, Cell, Section, Table  # noqa: F401 (ENVIRONMENT_FIELDS: tests)

GITHUB_LIMIT = 65_536
#: The strategies' narrow table (what fits an issue column) and the full one, folded.
NARROW_HEADER = tuple(c.header for c in sections.STRATEGY_COLUMNS if c.detail == 0)
FULL_HEADER = tuple(c.header for c in sections.STRATEGY_COLUMNS)


@dataclasses.dataclass(frozen=True)
class Limits:
    """How much of the long parts to show; None shows everything."""

    top_functions: Optional[int] = None  # rows per phase in each top-functions table; 0 leaves them out
    rows: Optional[int] = None  # rows of every other table or list
    cell: int = 400  # characters per table cell


#: Tried in order until the report fits: top functions go first, then raw lists, then long cells.
LADDER: Tuple[Limits, ...] = (
    Limits(None, None, 400),
    Limits(10, None, 400),
    Limits(3, None, 300),
    Limits(0, None, 300),
    Limits(0, 100, 200),
    Limits(0, 30, 160),
    Limits(0, 10, 120),
    Limits(0, 3, 80),
)


def render(report: Report, limit: int = GITHUB_LIMIT, redact: Optional[bool] = None) -> str:
    """The Markdown report, at most `limit` characters.

    redact: local paths as ~, <python> and <model-dir> (None: as the run's settings say).
    """
    if redact is None:
        redact = report.settings.redact_paths
    # A run with redaction off wrote no redacted .prof copies to point at; a report saved before
    # kdiag recorded its local paths has nothing to redact, and report.md does not claim otherwise.
    redact = redact and bool(Redactor.for_report(report).replacements)
    copies = redact and report.settings.redact_paths
    if redact:
        report = redacted(report)
    text = ""
    for limits in LADDER:
        text = _render(report, limits, limit, redact, copies)
        if len(text) <= limit:
            return text
    return hard_cut(text, limit)


def redacted(report: Report) -> Report:
    """The report as report.md shows it by default: no local paths, and the .prof files named are
    the redacted copies that a run with redaction on wrote in `redacted/`."""
    if report.settings.redact_paths:
        profiles = [dataclasses.replace(p, prof_path=redacted_prof_path(p.prof_path) if p.prof_path else "",
                                        cold_prof_path=(redacted_prof_path(p.cold_prof_path)
                                                        if p.cold_prof_path else ""))
                    for p in report.profiles]
        report = dataclasses.replace(report, profiles=profiles)
    return Redactor.for_report(report).report(report)


class _Writer:
    """Applies the limits, and remembers what they left out."""

    def __init__(self, limits: Limits, limit: int, redacted: bool = False, redacted_copies: bool = False):
        self.limits = limits
        self.limit = limit
        self.redacted = redacted  # local paths are shown as ~, <python>, <model-dir>
        self.redacted_copies = redacted_copies  # the .prof files named are the copies in redacted/
        self.omitted: List[str] = []

    def take(self, items: Sequence, what: str, limit: Optional[int] = None) -> Tuple[list, str]:
        """The first items within the limit, and a note line ("" when nothing was left out)."""
        limit = self.limits.rows if limit is None else limit
        items = list(items)
        if limit is None or len(items) <= limit:
            return items, ""
        left = len(items) - limit
        self.omitted.append(f"{left} {what}")
        return items[:limit], self.more(f"{left} more {what}", "report.json has them all")

    def more(self, what: str, where: str) -> str:
        return f"*… and {what}, left out to keep this report under GitHub's {self.limit:,}-character limit; {where}.*"

    def cell(self, cell: Cell, short: bool = False) -> str:
        text = " ".join(str(cell.short if short and cell.short is not None else cell.text).split())
        if len(text) > self.limits.cell:
            text = text[: self.limits.cell - 1] + "…"
            if "long cells" not in self.omitted:
                self.omitted.append("long cells")
        shown = _code_span(text) if cell.code else text_escape(text)
        if cell.suffix:
            shown += " " + text_escape(cell.suffix)
        if cell.tone == "noisy":
            shown += " ~"
        if cell.tone in ("bad", "strong") and shown:
            shown = f"**{shown}**"
        elif cell.tone == "muted" and shown:
            shown = f"*{shown}*"
        return shown.replace("|", "\\|")


def _render(report: Report, limits: Limits, limit: int, redact: bool = False, copies: bool = False) -> str:
    w = _Writer(limits, limit, redact, copies)
    body: List[str] = [*_command(report, w), ""]
    for section in (sections.environment(report), sections.model(report)):
        body += _section(section, w) + [""]
    for build in sections.BEFORE_FINDINGS:
        section = build(report)
        if section is not None:
            body += (_strategies(section, w) if section.key == "strategies" else _section(section, w)) + [""]
    body += _findings(report, w) + [""]
    for lines in (_top_functions(report, w), _section(sections.reproduce(report), w), _standalone_repro(report, w),
                  _profile_files(report, w)):
        if lines:
            body += lines + [""]
    return "\n".join(_header(report, w) + [""] + body).rstrip("\n") + "\n"


# --- text helpers -------------------------------------------------------------------


def text_escape(text: str) -> str:
    """Free text for Markdown: `<` cannot start raw HTML, nor `&` an entity."""
    return re.sub(r"&(?=#?\w+;)", "&amp;", text).replace("<", "&lt;")


def _code_span(text: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def fence(text: str, lang: str = "") -> List[str]:
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return [ticks + lang, *text.splitlines(), ticks]


def _paragraph(text: str) -> str:
    return text_escape(" ".join(text.split()))


# --- laying out a section -----------------------------------------------------------


def _section(section: Section, w: _Writer, level: int = 2) -> List[str]:
    lines = [f"{'#' * level} {text_escape(section.title)}", ""] if section.title else []
    for paragraph in section.paragraphs:
        lines += [_paragraph(paragraph), ""]
    for table in section.tables:
        lines += _table(table, w, f"rows of {section.title or 'the table'}") + [""]
    for paragraph in section.after:
        lines += [_paragraph(paragraph), ""]
    if section.bullets:
        shown, more = w.take(section.bullets, f"{section.title.lower() or 'lines'}")
        lines += [f"- {_paragraph(b)}" for b in shown] + [""] + ([more, ""] if more else [])
    for code in section.code:
        lines += fence(code.text, code.language) + [""]
    for sub in section.subsections:
        lines += _section(sub, w, level + 1) + [""]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _table(table: Table, w: _Writer, what: str, columns: Optional[Sequence[int]] = None,
           short: bool = False) -> List[str]:
    columns = list(range(len(table.columns))) if columns is None else list(columns)
    rows, more = w.take(table.rows, what)
    header = [text_escape(table.columns[i].header).replace("|", "\\|") for i in columns]
    marks = ["---:" if table.columns[i].align == "r" else "---" for i in columns]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(w.cell(row[i], short) for i in columns) + " |" for row in rows]
    if table.caption:
        lines += ["", _paragraph(table.caption)]
    return lines + (["", more] if more else [])


# --- sections of their own ----------------------------------------------------------


def _header(report: Report, w: _Writer) -> List[str]:
    lines = [f"# kdiag report: {text_escape(report.model.name)}", "",
             f"Why is `model.predict` slow? Measured by kdiag {__version__} on {report.settings.timestamp}: "
             + text_escape(wording.run_summary(report))]
    headline = wording.headline(report)
    if headline is not None:
        versus = f", {headline.versus}" if headline.versus else ""
        lines += ["", f"**Fastest with matching outputs:** {text_escape(headline.best)}, {headline.time} per "
                      f"call{text_escape(versus)}."]
    if report.incomplete:
        lines += ["", f"> **{wording.INCOMPLETE.replace(': ', ':** ', 1)}"]
    if w.omitted:
        lines += ["", f"> **Shortened** to stay under GitHub's {w.limit:,}-character limit for an issue: left out "
                      f"{', '.join(w.omitted)}. The run's report.json has every figure."]
    return lines


def _command(report: Report, w: _Writer) -> List[str]:
    lines = ["## Command", "", *fence(report.settings.command, "sh")]
    if w.redacted:
        lines += ["", f"*Local paths are shown as `{HOME}` (the home folder), `{PYTHON}` (the Python install and "
                      f"its packages) and `{MODEL_DIR}` (the model's folder); `kdiag inspect --no-redact` keeps "
                      "them.*"]
    return lines


def _strategies(section: Section, w: _Writer) -> List[str]:
    """The narrow table (what fits an issue column: detail 0), and the full one folded."""
    lines = ["## Strategies", "", *[_paragraph(p) for p in section.paragraphs], ""]
    if section.tables:
        table = section.tables[0]
        narrow = [i for i, c in enumerate(table.columns) if c.detail == 0]
        # Four short columns fit GitHub's issue column (~780 px) without wrapping a cell.
        lines += _table(table, w, "measured strategies", narrow, short=True)
        lines += ["", "<details><summary>All statistics: IQR, p90, p99, calls timed, first call, vs fastest, "
                      "max |diff|</summary>", "", *_table(table, w, "measured strategies"), "", "</details>"]
    lines += [_paragraph(p) for p in section.after]
    for sub in section.subsections:
        lines += [""] + _section(sub, w, 3)
    return lines


def _findings(report: Report, w: _Writer) -> List[str]:
    lines = ["## Findings", ""]
    if not report.findings:
        return lines + [wording.NO_FINDINGS]
    for number, finding in enumerate(report.findings, 1):
        lines += _finding(number, finding, w) + [""]
    return lines[:-1]


def _finding(number: int, finding: Finding, w: _Writer) -> List[str]:
    meta = f"**{finding.severity}** · `{finding.id}`"
    if wording.finding_meta(finding):
        meta += " · " + text_escape(wording.finding_meta(finding))
    lines = [f"### {number}. {text_escape(finding.title)}", "", meta, ""]
    evidence, more = w.take(finding.evidence, f"evidence lines of {finding.id}")
    lines += [f"- {_paragraph(e)}" for e in evidence]
    if more:
        lines += ["", more]
    lines += ["", f"**What to do:** {_paragraph(finding.advice)}"]
    if finding.snippet:
        lines += ["", *fence(finding.snippet, sections.snippet_language(finding.strategy))]
    return lines


def _top_functions(report: Report, w: _Writer) -> List[str]:
    full = sections.top_functions(report)
    if full is None:
        return []
    lines = [f"## {full.title}", ""]
    if w.limits.top_functions == 0:
        count = sum(len(s.tables[0].rows) for s in full.subsections)
        w.omitted.append(f"the top-functions tables ({count} rows)")
        return lines + [f"*Left out ({count} rows) to keep this report under GitHub's {w.limit:,}-character "
                        "limit: open the .prof files below, or see report.json.*"]
    shown = sections.top_functions(report, per_phase=w.limits.top_functions)
    lines += [_paragraph(full.paragraphs[0]), ""]
    for part, whole in zip(shown.subsections, full.subsections):
        left = len(whole.tables[0].rows) - len(part.tables[0].rows)
        lines += [f"<details><summary>{text_escape(part.title)}</summary>", "",
                  *_table(part.tables[0], _Writer(Limits(cell=w.limits.cell), w.limit), "functions")]
        if left:
            w.omitted.append(f"{left} top-function rows of {part.title}")
            lines += ["", w.more(f"{left} more functions", "the .prof file has them all")]
        lines += ["", "</details>", ""]
    return lines[:-1]


def _standalone_repro(report: Report, w: _Writer) -> List[str]:
    """repro.py, folded: what a maintainer runs with TensorFlow alone, without kdiag or the user's weights."""
    section = sections.standalone_repro(report, None, repro.FILE_NAME)
    lines = _section(section, w)
    if repro.unavailable_reason(report) is not None:
        return lines
    if w.limits.rows is not None:  # the report is being cut to fit: the script stays in the run folder
        w.omitted.append(f"the script itself ({repro.FILE_NAME} is in the run folder)")
        return lines + ["", f"*Left out to keep this report under GitHub's {w.limit:,}-character limit: attach "
                            f"{repro.FILE_NAME} from the run folder.*"]
    return lines + ["", f"<details><summary>standalone code to reproduce ({repro.FILE_NAME})</summary>", "",
                    *fence(repro.render(report), "python"), "", "</details>"]


def _profile_files(report: Report, w: _Writer) -> List[str]:
    section = sections.profile_files(report, w.redacted_copies)
    return _section(section, w) if section is not None else []


# --- the last resort ---------------------------------------------------------------------


def hard_cut(text: str, limit: int) -> str:
    """Cut at a line boundary so that the text, closed properly and with a note, fits in `limit`."""
    note = (f"\n*Cut here to stay under GitHub's {limit:,}-character limit; the run's report.json has "
            "everything.*\n")
    budget = max(0, limit - len(note) - 64)  # room for closing a fence and a <details>
    cut = text[:budget]
    if "\n" in cut:
        cut = cut[: cut.rindex("\n") + 1]
    closing = ""
    fence_open = None
    for line in cut.splitlines():
        stripped = line.strip()
        match = re.match(r"^(`{3,})", stripped)
        if not match:
            continue
        if fence_open is None:
            fence_open = match.group(1)
        elif not stripped.strip("`") and len(stripped) >= len(fence_open):
            fence_open = None
    if fence_open is not None:
        closing += fence_open + "\n"
    if cut.count("<details>") > cut.count("</details>"):
        closing += "\n</details>\n"
    return (cut + closing + note)[:limit]
