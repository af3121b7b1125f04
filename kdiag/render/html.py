"""report.html: the run as one self-contained page with charts, to look at instead of read.

Sections: the verdict (environment folded), the strategies on a log axis, the latency
distribution from the raw samples, the phases before and after compile(), predict's call
tree, the findings with copyable snippets, and a hook for sweeps.

The charts are matplotlib figures saved as SVG and inlined, text kept as text
(`svg.fonttype: none`), so the page needs no network, no CDN and no script library; a
Content-Security-Policy in the page forbids any fetch and lets only its own small script
run. matplotlib is optional (`pip install kdiag[html]`) and imported only when a page is
rendered: without it, each chart says it was not drawn and the tables are still there.
A chart that fails to draw says why in its place instead of losing the run's report.

Everything from the Report is escaped: model names, file paths and snippets are the
user's (or a downloaded file's) text. Strategy names reach the charts as plain text:
mathtext is off, so a `$` is a dollar sign.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import shlex
import warnings
from typing import Callable, List, Optional, Sequence, Tuple

from kdiag import format as fmt
from kdiag import views, views_versions
from kdiag.datamodel.measurement import NOISE_THRESHOLD, percentile
from kdiag.datamodel.profile import (CALLBACKS, EAGER, GRAPH, INPUT, OTHER, OUTPUT, PHASES, TFDATA, TRACING, CallNode,
                                     ProfileResult)
from kdiag.datamodel.report import Finding, Report, StrategyResult
from kdiag.datamodel.strategies import BY_NAME, FLOORS, PREDICT, PREDICT_COMPILED
from kdiag.errors import first_line
from kdiag.version import __version__

INSTALL_HINT = "pip install kdiag[html]"

#: One colour per phase (Okabe-Ito, distinguishable with the common colour-vision deficiencies),
#: the same in the phase bars, the icicle and the call tree.
PHASE_COLOURS = {
    INPUT: "#56B4E9",
    TFDATA: "#0072B2",
    TRACING: "#D55E00",
    GRAPH: "#009E73",
    EAGER: "#E69F00",
    CALLBACKS: "#CC79A7",
    OUTPUT: "#F0E442",
    OTHER: "#999999",
}
UNKNOWN_PHASE_COLOUR = "#DDDDDD"

MATCH_COLOUR = "#3A6EA5"
DIFFER_COLOUR = "#C0392B"
UNCHECKED_COLOUR = "#9E9E9E"
COLD_COLOUR = "#C0392B"

#: The charts draw statistics of the samples (all of them), never a mark per sample, so a
#: page does not grow with the sample count; these rcParams keep the SVG small and the same
#: for the same Report: text as <text>, ids from a fixed salt, no mathtext.
RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "kdiag",
    "text.parse_math": False,
    "text.usetex": False,
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "axes.titlelocation": "left",
}
WIDTH_IN = 10.0
ICICLE_MAX_DEPTH = 32  # deeper levels are slivers; the call tree below has them
#: A call tree node opens by default while it holds at least this share of the profile: the hot path.
OPEN_SHARE = 0.15


def render(report: Report) -> str:
    """The whole page, as a string."""
    charts = Charts()
    body = "\n".join(part for part in (
        _verdict(report),
        _tf_versions(report),
        _strategies(report, charts),
        _distribution(report, charts),
        _phases(report, charts),
        _profile(report, charts),
        _findings(report),
        _sweeps(report, charts),
    ) if part)
    title = f"kdiag report: {report.model.name}"
    return PAGE.format(
        csp=_content_security_policy(),
        title=e(title),
        style=STYLE,
        h1=e(title),
        body=body,
        footer=e(f"kdiag {__version__} · {report.settings.timestamp}"),
        script=SCRIPT,
    )


def e(value: object) -> str:
    """Text for HTML, attribute values included."""
    return html.escape(str(value), quote=True)


# --- charts ------------------------------------------------------------------------------


class Charts:
    """matplotlib, imported when a page is rendered; every chart comes back as inline SVG or a note saying why not."""

    def __init__(self):
        self._figure = None
        self._rc_context = None
        self.missing: Optional[str] = None
        try:
            import matplotlib
            from matplotlib.figure import Figure
        except Exception as exc:  # not installed, or an install that cannot start
            self.missing = ("not drawn: matplotlib is not installed" if isinstance(exc, ImportError)
                            else f"not drawn: matplotlib failed to load ({first_line(exc, 160)})")
        else:
            self._figure = Figure
            self._rc_context = matplotlib.rc_context

    def draw(self, what: str, height_in: float, build: Callable, *args) -> str:
        """build(figure, *args) fills a new figure; the SVG, or a note where the chart would be."""
        if self._figure is None:
            return _note(f"{what}: {self.missing} ({INSTALL_HINT}).")
        try:
            with self._rc_context(RC), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # matplotlib's warnings are no news to a kdiag user
                figure = self._figure(figsize=(WIDTH_IN, max(1.2, height_in)))
                build(figure, *args)
                buffer = io.StringIO()
                figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
        except Exception as exc:  # a chart must never cost the run its report
            return _note(f"{what}: not drawn ({type(exc).__name__}: {first_line(exc, 200)}).")
        svg = buffer.getvalue()
        return f'<figure class="chart" aria-label="{e(what)}">{svg[svg.index("<svg"):]}</figure>'


def _note(text: str) -> str:
    return f'<p class="nochart">{e(text)}</p>'


def _log_limits(low: float, high: float, right_room: float = 1.0) -> Tuple[float, float]:
    return low / 2.5, high * 2.5 * right_room


def _seconds_log_axis(ax) -> None:
    """A log x axis of seconds labelled 1 µs, 10 µs, 1 ms...: matplotlib's own log labels are
    mathtext, which is switched off so that names are never parsed as math."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: fmt.duration(value)))
    ax.xaxis.set_minor_formatter(NullFormatter())


