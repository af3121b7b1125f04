"""Every section of the report, built once as rows and captions.

The terminal, report.md and report.html lay these out; they add no facts. A section is a title,
paragraphs, tables, bullets and code, and sub-sections; a table is columns and rows of cells. What
a layout may leave out is said here too: a column's `detail` (0: always, 1: where there is room,
2: in full reports only) and `drop` (which go first when a terminal is narrow), a section's
`detail` the same way.

Text is plain, but for two marks in paragraphs, as Markdown writes them: **strong** and `code`
(report.md keeps them, report.html makes them <strong> and <code>, the terminal drops the marks).
Text from the user's files inside a paragraph is fenced with `kdiag.sanitize.literal`, so that each
renderer escapes it for its format rather than reading marks in it; bullets and table cells are
plain text, escaped whole. A cell marked `code` is a name or a path from the user's files, shown as
code where the format has it.
"""

from __future__ import annotations

import dataclasses
import shlex
from typing import Callable, List, Optional, Sequence, Tuple

from kdiag import format as fmt
from kdiag.sanitize import literal
from kdiag.datamodel.measurement import NOISE_THRESHOLD
from kdiag.datamodel.profile import PHASES, ProfileResult, TopFunction
from kdiag.datamodel.redaction import HOME
from kdiag.datamodel.report import Report, StrategyResult
from kdiag.datamodel.strategies import BY_NAME, PREDICT, PREDICT_COMPILED
from kdiag.views import facts, versions, wording
from kdiag.views import verdict as verdicts

#: Phases under this share of every profiled scenario fold into one row in brief layouts.
MINOR_PHASE_SHARE = 0.05


@dataclasses.dataclass(frozen=True)
class Cell:
    text: str
    tone: str = ""  # "good", "bad", "noisy", "strong", "muted" or "": how a layout may mark it
    code: bool = False  # a name or path from the user's files
    suffix: str = ""  # plain text after a code cell: "(keras)" after the model's path
    short: Optional[str] = None  # what a narrow layout shows instead of `text`
    bar: Optional[float] = None  # a share (0 to 1) a layout may draw as a bar


@dataclasses.dataclass(frozen=True)
class Column:
    header: str
    align: str = "l"  # "l" or "r"
    detail: int = 0  # 0: every layout; 1: where there is room; 2: full layouts only (--verbose, report.md's full table)
    drop: int = 0  # which go first when a layout is too narrow, highest first; 0: never
    wraps: bool = False  # names may wrap; figures never do


@dataclasses.dataclass(frozen=True)
class Table:
    columns: Tuple[Column, ...]
    rows: Tuple[Tuple[Cell, ...], ...]
    title: str = ""
    caption: str = ""


@dataclasses.dataclass(frozen=True)
class Code:
    text: str
    language: str = "python"


@dataclasses.dataclass(frozen=True)
class Section:
    key: str  # what it holds; layouts place sections and draw charts by it
    title: str
    paragraphs: Tuple[str, ...] = ()
    tables: Tuple[Table, ...] = ()
    after: Tuple[str, ...] = ()  # paragraphs after the tables
    bullets: Tuple[str, ...] = ()
    code: Tuple[Code, ...] = ()
    subsections: Tuple["Section", ...] = ()
    detail: int = 0  # as Column.detail, for the whole section
    caption: str = ""  # what a brief layout (the terminal's default) shows instead of the paragraphs


def _cells(*texts: str, **tone) -> Tuple[Cell, ...]:
    return tuple(Cell(t, **tone) for t in texts)


def _ms_value(ms: Optional[float]) -> str:
    if ms is None or ms != ms:
        return "—"
    return f"{ms:.3g}"


def _count(result: Optional[StrategyResult]) -> str:
    m = result.measurement if result is not None else None
    return str(m.count) if m is not None and result.available and m.count else ""


# --- the environment and the model --------------------------------------------------------------

#: The rows of the environment table: the fields of TensorFlow's bug template first, in its order.
ENVIRONMENT_FIELDS = ("TensorFlow version", "TensorFlow installed from", "Custom code",
                      "OS platform and distribution", "Python version", "Keras version", "NumPy version",
                      "CUDA/cuDNN version", "GPU model and memory", "CPU", "CPU cores", "Threads", "oneDNN")


#: The bug template's field that a --tf run answers, after the TensorFlow version.
NIGHTLY_FIELD = "Reproduced with TensorFlow Nightly"


