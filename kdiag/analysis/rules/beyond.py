"""Beyond one batch: predict over a whole array against loops, memory that grows over many calls, and
the intra-op threads."""

from __future__ import annotations

from typing import List, Optional, Tuple

from kdiag import views
from kdiag.analysis.findings import recommend
from kdiag.analysis.registry import DROP_IN, MEMORY, RUNTIMES, rule, threshold
from kdiag.datamodel.beyond import (CROSSOVER_WITHIN, GROWTH_CONFIDENCE, GROWTH_PARTS, MIN_GROWTH_PER_1000_CALLS,
                                    MIN_STEADY_PARTS, MIN_SWEEP_COUNTS, MIN_TOTAL_GROWTH, STEADY_SHARE, DataSizeSweep)
from kdiag.datamodel.report import Finding, Report
from kdiag.format import duration
from kdiag.format import ratio as fmt_ratio
from kdiag.views import usable
from kdiag.views import verdict as verdicts
from kdiag.views.wording import samples_text


@rule("data-size", DROP_IN + 3, thresholds=[
    ("crossover_within", CROSSOVER_WITHIN, "predict end to end within this fraction of the fastest loop's time has "
                                           "caught up with it; the crossover is the smallest sample count from which "
                                           "it stays so at every larger count measured"),
    ("high_ratio", 2.0, "predict at or above this many times the fastest loop's time at the largest count: severity "
                        "medium"),
    ("min_counts", MIN_SWEEP_COUNTS, "a sweep that measured fewer sample counts than this makes no crossover claim"),
])
def data_size(report: Report) -> List[Finding]:
    """Where predict over a whole array catches up with a loop of the best path, by sample count."""
    fid = "data-size"
    sweep = report.data_size_sweep
    if (sweep is None or sweep.reason or sweep.predict is None
            or len(sweep.counts) < threshold(fid, "min_counts")):
        return []  # the section shows what was measured; two points are no trend
    within = threshold(fid, "crossover_within")
    counts, crossing = sweep.counts, sweep.crossover(within)
    evidence = _data_size_lines(sweep) + [f"{line}." for line in sweep.skipped]
    before = [n for n in counts if crossing is None or n < crossing]
    fastest_gain = max((sweep.ratio_at(n) for n in before), default=None)
    severity, title, advice = _data_size_wording(sweep, within, crossing, fastest_gain)
    recommended = usable(report, sweep.best_path)
    recommends = crossing != counts[0]
    if recommended is None and recommends:
        advice += f" ({sweep.best_path}'s outputs were not shown to match the reference, so it is not recommended.)"
    fix = verdicts.verdict(report)
    if fix.recommends and fix.fix.name != sweep.best_path:
        # The sweeps loop over the fastest direct path (no XLA compile per chunk shape): say so beside the verdict.
        advice += (f" The sweep looped over {sweep.best_path}, the fastest direct path; {fix.fix.name}, the fix "
                   "above, was not swept, so this says when a loop beats predict, not by how much the fix would.")
    return [Finding(
        id=fid,
        severity=severity,
        title=title,
        evidence=evidence,
        advice=advice,
        **recommend(report, recommended if recommends else None, fastest_gain),
    )]


def _data_size_lines(sweep: DataSizeSweep) -> List[str]:
    lines = []
    for n in sweep.counts:
        best = sweep.best_at(n)
        lines.append(f"{samples_text(n)}: predict {duration(sweep.predict.seconds_at(n))}, {best.strategy} loop "
                     f"{duration(best.seconds_at(n))}: predict {views.times_text(sweep.ratio_at(n))}.")
    return lines


