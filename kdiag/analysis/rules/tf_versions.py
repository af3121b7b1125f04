"""Findings about TensorFlow releases: predict under each release of `--tf` against the first one.

"predict got slower when I upgraded TensorFlow" is the report this answers: `kdiag inspect --tf`
measures the model under each release in turns (`Report.tf_versions`), and `tf_versions` says for
each release whether predict is measurably slower or faster than under the first, by the one noise
rule (`views.judge`, no verdict under `views.MIN_CALLS_FOR_VERDICT` calls a side), naming the
phase of predict the time moved into (kdiag.views.versions.phase_move).

A pure function of the Report, registered like every rule (kdiag.analysis.registry).
"""

from __future__ import annotations

import shlex
from typing import List, Optional

from kdiag import views
from kdiag.analysis.findings import median_text, recommend
from kdiag.analysis.registry import DROP_IN, ratio_severity, rule, threshold
from kdiag.datamodel.report import Finding, Report
from kdiag.datamodel.strategies import DROP_IN_FIXES, PREDICT
from kdiag.datamodel.versions import INSTALLED, NIGHTLY
from kdiag.format import duration
from kdiag.views import versions
from kdiag.views.facts import LabelledRun, release_label, release_short

TF_VERSIONS = "tf-versions"

#: What a slower release's predict is weighed against: the drop-in fixes (as the verdict), not runtimes.
ALTERNATIVES = DROP_IN_FIXES


@rule(TF_VERSIONS, DROP_IN + 3, thresholds=[
    ("noise_iqrs", 1.0, "predict's pooled medians under two TensorFlow releases must differ by more than this many "
                        "times the sum of both IQRs for either to be called slower"),
    ("min_ratio", 1.2, "a release whose predict is slower than the first release's by at least this ratio is "
                       "severity low (below it, info)"),
    ("medium_ratio", 2.0, "at or above this ratio severity medium"),
    ("high_ratio", 10.0, "at or above this ratio severity high"),
])
def tf_versions(report: Report) -> List[Finding]:
    """One finding per release compared with the first, when both timed predict."""
    reference = versions.reference_entry(report)
    if reference is None or views.timed(reference.report, PREDICT.name) is None:
        return []
    return [_compare(report, reference, entry) for entry in versions.compared_entries(report)
            if views.timed(entry.report, PREDICT.name) is not None]


def _compare(report: Report, reference: versions.VersionEntry, entry: versions.VersionEntry) -> Finding:
    old, new = views.timed(reference.report, PREDICT.name), views.timed(entry.report, PREDICT.name)
    before, after = reference.run.label, entry.run.label
    judged = views.judge(new, old, threshold(TF_VERSIONS, "noise_iqrs"))
    figures = f"{duration(new.median_s)} vs {duration(old.median_s)}"
    move = versions.phase_move(_labelled(reference), _labelled(entry))
    evidence = [f"predict under TensorFlow {before}: median {median_text(old)} per call, pooled over "
                f"{reference.run.rounds} runs.",
                f"predict under TensorFlow {after}: median {median_text(new)} per call, pooled over "
                f"{entry.run.rounds} runs."]
    if move is not None:
        evidence.append(f"The phase of predict that moved most: {move.text} (cProfile shares scaled to each "
                        "release's median).")
    if not judged.enough_calls:
        return Finding(TF_VERSIONS, "info", f"Not enough calls to compare predict under {after} and {before} "
                       f"({judged.calls_text})", evidence,
                       f"No verdict either way: below {views.MIN_CALLS_FOR_VERDICT} timed calls a side there is no "
                       "noise band. Re-run with a larger --budget or --min-calls.", "")
    if not judged.beyond_noise:
        return Finding(TF_VERSIONS, "info", f"predict under {after} and {before} differ by less than the noise: {figures}",
                       evidence + [f"The medians differ by {duration(abs(judged.gap_s))}, within the noise of "
                                   f"±{duration(judged.noise_s)} (the sum of both IQRs)."],
                       f"No measurable change in predict's cost from TensorFlow {before} to {after} on this model.", "")
    if judged.ratio < 1.0:
        return Finding(TF_VERSIONS, "info", f"predict is {views.times_text(judged.ratio)} under {after} than {before} "
                       f"beyond the noise: {figures}", evidence,
                       f"TensorFlow {after} runs predict faster on this model ({duration(-judged.gap_s)} less per "
                       "call).", "")
    return _slower(report, reference, entry, judged, evidence, move)


def _slower(report: Report, reference: versions.VersionEntry, entry: versions.VersionEntry, judged: views.Judgement,
            evidence: List[str], move: Optional[versions.PhaseMove]) -> Finding:
    """predict slower under `entry` than under the reference, beyond the noise: the drop-in fix measured under
    that release, or keeping the older one, and the bisect that finds the release that made it slow."""
    ratio, new = judged.ratio, judged.slow
    severity = ratio_severity(TF_VERSIONS, ratio)
    moved = (f"; the time moved into {move.delta.phase} ({move.delta.delta_ms:+.3g} ms per call)"
             if move is not None and move.delta is not None and move.delta.delta_ms > 0 else "")
    best = views.fastest_usable(entry.report, ALTERNATIVES)
    switch = best is not None and best.median_s < new.median_s
    advice = f"Under TensorFlow {entry.run.label}, predict costs {duration(judged.gap_s)} more per call on this model. "
    if switch:
        advice += (f"For a batch already in memory, call {best.name} instead: measured "
                   f"{views.times_text(best.median_s / new.median_s)} than predict under {entry.run.label}, with "
                   "matching outputs. ")
    advice += _stay_or_bisect(report, reference, entry)
    return Finding(TF_VERSIONS, severity, f"predict is {views.times_text(ratio)} under {entry.run.label} than "
                   f"{reference.run.label} beyond the noise{moved}", evidence, advice.strip(),
                   **recommend(entry.report, best if switch else None, new.median_s / best.median_s if switch else None))


def _labelled(entry: versions.VersionEntry) -> LabelledRun:
    return LabelledRun(release_label(entry.run, entry.report), entry.report, short_label=release_short(entry.run))


def _stay_or_bisect(report: Report, reference: versions.VersionEntry, entry: versions.VersionEntry) -> str:
    old, new = reference.run, entry.run
    text = ""
    if old.requested != INSTALLED:
        text += f"Or keep TensorFlow {old.tensorflow} meanwhile (pip install {old.package}=={old.tensorflow}). "
    if NIGHTLY not in (old.requested, new.requested) and report.model.source:
        model = (f"--example {report.model.name}" if report.model.format == "example"
                 else shlex.quote(report.model.source))
        text += (f"`kdiag bisect {model} --good {old.tensorflow} --bad {new.tensorflow}` finds the first release "
                 "between them that made it slow.")
    return text