def environment(report: Report) -> Section:
    env = report.environment
    keras = (f"tf-keras {env.keras} (legacy Keras 2, TF_USE_LEGACY_KERAS=1)" if env.legacy_keras
             else f"{env.keras}, backend {env.keras_backend}")
    unknown = "not recorded"  # a report saved before kdiag recorded the field
    distribution = f"{env.os_distribution}; {env.os}" if env.os_distribution else env.os
    gpus = "; ".join(env.gpu_models) if env.gpu_models else (", ".join(env.gpus) if env.gpus else "none")
    custom = (f"No: kdiag's built-in example {report.model.name}" if report.model.format == "example"
              else "Yes: the user's own model")
    values = (f"{env.tensorflow} (git {env.tensorflow_git})", env.tensorflow_install or unknown, custom, distribution,
              env.python, keras, env.numpy or unknown, f"{env.cuda_build} (TensorFlow's build info)", gpus,
              env.cpu_model, str(env.cpu_cores),
              f"intra-op {fmt.threads(env.intra_op_threads)}, inter-op {fmt.threads(env.inter_op_threads)}",
              env.onednn)
    rows = tuple((Cell(k), Cell(v)) for k, v in zip(ENVIRONMENT_FIELDS, values))
    nightly = versions.nightly_text(report)
    if nightly is not None:  # --tf: the bug template's "Have you reproduced the bug with TensorFlow Nightly?"
        rows = rows[:1] + ((Cell(NIGHTLY_FIELD), Cell(nightly)),) + rows[1:]
    return Section("environment", "Environment", tables=(Table((Column("field"), Column("value", wraps=True)), rows),),
                   detail=2)


def model(report: Report) -> Section:
    m = report.model
    rows = [("Source", Cell(m.source, code=True, suffix=f"({m.format})")),
            ("Parameters", Cell(f"{m.parameters:,}" if m.parameters is not None else "unknown")),
            ("Batch size", Cell(str(m.batch_size))),
            ("Loaded in", Cell(fmt.duration(m.load_time_s))),
            ("Compiled with (for predict (compiled))", Cell(m.compile_config))]
    for item in m.inputs:
        shape = "(" + ", ".join("None" if d is None else str(d) for d in item.shape) + ")"
        rows.append((f"Input {item.name}", Cell(f"{shape} {item.dtype}, {item.value_range}")))
    if not m.keras_model:
        rows.append(("Keras model", Cell("no: a plain SavedModel, so the Keras-only strategies do not apply")))
    if m.training_dependent_layers:
        rows.append(("Layers that depend on training", Cell(", ".join(m.training_dependent_layers))))
        stray = m.training_true_max_abs_diff
        rows.append(("model(x, training=True) vs predict, max |diff|",
                     Cell("not measured" if stray is None else fmt.diff(stray))))
    table = Table((Column("field"), Column("value", wraps=True)), tuple((Cell(k), v) for k, v in rows))
    return Section("model", "Model", tables=(table,), detail=2)


# --- side by side (--keras both, --tf) ---------------------------------------------------------


def side_by_side(report: Report) -> Optional[Section]:
    """Every strategy's median and predict's phases under each run (each Keras of --keras both, each
    TensorFlow release of --tf), judged against the first run that measured the model."""
    runs = facts.side_by_side(report)
    measured = [run for run in runs if run.report is not None]
    if not measured:
        return None
    base = measured[0]
    releases = report.tf_versions is not None
    parts = [Section("side-by-side-strategies", "", tables=(_side_by_side_table(runs, base),))]
    phases = _side_by_side_phases(measured, "release" if releases else "Keras")
    if phases is not None:
        parts.append(phases)
    after = []
    if report.model.keras2_signs:
        after.append("The file looks saved by Keras 2: " + literal("; ".join(report.model.keras2_signs)) + ".")
    for run in measured:  # the other runs' own findings (the report's are the report's)
        own = facts.own_findings(report, run)
        if own:
            parts.append(Section("side-by-side-findings", f"Findings of the {run.label} run",
                                 bullets=tuple(f"[{f.severity}] {f.title}" for f in own)))
    if releases:
        return Section("side-by-side", "TensorFlow releases side by side",
                       paragraphs=(wording.releases(base.label, report.tf_versions.rounds),), after=tuple(after),
                       bullets=tuple(versions.release_lines(report)), subsections=tuple(parts))
    title = " and ".join(r.label for r in runs) + " side by side"
    return Section("side-by-side", title, paragraphs=(wording.keras_sides(base.label, runs[-1].label),),
                   after=tuple(after), subsections=tuple(parts))