# --- 1. verdict and environment ----------------------------------------------------------


def _verdict(report: Report) -> str:
    s = report.settings
    best = views.fastest_matching(report)
    predict = views.timed(report, PREDICT.name)
    if best is not None:
        versus = ""
        if predict is not None and best is not predict:
            versus = (f", {fmt.ratio(views.median(predict) / views.median(best))} faster than predict "
                      f"({fmt.duration(views.median(predict))})")
        verdict = (f"Fastest with matching outputs: <strong>{e(best.name)}</strong>, "
                   f"{e(fmt.duration(views.median(best)))} per call{e(versus)}.")
    else:
        verdict = "No measured strategy has outputs checked against a reference, so none is recommended."
    parts = [f'<section id="verdict"><p class="verdict">{verdict}</p>']
    if report.findings:
        top = report.findings[0]
        parts.append(f'<p>Top finding: <a href="#finding-1">{e(top.title)}</a></p>')
    if report.incomplete:
        parts.append('<p class="warn"><strong>Incomplete run:</strong> kdiag stopped before it measured '
                     "everything; the figures below are what it measured up to then.</p>")
    parts.append(f"<p class=\"meta\">{len(views.measured(report))} ways of calling the model timed, batch size "
                 f"{e(s.batch_size)}, budget {e(f'{s.budget_s:g}')} s per strategy (at least {e(s.min_calls)} "
                 f"calls), rounds interleaved. Command: <code>{e(s.command)}</code></p>")
    parts.append(_environment(report))
    parts.append("</section>")
    return "\n".join(parts)


def _environment(report: Report) -> str:
    env, model = report.environment, report.model
    keras = (f"tf-keras {env.keras} (legacy Keras 2)" if env.legacy_keras
             else f"{env.keras}, backend {env.keras_backend}")
    rows = [
        ("TensorFlow", f"{env.tensorflow} (git {env.tensorflow_git}), {env.cuda_build}"),
        ("Keras", keras),
        ("Python", env.python),
        ("OS", env.os),
        ("CPU", f"{env.cpu_model}, {env.cpu_cores} cores"),
        ("Threads", f"intra-op {fmt.threads(env.intra_op_threads)}, inter-op {fmt.threads(env.inter_op_threads)}"),
        ("oneDNN", env.onednn),
        ("GPU", ", ".join(env.gpus) or "none"),
        ("Model", f"{model.source} ({model.format}), loaded in {fmt.duration(model.load_time_s)}"),
        ("Parameters", f"{model.parameters:,}" if model.parameters is not None else "unknown"),
    ]
    for item in model.inputs:
        shape = "(" + ", ".join("None" if d is None else str(d) for d in item.shape) + ")"
        rows.append((f"Input {item.name}", f"{shape} {item.dtype}, {item.value_range}"))
    rows.append(("Compiled with", model.compile_config))
    return ("<details><summary>Environment and model</summary>"
            + _table(("field", "value"), rows) + "</details>")


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{e(c)}</td>' if i in numeric else f"<td>{e(c)}</td>"
                         for i, c in enumerate(row)) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _tf_versions(report: Report) -> str:
    """--tf: the version table, predict's phases per release and how each release ran (kdiag.views_versions)."""
    table = views_versions.version_table(report)
    if table is None:
        return ""
    parts = [f'<section id="tf-versions"><h2>{e(table.title)}</h2>', _data_table(table)]
    phases = views_versions.phase_table(report)
    if phases is not None:
        parts += [f"<h3>{e(phases.title)}</h3>", _data_table(phases)]
    parts.append("<ul>" + "".join(f"<li>{e(line)}</li>" for line in views_versions.version_lines(report)) + "</ul>")
    return "\n".join(parts) + "</section>"


