"""The rich terminal report, and progress on stderr. The only module that imports rich.

Model names, file names, layer names and error messages come from the user's files, so no
string is ever read as rich markup: every console here has markup=False, and panel titles
(which rich parses as markup whatever the console says) are Text objects.
"""

from __future__ import annotations

import dataclasses
import io
import re
import sys
from typing import Optional

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from kdiag import format as fmt
from kdiag import views
from kdiag.datamodel.beyond import CROSSOVER_WITHIN, GROWTH_CONFIDENCE, THROUGHPUT_GAIN
from kdiag.datamodel.measurement import NOISE_THRESHOLD
from kdiag.datamodel.report import Report


def render(report: Report, width: int = 120, color: bool = False) -> str:
    """The report as text, for tests and for writing to a file."""
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system="standard" if color else None, markup=False,
                      force_terminal=color, highlight=False)
    print_report(report, console)
    return buffer.getvalue()


def print_report(report: Report, console: Optional[Console] = None) -> None:
    console = console or Console(highlight=False, markup=False)
    for part in report_parts(scrubbed(report)):
        console.print(part)


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


def report_parts(report: Report):
    model = report.model
    yield Text.assemble(
        ("kdiag inspect", "bold"), f"  {model.name} ({model.format})  batch {model.batch_size}",
        style="",
    )
    yield _environment(report)
    yield _model(report)
    yield _strategies(report)
    unavailable = [s for s in report.strategies if not s.available]
    if unavailable:
        yield _unavailable(unavailable)
    if report.profiles:
        yield _phases(report)
        yield _top_functions(report.profiles[0])
        yield _profile_files(report)
    yield from _beyond_one_batch(report)
    if report.findings:
        yield _findings(report)
    notes = list(_notes(report))
    if notes:
        yield Panel(Group(*[Text(n) for n in notes]), title=Text("Notes"), title_align="left", border_style="yellow")
    best = views.fastest_matching(report)
    if best is not None and not report.findings:
        yield Panel(Text(best.snippet), title=Text(f"Fastest with matching outputs: {best.name}"),
                    title_align="left", border_style="green")


def _kv_table(title: str) -> Table:
    table = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    return table


def _environment(report: Report) -> Table:
    env = report.environment
    table = _kv_table("Environment")
    keras = f"{env.keras} ({'tf-keras, legacy' if env.legacy_keras else 'backend ' + env.keras_backend})"
    table.add_row("TensorFlow", f"{env.tensorflow} ({env.tensorflow_git}), {env.cuda_build}")
    table.add_row("Keras", keras)
    table.add_row("Python / OS", f"{env.python} / {env.os}")
    table.add_row("CPU", f"{env.cpu_model}, {env.cpu_cores} cores")
    table.add_row("Threads", f"intra-op {fmt.threads(env.intra_op_threads)}, inter-op {fmt.threads(env.inter_op_threads)}")
    table.add_row("oneDNN", env.onednn)
    table.add_row("GPUs", ", ".join(env.gpus) or "none")
    return table


def _model(report: Report) -> Table:
    model = report.model
    table = _kv_table("Model")
    table.add_row("Source", f"{model.source} ({model.format}), loaded in {fmt.duration(model.load_time_s)}")
    table.add_row("Parameters", f"{model.parameters:,}" if model.parameters is not None else "unknown")
    for item in model.inputs:
        shape = "(" + ", ".join(str(d) for d in item.shape) + ")"
        table.add_row(f"Input {item.name}", f"{shape} {item.dtype}: {item.value_range}")
    table.add_row("Compiled with", model.compile_config)
    return table