def _side_by_side_table(runs: Sequence[facts.LabelledRun], base: facts.LabelledRun) -> Table:
    """Strategy x run: medians and call counts, each other measured run judged against `base`; compile()'s
    effect on predict within each run last."""
    others = [run for run in runs if run.report is not None and run is not base]
    columns = [Column("strategy", wraps=True)]
    for run in runs:
        columns += [Column(run.label, "r"), Column("n", "r", detail=2)]
    columns += [Column(f"{r.short} vs {base.short}", wraps=True) for r in others]
    names = [row.result.name for row in facts.strategy_rows(runs[-1].report or base.report)]
    names += [r.name for run in runs if run.report is not None for r in run.report.strategies]
    rows = []
    for name in dict.fromkeys(names):
        cells = [Cell(name)]
        for run in runs:
            result = run.report.strategy(name) if run.report is not None else None
            cells += [Cell(facts.keras_cell(result) if run.report is not None else "not measured"),
                      Cell(_count(result))]
        cells += [_verdict(facts.versus_text(base.report.strategy(name), run.report.strategy(name), run.short))
                  for run in others]
        rows.append(tuple(cells))
    compiled = [Cell("compile() on predict")]
    for run in runs:
        compiled += [_verdict(facts.compile_effect_text(run.report) if run.report is not None else "—"), Cell("")]
    rows.append(tuple(compiled) + tuple(Cell("") for _ in others))
    return Table(tuple(columns), tuple(rows))


def _verdict(text: str) -> Cell:
    """A verdict cell; a narrow layout shows "within noise" or "no verdict" without the figures behind it."""
    brief = next((short for long, short in (("within the noise", "within noise"), ("no verdict", "no verdict"))
                  if text.startswith(long)), None)
    return Cell(text, short=brief)


def _side_by_side_phases(runs: Sequence[facts.LabelledRun], what: str) -> Optional[Section]:
    """predict's phases under each run that profiled it, with each one's change from the first."""
    runs = [run for run in runs if run.report.profile(PREDICT.name) is not None]
    if len(runs) < 2:
        return None
    profiles = [run.report.profile(PREDICT.name) for run in runs]
    base = runs[0]
    columns = [Column("phase", wraps=True)]
    for run in runs:
        columns += [Column(f"{run.short} ms", "r"), Column("share", "r", detail=1)]
    deltas = [facts.phase_deltas(profiles[0], base.report.strategy(PREDICT.name), p, run.report.strategy(PREDICT.name))
              for run, p in zip(runs[1:], profiles[1:])]
    columns += [Column(f"{run.short} − {base.short}", "r") for run in runs[1:]]
    rows = []
    for index, delta in enumerate(deltas[0]):
        cells = [Cell(delta.phase), Cell(_ms_value(delta.before_ms)), Cell(f"{delta.share_before:.0%}")]
        for other in deltas:
            cells += [Cell(_ms_value(other[index].after_ms)), Cell(f"{other[index].share_after:.0%}")]
        rows.append(tuple(cells) + tuple(Cell(d[index].text) for d in deltas))
    traces = [Cell("traces per call (first call)")]
    for p in profiles:
        traces += [Cell(f"{p.traces_per_call:g} ({p.cold_traces})"), Cell("")]
    rows.append(tuple(traces) + tuple(Cell("") for _ in deltas))
    moves = [versions.phase_move(base, run) for run in runs[1:]]
    return Section("side-by-side-phases", f"predict's phases under each {what}",
                   paragraphs=("ms per warm call: each run's cProfile shares scaled to its unprofiled median.",),
                   tables=(Table(tuple(columns), tuple(rows)),),
                   after=("Moved most: " + "; ".join(m.text for m in moves) + ".",))


# --- strategies -------------------------------------------------------------------------------


#: The strategies table: what each layout shows where (detail), and what a narrow terminal drops first (drop).
STRATEGY_COLUMNS = (Column("strategy", wraps=True), Column("median", "r"), Column("95% CI", "r", detail=2, drop=11),
                    Column("IQR", "r", detail=2, drop=10),
                    Column("p90", "r", detail=1, drop=4), Column("p99", "r", detail=1, drop=7),
                    Column("n", "r", detail=1, drop=5), Column("first call", "r", detail=1, drop=6),
                    Column("vs predict", "r"), Column("vs fastest", "r", detail=1, drop=8),
                    Column("outputs", wraps=True))


