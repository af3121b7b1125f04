"""`kdiag inspect --tf A,B,...`: one model under several TensorFlow releases, measured in turns, one Report.

Measured fairly:

- every release runs ordinary kdiag child runs (kdiag.versions.children) with the same options
  and the same time limit, on the same input batch: drawn once by the first run (or the user's
  --inputs), saved as inputs.npz in the run folder and passed to every other run;
- releases take turns in rounds, A, B, A, B, ...: the first round is a full run each (profiles
  and the steps beyond one batch, as asked), the later ones time the strategies only, while the
  whole stays within the time limit times the number of releases (at least two rounds, at most
  MAX_ROUNDS; three without a limit). Each release's timed calls are pooled over its rounds
  (kdiag.versions.pooling), so a machine that drifts hits every release alike, and
  `views.judge` (the one noise rule) decides every comparison;
- the model file is checked (kdiag.engine.safety) here, before any child starts, and again by
  every child, whose Keras may read it differently. A release whose Keras cannot read the file
  gets a column saying so, and the others still run.

The Report is the first measured release's, with every release (its own Report nested) in
`Report.tf_versions`.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from kdiag.datamodel.config import RunConfig
from kdiag.datamodel.progress import ProgressUpdate
from kdiag.datamodel.report import Report, VersionComparison, VersionRun
from kdiag.errors import KdiagError, first_line
from kdiag.versions import children
from kdiag.versions.children import Interpreter, child_argv
from kdiag.versions.pooling import pool_reports
from kdiag.views_versions import environment_text

MIN_ROUNDS = 2  # A, B, A, B: one turn each is no alternation
MAX_ROUNDS = 6
UNLIMITED_ROUNDS = 3  # --time-limit 0
INPUTS_FILE = "inputs.npz"

Progress = Callable[[ProgressUpdate], None]
#: (interpreter, argv, out_dir, say(stage, detail), cwd) -> the Report the child wrote. Tests pass a fake.
ChildRunner = Callable[..., Report]


class Stopped(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a --tf run or a bisect; `report` (or `result`) holds what was measured."""

    def __init__(self, report=None):
        super().__init__("interrupted")
        self.report = report


class Steps:
    """Progress as kdiag.api's runs give it: step k of N, time spent; details within a step."""

    def __init__(self, progress: Optional[Progress], clock=time.perf_counter):
        self.progress, self.clock = progress, clock
        self.started = clock()
        self.step, self.total, self.stage = 0, 1, ""

    def next(self, stage: str, detail: str) -> None:
        self.step += 1
        self.total = max(self.total, self.step)
        self.stage = stage
        self.update(detail)

    def update(self, detail: str) -> None:
        if self.progress is not None:
            self.progress(ProgressUpdate(self.step, self.total, self.stage, detail, self.clock() - self.started))

    def child(self, stage: str, detail: str) -> None:
        """A child run's own progress line, as a detail of this step."""
        self.update(f"{stage}: {detail}")


@dataclasses.dataclass
class Column:
    """One release while the rounds run: its runs so far, or why it has none."""

    interpreter: Interpreter
    folder_name: str
    reports: List[Report] = dataclasses.field(default_factory=list)
    reason: str = ""
    seconds: List[float] = dataclasses.field(default_factory=list)  # each run's wall time

    @property
    def runnable(self) -> bool:
        return not self.reason

    @property
    def label(self) -> str:
        return self.interpreter.label


def folder_name(interpreter: Interpreter) -> str:
    """The child's run folder inside this run's: tf-2.15.1, tf-2.21.0-installed, tf-2.23.0.dev...-nightly."""
    requested = interpreter.target.requested
    suffix = f"-{requested}" if requested in ("installed", "nightly") else ""
    return f"tf-{interpreter.tensorflow}{suffix}"


def cannot_read(config: RunConfig, interpreter: Interpreter) -> str:
    """Why this release's Keras cannot read the model file, known before running it ("" when it may).

    Keras 2 (TensorFlow up to 2.15) cannot read what Keras 3 wrote (.keras or .h5: `batch_shape`,
    module paths under keras.src); a SavedModel exported by Keras 3 loads under every TensorFlow 2.x.
    """
    if config.model is None or interpreter.keras != 2:
        return ""
    from kdiag.engine.keras_era import saved_by_keras_version

    path = Path(config.model)
    if path.is_dir() or path.suffix.lower() not in (".keras", ".h5", ".hdf5"):
        return ""
    version = saved_by_keras_version(path)
    if version is None or not version.startswith("3."):
        return ""
    return (f"not measured: TensorFlow {interpreter.tensorflow} runs Keras 2, which cannot read a {path.suffix} file "
            f"saved by Keras {version}. A SavedModel loads under every TensorFlow 2.x: export one with "
            f"model.export('saved_model_dir') under Keras 3 and pass that folder")


