"""Rules over a Report's measurements and profiles → findings, each with its measured numbers.

`diagnose(report)` is a pure function of the Report (no TensorFlow, no rich). Every number
a rule compares against lives in `THRESHOLDS` (printed by `kdiag rules`), so a reader can
check why a finding fired. Two rules hold for every finding:

* A strategy is recommended only when it was measured and its outputs were checked and
  match the reference (the reference itself counts as matching). A strategy whose outputs
  differ, or were never checked, is never recommended.
* A finding whose evidence is absent (strategy not measured, unavailable, no profile) is
  silent: nothing is estimated to fill the gap.

Findings come out in the order a user needs them (`FINDING_ORDER`): correctness first
(outputs that differ, the training flag), then the user's own path (predict against the best
path that matches), then advice that backfires on this model, then compile(), retracing and
eager calls, then floors, then noise; within one kind by severity, then measured gain.

No comparison is judged on fewer than `views.MIN_CALLS_FOR_VERDICT` timed calls a side: the
`not-enough-calls` finding says so instead of a claim in either direction.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from kdiag import views
from kdiag.analysis.keras_versions import KERAS2_FILE, KERAS_VERSIONS, THRESHOLD_ROWS, keras2_file, keras_versions
from kdiag.analysis.tf_versions import THRESHOLD_ROWS as TF_THRESHOLD_ROWS
from kdiag.analysis.tf_versions import TF_VERSIONS, tf_versions
from kdiag.datamodel.beyond import (CROSSOVER_WITHIN, GROWTH_CONFIDENCE, GROWTH_PARTS, MIN_GROWTH_PER_1000_CALLS,
                                    MIN_STEADY_PARTS, MIN_TOTAL_GROWTH, STEADY_SHARE, per_1000)
from kdiag.datamodel.measurement import NOISE_THRESHOLD
from kdiag.datamodel.profile import TRACING, ProfileResult
from kdiag.datamodel.report import Finding, Report, StrategyResult
from kdiag.datamodel.strategies import (COMPUTE_ALTERNATIVES, CPP, DIRECT_PATHS, EAGER, FLOORS, GRAPH_PATHS,
                                        KERAS_PATHS, PREDICT, PREDICT_COMPILED, PREDICT_ON_BATCH, PREDICT_SCENARIOS,
                                        SAVEDMODEL, TF_FUNCTION, XLA)
from kdiag.format import diff as fmt_diff
from kdiag.format import duration
from kdiag.format import ratio as fmt_ratio
from kdiag.views import fastest_usable, outputs_match, timed, usable

SEVERITIES = ("high", "medium", "low", "info")
_SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}

#: Every finding, in the order a user needs them (see the module docstring).
FINDING_ORDER = (
    "outputs-differ", "training-dependent-layers",
    "predict-overhead", KERAS_VERSIONS, TF_VERSIONS,
    "advice-backfires",
    "data-size",
    "compile-slowdown", "retracing", "memory-growth", "eager-slow", "compile-no-effect",
    "compute-bound", "intra-op-threads", "floor-gap", KERAS2_FILE,
    "not-enough-calls", "noisy",
)
FINDING_IDS = FINDING_ORDER
_ORDER_RANK = {fid: i for i, fid in enumerate(FINDING_ORDER)}

#: What predict is compared with: every Python path a user can call on a batch in memory.
PREDICT_ALTERNATIVES = DIRECT_PATHS + (XLA.name, SAVEDMODEL.name)
#: The usual advice for a slow predict; a warning when it is slower than predict on this model.
USUAL_ADVICE = ((EAGER.name, "calling model(x) directly"), (PREDICT_ON_BATCH.name, "predict_on_batch(x)"))


@dataclasses.dataclass(frozen=True)
class Threshold:
    finding_id: str
    name: str
    value: float
    meaning: str


THRESHOLDS: Tuple[Threshold, ...] = (
    Threshold("predict-overhead", "min_ratio", 1.2,
              "predict's median / the fastest matching Python path's median must reach this"),
    Threshold("predict-overhead", "min_gap_s", 1e-3,
              "and predict's median must exceed that path's by at least this many seconds"),
    Threshold("predict-overhead", "noise_iqrs", 1.0,
              "and the difference of medians must exceed this many times the sum of both IQRs"),
    Threshold("predict-overhead", "high_ratio", 10.0,
              "at or above this ratio the finding is severity high"),
    Threshold("predict-overhead", "medium_ratio", 2.0,
              "at or above this ratio (and below high_ratio) severity medium; below it, low"),
    Threshold("predict-overhead", "dominant_phase_share", 0.10,
              "phases of predict's profile with at least this share are cited as evidence"),
    Threshold("compile-slowdown", "min_ratio", 1.2,
              "predict (compiled)'s median / predict's median must reach this"),
    Threshold("compile-slowdown", "noise_iqrs", 1.0,
              "and the difference of medians must exceed this many times the sum of both IQRs"),
    Threshold("retracing", "max_traces_per_call", 0.0,
              "a profiled scenario other than predict creating more concrete functions per warm call "
              "than this is retracing"),
    Threshold("retracing", "high_traces_per_call", 1.0,
              "at or above this many traces per warm call the finding is severity high (else medium)"),
    Threshold("advice-backfires", "min_ratio", 1.1,
              "model(x) eager's or predict_on_batch's median / predict's median must reach this"),
    Threshold("advice-backfires", "noise_iqrs", 1.0,
              "and the difference of medians must exceed this many times the sum of both IQRs"),
    Threshold("eager-slow", "min_ratio", 2.0,
              "model(x) eager's median / the fastest matching graph path's median must reach this "
              "(only when model(x) is not slower than predict: then advice-backfires says it)"),
    Threshold("compute-bound", "max_ratio_to_floor", 1.5,
              "the best Keras path's median / the fastest matching floor's median must be at most this"),
    Threshold("compute-bound", "min_per_call_s", 5e-3,
              "and the best Keras path's median must be at least this many seconds"),
    Threshold("compute-bound", "min_alternative_speedup", 1.1,
              "an XLA or TFLite alternative is recommended only when at least this much faster"),
    Threshold("compute-bound", "noise_iqrs", 1.0,
              "and only when the difference of medians exceeds this many times the sum of both IQRs"),
    Threshold("floor-gap", "min_ratio", 1.2,
              "best Python path's median / the fastest floor's median at or above this is a gap "
              "worth reporting (severity low, floor recommended); below it the finding is info"),
    Threshold("floor-gap", "noise_iqrs", 1.0,
              "and the difference of medians must exceed this many times the sum of both IQRs"),
    Threshold("data-size", "crossover_within", CROSSOVER_WITHIN,
              "predict end to end within this fraction of the fastest loop's time has caught up with it; the "
              "crossover is the smallest sample count from which it stays so at every larger count measured"),
    Threshold("data-size", "high_ratio", 2.0,
              "predict at or above this many times the fastest loop's time at the largest count: severity medium"),
    Threshold("memory-growth", "confidence", GROWTH_CONFIDENCE,
              "RSS grows when the whole band of the fitted slope (least squares, this confidence) lies above zero"),
    Threshold("memory-growth", "min_growth_per_1000_calls", MIN_GROWTH_PER_1000_CALLS,
              "and the slope is at least this many bytes per 1,000 calls"),
    Threshold("memory-growth", "min_total_growth", MIN_TOTAL_GROWTH,
              "and the fitted growth over the whole loop is at least this many bytes"),
    Threshold("memory-growth", "min_steady_parts", MIN_STEADY_PARTS,
              f"and at least this many of the loop's {GROWTH_PARTS} equal parts each grew by steady_share of their "
              "even share of the fitted growth: a leak grows all through, allocators and caches in a few steps"),
    Threshold("memory-growth", "steady_share", STEADY_SHARE,
              "the share of its even part of the growth that a part of the loop must reach to count as growing"),
    Threshold("intra-op-threads", "min_ratio", 1.1,
              "the faster of 1 intra-op thread and one per core must be at least this much faster"),
    Threshold("intra-op-threads", "noise_iqrs", 1.0,
              "and the difference of medians must exceed this many times the sum of both IQRs"),
    Threshold("noisy", "iqr_over_median", NOISE_THRESHOLD,
              "a measurement whose IQR / median exceeds this is noisy (kdiag.datamodel.measurement.NOISE_THRESHOLD)"),
)

THRESHOLDS += tuple(Threshold(*row) for row in THRESHOLD_ROWS)  # Keras 2 against Keras 3 (keras_versions.py)
THRESHOLDS += tuple(Threshold(*row) for row in TF_THRESHOLD_ROWS)  # TensorFlow releases (tf_versions.py)

_THRESHOLD_VALUES: Dict[Tuple[str, str], float] = {(t.finding_id, t.name): t.value for t in THRESHOLDS}


def threshold(finding_id: str, name: str) -> float:
    """The value of one threshold; KeyError for a name not in THRESHOLDS."""
    return _THRESHOLD_VALUES[(finding_id, name)]


def thresholds_table() -> List[Tuple[str, str, str, str]]:
    """Rows (finding id, threshold name, value, meaning) for `kdiag rules`."""
    return [(t.finding_id, t.name, f"{t.value:g}", t.meaning) for t in THRESHOLDS]


def diagnose(report: Report) -> List[Finding]:
    """Every finding the report's measurements support, in the order a user needs them."""
    findings: List[Finding] = []
    for rule in RULES:
        findings.extend(rule(report))
    return sort_findings(findings)