def strategies(report: Report) -> Section:
    """The measured strategies fastest first, then what was not measured and the notes."""
    rows = [r for r in facts.strategy_rows(report) if facts.median(r.result) is not None]
    columns = STRATEGY_COLUMNS
    cells = []
    for row in rows:
        m = row.result.measurement
        cells.append((Cell(row.result.name + (" (stopped early)" if m.stopped_early else "")),
                      Cell(fmt.duration(m.median_s), tone="noisy" if m.noisy else ""), Cell(fmt.interval(m)),
                      Cell(fmt.duration(m.iqr_s)), Cell(fmt.duration(m.p90_s)), Cell(fmt.duration(m.p99_s)),
                      Cell(fmt.samples(m)), Cell(fmt.duration(m.first_call_s)),
                      Cell(facts.versus_predict(report, row.result)),
                      Cell(fmt.ratio(row.vs_fastest)), _outputs_cell(row.result)))
    intro = " ".join([f"Time per call, fastest first. {wording.VERSUS_PREDICT}", wording.NOISE_MARK,
                      wording.PRECISION, wording.tolerance(report), wording.NEVER_RECOMMENDED])
    table = Table(columns, tuple(cells))
    check = facts.reference_check(report)
    outputs = (f"outputs match {check.reference}'s when |diff| ≤ {check.atol:g} + {check.rtol:g}·|{check.reference}|"
               if check else "outputs: not compared (no reference ran)")
    caption = f"{wording.VERSUS_PREDICT_SHORT} · ~ noisy: IQR/median > {NOISE_THRESHOLD:.0%} · {outputs}"
    return Section("strategies", "Strategies", paragraphs=(intro,), tables=(table,) if cells else (), caption=caption,
                   after=() if cells else (wording.NO_STRATEGY,),
                   subsections=tuple(s for s in (not_measured(report), notes(report)) if s is not None))


def _outputs_cell(result: StrategyResult) -> Cell:
    check = result.outputs
    if check is None:
        return Cell("not checked")
    if check.varies:
        return Cell(facts.outputs_text(result), tone="bad", short="vary")
    if check.reference == result.name:
        return Cell("reference", tone="good")
    if check.matches:
        return Cell(facts.outputs_text(result), tone="good", short="match")
    return Cell(facts.outputs_text(result), tone="bad", short="differ")


def not_measured(report: Report) -> Optional[Section]:
    measured = facts.measured(report)
    rows = tuple((Cell(r.name), Cell(r.reason or "no timed calls")) for r in report.strategies if r not in measured)
    if not rows:
        return None
    return Section("not-measured", "Not measured",
                   tables=(Table((Column("strategy"), Column("why", wraps=True)), rows),))


def notes(report: Report) -> Optional[Section]:
    """What a reader should know beside the table: noise, strategies stopped early or differing, warnings."""
    lines = []
    noisy = [r.name for r in report.strategies if r.measurement and r.measurement.count and r.measurement.noisy]
    if noisy and not any(f.id == "noisy" for f in report.findings):  # the finding says it already
        lines.append(f"Noisy ({wording.NOISE_MARK[2:-1]}): {', '.join(noisy)}. Another process may be using the CPU; "
                     "rounds were interleaved so ratios stay comparable, but re-run for firmer figures.")
    for result in report.strategies:
        m = result.measurement
        if m is not None and m.stopped_early:
            lines.append(f"{result.name}: stopped early after {fmt.count(m.count, 'timed call')} (the time limit; "
                         f"--min-calls {report.settings.min_calls}) — its figures rest on few samples.")
        if facts.outputs_differ(result):
            detail = f" ({result.outputs.detail})" if result.outputs.detail else ""
            lines.append(f"{result.name}: outputs differ from {result.outputs.reference}'s{detail}; it is never "
                         "recommended.")
        lines += [f"{result.name}: {note}" for note in result.notes]
    lines += facts.floor_gaps(report) + list(report.notes)
    return Section("notes", "Notes", bullets=tuple(lines)) if lines else None


# --- phases ----------------------------------------------------------------------------------


