"""--keras 2|3|both: this process's Keras here, first (a refusal comes once, from it), the other in a
child process (kdiag.engine.keras_child) whose run folder is `keras-N/` inside this run's.

Under both, the Keras 3 run is the Report and the Keras 2 run its `other_keras`; a Keras that cannot
measure the model after the other did is a note, not a failure.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Callable, Optional

from kdiag.datamodel.config import RunConfig
from kdiag.datamodel.report import Report
from kdiag.errors import KdiagError
from kdiag.signals import stop_cause
from kdiag.steps.budget import Budget
from kdiag.steps.state import Progress, RunInterrupted, StepCounter

#: The other side gets what is left of the limit, and never less than a short run needs.
MIN_CHILD_LIMIT_S = 20.0


def run(config: RunConfig, progress: Optional[Progress], out_dir: Optional[Path], work_dir: Optional[Path],
        run_here: Callable[..., Report]) -> Report:
    """`run_here(config, progress, out_dir, work_dir)` runs one side in this process."""
    from kdiag.analysis.diagnose import diagnose
    from kdiag.engine import keras_child

    keras_child.require_tf_keras(config.keras)
    plan = keras_child.sides(config)
    budget = Budget(config.time_limit_s)
    steps = StepCounter(progress, 1, budget)
    folder = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="kdiag-keras-"))
    if len(plan) == 1:  # --keras N, N not this process's
        steps.next(f"Keras {plan[0]}", "in a child process")
        measured = keras_child.run_child(config, plan[0], folder / f"keras-{plan[0]}", steps.say)
        return dataclasses.replace(measured, settings=dataclasses.replace(measured.settings, command=config.command))
    here, there = plan
    report = run_here(dataclasses.replace(config, keras=None), progress, out_dir, work_dir)
    left = budget.for_child(MIN_CHILD_LIMIT_S)
    steps.next(f"Keras {there}", "in a child process")
    try:
        # The batch was saved by this side (--save-inputs): the other side's child does not save it again.
        other = keras_child.run_child(dataclasses.replace(config, save_inputs=None), there, folder / f"keras-{there}",
                                      steps.say, left)
    except KdiagError as exc:
        note = f"--keras both: {exc.message}; this report holds the {keras_child.LABELS[here]} run only."
        return dataclasses.replace(report, notes=[note] + report.notes)
    except KeyboardInterrupt:
        note = (f"Interrupted by {stop_cause()} while measuring under {keras_child.LABELS[there]}: this report "
                f"holds the {keras_child.LABELS[here]} run only.")
        raise RunInterrupted(dataclasses.replace(report, incomplete=True, notes=[note] + report.notes)) from None
    keras3, keras2 = (report, other) if here == "3" else (other, report)
    both = dataclasses.replace(keras3, other_keras=keras2,
                               settings=dataclasses.replace(keras3.settings, command=config.command))
    return dataclasses.replace(both, findings=diagnose(both))
