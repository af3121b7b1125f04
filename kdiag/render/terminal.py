"""The rich terminal report, and progress on stderr. The only module that imports rich.

It lays out the sections of kdiag.views.sections, made for an 80-column terminal, the default of
most: a table never cuts a cell; columns of lower priority (p99, first call, vs fastest) are left
out when they do not fit, and `verbose` stacks them in a second table instead. The default report
is short (about 60 lines on a small model: the classification, the strategies, predict's main
phases, the findings' advice); `verbose` adds the environment, the model, every phase, the tracing,
the findings' evidence, the top functions and the steps beyond one batch. The last line is the
verdict (kdiag.views.verdict), after the line that says where the run was saved.

Code is never wrapped: a snippet is printed flush left between two comment lines, with rich's soft
wrap, so a terminal folds a long line on screen and copies it whole, and what a user selects runs
as pasted (tests/test_terminal_snippets.py selects and runs it at 60, 80 and 100 columns).

Model names, file names, layer names and error messages come from the user's files, so no
string is ever read as rich markup: every console here has markup=False, and titles (which
rich parses as markup whatever the console says) are Text objects.
"""

from __future__ import annotations

import dataclasses
import io
import re
import shlex
import sys
import textwrap
import threading
import time
from typing import Callable, List, Optional, Sequence

from rich import box
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from kdiag import sanitize
from kdiag.datamodel.progress import ProgressUpdate
from kdiag.datamodel.report import FINDING_KINDS, Report
from kdiag.views import sections, wording
from kdiag.views.sections import Cell, Section
#: A finding's snippet longer than this is not printed unless verbose (report.md has it): cut, it would
#: not run; whole, it would push the findings off the screen.
SNIPPET_LINES = 14
#: Notes shown unless verbose.
NOTES_SHOWN = 4


def render(report: Report, width: int = 80, color: bool = False, verbose: bool = False, saved: str = "") -> str:
    """The report as text, `width` columns wide: for a pipe, a file and tests. No line ends in a space.
    `saved`: the run folder it was saved in (the line before the verdict says so)."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system="standard" if color else None, markup=False,
                      force_terminal=color, highlight=False, emoji=False)
    print_report(report, console=console, verbose=verbose, saved=saved)
    # rich pads table cells and rules' ends with spaces: invisible on a terminal, noise in a file.
    return "\n".join(line.rstrip() for line in buffer.getvalue().split("\n"))


def print_report(report: Report, console: Optional[Console] = None, verbose: bool = False, saved: str = "",
                 file=None) -> None:
    """Print the report; `saved`: the run folder holding its files (said before the verdict).

    Without a console: on a terminal, in colour and as wide as it is; to a file or a pipe, as
    `render` lays it out (COLUMNS wide, else 80; no trailing spaces).
    """
    if console is None:
        console = Console(file=file, highlight=False, markup=False, emoji=False)
        if not console.is_terminal:
            console.file.write(render(report, width=console.width, verbose=verbose, saved=saved))
            return
    report = scrubbed(report)
    for part in report_parts(report, console.width, verbose):
        if isinstance(part, CodeBlock):  # never wrapped: the terminal folds it on screen and copies it whole
            console.print(part.text, soft_wrap=True)
        else:
            console.print(part)
    if saved:
        console.print(Text(saved_line(visible(saved)), style="dim"), soft_wrap=True)
    console.print(Text(verdict(report, console.width), style="bold"), soft_wrap=True)


def visible(text: str) -> str:
    """Control characters but tab and newline shown as escapes (kdiag.sanitize.terminal): an ESC
    from a file name could recolour, move the cursor or retitle the user's terminal."""
    return sanitize.terminal(text, multiline=True)


def scrubbed(value):
    """The Report (or any part of it) with every string passed through `visible`."""
    if isinstance(value, str):
        return visible(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: scrubbed(getattr(value, f.name))
                                             for f in dataclasses.fields(value) if f.init})
    if isinstance(value, (list, tuple)):
        return type(value)(scrubbed(v) for v in value)
    return value


# --- the verdict ----------------------------------------------------------------------------

#: The verdict line (kdiag.views.wording), the report's last line.
verdict = wording.verdict_line


def saved_line(folder: str) -> str:
    """Where the run was saved, repeated above the verdict so that it is on the screen at the end."""
    from kdiag.render import FORMATS

    files = ", ".join(f.file_name for f in FORMATS.values() if f.file_name)
    return f"Saved in {folder}/ ({files}): kdiag view {shlex.quote(folder)} opens the page"


