"""Derived facts of a `--tf` report and of a bisect, one definition each, as data the renderers lay out.

- `version_table`: strategy x release, each release judged against the first (the reference) by
  the one noise rule (`views.judge`): a ratio only where the rule supports one, and no verdict
  under `views.MIN_CALLS_FOR_VERDICT` calls a side; the compile() verdict of each release last.
- `phase_table` and `phase_moves`: predict's phases per release, and the phase that moved most
  from the reference to each release, beyond its noise band ("tf.data pipeline +21.0 ms per call
  from 2.15.1 to 2.16.2").
- `version_lines`: how each release was measured (environment built fresh or reused, runs
  pooled) and why one measured nothing.
- the words of a bisect: `probe_verdict`, `probe_line`, `bisect_summary`.

A table is a `TableData` (title, headers, rows of strings, caption): the terminal, Markdown and
HTML renderers only lay it out. Standard library only, like kdiag.views.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional

from kdiag import views
from kdiag.datamodel.profile import PHASES
from kdiag.datamodel.report import Report, StrategyResult, VersionRun
from kdiag.datamodel.strategies import PREDICT, PREDICT_COMPILED
from kdiag.datamodel.versions import NIGHTLY, BisectProbe, BisectResult, EnvironmentInfo, keras_major
from kdiag.format import duration


@dataclasses.dataclass(frozen=True)
class TableData:
    """A table as data: what every renderer shows, cell for cell."""

    title: str
    headers: List[str]
    rows: List[List[str]]
    caption: str = ""
    align: str = ""  # one letter per column, "l" or "r" (default "l")


@dataclasses.dataclass(frozen=True)
class VersionEntry:
    """One `--tf` release with its Report (the enclosing one for the reference; None when it measured nothing)."""

    run: VersionRun
    report: Optional[Report]

    @property
    def header(self) -> str:
        """"2.15.1 · Keras 2.15.0", "2.21.0 (installed) · Keras 3.15.1": a column header."""
        if self.report is None:
            major = keras_major(self.run.tensorflow)
            return f"{self.run.label} · Keras {major}" if major else self.run.label
        env = self.report.environment
        keras = f"tf-keras {env.keras}" if env.legacy_keras else f"Keras {env.keras}"
        return f"{self.run.label} · {keras}"


def version_entries(report: Report) -> List[VersionEntry]:
    """Every release of a `--tf` report, in the order asked; empty for any other report."""
    comparison = report.tf_versions
    if comparison is None:
        return []
    return [VersionEntry(run, report if run.reference else run.report) for run in comparison.runs]


def reference_entry(report: Report) -> Optional[VersionEntry]:
    """The release the others are judged against: the first that measured the model."""
    return next((e for e in version_entries(report) if e.run.reference), None)


def compared_entries(report: Report) -> List[VersionEntry]:
    """The releases judged against the reference: measured, and not the reference."""
    return [e for e in version_entries(report) if not e.run.reference and e.report is not None]


def bytes_text(n: Optional[float]) -> str:
    return views.size_text(n)


# --- the version table -------------------------------------------------------------------------


def judgement(result: Optional[StrategyResult], reference: Optional[StrategyResult],
              iqrs: float = 1.0) -> Optional[views.Judgement]:
    """`result` against the reference release's, under the one noise rule; ratio = result / reference."""
    if views.median(result) is None or views.median(reference) is None:
        return None
    return views.judge(result, reference, iqrs)


def judged_text(judged: Optional[views.Judgement]) -> str:
    """"1.34x slower", "2.01x faster", "within noise ±1.2 ms", "no verdict, n=3/12", or "" (short: a table cell)."""
    if judged is None:
        return ""
    if not judged.enough_calls:
        return f"no verdict, n={judged.slow.measurement.count}/{judged.fast.measurement.count}"
    if not judged.beyond_noise:
        return f"within noise ±{duration(judged.noise_s)}"
    return views.times_text(judged.ratio)


def version_cell(result: Optional[StrategyResult], reference: Optional[StrategyResult]) -> str:
    """A strategy's median under one release, judged against the reference release's when both were timed."""
    base = views.keras_cell(result)
    verdict = judged_text(judgement(result, reference)) if reference is not None else ""
    return f"{base}, {verdict}" if verdict else base


