"""The charts of report.html, drawn with matplotlib (the one plotting library kdiag uses).

Each chart is a function `chart(figure, *data)` that fills a matplotlib Figure from a Report's data;
`Charts.draw` turns it into inline SVG, or a note saying why it was not drawn. matplotlib is
optional (`pip install kdiag[html]`) and imported only when a page is drawn. Names reach the charts
as plain text: mathtext is off, so a `$` is a dollar sign.
"""

from __future__ import annotations

import html
import io
import warnings
from typing import Callable, List, Optional, Tuple

from kdiag import format as fmt
from kdiag import views
from kdiag.datamodel.measurement import percentile
from kdiag.datamodel.profile import (CALLBACKS, EAGER, GRAPH, INPUT, OTHER, OUTPUT, PHASES, TFDATA, TRACING, CallNode,
                                     ProfileResult)
from kdiag.datamodel.report import Report, StrategyResult
from kdiag.errors import first_line

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
            return note(f"{what}: {self.missing} ({INSTALL_HINT}).")
        try:
            with self._rc_context(RC), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # matplotlib's warnings are no news to a kdiag user
                figure = self._figure(figsize=(WIDTH_IN, max(1.2, height_in)))
                build(figure, *args)
                buffer = io.StringIO()
                figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
        except Exception:  # a chart must never cost the run its report, nor show the user a plotting error
            return ""  # its section's table has the same figures
        svg = with_tooltips(buffer.getvalue())
        return f'<figure class="chart" aria-label="{html.escape(what)}">{svg[svg.index("<svg"):]}</figure>'


def note(text: str) -> str:
    return f'<p class="nochart">{html.escape(text)}</p>'


#: An artist whose gid starts so gets a <title> (a tooltip) in the SVG: matplotlib writes a gid as the
#: id of the artist's <g>, and has no tooltips of its own. The text is the gid's rest, percent-encoded.
TOOLTIP = "tip-"


def tooltip_gid(index: int, text: str) -> str:
    from urllib.parse import quote

    return f"{TOOLTIP}{index}-{quote(text, safe='')}"


def with_tooltips(svg: str) -> str:
    """Every <g id="tip-N-TEXT"> of the SVG given a <title>TEXT</title> (escaped): the browser's tooltip."""
    import re
    from urllib.parse import unquote

    def titled(match: "re.Match[str]") -> str:
        text = unquote(html.unescape(match.group(2)))
        return f'<g id="{TOOLTIP}{match.group(1)}"><title>{html.escape(text)}</title>'

    return re.sub(rf'<g id="{TOOLTIP}(\d+)-([^"]*)">', titled, svg)


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


def _status(result: StrategyResult) -> Tuple[str, str]:
    """(label, colour) of a measured strategy's outputs."""
    if views.outputs_differ(result):
        return "outputs differ", DIFFER_COLOUR
    if views.outputs_vary(result):
        return "outputs vary between calls", DIFFER_COLOUR
    if result.outputs is None:
        return "outputs not checked", UNCHECKED_COLOUR
    return "outputs match", MATCH_COLOUR


def _quartiles(result: StrategyResult) -> Tuple[float, float, float]:
    ordered = sorted(result.measurement.samples_s)  # once: percentile() re-sorts a sorted list in linear time
    return percentile(ordered, 25), views.median(result), percentile(ordered, 75)


def _whiskers(result: StrategyResult) -> Tuple[float, float, float]:
    """(low, median, high) of a measured strategy: its IQR from the kept samples, never on the wrong side
    of the median. The median is the one computed from every call; the samples may be a rounded subset,
    whose quartiles can fall on the other side of it (a negative whisker made matplotlib refuse the
    Conv1D+LSTM model's chart)."""
    q1, med, q3 = _quartiles(result)
    low = min(q1, med) if q1 == q1 else med
    high = max(q3, med) if q3 == q3 else med
    return low, med, high