def sort_findings(findings: Iterable[Finding]) -> List[Finding]:
    """By kind (FINDING_ORDER), then severity, then measured speed-up, largest first (stable)."""
    indexed = list(enumerate(findings))
    indexed.sort(key=lambda item: (
        _ORDER_RANK.get(item[1].id, len(FINDING_ORDER)),
        _SEVERITY_RANK.get(item[1].severity, len(SEVERITIES)),
        -(item[1].measured_speedup or 0.0),
        item[0],
    ))
    return [f for _, f in indexed]


# --- helpers ------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return duration(seconds)


def _med(result: StrategyResult) -> str:
    return f"{_ms(result.median_s)} (IQR {_ms(views.iqr(result))}, n={result.measurement.count})"


def _match_text(result: StrategyResult) -> str:
    check = result.outputs
    if check.reference == result.name:
        return f"it is the reference ({check.reference})"
    return f"outputs match {check.reference}'s, max |diff| {fmt_diff(check.max_abs_diff)}"


def _scaled_note(profile: ProfileResult) -> str:
    if profile.unprofiled_median_s:
        return f"cProfile shares scaled to the unprofiled median; {views.inflation_text(profile)}"
    return "as profiled: no unprofiled median to scale to, so cProfile's overhead is included"


def _phase_list(rows, min_share: float = 0.0, limit: Optional[int] = None) -> str:
    chosen = sorted((p for p in rows if p.share >= min_share), key=lambda p: -p.share)
    if limit is not None:
        chosen = chosen[:limit]
    return ", ".join(f"{p.name} {_ms(p.ms_per_call / 1e3)} ({p.share:.0%})" for p in chosen)


