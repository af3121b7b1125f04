"""The rich terminal report, and progress on stderr. The only module that imports rich.

Made for an 80-column terminal, the default of most: a table never cuts a cell; columns of
lower priority (p99, first call, vs fastest) are left out when they do not fit, and `verbose`
stacks them in a second table instead. The default report is short (about 60 lines on a small
model: the strategies, predict's main phases, the findings' advice, where the profiles are);
`verbose` adds the environment, the model, every phase, the findings' evidence and the top
functions. The last line is a one-line verdict.

Model names, file names, layer names and error messages come from the user's files, so no
string is ever read as rich markup: every console here has markup=False, and titles (which
rich parses as markup whatever the console says) are Text objects.
"""

from __future__ import annotations

import dataclasses
import io
import re
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

from kdiag import format as fmt
from kdiag import views, views_versions
from kdiag.datamodel.beyond import CROSSOVER_WITHIN, GROWTH_CONFIDENCE, THROUGHPUT_GAIN
from kdiag.datamodel.measurement import NOISE_THRESHOLD
from kdiag.datamodel.progress import ProgressUpdate
from kdiag.datamodel.report import Report, StrategyResult
from kdiag.datamodel.strategies import PREDICT, PREDICT_COMPILED

#: Phases under this share of every profiled scenario fold into one row unless verbose.
MINOR_PHASE_SHARE = 0.05
#: Lines of a finding's snippet shown unless verbose (report.md has them all).
SNIPPET_LINES = 8
#: Notes shown unless verbose.
NOTES_SHOWN = 4


def render(report: Report, width: int = 80, color: bool = False, verbose: bool = False, saved: bool = False) -> str:
    """The report as text, `width` columns wide: for a pipe, a file and tests. No line ends in a space."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system="standard" if color else None, markup=False,
                      force_terminal=color, highlight=False, emoji=False)
    print_report(report, console=console, verbose=verbose, saved=saved)
    # rich pads table cells and rules' ends with spaces: invisible on a terminal, noise in a file.
    return "\n".join(line.rstrip() for line in buffer.getvalue().split("\n"))


def print_report(report: Report, console: Optional[Console] = None, verbose: bool = False, saved: bool = False,
                 file=None) -> None:
    """Print the report; `saved`: a run folder holds report.md (the verdict says so).

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
        console.print(part)
    console.print(Text(verdict(report, console.width, saved), style="bold"), no_wrap=True, overflow="fold")


# C0 and C1 control characters but tab and newline: an ESC from a file name could recolour,
# move the cursor or retitle the user's terminal. They are shown as \x1b instead.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


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


def verdict(report: Report, width: int = 80, saved: bool = False) -> str:
    """One line: predict's time, the fastest strategy with matching outputs, and the gain.

    The longest wording that fits `width` columns, e.g. `predict: 66 ms · best: concrete function
    239 µs (275x faster, outputs match) · see report.md`.
    """
    predict = views.timed(report, PREDICT.name)
    best = views.fastest_matching(report)
    lead = "incomplete run · " if report.incomplete else ""
    tail = " · see report.md" if saved else ""
    if best is None:
        said = ("no strategy was measured" if not views.measured(report)
                else "no strategy has checked, matching outputs: nothing to recommend")
        before = f"predict: {fmt.duration(views.median(predict))} · " if predict is not None else ""
        candidates = [f"{lead}{before}{said}{tail}", f"{lead}{before}{said}", f"{lead}{said}"]
    elif predict is None:
        head = f"best: {best.name} {fmt.duration(views.median(best))}"
        candidates = [f"{lead}{head} (outputs match; predict was not timed){tail}", f"{lead}{head} (outputs match)",
                      f"{lead}{head}"]
    elif best is predict:
        head = f"predict: {fmt.duration(views.median(predict))} · best: predict"
        candidates = [f"{lead}{head} (nothing faster has matching outputs){tail}", f"{lead}{head}{tail}",
                      f"{lead}{head}"]
    else:
        speedup = fmt.ratio(views.median(predict) / views.median(best))
        time = f"predict: {fmt.duration(views.median(predict))}"
        head = f"best: {best.name} {fmt.duration(views.median(best))}"
        candidates = [f"{lead}{time} · {head} ({speedup} faster, outputs match){tail}",
                      f"{lead}{time} · {head} ({speedup} faster, outputs match)",
                      f"{lead}{time} · {head} ({speedup} faster)",
                      f"{lead}{head} ({speedup} faster than predict)",
                      f"{lead}{head} ({speedup} faster)"]
    return next((c for c in candidates if len(c) <= width), candidates[-1])


