"""Derived facts of a Report, one definition each.

Findings (`kdiag.analysis`), `kdiag compare` and every renderer read these instead of
working them out again, so the terminal, the Markdown report, the JSON findings and a
comparison can never disagree on what "measured", "outputs match", "fastest" or "beyond
the noise" mean.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, List, Optional

from kdiag import format as fmt
from kdiag.datamodel.beyond import (CROSSOVER_WITHIN, GROWTH_CONFIDENCE, MIN_SWEEP_COUNTS, DataSizeSweep, MemoryLoop,
                                    ThreadsEffect)
from kdiag.datamodel.profile import ProfileResult
from kdiag.datamodel.report import Finding, OutputCheck, Report, StrategyResult, VersionRun
from kdiag.datamodel.versions import INSTALLED, NIGHTLY, keras_major
from kdiag.datamodel.strategies import CPP, PREDICT, PREDICT_COMPILED
from kdiag.format import diff, duration
from kdiag.format import ratio as fmt_ratio

# --- strategies -------------------------------------------------------------------------


def median(result: Optional[StrategyResult]) -> Optional[float]:
    """The median of a strategy that was measured: available, timed calls, positive and finite; else None."""
    if result is None or not result.available or result.measurement is None or not result.measurement.count:
        return None
    value = result.measurement.median_s
    return value if value > 0 and math.isfinite(value) else None


def iqr(result: StrategyResult) -> float:
    """The IQR of a measured strategy; 0 where the samples give none (a single call)."""
    value = result.measurement.iqr_s if result.measurement is not None else math.nan
    return value if math.isfinite(value) else 0.0


def timed(report: Report, name: str) -> Optional[StrategyResult]:
    """The strategy called `name` when it was measured (see `median`)."""
    result = report.strategy(name)
    return result if median(result) is not None else None


def measured(report: Report) -> List[StrategyResult]:
    """Every measured strategy, fastest first."""
    return sorted((r for r in report.strategies if median(r) is not None), key=lambda r: median(r))


def outputs_match(result: StrategyResult) -> bool:
    """Its outputs were checked against the reference and match; the reference itself matches.

    A strategy whose outputs were never checked does not match, nor one whose outputs varied between
    two calls on the same inputs (`outputs_vary`): neither is ever recommended.
    """
    check = result.outputs
    return check is not None and (check.matches or check.reference == result.name) and not check.varies


def outputs_vary(result: StrategyResult) -> bool:
    """Its outputs on a later call differed from its cold call's, on the same inputs."""
    return result.outputs is not None and result.outputs.varies


def outputs_differ(result: StrategyResult) -> bool:
    """Checked, and different from the reference (the reference never differs from itself)."""
    check = result.outputs
    return check is not None and not check.matches and check.reference != result.name


def outputs_text(result: StrategyResult) -> str:
    """The outputs check in words, as every output shows it: "not checked", "reference",
    "match (max |diff| 2.0e-08)" or "differ (max |diff| 0.5): output 0 | shape (8, 1)"."""
    check = result.outputs
    if check is None:
        return "not checked"
    if check.varies:
        return f"vary between calls (max |diff| {diff(check.repeat_max_abs_diff)})" + (
            f": {check.repeat_detail}" if check.repeat_detail else "")
    if check.reference == result.name:
        return "reference"
    if check.matches:
        return f"match (max |diff| {diff(check.max_abs_diff)})"
    return f"differ (max |diff| {diff(check.max_abs_diff)})" + (f": {check.detail}" if check.detail else "")


def usable(report: Report, name: str) -> Optional[StrategyResult]:
    """Measured and matching: only these are ever recommended."""
    result = timed(report, name)
    return result if result is not None and outputs_match(result) else None


def fastest_usable(report: Report, names: Iterable[str]) -> Optional[StrategyResult]:
    candidates = [r for r in (usable(report, n) for n in names) if r is not None]
    return min(candidates, key=lambda r: median(r)) if candidates else None


def fastest_matching(report: Report) -> Optional[StrategyResult]:
    """The fastest measured strategy whose outputs match the reference."""
    return next((r for r in measured(report) if outputs_match(r)), None)


def reference_check(report: Report) -> Optional[OutputCheck]:
    """The outputs check of the run (its reference and tolerance), when any ran."""
    return next((s.outputs for s in report.strategies if s.outputs is not None), None)