# --- rules --------------------------------------------------------------------------


def predict_overhead(report: Report) -> List[Finding]:
    fid = "predict-overhead"
    predict = timed(report, PREDICT.name)
    best = fastest_usable(report, PREDICT_ALTERNATIVES)
    if predict is None or best is None:
        return []
    judged = views.judge(predict, best, threshold(fid, "noise_iqrs"))
    speedup, gap = judged.ratio, judged.gap_s
    if (not judged.beyond_noise or speedup < threshold(fid, "min_ratio")
            or gap < threshold(fid, "min_gap_s")):
        return []
    evidence = [
        f"predict: median {_med(predict)} per call.",
        f"{best.name}: median {_med(best)} per call, {fmt_ratio(speedup)} faster; {_match_text(best)}.",
    ]
    for name in PREDICT_ALTERNATIVES:
        other = usable(report, name)
        if other is not None and other is not best and other.median_s < predict.median_s:
            evidence.append(f"{other.name}: median {_ms(other.median_s)}, "
                            f"{fmt_ratio(predict.median_s / other.median_s)} faster than predict.")
    eager_line = _eager_mention(report, predict)
    if eager_line:
        evidence.append(eager_line)
    profile = report.profile(PREDICT.name)
    if profile is not None:
        dominant = _phase_list(profile.phases, threshold(fid, "dominant_phase_share"))
        if dominant:
            evidence.append(f"Where predict's time goes ({_scaled_note(profile)}): {dominant}.")
        if profile.traces_per_call > 0:
            why = ("" if report.environment.legacy_keras else
                   ": Keras 3 predict traces its tf.data map functions on every call, which is part of "
                   "predict's own overhead, not a retracing of your model")
            evidence.append(f"predict created {profile.traces_per_call:.3g} concrete functions per warm call "
                            f"({profile.cold_traces} on its first call){why}.")
    severity = ("high" if speedup >= threshold(fid, "high_ratio") else
                "medium" if speedup >= threshold(fid, "medium_ratio") else "low")
    return [Finding(
        id=fid,
        severity=severity,
        title=f"model.predict takes {fmt_ratio(speedup)} the time of {best.name} per call",
        evidence=evidence,
        advice=(f"For a batch already in memory, call {best.name} instead of model.predict: measured "
                f"{fmt_ratio(speedup)} faster on this model ({duration(gap)} saved per call), with matching "
                "outputs. predict sets up a data pipeline on every call; that pays off for large datasets fed "
                "in many batches, not for one."),
        snippet=best.snippet,
        strategy=best.name,
        measured_speedup=speedup,
        outputs_match=True,
    )]


