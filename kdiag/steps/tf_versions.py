"""`kdiag inspect MODEL --tf 2.15,installed,nightly`: one model under several TensorFlow releases.

Every entry is resolved against the package index and gets its cached environment
(kdiag.versions.provider) before anything is measured, so a release the index does not serve, or an
environment that cannot be built, is one line before any run. The model file is checked here first
(kdiag.steps.rounds.check_model), and again by each child under its own Keras.

Then the releases run as ordinary kdiag child runs in alternating rounds (kdiag.steps.rounds): the
first round a full run of each (profiles and the steps beyond one batch, as asked, into
`tf-VERSION/` of the run folder), the later ones timing only, while the Budget allows (the time
limit applies to each release: the rounds get the limit times the releases measured, counted from
when the environments are ready). Every run times the same batch with the same options and limit;
each release's timed calls are pooled over its runs (kdiag.versions.pooling).

A release whose Keras cannot read the file gets a column saying so, and the others still run.
Ctrl-C stops every child and raises RunInterrupted holding what the finished runs measured.

The Report is the first measured release's, with every release (its own Report nested) in
`Report.tf_versions`.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import List, Optional, Sequence

from kdiag.datamodel.config import RunConfig
from kdiag.datamodel.report import Report, VersionComparison, VersionRun
from kdiag.errors import KdiagError
from kdiag.signals import stop_cause
from kdiag.steps.budget import Budget
from kdiag.steps.rounds import (MIN_ROUNDS, ChildRunner, Column, Rounds, cannot_read, check_model, folder_name,
                                plan_more, workspace)
from kdiag.steps.state import Progress, RunInterrupted, StepCounter
from kdiag.versions.pooling import pool_reports
from kdiag.views.versions import environment_text


def run(config: RunConfig, progress: Optional[Progress] = None, out_dir: Optional[Path] = None, *, provider=None,
        run_child: Optional[ChildRunner] = None, clock=time.perf_counter) -> Report:
    """Measure `config` under every release of `config.tf_versions`; the merged Report (see the module doc).

    KdiagError (one line) for an entry the index does not serve or an environment that cannot be built,
    before anything is measured; RunInterrupted (holding what was measured) on Ctrl-C or SIGTERM.
    """
    if provider is None:
        from kdiag.versions.provider import CachedReleases

        provider = CachedReleases()
    budget = Budget(0, clock)  # building environments takes what the downloads take: the limit starts after
    steps = StepCounter(progress, 2, budget)
    steps.next("check", "the model file, before any child process starts")
    check_model(config)
    steps.next("resolve", "asking the package index for " + ", ".join(config.tf_versions))
    targets = provider.resolve(config.tf_versions)
    steps.total = steps.step + len(targets) * (1 + MIN_ROUNDS)  # environments, then two rounds at least
    columns = [_prepare(config, provider, target, steps) for target in targets]
    runnable = sum(c.runnable for c in columns)
    budget.limit_from_now(config.time_limit_s * runnable)  # the same limit for each release measured
    with workspace(out_dir) as (folder, private):
        rounds = Rounds(config, steps, folder, private, run_child)
        done = 0
        try:
            while any(c.runnable for c in columns) and plan_more(done, columns, budget):
                done += 1
                for column in (c for c in columns if c.runnable):
                    rounds.run(column, done, max(MIN_ROUNDS, done), full=done == 1,
                               out_dir=folder / column.folder_name if done == 1 else None)
        except KeyboardInterrupt:
            note = (f"Interrupted by {stop_cause()} during round {done}: the figures are those of the runs that "
                    "had finished.")
            if not any(c.reports for c in columns):
                raise
            raise RunInterrupted(_kept(merge(config, columns, done, rounds.inputs_text, [note], incomplete=True),
                                       out_dir)) from None
        return _kept(merge(config, columns, done, rounds.inputs_text, []), out_dir)


def _prepare(config: RunConfig, provider, target, steps: StepCounter) -> Column:
    """A release's environment, built or reused; its column says why when its Keras cannot read the file."""
    steps.next("environment", f"TensorFlow {target.version}")
    interpreter = provider.prepare(target, lambda text: steps.update(f"TensorFlow {target.version}: {text}"))
    if interpreter.environment is not None:
        steps.update(f"TensorFlow {target.version}: {environment_text(interpreter.environment)}")
    return Column(interpreter, folder_name(interpreter), reason=cannot_read(config, interpreter))


def merge(config: RunConfig, columns: Sequence[Column], rounds: int, inputs_text: str, notes: List[str],
          incomplete: bool = False) -> Report:
    """Every release's runs pooled; the first measured one's Report on top, every release in `tf_versions`."""
    from kdiag.analysis.diagnose import diagnose

    measured = [c for c in columns if c.reports]
    if not measured:
        why = "; ".join(f"{c.label}: {c.reason}" for c in columns)
        raise KdiagError(f"no TensorFlow release could measure the model ({why})",
                         "see each release's reason; --debug shows more")
    reference = measured[0]
    pooled = {id(c): _diagnosed(pool_reports(c.reports)) for c in measured}
    runs = [VersionRun(c.interpreter.target.requested, c.interpreter.tensorflow, c.interpreter.target.package,
                       c.interpreter.environment, len(c.reports),
                       None if c is reference or id(c) not in pooled else pooled[id(c)],
                       reference=c is reference, reason=c.reason)
            for c in columns]
    top = pooled[id(reference)]
    top = dataclasses.replace(
        top, settings=dataclasses.replace(top.settings, command=config.command or top.settings.command),
        tf_versions=VersionComparison(runs, rounds, inputs_text, list(notes)),
        incomplete=incomplete or top.incomplete)
    return dataclasses.replace(top, findings=diagnose(top))


def _diagnosed(report: Report) -> Report:
    from kdiag.analysis.diagnose import diagnose

    return dataclasses.replace(report, findings=diagnose(report))


def _kept(report: Report, out_dir: Optional[Path]) -> Report:
    """Without a run folder the children's .prof files went with the temporary one: name none (as
    kdiag.inspect does without out_dir)."""
    if out_dir is not None:
        return report

    def forget(one: Report) -> Report:
        return dataclasses.replace(one, profiles=[dataclasses.replace(p, prof_path="", cold_prof_path="")
                                                  for p in one.profiles])

    comparison = report.tf_versions
    runs = [dataclasses.replace(run, report=forget(run.report)) if run.report is not None else run
            for run in comparison.runs]
    return dataclasses.replace(forget(report), tf_versions=dataclasses.replace(comparison, runs=runs))