# --- the sections ---------------------------------------------------------------------------


def report_parts(report: Report, width: int = 80, verbose: bool = False):
    yield from _header(report, verbose)
    sides = views.keras_sides(report)
    if sides is not None:  # --keras both
        title = f"{views.keras_label(sides.keras2)} and {views.keras_label(sides.keras3)} side by side"
        yield from _section(title, _keras_sides(report, verbose))
    versions = _tf_versions(report)
    if versions:  # --tf
        yield from _section("TensorFlow releases side by side", versions)
    yield from _section("Strategies", _strategies(report, width, verbose))
    if report.profiles:
        yield from _section("Where the time goes", _phases(report, width, verbose))
        if verbose:
            for profile in report.profiles:
                yield from _section(f"Top functions of {profile.scenario}", [_top_functions(profile)])
    if report.findings:
        yield from _section(f"Findings, by measured gain{'' if verbose else ' (evidence, advice: --verbose)'}",
                            _findings(report, verbose))
    unavailable = [s for s in report.strategies if not s.available]
    if unavailable:
        yield from _section("Not measured", [_bullets([f"{r.name}: {r.reason}" for r in unavailable])])
    beyond = list(_beyond_one_batch(report)) if verbose else []  # by default, the findings say what matters
    if beyond:
        yield from _section("Beyond one batch", beyond)
    notes = list(_notes(report))
    if notes:
        # Unless verbose, a few notes of two lines at most: TensorFlow's own warnings run long.
        shown = notes if verbose else [_clipped(n, width - 2) for n in notes[:NOTES_SHOWN]]
        if len(notes) > len(shown):
            shown.append(f"{len(notes) - len(shown)} more notes: --verbose, or report.md.")
        yield from _section("Notes" if verbose or shown == notes else "Notes (in full: --verbose)",
                            [_bullets(shown)])
    kept = [p for p in report.profiles if p.prof_path]
    if kept and verbose:  # by default the line saying where the run was saved names the .prof files
        yield from _section("Profiles (kdiag view FILE opens one in snakeviz)", [_profile_files(kept, verbose)])
    yield Text("")


def _keras_sides(report: Report, verbose: bool) -> List[RenderableType]:
    """--keras both: every strategy's median and predict's phases under Keras 2 and Keras 3.

    Call counts only with --verbose, so the table fits 80 columns; the verdict column wraps.
    """
    sides = views.keras_sides(report)
    old, new = views.keras_label(sides.keras2), views.keras_label(sides.keras3)
    table = Table(box=box.SIMPLE_HEAD, caption=f"Median per call, each Keras in its own process on the same "
                  f"inputs; ~ = noisy. The sections below are the {new} run's; report.json holds the {old} "
                  "run in full (other_keras), and its own reports are in keras-N/ of the run folder.",
                  caption_justify="left")
    table.add_column("strategy", no_wrap=True)
    for name in ((old, "n", new, "n") if verbose else (old, new)):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("Keras 3 vs Keras 2")
    for pair in views.keras_pairs(sides):
        cells = ([views.keras_cell(pair.keras2), _count(pair.keras2), views.keras_cell(pair.keras3),
                  _count(pair.keras3)] if verbose else [views.keras_cell(pair.keras2), views.keras_cell(pair.keras3)])
        table.add_row(pair.name, *cells, pair.verdict_text)
    parts: List[RenderableType] = [table]
    deltas = views.keras_phase_deltas(sides)
    if deltas:
        phases = Table(box=box.SIMPLE_HEAD, title="predict's phases under each Keras: ms per warm call (cProfile "
                       "shares scaled to each run's unprofiled median)", title_justify="left")
        phases.add_column("phase", no_wrap=True)
        for name in (old, new, "3 − 2"):
            phases.add_column(name, justify="right", no_wrap=True)
        for delta in deltas:
            phases.add_row(delta.phase, f"{delta.before_ms:.2f} ms", f"{delta.after_ms:.2f} ms", delta.text)
        parts.append(phases)
    if report.model.keras2_signs:
        parts.append(Text("The file looks saved by Keras 2: " + "; ".join(report.model.keras2_signs) + "."))
    findings = views.keras2_run_findings(sides)
    if findings:
        parts.append(Text(f"Findings of the {old} run: " + "; ".join(f"[{f.severity}] {f.title}" for f in findings)
                          + "."))
    return parts