def _eager_mention(report: Report, predict: StrategyResult) -> str:
    eager = timed(report, EAGER.name)
    if eager is None:
        return ""
    if outputs_match(eager):
        return (f"model(x, training=False) (eager): median {_ms(eager.median_s)}, "
                f"{fmt_ratio(predict.median_s / eager.median_s)} faster than predict; {_match_text(eager)}.")
    return (f"model(x, training=False) (eager) was measured at {_ms(eager.median_s)}, but its outputs "
            "were not shown to match the reference, so it is not recommended.")


def advice_backfires(report: Report) -> List[Finding]:
    """The usual advice for a slow predict (model(x), predict_on_batch) measured slower than predict."""
    fid = "advice-backfires"
    predict = timed(report, PREDICT.name)
    if predict is None:
        return []
    findings = []
    for name, advice_text in USUAL_ADVICE:
        other = timed(report, name)
        if other is None:
            continue
        judged = views.judge(other, predict, threshold(fid, "noise_iqrs"))
        if not judged.beyond_noise or judged.ratio < threshold(fid, "min_ratio"):
            continue
        best = fastest_usable(report, PREDICT_ALTERNATIVES)
        better = ""
        if best is not None and best.median_s < predict.median_s:
            better = (f" If predict is too slow, {best.name} measured {fmt_ratio(predict.median_s / best.median_s)} "
                      "faster than predict, with matching outputs.")
        findings.append(Finding(
            id=fid,
            severity="medium",
            title=f"{advice_text[0].upper()}{advice_text[1:]}, the usual advice, is {fmt_ratio(judged.ratio)} slower "
                  "than predict here",
            evidence=[f"{other.name}: median {_med(other)} per call.",
                      f"predict: median {_med(predict)} per call.",
                      f"The difference, {duration(judged.gap_s)}, is beyond the noise (±{duration(judged.noise_s)}, "
                      "the sum of both IQRs)."],
            advice=f"Do not replace predict with {other.name} on this model: it is slower here.{better}",
            snippet="",
        ))
    return findings


def compile_effect(report: Report) -> List[Finding]:
    """compile-slowdown when compile() slows predict beyond the noise, else compile-no-effect."""
    fid = "compile-slowdown"
    plain = timed(report, PREDICT.name)
    compiled = timed(report, PREDICT_COMPILED.name)
    if plain is None or compiled is None or not views.judge(compiled, plain).enough_calls:
        return []  # too few calls: the not-enough-calls finding says so
    ratio = compiled.median_s / plain.median_s
    difference = compiled.median_s - plain.median_s
    noise = threshold(fid, "noise_iqrs") * (views.iqr(plain) + views.iqr(compiled))
    evidence = [
        f"predict (compiled): median {_med(compiled)}.",
        f"predict (loaded with compile=False): median {_med(plain)}.",
    ]
    deltas = _phase_deltas(report)
    if deltas:
        evidence.append(deltas)
    if ratio >= threshold(fid, "min_ratio") and difference > noise:
        recommend = outputs_match(plain)
        if not recommend:
            evidence.append("predict's outputs were not checked against a reference, so it is not recommended.")
        return [Finding(
            id=fid,
            severity="medium",
            title=f"compile() makes predict {fmt_ratio(ratio)} slower",
            evidence=evidence,
            advice=("For inference only, load the model without compiling it: "
                    "keras.models.load_model(path, compile=False). "
                    f"Measured {fmt_ratio(ratio)} faster on this model."),
            snippet=plain.snippet if recommend else "",
            strategy=PREDICT.name if recommend else None,
            measured_speedup=ratio if recommend else None,
            outputs_match=True if recommend else None,
        )]
    percent = (ratio - 1.0) * 100.0
    noise_percent = noise / plain.median_s * 100.0
    within = abs(difference) <= noise
    evidence.insert(0, f"compile() changed predict by {percent:+.1f}% "
                       f"({'within' if within else 'outside'} the noise of ±{noise_percent:.1f}%, "
                       "the sum of both IQRs).")
    if within:
        title = "compile() had no measurable effect on predict"
        advice = (f"No effect of compile() could be measured at this noise level (±{noise_percent:.1f}%); "
                  "for a tighter bound, re-run on a quiet machine with a larger --budget.")
    elif difference > 0:
        title = (f"compile() made predict {percent:.1f}% slower: measurable, but below the "
                 f"{threshold(fid, 'min_ratio'):g}x slow-down worth acting on")
        advice = "Nothing worth changing: loading with compile=False would save too little to matter."
    else:
        title = f"predict was {-percent:.1f}% faster after compile(): nothing to change"
        advice = "compile() does not slow predict down on this model."
    return [Finding(
        id="compile-no-effect",
        severity="info",
        title=title,
        evidence=evidence,
        advice=advice,
        snippet="",
    )]


