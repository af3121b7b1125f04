"""Outputs that cannot be trusted, whoever computes them: NaN or infinite values from the reference
(predict), and strategies whose outputs change between two calls on the same inputs."""

from __future__ import annotations

from typing import List

from kdiag import views
from kdiag.analysis.registry import CORRECTNESS, rule
from kdiag.datamodel.report import Finding, Report
from kdiag.format import diff as fmt_diff


@rule("nonfinite-outputs", CORRECTNESS - 2)
def nonfinite_outputs(report: Report) -> List[Finding]:
    check = views.reference_check(report)
    reference = report.strategy(check.reference) if check is not None else None
    own = reference.outputs if reference is not None else None
    if own is None or not own.nonfinite_values:
        return []
    count, total = own.nonfinite_values, own.output_values
    evidence = [f"{reference.name}'s first call returned {count:,} NaN or infinite values of {total:,} "
                f"({count / max(total, 1):.0%})."]
    synthetic = [i.name for i in report.model.inputs if i.value_range != "user data"]
    if synthetic:
        evidence.append(f"The inputs were synthetic ({', '.join(synthetic)}: "
                        f"{'; '.join(i.value_range for i in report.model.inputs if i.name in synthetic)}); "
                        "with your own data (--inputs) the outputs may be finite.")
    evidence.append("The other strategies were checked against these outputs value by value, NaN matching NaN "
                    "and an infinity the same infinity.")
    return [Finding(
        id="nonfinite-outputs",
        severity="high",
        title=f"{reference.name}'s outputs are not finite: {count:,} of {total:,} values are NaN or infinite",
        evidence=evidence,
        advice=("Fix the outputs before the speed: NaN or infinite values come from weights that diverged in "
                "training (look for NaN in the weights), inputs outside the range the model was trained on, or "
                "an operation such as a log or a division of zero. A model that computes NaN gives nothing "
                "worth calling faster, whichever way it is called."),
        snippet="",
    )]


@rule("outputs-vary", CORRECTNESS - 1)
def outputs_vary(report: Report) -> List[Finding]:
    varying = [r for r in report.strategies if views.outputs_vary(r)]
    if not varying:
        return []
    evidence = []
    for result in varying:
        check = result.outputs
        detail = f" ({check.repeat_detail})" if check.repeat_detail else ""
        evidence.append(f"{result.name}: max |diff| {fmt_diff(check.repeat_max_abs_diff)} between its first call "
                        f"and a later one on the same inputs, beyond |diff| <= {check.atol:g} + "
                        f"{check.rtol:g}·|first|{detail}.")
    reference = views.reference_check(report)
    reference_varies = reference is not None and any(r.name == reference.reference for r in varying)
    if reference_varies:
        evidence.append(f"{reference.reference} is the reference every strategy's outputs are checked against: "
                        "with its own outputs changing, no strategy can be shown to compute what it computes.")
    title = (f"Outputs vary between calls on the same inputs: {', '.join(r.name for r in varying)}"
             if len(varying) <= 2 else f"{len(varying)} strategies' outputs vary between calls on the same inputs")
    return [Finding(
        id="outputs-vary",
        severity="high" if reference_varies else "medium",
        title=title,
        evidence=evidence,
        advice=("kdiag never recommends a strategy whose outputs change from call to call: they cannot be "
                "checked, so neither can its speed-up. Outputs vary when a layer draws random numbers at "
                "inference (noise or dropout run with training=True, tf.random without a seed) or keeps state "
                "between calls (a stateful RNN, a counter). Make the call deterministic (training=False, "
                "stateful=False, a fixed seed) and run kdiag again."),
        snippet="",
    )]