def _tf_versions(report: Report) -> List[RenderableType]:
    """--tf: the version table, predict's phases per release and how each release ran (kdiag.views_versions)."""
    table = views_versions.version_table(report)
    if table is None:
        return []
    parts: List[RenderableType] = [_data_table(table)]
    phases = views_versions.phase_table(report)
    if phases is not None:
        parts.append(_data_table(phases, title=True))
    parts.append(_bullets(views_versions.version_lines(report)))
    return parts


def _data_table(data: "views_versions.TableData", title: bool = False) -> Table:
    """A table built in the views, laid out: its headers, rows and caption as they are."""
    table = Table(box=box.SIMPLE_HEAD, caption=data.caption or None, caption_justify="left",
                  title=Text(data.title) if title else None, title_justify="left")
    for index, header in enumerate(data.headers):
        table.add_column(header, justify="right" if data.align[index:index + 1] == "r" else "left",
                         no_wrap=index == 0)
    for row in data.rows:
        table.add_row(*row)
    return table


def _count(result) -> str:
    m = result.measurement if result is not None else None
    return str(m.count) if m is not None and result.available and m.count else ""


def _clipped(text: str, width: int, lines: int = 2) -> str:
    """`text` as at most `lines` lines of `width` (wrapped greedily at spaces, as rich does), … when cut."""
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


def _header(report: Report, verbose: bool):
    model, env = report.model, report.environment
    params = f" · {model.parameters:,} parameters" if model.parameters is not None else ""
    yield Text.assemble(("kdiag inspect", "bold"), f" · {model.name} ({model.format}) · batch {model.batch_size}"
                        + params)
    keras = f"tf-keras {env.keras}" if env.legacy_keras else f"Keras {env.keras}"
    gpus = "; ".join(env.gpu_models) or ", ".join(env.gpus) or "no GPU"
    yield Text(f"TensorFlow {env.tensorflow} · {keras} · Python {env.python} · {env.cpu_model}, "
               f"{env.cpu_cores} cores · {gpus}", style="dim")
    if verbose:
        yield from _section("Environment", [_environment(report)])
        yield from _section("Model", [_model(report)])


def _kv_table(title: Optional[str] = None) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    return table


def _environment(report: Report) -> Table:
    env = report.environment
    table = _kv_table()
    keras = f"{env.keras} ({'tf-keras, legacy' if env.legacy_keras else 'backend ' + env.keras_backend})"
    table.add_row("TensorFlow", f"{env.tensorflow} ({env.tensorflow_git}), {env.cuda_build}")
    if env.tensorflow_install:
        table.add_row("Installed", env.tensorflow_install)
    table.add_row("Keras", keras)
    table.add_row("Python", env.python + (f", NumPy {env.numpy}" if env.numpy else ""))
    table.add_row("OS", f"{env.os_distribution}; {env.os}" if env.os_distribution else env.os)
    table.add_row("CPU", f"{env.cpu_model}, {env.cpu_cores} cores")
    table.add_row("Threads", f"intra-op {fmt.threads(env.intra_op_threads)}, "
                             f"inter-op {fmt.threads(env.inter_op_threads)}")
    table.add_row("oneDNN", env.onednn)
    table.add_row("GPUs", "; ".join(env.gpu_models) or ", ".join(env.gpus) or "none")
    return table