def _phase_deltas(report: Report, limit: int = 3) -> str:
    """The largest per-phase changes with compile(), as the terminal and Markdown tables show them."""
    deltas = sorted(views.compile_phase_deltas(report), key=lambda d: -abs(d.delta_ms))[:limit]
    if not deltas:
        return ""
    shown = [f"{d.phase} {d.text} ({d.before_ms:.3g} → {d.after_ms:.3g} ms)" for d in deltas]
    return ("Largest per-phase changes with compile() (ms per call, cProfile shares scaled to each scenario's "
            "unprofiled median; within the noise shows as ~0): " + ", ".join(shown) + ".")


def retracing(report: Report) -> List[Finding]:
    fid = "retracing"
    limit = threshold(fid, "max_traces_per_call")
    evidence = []
    worst = 0.0
    for profile in report.profiles:
        if profile.scenario not in PREDICT_SCENARIOS and profile.traces_per_call > limit:
            worst = max(worst, profile.traces_per_call)
            tracing = profile.phase(TRACING)
            cost = (f"; tracing took {_ms(tracing.ms_per_call / 1e3)} per call ({tracing.share:.0%})"
                    if tracing is not None and tracing.share > 0 else "")
            evidence.append(f"{profile.scenario}: {profile.traces_per_call:.3g} concrete functions created per "
                            f"warm call over {profile.calls} profiled calls ({profile.cold_traces} on the first "
                            f"call){cost}.")
        for warning in profile.retracing_warnings:
            evidence.append(f"TensorFlow warned during {profile.scenario}: {warning[:300]}")
    evidence += [note[:300] for note in report.notes if "retracing" in note]  # warnings while timing
    if not evidence:
        return []
    tf_function = report.strategy(TF_FUNCTION.name)
    return [Finding(
        id=fid,
        severity="high" if worst >= threshold(fid, "high_traces_per_call") else "medium",
        title="A tf.function is traced again on warm calls (retracing)",
        evidence=evidence,
        advice=("A tf.function traces again for every new input shape, dtype or Python value. Give it an "
                "input_signature with None for the batch axis (or reduce_retracing=True), and pass arrays or "
                "tensors of one dtype, not Python scalars or lists."),
        snippet=tf_function.snippet if tf_function is not None else "",
    )]


def eager_slow(report: Report) -> List[Finding]:
    fid = "eager-slow"
    eager = timed(report, EAGER.name)
    best = fastest_usable(report, GRAPH_PATHS)
    predict = timed(report, PREDICT.name)
    if eager is None or best is None:
        return []
    if predict is not None and eager.median_s > predict.median_s:
        return []  # slower than predict: advice-backfires says what matters
    judged = views.judge(eager, best)
    speedup = judged.ratio
    if not judged.beyond_noise or speedup < threshold(fid, "min_ratio"):
        return []
    return [Finding(
        id=fid,
        severity="low",
        title=f"If you call model(x) directly, {best.name} is {fmt_ratio(speedup)} faster",
        evidence=[
            f"model(x) eager: median {_med(eager)} per call.",
            f"{best.name}: median {_med(best)} per call; {_match_text(best)}.",
        ],
        advice=(f"Wrap the call in a tf.function with an input_signature and call that: {best.name} measured "
                f"{fmt_ratio(speedup)} faster than model(x) run op by op."),
        snippet=best.snippet,
        strategy=best.name,
        measured_speedup=speedup,
        outputs_match=True,
    )]