def _data_table(data: "views_versions.TableData") -> str:
    numeric = [i for i in range(len(data.headers)) if data.align[i:i + 1] == "r"]
    return _table(data.headers, data.rows, numeric) + (f'<p class="meta">{e(data.caption)}</p>' if data.caption
                                                       else "")


# --- 2. strategies ---------------------------------------------------------------------


def _status(result: StrategyResult) -> Tuple[str, str]:
    """(label, colour) of a measured strategy's outputs."""
    if views.outputs_differ(result):
        return "outputs differ", DIFFER_COLOUR
    if result.outputs is None:
        return "outputs not checked", UNCHECKED_COLOUR
    return "outputs match", MATCH_COLOUR


def _quartiles(result: StrategyResult) -> Tuple[float, float, float]:
    ordered = sorted(result.measurement.samples_s)  # once: percentile() re-sorts a sorted list in linear time
    return percentile(ordered, 25), views.median(result), percentile(ordered, 75)


def _strategy_chart(figure, report: Report) -> None:
    from matplotlib.patches import Patch

    rows = views.strategy_rows(report)
    measured = [r.result for r in rows if views.median(r.result) is not None]
    ax = figure.add_subplot()
    names = [r.result.name for r in rows]
    ys = list(range(len(rows)))[::-1]  # fastest at the top
    quartiles = {r.name: _quartiles(r) for r in measured}
    lows = [q[0] for q in quartiles.values()]
    highs = [q[2] for q in quartiles.values()]
    low, high = _log_limits(min(lows), max(highs), right_room=12.0)
    _seconds_log_axis(ax)
    ax.set_xlim(low, high)
    for y, row in zip(ys, rows):
        result = row.result
        if views.median(result) is None:
            why = result.reason or "no timed calls"
            ax.text(low * 1.1, y, "not measured: " + _shorten(why, 70), va="center", color="#777777",
                    style="italic")
            continue
        q1, med, q3 = quartiles[result.name]
        label, colour = _status(result)
        floor = result.name in FLOORS
        ax.barh(y, med - low, left=low, height=0.62, color=colour, hatch="///" if floor else None,
                edgecolor="white" if floor else colour, linewidth=0)
        ax.errorbar(med, y, xerr=[[med - q1], [q3 - med]], fmt="none", ecolor="#222222", elinewidth=1, capsize=3)
        words = [fmt.duration(med)]
        if row.vs_predict is not None and result.name != PREDICT.name:
            words.append(f"{fmt.ratio(row.vs_predict)} faster than predict" if row.vs_predict >= 1
                         else f"{fmt.ratio(1 / row.vs_predict)} slower than predict")
        if result.measurement.stopped_early:
            words.append(f"stopped early after {result.measurement.count} calls")
        if floor:
            words.append("floor")
        if label != "outputs match":
            words.append(label)
        ax.text(q3 * 1.25, y, " · ".join(words), va="center", color=DIFFER_COLOUR if label == "outputs differ" else "#222222")
    floors = [r for r in measured if r.name in FLOORS and views.outputs_match(r)]
    if floors:
        floor = min(floors, key=views.median)
        ax.axvline(views.median(floor), color="#444444", linestyle=":", linewidth=1)
    ax.set_yticks(ys)
    ax.set_yticklabels(names)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("median time per call, log scale; whiskers: IQR (25th to 75th percentile); "
                  "dotted line: the fastest floor")
    handles = [Patch(color=MATCH_COLOUR, label="outputs match"), Patch(color=DIFFER_COLOUR, label="outputs differ"),
               Patch(color=UNCHECKED_COLOUR, label="outputs not checked"),
               Patch(facecolor=MATCH_COLOUR, edgecolor="white", hatch="///", label="floor (" + ", ".join(FLOORS) + ")")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.45 / figure.get_figheight() - 0.06),
              ncol=4, frameon=False, fontsize=8)


