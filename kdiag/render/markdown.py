"""The report as GitHub-flavoured Markdown, to paste into a GitHub issue.

Plain text, standard library only. It opens with what a maintainer reads in one screen: the
classification, the verdict, the environment in one line, current against expected behaviour, and a
short script that reproduces it with TensorFlow alone. Then the findings in the order to act on
them, each snippet once; then the measurements, folded in `<details>` blocks: the strategies (their
narrow table shown), where predict's time goes, the tracing, the steps beyond one batch, the
environment as TensorFlow's issue template asks for it and the model, how to run kdiag again, the
top functions and the `.prof` files. It lays out the sections of kdiag.views.sections.

Text from the user's files (names, paths, versions, exception text) goes through
kdiag.sanitize: `markdown()` for text, `code_span()` for names shown as code, and fenced literals
inside kdiag's own paragraphs (`render_literals`), so a file can add no link, image, mention,
heading or table to the report. Code lines are at most 78 characters by construction
(kdiag.datamodel.strategies.SNIPPET_WIDTH), so no block scrolls sideways in an issue column.

Local paths are redacted unless the run said --no-redact: the home folder shows as `~`, the
Python install as `<python>`, the model's folder as `<model-dir>`, and the .prof files named
are the redacted copies in `redacted/` (kdiag.datamodel.redaction).

A maintainer reads an issue of a few screens, and GitHub refuses one over 65,536 characters. `render`
keeps report.md under 20,000 characters (ISSUE_LIMIT) by shortening the longest parts first (the
longest tables and lists, then long cells), and says in the text what it left out.
"""

from __future__ import annotations

import dataclasses
import re
from typing import List, Optional, Sequence, Tuple

from kdiag import sanitize
from kdiag.datamodel.redaction import HOME, MODEL_DIR, PYTHON, Redactor, redacted_prof_path
from kdiag.datamodel.report import FINDING_KINDS, Finding, Report
from kdiag.render import repro
from kdiag.version import __version__
from kdiag.views import sections, wording
from kdiag.views.sections import ENVIRONMENT_FIELDS, Cell, Section, Table  # noqa: F401 (ENVIRONMENT_FIELDS: tests)

GITHUB_LIMIT = 65_536
#: What a maintainer reads in an issue: report.md is shortened to this by default, its longest tables
#: first, saying what it left out (report.json and report.html have everything).
ISSUE_LIMIT = 20_000
#: The strategies' narrow table (what fits an issue column) and the full one, folded.
NARROW_HEADER = tuple(c.header for c in sections.STRATEGY_COLUMNS if c.detail == 0)
FULL_HEADER = tuple(c.header for c in sections.STRATEGY_COLUMNS)
#: The full table's columns of statistics (its first folded table); the comparisons make the second.
STATISTICS = ("median", "95% CI", "IQR", "p90", "p99", "n", "first call")


@dataclasses.dataclass(frozen=True)
class Limits:
    """How much of the long parts to show; None shows everything."""

    rows: Optional[int] = None  # rows of every table or list but the findings' evidence and the essential tables
    cell: int = 400  # characters per table cell
    essential: Optional[int] = None  # rows of the essential tables (strategies, environment, model, phases)
    evidence: Optional[int] = None  # lines of each finding's evidence


#: Tried in order until the report fits: the longest tables and lists first, then long cells.
LADDER: Tuple[Limits, ...] = (
    Limits(None, 400),
    Limits(30, 300),
    Limits(20, 200),
    Limits(12, 160),
    Limits(8, 120),
    Limits(5, 120, None, 6),
    Limits(5, 120, None, 4),
    Limits(3, 80, 30, 3),
    Limits(3, 80, 10, 3),
    Limits(3, 80, 3, 2),
)
#: The sections whose tables are cut last: what the issue is about.
ESSENTIAL = ("strategies", "environment", "model", "phases")


