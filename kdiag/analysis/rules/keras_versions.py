"""Findings about the Keras version: predict under Keras 2 against Keras 3, and Keras 2-era files.

"My predict got slower after upgrading TensorFlow" is one of the most common performance reports
about Keras: TensorFlow 2.16 moved `tf.keras` from Keras 2 to Keras 3. `kdiag inspect --keras both`
measures the model under each (`Report.other_keras`), and `keras_versions` says whether predict,
the user's own path, is measurably faster under one, by the one noise rule (`views.judge`,
no verdict under `views.MIN_CALLS_FOR_VERDICT` calls a side). `keras2_file` points a run under
one Keras at `--keras both` when the file was saved by Keras 2.

Pure functions of the Report, registered like every rule (kdiag.analysis.registry).
"""

from __future__ import annotations

import shlex
from typing import List

from kdiag import views
from kdiag.analysis.findings import median_text, recommend
from kdiag.analysis.registry import DROP_IN, NOTES, ratio_severity, rule, threshold
from kdiag.datamodel.report import Finding, Report
from kdiag.datamodel.strategies import DROP_IN_FIXES, PREDICT
from kdiag.format import duration
from kdiag.format import ratio as fmt_ratio
from kdiag.views.verdict import rerun_hint

KERAS_VERSIONS = "keras-versions"
KERAS2_FILE = "keras2-file"

#: What Keras 3's slower predict is weighed against: the drop-in fixes (as the verdict), not runtimes.
ALTERNATIVES = DROP_IN_FIXES
#: How many of predict's phases that changed between the two Keras versions are cited.
PHASES_CITED = 3


@rule(KERAS_VERSIONS, DROP_IN + 2, thresholds=[
    ("noise_iqrs", 1.0, "predict's medians under Keras 2 and Keras 3 must differ by more than this many times the "
                        "sum of both IQRs for either to be called faster"),
    ("min_ratio", 1.2, "when Keras 3's predict is slower by at least this ratio the finding is severity low (below "
                       "it, info)"),
    ("medium_ratio", 2.0, "at or above this ratio severity medium"),
    ("high_ratio", 10.0, "at or above this ratio severity high"),
])
def keras_versions(report: Report) -> List[Finding]:
    """predict under Keras 3 against Keras 2, when both runs timed it."""
    fid = "keras-versions"
    sides = views.keras_sides(report)
    if sides is None:
        return []
    old, new = views.timed(sides.keras2, PREDICT.name), views.timed(sides.keras3, PREDICT.name)
    if old is None or new is None:
        return []
    label2, label3 = views.keras_label(sides.keras2), views.keras_label(sides.keras3)
    judged = views.judge(*((new, old) if new.median_s >= old.median_s else (old, new)), threshold(fid, "noise_iqrs"))
    ratio = new.median_s / old.median_s
    figures = f"{duration(new.median_s)} vs {duration(old.median_s)}"
    evidence = [f"predict under {label2}: median {median_text(old)} per call.",
                f"predict under {label3}: median {median_text(new)} per call."]
    evidence += _fastest_paths(sides.keras2, sides.keras3)
    evidence += _phase_changes(sides)
    if not judged.enough_calls:
        counts = f"n={new.measurement.count:,} under Keras 3, n={old.measurement.count:,} under Keras 2"
        return [Finding(
            id=fid, severity="info",
            title=f"Not enough calls to compare predict under Keras 3 and Keras 2 (tf-keras) ({counts})",
            evidence=evidence,
            advice=(f"No verdict either way: below {views.MIN_CALLS_FOR_VERDICT} timed calls a side there is no "
                    "noise band to tell a real difference from chance. To judge it, "
                    f"{rerun_hint(sides.keras3, [new]) or rerun_hint(sides.keras2, [old])}."),
            snippet="")]
    if not judged.beyond_noise:
        return [Finding(
            id=fid, severity="info",
            title=f"predict under Keras 3 and under Keras 2 (tf-keras) differ by less than the noise: {figures}",
            evidence=evidence + [f"The medians differ by {duration(abs(judged.gap_s))}, within the noise of "
                                 f"±{duration(judged.noise_s)} (the sum of both IQRs)."],
            advice=("No measurable change in predict's cost between Keras 2 and Keras 3 on this model; for firmer "
                    "figures raise --budget."),
            snippet="")]
    if ratio < 1.0:
        return [Finding(
            id=fid, severity="info",
            title=f"predict under Keras 3 is {fmt_ratio(1 / ratio)} faster than under Keras 2 (tf-keras): {figures}",
            evidence=evidence,
            advice=(f"Keras 3 runs predict faster on this model ({duration(old.median_s - new.median_s)} less per "
                    "call): if you still run it under tf-keras (TF_USE_LEGACY_KERAS=1), upgrading pays."),
            snippet="")]
    severity = ratio_severity(fid, ratio)
    best = views.fastest_usable(sides.keras3, ALTERNATIVES)
    switch = best is not None and best.median_s < new.median_s
    advice = f"Under Keras 3, predict costs {duration(new.median_s - old.median_s)} more per call on this model. "
    if switch:
        advice += (f"For a batch already in memory, call {best.name} instead: measured "
                   f"{fmt_ratio(new.median_s / best.median_s)} faster than predict under Keras 3, with matching "
                   "outputs. ")
    advice += ("To keep Keras 2 meanwhile: pip install tf-keras, and set TF_USE_LEGACY_KERAS=1 before TensorFlow "
               "is imported.")
    return [Finding(
        id=fid, severity=severity,
        title=f"predict under Keras 3 is {fmt_ratio(ratio)} slower than under Keras 2 (tf-keras): {figures}",
        evidence=evidence, advice=advice,
        **recommend(sides.keras3, best if switch else None, new.median_s / best.median_s if switch else None),
    )]