def check_model(config: RunConfig) -> None:
    """The checks every run makes before any Keras sees the file (kdiag.engine.safety), here, before any child."""
    if config.model is None:
        return  # a built-in example
    from kdiag.engine.load import check_file

    check_file(config.model, unsafe=config.unsafe,
               custom_objects=dict(config.custom_objects) if config.custom_objects else None)


class Rounds:
    """Child runs of several releases in turns (A, B, A, B, ...) on one shared input batch."""

    def __init__(self, config: RunConfig, steps: Steps, folder: Path, private: Path,
                 run_child: Optional[ChildRunner] = None, clock=time.perf_counter):
        self.steps, self.folder, self.private = steps, Path(folder), Path(private)
        self.run_child, self.clock = run_child or children.run_kdiag, clock
        self.inputs = self.folder / INPUTS_FILE  # drawn by the first run that loads the model
        if config.inputs is not None:  # the user's batch: the same file for every run
            from kdiag.engine.keras_child import inputs_file

            self.inputs = Path(inputs_file(config.inputs, self.private))
        self.user_inputs = config.inputs is not None
        self.config = config
        self.runs = 0

    @property
    def inputs_text(self) -> str:
        if self.user_inputs:
            return "the batch given with --inputs, passed to every run"
        return (f"one batch, drawn by the first run that loaded the model (seeded), saved as {INPUTS_FILE} in the "
                "run folder and passed to every other run with --inputs")

    def run(self, column: Column, round_no: int, rounds_planned: int, full: bool, out_dir: Optional[Path] = None
            ) -> Optional[Report]:
        """One run of `column`'s release; its Report, or None (the column then says why)."""
        ready = self.inputs.exists()
        config = self.config if not ready or self.user_inputs else dataclasses.replace(self.config,
                                                                                       inputs=str(self.inputs))
        self.runs += 1
        out = out_dir or Path(tempfile.mkdtemp(prefix=f"round-{round_no}-", dir=self.private)) / "run"
        argv = child_argv(config, self.private, out, full=full, save_inputs=None if ready else self.inputs)
        kind = "full run" if full else "timing"
        self.steps.next(f"round {round_no}/{rounds_planned}", f"{column.label}: {kind} in a child process")
        cwd = Path(tempfile.mkdtemp(prefix="cwd-", dir=self.private))
        started = self.clock()
        try:
            report = self.run_child(column.interpreter, argv, out, self.steps.child, cwd)
        except KdiagError as refused:  # its one-line refusal: this release cannot measure the model
            column.reason = _reason(refused.message, column.label) + _format_hint(self.config, refused.message)
            return None
        except RuntimeError as crashed:
            column.reason = f"its run failed: {first_line(crashed, 300)}"
            return None
        column.seconds.append(self.clock() - started)
        column.reports.append(report)
        return report


def _reason(message: str, label: str) -> str:
    """A child's refusal without the "under TensorFlow X: " its label already says."""
    prefix = f"under {label}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _format_hint(config: RunConfig, message: str) -> str:
    """A Keras file one release's Keras cannot load: name the format every release reads."""
    if config.model is None or Path(config.model).is_dir() or "could not be loaded by" not in message:
        return ""
    return ("; a SavedModel loads under every TensorFlow 2.x: export one (model.export('saved_model_dir')) and "
            "pass that folder")


def plan_more(rounds_done: int, measuring_s: float, columns: Sequence[Column], limit_s: Optional[float]) -> bool:
    """Whether another round of timing runs fits: always up to MIN_ROUNDS, never past MAX_ROUNDS,
    otherwise while the next round (as long as the last one of each release) fits in `limit_s`."""
    if rounds_done < MIN_ROUNDS:
        return True
    if limit_s is None:
        return rounds_done < UNLIMITED_ROUNDS
    if rounds_done >= MAX_ROUNDS:
        return False
    next_round = sum(column.seconds[-1] for column in columns if column.runnable and column.seconds)
    return measuring_s + next_round <= limit_s