def _strategies(report: Report, charts: Charts) -> str:
    rows = views.strategy_rows(report)
    parts = ['<section id="strategies"><h2>Strategies</h2>']
    if any(views.median(r.result) is not None for r in rows):
        parts.append(charts.draw("strategies: median per call", 0.42 * len(rows) + 1.0, _strategy_chart, report))
    else:
        parts.append("<p>No strategy was measured.</p>")
    check = views.reference_check(report)
    tolerance = (f"Outputs are compared with {check.reference}'s on the same inputs: |diff| ≤ {check.atol:g} + "
                 f"{check.rtol:g}·|reference| element-wise." if check else "No reference ran, so no outputs were "
                                                                            "compared.")
    parts.append(f"<p class=\"meta\">{e(tolerance)} ~ marks a noisy measurement (IQR/median > "
                 f"{NOISE_THRESHOLD:.0%}). A strategy whose outputs differ is never recommended.</p>")
    table_rows = []
    for row in rows:
        result, m = row.result, row.result.measurement
        if views.median(result) is None:
            table_rows.append((result.name, "not measured", "", "", "", "", "", "", result.reason or "no timed calls"))
            continue
        table_rows.append((
            result.name + (" (stopped early)" if m.stopped_early else ""),
            fmt.duration(m.median_s) + (" ~" if m.noisy else ""), fmt.duration(m.iqr_s), fmt.duration(m.p90_s),
            fmt.duration(m.p99_s), f"{m.count:,}", fmt.duration(m.first_call_s), fmt.ratio(row.vs_predict),
            _outputs_text(result)))
    parts.append(_table(("strategy", "median", "IQR", "p90", "p99", "n", "first call", "speed-up vs predict",
                         "outputs"), table_rows, numeric=(1, 2, 3, 4, 5, 6, 7)))
    notes = ([f"{r.name}: {n}" for r in report.strategies for n in r.notes] + list(report.notes)
             + views.floor_gaps(report))
    if notes:
        parts.append("<ul class=\"notes\">" + "".join(f"<li>{e(' '.join(n.split()))}</li>" for n in notes) + "</ul>")
    parts.append("</section>")
    return "\n".join(parts)


def _outputs_text(result: StrategyResult) -> str:
    text = views.outputs_text(result)
    return "DIFFER" + text[len("differ"):] if views.outputs_differ(result) else text  # capitals catch the eye


# --- 3. latency distribution ------------------------------------------------------------------


def _distribution_chart(figure, measured: List[StrategyResult]) -> None:
    ax = figure.add_subplot()
    _seconds_log_axis(ax)
    ys = list(range(len(measured)))[::-1]
    lows, highs = [], []
    for y, result in zip(ys, measured):
        m = result.measurement
        ordered = sorted(m.samples_s)  # once: percentile() re-sorts a sorted list in linear time
        p1, q1, med, q3, p99 = (percentile(ordered, q) for q in (1, 25, 50, 75, 99))
        slowest = ordered[-1]
        _, colour = _status(result)
        ax.hlines(y, p1, p99, color=colour, linewidth=1)
        ax.vlines([p1, p99], y - 0.15, y + 0.15, color=colour, linewidth=1)
        ax.barh(y, q3 - q1, left=q1, height=0.5, color=colour, alpha=0.35, edgecolor=colour, linewidth=1)
        ax.vlines(med, y - 0.25, y + 0.25, color="#111111", linewidth=1.6)
        ax.plot([slowest], [y], marker="o", markersize=3, color=colour, linestyle="none")
        ax.plot([m.first_call_s], [y], marker="x", markersize=6, markeredgewidth=1.6, color=COLD_COLOUR,
                linestyle="none")
        top = max(slowest, m.first_call_s)
        ax.text(top * 1.3, y, f"p99 {fmt.ratio(p99 / med)} the median; n={m.count:,}", va="center", fontsize=8,
                color="#333333")
        lows.append(min(p1, m.first_call_s))
        highs.append(top)
    low, high = _log_limits(min(lows), max(highs), right_room=12.0)
    ax.set_xlim(low, high)
    ax.set_yticks(ys)
    ax.set_yticklabels([r.name for r in measured])
    ax.set_ylim(-0.7, len(measured) - 0.3)
    ax.set_xlabel("seconds per call, log scale. Box: 25th to 75th percentile, bar: median, whiskers: 1st to 99th "
                  "percentile,\ndot: the slowest timed call, red x: the first (cold) call, which is not among the samples")