@dataclasses.dataclass(frozen=True)
class CodeBlock:
    """Code to print flush left and never wrap, between comment lines a user may copy with it."""

    text: Text


# --- laying out the sections -----------------------------------------------------------------


def report_parts(report: Report, width: int = 80, verbose: bool = False):
    """The report's renderables in order. `verbose` shows every section and column; by default the
    sections of detail 0 (kdiag.views.sections) and the columns that fit."""
    detail = 2 if verbose else 1
    yield from _header(report, verbose)
    yield Text(wording.classification(report), style="bold")
    side = sections.side_by_side(report)
    if side is not None:
        yield from _section(side.title, _parts(side, width, detail, verbose))
    strategies = sections.strategies(report)
    yield from _section("Strategies", _strategies(strategies, width, verbose))
    phases = sections.phases(report, brief=not verbose)
    if phases is not None:
        yield from _section(phases.title, _phases(phases, report, width, verbose))
        if verbose:
            for part in (sections.tracing(report), sections.top_functions(report, per_phase=2, min_share=0.05)):
                if part is not None:
                    yield from _section(part.title, _parts(part, width, detail, verbose))
    if report.findings:
        yield from _section(f"Findings, in the order to act on them{'' if verbose else ' (evidence: --verbose)'}",
                            _findings(report, verbose))
    subsections = {s.key: s for s in strategies.subsections}
    if "not-measured" in subsections:
        rows = subsections["not-measured"].tables[0].rows
        yield from _section("Not measured", [_bullets([f"{r[0].text}: {r[1].text}" for r in rows])])
    beyond = sections.beyond_one_batch(report) if verbose else None  # by default, the findings say what matters
    if beyond is not None:
        yield from _section(beyond.title, _parts(beyond, width, detail, verbose))
    if "notes" in subsections:
        yield from _notes(list(subsections["notes"].bullets), width, verbose)
    files = sections.profile_files(report)
    if verbose and files is not None and files.tables:  # by default the line saying where the run was saved names them
        yield from _section(files.title, _parts(files, width, 2, verbose))
    yield Text("")


_RERUN = re.compile(r"(?:^|\s)((?:Rerun|rerun|re-run|Re-run) with --[^.;]*[.;]?)")


def _clipped(text: str, width: int, lines: int = 2) -> str:
    """`text` as at most `lines` lines of `width` (wrapped greedily at spaces, as rich does), … when cut.
    A "Rerun with --time-limit 90 ..." in it is kept whole after the cut: the value is the point."""
    rerun = _RERUN.search(text)
    if rerun and len(textwrap.wrap(text, width, break_on_hyphens=False)) > lines:
        rest = (text[:rerun.start()] + text[rerun.end():]).strip()
        return _clipped(rest, width, lines) + " " + rerun.group(1)
    wrapped = textwrap.wrap(text, width, break_on_hyphens=False)
    if len(wrapped) <= lines:
        return text
    kept = wrapped[:lines]
    while len(kept[-1]) + 2 > width and " " in kept[-1]:
        kept[-1] = kept[-1].rsplit(" ", 1)[0]
    return " ".join(kept) + " …"


def _section(title: str, parts: Sequence[RenderableType]):
    yield Text("")
    yield Rule(Text(title, style="bold"), align="left", style="dim")
    yield from parts


def _plain(text: str) -> str:
    """A paragraph's **strong** and `code` marks dropped: the terminal shows the words (file-derived
    literals in it as they are: the Report was passed through `visible` already)."""
    def own(held: str) -> str:
        return _CODE.sub(r"\1", _STRONG.sub(r"\1", held))

    return sanitize.render_literals(text, own, str, str)


_STRONG = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`\n]+)`")


def _parts(section: Section, width: int, detail: int, verbose: bool, title: str = "") -> List[RenderableType]:
    """A section laid out in order: paragraphs, tables, what follows them, bullets, code, sub-sections."""
    parts: List[RenderableType] = []
    if title:
        parts += [Text(""), Text(title, style="bold")]
    parts += [Text(_plain(p)) for p in section.paragraphs]
    for table in section.tables:
        parts += _table(table, width, detail, verbose)
    parts += [Text(_plain(p)) for p in section.after]
    if section.bullets:
        parts.append(_bullets(list(section.bullets)))
    parts += [part for code in section.code for part in code_block(code.text, "the commands")]
    for sub in section.subsections:
        if sub.detail <= detail:
            parts += _parts(sub, width, detail, verbose, sub.title)
    return parts


_TONES = {"good": "green", "bad": "bold red", "strong": "bold", "muted": "dim"}