def _model(report: Report) -> Table:
    model = report.model
    table = _kv_table()
    table.add_row("Source", f"{model.source} ({model.format}), loaded in {fmt.duration(model.load_time_s)}")
    table.add_row("Parameters", f"{model.parameters:,}" if model.parameters is not None else "unknown")
    for item in model.inputs:
        shape = "(" + ", ".join(str(d) for d in item.shape) + ")"
        table.add_row(f"Input {item.name}", f"{shape} {item.dtype}: {item.value_range}")
    table.add_row("Compiled with", model.compile_config)
    if model.training_dependent_layers:
        stray = model.training_true_max_abs_diff
        table.add_row("training=True", f"{', '.join(model.training_dependent_layers)}: max |diff| "
                                       f"{'not measured' if stray is None else fmt.diff(stray)}")
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
        table.add_column(column.header, justify=column.justify, no_wrap=not column.wraps,
                         overflow="fold" if column.wraps else "ellipsis")
    for row in zip(*(c.cells for c in columns)):
        table.add_row(*row)
    return table


def _strategies(report: Report, width: int, verbose: bool) -> List[RenderableType]:
    rows = [r for r in views.strategy_rows(report) if r.result.available and r.result.measurement is not None]
    if not rows:
        return [Text("No strategy was measured.")]
    key = _Column("strategy", [r.result.name + (" (stopped early)" if r.result.measurement.stopped_early else "")
                               for r in rows], justify="left", wraps=True)

    def stat(header, getter, drop_order=0):
        return _Column(header, [getter(r.result.measurement) for r in rows], drop_order=drop_order)

    # In reading order; drop_order says which go first when the width is short (0: never).
    columns = [
        # The noise mark goes first: rich drops a cell's trailing spaces, which would unalign the units.
        stat("median", lambda m: ("~ " if m.noisy else "") + fmt.duration(m.median_s)),
        stat("IQR", lambda m: fmt.duration(m.iqr_s), drop_order=10),
        stat("p90", lambda m: fmt.duration(m.p90_s), drop_order=4),
        stat("p99", lambda m: fmt.duration(m.p99_s), drop_order=7),
        stat("n", lambda m: f"{m.count:,}", drop_order=5),
        stat("first call", lambda m: fmt.duration(m.first_call_s), drop_order=6),
        _Column("speed-up", [fmt.ratio(r.vs_predict) for r in rows]),
        _Column("vs fastest", [fmt.ratio(r.vs_fastest) for r in rows], drop_order=8),
        _Column("outputs", [_outputs_cell(r.result) for r in rows], justify="left"),
    ]
    if not verbose:  # IQR is in the JSON and Markdown reports; the ~ marks what it says
        columns = [c for c in columns if c.header != "IQR"]
    tables = _fitted(key, columns, width, verbose, _numeric_table)
    shown = {c.header for t in tables if isinstance(t, Table) for c in t.columns}
    left = [c.header for c in columns if c.header not in shown]
    check = views.reference_check(report)
    outputs = (f"outputs: max |diff| vs {check.reference} (match: ≤ {check.atol:g} + {check.rtol:g}·|{check.reference}|)"
               if check else "outputs: not compared (no reference ran)")
    caption = (f"speed-up: predict's median / this one · ~ noisy: IQR/median > {NOISE_THRESHOLD:.0%} · {outputs}"
               + (f" · also: {', '.join(left)} (--verbose)" if left else ""))
    return [*tables, Text(caption, style="dim")]