def render(report: Report, limit: int = ISSUE_LIMIT, redact: Optional[bool] = None) -> str:
    """The Markdown report, under `limit` characters (never more than GitHub takes in an issue).

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
        if len(text) < limit:
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

    def take(self, items: Sequence, what: Tuple[str, str], kind: str = "rows") -> Tuple[list, str]:
        """The first items within the limit of their kind ("rows", "evidence", "essential"), and a note
        line ("" when nothing was left out). `what`: the noun of one item and what they belong to."""
        limit = getattr(self.limits, kind)
        items = list(items)
        if limit is None or len(items) <= limit:
            return items, ""
        left = len(items) - limit
        noun, whose = what
        self.omitted.append(f"{wording.plural(left, noun)}{' of ' + whose if whose else ''}")
        return items[:limit], f"*… and {left} more (report.json has them all).*"

    def cell(self, cell: Cell, short: bool = False) -> str:
        text = " ".join(str(cell.short if short and cell.short is not None else cell.text).split())
        if len(text) > self.limits.cell:
            text = text[: self.limits.cell - 1] + "…"
            if "long cells" not in self.omitted:
                self.omitted.append("long cells")
        shown = sanitize.code_span(text, table_cell=True) if cell.code else sanitize.markdown(text)
        if cell.suffix:
            shown += " " + sanitize.markdown(cell.suffix)
        if cell.tone == "noisy":
            shown += " \\~"
        if cell.tone in ("bad", "strong") and shown:
            shown = f"**{shown}**"
        elif cell.tone == "muted" and shown:
            shown = f"*{shown}*"
        return shown


def _render(report: Report, limits: Limits, limit: int, redact: bool = False, copies: bool = False) -> str:
    w = _Writer(limits, limit, redact, copies)
    body: List[str] = (_summary(report) + [""] + _findings(report, w) + [""] + _side_by_side(report, w)
                       + _measurements(report, w))
    return "\n".join(_header(report, w) + [""] + body).rstrip("\n") + "\n"


# --- text helpers -------------------------------------------------------------------


def text_escape(text: str) -> str:
    """kdiag's own text for Markdown, its **strong** and `code` marks kept: `<` cannot start raw HTML,
    nor `&` an entity. Text from a file never comes here bare (see `_paragraph`)."""
    return re.sub(r"&(?=#?\w+;)", "&amp;", text).replace("<", "&lt;")


def fence(text: str, lang: str = "") -> List[str]:
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return [ticks + lang, *text.splitlines(), ticks]


def _paragraph(text: str) -> str:
    """A paragraph of kdiag's, on one line: its marks kept, the file-derived literals in it escaped."""
    return sanitize.render_literals(" ".join(text.split()), text_escape, sanitize.markdown, sanitize.code_span)


def _plain(text: str) -> str:
    """Plain text (a finding, a note, a bullet): escaped whole, on one line."""
    return sanitize.markdown(" ".join(text.split()))


def _folded(summary: str, lines: List[str]) -> List[str]:
    """`lines` in a <details> block: GitHub renders the Markdown inside when blank lines set it apart."""
    if not lines:
        return []
    return [f"<details><summary>{text_escape(summary)}</summary>", "", *lines, "", "</details>"]


# --- laying out a section -----------------------------------------------------------


def _section(section: Section, w: _Writer, level: int = 3) -> List[str]:
    lines = [f"{'#' * level} {text_escape(section.title)}", ""] if section.title else []
    for paragraph in section.paragraphs:
        lines += [_paragraph(paragraph), ""]
    for table in section.tables:
        if section.key == "ops":
            table = dataclasses.replace(table, rows=tuple((_node_name(row[0]),) + row[1:] for row in table.rows))
        lines += _table(table, w, ("row", section.title or section.key), essential=section.key in ESSENTIAL) + [""]
    for paragraph in section.after:
        lines += [_paragraph(paragraph), ""]
    if section.bullets:
        shown, more = w.take(section.bullets, ("line", section.title or section.key))
        lines += [f"- {_plain(b)}" for b in shown] + [""] + ([more, ""] if more else [])
    for code in section.code:
        lines += fence(code.text, code.language) + [""]
    for sub in section.subsections:
        lines += _section(sub, w, min(level + 1, 6)) + [""]
    while lines and not lines[-1]:
        lines.pop()
    return lines


#: A graph node's name longer than this is shown by its last path segments in report.md: a node of an
#: LSTM reads "lstm_1/lstm_1_2/while/body/_44/lstm_1/lstm_1_2/while/lstm_cell_1/Sigmoid_2", one word that
#: no issue column can wrap. report.html and report.json show it whole.
NODE_NAME_WIDTH = 32


