"""Correctness first: strategies whose outputs differ from the reference, and outputs that depend on
the training flag."""

from __future__ import annotations

from typing import List

from kdiag import views
from kdiag.analysis.registry import CORRECTNESS, rule
from kdiag.datamodel.report import Finding, Report
from kdiag.datamodel.strategies import EAGER
from kdiag.format import diff as fmt_diff
from kdiag.format import duration


@rule("outputs-differ", CORRECTNESS)
def outputs_differ(report: Report) -> List[Finding]:
    measured = views.measured(report)
    fastest = measured[0].name if measured else None
    evidence = []
    for result in report.strategies:
        if not views.outputs_differ(result):
            continue
        check = result.outputs
        detail = f" ({check.detail})" if check.detail else ""
        fastest_note = (f"; it was the fastest measured ({duration(result.median_s)}), and is still not recommended"
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


@rule("training-dependent-layers", CORRECTNESS + 1)
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
        snippet=EAGER.snippet,  # how to write the call (training=False), not a recommendation of a strategy
    )]