def phases(report: Report, brief: bool = False) -> Optional[Section]:
    """predict's phases before and after compile() side by side, with the compile() delta; the other
    profiled scenarios in a table of their own. `brief`: phases under MINOR_PHASE_SHARE fold into one row."""
    pair = [p for p in (report.profile(PREDICT.name), report.profile(PREDICT_COMPILED.name)) if p is not None]
    others = [p for p in report.profiles if p.scenario not in (PREDICT.name, PREDICT_COMPILED.name)]
    if not pair and not others:
        return None
    main = pair or others[:1]
    others = [p for p in others if p not in main]
    tables, after = [], []
    paragraphs = (wording.phase_scaling(main, "before and after compile()" if len(main) == 2 else "per call"),)
    tables.append(_phase_table(report, main, brief))
    traces = ", ".join(f"{p.scenario} {p.traces_per_call:g} ({p.cold_traces})" for p in main)
    after.append(f"Concrete functions traced per warm call (on the first call): {traces}.")
    after.append(f"Phase rules: `{main[0].ruleset}` (`kdiag rules` prints the landmark functions of each phase).")
    subsections = ()
    if others:
        rows = []
        for p in others:
            top = sorted((r for r in p.phases if r.share > 0), key=lambda r: -r.share)[:3]
            rows.append((Cell(p.scenario), Cell(fmt.duration(p.unprofiled_median_s)), Cell(fmt.ratio(p.inflation)),
                         Cell(", ".join(f"{r.name} {_ms_value(r.ms_per_call)} ms ({r.share:.0%})" for r in top)
                              or "—")))
        table = Table((Column("scenario"), Column("unprofiled median", "r"), Column("profiled / unprofiled time", "r"),
                       Column("largest phases", wraps=True)), tuple(rows))
        subsections = (Section("other-scenarios", "Other profiled scenarios",
                               paragraphs=(wording.phase_scaling(others, "for each scenario"),), tables=(table,),
                               detail=2),)
    inflation = ", ".join(f"{p.scenario} {fmt.ratio(p.inflation)}" for p in main)
    caption = (f"ms per warm call = cProfile's share × the unprofiled median (profiled / unprofiled time: {inflation})"
               f" · traces per warm call (first call): {traces}.")
    return Section("phases", "Where the time goes", paragraphs=paragraphs, tables=tuple(tables),
                   after=tuple(after), subsections=subsections, caption=caption)


def _phase_table(report: Report, profiles: Sequence[ProfileResult], brief: bool) -> Table:
    by_name = [{r.name: r for r in p.phases} for p in profiles]
    names, minor = _phase_names(by_name)
    minor = minor if brief else []
    deltas = {d.phase: d for d in facts.compile_phase_deltas(report)}
    columns = [Column("phase", wraps=True)]
    for p in profiles:
        columns += [Column(f"{p.scenario} ms/call", "r"), Column("share", "r")]
    if deltas:
        columns.append(Column("compile() Δ ms/call", "r"))
    rows = [_phase_row(name, [rows.get(name) for rows in by_name], deltas.get(name) if deltas else None, bool(deltas))
            for name in names if name not in minor]
    if minor:
        rows.append(_minor_row(minor, by_name, deltas))
    rows.append(_total_row(report, profiles, bool(deltas)))
    return Table(tuple(columns), tuple(rows))


def _phase_names(by_name) -> Tuple[List[str], List[str]]:
    """(every phase of the profiles, in the vocabulary's order; those under MINOR_PHASE_SHARE in all of them)."""
    names = [n for n in PHASES if any(n in rows for rows in by_name)]
    names += [n for rows in by_name for n in rows if n not in names]
    minor = [n for n in names if all((rows[n].share if n in rows else 0) < MINOR_PHASE_SHARE for rows in by_name)]
    return names, minor


def _minor_row(minor: Sequence[str], by_name, deltas) -> Tuple[Cell, ...]:
    """The phases under MINOR_PHASE_SHARE everywhere, as one row."""
    cells = [Cell(f"{len(minor)} phases under {MINOR_PHASE_SHARE:.0%}")]
    for rows in by_name:
        picked = [rows[n] for n in minor if n in rows]
        share = sum(r.share for r in picked)
        cells += [Cell(_ms_value(sum(r.ms_per_call for r in picked))), Cell(f"{share:.0%}", bar=share)]
    if deltas:
        inside = all(not deltas[n].beyond_noise for n in minor if n in deltas)
        cells.append(Cell("within the noise" if inside else "see the full report"))
    return tuple(cells)


def _total_row(report: Report, profiles: Sequence[ProfileResult], with_delta: bool) -> Tuple[Cell, ...]:
    cells = [Cell("total", tone="strong")]
    for p in profiles:
        cells += [Cell(_ms_value(sum(r.ms_per_call for r in p.phases)), tone="strong"), Cell("100%", tone="strong")]
    if with_delta:
        overall = facts.compile_total_delta(report)
        cells.append(Cell(overall.text if overall else "—", tone="strong"))
    return tuple(cells)