def _strategies(report: Report) -> Table:
    s = report.settings
    table = Table(
        box=box.SIMPLE_HEAD,
        title=f"Strategies: time per call, fastest first (budget {s.budget_s:g} s each, at least {s.min_calls} calls)",
        title_justify="left",
        caption="speed-up = predict's median / this median; ~ = noisy (IQR/median > "
                f"{NOISE_THRESHOLD:.0%}); outputs: max |diff| against {_reference_name(report)}; "
                "IQR and calls/s are in the JSON and Markdown reports",
        caption_justify="left",
    )
    table.add_column("strategy", no_wrap=True, min_width=18)
    for name in ("median", "p90", "p99", "n", "first call", "speed-up", "vs fastest"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("outputs", no_wrap=True)
    for row in views.strategy_rows(report):
        result = row.result
        m = result.measurement
        if not result.available or m is None:
            continue
        table.add_row(
            result.name + (" (stopped early)" if m.stopped_early else ""),
            fmt.duration(m.median_s) + (" ~" if m.noisy else ""),
            fmt.duration(m.p90_s),
            fmt.duration(m.p99_s),
            str(m.count),
            fmt.duration(m.first_call_s),
            fmt.ratio(row.vs_predict),
            fmt.ratio(row.vs_fastest),
            _outputs_cell(result),
        )
    return table


def _reference_name(report: Report) -> str:
    check = views.reference_check(report)
    return check.reference if check else "nothing (no reference ran)"


def _outputs_cell(result) -> Text:
    check = result.outputs
    if check is None:
        return Text("not checked")
    if check.matches:
        return Text(f"match {fmt.diff(check.max_abs_diff)}", style="green")
    return Text(f"DIFFER {fmt.diff(check.max_abs_diff)}", style="bold red")


def _phases(report: Report) -> Table:
    """Phases per profiled scenario side by side; the compile() delta when both predicts were profiled."""
    profiles = report.profiles
    table = Table(box=box.SIMPLE_HEAD, title="Where the time goes: ms per warm call by phase (cProfile shares "
                  "scaled to the unprofiled median)", title_justify="left",
                  caption="; ".join(f"{p.scenario}: {views.inflation_text(p)}" for p in profiles) +
                  ". Shares are as profiled, milliseconds are scaled back to the timing pass.",
                  caption_justify="left")
    table.add_column("phase", no_wrap=True)
    for profile in profiles:
        table.add_column(profile.scenario, justify="right", no_wrap=True)
    deltas = {d.phase: d for d in views.compile_phase_deltas(report)}
    if deltas:
        table.add_column("compile() Δ", justify="right", no_wrap=True)
    for row in profiles[0].phases:
        cells = [row.name]
        for profile in profiles:
            phase = profile.phase(row.name)
            cells.append(f"{phase.ms_per_call:.2f} ms {_bar(phase.share)}{phase.share:>5.0%}" if phase else "—")
        if deltas:
            cells.append(deltas[row.name].text if row.name in deltas else "—")
        table.add_row(*cells)
    table.add_row("traces per call (first call)",
                  *[f"{p.traces_per_call:g} ({p.cold_traces})" for p in profiles],
                  *([""] if deltas else []))
    return table


def _top_functions(profile, per_phase: int = 2, min_share: float = 0.05) -> Table:
    """The functions that carry the big phases of one scenario (own time, as profiled)."""
    table = Table(box=box.SIMPLE_HEAD, title=f"Top functions of {profile.scenario}'s main phases "
                  f"(own time over {profile.calls} profiled calls; the Markdown report lists every phase)",
                  title_justify="left")
    for name, justify in (("phase", "left"), ("function", "left"), ("file", "left"), ("own time", "right")):
        table.add_column(name, justify=justify, overflow="fold")
    big = [p.name for p in profile.phases if p.share >= min_share]
    for phase in big:
        functions = sorted((f for f in profile.top_functions if f.phase == phase), key=lambda f: -f.own_s)
        for function in functions[:per_phase]:
            where = "built-in (C)" if function.file == "~" else f"{function.file}:{function.line}"
            table.add_row(phase, function.qualname, where, fmt.duration(function.own_s))
    return table


def _bar(share: float, width: int = 8) -> str:
    filled = int(round(share * width))
    return "█" * filled + "·" * (width - filled)


def _profile_files(report: Report) -> Table:
    table = _kv_table("Profiles (open in snakeviz)")
    for profile in report.profiles:
        table.add_row(profile.scenario, f"kdiag view {profile.prof_path}   (first call: {profile.cold_prof_path})")
    return table


def _findings(report: Report) -> Group:
    parts = [Text("Findings (ordered by measured gain)", style="bold")]
    for finding in report.findings:
        gain = f" — measured {fmt.ratio(finding.measured_speedup)} faster" if finding.measured_speedup else ""
        body = [Text(line) for line in finding.evidence] + [Text(finding.advice, style="bold")]
        if finding.snippet:
            body.append(Text(finding.snippet, style="cyan"))
        parts.append(Panel(Group(*body), title=Text(f"[{finding.severity}] {finding.title}{gain}"), title_align="left",
                           border_style={"high": "red", "medium": "yellow"}.get(finding.severity, "blue")))
    return Group(*parts)


def _unavailable(results) -> Table:
    table = _kv_table("Not measured")
    for result in results:
        table.add_row(result.name, result.reason)
    return table


def _notes(report: Report):
    check = views.reference_check(report)
    if check is not None:
        yield (f"Outputs are compared with {check.reference}'s on the same inputs: "
               f"|diff| <= {check.atol:g} + {check.rtol:g}·|reference| element-wise (max |diff| shown).")
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
    """Progress on stderr: a live status line on a terminal, stage lines otherwise."""

    def __init__(self, stream=None):
        self.console = Console(file=stream or sys.stderr, highlight=False, markup=False)
        self.status = None
        self.last_stage = None

    def __call__(self, stage: str, detail: str) -> None:
        if self.console.is_terminal:
            if self.status is None:
                self.status = self.console.status("")
                self.status.start()
            self.status.update(Text.assemble((stage, "dim"), f": {visible(detail)}"))
        elif stage != self.last_stage:  # a log, not a live line: one line per stage
            self.console.print(f"kdiag: {stage}: {visible(detail)}" + (" ..." if stage == "measure" else ""))
        self.last_stage = stage

    def close(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None
