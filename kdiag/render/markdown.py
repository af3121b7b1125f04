"""The report as GitHub-flavoured Markdown, to paste into a GitHub issue.

Plain text, standard library only. The sections follow what a maintainer asks for first:
the command, the environment (the fields of TensorFlow's issue template), the model, then
the measurements (a narrow table that fits an issue column, the full one folded in a
`<details>` block), the phases, the findings, the top functions (folded too), how to
reproduce, the standalone code to reproduce (repro.py, folded), and the `.prof` files.

Local paths are redacted unless the run said --no-redact: the home folder shows as `~`, the
Python install as `<python>`, the model's folder as `<model-dir>`, and the .prof files named
are the redacted copies in `redacted/` (kdiag.datamodel.redaction).

GitHub refuses an issue body over 65,536 characters. `render` shortens the longest parts
first (top functions, then the raw tables and lists, then long cells) until the text fits,
and says in the text what it left out.
"""

from __future__ import annotations

import dataclasses
import math
import re
import shlex
from typing import Iterable, List, Optional, Sequence, Tuple

from kdiag.version import __version__
from kdiag import format as fmt
from kdiag import views, views_versions
from kdiag.datamodel.beyond import CROSSOVER_WITHIN, GROWTH_CONFIDENCE, THROUGHPUT_GAIN
from kdiag.datamodel.measurement import NOISE_THRESHOLD
from kdiag.datamodel.profile import PHASES, ProfileResult, TopFunction
from kdiag.datamodel.redaction import HOME, MODEL_DIR, PYTHON, Redactor, redacted_prof_path
from kdiag.datamodel.report import Finding, Report, StrategyResult
from kdiag.datamodel.strategies import BY_NAME, PREDICT, PREDICT_COMPILED
from kdiag.render import repro

GITHUB_LIMIT = 65_536


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
        return items[:limit], (f"*… and {left} more {what}, left out to keep this report under GitHub's "
                               f"{self.limit:,}-character limit; report.json has them all.*")

    def cell(self, value: object, code: bool = False) -> str:
        text = " ".join(str(value).split())
        if len(text) > self.limits.cell:
            text = text[: self.limits.cell - 1] + "…"
            if "long cells" not in self.omitted:
                self.omitted.append("long cells")
        if code:
            return _code_span(text).replace("|", "\\|")
        return text_escape(text).replace("|", "\\|")