def training_dependent_layers(report: Report) -> List[Finding]:
    layers = report.model.training_dependent_layers
    if not layers:
        return []
    shown = ", ".join(layers[:10]) + (f" and {len(layers) - 10} more" if len(layers) > 10 else "")
    verb = "layers behave" if len(layers) != 1 else "layer behaves"
    evidence = [f"{len(layers)} {verb} differently when training: {shown}."]
    stray = report.model.training_true_max_abs_diff
    check = views.reference_check(report)
    reference = check.reference if check is not None else "the reference"
    if stray is None or stray != stray:
        severity = "medium"
        evidence.append("How far model(x, training=True) strays from the reference was not measured.")
    elif check is None:
        severity = "medium"
        evidence.append(f"model(x, training=True) differs from {reference} by max |diff| {fmt_diff(stray)}; "
                        "no outputs tolerance was recorded to judge it against.")
    else:
        exceeds = stray > check.atol
        severity = "high" if exceeds else "low"
        evidence.append(f"model(x, training=True) differs from {reference}'s outputs by max |diff| "
                        f"{fmt_diff(stray)}, {'above' if exceeds else 'within'} the outputs tolerance "
                        f"(atol {check.atol:g}).")
    return [Finding(
        id="training-dependent-layers",
        severity=severity,
        title="Outputs depend on the training flag: call the model with training=False",
        evidence=evidence,
        advice=("When you call the model directly, pass training=False (predict and predict_on_batch already "
                "do). With training=True, Dropout drops units and BatchNormalization uses and updates batch "
                "statistics, so the outputs change from call to call."),
        snippet=EAGER.snippet,  # the direct call with training=False, as a complete statement
    )]


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
    evidence = [f"The best Keras path, {base.name}, takes {_med(base)} per call."]
    if to_floor >= 1.0:
        evidence.append(f"The fastest path without Python, {floor.name}, takes {_med(floor)}: {base.name} takes "
                        f"{fmt_ratio(to_floor)} its time, so Python and Keras overhead is not what makes this "
                        "model slow.")
        title = f"Compute-bound: {base.name} is within {fmt_ratio(to_floor)} of the fastest path ({floor.name})"
    else:
        # A runtime without Python that is slower than Keras is no floor: say it plainly.
        evidence.append(f"{floor.name}, which runs without Python, takes {_med(floor)}: "
                        f"{views.times_text(1.0 / to_floor)} than {base.name}, so Python and Keras overhead is not "
                        "what makes this model slow.")
        title = f"Compute-bound: {base.name} is the fastest path measured"
    best_alt, best_speedup = None, 0.0
    for name in COMPUTE_ALTERNATIVES:
        alt = usable(report, name)
        if alt is None:
            continue
        speedup = base.median_s / alt.median_s
        evidence.append(f"{alt.name}: median {_med(alt)}, {views.times_text(1.0 / speedup)} than {base.name}; "
                        f"{_match_text(alt)}.")
        clear = (speedup >= threshold(fid, "min_alternative_speedup")
                 and views.beyond_noise(base, alt, threshold(fid, "noise_iqrs")))
        if clear and speedup > best_speedup:
            best_alt, best_speedup = alt, speedup
    evidence += _execution_lines(report)
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
        snippet=best_alt.snippet if best_alt is not None else "",
        strategy=best_alt.name if best_alt is not None else None,
        measured_speedup=best_speedup if best_alt is not None else None,
        outputs_match=True if best_alt is not None else None,
    )]


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