def compile_text(report: Optional[Report]) -> str:
    """compile()'s effect on predict within one release, by the noise rule."""
    if report is None:
        return "—"
    plain, compiled = views.timed(report, PREDICT.name), views.timed(report, PREDICT_COMPILED.name)
    if plain is None or compiled is None:
        return "not measured"
    judged = views.judge(compiled, plain)
    text = judged_text(judged)
    return f"compiled {text}" if judged.enough_calls and judged.beyond_noise else text


def version_table(report: Report) -> Optional[TableData]:
    """Strategy x release: medians, each release judged against the first measured one."""
    entries = version_entries(report)
    reference = reference_entry(report)
    if reference is None:
        return None
    names = [row.result.name for row in views.strategy_rows(reference.report)]
    for entry in entries:
        if entry.report is not None:
            names += [s.name for s in entry.report.strategies if s.name not in names]
    rows = []
    for name in names:
        ours = reference.report.strategy(name)
        cells = [version_cell(ours, None) if e.run.reference else
                 (version_cell(e.report.strategy(name), ours) if e.report is not None else "—") for e in entries]
        rows.append([name, *cells])
    rows.append(["compile() effect", *[compile_text(e.report) for e in entries]])
    rows.append(["runs pooled", *[str(e.run.rounds) if e.report is not None else "0" for e in entries]])
    comparison = report.tf_versions
    caption = (f"Median per call over every run of each release ({comparison.rounds} rounds, the releases taking "
               f"turns; the same options, time limit and input batch for each). Every release is judged against "
               f"{reference.run.label} by the one noise rule: a ratio only beyond the noise and with at least "
               f"{views.MIN_CALLS_FOR_VERDICT} timed calls a side; ~ marks a noisy median. compile() effect: "
               f"predict compiled against not, within each release. The sections below are "
               f"{reference.run.label}'s run.")
    return TableData("TensorFlow releases side by side", ["strategy", *[e.header for e in entries]], rows, caption,
                     "l" + "r" * len(entries))


def version_lines(report: Report) -> List[str]:
    """How each release was measured, and why one measured nothing."""
    lines = []
    for entry in version_entries(report):
        run = entry.run
        where = environment_text(run.environment) if run.environment is not None else "the running environment"
        line = f"{run.label} ({run.package}): {where}"
        if run.reason:
            line += f"; {run.reason}"
        lines.append(line + ".")
    comparison = report.tf_versions
    if comparison is not None:
        lines.append(f"Input batch: {comparison.inputs}.")
        lines += comparison.notes
    return lines


def environment_text(environment: EnvironmentInfo) -> str:
    """"environment tensorflow-cpu-2.15.1-py3.11 built fresh in 27 s (420 MB downloaded, 1.3 GB on disk)"."""
    figures = []
    if environment.fresh and environment.downloaded_bytes is not None:
        figures.append(f"{bytes_text(environment.downloaded_bytes)} downloaded")
    if environment.fresh and environment.cached_bytes:
        figures.append(f"{bytes_text(environment.cached_bytes)} from the installer's cache")
    if environment.size_bytes:
        figures.append(f"{bytes_text(environment.size_bytes)} on disk")
    return f"environment {environment.name} {environment.how}" + (f" ({', '.join(figures)})" if figures else "")


def nightly_entry(report: Report) -> Optional[VersionEntry]:
    """The tf-nightly release of a `--tf` report, when one was asked for (measured or not)."""
    return next((e for e in version_entries(report) if e.run.requested == NIGHTLY), None)


# --- predict's phases per release -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PhaseMove:
    """The phase of predict that moved most from the reference release to another, beyond its noise."""

    reference: str  # release label
    other: str
    delta: Optional[views.PhaseDelta]  # None: no phase moved beyond the noise

    @property
    def text(self) -> str:
        if self.delta is None:
            return f"no phase of predict moved beyond the noise from {self.reference} to {self.other}"
        return f"{self.delta.phase} {self.delta.delta_ms:+.3g} ms per call from {self.reference} to {self.other}"


def phase_moves(report: Report) -> List[PhaseMove]:
    """For each release compared with the reference, where predict's profiles allow: the phase that moved most."""
    reference = reference_entry(report)
    if reference is None or reference.report.profile(PREDICT.name) is None:
        return []
    moves = []
    for entry in compared_entries(report):
        profile = entry.report.profile(PREDICT.name)
        if profile is None:
            continue
        deltas = views.phase_deltas(reference.report.profile(PREDICT.name), reference.report.strategy(PREDICT.name),
                                    profile, entry.report.strategy(PREDICT.name))
        moved = [d for d in deltas if d.beyond_noise]
        biggest = max(moved, key=lambda d: abs(d.delta_ms)) if moved else None
        moves.append(PhaseMove(reference.run.label, entry.run.label, biggest))
    return moves