def _phase_row(name, rows, delta, with_delta: bool) -> Tuple[Cell, ...]:
    cells = [Cell(name)]
    for row in rows:
        cells += [Cell(_ms_value(row.ms_per_call) if row else "—"),
                  Cell(f"{row.share:.0%}" if row else "—", bar=row.share if row else None)]
    if with_delta:
        cells.append(Cell(delta.text if delta is not None else "—"))
    return tuple(cells)


def tracing(report: Report) -> Optional[Section]:
    if not report.profiles:
        return None
    rows = tuple((Cell(p.scenario), Cell(f"{p.traces_per_call:.3g}"), Cell(str(p.cold_traces)), Cell(str(p.calls)),
                  Cell(str(len(p.retracing_warnings)))) for p in report.profiles)
    table = Table((Column("scenario"), Column("per warm call", "r"), Column("first call", "r"),
                   Column("warm calls profiled", "r"), Column("retracing warnings", "r")), rows)
    after = ()
    if not report.environment.legacy_keras and any(p.scenario in (PREDICT.name, PREDICT_COMPILED.name)
                                                   and p.traces_per_call for p in report.profiles):
        after = (wording.KERAS3_TRACES,)
    warnings = tuple(f"{p.scenario}: {' '.join(text.split())}" for p in report.profiles for text in p.retracing_warnings)
    return Section("tracing", "Tracing per call", paragraphs=(
        "Concrete functions created (graphs traced) per call, counted by cProfile in the profiling pass.",),
        tables=(table,), after=after, bullets=warnings, detail=1)


def top_functions(report: Report, per_phase: Optional[int] = None, min_share: float = 0.0) -> Optional[Section]:
    """The functions that took the most own time in each phase, per profiled scenario (as profiled, not scaled)."""
    profiles = [p for p in report.profiles if p.top_functions]
    if not profiles:
        return None
    parts = []
    for p in profiles:
        rows = []
        for phase in _phase_order(p.top_functions):
            if min_share and (p.phase(phase) is None or p.phase(phase).share < min_share):
                continue
            funcs = sorted((f for f in p.top_functions if f.phase == phase), key=lambda f: -f.own_s)
            rows += [(Cell(phase), Cell(f.qualname, code=True),
                      Cell("built-in" if f.file == "~" else f"{f.file}:{f.line}", code=True),
                      Cell(_ms_value(f.own_s * 1e3 / max(1, p.calls)))) for f in funcs[:per_phase]]
        table = Table((Column("phase"), Column("function", wraps=True), Column("file:line", wraps=True),
                       Column("own ms per call", "r")), tuple(rows))
        parts.append(Section(f"top-functions-{p.scenario}", f"Top functions of {p.scenario} ({p.calls} warm calls "
                                                             "profiled)", tables=(table,)))
    return Section("top-functions", "Top functions per phase", paragraphs=(
        "Own time per profiled call as cProfile saw it (inflated by the profiler, not scaled), for the functions "
        "that took the most time in each phase.",), subsections=tuple(parts), detail=2)


def _phase_order(functions: Sequence[TopFunction]) -> List[str]:
    present = {f.phase for f in functions}
    return [p for p in PHASES if p in present] + sorted(present - set(PHASES))


# --- beyond one batch --------------------------------------------------------------------------


def data_size(sweep) -> Section:
    title = "Data size: predict against loops, end to end"
    if sweep.reason or not sweep.counts:
        return Section("data-size", title, paragraphs=(literal(sweep.reason) if sweep.reason else
                                                       "No sample count was measured.",),
                       bullets=tuple(sweep.skipped))
    header = [Column("samples", "r")] + [Column(s.strategy if s is sweep.predict else f"{s.strategy} loop", "r")
                                         for s in sweep.series] + [Column("predict / fastest loop", "r")]
    rows = []
    for n in sweep.counts:
        cells = [Cell(f"{n:,}")]
        for series in sweep.series:
            seconds = series.seconds_at(n)
            cells.append(Cell(f"{fmt.duration(seconds * 1000 / n)} ({fmt.duration(seconds)})"))
        rows.append(tuple(cells) + (Cell(fmt.ratio(sweep.ratio_at(n))),))
    predict_batch = sweep.predict_batch_size or sweep.batch_size
    intro = (f"Data size: the whole array end to end, scored three ways, interleaved, at each sample count: "
             f"`{sweep.predict.how}` (in batches of {predict_batch}) and loops over chunks of {sweep.batch_size}; "
             "time per 1,000 samples (the whole array's time in brackets).")
    return Section("data-size", title, paragraphs=(intro,), tables=(Table(tuple(header), tuple(rows)),),
                   after=(wording.crossover(sweep),), bullets=tuple(sweep.skipped))


