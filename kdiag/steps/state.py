"""What a run has found so far (RunState), how it tells progress (StepCounter), and how it stops.

RunState is private and mutable while the steps run; `freeze()` makes the immutable Report.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from kdiag.datamodel.config import RunConfig
from kdiag.datamodel.profile import ProfileResult
from kdiag.datamodel.progress import ProgressUpdate
from kdiag.datamodel.report import InputInfo, ModelInfo, Report, RunSettings, StrategyResult
from kdiag.steps.budget import Budget

# Progress callback: one ProgressUpdate per step and per change within a step.
Progress = Callable[[ProgressUpdate], None]


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a run; `report` (marked incomplete) holds what was measured."""

    def __init__(self, report: Report):
        super().__init__("interrupted")
        self.report = report


class RunFailed(Exception):
    """A failure after timing (a full disk while profiling, say); `report` (marked incomplete) holds
    what was measured, `__cause__` the failure."""

    def __init__(self, report: Report):
        super().__init__("the run failed after timing")
        self.report = report


class StepCounter:
    """Counts the run's steps and tells `progress` each one, with the time spent and left (from the Budget)."""

    def __init__(self, progress: Optional[Progress], total: int, budget: Budget):
        self.progress = progress
        self.total = total
        self.budget = budget
        self.step = 0
        self.stage = ""
        self.detail = ""  # what the current step is doing, as last told

    def next(self, stage: str, detail: str) -> None:
        self.step += 1
        self.total = max(self.total, self.step)
        self.stage = stage
        self.update(detail)

    def skip(self, count: int = 1) -> None:
        """Steps planned that will not run."""
        self.total -= count

    def update(self, detail: str) -> None:
        self.detail = detail
        if self.progress is None:
            return
        self.progress(ProgressUpdate(self.step, self.total, self.stage, detail, self.budget.elapsed(),
                                     self.budget.left_or_none()))

    def say(self, stage: str, detail: str) -> None:
        """A step's own stages, as details of the current step."""
        self.update(f"{stage}: {detail}")


@dataclasses.dataclass
class RunState:
    """What a run has found so far. Private and mutable while running; `freeze()` makes the Report."""

    config: RunConfig
    budget: Budget
    steps: StepCounter
    started: str  # the timestamp of the report
    out_dir: Optional[Path] = None  # where the .prof files are kept; None: a scratch folder
    worker: Any = None  # kdiag.steps.worker.ModelWorker: where every piece of model work runs
    loaded: Any = None  # kdiag.engine.intake.load.LoadedModel
    inputs: Any = None  # kdiag.engine.intake.inputs.ModelInputs
    context: Any = None  # kdiag.engine.runtimes.strategies.StrategyContext, once the scratch folder exists
    memory_skip: Dict[str, str] = dataclasses.field(default_factory=dict)  # key -> why it does not fit
    results: List[StrategyResult] = dataclasses.field(default_factory=list)
    reference_name: Optional[str] = None  # whose outputs every strategy is checked against
    reference_outputs: Any = None
    notes: List[str] = dataclasses.field(default_factory=list)
    profiles: List[ProfileResult] = dataclasses.field(default_factory=list)
    training_dependent_layers: List[str] = dataclasses.field(default_factory=list)
    training_true_max_abs_diff: Optional[float] = None
    # Beyond one batch: Report field name -> its part (kdiag.engine.beyond.steps.BEYOND_STEPS).
    beyond: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def freeze(self, incomplete: bool = False) -> Report:
        """The Report of what was found so far, findings included."""
        from kdiag.analysis.diagnose import diagnose
        from kdiag.engine.environment import collect

        report = Report(
            settings=RunSettings(
                command=self.config.command,
                budget_s=self.config.budget_s,
                min_calls=self.config.min_calls,
                max_wall_s=self.config.wall_cap_s,
                batch_size=self.inputs.batch_size,
                timestamp=self.started,
                time_limit_s=self.config.time_limit_s,
                elapsed_s=self.budget.elapsed(),
                redact_paths=self.config.redact,
            ),
            environment=collect(),
            model=dataclasses.replace(
                model_info(self.loaded, self.inputs),
                training_dependent_layers=list(self.training_dependent_layers),
                training_true_max_abs_diff=self.training_true_max_abs_diff,
            ),
            strategies=list(self.results),
            profiles=list(self.profiles),
            notes=list(self.loaded.load_notes) + self.notes,
            incomplete=incomplete,
            **self.beyond,
        )
        return dataclasses.replace(report, findings=diagnose(report))


def model_info(loaded, inputs) -> ModelInfo:
    """What the report says about the model: its source, size and the inputs it was called on."""
    return ModelInfo(
        name=loaded.name,
        source=loaded.source,
        format=loaded.format,
        parameters=loaded.parameter_count(),
        inputs=[
            InputInfo(s.name, list(inputs.arrays[s.name].shape), s.dtype, inputs.descriptions[s.name])
            for s in loaded.input_specs
        ],
        batch_size=inputs.batch_size,
        load_time_s=loaded.load_time_s,
        compile_config=loaded.compile_config,
        keras_model=loaded.is_keras,
        directory=_model_directory(loaded),
        keras2_signs=list(loaded.keras2_signs),
    )


def _model_directory(loaded) -> str:
    """The absolute folder holding the model file or SavedModel; "" for an example or an object.

    Absolute but not resolved: a symlinked folder stays as the user typed it, which is how it
    appears in the command that report.md shows.
    """
    if loaded.format in ("example", "in-memory"):
        return ""
    return str(Path(loaded.source).absolute().parent)