def _node_name(cell: Cell) -> Cell:
    name = cell.text
    if not cell.code or len(name) <= NODE_NAME_WIDTH or "/" not in name:
        return cell
    parts = name.split("/")
    kept = [parts.pop()]
    while parts and len("…/" + "/".join([parts[-1]] + kept)) <= NODE_NAME_WIDTH:
        kept.insert(0, parts.pop())
    return dataclasses.replace(cell, text="…/" + "/".join(kept))


def _table(table: Table, w: _Writer, what: Tuple[str, str], columns: Optional[Sequence[int]] = None,
           short: bool = False, essential: bool = False) -> List[str]:
    columns = list(range(len(table.columns))) if columns is None else list(columns)
    rows, more = w.take(table.rows, what, "essential" if essential else "rows")
    header = [text_escape(table.columns[i].header).replace("|", "\\|") for i in columns]
    marks = ["---:" if table.columns[i].align == "r" else "---" for i in columns]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(w.cell(row[i], short) for i in columns) + " |" for row in rows]
    if table.caption:
        lines += ["", _paragraph(table.caption)]
    return lines + (["", more] if more else [])


# --- the summary: one screen -------------------------------------------------------------


def _header(report: Report, w: _Writer) -> List[str]:
    lines = [f"# kdiag report: {sanitize.markdown(report.model.name)}", "",  # one line, whatever the name holds
             f"*Why is `model.predict` slow? Measured by kdiag {__version__} on {report.settings.timestamp}: "
             f"{_plain(wording.run_summary(report))}*"]
    if report.incomplete:
        lines += ["", f"> **{wording.INCOMPLETE.replace(': ', ':** ', 1)}"]
    if w.omitted:
        lines += ["", f"> **Shortened** to stay under {w.limit:,} characters, short enough for an issue: left out "
                      f"{', '.join(dict.fromkeys(w.omitted))}. The run's report.json has every figure."]
    return lines


def _summary(report: Report) -> List[str]:
    """Classification, verdict, environment, current and expected behaviour, and the short repro."""
    label, _, rest = wording.classification(report).partition(": ")
    lines = [f"**{label}:** {_plain(rest)}", "", _paragraph(wording.verdict_text(report)), "",
             f"**Environment:** {_plain(wording.environment_line(report))}", "",
             f"**Current behaviour:** {_paragraph(wording.current_behaviour(report))}", "",
             f"**Expected behaviour:** {_paragraph(wording.expected_behaviour(report))}", ""]
    script = repro.short_script(report)
    if script is None:
        return lines + [f"**Reproduce:** {_plain(sections.standalone_repro(report, None, repro.FILE_NAME).paragraphs[0])}"]
    return lines + [f"**Reproduce** with TensorFlow alone ({len(script.splitlines())} lines; `{repro.FILE_NAME}` in "
                    "the run folder does the same with kdiag's timing method, checks the outputs, and says whether "
                    "it reproduced):", "", *fence(script, "python")]


# --- findings ------------------------------------------------------------------------------


def _findings(report: Report, w: _Writer) -> List[str]:
    lines = ["## Findings, in the order to act on them", ""]
    if not report.findings:
        return lines + [wording.NO_FINDINGS, ""]
    headings = dict(FINDING_KINDS)
    repro_code = repro.short_script(report) or ""
    shown = {}  # snippet -> the number of the finding that showed it
    kind = None
    for number, finding in enumerate(report.findings, 1):
        if finding.kind != kind and finding.kind in headings:
            kind = finding.kind
            lines += [f"### {text_escape(headings[kind])}", ""]
        lines += _finding(number, finding, w, shown, repro_code) + [""]
    return lines