def batch_size(sweep) -> Section:
    title = f"Batch size: {sweep.strategy or 'the best path'}"
    if sweep.reason or not sweep.points:
        return Section("batch-size", title, paragraphs=(literal(sweep.reason) if sweep.reason else
                                                        "No batch size was measured.",))
    knee = sweep.knee()
    rows = tuple((Cell(f"{batch:,}", tone="strong" if batch == knee else ""), Cell(fmt.duration(seconds)),
                  Cell(fmt.duration(seconds / batch)), Cell(f"{rate:,.0f}"))
                 for (batch, seconds), (_, rate) in zip(sweep.points, sweep.throughput))
    columns = tuple(Column(h, "r") for h in ("batch", "per call", "per sample", "samples/s"))
    return Section("batch-size", title, tables=(Table(columns, rows),), after=(wording.knee(sweep),))


def memory_loops(loops) -> Section:
    title = "Memory over many calls"
    if loops.reason:
        return Section("memory", title, paragraphs=(literal(loops.reason),))
    rows = []
    for loop in loops.loops:
        if loop.reason:
            rows.append(_cells(loop.strategy, "—", "—", "—", "—", loop.reason))
            continue
        rows.append(_cells(loop.strategy, f"{loop.calls:,}", fmt.duration(loop.seconds),
                           facts.size_text(loop.peak_rss_bytes), facts.growth_text(loop), facts.memory_verdict(loop)))
    columns = (Column("strategy"), Column("calls", "r"), Column("time", "r"), Column("peak RSS", "r"),
               Column("growth", wraps=True), Column("verdict", wraps=True))
    return Section("memory", title, paragraphs=(wording.MEMORY_LOOPS,), tables=(Table(columns, tuple(rows)),))


def op_breakdown(ops) -> Section:
    title = f"What execution is made of: {ops.strategy or 'the best path'}"
    if ops.reason:
        return Section("ops", title, paragraphs=(literal(ops.reason),))
    rows = [(Cell(op.name, code=True), Cell(facts.op_type_text(op)), Cell(f"{op.occurrences:,}"),
             Cell(fmt.duration(op.self_s / ops.calls)), Cell(f"{op.share:.1%}")) for op in ops.ops]
    if ops.other_ops:
        rows.append((Cell(f"{ops.other_ops} other ops", tone="muted"),) + _cells("", "", "", f"{ops.other_share:.1%}"))
    columns = (Column("op", wraps=True), Column("type"), Column("count", "r"), Column("self time per call", "r"),
               Column("share", "r"))
    types = ", ".join(literal(t.name, code=True) + f" {t.share:.0%}"
                      + (f" (kernel {literal(t.kernel, code=True)})" if t.kernel else "") for t in ops.by_type[:8])
    return Section("ops", title, paragraphs=(wording.op_breakdown(ops),), tables=(Table(columns, tuple(rows)),),
                   after=(f"By op type: {types}.",))


def threads(effect) -> Section:
    return Section("threads", "Intra-op threads",
                   paragraphs=(literal(f"{effect.strategy or 'The best path'}: {facts.threads_text(effect)}."),))


#: The parts beyond one batch, in the order they are shown: the Report field and its section.
BEYOND_SECTIONS: Tuple[Tuple[str, Callable[[object], Section]], ...] = (
    ("data_size_sweep", data_size), ("batch_size_sweep", batch_size), ("memory_loops", memory_loops),
    ("op_breakdown", op_breakdown), ("threads_effect", threads),
)


def beyond_one_batch(report: Report) -> Optional[Section]:
    """Data size, batch size, memory over many calls, the op breakdown and the threads effect: what the run has."""
    parts = tuple(build(getattr(report, field)) for field, build in BEYOND_SECTIONS
                  if getattr(report, field) is not None)
    return Section("beyond", "Beyond one batch", subsections=parts, detail=1) if parts else None


# --- profiles, and how to reproduce ---------------------------------------------------------------


