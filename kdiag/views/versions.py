"""Derived facts of a `--tf` report and of a bisect, one definition each. Standard library only.

The version table itself is the side-by-side section (kdiag.views.sections.side_by_side), built
over `facts.side_by_side`'s labelled runs like `--keras both`'s; what is particular to releases
lives here:

- `entries`, `reference_entry`, `compared_entries`: each release of a `--tf` report with its Report
  (the enclosing Report for the reference, the first release measured);
- `phase_move`: the phase of predict that moved most from one run to another, beyond its noise
  band ("tf.data pipeline +29.4 ms per call from TensorFlow 2.15.1 to TensorFlow 2.16.2");
- `release_lines`: how each release was measured (environment built fresh or reused, runs pooled)
  and why one measured nothing; `nightly_text`: the bug template's "reproduced with TensorFlow
  Nightly?" answer;
- the words of a bisect: `probe_verdict`, `probe_line`, `bisect_header`, `bisect_summary`.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional

from kdiag.datamodel.report import Report, VersionRun
from kdiag.datamodel.strategies import PREDICT
from kdiag.datamodel.versions import NIGHTLY, BisectProbe, BisectResult, EnvironmentInfo
from kdiag.format import duration
from kdiag.views import facts
from kdiag.views.facts import LabelledRun


@dataclasses.dataclass(frozen=True)
class VersionEntry:
    """One `--tf` release with its Report (the enclosing one for the reference; None when it measured nothing)."""

    run: VersionRun
    report: Optional[Report]


def entries(report: Report) -> List[VersionEntry]:
    """Every release of a `--tf` report, in the order asked; empty for any other report."""
    comparison = report.tf_versions
    if comparison is None:
        return []
    return [VersionEntry(run, report if run.reference else run.report) for run in comparison.runs]


def reference_entry(report: Report) -> Optional[VersionEntry]:
    """The release the others are judged against: the first that measured the model."""
    return next((e for e in entries(report) if e.run.reference), None)


def compared_entries(report: Report) -> List[VersionEntry]:
    """The releases judged against the reference: measured, and not the reference."""
    return [e for e in entries(report) if not e.run.reference and e.report is not None]


# --- predict's phases from one run to another -----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PhaseMove:
    """The phase of predict that moved most from one run to another, beyond its noise."""

    before: str  # a run's short label: "TensorFlow 2.15.1", "Keras 2"
    after: str
    delta: Optional[facts.PhaseDelta]  # None: no phase moved beyond the noise

    @property
    def text(self) -> str:
        if self.delta is None:
            return f"no phase of predict moved beyond the noise from {self.before} to {self.after}"
        return f"{self.delta.phase} {self.delta.delta_ms:+.3g} ms per call from {self.before} to {self.after}"


def phase_move(before: LabelledRun, after: LabelledRun) -> Optional[PhaseMove]:
    """Where both runs profiled predict: the phase that moved most beyond its noise band (if any did)."""
    if before.report is None or after.report is None:
        return None
    old, new = before.report.profile(PREDICT.name), after.report.profile(PREDICT.name)
    if old is None or new is None:
        return None
    deltas = facts.phase_deltas(old, before.report.strategy(PREDICT.name), new, after.report.strategy(PREDICT.name))
    moved = [d for d in deltas if d.beyond_noise]
    return PhaseMove(before.short, after.short, max(moved, key=lambda d: abs(d.delta_ms)) if moved else None)


# --- how each release ran ----------------------------------------------------------------------------


def environment_text(environment: EnvironmentInfo) -> str:
    """"environment tensorflow-cpu-2.15.1-py3.11 built fresh in 27 s (420 MB downloaded, 1.3 GB on disk)"."""
    figures = []
    if environment.fresh and environment.downloaded_bytes is not None:
        figures.append(f"{facts.size_text(environment.downloaded_bytes)} downloaded")
    if environment.fresh and environment.cached_bytes:
        figures.append(f"{facts.size_text(environment.cached_bytes)} from the installer's cache")
    if environment.size_bytes:
        figures.append(f"{facts.size_text(environment.size_bytes)} on disk")
    return f"environment {environment.name} {environment.how}" + (f" ({', '.join(figures)})" if figures else "")


def release_lines(report: Report) -> List[str]:
    """How each release was measured (its environment, the runs pooled), why one measured nothing, and how
    the batch was shared."""
    comparison = report.tf_versions
    if comparison is None:
        return []
    lines = []
    for entry in entries(report):
        run = entry.run
        where = environment_text(run.environment) if run.environment is not None else "the running environment"
        line = f"TensorFlow {run.label}: {run.package}, {where}"
        if entry.report is not None:
            line += f"; {run.rounds} run{'s' if run.rounds != 1 else ''} pooled"
        if run.reason:  # it may quote the model file or pip: each renderer escapes a bullet whole
            stopped = "not measured" if entry.report is None else f"stopped after {run.rounds} runs"
            line += f"; {stopped}: {run.reason}"
        lines.append(line + ".")
    return lines + [f"Input batch: {comparison.inputs}."] + list(comparison.notes)


def nightly_text(report: Report) -> Optional[str]:
    """The bug template's "Have you reproduced the bug with TensorFlow Nightly?" for a `--tf` report; None
    for any other."""
    if report.tf_versions is None:
        return None
    entry = next((e for e in entries(report) if e.run.requested == NIGHTLY), None)
    if entry is None:
        return "No: not run here (kdiag inspect MODEL --tf installed,nightly measures it side by side)"
    if entry.report is None:
        return f"No: tf-nightly was asked for but not measured ({entry.run.reason})"
    return f"Yes: tf-nightly {entry.run.tensorflow}, measured side by side below"


# --- bisect ---------------------------------------------------------------------------------------------


def probe_verdict(judged: facts.Judgement, threshold: float) -> str:
    """A probed release against the good one, in words: slow or not, with the figures that decide it."""
    if not judged.enough_calls:
        return judged.not_enough_text
    noise = f"±{duration(judged.noise_s)}"
    if not judged.beyond_noise and judged.ratio >= threshold:
        return f"{facts.times_text(judged.ratio)} but within the noise ({noise}): cannot tell"
    if not judged.beyond_noise:
        return f"within the noise ({noise}): not slow"
    if judged.ratio >= threshold:
        return f"{facts.times_text(judged.ratio)}, beyond the noise ({noise}): slow"
    if judged.ratio > 1:
        return (f"{facts.times_text(judged.ratio)}, beyond the noise but below the {threshold:g}x threshold: "
                "not slow")
    return f"{facts.times_text(judged.ratio)}, beyond the noise ({noise}): not slow"


def bisect_header(result: BisectResult) -> str:
    """"kdiag bisect · model · predict · 10 releases of tensorflow-cpu from 2.12.1 (good) to 2.21.0 (bad) ..."."""
    return (f"kdiag bisect · {result.model} · {result.strategy} · {len(result.releases)} releases of "
            f"{result.package or 'tensorflow'} from {result.good} (good) to {result.bad} (bad), threshold "
            f"{result.threshold:g}x: {', '.join(result.releases)}")


def probe_line(result: BisectResult, probe: BisectProbe) -> str:
    """"2.16.2: predict 42.4 ms (n=24) vs 31.7 ms (n=25) under 2.12.1, 3 rounds: 1.34x slower, beyond ...: slow"."""
    if probe.good is None or probe.probed is None:
        return f"{probe.tensorflow}: {probe.reason or probe.verdict}"
    return (f"{probe.tensorflow}: {result.strategy} {duration(probe.probed.median_s)} (n={probe.probed.count:,}) vs "
            f"{duration(probe.good.median_s)} (n={probe.good.count:,}) under {result.good}, {probe.rounds} rounds: "
            f"{probe.verdict}")


def bisect_summary(result: BisectResult) -> List[str]:
    """The result in a few lines: the first slow release, the last good one and the ratio; or why none."""
    lines = []
    built = 1 + len([p for p in result.probes if p.probed is not None or p.environment is not None])
    if result.first_slow is not None:
        ratio = result.ratio
        lines.append(f"First slow release: {result.first_slow} ({result.strategy} "
                     f"{facts.times_text(ratio) if ratio else 'slower'} than {result.good}, beyond the noise and at "
                     f"least {result.threshold:g}x); last good release: {result.last_good}.")
    elif not result.incomplete:
        bad = result.probe(result.bad)
        lines.append(f"No slow release: {result.strategy} under {result.bad} is not {result.threshold:g}x slower than "
                     f"under {result.good} beyond the noise ({bad.verdict if bad else 'not measured'}).")
    else:
        lines.append("No result: the search stopped before it found the first slow release.")
    lines.append(f"{len(result.releases)} releases from {result.good} to {result.bad}; {len(result.probes)} probed, "
                 f"{built} environments (at most {result.max_environments} promised).")
    return lines + list(result.notes)