def strategy_chart(figure, report: Report) -> None:
    """Each measured strategy's median as a dot with its IQR as whiskers, on a log axis (medians span µs
    to seconds); the words beside it say what the table says (vs predict judged by the noise rule)."""
    rows = views.strategy_rows(report)
    measured = [r.result for r in rows if views.median(r.result) is not None]
    ax = figure.add_subplot()
    ys = list(range(len(rows)))[::-1]  # fastest at the top
    spans = {r.name: _whiskers(r) for r in measured}
    low, high = _log_limits(min(w[0] for w in spans.values()), max(w[2] for w in spans.values()), right_room=12.0)
    _seconds_log_axis(ax)
    ax.set_xlim(low, high)
    for y, row in zip(ys, rows):
        result = row.result
        if views.median(result) is None:
            why = result.reason or "no timed calls"
            ax.text(low * 1.1, y, "not measured: " + _shorten(why, 70), va="center", color="#777777",
                    style="italic")
            continue
        _strategy_dot(ax, y, report, result, spans[result.name])
    ax.grid(axis="x", color="#eeeeee", linewidth=0.6)
    ax.set_yticks(ys)
    ax.set_yticklabels([r.result.name for r in rows])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel("median time per call (dot), log scale; whiskers: IQR (25th to 75th percentile)")
    handles = [ax.plot([], [], "o", color=c, label=label)[0] for label, c in
               (("outputs match", MATCH_COLOUR), ("outputs differ", DIFFER_COLOUR),
                ("outputs not checked", UNCHECKED_COLOUR))]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.45 / figure.get_figheight() - 0.06),
              ncol=3, frameon=False, fontsize=8)


def _strategy_dot(ax, y: float, report: Report, result: StrategyResult, span) -> None:
    """One measured strategy: its median as a dot, its IQR as whiskers, and what the table says of it."""
    q1, med, q3 = span
    label, colour = _status(result)
    ax.errorbar(med, y, xerr=[[med - q1], [q3 - med]], fmt="o", color=colour, ecolor=colour, elinewidth=1.2,
                capsize=3, markersize=5)
    words = [fmt.duration(med)]
    versus = views.versus_predict(report, result)
    if versus not in ("—", views.SAME, views.TOO_FEW):
        words.append(f"{versus} than predict")
    elif versus == views.SAME:
        words.append("within the noise of predict")
    if result.measurement.stopped_early:
        words.append(f"stopped early after {result.measurement.count} calls")
    if label != "outputs match":
        words.append(label)
    ax.text(q3 * 1.25, y, " · ".join(words), va="center",
            color=DIFFER_COLOUR if colour == DIFFER_COLOUR else "#222222")


def distribution_chart(figure, measured: List[StrategyResult]) -> None:
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


def phase_chart(figure, report: Report, profiles: List[ProfileResult]) -> None:
    """Each scenario's phases as a stacked bar of ms per call; beside it, compile()'s delta per phase."""
    deltas = views.compile_phase_deltas(report)
    if deltas:
        left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2], "wspace": 0.45})
    else:
        left, right = figure.add_subplot(), None
    _phase_bars(figure, left, profiles)
    if right is not None:
        total = views.compile_total_delta(report)
        _delta_bars(right, list(deltas) + ([total] if total is not None else []))


