"""Other runtimes: a compute-bound model (where XLA or TFLite may help, and Python does not matter), and
how far the best Python path is from the floors (TFLite, C++)."""

from __future__ import annotations

from typing import List, Tuple

from kdiag import views
from kdiag.analysis.findings import match_text, median_text, recommend
from kdiag.analysis.registry import RUNTIMES, rule, threshold
from kdiag.datamodel.report import Finding, Report
from kdiag.datamodel.strategies import COMPUTE_ALTERNATIVES, CPP, FLOORS, KERAS_PATHS
from kdiag.format import duration
from kdiag.format import ratio as fmt_ratio
from kdiag.views import fastest_usable, outputs_match, timed, usable


@rule("compute-bound", RUNTIMES, thresholds=[
    ("max_ratio_to_floor", 1.5, "the best Keras path's median / the fastest matching floor's median must be at most "
                                "this"),
    ("min_per_call_s", 5e-3, "and the best Keras path's median must be at least this many seconds"),
    ("min_alternative_speedup", 1.1, "an XLA or TFLite alternative is recommended only when at least this much "
                                     "faster"),
    ("noise_iqrs", 1.0, "and only when the difference of medians exceeds this many times the sum of both IQRs"),
])
def compute_bound(report: Report) -> List[Finding]:
    fid = "compute-bound"
    base = fastest_usable(report, KERAS_PATHS)
    floor = fastest_usable(report, FLOORS)
    if base is None or floor is None:
        return []
    to_floor = base.median_s / floor.median_s
    if (base.median_s < threshold(fid, "min_per_call_s") or to_floor > threshold(fid, "max_ratio_to_floor")
            or not views.judge(base, floor).enough_calls):
        return []
    evidence = [f"The best Keras path, {base.name}, takes {median_text(base)} per call."]
    if to_floor >= 1.0:
        evidence.append(f"The fastest path without Python, {floor.name}, takes {median_text(floor)}: {base.name} "
                        f"takes {fmt_ratio(to_floor)} its time, so Python and Keras overhead is not what makes this "
                        "model slow.")
        title = f"Compute-bound: {base.name} is within {fmt_ratio(to_floor)} of the fastest path ({floor.name})"
    else:
        # A runtime without Python that is slower than Keras is no floor: say it plainly.
        evidence.append(f"{floor.name}, which runs without Python, takes {median_text(floor)}: "
                        f"{views.times_text(1.0 / to_floor)} than {base.name}, so Python and Keras overhead is not "
                        "what makes this model slow.")
        title = f"Compute-bound: {base.name} is the fastest path measured"
    best_alt, best_speedup, lines = _alternatives(report, base)
    evidence += lines + _execution_lines(report)
    batch_line, advice = _batch_size_lines(report)
    evidence.append(batch_line)
    if best_alt is not None:
        advice = (f"{best_alt.name} measured {fmt_ratio(best_speedup)} faster than {base.name} with matching "
                  "outputs. " + advice)
    return [Finding(
        id=fid,
        severity="low" if best_alt is not None else "info",
        title=title,
        evidence=evidence,
        advice=advice,
        **recommend(report, best_alt, best_speedup if best_alt is not None else None),
    )]


def _alternatives(report: Report, base):
    """(the clearly faster alternative runtime or None, its speed-up, an evidence line per alternative measured)."""
    fid = "compute-bound"
    best_alt, best_speedup, lines = None, 0.0, []
    for name in COMPUTE_ALTERNATIVES:
        alt = usable(report, name)
        if alt is None:
            continue
        speedup = base.median_s / alt.median_s
        lines.append(f"{alt.name}: median {median_text(alt)}, {views.times_text(1.0 / speedup)} than {base.name}; "
                     f"{match_text(alt)}.")
        clear = (speedup >= threshold(fid, "min_alternative_speedup")
                 and views.beyond_noise(base, alt, threshold(fid, "noise_iqrs")))
        if clear and speedup > best_speedup:
            best_alt, best_speedup = alt, speedup
    return best_alt, best_speedup, lines