def beyond_noise(a: StrategyResult, b: StrategyResult, iqrs: float = 1.0) -> bool:
    """The one noise rule: the medians differ by more than `iqrs` times the sum of both IQRs."""
    return abs(median(a) - median(b)) > iqrs * (iqr(a) + iqr(b))


#: Below this many timed calls on either side, no comparison is judged either way: an IQR
#: of one or two samples is no noise band.
MIN_CALLS_FOR_VERDICT = 5


@dataclasses.dataclass(frozen=True)
class Judgement:
    """Strategy `slow` against strategy `fast`: how much slower, and whether the data can say so."""

    slow: StrategyResult
    fast: StrategyResult
    ratio: float  # median(slow) / median(fast): above 1 when `slow` really is the slower
    gap_s: float  # median(slow) - median(fast)
    noise_s: float  # the sum of both IQRs, times the rule's multiple
    enough_calls: bool

    @property
    def beyond_noise(self) -> bool:
        return self.enough_calls and abs(self.gap_s) > self.noise_s

    @property
    def calls_text(self) -> str:
        """"n=3 and n=12": the call counts behind the judgement."""
        return f"n={self.slow.measurement.count:,} and n={self.fast.measurement.count:,}"

    @property
    def not_enough_text(self) -> str:
        return (f"not enough calls to judge ({self.calls_text}; at least {MIN_CALLS_FOR_VERDICT} each are needed "
                "for a noise band): re-run with a larger --budget or --min-calls")


def judge(slow: StrategyResult, fast: StrategyResult, iqrs: float = 1.0) -> Judgement:
    """Compare two measured strategies under the one noise rule, refusing a verdict on too few calls."""
    enough = min(slow.measurement.count, fast.measurement.count) >= MIN_CALLS_FOR_VERDICT
    return Judgement(slow, fast, median(slow) / median(fast), median(slow) - median(fast),
                     iqrs * (iqr(slow) + iqr(fast)), enough)


def times_text(ratio: float) -> str:
    """A ratio of two times in words that never reads "0.21x the time": "4.8x slower" / "3.10x faster"."""
    if ratio >= 1.0:
        return f"{fmt_ratio(ratio)} slower"
    return f"{fmt_ratio(1.0 / ratio)} faster"


#: What the strategies table shows for a pair the one noise rule cannot tell apart, or lacks calls for.
SAME = "same"
TOO_FEW = "n<5"


def versus_predict(report: Report, result: StrategyResult) -> str:
    """A strategy against predict as the strategies table shows it, under the one noise rule: "213x faster",
    "2.40x slower", "same" (within the noise), "n<5" (too few calls a side to judge), "—" (predict itself,
    or predict not timed)."""
    predict = timed(report, PREDICT.name)
    if predict is None or median(result) is None or result is predict:
        return "—"
    judged = judge(*((result, predict) if median(result) >= median(predict) else (predict, result)))
    if not judged.enough_calls:
        return TOO_FEW
    if not judged.beyond_noise:
        return SAME
    return times_text(median(result) / median(predict))


@dataclasses.dataclass(frozen=True)
class StrategyRow:
    result: StrategyResult
    vs_predict: Optional[float]  # predict's median / this median: >1 means faster than predict
    vs_fastest: Optional[float]  # this median / the fastest median: 1.0 for the fastest


def strategy_rows(report: Report) -> List[StrategyRow]:
    """Measured strategies fastest first, then the rest (not measured) in report order."""
    done = measured(report)
    predict_median = median(report.strategy(PREDICT.name))
    fastest = median(done[0]) if done else None
    rows = [StrategyRow(r, predict_median / median(r) if predict_median else None, median(r) / fastest)
            for r in done]
    return rows + [StrategyRow(r, None, None) for r in report.strategies if r not in done]