def _outputs_cell(result: StrategyResult) -> Text:
    check = result.outputs
    if check is None:
        return Text("not checked")
    if check.reference == result.name:
        return Text("reference", style="green")
    if check.matches:
        return Text(f"match {fmt.diff(check.max_abs_diff)}", style="green")
    return Text(f"DIFFER {fmt.diff(check.max_abs_diff)}", style="bold red")


def _phases(report: Report, width: int, verbose: bool) -> List[RenderableType]:
    """Phases per profiled scenario side by side, the compile() delta when both predicts were profiled."""
    profiles = list(report.profiles)
    if not verbose:  # predict before and after compile(); other scenarios with --verbose
        profiles = [p for p in profiles if p.scenario in (PREDICT.name, PREDICT_COMPILED.name)] or profiles[:1]
    names = [row.name for row in profiles[0].phases]
    minor = [] if verbose else [n for n in names if all((p.phase(n).share if p.phase(n) else 0) < MINOR_PHASE_SHARE
                                                        for p in profiles)]
    major = [n for n in names if n not in minor]
    deltas = {d.phase: d for d in views.compile_phase_deltas(report)}
    labels = major + ([f"{len(minor)} phases under {MINOR_PHASE_SHARE:.0%}"] if minor else [])
    labels.append("traces/call (first)")
    key = _Column("phase", labels, justify="left", wraps=True)

    def cells(profile, bar):
        out = []
        for name in major:
            row = profile.phase(name)
            out.append(_phase_cell(row.ms_per_call, row.share, bar) if row else "—")
        if minor:
            rows = [profile.phase(n) for n in minor if profile.phase(n)]
            out.append(_phase_cell(sum(r.ms_per_call for r in rows), sum(r.share for r in rows), bar))
        out.append(f"{profile.traces_per_call:g} ({profile.cold_traces})")
        return out

    header = {PREDICT_COMPILED.name: "predict\n(compiled)"}
    tables = None
    for bar in (True, False):  # the share bars only where they fit
        columns = [_Column(header.get(p.scenario, p.scenario), cells(p, bar)) for p in profiles]
        if deltas and PREDICT.name in [p.scenario for p in profiles]:
            columns.append(_Column("compile() Δ", [deltas[n].text if n in deltas else "—" for n in major]
                                   + (["within the noise" if all(not deltas[n].beyond_noise for n in minor if n in deltas)
                                       else "see --verbose"] if minor else []) + [""]))
        for column in columns[2:len(profiles)]:  # scenarios beyond predict's two: stacked in --verbose
            column.drop_order = 1
        tables = _fitted(key, columns, width, verbose, _numeric_table)
        if not bar or (len(tables) == 1 and len(tables[0].columns) == 1 + len(columns)
                       and natural_width(tables[0]) <= width):
            break
    if verbose:
        effects = "; ".join(f"{p.scenario}: {views.inflation_text(p)}" for p in profiles)
    else:
        effects = "profiled / unprofiled time: " + ", ".join(f"{p.scenario} {fmt.ratio(p.inflation)}"
                                                            for p in profiles)
    caption = f"ms per warm call = cProfile's share × the unprofiled median ({effects})."
    return [*tables, Text(caption, style="dim")]


def _phase_cell(ms: float, share: float, bar: bool) -> str:
    text = f"{ms:.2f} ms"
    return f"{text} {_bar(share)} {share:>3.0%}" if bar else f"{text} {share:>4.0%}"


def _bar(share: float, width: int = 8) -> str:
    filled = int(round(share * width))
    return "█" * filled + "·" * (width - filled)


