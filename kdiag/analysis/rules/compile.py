"""compile() and tracing: predict before and after compile(), and tf.functions traced again on warm calls."""

from __future__ import annotations

import dataclasses
from typing import List, Optional

from kdiag import views
from kdiag.analysis.findings import median_text, recommend
from kdiag.analysis.registry import DROP_IN, NOTES, rule, threshold
from kdiag.datamodel.profile import TRACING
from kdiag.datamodel.report import Finding, Report, StrategyResult
from kdiag.datamodel.strategies import PREDICT, PREDICT_COMPILED, PREDICT_SCENARIOS, TF_FUNCTION
from kdiag.format import duration
from kdiag.format import ratio as fmt_ratio
from kdiag.views import timed

SLOWDOWN = "compile-slowdown"


@dataclasses.dataclass(frozen=True)
class _CompileEffect:
    plain: StrategyResult
    compiled: StrategyResult
    ratio: float  # compiled / plain
    difference: float  # seconds, compiled - plain
    noise: float  # seconds: the sum of both IQRs, times the rule's multiple
    evidence: List[str]

    @property
    def slowdown(self) -> bool:
        return self.ratio >= threshold(SLOWDOWN, "min_ratio") and self.difference > self.noise


def _compile_effect(report: Report) -> Optional[_CompileEffect]:
    """predict (compiled) against predict, when both were timed often enough to judge."""
    plain = timed(report, PREDICT.name)
    compiled = timed(report, PREDICT_COMPILED.name)
    if plain is None or compiled is None or not views.judge(compiled, plain).enough_calls:
        return None  # too few calls: the not-enough-calls finding says so
    evidence = [
        f"predict (compiled): median {median_text(compiled)}.",
        f"predict (loaded with compile=False): median {median_text(plain)}.",
    ]
    deltas = _phase_deltas(report)
    if deltas:
        evidence.append(deltas)
    return _CompileEffect(plain, compiled, compiled.median_s / plain.median_s, compiled.median_s - plain.median_s,
                          threshold(SLOWDOWN, "noise_iqrs") * (views.iqr(plain) + views.iqr(compiled)), evidence)


@rule(SLOWDOWN, DROP_IN + 1, thresholds=[
    ("min_ratio", 1.2, "predict (compiled)'s median / predict's median must reach this"),
    ("noise_iqrs", 1.0, "and the difference of medians must exceed this many times the sum of both IQRs"),
])
def compile_slowdown(report: Report) -> List[Finding]:
    """compile() makes predict slower beyond the noise, by at least min_ratio."""
    effect = _compile_effect(report)
    if effect is None or not effect.slowdown:
        return []
    evidence = list(effect.evidence)
    if not views.outputs_match(effect.plain):
        evidence.append("predict's outputs were not checked against a reference, so it is not recommended.")
    return [Finding(
        id=SLOWDOWN,
        severity="medium",
        title=f"compile() makes predict {fmt_ratio(effect.ratio)} slower",
        evidence=evidence,
        advice=("For inference only, load the model without compiling it: "
                "keras.models.load_model(path, compile=False). "
                f"Measured {fmt_ratio(effect.ratio)} faster on this model."),
        **recommend(report, effect.plain, effect.ratio),
    )]


@rule("compile-no-effect", NOTES)
def compile_no_effect(report: Report) -> List[Finding]:
    """compile() changed predict less than compile-slowdown's thresholds: how much, against the noise."""
    effect = _compile_effect(report)
    if effect is None or effect.slowdown:
        return []
    percent = (effect.ratio - 1.0) * 100.0
    noise_percent = effect.noise / effect.plain.median_s * 100.0
    within = abs(effect.difference) <= effect.noise
    evidence = [f"compile() changed predict by {percent:+.1f}% "
                f"({'within' if within else 'outside'} the noise of ±{noise_percent:.1f}%, "
                "the sum of both IQRs)."] + effect.evidence
    moved = [d for d in views.compile_phase_deltas(report) if d.beyond_noise]
    if within:
        title = f"compile() left predict's total time within the noise (±{noise_percent:.1f}%)"
        if moved:
            # Phases beyond their own bands that cancel out: said, not hidden behind "no effect".
            title += (f", though {len(moved)} of its phases moved beyond their noise" if len(moved) != 1 else
                      ", though one of its phases moved beyond its noise")
        advice = (f"No effect of compile() on predict's time could be measured at this noise level "
                  f"(±{noise_percent:.1f}%); for a tighter bound, re-run on a quiet machine with a larger --budget.")
    elif effect.difference > 0:
        title = (f"compile() made predict {percent:.1f}% slower: measurable, but below the "
                 f"{threshold(SLOWDOWN, 'min_ratio'):g}x slow-down worth acting on")
        advice = "Nothing worth changing: loading with compile=False would save too little to matter."
    else:
        title = f"predict was {-percent:.1f}% faster after compile(): nothing to change"
        advice = "compile() does not slow predict down on this model."
    return [Finding(id="compile-no-effect", severity="info", title=title, evidence=evidence, advice=advice,
                    snippet="")]


def _phase_deltas(report: Report, limit: int = 3) -> str:
    """The largest per-phase changes with compile(), as the terminal and Markdown tables show them."""
    deltas = sorted(views.compile_phase_deltas(report), key=lambda d: -abs(d.delta_ms))[:limit]
    if not deltas:
        return ""
    shown = [f"{d.phase} {d.text} ({d.before_ms:.3g} → {d.after_ms:.3g} ms)" for d in deltas]
    return ("Largest per-phase changes with compile() (ms per call, cProfile shares scaled to each scenario's "
            "unprofiled median; within the noise shows as ~0): " + ", ".join(shown) + ".")


@rule("retracing", DROP_IN + 5, thresholds=[
    ("max_traces_per_call", 0.0, "a profiled scenario other than predict creating more concrete functions per warm "
                                 "call than this is retracing"),
    ("high_traces_per_call", 1.0, "at or above this many traces per warm call the finding is severity high "
                                  "(else medium)"),
])
def retracing(report: Report) -> List[Finding]:
    fid = "retracing"
    limit = threshold(fid, "max_traces_per_call")
    evidence = []
    worst = 0.0
    for profile in report.profiles:
        if profile.scenario not in PREDICT_SCENARIOS and profile.traces_per_call > limit:
            worst = max(worst, profile.traces_per_call)
            tracing = profile.phase(TRACING)
            cost = (f"; tracing took {duration(tracing.ms_per_call / 1e3)} per call ({tracing.share:.0%})"
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
        # How to write the fix, not a recommendation of the measured strategy.
        snippet=tf_function.snippet if tf_function is not None else "",
    )]