def floor_gaps(report: Report) -> List[str]:
    """Where the C++ program stands, when it was measured: a floor only when it is the fastest path
    with matching outputs, and every comparison under the one noise rule."""
    cpp = timed(report, CPP.name)
    if cpp is None:
        return []
    if outputs_differ(cpp):
        return [f"{CPP.name}: its outputs differ, so it is not used as the floor."]
    fastest = fastest_matching(report)
    if fastest is not cpp:
        return [f"{CPP.name} took {duration(median(cpp))}, {_versus(cpp, fastest)}: not a floor here."]
    predict = timed(report, PREDICT.name)
    if predict is None or predict is cpp:
        return []
    judged = judge(predict, cpp)
    if not judged.beyond_noise:
        return [f"predict took {duration(median(predict))} and {CPP.name}, the fastest path measured, "
                f"{duration(median(cpp))}: {'within the noise' if judged.enough_calls else judged.calls_text}."]
    return [f"predict takes {fmt_ratio(judged.ratio)} the time of {CPP.name}, the fastest path measured "
            f"({duration(median(predict))} vs {duration(median(cpp))} per call): that much is Python and Keras."]


def _versus(result: StrategyResult, other: StrategyResult) -> str:
    """"10.2x slower than TFLite (1.87 µs)", "within the noise of TFLite (1.87 µs)", or too few calls to say."""
    judged = judge(*((result, other) if median(result) >= median(other) else (other, result)))
    where = f"{other.name} ({duration(median(other))})"
    if not judged.enough_calls:
        return f"not compared with {where}: {judged.calls_text}"
    if not judged.beyond_noise:
        return f"within the noise of {where}"
    return f"{times_text(median(result) / median(other))} than {where}"


# --- phases -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PhaseDelta:
    """One phase's change between two profiles of the same scenario kind (ms per call)."""

    phase: str
    before_ms: float
    after_ms: float
    share_before: float
    share_after: float
    noise_ms: Optional[float]  # None when a side has no timing measurement to take an IQR from

    @property
    def delta_ms(self) -> float:
        return self.after_ms - self.before_ms

    @property
    def beyond_noise(self) -> bool:
        return self.noise_ms is not None and abs(self.delta_ms) > self.noise_ms

    @property
    def text(self) -> str:
        """"+1.20 ms" beyond the noise; "~0 (±0.35 ms noise)" within it; "+1.20 ms (noise unknown)"."""
        if self.noise_ms is None:
            return f"{fmt.milliseconds(self.delta_ms, '+')} ms (noise unknown)"
        if not self.beyond_noise:
            return f"~0 (±{fmt.milliseconds(self.noise_ms)} ms noise)"
        return f"{fmt.milliseconds(self.delta_ms, '+')} ms"


def phase_deltas(before: ProfileResult, before_result: Optional[StrategyResult],
                 after: ProfileResult, after_result: Optional[StrategyResult]) -> List[PhaseDelta]:
    """Per phase, after minus before, with its noise band.

    A phase's milliseconds are its profiled share times the scenario's unprofiled median, so
    its noise is each side's share times that side's IQR, summed (the one noise rule, per phase).
    """
    known = median(before_result) is not None and median(after_result) is not None
    rows_after = {p.name: p for p in after.phases}
    deltas = []
    for b in before.phases:
        a = rows_after.get(b.name)
        if a is None:
            continue
        noise = (b.share * iqr(before_result) + a.share * iqr(after_result)) * 1e3 if known else None
        deltas.append(PhaseDelta(b.name, b.ms_per_call, a.ms_per_call, b.share, a.share, noise))
    return deltas


def compile_phase_deltas(report: Report) -> List[PhaseDelta]:
    """What compile() changed per phase of predict; empty unless both predicts were profiled."""
    before, after = report.profile(PREDICT.name), report.profile(PREDICT_COMPILED.name)
    if before is None or after is None:
        return []
    return phase_deltas(before, report.strategy(PREDICT.name), after, report.strategy(PREDICT_COMPILED.name))


def compile_total_delta(report: Report) -> Optional[PhaseDelta]:
    """predict's whole profiled time per call, before and after compile(), with the same noise rule."""
    before, after = report.profile(PREDICT.name), report.profile(PREDICT_COMPILED.name)
    if before is None or after is None:
        return None
    plain, compiled = report.strategy(PREDICT.name), report.strategy(PREDICT_COMPILED.name)
    known = median(plain) is not None and median(compiled) is not None
    return PhaseDelta("total", sum(p.ms_per_call for p in before.phases), sum(p.ms_per_call for p in after.phases),
                      1.0, 1.0, (iqr(plain) + iqr(compiled)) * 1e3 if known else None)