def _distribution(report: Report, charts: Charts) -> str:
    measured = [r.result for r in views.strategy_rows(report) if views.median(r.result) is not None]
    if not measured:
        return ""
    chart = charts.draw("latency distribution per strategy", 0.42 * len(measured) + 1.1, _distribution_chart,
                        measured)
    return ('<section id="distribution"><h2>Latency distribution</h2>'
            "<p class=\"meta\">Every timed call, warm; the first call of each strategy (tracing, graph building, "
            "caches) is drawn apart as a red x and is not among the samples.</p>" + chart + "</section>")


# --- 4. phases ---------------------------------------------------------------------------


def _phase_profiles(report: Report) -> List[ProfileResult]:
    pair = [p for p in (report.profile(PREDICT.name), report.profile(PREDICT_COMPILED.name)) if p is not None]
    return pair or list(report.profiles)


def _phase_chart(figure, report: Report, profiles: List[ProfileResult]) -> None:
    from matplotlib.patches import Patch

    deltas = views.compile_phase_deltas(report)
    total = views.compile_total_delta(report)
    if deltas:
        left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2], "wspace": 0.45})
    else:
        left, right = figure.add_subplot(), None
    ys = list(range(len(profiles)))[::-1]
    for y, profile in zip(ys, profiles):
        start = 0.0
        full = sum(r.ms_per_call for r in profile.phases)
        for row in profile.phases:
            if row.ms_per_call <= 0:
                continue
            left.barh(y, row.ms_per_call, left=start, height=0.6, color=PHASE_COLOURS.get(row.name,
                                                                                           UNKNOWN_PHASE_COLOUR),
                      edgecolor="white", linewidth=0.5)
            if full and row.ms_per_call / full >= 0.08:
                left.text(start + row.ms_per_call / 2, y, f"{row.share:.0%}", ha="center", va="center", fontsize=8,
                          color="white" if row.name in (TFDATA, TRACING, GRAPH) else "#111111")
            start += row.ms_per_call
        left.text(start, y + 0.38, f" {start:.3g} ms", va="bottom", ha="right", fontsize=8)
    left.set_yticks(ys)
    left.set_yticklabels([p.scenario for p in profiles])
    left.set_xlabel("ms per call by phase (profiled shares x the unprofiled median)")
    left.set_ylim(-0.6, len(profiles) - 0.2)
    present = [name for name in PHASES
               if any(p.phase(name) is not None and p.phase(name).ms_per_call > 0 for p in profiles)]
    left.legend(handles=[Patch(color=PHASE_COLOURS[name], label=name) for name in present],
                loc="upper center", bbox_to_anchor=(0.5, -0.55 / figure.get_figheight() - 0.06), ncol=4,
                frameon=False, fontsize=8)
    if right is None:
        return
    rows = [d for d in deltas] + ([total] if total is not None else [])
    ys = list(range(len(rows)))[::-1]
    for y, delta in zip(ys, rows):
        colour = PHASE_COLOURS.get(delta.phase, "#333333")
        inside = delta.noise_ms is not None and not delta.beyond_noise
        right.barh(y, delta.delta_ms, height=0.6, color=colour, alpha=0.35 if inside else 1.0,
                   edgecolor=colour, linewidth=0.8)
        if delta.noise_ms is not None:
            right.errorbar(0, y, xerr=delta.noise_ms, fmt="none", ecolor="#666666", elinewidth=3, alpha=0.35)
    right.axvline(0, color="#222222", linewidth=0.8)
    right.set_yticks(ys)
    right.set_yticklabels([d.phase for d in rows])
    right.set_title("compile() Δ ms/call (after - before)")
    right.set_xlabel("grey band: the noise (share x IQR, both sides); faded bar: within it")
    limit = max([abs(d.delta_ms) for d in rows] + [d.noise_ms or 0.0 for d in rows] + [1e-3]) * 1.15
    right.set_xlim(-limit, limit)