def _top_functions(profile, per_phase: int = 2, min_share: float = 0.05) -> Table:
    """The functions that carry the big phases of one scenario (own time, as profiled)."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  caption=f"own time over {profile.calls} profiled calls; report.md lists every phase",
                  caption_justify="left", caption_style="dim")
    table.add_column("phase", overflow="fold")
    table.add_column("function (file)", overflow="fold", ratio=1)
    table.add_column("own time", justify="right", no_wrap=True)
    big = [p.name for p in profile.phases if p.share >= min_share]
    for phase in big:
        functions = sorted((f for f in profile.top_functions if f.phase == phase), key=lambda f: -f.own_s)
        for function in functions[:per_phase]:
            where = "built-in (C)" if function.file == "~" else f"{function.file}:{function.line}"
            table.add_row(phase, Text.assemble(function.qualname, "\n", (where, "dim")),
                          fmt.duration(function.own_s))
    return table


def _findings(report: Report, verbose: bool) -> List[RenderableType]:
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    shown_snippets = set()
    style = {"high": "bold red", "medium": "bold yellow"}
    for number, finding in enumerate(report.findings, 1):
        body: List[RenderableType] = [Text.assemble((f"[{finding.severity}] ", style.get(finding.severity, "bold")),
                                                    (finding.title, "bold"))]
        if verbose:
            body.append(_bullets(finding.evidence, mark="·", style="dim"))
        # Unless verbose, the advice of the top finding and of those that matter (a low finding's
        # title says it); report.md has every one.
        if verbose or number == 1 or finding.severity in ("high", "medium"):
            body.append(Text(finding.advice))
        # The same snippet twice says nothing new; unless verbose, the first one, and the top finding's.
        if finding.snippet and finding.snippet not in shown_snippets and (verbose or not shown_snippets):
            shown_snippets.add(finding.snippet)
            lines = finding.snippet.splitlines()
            if not verbose and len(lines) > SNIPPET_LINES:
                lines = lines[:SNIPPET_LINES] + [f"# … {len(lines) - SNIPPET_LINES} more lines: report.md"]
            body.append(Padding(Text("\n".join(lines), style="cyan", overflow="fold"), (0, 0, 0, 2)))
        grid.add_row(Text(f"{number}.", style="bold"), Group(*body))
    return [grid]


def _bullets(lines: Sequence[str], mark: str = "-", style: str = "") -> Table:
    """One item per line, wrapped under its own start (a hanging indent)."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for line in lines:
        grid.add_row(Text(mark, style=style), Text(line, style=style))
    return grid


def _profile_files(profiles, verbose: bool) -> Table:
    table = _kv_table()
    for profile in profiles:
        table.add_row(profile.scenario, profile.prof_path)
        if verbose:
            table.add_row("", f"first call: {profile.cold_prof_path}")
    return table


def _notes(report: Report):
    noisy = [r.name for r in report.strategies if r.measurement and r.measurement.count and r.measurement.noisy]
    if noisy and not any(f.id == "noisy" for f in report.findings):  # the finding says it already
        yield (f"Noisy (IQR/median > {NOISE_THRESHOLD:.0%}, marked ~): {', '.join(noisy)}. Another process may be "
               "using the CPU; rounds were interleaved so ratios stay comparable, but re-run for firmer figures.")
    for result in report.strategies:
        m = result.measurement
        if m is not None and m.stopped_early:
            yield (f"{result.name}: stopped early after {m.count} calls (wall cap {report.settings.max_wall_s:g} s) "
                   f"— its figures rest on few samples.")
        if views.outputs_differ(result):
            detail = f" ({result.outputs.detail})" if result.outputs.detail else ""
            yield f"{result.name}: outputs differ from {result.outputs.reference}'s{detail}; it is never recommended."
        for note in result.notes:
            yield f"{result.name}: {note}"
    yield from views.floor_gaps(report)
    yield from report.notes


# --- beyond one batch -------------------------------------------------------------------