def inflation_text(profile: ProfileResult) -> str:
    """cProfile's effect on the time, in words: a factor below 1 is not an inflation."""
    factor = profile.inflation
    if factor is None:
        return "no unprofiled median to compare with"
    if factor >= 1.0:
        return f"cProfile made the calls {factor:.2f}x slower"
    # The profiled pass ran on a fresh instance at another moment; a machine that drifted
    # faster, or a noisy median, can make it come out quicker than the timing pass.
    return f"the profiled calls ran {1 / factor:.2f}x faster than the timing pass (machine drift or noise)"


# --- Keras 2 and Keras 3 side by side (--keras both) -------------------------------------


def keras_label(report: Report) -> str:
    """"Keras 2 (tf-keras 2.21.0)" or "Keras 3 (3.15.1)": which Keras a run measured."""
    env = report.environment
    return f"Keras 2 (tf-keras {env.keras})" if env.legacy_keras else f"Keras 3 ({env.keras})"


@dataclasses.dataclass(frozen=True)
class KerasSides:
    """One model measured under both Keras versions; the older first, as in "after upgrading"."""

    keras2: Report
    keras3: Report


def keras_sides(report: Report) -> Optional[KerasSides]:
    """The two runs of a `--keras both` report; None for a run under one Keras."""
    other = report.other_keras
    if other is None or other.environment.legacy_keras == report.environment.legacy_keras:
        return None
    return KerasSides(other, report) if other.environment.legacy_keras else KerasSides(report, other)


@dataclasses.dataclass(frozen=True)
class KerasPair:
    """One strategy under Keras 2 and under Keras 3 (None on a side that does not list it)."""

    name: str
    keras2: Optional[StrategyResult]
    keras3: Optional[StrategyResult]

    def judgement(self, iqrs: float = 1.0) -> Optional[Judgement]:
        """Keras 3 against Keras 2 under the one noise rule; None unless both sides were timed."""
        if median(self.keras2) is None or median(self.keras3) is None:
            return None
        if median(self.keras3) >= median(self.keras2):
            return judge(self.keras3, self.keras2, iqrs)
        return judge(self.keras2, self.keras3, iqrs)

    @property
    def keras3_over_keras2(self) -> Optional[float]:
        """Keras 3's median / Keras 2's: above 1 when Keras 3 is the slower."""
        if median(self.keras2) is None or median(self.keras3) is None:
            return None
        return median(self.keras3) / median(self.keras2)

    @property
    def verdict_text(self) -> str:
        """"Keras 3 14.0x slower", "Keras 3 3.10x faster", "within the noise (±1.2 ms)", or why not judged."""
        return versus_text(self.keras2, self.keras3, "Keras 3")


def versus_text(base: Optional[StrategyResult], other: Optional[StrategyResult], label: str, iqrs: float = 1.0) -> str:
    """`other` (the run called `label`) against `base` under the one noise rule: "Keras 3 14.0x slower",
    "within the noise (±1.2 ms)", "no verdict (n=3 and n=3; at least 5 each)", or "—" unless both were timed.
    A ratio only where the noise rule supports one, and never below 1."""
    if median(base) is None or median(other) is None:
        return "—"
    judged = judge(other, base, iqrs) if median(other) >= median(base) else judge(base, other, iqrs)
    if not judged.enough_calls:
        return f"no verdict ({judged.calls_text}; at least {MIN_CALLS_FOR_VERDICT} each)"
    if not judged.beyond_noise:
        return f"within the noise (±{duration(judged.noise_s)})"
    return f"{label} {times_text(median(other) / median(base))}"


@dataclasses.dataclass(frozen=True)
class LabelledRun:
    """One run of a side-by-side report, with the label its column shows."""

    label: str
    report: Optional[Report]  # None: this run measured nothing, and `reason` says why
    reason: str = ""
    short_label: str = ""  # what a verdict column names it by, when not the label up to " (" (see `short`)

    @property
    def short(self) -> str:
        """What a verdict column or a phase column names a run by: "Keras 3" of "Keras 3 (3.15.1)", "TF 2.16.2"
        or "TF nightly" for a TensorFlow release."""
        return self.short_label or self.label.split(" (", 1)[0]