def _data_size_wording(sweep: DataSizeSweep, within: float, crossing: Optional[int],
                       fastest_gain: Optional[float]) -> Tuple[str, str, str]:
    """(severity, title, advice) by where the crossover is: at the first count, later, or nowhere."""
    counts, batch = sweep.counts, sweep.batch_size
    largest = counts[-1]
    if crossing == counts[0]:
        return ("info",
                f"predict is within {within:.0%} of the fastest loop from {samples_text(crossing)} (one batch of "
                f"{batch}) up",
                f"Keep predict for whole arrays: at every sample count measured (up to {largest:,}) it took "
                f"at most {1 + within:.2f}x the time of a loop of the fastest direct path.")
    if crossing is not None:
        at_crossing = (sweep.ratio_at(crossing) - 1) * 100
        how_close = f"within {at_crossing:.0f}%" if at_crossing >= 0 else f"{-at_crossing:.0f}% faster"
        return ("low",
                f"For fewer than {samples_text(crossing)} per call, {sweep.best_path} is up to "
                f"{fmt_ratio(fastest_gain)} faster; from {samples_text(crossing)} predict is within {within:.0%}",
                f"For {_range(1, crossing - 1)} per call, call {sweep.best_path} on chunks of {batch} (up to "
                f"{fmt_ratio(fastest_gain)} faster, measured end to end at {_listed(counts)}); from "
                f"~{samples_text(crossing)} predict is {how_close} — keep it for bulk scoring of "
                f"{samples_text(crossing)} or more.")
    ratio_largest = sweep.ratio_at(largest)
    return ("medium" if ratio_largest >= threshold("data-size", "high_ratio") else "low",
            f"predict stays {fmt_ratio(ratio_largest)} slower than a loop of {sweep.best_path} up to "
            f"{samples_text(largest)}: no crossover",
            f"For every data size measured ({_listed(counts)}), call {sweep.best_path} on chunks "
            f"of {batch} instead of predict: measured {fmt_ratio(fastest_gain)} faster at "
            f"{samples_text(counts[0])} and {fmt_ratio(ratio_largest)} at {samples_text(largest)}.")


def _range(low: int, high: int) -> str:
    """"1–255 samples", "1 sample" (a range of one)."""
    return samples_text(low) if low == high else f"{low:,}–{high:,} samples"


def _listed(counts) -> str:
    """"1, 32 and 256 samples": every count the sweep measured, so the finding names them."""
    numbers = [f"{n:,}" for n in counts]
    return f"{', '.join(numbers[:-1])} and {numbers[-1]} samples" if len(numbers) > 1 else samples_text(counts[0])


@rule("memory-growth", MEMORY, thresholds=[
    ("confidence", GROWTH_CONFIDENCE, "RSS grows when the whole band of the fitted slope (least squares, this "
                                      "confidence) lies above zero"),
    ("min_growth_per_1000_calls", MIN_GROWTH_PER_1000_CALLS, "and the slope is at least this many bytes per 1,000 "
                                                             "calls"),
    ("min_total_growth", MIN_TOTAL_GROWTH, "and the fitted growth over the whole loop is at least this many bytes"),
    ("min_steady_parts", MIN_STEADY_PARTS, f"and at least this many of the loop's {GROWTH_PARTS} equal parts each "
                                           "grew by steady_share of their even share of the fitted growth: a leak "
                                           "grows all through, allocators and caches in a few steps"),
    ("steady_share", STEADY_SHARE, "the share of its even part of the growth that a part of the loop must reach to "
                                   "count as growing"),
])
def memory_growth(report: Report) -> List[Finding]:
    """RSS that grows over a sustained loop, beyond the fitted slope's band."""
    fid = "memory-growth"
    loops = report.memory_loops
    if loops is None:
        return []
    confidence = threshold(fid, "confidence")
    limits = (confidence, threshold(fid, "min_growth_per_1000_calls"), threshold(fid, "min_total_growth"),
              int(threshold(fid, "min_steady_parts")), threshold(fid, "steady_share"))
    measured = [loop for loop in loops.loops if not loop.reason]
    growing = [loop for loop in measured if loop.grows(*limits)]
    if not growing:
        return []
    # What does not rise at all, not even in warm-up steps, is what can be called flat.
    steady = [loop for loop in measured if loop.fit is not None and not loop.rises(*limits[:3])]
    evidence = [f"{loop.strategy}: RSS {views.growth_text(loop, confidence)} in {duration(loop.seconds)}, after "
                f"{loop.warmup_calls} warm-up calls; {loop.steady_parts(limits[4])} of its {GROWTH_PARTS} parts grew "
                f"steadily; peak {views.size_text(loop.peak_rss_bytes)}." for loop in measured]
    title = "; ".join(f"{loop.strategy} grows RSS by ~{views.size_text(loop.growth_per_1000_calls_bytes)} per 1,000 "
                      "calls" for loop in growing)
    if steady:
        title += "; " + ", ".join(loop.strategy for loop in steady) + f" do{'es' if len(steady) == 1 else ''} not"
    alternative = next((usable(report, loop.strategy) for loop in steady if usable(report, loop.strategy)), None)
    advice = (f"{', '.join(loop.strategy for loop in growing)} kept memory on every call of this loop, beyond the "
              f"{confidence:.0%} band of the fit: in a long-running process that adds up. ")
    if alternative is not None:
        steady_loop = next(loop for loop in steady if loop.strategy == alternative.name)
        advice += (f"Call {alternative.name} in long-running loops instead: no growth measured over "
                   f"{steady_loop.calls:,} calls, with matching outputs.")
    else:
        advice += "Re-run with a longer loop to see whether it levels off."
    return [Finding(id=fid, severity="medium", title=title, evidence=evidence, advice=advice,
                    **recommend(report, alternative))]