def _render(report: Report, limits: Limits, limit: int, redact: bool = False, copies: bool = False) -> str:
    w = _Writer(limits, limit, redact, copies)
    body: List[str] = []
    for section in (_command, _environment, _model, _keras_sides, _tf_versions, _strategies, _phases, _traces,
                    _beyond_one_batch,
                    _findings, _top_functions, _reproduce, _standalone_repro, _prof_files):
        lines = section(report, w)
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


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str = "") -> List[str]:
    """align: one letter per column, l or r (default l)."""
    marks = ["---:" if (align[i:i + 1] == "r") else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _ms(seconds: Optional[float]) -> str:
    return fmt.duration(seconds)


def _ms_value(ms: Optional[float]) -> str:
    if ms is None or ms != ms:
        return "—"
    return f"{ms:.3g}"


def _calls_per_s(value: float) -> str:
    if value is None or math.isnan(value) or math.isinf(value):
        return "—"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


# --- sections -----------------------------------------------------------------------


def _header(report: Report, w: _Writer) -> List[str]:
    s = report.settings
    measured = views.measured(report)
    lines = [
        f"# kdiag report: {text_escape(report.model.name)}",
        "",
        f"Why is `model.predict` slow? Measured by kdiag {__version__} on {s.timestamp}: "
        f"{len(measured)} ways of calling the model timed, batch size {s.batch_size}, budget {s.budget_s:g} s "
        f"per strategy (at least {s.min_calls} calls), rounds interleaved across strategies.",
    ]
    best = views.fastest_matching(report)
    predict = views.timed(report, PREDICT.name)
    if best is not None:
        versus = (f", {fmt.ratio(predict.median_s / best.median_s)} faster than predict"
                  if predict is not None and best is not predict else "")
        lines += ["", f"**Fastest with matching outputs:** {text_escape(best.name)}, "
                      f"{_ms(best.median_s)} per call{versus}."]
    if report.incomplete:
        lines += ["", "> **Incomplete run:** kdiag stopped before it measured everything; the figures below are "
                      "what it measured up to then."]
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


#: The rows of the environment table: the fields of TensorFlow's bug template first, in its order.
ENVIRONMENT_FIELDS = ("TensorFlow version", "TensorFlow installed from", "Custom code",
                      "OS platform and distribution", "Python version", "Keras version", "NumPy version",
                      "CUDA/cuDNN version", "GPU model and memory", "CPU", "CPU cores", "Threads", "oneDNN")


def _environment(report: Report, w: _Writer) -> List[str]:
    env = report.environment
    keras = (f"tf-keras {env.keras} (legacy Keras 2, TF_USE_LEGACY_KERAS=1)" if env.legacy_keras
             else f"{env.keras}, backend {env.keras_backend}")
    unknown = "not recorded"  # a report saved before kdiag recorded the field
    distribution = f"{env.os_distribution}; {env.os}" if env.os_distribution else env.os
    if env.gpu_models:
        gpus = "; ".join(env.gpu_models)
    else:
        gpus = ", ".join(env.gpus) if env.gpus else "none"
    values = (
        f"{env.tensorflow} (git {env.tensorflow_git})",
        env.tensorflow_install or unknown,
        _custom_code(report),
        distribution,
        env.python,
        keras,
        env.numpy or unknown,
        f"{env.cuda_build} (TensorFlow's build info)",
        gpus,
        env.cpu_model,
        str(env.cpu_cores),
        f"intra-op {fmt.threads(env.intra_op_threads)}, inter-op {fmt.threads(env.inter_op_threads)}",
        env.onednn,
    )
    rows = [(k, w.cell(v)) for k, v in zip(ENVIRONMENT_FIELDS, values)]
    if report.tf_versions is not None:  # the bug template's "Have you reproduced the bug with TensorFlow Nightly?"
        rows.insert(1, ("Reproduced with TensorFlow Nightly", w.cell(_nightly(report))))
    return ["## Environment", "", *_table(("field", "value"), rows)]


def _nightly(report: Report) -> str:
    entry = views_versions.nightly_entry(report)
    if entry is None:
        return "No: not run here (kdiag inspect MODEL --tf installed,nightly measures it side by side)"
    if entry.report is None:
        return f"No: tf-nightly was asked for but not measured ({entry.run.reason})"
    return f"Yes: tf-nightly {entry.run.tensorflow}, measured side by side below"


def _custom_code(report: Report) -> str:
    if report.model.format == "example":
        return f"No: kdiag's built-in example `{report.model.name}`"
    return "Yes: the user's own model"


def _model(report: Report, w: _Writer) -> List[str]:
    model = report.model
    rows = [
        ("Source", w.cell(model.source, code=True) + f" ({w.cell(model.format)})"),
        ("Parameters", f"{model.parameters:,}" if model.parameters is not None else "unknown"),
        ("Batch size", str(model.batch_size)),
        ("Loaded in", _ms(model.load_time_s)),
        ("Compiled with (for predict (compiled))", w.cell(model.compile_config)),
    ]
    inputs, more = w.take(model.inputs, "inputs")
    for item in inputs:
        shape = "(" + ", ".join("None" if d is None else str(d) for d in item.shape) + ")"
        rows.append((f"Input {w.cell(item.name, code=True)}", w.cell(f"{shape} {item.dtype}, {item.value_range}")))
    if not model.keras_model:
        rows.append(("Keras model", "no: a plain SavedModel, so the Keras-only strategies do not apply"))
    if model.training_dependent_layers:
        layers, _ = w.take(model.training_dependent_layers, "training-dependent layers", limit=w.limits.rows or 20)
        extra = len(model.training_dependent_layers) - len(layers)
        names = ", ".join(layers) + (f" and {extra} more" if extra else "")
        rows.append(("Layers that depend on `training`", w.cell(names)))
        stray = model.training_true_max_abs_diff
        rows.append(("model(x, training=True) vs predict, max \\|diff\\|",
                     "not measured" if stray is None else fmt.diff(stray)))
    lines = ["## Model", "", *_table(("field", "value"), rows)]
    return lines + (["", more] if more else [])


def _keras_sides(report: Report, w: _Writer) -> List[str]:
    """--keras both: every strategy's median and predict's phases under Keras 2 and Keras 3, side by side."""
    sides = views.keras_sides(report)
    if sides is None:
        return []
    old, new = views.keras_label(sides.keras2), views.keras_label(sides.keras3)
    lines = [f"## {old} and {new} side by side", "",
             f"Median per call; each Keras timed the model in its own process, on the same inputs; ~ marks a noisy "
             f"measurement. The sections below are the {text_escape(new)} run's; report.json holds the "
             f"{text_escape(old)} run in full (`other_keras`), and the run in a child process saved its own reports in "
             "`keras-N/` of the run folder.", ""]
    rows = []
    for pair in views.keras_pairs(sides):
        rows.append((w.cell(pair.name), w.cell(views.keras_cell(pair.keras2)), _count(pair.keras2),
                     w.cell(views.keras_cell(pair.keras3)), _count(pair.keras3), w.cell(pair.verdict_text)))
    lines += _table(("strategy", w.cell(old), "n", w.cell(new), "n", "Keras 3 vs Keras 2"), rows, "lrrrrl")
    deltas = views.keras_phase_deltas(sides)
    if deltas:
        before, after = sides.keras2.profile(PREDICT.name), sides.keras3.profile(PREDICT.name)
        lines += ["", "### predict's phases under each Keras", "",
                  "ms per warm call: each run's cProfile shares scaled to its unprofiled median.", ""]
        rows = [(w.cell(d.phase), _ms_value(d.before_ms), f"{d.share_before:.0%}", _ms_value(d.after_ms),
                 f"{d.share_after:.0%}", w.cell(d.text)) for d in deltas]
        rows.append(("traces per call (first call)", f"{before.traces_per_call:g} ({before.cold_traces})", "",
                     f"{after.traces_per_call:g} ({after.cold_traces})", "", ""))
        lines += _table(("phase", f"{w.cell(old)} ms", "share", f"{w.cell(new)} ms", "share",
                         "Keras 3 − Keras 2"), rows, "lrrrrr")
    if report.model.keras2_signs:
        lines += ["", text_escape("The file looks saved by Keras 2: " + "; ".join(report.model.keras2_signs) + ".")]
    findings = views.keras2_run_findings(sides)
    if findings:
        shown, more = w.take(findings, "findings of the Keras 2 run")
        lines += ["", f"Findings of the {text_escape(old)} run:", "",
                  *[f"- **{f.severity}** {text_escape(f.title)}" for f in shown]]
        if more:
            lines += ["", more]
    return lines


def _tf_versions(report: Report, w: _Writer) -> List[str]:
    """--tf: the version table, predict's phases per release and how each release ran (kdiag.views_versions)."""
    table = views_versions.version_table(report)
    if table is None:
        return []
    lines = [f"## {table.title}", "", text_escape(table.caption), "", *_data_table(table, w)]
    phases = views_versions.phase_table(report)
    if phases is not None:
        lines += ["", f"### {text_escape(phases.title)}", "", text_escape(phases.caption), "",
                  *_data_table(phases, w)]
    lines += ["", *[f"- {w.cell(line)}" for line in views_versions.version_lines(report)]]
    return lines


def _data_table(data: "views_versions.TableData", w: _Writer) -> List[str]:
    return _table([w.cell(h) for h in data.headers], [[w.cell(c) for c in row] for row in data.rows], data.align)


def _count(result: Optional[StrategyResult]) -> str:
    m = result.measurement if result is not None else None
    return str(m.count) if m is not None and result.available and m.count else ""


def _strategies(report: Report, w: _Writer) -> List[str]:
    measured = views.measured(report)
    predict = views.timed(report, PREDICT.name)
    reference = views.reference_check(report)
    lines = ["## Strategies", ""]
    if reference is not None:
        tolerance = (f"outputs are compared with {text_escape(reference.reference)}'s on the same inputs, "
                     f"\\|diff\\| &lt;= {reference.atol:g} + {reference.rtol:g}·\\|reference\\| element-wise "
                     "(max \\|diff\\| shown)")
    else:
        tolerance = "no reference ran, so no outputs were compared"
    lines.append(f"Time per call, fastest first. Speed-up = predict's median / this median; ~ marks a noisy "
                 f"measurement (IQR/median > {NOISE_THRESHOLD:.0%}); {tolerance}. A strategy whose outputs differ "
                 "is never recommended.")
    lines.append("")
    shown, more = w.take(measured, "measured strategies")
    narrow, full = [], []
    for result in shown:
        m = result.measurement
        name = w.cell(result.name + (" (stopped early)" if m.stopped_early else ""))
        median = _ms(m.median_s) + (" ~" if m.noisy else "")
        speedup = fmt.ratio(predict.median_s / m.median_s) if predict is not None and m.median_s else "—"
        narrow.append((name, median, speedup, _outputs_word(result)))
        full.append((name, median, _ms(m.iqr_s), _ms(m.p90_s), _ms(m.p99_s), _calls_per_s(m.calls_per_s),
                     f"{m.count:,}", _ms(m.first_call_s), speedup, _outputs_cell(result, w)))
    if narrow:
        # Four short columns fit GitHub's issue column (~780 px) without wrapping a cell.
        lines += _table(NARROW_HEADER, narrow, align="lrrl")
        lines += ["", "<details><summary>All statistics: IQR, p90, p99, calls/s, calls timed, first call, "
                      "max |diff|</summary>", "",
                  *_table(FULL_HEADER, full, align="lrrrrrrrrl"), "", "</details>"]
    else:
        lines.append("No strategy was measured.")
    if more:
        lines += ["", more]
    unavailable = [s for s in report.strategies if s not in measured]
    if unavailable:
        shown_u, more_u = w.take(unavailable, "unmeasured strategies")
        lines += ["", "### Not measured", "",
                  *_table(("strategy", "why"), [(w.cell(r.name), w.cell(r.reason or "no timed calls"))
                                                for r in shown_u])]
        if more_u:
            lines += ["", more_u]
    notes = [f"{r.name}: {n}" for r in report.strategies for n in r.notes] + list(report.notes) + views.floor_gaps(report)
    if notes:
        shown_n, more_n = w.take(notes, "notes")
        lines += ["", "### Notes", "", *[f"- {text_escape(' '.join(n.split()))}" for n in shown_n]]
        if more_n:
            lines += ["", more_n]
    return lines


NARROW_HEADER = ("strategy", "median", "speed-up", "outputs")
FULL_HEADER = ("strategy", "median", "IQR", "p90", "p99", "calls/s", "n", "first call", "speed-up vs predict",
               "outputs")


def _outputs_word(result: StrategyResult) -> str:
    check = result.outputs
    if check is None:
        return "not checked"
    if check.reference == result.name:
        return "reference"
    return "match" if check.matches else "**differ**"


def _outputs_cell(result: StrategyResult, w: _Writer) -> str:
    text = views.outputs_text(result)
    if views.outputs_differ(result):  # in bold, and its detail (user text) through the cell's escaping
        return "**differ** " + w.cell(text[len("differ "):])
    return text.replace("|", "\\|")


def _phases(report: Report, w: _Writer) -> List[str]:
    pair = [p for p in (report.profile(PREDICT.name), report.profile(PREDICT_COMPILED.name)) if p is not None]
    others = [p for p in report.profiles if p.scenario not in (PREDICT.name, PREDICT_COMPILED.name)]
    if not pair and not others:
        return []
    lines = ["## Where the time goes (phases)", ""]
    if pair:
        lines += [_scaling_sentence(pair, "before and after compile()"), ""]
        header = ["phase"]
        for p in pair:
            header += [f"{p.scenario} ms/call", "share"]
        deltas = {d.phase: d for d in views.compile_phase_deltas(report)}
        if deltas:
            header.append("compile() Δ ms/call")
        rows = []
        by_name = [{r.name: r for r in p.phases} for p in pair]
        names = [n for n in PHASES if any(n in rows_ for rows_ in by_name)]
        names += [n for rows_ in by_name for n in rows_ if n not in names]
        for name in names:
            cells = [w.cell(name)]
            for rows_ in by_name:
                row = rows_.get(name)
                cells += [_ms_value(row.ms_per_call) if row else "—", f"{row.share:.0%}" if row else "—"]
            if deltas:
                cells.append(deltas[name].text if name in deltas else "—")
            rows.append(cells)
        total = ["**total**"]
        for p in pair:
            total += [f"**{_ms_value(sum(r.ms_per_call for r in p.phases))}**", "100%"]
        if deltas:
            overall = views.compile_total_delta(report)
            total.append(f"**{overall.text}**" if overall else "—")
        rows.append(total)
        lines += _table(header, rows, align="l" + "rr" * len(pair) + "r")
        lines += ["", f"Phase rules: `{pair[0].ruleset}` (`kdiag rules` prints the landmark functions of each phase)."]
    if others:
        shown, more = w.take(others, "other profiled scenarios")
        lines += ["", "### Other profiled scenarios", "", _scaling_sentence(others, "for each scenario"), ""]
        rows = []
        for p in shown:
            top = sorted((r for r in p.phases if r.share > 0), key=lambda r: -r.share)[:3]
            rows.append((w.cell(p.scenario), _ms(p.unprofiled_median_s), fmt.ratio(p.inflation),
                         w.cell(", ".join(f"{r.name} {_ms_value(r.ms_per_call)} ms ({r.share:.0%})" for r in top)
                                or "—")))
        lines += _table(("scenario", "unprofiled median", "profiled / unprofiled time", "largest phases"), rows, "lrrl")
        if more:
            lines += ["", more]
    return lines


def _scaling_sentence(profiles: Sequence[ProfileResult], what: str) -> str:
    effects = [f"{p.scenario}: {views.inflation_text(p)}" for p in profiles if p.inflation]
    unscaled = [p.scenario for p in profiles if not p.unprofiled_median_s]
    text = (f"Phases {what}, from a separate cProfile pass. The ms per call are the profiled shares scaled to "
            "the unprofiled median from the timing pass, because cProfile changes the time"
            + (f" ({'; '.join(effects)})" if effects else "") + "; the shares are as profiled.")
    if unscaled:
        text += (f" No unprofiled median for {', '.join(unscaled)}: those ms are as profiled, "
                 "cProfile overhead included.")
    return text_escape(text)


def _traces(report: Report, w: _Writer) -> List[str]:
    if not report.profiles:
        return []
    shown, more = w.take(report.profiles, "profiled scenarios")
    rows = [(w.cell(p.scenario), f"{p.traces_per_call:.3g}", str(p.cold_traces), str(p.calls),
             str(len(p.retracing_warnings))) for p in shown]
    lines = ["## Tracing per call", "",
             "Concrete functions created (graphs traced) per call, counted by cProfile in the profiling pass.", "",
             *_table(("scenario", "per warm call", "first call", "warm calls profiled", "retracing warnings"), rows,
                     "lrrrr")]
    if more:
        lines += ["", more]
    if not report.environment.legacy_keras and any(p.scenario in (PREDICT.name, PREDICT_COMPILED.name) and p.traces_per_call
                                                   for p in report.profiles):
        lines += ["", "Keras 3 `predict` traces its tf.data map functions on every call: those traces are "
                      "predict's own overhead, not a retracing of your model."]
    warnings = [(p.scenario, text) for p in report.profiles for text in p.retracing_warnings]
    if warnings:
        shown_w, more_w = w.take(warnings, "retracing warnings")
        lines += ["", *[f"- {text_escape(s)}: {text_escape(' '.join(t.split()))}" for s, t in shown_w]]
        if more_w:
            lines += ["", more_w]
    return lines


def _findings(report: Report, w: _Writer) -> List[str]:
    lines = ["## Findings", ""]
    if not report.findings:
        return lines + ["kdiag found nothing to report from these measurements."]
    for number, finding in enumerate(report.findings, 1):
        lines += _finding(number, finding, w) + [""]
    return lines[:-1]


def _finding(number: int, finding: Finding, w: _Writer) -> List[str]:
    meta = f"**{finding.severity}** · `{finding.id}`"
    if finding.measured_speedup is not None and finding.strategy:
        match = " (outputs match)" if finding.outputs_match else ""
        meta += (f" · measured speed-up {fmt.ratio(finding.measured_speedup)} with "
                 f"{text_escape(finding.strategy)}{match}")
    lines = [f"### {number}. {text_escape(finding.title)}", "", meta, ""]
    evidence, more = w.take(finding.evidence, f"evidence lines of {finding.id}")
    lines += [f"- {text_escape(' '.join(e.split()))}" for e in evidence]
    if more:
        lines += ["", more]
    lines += ["", f"**What to do:** {text_escape(' '.join(finding.advice.split()))}"]
    if finding.snippet:
        lines += ["", *fence(finding.snippet, _snippet_language(finding))]
    return lines


def _snippet_language(finding: Finding) -> str:
    identity = BY_NAME.get(finding.strategy or "")
    return identity.language if identity is not None else "python"


def _top_functions(report: Report, w: _Writer) -> List[str]:
    profiles = [p for p in report.profiles if p.top_functions]
    if not profiles:
        return []
    lines = ["## Top functions per phase", ""]
    if w.limits.top_functions == 0:
        count = sum(len(p.top_functions) for p in profiles)
        w.omitted.append(f"the top-functions tables ({count} rows)")
        return lines + [f"*Left out ({count} rows) to keep this report under GitHub's {w.limit:,}-character "
                        "limit: open the .prof files below, or see report.json.*"]
    lines += ["Own time per profiled call as cProfile saw it (inflated by the profiler, not scaled), for the "
              "functions that took the most time in each phase.", ""]
    for p in profiles:
        rows = []
        left = 0
        for phase in _phase_order(p.top_functions):
            funcs = sorted((f for f in p.top_functions if f.phase == phase), key=lambda f: -f.own_s)
            keep = funcs if w.limits.top_functions is None else funcs[: w.limits.top_functions]
            left += len(funcs) - len(keep)
            rows += [(w.cell(phase), w.cell(f.qualname, code=True),
                      "built-in" if f.file == "~" else w.cell(f"{f.file}:{f.line}", code=True),
                      _ms_value(f.own_s * 1e3 / max(1, p.calls))) for f in keep]
        summary = text_escape(f"{p.scenario}: top functions per phase ({p.calls} warm calls profiled)")
        lines += [f"<details><summary>{summary}</summary>", "",
                  *_table(("phase", "function", "file:line", "own ms per call"), rows, "lllr")]
        if left:
            w.omitted.append(f"{left} top-function rows of {p.scenario}")
            lines += ["", f"*… and {left} more functions, left out to keep this report under GitHub's "
                          f"{w.limit:,}-character limit; the .prof file has them all.*"]
        lines += ["", "</details>", ""]
    return lines[:-1]


def _phase_order(functions: Sequence[TopFunction]) -> List[str]:
    present = {f.phase for f in functions}
    return [p for p in PHASES if p in present] + sorted(present - set(PHASES))


def _reproduce(report: Report, w: _Writer) -> List[str]:
    env = report.environment
    install = f'python3 -m pip install "tensorflow=={env.tensorflow}"'
    if env.legacy_keras:
        install += f' "tf-keras=={env.keras}"'
    else:
        install += f' "keras=={env.keras}"'
    command = report.settings.command
    if env.legacy_keras and "TF_USE_LEGACY_KERAS" not in command:
        command = "TF_USE_LEGACY_KERAS=1 " + command
    script = "\n".join([
        f"{install}  # the versions measured here",
        f"python3 -m pip install -e .  # in a checkout of kdiag {__version__}",
        command,
    ])
    lines = ["## How to reproduce", "", *fence(script, "sh")]
    needs = []
    if not report.model.source.startswith("example:"):
        needs.append(f"the model {_code_span(report.model.source)}")
    if any(i.value_range == "user data" for i in report.model.inputs):
        needs.append("the same input file")
    if needs:
        lines += ["", f"This needs {' and '.join(needs)}."]
    return lines


def _standalone_repro(report: Report, w: _Writer) -> List[str]:
    """repro.py, folded: what a maintainer runs with TensorFlow alone, without kdiag or the user's weights."""
    lines = ["## Standalone code to reproduce", ""]
    why = repro.unavailable_reason(report)
    if why is not None:
        return lines + [f"No standalone script for this run: {text_escape(why)}."]
    lines.append(f"`{repro.FILE_NAME}`, also in the run folder, needs only TensorFlow. "
                 f"`python {repro.FILE_NAME} MODEL` times predict against {text_escape(repro.recommended(report).name)} on the model file, as kdiag "
                 f"does, and prints both medians and their ratio; `python {repro.FILE_NAME} --synthetic MODEL` "
                 "rebuilds the model from its architecture config with random weights, so the user's weights are "
                 "not needed.")
    if w.limits.rows is not None:  # the report is being cut to fit: the script stays in the run folder
        w.omitted.append(f"the script itself ({repro.FILE_NAME} is in the run folder)")
        return lines + ["", f"*Left out to keep this report under GitHub's {w.limit:,}-character limit: attach "
                            f"{repro.FILE_NAME} from the run folder.*"]
    return lines + ["", f"<details><summary>standalone code to reproduce ({repro.FILE_NAME})</summary>", "",
                    *fence(repro.render(report), "python"), "", "</details>"]


def _prof_files(report: Report, w: _Writer) -> List[str]:
    if not report.profiles:
        return []
    kept = [p for p in report.profiles if p.prof_path]
    lines = ["## Profiles (.prof files)", ""]
    if not kept:
        return lines + ["The .prof files were not kept (kdiag.inspect without out_dir): the phases above are all "
                        "that remains of the profiling pass."]
    shown, more = w.take(kept, "profile files")
    commands = []
    rows = []
    for p in shown:
        rows.append((w.cell(p.scenario), w.cell(p.prof_path, code=True), w.cell(p.cold_prof_path, code=True)))
        commands += [f"kdiag view {_shell_path(p.prof_path)}", f"snakeviz {_shell_path(p.prof_path)}"]
    attach = ("These are the copies in `redacted/`, whose file names show local paths as above: attach them to the "
              "issue if a maintainer asks." if w.redacted_copies
              else "Attach them to the issue if a maintainer asks.")
    lines += ["Each scenario was profiled on a fresh model: one cold call, then the warm calls. Open a file in a "
              "browser with `kdiag view FILE` or `snakeviz FILE`; `python3 -m pstats FILE` reads it in a terminal. "
              + attach, "",
              *_table(("scenario", "warm calls", "first call"), rows), "", *fence("\n".join(commands), "sh")]
    return lines + (["", more] if more else [])


def _shell_path(path: str) -> str:
    """Quoted for a shell, leaving a leading ~/ outside the quotes so that the shell still expands it."""
    if path.startswith(HOME + "/"):
        return HOME + "/" + shlex.quote(path[len(HOME) + 1:])
    return shlex.quote(path)


# --- beyond one batch --------------------------------------------------------------------


def _beyond_one_batch(report: Report, w: _Writer) -> List[str]:
    """Data size, batch size, memory over many calls, the op breakdown and the threads effect."""
    parts = [report.data_size_sweep, report.batch_size_sweep, report.memory_loops, report.op_breakdown,
             report.threads_effect]
    if all(part is None for part in parts):
        return []
    lines = ["## Beyond one batch", ""]
    for section, part in zip((_data_size, _batch_size, _memory_loops, _op_breakdown, _threads), parts):
        if part is not None:
            lines += section(part, w) + [""]
    return lines[:-1]


def _data_size(sweep, w: _Writer) -> List[str]:
    lines = ["### Data size: predict against loops, end to end", ""]
    if sweep.reason or not sweep.counts:
        lines.append(text_escape(sweep.reason or "No sample count was measured."))
    else:
        lines += [f"The whole array scored three ways, interleaved, at each sample count: "
                  f"`model.predict(X, batch_size={sweep.batch_size})`, and loops over chunks of {sweep.batch_size}. "
                  "Time per 1,000 samples (the whole array's time in brackets).", ""]
        header = ["samples"] + [s.strategy if s is sweep.predict else f"{s.strategy} loop" for s in sweep.series]
        rows = []
        for n in sweep.counts:
            cells = [f"{n:,}"]
            for series in sweep.series:
                seconds = series.seconds_at(n)
                cells.append(f"{_ms(seconds * 1000 / n)} ({_ms(seconds)})")
            rows.append(cells + [fmt.ratio(sweep.ratio_at(n))])
        lines += _table([w.cell(h) for h in header] + ["predict / fastest loop"], rows, "r" * (len(header) + 1))
        lines += ["", f"**Crossover** (predict within {CROSSOVER_WITHIN:.0%} of the fastest loop): "
                      f"{views.crossover_text(sweep)}."]
    if sweep.skipped:
        shown, more = w.take(sweep.skipped, "left-out sample counts")
        lines += ["", *[f"- {text_escape(line)}" for line in shown]] + (["", more] if more else [])
    return lines


def _batch_size(sweep, w: _Writer) -> List[str]:
    lines = [f"### Batch size: {text_escape(sweep.strategy or 'the best path')}", ""]
    if sweep.reason or not sweep.points:
        return lines + [text_escape(sweep.reason or "No batch size was measured.")]
    knee = sweep.knee()
    shown, more = w.take(list(zip(sweep.points, sweep.throughput)), "batch sizes")
    rows = [(f"**{batch:,}**" if batch == knee else f"{batch:,}", _ms(seconds), _ms(seconds / batch), f"{rate:,.0f}")
            for (batch, seconds), (_, rate) in shown]
    lines += _table(("batch", "per call", "per sample", "samples/s"), rows, "rrrr") + ([""] + [more] if more else [])
    where = (f"Samples/s stop growing by more than {THROUGHPUT_GAIN:.0%} at batch **{knee:,}**: the batch size a "
             "server should collect." if knee is not None else
             f"Samples/s were still growing at batch {sweep.points[-1][0]:,}, the largest measured.")
    return lines + ["", f"{where} The doubling stopped: {text_escape(sweep.stopped_by)}."]


def _memory_loops(loops, w: _Writer) -> List[str]:
    lines = ["### Memory over many calls", ""]
    if loops.reason:
        return lines + [text_escape(loops.reason)]
    lines += [f"The process's RSS sampled over a sustained loop of calls (after a warm-up); growth is the "
              f"least-squares slope with its {GROWTH_CONFIDENCE:.0%} band.", ""]
    rows = []
    for loop in loops.loops:
        if loop.reason:
            rows.append((w.cell(loop.strategy), "—", "—", "—", "—", w.cell(loop.reason)))
            continue
        rows.append((w.cell(loop.strategy), f"{loop.calls:,}", _ms(loop.seconds), views.size_text(loop.peak_rss_bytes),
                     w.cell(views.growth_text(loop)), w.cell(views.memory_verdict(loop))))
    return lines + _table(("strategy", "calls", "time", "peak RSS", "growth", "verdict"), rows, "lrrrll")


def _op_breakdown(ops, w: _Writer) -> List[str]:
    lines = [f"### What execution is made of: {text_escape(ops.strategy or 'the best path')}", ""]
    if ops.reason:
        return lines + [text_escape(ops.reason)]
    share = ops.execution_share
    parallel = " (ops ran on several threads at once)" if share is not None and share > 1 else ""
    lines += [f"Ops by self time over {ops.calls} traced calls ({ops.where} ops, idle excluded), from a TensorFlow "
              f"profiler trace converted by {text_escape(ops.converter)}. Graph execution was "
              f"{'—' if share is None else f'{share:.0%}'} of the traced calls' time{parallel}.", ""]
    shown, more = w.take(ops.ops, "ops")
    rows = [(w.cell(op.name, code=True), w.cell(op.op_type), f"{op.occurrences:,}", _ms(op.self_s / ops.calls),
             f"{op.share:.1%}") for op in shown]
    if ops.other_ops:
        rows.append((f"*{ops.other_ops} other ops*", "", "", "", f"{ops.other_share:.1%}"))
    lines += _table(("op", "type", "count", "self time per call", "share"), rows, "llrrr")
    if more:
        lines += ["", more]
    types = ", ".join(f"{_code_span(t.name)} {t.share:.0%}" for t in ops.by_type[:8])
    return lines + ["", f"By op type: {types}."]


def _threads(effect, w: _Writer) -> List[str]:
    return ["### Intra-op threads", "",
            f"{text_escape(effect.strategy or 'The best path')}: {text_escape(views.threads_text(effect))}."]


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
