"""The user's own path: predict against the fastest path with matching outputs, the usual advice
measured against predict, and a direct model(x) call against a graph."""

from __future__ import annotations

from typing import List

from kdiag import views
from kdiag.analysis.findings import match_text, median_text, phase_list, recommend, scaled_note
from kdiag.analysis.registry import BACKFIRES, HABITS, USERS_PATH, rule, threshold
from kdiag.datamodel.report import Finding, Report, StrategyResult
from kdiag.datamodel.strategies import DIRECT_PATHS, EAGER, GRAPH_PATHS, PREDICT, PREDICT_ON_BATCH, SAVEDMODEL, XLA
from kdiag.format import duration
from kdiag.format import ratio as fmt_ratio
from kdiag.views import fastest_usable, outputs_match, timed, usable

#: What predict is compared with: every Python path a user can call on a batch in memory.
PREDICT_ALTERNATIVES = DIRECT_PATHS + (XLA.name, SAVEDMODEL.name)
#: The usual advice for a slow predict; a warning when it is slower than predict on this model.
USUAL_ADVICE = ((EAGER.name, "calling model(x) directly"), (PREDICT_ON_BATCH.name, "predict_on_batch(x)"))


@rule("predict-overhead", USERS_PATH, thresholds=[
    ("min_ratio", 1.2, "predict's median / the fastest matching Python path's median must reach this"),
    ("min_gap_s", 1e-3, "and predict's median must exceed that path's by at least this many seconds"),
    ("noise_iqrs", 1.0, "and the difference of medians must exceed this many times the sum of both IQRs"),
    ("high_ratio", 10.0, "at or above this ratio the finding is severity high"),
    ("medium_ratio", 2.0, "at or above this ratio (and below high_ratio) severity medium; below it, low"),
    ("dominant_phase_share", 0.10, "phases of predict's profile with at least this share are cited as evidence"),
])
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
        f"predict: median {median_text(predict)} per call.",
        f"{best.name}: median {median_text(best)} per call, {fmt_ratio(speedup)} faster; {match_text(best)}.",
    ]
    for name in PREDICT_ALTERNATIVES:
        other = usable(report, name)
        if other is not None and other is not best and other.median_s < predict.median_s:
            evidence.append(f"{other.name}: median {duration(other.median_s)}, "
                            f"{fmt_ratio(predict.median_s / other.median_s)} faster than predict.")
    evidence += _eager_mention(report, predict) + _predict_profile(report, threshold(fid, "dominant_phase_share"))
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
        **recommend(report, best, speedup),
    )]


def _predict_profile(report: Report, min_share: float) -> List[str]:
    """Where predict's time goes, and the concrete functions it creates per call, when it was profiled."""
    profile = report.profile(PREDICT.name)
    if profile is None:
        return []
    lines = []
    dominant = phase_list(profile.phases, min_share)
    if dominant:
        lines.append(f"Where predict's time goes ({scaled_note(profile)}): {dominant}.")
    if profile.traces_per_call > 0:
        why = ("" if report.environment.legacy_keras else
               ": Keras 3 predict traces its tf.data map functions on every call, which is part of "
               "predict's own overhead, not a retracing of your model")
        lines.append(f"predict created {profile.traces_per_call:.3g} concrete functions per warm call "
                     f"({profile.cold_traces} on its first call){why}.")
    return lines


def _eager_mention(report: Report, predict: StrategyResult) -> List[str]:
    eager = timed(report, EAGER.name)
    if eager is None:
        return []
    if outputs_match(eager):
        return [f"model(x, training=False) (eager): median {duration(eager.median_s)}, "
                f"{fmt_ratio(predict.median_s / eager.median_s)} faster than predict; {match_text(eager)}."]
    return [f"model(x, training=False) (eager) was measured at {duration(eager.median_s)}, but its outputs "
            "were not shown to match the reference, so it is not recommended."]


@rule("advice-backfires", BACKFIRES, thresholds=[
    ("min_ratio", 1.1, "model(x) eager's or predict_on_batch's median / predict's median must reach this"),
    ("noise_iqrs", 1.0, "and the difference of medians must exceed this many times the sum of both IQRs"),
])
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
            evidence=[f"{other.name}: median {median_text(other)} per call.",
                      f"predict: median {median_text(predict)} per call.",
                      f"The difference, {duration(judged.gap_s)}, is beyond the noise (±{duration(judged.noise_s)}, "
                      "the sum of both IQRs)."],
            advice=f"Do not replace predict with {other.name} on this model: it is slower here.{better}",
            snippet="",
        ))
    return findings


@rule("eager-slow", HABITS + 3, thresholds=[
    ("min_ratio", 2.0, "model(x) eager's median / the fastest matching graph path's median must reach this "
                       "(only when model(x) is not slower than predict: then advice-backfires says it)"),
])
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
            f"model(x) eager: median {median_text(eager)} per call.",
            f"{best.name}: median {median_text(best)} per call; {match_text(best)}.",
        ],
        advice=(f"Wrap the call in a tf.function with an input_signature and call that: {best.name} measured "
                f"{fmt_ratio(speedup)} faster than model(x) run op by op."),
        **recommend(report, best, speedup),
    )]
