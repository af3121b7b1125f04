"""The user's own path: predict against the verdict's drop-in fix, the usual advice measured against
predict, and a direct model(x) call against a graph."""

from __future__ import annotations

from typing import List

from kdiag import views
from kdiag.analysis.findings import match_text, median_text, phase_list, recommend, scaled_note
from kdiag.analysis.registry import BACKFIRES, DROP_IN, ratio_severity, rule, threshold
from kdiag.datamodel.report import Finding, Report, StrategyResult
from kdiag.datamodel.strategies import (CONCRETE, DROP_IN_FIXES, EAGER, GRAPH_PATHS, PREDICT, PREDICT_ON_BATCH,
                                        TF_FUNCTION, XLA)
from kdiag.format import duration
from kdiag.format import ratio as fmt_ratio
from kdiag.views import fastest_usable, outputs_match, timed, usable
from kdiag.views import verdict as verdicts

#: The usual advice for a slow predict, measured against predict: a warning when it is slower on this model.
USUAL_ADVICE = ((EAGER.name, "calling model(x) directly"), (PREDICT_ON_BATCH.name, "predict_on_batch(x)"))


@rule("predict-overhead", DROP_IN, thresholds=[
    ("min_ratio", verdicts.FIX_MIN_RATIO, "predict's median / the best drop-in fix's median (the verdict's) must "
                                          "reach this (kdiag.views.verdict.FIX_MIN_RATIO)"),
    ("min_gap_s", verdicts.FIX_MIN_GAP_S, "and predict's median must exceed the fix's by at least this many seconds "
                                          "(kdiag.views.verdict.FIX_MIN_GAP_S)"),
    ("high_ratio", 10.0, "at or above this ratio the finding is severity high"),
    ("medium_ratio", 2.0, "at or above this ratio (and below high_ratio) severity medium; below it, low"),
    ("dominant_phase_share", 0.10, "phases of predict's profile with at least this share are cited as evidence"),
])
def predict_overhead(report: Report) -> List[Finding]:
    """The verdict's drop-in fix, when it recommends one: the same path the verdict line names."""
    fid = "predict-overhead"
    verdict = verdicts.verdict(report)
    if not verdict.recommends:
        return []
    predict, best, judged = verdict.predict, verdict.fix, verdict.judged
    speedup, gap = judged.ratio, judged.gap_s
    # The verdict applied these very values (registered from its constants); read here, so that the
    # table kdiag rules prints is the one that decides.
    if speedup < threshold(fid, "min_ratio") or gap < threshold(fid, "min_gap_s"):
        return []
    evidence = [
        f"predict: median {median_text(predict)} per call.",
        f"{best.name}: median {median_text(best)} per call, {fmt_ratio(speedup)} faster, beyond the noise "
        f"(±{duration(judged.noise_s)}, the sum of both IQRs); {match_text(best)}.",
    ]
    evidence += _other_fixes(report, predict, best) + _eager_mention(report, predict)
    evidence += _predict_profile(report, threshold(fid, "dominant_phase_share"))
    return [Finding(
        id=fid,
        severity=ratio_severity(fid, speedup),  # at least "low": below min_ratio it returned above
        title=f"Call {best.name} instead of model.predict: {fmt_ratio(speedup)} faster per call "
              f"({duration(predict.median_s)} → {duration(best.median_s)})",
        evidence=evidence,
        advice=(f"For a batch already in memory, call {best.name} instead of model.predict, in the same process on "
                f"the same model object: measured {fmt_ratio(speedup)} faster on this model ({duration(gap)} saved "
                "per call), with matching outputs. predict sets up a data pipeline on every call; that pays off "
                "for large datasets fed in many batches, not for one."),
        **recommend(report, best, speedup),
    )]


def _other_fixes(report: Report, predict: StrategyResult, best: StrategyResult) -> List[str]:
    """The other drop-in fixes measured, each against predict under the one noise rule."""
    lines = []
    for name in DROP_IN_FIXES:
        other = usable(report, name)
        if other is None or other is best:
            continue
        lines.append(f"{other.name}: median {duration(other.median_s)}, {_versus_predict(other, predict)}.")
    return lines


def _versus_predict(other: StrategyResult, predict: StrategyResult) -> str:
    """"4.80x faster than predict", "1.30x slower than predict", "within the noise of predict" or why not judged."""
    judged = views.judge(*((predict, other) if predict.median_s >= other.median_s else (other, predict)))
    if not judged.enough_calls:
        return f"not compared with predict ({judged.calls_text}: too few calls)"
    if not judged.beyond_noise:
        return "within the noise of predict"
    return f"{views.times_text(other.median_s / predict.median_s)} than predict"


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
               ": Keras 3 predict's own tf.data map functions, not a retracing of your model")
        lines.append(f"predict traced {profile.traces_per_call:.3g} concrete functions per warm call "
                     f"({profile.cold_traces} on its first){why}.")
    return lines


def _eager_mention(report: Report, predict: StrategyResult) -> List[str]:
    eager = timed(report, EAGER.name)
    if eager is None:
        return []
    if outputs_match(eager):
        return [f"model(x, training=False) (eager): median {duration(eager.median_s)}, "
                f"{_versus_predict(eager, predict)}; {match_text(eager)}."]
    return [f"model(x, training=False) (eager) was measured at {duration(eager.median_s)}, but its outputs "
            "were not shown to match the reference, so it is not recommended."]


@rule("advice-backfires", BACKFIRES, thresholds=[
    ("min_ratio", 1.1, "the usual advice's median / the path it would replace (predict; for XLA, the same graph "
                       "without it) must reach this"),
    ("noise_iqrs", 1.0, "and the difference of medians must exceed this many times the sum of both IQRs"),
])
def advice_backfires(report: Report) -> List[Finding]:
    """The usual advice (model(x), predict_on_batch instead of predict; XLA on a graph) measured slower."""
    fid = "advice-backfires"
    findings = []
    predict = timed(report, PREDICT.name)
    pairs = [(timed(report, name), predict, text, "predict") for name, text in USUAL_ADVICE]
    graph = fastest_usable(report, (TF_FUNCTION.name, CONCRETE.name))
    if graph is not None:
        pairs.append((usable(report, XLA.name), graph, "compiling with XLA (jit_compile=True)", graph.name))
    for other, base, advice_text, base_name in pairs:
        if other is None or base is None:
            continue
        judged = views.judge(other, base, threshold(fid, "noise_iqrs"))
        if not judged.beyond_noise or judged.ratio < threshold(fid, "min_ratio"):
            continue
        findings.append(Finding(
            id=fid,
            severity="medium",
            title=f"{advice_text[0].upper()}{advice_text[1:]}, the usual advice, is {fmt_ratio(judged.ratio)} slower "
                  f"than {base_name} here",
            evidence=[f"{other.name}: median {median_text(other)} per call.",
                      f"{base_name}: median {median_text(base)} per call.",
                      f"The difference, {duration(judged.gap_s)}, is beyond the noise (±{duration(judged.noise_s)}, "
                      "the sum of both IQRs)."],
            advice=f"Do not replace {base_name} with {other.name} on this model: it is slower here.{_better(report)}",
            snippet="",
        ))
    return findings


def _better(report: Report) -> str:
    verdict = verdicts.verdict(report)
    if not verdict.recommends:
        return ""
    return (f" If predict is too slow, {verdict.fix.name} measured {fmt_ratio(verdict.speedup)} faster than predict, "
            "with matching outputs.")


@rule("eager-slow", DROP_IN + 4, thresholds=[
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
