"""Child runs of several TensorFlow releases in turns (A, B, A, B, ...) on one input batch.

What `kdiag inspect --tf` (kdiag.steps.tf_versions) and `kdiag bisect` (kdiag.steps.bisect) share:
a `Column` per release (its runs so far, or why it has none), `Rounds` (one ordinary kdiag child run
of a release at a time, kdiag.versions.children), and `plan_more` (whether another round fits the
run's Budget). The first run that loads the model draws the batch and saves it (--save-inputs);
every later run is given that file (--inputs), so every release times the same data.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from kdiag import sanitize
from kdiag.datamodel.config import RunConfig
from kdiag.datamodel.report import Report
from kdiag.errors import KdiagError, first_line
from kdiag.steps.budget import Budget
from kdiag.steps.state import StepCounter
from kdiag.tempdirs import temporary_directory
from kdiag.versions import children
from kdiag.versions.children import Interpreter, child_argv

MIN_ROUNDS = 2  # A, B, A, B: one turn each is no alternation
MAX_ROUNDS = 6
UNLIMITED_ROUNDS = 3  # --time-limit 0
INPUTS_FILE = "inputs.npz"
#: A child's refusal or crash is quoted in the report (it may quote the model file): one line, this long at most.
REASON_LIMIT = 600

#: (interpreter, argv, out_dir, say(stage, detail), cwd) -> the Report the child wrote. Tests pass a fake.
ChildRunner = Callable[..., Report]


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
    from kdiag.engine.intake.keras_era import saved_by_keras_version

    path = Path(config.model)
    if path.is_dir() or path.suffix.lower() not in (".keras", ".h5", ".hdf5"):
        return ""
    version = saved_by_keras_version(path)
    if version is None or not version.startswith("3."):
        return ""
    return (f"TensorFlow {interpreter.tensorflow} runs Keras 2, which cannot read a {path.suffix} file saved by Keras "
            f"{sanitize.clip(version, 40)}. A SavedModel loads under every TensorFlow 2.x: export one with "
            "model.export('saved_model_dir') under Keras 3 and pass that folder")


def check_model(config: RunConfig) -> None:
    """The checks every run makes before any Keras sees the file (kdiag.engine.intake.load.check_file: safety,
    archive limits, declared memory), here, before any environment is built or any child starts."""
    if config.model is None:
        return  # a built-in example
    from kdiag.engine.intake.load import check_file

    check_file(config.model, unsafe=config.unsafe,
               custom_objects=dict(config.custom_objects) if config.custom_objects else None,
               batch_size=config.batch_size, input_shapes=config.input_shapes)


@contextlib.contextmanager
def workspace(out_dir: Optional[Path]) -> Iterator[Tuple[Path, Path]]:
    """(the run folder, a private scratch folder): the caller's out_dir, or one in a temporary folder of
    kdiag's (kdiag.tempdirs: removed afterwards, or by the next run when this one is killed)."""
    with temporary_directory(prefix="kdiag-tf-") as scratch:
        folder = Path(out_dir) if out_dir is not None else Path(scratch) / "run"
        folder.mkdir(parents=True, exist_ok=True)
        private = Path(scratch) / "private"
        private.mkdir()
        yield folder, private


class Rounds:
    """Child runs of several releases in turns (A, B, A, B, ...) on one shared input batch."""

    def __init__(self, config: RunConfig, steps: StepCounter, folder: Path, private: Path,
                 run_child: Optional[ChildRunner] = None):
        self.steps, self.folder, self.private = steps, Path(folder), Path(private)
        self.run_child = run_child or children.run_kdiag
        self.config = config
        self.user_inputs = config.inputs is not None
        self.inputs = self.folder / INPUTS_FILE  # drawn by the first run that loads the model
        if self.user_inputs:  # the user's batch: the same file for every run
            from kdiag.engine.keras_child import inputs_file

            self.inputs = Path(inputs_file(config.inputs, self.private))
        self.runs = 0

    @property
    def inputs_text(self) -> str:
        if self.user_inputs:
            return "the batch given with --inputs, passed to every run"
        return (f"one batch, drawn by the first run that loaded the model (seeded), saved as {INPUTS_FILE} in the "
                "run folder and passed to every other run with --inputs")

    def run(self, column: Column, round_no: int, rounds_planned: int, full: bool,
            out_dir: Optional[Path] = None) -> Optional[Report]:
        """One run of `column`'s release; its Report, or None (the column then says why)."""
        ready = self.user_inputs or self.inputs.exists()
        config = dataclasses.replace(self.config, inputs=str(self.inputs)) if ready else self.config
        self.runs += 1
        out = out_dir or self.private / f"round-{round_no}-{self.runs}" / "run"
        argv = child_argv(config, self.private, out, full=full, save_inputs=None if ready else self.inputs)
        kind = "full run" if full else "timing"
        self.steps.next(f"round {round_no}/{rounds_planned}", f"{column.label}: {kind} in a child process")
        cwd = self.private / f"cwd-{self.runs}"
        cwd.mkdir()
        clock = self.steps.budget.clock
        started = clock()
        try:
            report = self.run_child(column.interpreter, argv, out, self.steps.say, cwd)
        except KdiagError as refused:  # its one-line refusal: this release cannot measure the model
            column.reason = quoted(_reason(refused.message, column.label)) + _format_hint(self.config,
                                                                                          refused.message)
            return None
        except RuntimeError as crashed:
            column.reason = f"its run failed: {quoted(first_line(crashed, 300))}"
            return None
        column.seconds.append(clock() - started)
        column.reports.append(report)
        return report


def quoted(text: str) -> str:
    """A child's or pip's text as the report quotes it: one line, control characters shown as escapes, capped."""
    return sanitize.clip(sanitize.terminal(text), REASON_LIMIT)


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


def plan_more(rounds_done: int, columns: Sequence[Column], budget: Budget) -> bool:
    """Whether another round of timing runs fits: always up to MIN_ROUNDS, never past MAX_ROUNDS,
    otherwise while the next round (as long as the last one of each release) fits in what is left."""
    if rounds_done < MIN_ROUNDS:
        return True
    if not budget.limited:
        return rounds_done < UNLIMITED_ROUNDS
    if rounds_done >= MAX_ROUNDS:
        return False
    next_round = sum(column.seconds[-1] for column in columns if column.runnable and column.seconds)
    return budget.fits(next_round)
