"""What a run has found so far (RunState), how it tells progress (StepCounter), and how it stops.

RunState is private and mutable while the steps run; `freeze()` makes the immutable Report.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from kdiag.datamodel.config import RunConfig
from kdiag.datamodel.measurement import Measurement
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
    """Counts the run's steps and tells `progress` each one, with the time spent and left (from the Budget).

    The total is fixed when the run is planned: a planned step that does not run is still counted,
    and shown as skipped, so "[k/N]" never changes its N; every elapsed time comes from the Budget's
    clock, so it never goes back.
    """

    def __init__(self, progress: Optional[Progress], total: int, budget: Budget):
        self.progress = progress
        self.total = total
        self.budget = budget
        self.step = 0
        self.stage = ""
        self.detail = ""  # what the current step is doing, as last told

    def next(self, stage: str, detail: str) -> None:
        self.step += 1
        self.stage = stage
        self.update(detail)

    def skip(self, stage: str, detail: str, why: str) -> None:
        """A planned step that will not run: counted, and shown as skipped with the reason."""
        self.next(stage, f"{detail}: skipped ({why})" if detail else f"skipped ({why})")

    def update(self, detail: str, notice: str = "") -> None:
        self.detail = detail
        if self.progress is None:
            return
        self.progress(ProgressUpdate(self.step, self.total, self.stage, detail, self.budget.elapsed(),
                                     self.budget.left_or_none(), notice))

    def say(self, stage: str, detail: str) -> None:
        """A step's own stages, as details of the current step."""
        self.update(f"{stage}: {detail}")

    def notice(self, text: str) -> None:
        """A line shown once, apart from the steps; the current step stays as it is."""
        self.update(self.detail, notice=text)


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
    # What the plan's later steps and estimates use (kdiag.steps.plan, kdiag.steps.timing):
    first_calls: Dict[str, Tuple[float, float]] = dataclasses.field(default_factory=dict)  # name -> (1st, 2nd)
    prepared_s: Dict[str, float] = dataclasses.field(default_factory=dict)  # key -> seconds its preparation took
    timed_samples: Dict[str, Tuple[float, ...]] = dataclasses.field(default_factory=dict)  # name -> every sample
    first_outputs: Dict[str, Any] = dataclasses.field(default_factory=dict)  # name -> its first call's outputs
    later_outputs: Dict[str, Any] = dataclasses.field(default_factory=dict)  # name -> a later call's, or None
    predict_call: Any = None  # predict's prepared call, timed again beside the later groups (their anchor)
    group_started: Dict[str, float] = dataclasses.field(default_factory=dict)  # group label -> budget.clock()
    retimed: Dict[str, List[Measurement]] = dataclasses.field(default_factory=dict)  # name -> its anchors
    unanchored: List[Tuple[str, float]] = dataclasses.field(default_factory=list)  # (group, seconds after predict's)
    answer_cost_said: bool = False  # the up-front line about what a full answer costs, said once

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
                precision=self.config.precision,
            ),
            environment=collect(),
            model=dataclasses.replace(
                model_info(self.loaded, self.inputs),
                training_dependent_layers=list(self.training_dependent_layers),
                training_true_max_abs_diff=self.training_true_max_abs_diff,
            ),
            strategies=[dataclasses.replace(r, retimed=list(self.retimed[r.name])) if r.name in self.retimed else r
                        for r in self.results],
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