def side_by_side(report: Report) -> List[LabelledRun]:
    """The runs of a report that measured one model several ways, oldest first; empty for one run:
    the two Keras of --keras both, or the TensorFlow releases of --tf in the order asked (the report
    itself being the release the others are judged against).

    Every side-by-side section is built over this list, so more runs add columns, not code.
    """
    if report.tf_versions is not None:
        runs = [(run, report if run.reference else run.report) for run in report.tf_versions.runs]
        return [LabelledRun(release_label(run, measured), measured, run.reason, release_short(run))
                for run, measured in runs]
    sides = keras_sides(report)
    if sides is None:
        return []
    return [LabelledRun(keras_label(sides.keras2), sides.keras2), LabelledRun(keras_label(sides.keras3), sides.keras3)]


def release_label(run: VersionRun, report: Optional[Report]) -> str:
    """"TensorFlow 2.15.1 (Keras 2.15.0)", "TensorFlow 2.21.0 (installed, Keras 3.15.1)": a --tf column; the Keras
    its release brings ("Keras 2") when the run measured nothing."""
    if report is not None:
        env = report.environment
        keras = f"tf-keras {env.keras}" if env.legacy_keras else f"Keras {env.keras}"
    else:
        major = keras_major(run.tensorflow)
        keras = f"Keras {major}" if major else ""
    details = ", ".join(d for d in (run.requested if run.requested in (INSTALLED, NIGHTLY) else "", keras) if d)
    return f"TensorFlow {run.tensorflow or run.requested}" + (f" ({details})" if details else "")


def release_short(run: VersionRun) -> str:
    """"TF 2.16.2", "TF nightly": a --tf release in a verdict or phase column."""
    return "TF nightly" if run.requested == NIGHTLY else f"TF {run.tensorflow or run.requested}"


def own_findings(report: Report, run: LabelledRun) -> List[Finding]:
    """A side run's own findings (not the report's, which are the report's own), less its advice to measure the
    file under both Keras: id "keras2-file" of kdiag.analysis.rules.keras_versions, which sits above this module."""
    if run.report is None or run.report is report:
        return []
    return [f for f in run.report.findings if f.id != "keras2-file"]


def keras_pairs(sides: KerasSides) -> List[KerasPair]:
    """Every strategy of either run, in the Keras 3 run's order (fastest first), Keras 2-only ones last."""
    names = [row.result.name for row in strategy_rows(sides.keras3)]
    names += [r.name for r in sides.keras2.strategies if r.name not in names]
    return [KerasPair(name, sides.keras2.strategy(name), sides.keras3.strategy(name)) for name in names]


def compile_effect_text(report: Report) -> str:
    """compile()'s effect on predict within one run, by the noise rule: "compiled 1.30x slower", "within the
    noise (±1.2 ms)", a call count too small to judge, or "not measured"."""
    plain, compiled = timed(report, PREDICT.name), timed(report, PREDICT_COMPILED.name)
    if plain is None or compiled is None:
        return "not measured"
    return versus_text(plain, compiled, "compiled")


def keras_cell(result: Optional[StrategyResult]) -> str:
    """A strategy's median on one side, marked when noisy or when its outputs differ; why not, else."""
    if result is None:
        return "not run"
    m = result.measurement
    if not result.available or m is None or not m.count:
        return result.reason.split(":", 1)[0] if result.reason else "not measured"
    text = duration(m.median_s) + (" ~" if m.noisy else "")
    return text + (" (outputs differ)" if outputs_differ(result) else "")


def keras_phase_deltas(sides: KerasSides) -> List[PhaseDelta]:
    """predict's phases under Keras 2 (before) and Keras 3 (after); empty unless both were profiled."""
    before, after = sides.keras2.profile(PREDICT.name), sides.keras3.profile(PREDICT.name)
    if before is None or after is None:
        return []
    return phase_deltas(before, sides.keras2.strategy(PREDICT.name), after, sides.keras3.strategy(PREDICT.name))


# --- beyond one batch -------------------------------------------------------------------


def size_text(n: Optional[float]) -> str:
    """A byte count with a sign where it has one: "+2.1 MB", "-512 kB" (decimal units, as RSS is quoted)."""
    if n is None or n != n:
        return "—"
    sign = "-" if n < 0 else ""
    n = abs(n)
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{sign}{n / scale:.3g} {unit}"
    return f"{sign}{n:.0f} bytes"


