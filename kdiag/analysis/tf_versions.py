"""Findings about TensorFlow releases: predict under each release of `--tf` against the first one.

"predict got slower when I upgraded TensorFlow" is the report this answers: `kdiag inspect --tf`
measures the model under each release in turns (`Report.tf_versions`), and `tf_versions` says for
each release whether predict is measurably slower or faster than under the first, by the one noise
rule (`views.judge`, no verdict under `views.MIN_CALLS_FOR_VERDICT` calls a side), naming the
phase of predict the time moved into (kdiag.views_versions.phase_moves).

A pure function of the Report, like every rule of kdiag.analysis.diagnose, which runs it and prints
its thresholds (`THRESHOLD_ROWS`) with `kdiag rules`.
"""

from __future__ import annotations

import shlex
from typing import Dict, List, Optional, Tuple

from kdiag import views
from kdiag import views_versions as vv
from kdiag.datamodel.report import Finding, Report, StrategyResult
from kdiag.datamodel.strategies import DIRECT_PATHS, PREDICT, SAVEDMODEL, XLA
from kdiag.datamodel.versions import INSTALLED, NIGHTLY
from kdiag.format import duration

TF_VERSIONS = "tf-versions"

#: (finding id, name, value, meaning), in the THRESHOLDS table of kdiag.analysis.diagnose.
THRESHOLD_ROWS: Tuple[Tuple[str, str, float, str], ...] = (
    (TF_VERSIONS, "noise_iqrs", 1.0,
     "predict's pooled medians under two TensorFlow releases must differ by more than this many times the sum of "
     "both IQRs for either to be called slower"),
    (TF_VERSIONS, "min_ratio", 1.2,
     "a release whose predict is slower than the first release's by at least this ratio is severity low (below "
     "it, info)"),
    (TF_VERSIONS, "medium_ratio", 2.0, "at or above this ratio severity medium"),
    (TF_VERSIONS, "high_ratio", 10.0, "at or above this ratio severity high"),
)
_VALUES: Dict[Tuple[str, str], float] = {(fid, name): value for fid, name, value, _ in THRESHOLD_ROWS}

#: The paths a user can switch to for a batch in memory (as diagnose's predict-overhead rule).
ALTERNATIVES = DIRECT_PATHS + (XLA.name, SAVEDMODEL.name)


def threshold(finding_id: str, name: str) -> float:
    """The value of one of this module's thresholds (as kdiag.analysis.diagnose.threshold)."""
    return _VALUES[(finding_id, name)]


def tf_versions(report: Report) -> List[Finding]:
    """One finding per release compared with the first, when both timed predict."""
    reference = vv.reference_entry(report)
    if reference is None:
        return []
    old = views.timed(reference.report, PREDICT.name)
    if old is None:
        return []
    moves = {m.other: m for m in vv.phase_moves(report)}
    findings = []
    for entry in vv.compared_entries(report):
        new = views.timed(entry.report, PREDICT.name)
        if new is not None:
            findings.append(_compare(report, reference, entry, old, new, moves.get(entry.run.label)))
    return findings


def _compare(report: Report, reference: vv.VersionEntry, entry: vv.VersionEntry, old: StrategyResult,
             new: StrategyResult, move: Optional[vv.PhaseMove]) -> Finding:
    fid = "tf-versions"
    before, after = reference.run.label, entry.run.label
    judged = views.judge(new, old, threshold(fid, "noise_iqrs"))
    figures = f"{duration(new.median_s)} vs {duration(old.median_s)}"
    evidence = [f"predict under TensorFlow {before}: median {_med(old)} per call, pooled over "
                f"{reference.run.rounds} runs.",
                f"predict under TensorFlow {after}: median {_med(new)} per call, pooled over {entry.run.rounds} runs."]
    if move is not None:
        evidence.append(f"The phase of predict that moved most: {move.text} (cProfile shares scaled to each "
                        "release's median).")
    if not judged.enough_calls:
        return Finding(TF_VERSIONS, "info", f"Not enough calls to compare predict under {after} and {before} "
                       f"({judged.calls_text})", evidence,
                       f"No verdict either way: below {views.MIN_CALLS_FOR_VERDICT} timed calls a side there is no "
                       "noise band. Re-run with a larger --budget or --min-calls.", "")
    if not judged.beyond_noise:
        return Finding(TF_VERSIONS, "info", f"predict under {after} and {before} differ by less than the noise: "
                       f"{figures}", evidence + [f"The medians differ by {duration(abs(judged.gap_s))}, within the "
                                                 f"noise of ±{duration(judged.noise_s)} (the sum of both IQRs)."],
                       f"No measurable change in predict's cost from TensorFlow {before} to {after} on this model.", "")
    if judged.ratio < 1.0:
        return Finding(TF_VERSIONS, "info", f"predict is {views.times_text(judged.ratio)} under {after} than "
                       f"{before} beyond the noise: {figures}", evidence,
                       f"TensorFlow {after} runs predict faster on this model ({duration(-judged.gap_s)} less per "
                       "call).", "")
    ratio = judged.ratio
    severity = ("high" if ratio >= threshold(fid, "high_ratio") else "medium" if ratio >= threshold(fid, "medium_ratio")
                else "low" if ratio >= threshold(fid, "min_ratio") else "info")
    moved = f"; the time moved into {move.delta.phase} ({move.delta.delta_ms:+.3g} ms per call)" \
        if move is not None and move.delta is not None and move.delta.delta_ms > 0 else ""
    best = views.fastest_usable(entry.report, ALTERNATIVES)
    switch = best is not None and best.median_s < new.median_s
    advice = f"Under TensorFlow {after}, predict costs {duration(judged.gap_s)} more per call on this model. "
    if switch:
        advice += (f"For a batch already in memory, call {best.name} instead: measured "
                   f"{views.times_text(best.median_s / new.median_s)} than predict "
                   f"under {after}, with matching outputs. ")
    advice += _stay_or_bisect(report, reference, entry)
    return Finding(TF_VERSIONS, severity, f"predict is {views.times_text(ratio)} under {after} than {before} beyond "
                   f"the noise{moved}", evidence, advice.strip(),
                   snippet=best.snippet if switch else "", strategy=best.name if switch else None,
                   measured_speedup=new.median_s / best.median_s if switch else None,
                   outputs_match=True if switch else None)


def _stay_or_bisect(report: Report, reference: vv.VersionEntry, entry: vv.VersionEntry) -> str:
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


def _med(result: StrategyResult) -> str:
    return f"{duration(result.median_s)} (IQR {duration(views.iqr(result))}, n={result.measurement.count})"