def phase_table(report: Report) -> Optional[TableData]:
    """predict's phases under every release that profiled it: ms per warm call (share)."""
    profiled = [e for e in version_entries(report) if e.report is not None and e.report.profile(PREDICT.name)]
    if len(profiled) < 2:
        return None
    rows = []
    for phase in PHASES:
        cells = []
        for entry in profiled:
            row = entry.report.profile(PREDICT.name).phase(phase)
            cells.append(f"{row.ms_per_call:.3g} ms ({row.share:.0%})" if row is not None else "—")
        if any(not cell.startswith(("0 ms", "—")) for cell in cells):
            rows.append([phase, *cells])
    traces = [f"{e.report.profile(PREDICT.name).traces_per_call:g}" for e in profiled]
    rows.append(["concrete functions traced per warm call", *traces])
    moves = phase_moves(report)
    caption = ("ms per warm call: each release's cProfile shares scaled to its pooled unprofiled median. Moved "
               "most: " + "; ".join(m.text for m in moves) + "." if moves else
               "ms per warm call: each release's cProfile shares scaled to its pooled unprofiled median.")
    return TableData("predict's phases under each release", ["phase", *[e.header for e in profiled]], rows, caption,
                     "l" + "r" * len(profiled))


# --- bisect -----------------------------------------------------------------------------------------


def probe_verdict(judged: views.Judgement, threshold: float) -> str:
    """A probed release against the good one, in words: slow or not, with the figures that decide it."""
    if not judged.enough_calls:
        return judged.not_enough_text
    noise = f"±{duration(judged.noise_s)}"
    if not judged.beyond_noise and judged.ratio >= threshold:
        return f"{views.times_text(judged.ratio)} but within the noise ({noise}): cannot tell"
    if not judged.beyond_noise:
        return f"within the noise ({noise}): not slow"
    if judged.ratio >= threshold:
        return f"{views.times_text(judged.ratio)}, beyond the noise ({noise}): slow"
    if judged.ratio > 1:
        return f"{views.times_text(judged.ratio)}, beyond the noise but below the {threshold:g}x threshold: not slow"
    return f"{views.times_text(judged.ratio)}, beyond the noise ({noise}): not slow"


def probe_line(result: BisectResult, probe: BisectProbe) -> str:
    """"2.16.2: predict 42.4 ms (n=24) vs 31.7 ms (n=25) under 2.12.1: 1.34x slower, beyond the noise ...: slow"."""
    if probe.good is None or probe.probed is None:
        return f"{probe.tensorflow}: {probe.reason or probe.verdict}"
    return (f"{probe.tensorflow}: {result.strategy} {duration(probe.probed.median_s)} (n={probe.probed.count}) vs "
            f"{duration(probe.good.median_s)} (n={probe.good.count}) under {result.good}, {probe.rounds} rounds: "
            f"{probe.verdict}")


def bisect_summary(result: BisectResult) -> List[str]:
    """The result in a few lines: the first slow release, the last good one and the ratio; or why none."""
    lines = []
    span = f"{len(result.releases)} releases from {result.good} to {result.bad}"
    built = 1 + len([p for p in result.probes if p.probed is not None or p.environment is not None])
    if result.first_slow is not None:
        ratio = result.ratio
        lines.append(f"First slow release: {result.first_slow} ({result.strategy} "
                     f"{views.times_text(ratio) if ratio else 'slower'} than {result.good}, beyond the noise and at "
                     f"least {result.threshold:g}x); last good release: {result.last_good}.")
    elif not result.incomplete:
        bad = result.probe(result.bad)
        lines.append(f"No slow release: {result.strategy} under {result.bad} is not {result.threshold:g}x slower than "
                     f"under {result.good} beyond the noise ({bad.verdict if bad else 'not measured'}).")
    else:
        lines.append("No result: the search stopped before it found the first slow release.")
    lines.append(f"{span}; {len(result.probes)} probed, {built} environments (at most {result.max_environments} "
                 "promised).")
    return lines + list(result.notes)