def data_size(report: Report) -> List[Finding]:
    """Where predict over a whole array catches up with a loop of the best path, by sample count."""
    fid = "data-size"
    sweep = report.data_size_sweep
    if sweep is None or sweep.reason or not sweep.counts or sweep.predict is None:
        return []
    within = threshold(fid, "crossover_within")
    counts, crossing = sweep.counts, sweep.crossover(within)
    batch = sweep.batch_size
    evidence = []
    for n in counts:
        best = sweep.best_at(n)
        evidence.append(f"{n:,} samples: predict {duration(sweep.predict.seconds_at(n))} "
                        f"({duration(per_1000(sweep.predict.seconds_at(n), n))} per 1,000), {best.strategy} loop "
                        f"{duration(best.seconds_at(n))} ({duration(per_1000(best.seconds_at(n), n))} per 1,000): "
                        f"predict takes {fmt_ratio(sweep.ratio_at(n))} its time.")
    evidence += [f"{line}." for line in sweep.skipped]
    recommended = usable(report, sweep.best_path)
    largest = counts[-1]
    ratio_largest = sweep.ratio_at(largest)
    before = [n for n in counts if crossing is None or n < crossing]
    fastest_gain = max((sweep.ratio_at(n) for n in before), default=None)
    keep_for_bulk = f"keep it for bulk scoring of {crossing:,} samples or more" if crossing else ""
    if crossing == counts[0]:
        severity = "info"
        title = (f"predict is within {within:.0%} of the fastest loop from {crossing:,} samples (one batch of "
                 f"{batch}) up")
        advice = (f"Keep predict for whole arrays: at every sample count measured (up to {largest:,}) it took "
                  f"at most {1 + within:.2f}x the time of a loop of the fastest direct path.")
    elif crossing is not None:
        severity = "low"
        title = (f"For fewer than {crossing:,} samples per call, {sweep.best_path} is up to {fmt_ratio(fastest_gain)} "
                 f"faster; from {crossing:,} samples predict is within {within:.0%}")
        at_crossing = (sweep.ratio_at(crossing) - 1) * 100
        how_close = f"within {at_crossing:.0f}%" if at_crossing >= 0 else f"{-at_crossing:.0f}% faster"
        advice = (f"For 1–{crossing - 1:,} samples per call, call {sweep.best_path} on chunks of {batch} (up to "
                  f"{fmt_ratio(fastest_gain)} faster, measured end to end); from ~{crossing:,} samples predict is "
                  f"{how_close} — {keep_for_bulk}.")
    else:
        severity = "medium" if ratio_largest >= threshold(fid, "high_ratio") else "low"
        title = (f"predict stays {fmt_ratio(ratio_largest)} slower than a loop of {sweep.best_path} up to "
                 f"{largest:,} samples: no crossover")
        advice = (f"For every data size measured (up to {largest:,} samples), call {sweep.best_path} on chunks "
                  f"of {batch} instead of predict: measured {fmt_ratio(fastest_gain)} faster at "
                  f"{counts[0]:,} samples and {fmt_ratio(ratio_largest)} at {largest:,}.")
    recommend = recommended is not None and crossing != counts[0]
    if not recommend and crossing != counts[0]:
        advice += f" ({sweep.best_path}'s outputs were not shown to match the reference, so it is not recommended.)"
    return [Finding(
        id=fid,
        severity=severity,
        title=title,
        evidence=evidence,
        advice=advice,
        snippet=recommended.snippet if recommend else "",
        strategy=sweep.best_path if recommend else None,
        measured_speedup=fastest_gain if recommend else None,
        outputs_match=True if recommend else None,
    )]


def memory_growth(report: Report) -> List[Finding]:
    """RSS that grows over a sustained loop, beyond the fitted slope's band."""
    fid = "memory-growth"
    loops = report.memory_loops
    if loops is None:
        return []
    confidence = threshold(fid, "confidence")
    limits = (confidence, threshold(fid, "min_growth_per_1000_calls"), threshold(fid, "min_total_growth"),
              int(threshold(fid, "min_steady_parts")), threshold(fid, "steady_share"))
    growing = [loop for loop in loops.loops if not loop.reason and loop.grows(*limits)]
    if not growing:
        return []
    # What does not rise at all, not even in warm-up steps, is what can be called flat.
    steady = [loop for loop in loops.loops if not loop.reason and loop.fit is not None and not loop.rises(*limits[:3])]
    evidence = [f"{loop.strategy}: RSS {views.growth_text(loop, confidence)} in {duration(loop.seconds)}, after "
                f"{loop.warmup_calls} warm-up calls; {loop.steady_parts(limits[4])} of its {GROWTH_PARTS} parts grew "
                f"steadily; peak {views.size_text(loop.peak_rss_bytes)}."
                for loop in loops.loops if not loop.reason]
    names = ", ".join(loop.strategy for loop in growing)
    title = "; ".join(f"{loop.strategy} grows RSS by ~{views.size_text(loop.growth_per_1000_calls_bytes)} per 1,000 "
                      "calls" for loop in growing)
    if steady:
        title += "; " + ", ".join(loop.strategy for loop in steady) + f" do{'es' if len(steady) == 1 else ''} not"
    alternative = next((usable(report, loop.strategy) for loop in steady if usable(report, loop.strategy)), None)
    advice = (f"{names} kept memory on every call of this loop, beyond the {confidence:.0%} band of the fit: in a "
              "long-running process that adds up. ")
    if alternative is not None:
        steady_loop = next(loop for loop in steady if loop.strategy == alternative.name)
        advice += (f"Call {alternative.name} in long-running loops instead: no growth measured over "
                   f"{steady_loop.calls:,} calls, with matching outputs.")
    else:
        advice += "Re-run with a longer loop to see whether it levels off."
    return [Finding(
        id=fid,
        severity="medium",
        title=title,
        evidence=evidence,
        advice=advice,
        snippet=alternative.snippet if alternative is not None else "",
        strategy=alternative.name if alternative is not None else None,
        outputs_match=True if alternative is not None else None,
    )]


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
        advice=("The ops are too small to gain from splitting across threads: set one intra-op thread before "
                "TensorFlow starts."),
        snippet="import tensorflow as tf\ntf.config.threading.set_intra_op_parallelism_threads(1)  # before any op",
    )]


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
    evidence = [f"The best Python path, {best.name}: median {_med(best)} per call."]
    for name in FLOORS:
        result = timed(report, name)
        if result is None:
            continue
        if outputs_match(result):
            evidence.append(f"{name}: median {_med(result)}; {_match_text(result)}.")
        else:
            evidence.append(f"{name}: median {_ms(result.median_s)}, but its outputs were not shown to match "
                            "the reference, so it is not used as a floor.")
    if floor.name == CPP.name:
        evidence.append(f"{CPP.name} ran in its own process after the Python strategies (not interleaved with them), "
                        "so machine drift between the two is not cancelled out.")
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
    return [Finding(
        id=fid,
        severity="low" if significant else "info",
        title=title,
        evidence=evidence,
        advice=advice,
        snippet=floor.snippet if significant else "",
        strategy=floor.name if significant else None,
        measured_speedup=gap if significant else None,
        outputs_match=True if significant else None,
    )]