def _cell(cell: Cell, short: bool) -> Text:
    text = cell.short if short and cell.short is not None else cell.text
    if cell.suffix:
        text += " " + cell.suffix
    if cell.tone == "noisy":
        text = "~ " + text  # the mark first: rich drops a cell's trailing spaces, which would unalign the units
    return Text(text, style=_TONES.get(cell.tone, ""))


def _table(table: sections.Table, width: int, detail: int, verbose: bool, bars: bool = False,
           key: Optional[int] = 0) -> List[RenderableType]:
    """The columns of `detail` or less, fitted to `width` (see `_fitted`); a key-value table unhedaded."""
    short = not verbose
    picked = [i for i, c in enumerate(table.columns) if c.detail <= detail]
    columns = [_Column(table.columns[i].header, [_cell(row[i], short) for row in table.rows],
                       "right" if table.columns[i].align == "r" else "left", table.columns[i].drop,
                       table.columns[i].wraps) for i in picked]
    if bars:
        for i, column in zip(picked, columns):
            if any(row[i].bar is not None for row in table.rows):
                column.cells = [Text(f"{_bar(row[i].bar)} {row[i].text:>4}") if row[i].bar is not None else
                                _cell(row[i], short) for row in table.rows]
    build = _numeric_table if table.columns[0].header != "field" else _kv_columns
    tables = _fitted(columns[0], columns[1:], width, verbose, build)
    return [*tables] + ([Text(_plain(table.caption), style="dim")] if table.caption else [])


def _kv_columns(columns: List["_Column"]) -> Table:
    table = _kv_table()
    for row in zip(*(c.cells for c in columns)):
        table.add_row(*row)
    return table


def _header(report: Report, verbose: bool):
    model, env = report.model, report.environment
    params = f" · {model.parameters:,} parameters" if model.parameters is not None else ""
    yield Text.assemble(("kdiag inspect", "bold"), f" · {model.name} ({model.format}) · batch {model.batch_size}"
                        + params)
    keras = f"tf-keras {env.keras}" if env.legacy_keras else f"Keras {env.keras}"
    gpus = "; ".join(env.gpu_models) or ", ".join(env.gpus) or "no GPU"
    yield Text(f"TensorFlow {env.tensorflow} · {keras} · Python {env.python} · {env.cpu_model}, "
               f"{env.cpu_cores} cores · {gpus}", style="dim")
    if report.incomplete:
        yield Text(wording.INCOMPLETE, style="bold yellow")
    if verbose:
        for section in (sections.environment(report), sections.model(report)):
            yield from _section(section.title, _parts(section, 10_000, 2, True))


def _kv_table(title: Optional[str] = None) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    return table


@dataclasses.dataclass
class _Column:
    """A table column: cells in row order, and how readily it is left out (0: never)."""

    header: str
    cells: list
    justify: str = "right"
    drop_order: int = 0
    wraps: bool = False  # only names may wrap; a figure is never cut


def _fitted(key: _Column, columns: List[_Column], width: int, verbose: bool,
            build: Callable[[List[_Column]], Table]) -> List[Table]:
    """Tables holding `key` and as many of `columns` as fit `width`, by rich's own measure.

    Columns are left out in drop order until the table fits; verbose puts what was left out
    in further tables (with `key` again) rather than losing it.
    """
    def fits(cols):
        return natural_width(build([key] + cols)) <= width

    kept = list(columns)
    for column in sorted((c for c in columns if c.drop_order), key=lambda c: -c.drop_order):
        if fits(kept):
            break
        kept.remove(column)
    tables: List[RenderableType] = [build([key] + kept)]
    left = [c for c in columns if c not in kept]
    if verbose and left:
        for column in left:
            column.drop_order = 1  # in the stacked table, nothing is optional: it is all that is left
        tables += [Text("")] + _fitted(key, left, width, verbose, build)
    return tables


def natural_width(renderable: RenderableType) -> int:
    """The columns `renderable` takes when nothing in it is wrapped or cut."""
    console = Console(width=100_000, file=io.StringIO(), markup=False)
    # rich clamps a measure to the width it is given: measure unclamped, compare with the real one.
    return console.measure(renderable, options=console.options.update_width(100_000)).maximum


def _numeric_table(columns: List[_Column], title: str = "") -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title=title or None,
                  title_justify="left")
    for column in columns:
        header = column.header if column.wraps or len(column.header) <= 12 else _stacked(column.header)
        table.add_column(header, justify=column.justify, no_wrap=not column.wraps,
                         overflow="fold" if column.wraps else "ellipsis")
    for row in zip(*(c.cells for c in columns)):
        table.add_row(*row)
    return table