def _phases(report: Report, charts: Charts) -> str:
    profiles = _phase_profiles(report)
    if not profiles:
        return ""
    height = 0.55 * len(profiles) + 1.6
    if views.compile_phase_deltas(report):
        height = max(height, 0.3 * 9 + 0.8)
    parts = ['<section id="phases"><h2>Where the time goes: phases</h2>',
             charts.draw("phases per call", height, _phase_chart, report, profiles)]
    effects = "; ".join(f"{p.scenario}: {views.inflation_text(p)}" for p in profiles)
    parts.append(f"<p class=\"meta\">From a separate cProfile pass; {e(effects)}. The milliseconds are the "
                 "profiled shares scaled to the unprofiled median from the timing pass; a phase's noise is its "
                 "share times each side's IQR, summed.</p>")
    deltas = {d.phase: d for d in views.compile_phase_deltas(report)}
    header = ["phase"] + [f"{p.scenario} ms/call" for p in profiles] + (["compile() Δ"] if deltas else [])
    rows = []
    for name in PHASES:
        cells = [name] + [f"{p.phase(name).ms_per_call:.3g} ({p.phase(name).share:.0%})" if p.phase(name) else "—"
                          for p in profiles]
        if deltas:
            cells.append(deltas[name].text if name in deltas else "—")
        rows.append(cells)
    total = views.compile_total_delta(report)
    rows.append(["total"] + [f"{sum(r.ms_per_call for r in p.phases):.3g}" for p in profiles]
                + ([total.text if total else "—"] if deltas else []))
    rows.append(["traces per call (first call)"] + [f"{p.traces_per_call:g} ({p.cold_traces})" for p in profiles]
                + ([""] if deltas else []))
    parts.append(_table(header, rows, numeric=tuple(range(1, len(header)))))
    parts.append("</section>")
    return "\n".join(parts)


# --- 5. the profile: icicle and call tree ------------------------------------------------------


def profile_tree(profile: ProfileResult) -> Tuple[CallNode, bool]:
    """The call tree to draw, and whether it is the real one. Reports saved before call trees
    get phases -> their top functions (own time) instead, built from what the Report holds."""
    if profile.call_tree is not None:
        return profile.call_tree, True
    total_s = profile.profiled_per_call_s * profile.calls
    phases = []
    for row in profile.phases:
        if row.share <= 0:
            continue
        tops = sorted((f for f in profile.top_functions if f.phase == row.name), key=lambda f: -f.own_s)
        children = [CallNode(f.qualname, f.file, f.line, row.name, f.own_s, f.own_s) for f in tops]
        seconds = row.share * total_s
        phases.append(CallNode(row.name, "", 0, row.name, seconds,
                               max(0.0, seconds - sum(c.total_s for c in children)), children))
    phases.sort(key=lambda n: -n.total_s)
    return CallNode("all profiled calls", "", 0, OTHER, total_s, 0.0, phases), False


def _where(node: CallNode) -> str:
    if node.file == "~":
        return "built-in"
    if not node.file:
        return ""
    return f"{node.file}:{node.line}"


def _icicle_chart(figure, tree: CallNode, calls: int) -> None:
    ax = figure.add_subplot()
    per_call = 1e3 / max(1, calls)
    bars = {}  # (depth, phase) -> [(left, width)]: one collection each, not an artist per box
    labels = []
    total = tree.total_s or 1.0
    chars_per_ms = (WIDTH_IN * 0.92 * 72 / (8 * 0.6)) / (total * per_call)  # 8 pt text, ~0.6 em a character
    stack = [(tree, 0.0, 0)]
    while stack:
        node, x, depth = stack.pop()
        width = node.total_s * per_call
        bars.setdefault((depth, node.phase), []).append((x, width))
        room = int(width * chars_per_ms) - 1
        if room >= 4:
            labels.append((x + width * 0.01, -depth, _shorten(node.function, room)))
        if depth + 1 < ICICLE_MAX_DEPTH:
            offset = x
            for child in node.children:
                stack.append((child, offset, depth + 1))
                offset += child.total_s * per_call
    for (level, phase), spans in bars.items():
        ax.broken_barh(spans, (-level - 0.47, 0.94), facecolors=PHASE_COLOURS.get(phase, UNKNOWN_PHASE_COLOUR),
                       edgecolors="white", linewidth=0.4)
    for x, y, text in labels:
        ax.text(x, y, text, va="center", ha="left", fontsize=7, color="#111111", clip_on=True)
    depth = max(level for level, _ in bars)
    ax.set_ylim(-depth - 0.6, 0.6)
    ax.set_xlim(0, total * per_call)
    ax.set_yticks([])
    ax.spines["left"].set_visible(False)
    ax.set_xlabel("ms per profiled call (cProfile's clock: inflated by the profiler); a box's callees sit below it; "
                  "colour: phase, as in the phase bars")