def not_enough_calls(report: Report) -> List[Finding]:
    """Strategies timed too few times to be compared: no verdict in either direction rests on them."""
    fid = "not-enough-calls"
    few = [r for r in views.measured(report) if r.measurement.count < views.MIN_CALLS_FOR_VERDICT]
    if not few:
        return []
    stopped = [r.name for r in few if r.measurement.stopped_early]
    evidence = [f"{r.name}: n={r.measurement.count}, median {_ms(r.median_s)}" for r in few]
    if stopped:
        evidence.append(f"Stopped early at the wall cap ({report.settings.max_wall_s:g} s): {', '.join(stopped)}.")
    return [Finding(
        id=fid,
        severity="info",
        title=f"Not enough calls to judge {len(few)} strateg{'ies' if len(few) != 1 else 'y'} "
              f"(fewer than {views.MIN_CALLS_FOR_VERDICT} timed calls)",
        evidence=evidence,
        advice=("No finding compares these: with so few calls there is no noise band to tell a real difference "
                "from chance. Re-run with a larger --budget or --min-calls to judge them."),
        snippet="",
    )]


def noisy(report: Report) -> List[Finding]:
    limit = threshold("noisy", "iqr_over_median")
    evidence = []
    for result in report.strategies:
        m = result.measurement
        if m is not None and m.count and m.noisy:
            evidence.append(f"{result.name}: IQR {_ms(m.iqr_s)} over a median of {_ms(m.median_s)} "
                            f"({m.iqr_s / m.median_s:.0%}, above {limit:.0%}), n={m.count}.")
    if not evidence:
        return []
    return [Finding(
        id="noisy",
        severity="low",
        title=f"Noisy measurements: {len(evidence)} strateg{'ies' if len(evidence) != 1 else 'y'}",
        evidence=evidence,
        advice=("Another process may be using the CPU. Rounds were interleaved, so ratios stay comparable, but "
                "for firmer figures close other programs or raise --budget and re-run."),
        snippet="",
    )]


def outputs_differ(report: Report) -> List[Finding]:
    measured = views.measured(report)
    fastest = measured[0].name if measured else None
    evidence = []
    for result in report.strategies:
        if not views.outputs_differ(result):
            continue
        check = result.outputs
        detail = f" ({check.detail})" if check.detail else ""
        fastest_note = (f"; it was the fastest measured ({_ms(result.median_s)}), and is still not recommended"
                        if result.name == fastest else "")
        evidence.append(f"{result.name}: max |diff| {fmt_diff(check.max_abs_diff)} against {check.reference}, "
                        f"tolerance |diff| <= {check.atol:g} + {check.rtol:g}·|reference|{detail}{fastest_note}.")
    if not evidence:
        return []
    return [Finding(
        id="outputs-differ",
        severity="medium",
        title=f"{len(evidence)} strateg{'ies' if len(evidence) != 1 else 'y'} computed different outputs",
        evidence=evidence,
        advice=("kdiag never recommends these. If you use one, find out why its outputs differ (a conversion "
                "that changes ops or precision, a layer that behaves differently in that runtime) before "
                "relying on its speed."),
        snippet="",
    )]


#: The rules in the order they run (the output order is FINDING_ORDER, not this).
RULES: Tuple[Callable[[Report], List[Finding]], ...] = (
    predict_overhead, advice_backfires, compile_effect, retracing, eager_slow, training_dependent_layers,
    compute_bound, floor_gap, not_enough_calls, noisy, outputs_differ, keras_versions, keras2_file,
    data_size, memory_growth, intra_op_threads, tf_versions,
)