def _phase_bars(figure, ax, profiles: List[ProfileResult]) -> None:
    from matplotlib.patches import Patch

    ys = list(range(len(profiles)))[::-1]
    for y, profile in zip(ys, profiles):
        start = 0.0
        full = sum(r.ms_per_call for r in profile.phases)
        for row in profile.phases:
            if row.ms_per_call <= 0:
                continue
            ax.barh(y, row.ms_per_call, left=start, height=0.6, color=PHASE_COLOURS.get(row.name,
                                                                                         UNKNOWN_PHASE_COLOUR),
                    edgecolor="white", linewidth=0.5)
            if full and row.ms_per_call / full >= 0.08:
                ax.text(start + row.ms_per_call / 2, y, f"{row.share:.0%}", ha="center", va="center", fontsize=8,
                        color="white" if row.name in (TFDATA, TRACING, GRAPH) else "#111111")
            start += row.ms_per_call
        ax.text(start, y + 0.38, f" {start:.3g} ms", va="bottom", ha="right", fontsize=8)
    ax.set_yticks(ys)
    ax.set_yticklabels([p.scenario for p in profiles])
    ax.set_xlabel("ms per call by phase (profiled shares x the unprofiled median)")
    ax.set_ylim(-0.6, len(profiles) - 0.2)
    present = [name for name in PHASES
               if any(p.phase(name) is not None and p.phase(name).ms_per_call > 0 for p in profiles)]
    ax.legend(handles=[Patch(color=PHASE_COLOURS[name], label=name) for name in present],
              loc="upper center", bbox_to_anchor=(0.5, -0.55 / figure.get_figheight() - 0.06), ncol=4,
              frameon=False, fontsize=8)


def _delta_bars(ax, rows) -> None:
    ys = list(range(len(rows)))[::-1]
    for y, delta in zip(ys, rows):
        colour = PHASE_COLOURS.get(delta.phase, "#333333")
        inside = delta.noise_ms is not None and not delta.beyond_noise
        ax.barh(y, delta.delta_ms, height=0.6, color=colour, alpha=0.35 if inside else 1.0,
                edgecolor=colour, linewidth=0.8)
        if delta.noise_ms is not None:
            ax.errorbar(0, y, xerr=delta.noise_ms, fmt="none", ecolor="#666666", elinewidth=3, alpha=0.35)
    ax.axvline(0, color="#222222", linewidth=0.8)
    ax.set_yticks(ys)
    ax.set_yticklabels([d.phase for d in rows])
    ax.set_title("compile() Δ ms/call (after - before)")
    ax.set_xlabel("grey band: the noise (share x IQR, both sides); faded bar: within it")
    limit = max([abs(d.delta_ms) for d in rows] + [d.noise_ms or 0.0 for d in rows] + [1e-3]) * 1.15
    ax.set_xlim(-limit, limit)


def icicle_chart(figure, tree: CallNode, calls: int) -> None:
    """The call tree as an icicle: a box per function, as wide as its time; the label cut to fit the
    box, and the whole name, time and phase in a tooltip on the box and its label."""
    from matplotlib.patches import Rectangle

    ax = figure.add_subplot()
    per_call = 1e3 / max(1, calls)
    total = tree.total_s or 1.0
    chars_per_ms = (WIDTH_IN * 0.92 * 72 / (8 * 0.6)) / (total * per_call)  # 8 pt text, ~0.6 em a character
    stack = [(tree, 0.0, 0)]
    deepest = 0
    index = 0
    while stack:
        node, x, depth = stack.pop()
        width = node.total_s * per_call
        deepest = max(deepest, depth)
        tip = (f"{node.function}: {width:.3g} ms per call ({node.total_s / total:.1%}), own "
               f"{node.own_s * per_call:.3g} ms · {node.phase}")
        gid = tooltip_gid(index, tip)
        index += 1
        box = Rectangle((x, -depth - 0.47), width, 0.94, facecolor=PHASE_COLOURS.get(node.phase, UNKNOWN_PHASE_COLOUR),
                        edgecolor="white", linewidth=0.4)
        box.set_gid(gid)
        ax.add_patch(box)
        room = int(width * chars_per_ms) - 1
        if room >= 4:
            label = ax.text(x + width * 0.01, -depth, _shorten(node.function, room), va="center", ha="left",
                            fontsize=7, color="#111111", clip_on=True)
            label.set_gid(tooltip_gid(index, tip))
            index += 1
        if depth + 1 < ICICLE_MAX_DEPTH:
            offset = x
            for child in node.children:
                stack.append((child, offset, depth + 1))
                offset += child.total_s * per_call
    ax.set_ylim(-deepest - 0.6, 0.6)
    ax.set_xlim(0, total * per_call)
    ax.set_yticks([])
    ax.spines["left"].set_visible(False)
    ax.set_xlabel("ms per profiled call (cProfile's clock: inflated by the profiler); a box's callees sit below it; "
                  "colour: phase, as in the phase bars; hover over a box for its name and time")