def _beyond_one_batch(report: Report):
    """The sweeps, the memory loops, the op breakdown and the threads effect: only what the run has."""
    if report.data_size_sweep is not None:
        yield _data_size(report.data_size_sweep)
    if report.batch_size_sweep is not None:
        yield _batch_size(report.batch_size_sweep)
    if report.memory_loops is not None:
        yield _memory_loops(report.memory_loops)
    if report.op_breakdown is not None:
        yield _op_breakdown(report.op_breakdown)
    if report.threads_effect is not None:
        table = _kv_table("Intra-op threads")
        table.add_row(report.threads_effect.strategy or "best path", views.threads_text(report.threads_effect))
        yield table


def _data_size(sweep):
    if sweep.reason or not sweep.counts:
        table = _kv_table("Data size: predict against loops, end to end")
        table.add_row("sweep", sweep.reason or "no sample count was measured")
        for line in sweep.skipped:
            table.add_row("", line)
        return table
    table = Table(box=box.SIMPLE_HEAD, title=f"Data size: the whole array end to end, time per 1,000 samples "
                  f"(chunks of {sweep.batch_size})", title_justify="left")
    table.add_column("samples", justify="right", no_wrap=True)
    for series in sweep.series:
        table.add_column(series.strategy if series is sweep.predict else f"{series.strategy} loop", justify="right",
                         no_wrap=True)
    table.add_column("predict / fastest loop", justify="right", no_wrap=True)
    for n in sweep.counts:
        cells = [f"{n:,}"]
        for series in sweep.series:
            seconds = series.seconds_at(n)
            cells.append(f"{fmt.duration(seconds * 1000 / n)} ({fmt.duration(seconds)})")
        cells.append(fmt.ratio(sweep.ratio_at(n)))
        table.add_row(*cells)
    # Below the table, not a caption: a caption wraps to the table's width.
    notes = [f"Crossover (predict within {CROSSOVER_WITHIN:.0%} of the fastest loop): {views.crossover_text(sweep)}."]
    return Group(table, *[Text(line) for line in notes + [f"{line}." for line in sweep.skipped]])


def _batch_size(sweep):
    if sweep.reason or not sweep.points:
        table = _kv_table("Batch size")
        table.add_row(sweep.strategy or "best path", sweep.reason or "no batch size was measured")
        return table
    knee = sweep.knee()
    where = (f"samples/s stop growing by more than {THROUGHPUT_GAIN:.0%} at batch {knee:,}: the batch a "
             f"server should collect" if knee is not None else
             f"samples/s were still growing at batch {sweep.points[-1][0]:,}")
    table = Table(box=box.SIMPLE_HEAD, title=f"Batch size: {sweep.strategy}", title_justify="left")
    for name in ("batch", "per call", "per sample", "samples/s"):
        table.add_column(name, justify="right", no_wrap=True)
    for (batch, seconds), (_, rate) in zip(sweep.points, sweep.throughput):
        table.add_row(f"{batch:,}" + (" ◀" if batch == knee else ""), fmt.duration(seconds),
                      fmt.duration(seconds / batch), f"{rate:,.0f}")
    return Group(table, Text(f"{where}. The doubling stopped: {sweep.stopped_by}."))


def _memory_loops(loops) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title="Memory over many calls: RSS in a sustained loop (least-squares slope, "
                  f"{GROWTH_CONFIDENCE:.0%} band)", title_justify="left")
    for name, justify in (("strategy", "left"), ("calls", "right"), ("time", "right"), ("peak RSS", "right"),
                          ("growth", "left"), ("verdict", "left")):
        table.add_column(name, justify=justify, overflow="fold")
    if loops.reason:
        table.add_row("—", "", "", "", "", loops.reason)
    for loop in loops.loops:
        if loop.reason:
            table.add_row(loop.strategy, "", "", "", "", loop.reason)
            continue
        table.add_row(loop.strategy, f"{loop.calls:,}", fmt.duration(loop.seconds),
                      views.size_text(loop.peak_rss_bytes), views.growth_text(loop), views.memory_verdict(loop))
    return table