def _stacked(header: str) -> str:
    """A long header of figures in short lines: "predict (compiled) ms/call" as predict / (compiled) / ms/call,
    "compile() Δ ms/call" as compile() Δ / ms/call (a column of figures is as wide as its widest line)."""
    head, _, unit = header.replace(" (", "\n(").rpartition(" ")
    return f"{head}\n{unit}" if head else header


def _strategies(section: Section, width: int, verbose: bool) -> List[RenderableType]:
    if not section.tables:
        return [Text(_plain(p)) for p in section.after]
    table = section.tables[0]
    tables = _table(table, width, 2 if verbose else 1, verbose)
    shown = {c.header for t in tables if isinstance(t, Table) for c in t.columns}
    left = [c.header for c in table.columns if c.detail <= (2 if verbose else 1)
            and c.header.replace(" ", "\n") not in shown and c.header not in shown]
    caption = " ".join(_plain(p) for p in section.paragraphs) if verbose else section.caption
    if left:
        caption += f" · also: {', '.join(left)} (--verbose)"
    return [*tables, Text(caption, style="dim")]


def _phases(section: Section, report: Report, width: int, verbose: bool) -> List[RenderableType]:
    """The phase table, with share bars where they fit; the caption below it."""
    detail = 2 if verbose else 1
    tables = None
    for bars in (True, False):  # the share bars only where they fit
        tables = _table(section.tables[0], width, detail, verbose, bars=bars)
        if not bars or (len(tables) == 1 and natural_width(tables[0]) <= width):
            break
    after = ([Text(_plain(p), style="dim") for p in section.paragraphs + section.after] if verbose
             else [Text(section.caption, style="dim")])
    subs = [p for sub in section.subsections if sub.detail <= detail for p in _parts(sub, width, detail, verbose,
                                                                                     sub.title)]
    return [*tables, *after, *subs]


def _bar(share: float, width: int = 8) -> str:
    filled = int(round(share * width))
    return "█" * filled + "·" * (width - filled)


def _findings(report: Report, verbose: bool) -> List[RenderableType]:
    """Each finding under the heading of its kind (kdiag.datamodel.report.FINDING_KINDS), numbered as in
    report.md; its snippet after it, flush left and never wrapped."""
    parts: List[RenderableType] = []
    headings = dict(FINDING_KINDS)
    shown_snippets = set()
    kind = None
    style = {"high": "bold red", "medium": "bold yellow"}
    for number, finding in enumerate(report.findings, 1):
        if finding.kind != kind and finding.kind in headings:
            gap = kind is not None and not (isinstance(parts[-1], Text) and not parts[-1].plain)  # one blank line
            parts += ([Text("")] if gap else []) + [Text(headings[finding.kind], style="underline")]
            kind = finding.kind
        body: List[RenderableType] = [Text.assemble((f"[{finding.severity}] ", style.get(finding.severity, "bold")),
                                                    (finding.title, "bold"))]
        if verbose:
            meta = wording.finding_meta(finding)
            body.append(_bullets(finding.evidence + ([meta[0].upper() + meta[1:] + "."] if meta else []), mark="·",
                                 style="dim"))
        # Unless verbose, the advice of the top finding and of those that matter (a low finding's
        # title says it); report.md has every one.
        if verbose or number == 1 or finding.severity in ("high", "medium"):
            body.append(Text(finding.advice))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        grid.add_column(overflow="fold")
        grid.add_row(Text(f"{number}.", style="bold"), Group(*body))
        parts.append(grid)
        # The same snippet twice says nothing new; unless verbose, the first one only.
        if finding.snippet and finding.snippet not in shown_snippets and (verbose or not shown_snippets):
            shown_snippets.add(finding.snippet)
            lines = finding.snippet.count("\n") + 1
            if verbose or lines <= SNIPPET_LINES:
                parts += code_block(finding.snippet, f"{number}. {finding.strategy or finding.id}")
            else:  # a cut snippet would not run: say where the whole one is
                parts.append(Padding(Text(f"The code for {number}. ({lines} lines) is in report.md and report.html, "
                                          "or here with --verbose.", style="dim"), (0, 0, 0, 3)))
    return parts


#: The comment lines around printed code: Python and shell comments alike, so that selecting them
#: with the code does no harm (tests find the code between them).
CODE_START = "# --- code for {what}: paste it as it is ---"
CODE_END = "# --- end of code ---"