def _tree_html(node: CallNode, root_total: float, calls: int, depth: int = 0) -> str:
    share = node.total_s / root_total if root_total else 0.0
    colour = PHASE_COLOURS.get(node.phase, UNKNOWN_PHASE_COLOUR)
    where = _where(node)
    line = (f'<span class="sw" style="background:{colour}" title="{e(node.phase)}"></span>'
            f'<span class="fn">{e(node.function)}</span> '
            f'<span class="ms">{node.total_s * 1e3 / max(1, calls):.3g} ms</span> '
            f'<span class="pc">{share:.1%}</span> '
            f'<span class="own">own {node.own_s * 1e3 / max(1, calls):.3g} ms · {e(node.phase)}</span>'
            + (f' <span class="where">{e(where)}</span>' if where else ""))
    if not node.children:
        return f'<div class="leaf">{line}</div>'
    opened = " open" if share >= OPEN_SHARE and depth < 60 else ""
    inner = "".join(_tree_html(child, root_total, calls, depth + 1) for child in node.children)
    return f"<details{opened}><summary>{line}</summary>{inner}</details>"


def _profile(report: Report, charts: Charts) -> str:
    main = report.profile(PREDICT.name) or (report.profiles[0] if report.profiles else None)
    if main is None:
        return ""
    tree, real = profile_tree(main)
    depth = _depth(tree, ICICLE_MAX_DEPTH)
    parts = [f'<section id="profile"><h2>The profile: {e(main.scenario)}, {main.calls} warm calls</h2>']
    if real:
        parts.append("<p class=\"meta\">The call tree of the warm calls, as cProfile saw them, its largest paths "
                     "(nodes under 0.2% of the time are left out). cProfile keeps caller-to-callee edges, not "
                     "stacks, so a function called from several places has its time split in proportion to its "
                     "callers' edges. Colours are the phases, as in the phase bars.</p>")
    else:
        parts.append("<p class=\"meta\">This report was saved before kdiag kept call trees: shown are the phases "
                     "and, under each, its top functions by own time (re-run kdiag for the call tree).</p>")
    parts.append(charts.draw(f"{main.scenario}: icicle of the warm profile", 0.2 * depth + 0.9, _icicle_chart, tree,
                             main.calls))
    parts.append('<div class="tree">' + _tree_html(tree, tree.total_s, main.calls) + "</div>")
    others = [p for p in report.profiles if p is not main]
    for other in others:
        other_tree, _ = profile_tree(other)
        parts.append(f"<details class=\"more\"><summary>Call tree of {e(other.scenario)} ({other.calls} warm "
                     f"calls)</summary><div class=\"tree\">{_tree_html(other_tree, other_tree.total_s, other.calls)}"
                     "</div></details>")
    commands = "\n".join(f"kdiag view {shlex.quote(p.prof_path)}" for p in report.profiles)
    parts.append("<p>Every call, interactive, in snakeviz (served on 127.0.0.1):</p>" + _code_block(commands, "sh"))
    parts.append("</section>")
    return "\n".join(parts)