def _finding(number: int, finding: Finding, w: _Writer, shown: dict, repro_code: str) -> List[str]:
    meta = f"**{finding.severity}** · `{finding.id}`"
    if wording.finding_meta(finding):
        meta += " · " + _plain(wording.finding_meta(finding))
    lines = [f"#### {number}. {_plain(finding.title)}", "", meta, "", f"**What to do:** {_plain(finding.advice)}"]
    evidence, more = w.take(finding.evidence, ("evidence line", finding.id), "evidence")
    if evidence:
        lines += [""] + _folded(f"Evidence ({len(finding.evidence)})", [f"- {_plain(e)}" for e in evidence]
                                + (["", more] if more else []))
    if not finding.snippet:
        return lines
    if finding.snippet in shown:  # each snippet once
        return lines + ["", f"The code: as in finding {shown[finding.snippet]} above."]
    if finding.kind == "runtime" and finding.snippet.count("\n") > 20:  # a conversion: long, and not the fix
        return lines + ["", f"The code ({finding.snippet.count(chr(10)) + 1} lines): in report.html, the terminal's "
                            "--verbose report and report.json."]
    shown[finding.snippet] = number
    setup, _, call = finding.snippet.rpartition("\n\n")
    body = "\n".join(line for line in setup.splitlines() if line and not line.startswith(("import ", "from ")))
    if body and body in repro_code:  # the short repro runs this set-up already
        return lines + ["", f"The code: the set-up in **Reproduce** above, then {sanitize.code_span(call)}."]
    return lines + ["", *fence(finding.snippet, sections.snippet_language(finding.strategy))]


# --- measurements, folded --------------------------------------------------------------------


def _side_by_side(report: Report, w: _Writer) -> List[str]:
    """Keras 2 and 3, or TensorFlow releases, side by side: what a --keras both or --tf run asked, so
    shown open after the findings, not folded with the measurements."""
    section = sections.side_by_side(report)
    return [] if section is None else _section(section, w, level=2) + [""]


def _measurements(report: Report, w: _Writer) -> List[str]:
    lines = ["## Measurements", ""] + _strategies(sections.strategies(report), w) + [""]
    for build, title in ((sections.phases, None), (sections.tracing, None),
                         (sections.beyond_one_batch, None)):
        section = build(report)
        if section is not None:
            lines += _folded(title or section.title, _section(dataclasses.replace(section, title=""), w)) + [""]
    lines += _folded("Environment (the fields of TensorFlow's issue template) and model",
                     _section(sections.environment(report), w) + [""] + _section(sections.model(report), w)) + [""]
    lines += _folded("Run it again with kdiag", _section(sections.reproduce(report), w) + _redaction_note(w))
    files = sections.profile_files(report, w.redacted_copies)
    if files is not None:
        # The commands name every file; the table of the same paths would only widen the issue column.
        tops = ("*The top functions per phase are in report.html and report.json; every function is in the "
                ".prof files.*") if sections.top_functions(report) is not None else ""
        lines += [""] + _folded(files.title, _section(dataclasses.replace(files, title="", tables=()), w)
                                + (["", tops] if tops else []))
    return lines


def _redaction_note(w: _Writer) -> List[str]:
    if not w.redacted:
        return []
    return ["", f"*Local paths are shown as `{HOME}` (the home folder), `{PYTHON}` (the Python install and its "
                f"packages) and `{MODEL_DIR}` (the model's folder); `kdiag inspect --no-redact` keeps them.*"]


def _strategies(section: Section, w: _Writer) -> List[str]:
    """The narrow table (what fits an issue column: detail 0) shown, the full one and the rest folded."""
    lines = ["### Strategies", ""]
    if section.tables:
        table = section.tables[0]
        narrow = [i for i, c in enumerate(table.columns) if c.detail == 0]
        lines += _table(table, w, ("measured strategy", ""), narrow, short=True, essential=True) + [""]
        lines += [_paragraph(" ".join(section.paragraphs)), ""]
        # In two tables, each as narrow as an issue column: the statistics, then the comparisons.
        first = [i for i, c in enumerate(table.columns) if i == 0 or c.header in STATISTICS]
        second = [0] + [i for i in range(1, len(table.columns)) if i not in first]
        lines += _folded("All statistics: 95% CI, IQR, p90, p99, samples timed, first call, vs fastest, max |diff|",
                         _table(table, w, ("measured strategy", ""), first, essential=True) + [""]
                         + _table(table, w, ("measured strategy", ""), second, essential=True)) + [""]
    lines += [_paragraph(p) for p in section.after]
    for sub in section.subsections:
        lines += _folded(sub.title, _section(dataclasses.replace(sub, title=""), w)) + [""]
    return lines


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