def _op_breakdown(ops) -> Table:
    if ops.reason:
        table = _kv_table("What execution is made of")
        table.add_row(ops.strategy or "best path", ops.reason)
        return table
    share = ops.execution_share
    table = Table(box=box.SIMPLE_HEAD, title=f"What execution is made of: {ops.strategy}'s ops by self time "
                  f"({ops.calls} traced calls)", title_justify="left",
                  caption=f"Shares of the traced execution time ({ops.where} ops, idle excluded), converted by "
                          f"{ops.converter}; graph execution was {_share_text(share)} of the traced calls' time. "
                          "By type: " + ", ".join(f"{t.name} {t.share:.0%}" for t in ops.by_type[:5]) + ".",
                  caption_justify="left")
    for name, justify in (("op", "left"), ("type", "left"), ("count", "right"), ("self time per call", "right"),
                          ("share", "right")):
        table.add_column(name, justify=justify, overflow="fold")
    for op in ops.ops:
        table.add_row(op.name, op.op_type, f"{op.occurrences:,}", fmt.duration(op.self_s / ops.calls),
                      f"{op.share:.1%}")
    if ops.other_ops:
        table.add_row(f"{ops.other_ops} other ops", "", "", "", f"{ops.other_share:.1%}")
    return table


def _share_text(share) -> str:
    if share is None:
        return "—"
    # Ops on several threads at once add up to more than the wall time.
    return f"{share:.0%}" if share <= 1 else f"{share:.0%} (ops ran in parallel)"


class StderrProgress:
    """Progress on stderr. On a terminal, rich's progress display: step k of N, what runs now, the
    time spent and the time limit's remainder, redrawn several times a second by rich's own thread,
    so it keeps moving while TensorFlow converts, compiles or loads. Elsewhere (a pipe, a CI log),
    one timestamped line per step, and a "still ..." line when a step runs long."""

    HEARTBEAT_S = 15.0

    def __init__(self, stream=None):
        self.console = Console(file=stream or sys.stderr, highlight=False, markup=False)
        self.progress = None
        self.task = None
        self.last: Optional[ProgressUpdate] = None
        self.last_step = 0
        self.last_line_at = 0.0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.heartbeat = None

    def __call__(self, update: ProgressUpdate) -> None:
        with self.lock:
            self.last = update
            if self.console.is_terminal:
                self._draw(update)
            elif update.step != self.last_step:  # a log, not a live line: one line per step
                self._print(update, "")
            self.last_step = update.step
        if not self.console.is_terminal and self.heartbeat is None:
            self.heartbeat = threading.Thread(target=self._beat, name="kdiag-progress", daemon=True)
            self.heartbeat.start()

    def _draw(self, update: ProgressUpdate) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        if self.progress is None:
            self.progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=12),
                                     TimeElapsedColumn(), TextColumn("{task.fields[left]}"),
                                     console=self.console, transient=True, refresh_per_second=4)
            self.progress.start()
            self.task = self.progress.add_task("", total=update.total_steps, left="")
        left = f"≤ {update.left_s:.0f} s left" if update.left_s is not None else ""
        self.progress.update(self.task, description=visible(update.line), completed=update.step - 1,
                             total=update.total_steps, left=left)

    def _print(self, update: ProgressUpdate, prefix: str) -> None:
        left = f", ≤ {update.left_s:.0f} s left" if update.left_s is not None else ""
        self.console.print(f"kdiag: [{update.elapsed_s:6.1f} s{left}] {prefix}{visible(update.line)}",
                           soft_wrap=True)
        self.last_line_at = time.monotonic()

    def _beat(self) -> None:
        """A line now and then during a long step, so a log never looks stuck."""
        while not self.stop.wait(self.HEARTBEAT_S / 3):
            with self.lock:
                if self.last is not None and time.monotonic() - self.last_line_at >= self.HEARTBEAT_S:
                    since = time.monotonic() - self.last_line_at
                    waited = dataclasses.replace(self.last, elapsed_s=self.last.elapsed_s + since)
                    self._print(waited, "still at ")

    def close(self) -> None:
        self.stop.set()
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