def _shorten(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: max(1, limit - 1)] + "…"




# --- beyond one batch --------------------------------------------------------------------------

SERIES_COLOURS = ("#C0392B", "#3A6EA5", "#009E73", "#E69F00", "#CC79A7")


def data_size_chart(figure, sweep) -> None:
    """Seconds per 1,000 samples against the sample count, one line per way of scoring, the crossover marked."""
    ax = figure.add_subplot()
    ax.set_xscale("log")
    ax.set_yscale("log")
    for colour, series in zip(SERIES_COLOURS, sweep.series):
        points = [(n, s * 1000 / n) for n, s in series.points if s]
        label = series.strategy if series is sweep.predict else f"{series.strategy} loop"
        ax.plot([n for n, _ in points], [v for _, v in points], marker="o", color=colour, label=label)
    found = sweep.crossover()
    if found is not None:
        ax.axvline(found, color="#444444", linestyle=":", linewidth=1)
        ax.text(found, ax.get_ylim()[1], " crossover", va="top", fontsize=8)
    from matplotlib.ticker import NullFormatter

    # Labels of our own: matplotlib's log labels are mathtext, which is off.
    ax.set_xticks(sweep.counts)
    ax.set_xticklabels([f"{n:,}" for n in sweep.counts])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(_seconds_formatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("samples scored end to end (log scale)")
    ax.set_ylabel("time per 1,000 samples")
    ax.legend(frameon=False, fontsize=8)


def batch_size_chart(figure, sweep) -> None:
    """Samples per second against the batch size, the knee marked."""
    ax = figure.add_subplot()
    ax.set_xscale("log", base=2)
    batches = [b for b, _ in sweep.throughput]
    ax.plot(batches, [r for _, r in sweep.throughput], marker="o", color=SERIES_COLOURS[2])
    knee = sweep.knee()
    if knee is not None:
        ax.axvline(knee, color="#444444", linestyle=":", linewidth=1)
    from matplotlib.ticker import NullFormatter

    from matplotlib.ticker import FuncFormatter

    ax.set_xticks(batches)
    ax.set_xticklabels([f"{b:,}" for b in batches], rotation=45 if len(batches) > 10 else 0,
                       ha="right" if len(batches) > 10 else "center")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:,.0f}"))  # no "1e7" offset
    ax.set_xlabel(f"batch size ({sweep.strategy}); dotted line: where samples/s stop growing")
    ax.set_ylabel("samples/s")


def memory_chart(figure, loops) -> None:
    """RSS against the calls made, one line per loop."""
    ax = figure.add_subplot()
    for colour, loop in zip(SERIES_COLOURS, (loop for loop in loops.loops if loop.points)):
        ax.plot([c for c, _ in loop.points], [r / 1e6 for _, r in loop.points], color=colour, label=loop.strategy)
    ax.set_xlabel("calls (after the warm-up)")
    ax.set_ylabel("RSS, MB")
    ax.legend(frameon=False, fontsize=8)


def ops_chart(figure, ops) -> None:
    """The listed ops' shares of the traced execution time, largest at the top."""
    ax = figure.add_subplot()
    rows = list(ops.ops)[::-1]
    ax.barh(range(len(rows)), [op.share for op in rows], color=PHASE_COLOURS[GRAPH])
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([_shorten(op.name, 60) for op in rows])
    ax.set_xlabel("share of the traced execution time (self time)")


def _seconds_formatter():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _pos: fmt.duration(value))


#: The charts of the sections beyond one batch: section key -> (Report field, chart, height in inches).
BEYOND_CHARTS = {
    "data-size": ("data_size_sweep", data_size_chart, 3.0),
    "batch-size": ("batch_size_sweep", batch_size_chart, 2.6),
    "memory": ("memory_loops", memory_chart, 2.6),
    "ops": ("op_breakdown", ops_chart, 0.3),
}