def code_block(code: str, what: str) -> List[RenderableType]:
    """Code flush left between its comment lines, as CodeBlocks (printed with soft wrap: never broken)."""
    return [Text(""), CodeBlock(Text(CODE_START.format(what=what), style="dim")), CodeBlock(Text(code, style="cyan")),
            CodeBlock(Text(CODE_END, style="dim")), Text("")]


def _bullets(lines: Sequence[str], mark: str = "-", style: str = "") -> Table:
    """One item per line, wrapped under its own start (a hanging indent)."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for line in lines:
        grid.add_row(Text(mark, style=style), Text(line, style=style))
    return grid


def _notes(notes: List[str], width: int, verbose: bool):
    # Unless verbose, a few notes of two lines at most: TensorFlow's own warnings run long.
    shown = notes if verbose else [_clipped(n, width - 2) for n in notes[:NOTES_SHOWN]]
    if len(notes) > len(shown):
        shown.append(f"{len(notes) - len(shown)} more notes: --verbose, or report.md.")
    yield from _section("Notes" if verbose or shown == notes else "Notes (in full: --verbose)", [_bullets(shown)])


class StderrProgress:
    """Progress on stderr. On a terminal, rich's progress display: step k of N, what runs now, the
    time spent and the time limit's remainder, redrawn several times a second by rich's own thread,
    so it keeps moving while TensorFlow converts, compiles or loads. Elsewhere (a pipe, a CI log),
    one timestamped line per step, and a "still ..." line when a step runs long.

    Every time shown is the run's own clock: an update's elapsed time, plus for a "still" line the
    time since that update arrived (perf_counter, the clock the run reads), so no line ever shows
    less time than the one before it."""

    HEARTBEAT_S = 15.0

    def __init__(self, stream=None):
        self.console = Console(file=stream or sys.stderr, highlight=False, markup=False)
        self.progress = None
        self.task = None
        self.last: Optional[ProgressUpdate] = None
        self.last_at = 0.0  # perf_counter() when `last` arrived
        self.last_step = 0
        self.last_line_at = 0.0
        self.shown_s = 0.0  # the largest elapsed time printed so far
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.heartbeat = None

    def __call__(self, update: ProgressUpdate) -> None:
        with self.lock:
            self.last = update
            self.last_at = time.perf_counter()
            if update.notice:
                self._notice(update)
            if self.console.is_terminal:
                self._draw(update)
            elif update.step != self.last_step:  # a log, not a live line: one line per step
                self._print(update, "")
            self.last_step = update.step
        if not self.console.is_terminal and self.heartbeat is None:
            self.heartbeat = threading.Thread(target=self._beat, name="kdiag-progress", daemon=True)
            self.heartbeat.start()

    def _notice(self, update: ProgressUpdate) -> None:
        """A line said once (what a full answer would cost), above the live display or in the log."""
        console = self.progress.console if self.progress is not None else self.console
        console.print(f"kdiag: {sanitize.terminal(update.notice)}", soft_wrap=True)

    def _draw(self, update: ProgressUpdate) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        if self.progress is None:
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=12),
                                     TimeElapsedColumn(), TextColumn("{task.fields[left]}"),
                                     console=self.console, transient=True, refresh_per_second=4)
            self.progress.start()
            self.task = self.progress.add_task("", total=update.total_steps, left="")
        left = f"≤ {update.left_s:.0f} s left" if update.left_s is not None else ""
        self.progress.update(self.task, description=sanitize.terminal(update.line), completed=update.step - 1,
                             total=update.total_steps, left=left)

    def _print(self, update: ProgressUpdate, prefix: str) -> None:
        elapsed = max(update.elapsed_s, self.shown_s)
        self.shown_s = elapsed
        left = f", ≤ {update.left_s:.0f} s left" if update.left_s is not None else ""
        self.console.print(f"kdiag: [{elapsed:6.1f} s{left}] {prefix}{sanitize.terminal(update.line)}",
                           soft_wrap=True)
        self.last_line_at = time.perf_counter()

    def _beat(self) -> None:
        """A line now and then during a long step, so a log never looks stuck."""
        while not self.stop.wait(self.HEARTBEAT_S / 3):
            with self.lock:
                now = time.perf_counter()
                if self.last is not None and now - self.last_line_at >= self.HEARTBEAT_S:
                    since = now - self.last_at  # since the update arrived, not since the last line printed
                    left = None if self.last.left_s is None else max(0.0, self.last.left_s - since)
                    waited = dataclasses.replace(self.last, elapsed_s=self.last.elapsed_s + since, left_s=left)
                    self._print(waited, "still at ")

    def close(self) -> None:
        self.stop.set()
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
