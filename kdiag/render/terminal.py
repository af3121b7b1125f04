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
from kdiag.datamodel.measurement import NOISE_THRESHOLD
from kdiag.datamodel.report import Report
from kdiag.datamodel.strategies import PREDICT


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
    if views.keras_sides(report) is not None:  # --keras both
        yield _keras_sides(report)
    yield _strategies(report)
    unavailable = [s for s in report.strategies if not s.available]
    if unavailable:
        yield _unavailable(unavailable)
    if report.profiles:
        yield _phases(report)
        yield _top_functions(report.profiles[0])
        yield _profile_files(report)
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


def _keras_sides(report: Report) -> Group:
    """--keras both: every strategy's median and predict's phases under Keras 2 and Keras 3, side by side."""
    sides = views.keras_sides(report)
    old, new = views.keras_label(sides.keras2), views.keras_label(sides.keras3)
    table = Table(box=box.SIMPLE_HEAD, title=f"{old} and {new} side by side: median per call",
                  title_justify="left",
                  caption="Each Keras timed the model in its own process, on the same inputs; ~ = noisy. The "
                          f"sections below are the {new} run's; report.json holds the {old} run in full "
                          "(other_keras), and the run in a child process saved its own reports in keras-N/ of the "
                          "run folder.",
                  caption_justify="left")
    table.add_column("strategy", no_wrap=True, min_width=18)
    for name in (old, "n", new, "n"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("Keras 3 vs Keras 2")
    for pair in views.keras_pairs(sides):
        table.add_row(pair.name, views.keras_cell(pair.keras2), _count(pair.keras2), views.keras_cell(pair.keras3),
                      _count(pair.keras3), pair.verdict_text)
    parts = [table]
    deltas = views.keras_phase_deltas(sides)
    if deltas:
        phases = Table(box=box.SIMPLE_HEAD, title="predict's phases under each Keras: ms per warm call (cProfile "
                       "shares scaled to each run's unprofiled median)", title_justify="left")
        phases.add_column("phase", no_wrap=True)
        for name in (old, new, "Keras 3 − Keras 2"):
            phases.add_column(name, justify="right", no_wrap=True)
        for delta in deltas:
            phases.add_row(delta.phase, f"{delta.before_ms:.2f} ms {delta.share_before:>4.0%}",
                           f"{delta.after_ms:.2f} ms {delta.share_after:>4.0%}", delta.text)
        before, after = sides.keras2.profile(PREDICT.name), sides.keras3.profile(PREDICT.name)
        phases.add_row("traces per call (first call)", f"{before.traces_per_call:g} ({before.cold_traces})",
                       f"{after.traces_per_call:g} ({after.cold_traces})", "")
        parts.append(phases)
    if report.model.keras2_signs:
        parts.append(Text("The file looks saved by Keras 2: " + "; ".join(report.model.keras2_signs) + "."))
    findings = views.keras2_run_findings(sides)
    if findings:
        parts.append(Text(f"Findings of the {old} run: " + "; ".join(f"[{f.severity}] {f.title}" for f in findings)
                          + "."))
    return Group(*parts)


def _count(result) -> str:
    m = result.measurement if result is not None else None
    return str(m.count) if m is not None and result.available and m.count else ""


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