@rule(KERAS2_FILE, NOTES + 2)
def keras2_file(report: Report) -> List[Finding]:
    """A file saved by Keras 2, measured under one Keras only: `--keras both` compares the two."""
    signs = report.model.keras2_signs
    if not signs or report.other_keras is not None or report.tf_versions is not None:
        return []  # --keras both and --tf measure the file under both Keras already
    here = views.keras_label(report)
    command = f"kdiag inspect {shlex.quote(report.model.source)} --keras both"
    return [Finding(
        id=KERAS2_FILE, severity="info",
        title="This file looks saved by Keras 2: measure it under both Keras with --keras both",
        evidence=[f"{sign[0].upper()}{sign[1:]}." for sign in signs] + [f"It was measured here under {here}."],
        advice=(f"`{command}` times it under tf-keras (Keras 2) and Keras 3 side by side in one report, predict's "
                "phases included: upgrading to Keras 3 can change predict's cost (needs tf-keras: "
                "pip install kdiag[legacy])."),
        snippet="")]


def _fastest_paths(keras2: Report, keras3: Report) -> List[str]:
    lines = []
    for report in (keras2, keras3):  # the model's own cost under each: what is left is predict's overhead
        best = views.fastest_usable(report, ALTERNATIVES)
        if best is not None:
            lines.append(f"Fastest Python path for a batch in memory, with matching outputs, under "
                         f"{views.keras_label(report)}: {best.name}, {duration(best.median_s)}.")
    return lines


def _phase_changes(sides: views.KerasSides) -> List[str]:
    deltas = [d for d in views.keras_phase_deltas(sides) if d.beyond_noise]
    if not deltas:
        return []
    deltas.sort(key=lambda d: -abs(d.delta_ms))
    listed = ", ".join(f"{d.phase} {d.before_ms:.3g} → {d.after_ms:.3g} ms ({d.text})" for d in deltas[:PHASES_CITED])
    return [f"predict's phases that changed beyond the noise, Keras 2 → Keras 3 (ms per call): {listed}."]