def profile_files(report: Report, redacted_copies: bool = False) -> Optional[Section]:
    if not report.profiles:
        return None
    title = "Profiles (kdiag view FILE opens one in snakeviz)"
    kept = [p for p in report.profiles if p.prof_path]
    if not kept:
        return Section("profiles", title, paragraphs=(wording.PROFILES_NOT_KEPT,), detail=1)
    rows = tuple((Cell(p.scenario), Cell(p.prof_path, code=True), Cell(p.cold_prof_path, code=True)) for p in kept)
    attach = ("These are the copies in `redacted/`, whose file names show local paths as above: attach them to the "
              "issue if a maintainer asks." if redacted_copies else "Attach them to the issue if a maintainer asks.")
    commands = "\n".join(f"kdiag view {shell_path(path)}" for p in kept for path in (p.prof_path, p.cold_prof_path)
                          if path)
    return Section("profiles", title, paragraphs=(
        "Each scenario was profiled on a fresh model: one cold call (`.cold.prof`), then the warm calls; "
        "`python3 -m pstats FILE` reads one in a terminal. " + attach,),
        tables=(Table((Column("scenario"), Column("warm calls", wraps=True), Column("first call", wraps=True)), rows),),
        code=(Code(commands, "sh"),), detail=1)


def shell_path(path: str) -> str:
    """Quoted for a shell, leaving a leading ~/ outside the quotes so that the shell still expands it."""
    if path.startswith(HOME + "/"):
        return HOME + "/" + shlex.quote(path[len(HOME) + 1:])
    return shlex.quote(path)


#: Code lines in the reports are at most this long (an issue column: 88 characters of code).
CODE_WIDTH = 88


def shell_lines(command: str, width: int = CODE_WIDTH) -> str:
    """A shell command on lines of at most `width` characters, continued with a backslash: broken only
    at spaces outside quotes, so that it runs as one command when pasted (a word longer than the
    width stays whole)."""
    words, current, quote = [], "", ""
    for char in command:
        if char in "'\"" and (not quote or quote == char):
            quote = "" if quote else char
        if char == " " and not quote:
            if current:
                words.append(current)
            current = ""
        else:
            current += char
    words += [current] if current else []
    lines, line = [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width - 2:
            lines.append(line + " \\")
            line = "  " + word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join(lines + [line])


def reproduce(report: Report) -> Section:
    """The commands that run this measurement again, and what they need."""
    env = report.environment
    install = f'python3 -m pip install "tensorflow=={env.tensorflow}"'
    install += f' "tf-keras=={env.keras}"' if env.legacy_keras else f' "keras=={env.keras}"'
    command = report.settings.command
    if env.legacy_keras and "TF_USE_LEGACY_KERAS" not in command:
        command = "TF_USE_LEGACY_KERAS=1 " + command
    script = "\n".join([f"{install}  # the versions measured",
                        f"python3 -m pip install -e .  # in a checkout of kdiag {report.kdiag_version}",
                        shell_lines(command)])
    needs = []
    if not report.model.source.startswith("example:"):
        needs.append(f"the model {literal(report.model.source, code=True)}")
    if any(i.value_range == "user data" for i in report.model.inputs):
        needs.append("the same input file")
    return Section("reproduce", "How to reproduce", code=(Code(script, "sh"),),
                   after=(f"This needs {' and '.join(needs)}.",) if needs else ())


def standalone_repro(report: Report, script: Optional[str], file_name: str) -> Section:
    """repro.py, which needs TensorFlow alone: what it does, and the script (None: shown elsewhere)."""
    title = "Standalone code to reproduce"
    why = verdicts.repro_unavailable_reason(report)
    if why is not None:
        return Section("repro", title, paragraphs=(f"No standalone script for this run: {why}.",))
    text = (f"`{file_name}`, in the run folder, needs only TensorFlow. `python {file_name} MODEL` times predict "
            f"against {verdicts.verdict(report).fix.name}, the drop-in fix, on the model file, as kdiag does, "
            "prints both medians, and ends with \"reproduced\" or \"not reproduced\" (the two ratios within a "
            f"factor of 2, or not); `python {file_name} --synthetic MODEL` rebuilds the model from its architecture "
            "config with random weights, so the user's weights are not needed.")
    return Section("repro", title, paragraphs=(text,), code=(Code(script, "python"),) if script else ())


def snippet_language(strategy: Optional[str]) -> str:
    identity = BY_NAME.get(strategy or "")
    return identity.language if identity is not None else "python"


#: Every section in the order a full report shows them (the findings sit between the phases and the
#: top functions; each layout places the findings, the header and the verdict itself).
BEFORE_FINDINGS: Tuple[Callable[[Report], Optional[Section]], ...] = (
    side_by_side, strategies, phases, tracing, beyond_one_batch)
AFTER_FINDINGS: Tuple[Callable[[Report], Optional[Section]], ...] = (top_functions,)
