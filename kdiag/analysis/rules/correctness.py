"""Outputs: calls the user would make that compute different outputs (correctness, first), runtimes
whose outputs differ (with the runtime changes), and outputs that depend on the training flag (a note:
only code that passes training=True sees them)."""

from __future__ import annotations

from typing import List

from kdiag import views
from kdiag.analysis.registry import CORRECTNESS, NOTES, RUNTIMES, rule
from kdiag.datamodel.report import Finding, Report, StrategyResult
from kdiag.datamodel.strategies import RUNTIME_CHANGES
from kdiag.format import diff as fmt_diff
from kdiag.format import duration


def _differing(report: Report, runtimes: bool) -> List[StrategyResult]:
    """Strategies whose outputs differ: the calls on the model object (runtimes=False), or the runtimes."""
    return [r for r in report.strategies if views.outputs_differ(r) and (r.name in RUNTIME_CHANGES) == runtimes]


def _evidence(report: Report, differing: List[StrategyResult]) -> List[str]:
    measured = views.measured(report)
    fastest = measured[0].name if measured else None
    lines = []
    for result in differing:
        check = result.outputs
        detail = f" ({check.detail})" if check.detail else ""
        fastest_note = (f"; it was the fastest measured ({duration(result.median_s)}), and is still not recommended"
                        if result.name == fastest else "")
        lines.append(f"{result.name}: max |diff| {fmt_diff(check.max_abs_diff)} against {check.reference}, "
                     f"tolerance |diff| <= {check.atol:g} + {check.rtol:g}·|reference|{detail}{fastest_note}.")
    return lines


def _count(results: List[StrategyResult]) -> str:
    return f"{len(results)} strateg{'ies' if len(results) != 1 else 'y'}"


@rule("outputs-differ", CORRECTNESS)
def outputs_differ(report: Report) -> List[Finding]:
    """A call on the model object itself (predict after compile(), predict_on_batch, model(x), a
    tf.function, XLA) computes different outputs than predict: a call the user would make."""
    differing = _differing(report, runtimes=False)
    if not differing:
        return []
    names = ", ".join(r.name for r in differing)
    return [Finding(
        id="outputs-differ",
        severity="medium",
        title=f"{names} computed different outputs than predict on the same model object",
        evidence=_evidence(report, differing),
        advice=("kdiag never recommends these. Before you use one, find out why its outputs differ (a layer that "
                "behaves differently when traced or compiled, a dtype, a nondeterministic op)."),
        snippet="",
    )]


@rule("runtime-outputs-differ", RUNTIMES + 4)
def runtime_outputs_differ(report: Report) -> List[Finding]:
    """A runtime change (SavedModel, TFLite, C++) computes different outputs: it is never recommended."""
    differing = _differing(report, runtimes=True)
    if not differing:
        return []
    return [Finding(
        id="runtime-outputs-differ",
        severity="info",
        title=f"{_count(differing)} outside Keras computed different outputs, so kdiag does not recommend "
              f"{'them' if len(differing) != 1 else 'it'}: {', '.join(r.name for r in differing)}",
        evidence=_evidence(report, differing),
        advice=("If you move to one of these, find out first why its outputs differ (a conversion that changes "
                "ops or precision, a layer that behaves differently in that runtime)."),
        snippet="",
    )]


@rule("training-dependent-layers", NOTES + 1)
def training_dependent_layers(report: Report) -> List[Finding]:
    """Layers that behave differently when training, and model(x, training=True) measured beyond the
    outputs tolerance: a note, since every call kdiag times or shows passes training=False."""
    layers = report.model.training_dependent_layers
    stray = report.model.training_true_max_abs_diff
    check = views.reference_check(report)
    if not layers or stray is None or stray != stray or check is None or stray <= check.atol:
        return []  # nothing measured to say, or nothing the training flag changes
    shown = ", ".join(layers[:10]) + (f" and {len(layers) - 10} more" if len(layers) > 10 else "")
    verb = "layers behave" if len(layers) != 1 else "layer behaves"
    return [Finding(
        id="training-dependent-layers",
        severity="info",
        title="Only code that passes training=True gets different outputs from this model",
        evidence=[f"{len(layers)} {verb} differently when training: {shown}.",
                  f"model(x, training=True) differs from {check.reference}'s outputs by max |diff| "
                  f"{fmt_diff(stray)}, above the outputs tolerance (atol {check.atol:g}).",
                  "predict, predict_on_batch and every snippet kdiag shows call the model in inference mode "
                  "(training=False)."],
        advice=("Nothing to change unless your own code passes training=True when it predicts (as a custom "
                "training loop does): there, Dropout drops units and BatchNormalization uses batch statistics, "
                "so call the model with training=False."),
        snippet="",
    )]