def crossover_text(sweep: DataSizeSweep, within: float = CROSSOVER_WITHIN) -> str:
    """Where predict catches up with the best loop, in words: "from 4,096 samples" / "none up to 65,536 samples";
    no claim from fewer than MIN_SWEEP_COUNTS sample counts."""
    if sweep.largest is None:
        return "not measured"
    if not sweep.judged:
        return (f"not judged: {fmt.count(len(sweep.counts), 'sample count')} measured "
                f"({', '.join(f'{n:,}' for n in sweep.counts)}), and a crossover needs {MIN_SWEEP_COUNTS}")
    found = sweep.crossover(within)
    if found is None:
        return f"none up to {fmt.count(sweep.largest, 'sample')}"
    return f"from {fmt.count(found, 'sample')}"


def growth_text(loop: MemoryLoop, confidence: float = GROWTH_CONFIDENCE) -> str:
    """"2.1 MB per 1,000 calls (95% band 1.9 MB to 2.3 MB) over 1,000 calls", or why there is no slope.

    A loop of fewer than 1,000 calls gives its fitted growth over the calls it made, not a figure
    per 1,000 calls that it never reached.
    """
    if loop.reason:
        return loop.reason
    band = loop.growth_band(confidence)
    if band is None:
        return f"no slope: {fmt.count(len(loop.points), 'RSS sample')} over {fmt.count(loop.calls, 'call')} are too few"
    per = 1000 if loop.calls >= 1000 else loop.calls
    scale = per / 1000
    return (f"{size_text(loop.growth_per_1000_calls_bytes * scale)} per {per:,} calls ({confidence:.0%} band "
            f"{size_text(band[0] * scale)} to {size_text(band[1] * scale)}) over {loop.calls:,} calls")


def memory_verdict(loop: MemoryLoop, confidence: float = GROWTH_CONFIDENCE) -> str:
    """What the loop shows: growth, or "no growth measured over N calls"."""
    if loop.reason:
        return loop.reason
    if loop.fit is None:
        return f"not judged: {fmt.count(len(loop.points), 'RSS sample')} are too few for a slope"
    if loop.grows(confidence):
        return f"grows RSS by ~{size_text(loop.growth_per_1000_calls_bytes)} per 1,000 calls"
    if loop.rises(confidence):
        return (f"RSS rose by {size_text(loop.observed_growth_bytes)} over {loop.calls:,} calls in a few steps, not "
                "steadily (as allocators and caches warm up): no steady growth measured")
    return f"no growth measured over {loop.calls:,} calls"


def threads_judgement(effect: Optional[ThreadsEffect], iqrs: float = 1.0) -> Optional[Judgement]:
    """1 intra-op thread (`slow`) against the core count (`fast`) under the one noise rule; None unless both ran.

    The ratio is above 1 when more threads help, below 1 when one thread is faster.
    """
    if effect is None or effect.one is None or effect.many is None or not effect.one.count or not effect.many.count:
        return None
    one = StrategyResult(effect.one.strategy, "", True, measurement=effect.one)
    many = StrategyResult(effect.many.strategy, "", True, measurement=effect.many)
    if median(one) is None or median(many) is None:
        return None
    return judge(one, many, iqrs)


def threads_text(effect: ThreadsEffect, iqrs: float = 1.0) -> str:
    """The threads effect with its noise band, or why it was not measured."""
    if effect.reason:
        return effect.reason
    judged = threads_judgement(effect, iqrs)
    if judged is None:
        return "not measured"
    one, many = median(judged.slow), median(judged.fast)
    cores = f"{effect.cores} threads (one per core)"
    head = (f"1 intra-op thread {duration(one)} vs {cores} {duration(many)} per call "
            f"(n={judged.slow.measurement.count:,} and n={judged.fast.measurement.count:,})")
    if not judged.enough_calls:
        return f"{head}: {judged.not_enough_text}"
    verdict = f"1 thread is {times_text(judged.ratio)}" if judged.beyond_noise else "within the noise"
    return f"{head}: difference {duration(abs(judged.gap_s))}, noise band ±{duration(judged.noise_s)}: {verdict}"


def op_type_text(op) -> str:
    """"MatMul (kernel _MklMatMul)": the plain op name, and the kernel that ran it when that differs
    (oneDNN's and the graph rewrites' names vary by machine; the op does not)."""
    return f"{op.op_type} (kernel {op.kernel})" if op.kernel else op.op_type