def compare_versions(config: RunConfig, *, provider=None, progress: Optional[Progress] = None,
                     out_dir: Optional[Path] = None, run_child: Optional[ChildRunner] = None,
                     clock=time.perf_counter) -> Report:
    """Measure `config` under every release of `config.tf_versions`; the merged Report (see the module doc).

    KdiagError (one line) for an entry the index does not serve or an environment that cannot be
    built, before anything is measured; Stopped (holding what was measured) on Ctrl-C or SIGTERM.
    """
    if provider is None:
        from kdiag.versions.provider import CachedReleases

        provider = CachedReleases()
    steps = Steps(progress, clock)
    steps.next("check", "the model file, before any child process starts")
    check_model(config)
    steps.next("resolve", "asking the package index for " + ", ".join(config.tf_versions))
    targets = provider.resolve(config.tf_versions)
    steps.total = steps.step + len(targets) * (1 + MIN_ROUNDS)  # environments, then two rounds at least
    columns = []
    for target in targets:
        steps.next("environment", f"TensorFlow {target.version}")
        interpreter = provider.prepare(target, lambda text, v=target.version: steps.update(f"TensorFlow {v}: {text}"))
        if interpreter.environment is not None:
            steps.update(f"TensorFlow {target.version}: {environment_text(interpreter.environment)}")
        column = Column(interpreter, folder_name(interpreter))
        column.reason = cannot_read(config, interpreter)
        columns.append(column)
    with workspace(out_dir) as (folder, private):
        rounds = Rounds(config, steps, folder, private, run_child, clock)
        done, notes = 0, []
        limit = config.time_limit_s * sum(c.runnable for c in columns) if config.time_limit_s else None
        started = clock()
        try:
            while any(c.runnable for c in columns) and plan_more(done, clock() - started, columns, limit):
                done += 1
                planned = max(MIN_ROUNDS, done)
                for column in columns:
                    if column.runnable:
                        rounds.run(column, done, planned, full=done == 1,
                                   out_dir=folder / column.folder_name if done == 1 else None)
        except KeyboardInterrupt:
            from kdiag.signals import stop_cause

            notes.append(f"Interrupted by {stop_cause()} during round {done}: the figures are those of the runs "
                         "that had finished.")
            measured = [c for c in columns if c.reports]
            raise Stopped(_kept(merge(config, columns, done, rounds.inputs_text, notes, incomplete=True), out_dir)
                          if measured else None) from None
        return _kept(merge(config, columns, done, rounds.inputs_text, notes), out_dir)


class workspace:
    """(the run folder, a private scratch folder): the caller's out_dir, or a temporary one; both removed
    when temporary."""

    def __init__(self, out_dir: Optional[Path]):
        self.out_dir = out_dir
        self.temporary: List[tempfile.TemporaryDirectory] = []

    def __enter__(self):
        scratch = tempfile.TemporaryDirectory(prefix="kdiag-tf-")
        self.temporary.append(scratch)
        folder = Path(self.out_dir) if self.out_dir is not None else Path(scratch.name) / "run"
        folder.mkdir(parents=True, exist_ok=True)
        private = Path(scratch.name) / "private"
        private.mkdir()
        return folder, private

    def __exit__(self, *exc):
        for scratch in self.temporary:
            scratch.cleanup()
        return False


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
                       reference=c is reference, reason=c.reason if not c.reports else _later_failure(c))
            for c in columns]
    top = pooled[id(reference)]
    top = dataclasses.replace(
        top, settings=dataclasses.replace(top.settings, command=config.command or top.settings.command),
        tf_versions=VersionComparison(runs, rounds, inputs_text, list(notes)),
        incomplete=incomplete or top.incomplete)
    return dataclasses.replace(top, findings=diagnose(top))


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


def _diagnosed(report: Report) -> Report:
    from kdiag.analysis.diagnose import diagnose

    return dataclasses.replace(report, findings=diagnose(report))


def _later_failure(column: Column) -> str:
    """A release that measured, then failed in a later round: its figures stand, and why it stopped."""
    return f"stopped after {len(column.reports)} runs: {column.reason}" if column.reason else ""

