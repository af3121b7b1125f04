"""The last step: the findings, the time limit's note, the Report; the redacted copies of the .prof files."""

from __future__ import annotations

from pathlib import Path

from kdiag.datamodel.report import Report
from kdiag.steps.state import RunState

PLANNED_STEPS = 1


def run(state: RunState, incomplete: bool = False) -> Report:
    state.steps.next("report", "findings")
    note = time_limit_note(state)
    if note:
        state.notes.insert(0, note)
    report = state.freeze(incomplete=incomplete)
    if report.settings.redact_paths and state.out_dir is not None:
        write_redacted_profiles(report)
    return report


def time_limit_note(state: RunState) -> str:
    """What the time limit left out, and the limit that would let it all run (the Budget words it)."""
    left_out = [r.name for r in state.results if r.reason.startswith("not measured: would take")]
    short = [r.name for r in state.results if r.available and r.measurement.stopped_early]
    return state.budget.note(left_out, short, state.config.min_calls)


def write_redacted_profiles(report: Report) -> None:
    """A copy of each .prof file with local paths redacted, in `redacted/` beside it: the files
    report.md tells users to attach to an issue."""
    from kdiag.datamodel.redaction import Redactor, redacted_prof_path
    from kdiag.engine.phases.profiling import write_redacted

    redactor = Redactor.for_report(report)
    for profile in report.profiles:
        for path in (profile.prof_path, profile.cold_prof_path):
            if path:
                write_redacted(Path(path), Path(redacted_prof_path(path)), redactor.redact)