def _depth(node: CallNode, cap: int) -> int:
    deepest, stack = 0, [(node, 1)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        if level < cap:
            stack.extend((child, level + 1) for child in current.children)
    return deepest


# --- 6. findings -------------------------------------------------------------------------


def _findings(report: Report) -> str:
    parts = ['<section id="findings"><h2>Findings</h2>']
    if not report.findings:
        parts.append("<p>kdiag found nothing to report from these measurements.</p>")
    for number, finding in enumerate(report.findings, 1):
        parts.append(_finding(number, finding))
    parts.append("</section>")
    return "\n".join(parts)


def _finding(number: int, finding: Finding) -> str:
    meta = f'<span class="sev sev-{e(finding.severity)}">{e(finding.severity)}</span> <code>{e(finding.id)}</code>'
    if finding.measured_speedup is not None and finding.strategy:
        match = " (outputs match)" if finding.outputs_match else ""
        meta += f" · measured speed-up {e(fmt.ratio(finding.measured_speedup))} with {e(finding.strategy)}{match}"
    evidence = "".join(f"<li>{e(' '.join(line.split()))}</li>" for line in finding.evidence)
    parts = [f'<article class="finding" id="finding-{number}"><h3>{number}. {e(finding.title)}</h3>',
             f'<p class="meta">{meta}</p>', f"<ul>{evidence}</ul>" if evidence else "",
             f"<p><strong>What to do:</strong> {e(' '.join(finding.advice.split()))}</p>"]
    if finding.snippet:
        identity = BY_NAME.get(finding.strategy or "")
        parts.append(_code_block(finding.snippet, identity.language if identity else "python"))
    parts.append("</article>")
    return "".join(parts)


def _code_block(text: str, language: str) -> str:
    return (f'<div class="code"><button type="button" class="copy">copy</button>'
            f'<pre><code class="language-{e(language)}">{e(text)}</code></pre></div>')


# --- 7. sweeps -----------------------------------------------------------------------------


def _sweeps(report: Report, charts: Charts) -> str:
    """Hook for the "beyond one batch" issue: the data-size curve with its crossover marked,
    the batch-size curve and RSS over calls go here once the Report carries sweep data.

    The data model has no sweeps yet, so this draws nothing (no placeholder data).
    """
    return ""


# --- the page ----------------------------------------------------------------------------------


def _shorten(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "…"


def _content_security_policy() -> str:
    # No network at all; of scripts, only this page's own (by hash). Inline styles are
    # needed by matplotlib's SVG.
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode("utf-8")).digest()).decode("ascii")
    return (f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; img-src data:; "
            "base-uri 'none'; form-action 'none'")


SCRIPT = """
for (const button of document.querySelectorAll("button.copy")) {
  button.addEventListener("click", () => {
    const text = button.parentElement.querySelector("code").textContent;
    const done = () => { button.textContent = "copied"; setTimeout(() => { button.textContent = "copy"; }, 1500); };
    if (navigator.clipboard) { navigator.clipboard.writeText(text).then(done, () => {}); return; }
    const range = document.createRange();
    range.selectNodeContents(button.parentElement.querySelector("code"));
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  });
}
"""

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1b1b; margin: 0;
       background: #fafafa; }
main { max-width: 1100px; margin: 0 auto; padding: 16px 28px 40px; background: #fff; }
h1 { font-size: 22px; margin: 8px 0 4px; word-break: break-word; }
h2 { font-size: 18px; margin: 28px 0 8px; padding-top: 8px; border-top: 1px solid #e3e3e3; }
h3 { font-size: 15px; margin: 14px 0 4px; }
.verdict { font-size: 17px; margin: 6px 0; }
.meta { color: #555; font-size: 13px; }
.warn { background: #fff4e5; border-left: 4px solid #e69f00; padding: 6px 10px; }
.nochart { background: #f3f3f3; color: #555; padding: 10px; border: 1px dashed #bbb; }
figure.chart { margin: 8px 0; }
figure.chart svg { width: 100%; height: auto; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border-bottom: 1px solid #e6e6e6; padding: 3px 8px; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
details > summary { cursor: pointer; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
.code { position: relative; }
pre { background: #f5f5f5; border: 1px solid #e2e2e2; padding: 8px 10px; overflow-x: auto; }
button.copy { position: absolute; top: 4px; right: 4px; font-size: 11px; }
.finding { border-left: 4px solid #ccc; padding: 2px 12px; margin: 10px 0; }
.sev { font-weight: 600; text-transform: uppercase; font-size: 11px; padding: 1px 5px; border-radius: 3px;
       background: #ddd; }
.sev-high { background: #f5c6c0; } .sev-medium { background: #fbe3b5; } .sev-low { background: #d8e8f5; }
.tree { font-size: 12.5px; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.tree details, .tree .leaf { margin-left: 14px; }
.tree > details { margin-left: 0; }
.sw { display: inline-block; width: 10px; height: 10px; margin-right: 5px; border-radius: 2px; }
.tree .ms { font-weight: 600; } .tree .pc, .tree .own, .tree .where { color: #666; }
.tree .where { font-size: 11.5px; }
footer { color: #777; font-size: 12px; margin-top: 30px; }
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<main>
<h1>{h1}</h1>
{body}
<footer>{footer}</footer>
</main>
<script>{script}</script>
</body>
</html>
"""