def _execution_lines(report: Report) -> List[str]:
    """The op breakdown in a sentence, when one was listed."""
    ops = report.op_breakdown
    if ops is None or ops.reason or not ops.by_type:
        return []
    types = ", ".join(f"{t.name} {t.share:.0%}" for t in ops.by_type[:3])
    return [f"Its execution by op type ({ops.calls} traced calls of {ops.strategy}, XProf): {types}."]


def _batch_size_lines(report: Report) -> Tuple[str, str]:
    """(evidence, advice) about other batch sizes: the sweep's answer, or that it was not measured."""
    sweep = report.batch_size_sweep
    if sweep is None or sweep.reason or len(sweep.points) < 2:
        return (f"Other batch sizes were not measured (this run used batch size {report.model.batch_size}).",
                "The time goes into the model's own computation. A larger batch may give more samples per second; "
                "kdiag did not measure that: re-run with --batch-size N to measure it.")
    rates = dict(sweep.throughput)
    first, last = sweep.points[0][0], sweep.points[-1][0]
    knee = sweep.knee()
    line = (f"The batch-size sweep ran {sweep.strategy} from batch {first:,} ({rates[first]:,.0f} samples/s) to "
            f"{last:,} ({rates[last]:,.0f} samples/s).")
    if knee is None:
        return line, (f"The time goes into the model's own computation. Samples/s were still growing at batch "
                      f"{last:,}: a server that can collect larger batches gets more from each core.")
    return line, (f"The time goes into the model's own computation. Samples/s stop growing by more than 10% at batch "
                  f"{knee:,} ({rates[knee]:,.0f} samples/s): that is the batch size a server should collect.")


@rule("floor-gap", RUNTIMES + 2, thresholds=[
    ("min_ratio", 1.2, "best Python path's median / the fastest floor's median at or above this is a gap worth "
                       "reporting (severity low, floor recommended); below it the finding is info"),
    ("noise_iqrs", 1.0, "and the difference of medians must exceed this many times the sum of both IQRs"),
])
def floor_gap(report: Report) -> List[Finding]:
    fid = "floor-gap"
    floor = fastest_usable(report, FLOORS)
    python_names = [s.name for s in report.strategies if s.name not in FLOORS]
    best = fastest_usable(report, python_names)
    if floor is None or best is None:
        return []
    judged = views.judge(best, floor, threshold(fid, "noise_iqrs"))
    if not judged.enough_calls:
        return []
    gap = judged.ratio
    evidence = [f"The best Python path, {best.name}: median {median_text(best)} per call."] + _floor_lines(report)
    significant = gap >= threshold(fid, "min_ratio") and judged.beyond_noise
    if significant:
        title = f"{floor.name} runs this model {fmt_ratio(gap)} faster than the best Python path ({best.name})"
        advice = (f"If that gap matters, serve the model with {floor.name}: measured {fmt_ratio(gap)} faster than "
                  f"{best.name}, with matching outputs.")
    else:
        # Not a floor unless it is faster: never "takes 0.21x the time of the floor".
        title = f"Leaving Python would not make this model measurably faster than {best.name}"
        advice = (f"{floor.name} ran {views.times_text(1.0 / gap)} than {best.name}"
                  + ("" if judged.beyond_noise else ", within the noise") + ": stay with the Python path.")
    if floor.name == CPP.name:
        evidence.append(f"{CPP.name} ran in its own process after the Python strategies (not interleaved with them), "
                        "so machine drift between the two is not cancelled out.")
    return [Finding(
        id=fid,
        severity="low" if significant else "info",
        title=title,
        evidence=evidence,
        advice=advice,
        **recommend(report, floor if significant else None, gap),
    )]


def _floor_lines(report: Report) -> List[str]:
    lines = []
    for name in FLOORS:
        result = timed(report, name)
        if result is None:
            continue
        if outputs_match(result):
            lines.append(f"{name}: median {median_text(result)}; {match_text(result)}.")
        else:
            lines.append(f"{name}: median {duration(result.median_s)}, but its outputs were not shown to match "
                         "the reference, so it is not used as a floor.")
    return lines