#: Runs in a fresh process before TensorFlow is imported (tests/test_snippets.py checks the thread
#: pool it gives); set after TensorFlow started, it has no effect, and raises nothing.
THREADS_SNIPPET = ("# First thing in your program, before TensorFlow is imported: TensorFlow\n"
                   "# reads it once, when it starts (or: export TF_NUM_INTRAOP_THREADS=1).\n"
                   "import os\n"
                   "\n"
                   'os.environ["TF_NUM_INTRAOP_THREADS"] = "1"')


@rule("intra-op-threads", RUNTIMES + 2, thresholds=[
    ("min_ratio", 1.1, "the faster of 1 intra-op thread and one per core must be at least this much faster"),
    ("noise_iqrs", 1.0, "and the difference of medians must exceed this many times the sum of both IQRs"),
])
def intra_op_threads(report: Report) -> List[Finding]:
    """1 intra-op thread against one per core, when the difference is beyond the noise."""
    fid = "intra-op-threads"
    effect = report.threads_effect
    judged = views.threads_judgement(effect, threshold(fid, "noise_iqrs"))
    if judged is None or not judged.beyond_noise:
        return []
    ratio = judged.ratio
    faster = max(ratio, 1 / ratio)
    if faster < threshold(fid, "min_ratio"):
        return []
    evidence = [views.threads_text(effect, threshold(fid, "noise_iqrs")) + ".",
                f"Measured on {effect.strategy} in two child processes taking turns (TensorFlow fixes its "
                "thread pools when it starts)."]
    if ratio > 1:
        return [Finding(
            id=fid,
            severity="info",
            title=f"{effect.cores} intra-op threads run the graph {fmt_ratio(ratio)} faster than 1",
            evidence=evidence,
            advice=("Keep TensorFlow's default of one intra-op thread per core. Processes that share this "
                    "machine's cores share that gain too: give each server its own cores."),
            snippet="",
        )]
    return [Finding(
        id=fid,
        severity="low",
        title=f"1 intra-op thread runs the graph {fmt_ratio(1 / ratio)} faster than {effect.cores}",
        evidence=evidence,
        advice=("Run TensorFlow with one intra-op thread: set TF_NUM_INTRAOP_THREADS=1 in the environment that "
                "starts your program (export TF_NUM_INTRAOP_THREADS=1), or in Python before TensorFlow is imported, "
                "as below. TensorFlow reads it once, when it starts: after the model is loaded, neither this nor "
                "tf.config.threading changes anything (the latter raises)."),
        # How to set it, not a recommendation of a measured strategy.
        snippet=THREADS_SNIPPET,
    )]
