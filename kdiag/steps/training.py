"""Step: the training-mode check (kdiag.engine.training), last of the measuring steps because
model(x, training=True) updates BatchNormalization's moving statistics."""

from __future__ import annotations

import math

from kdiag.datamodel.strategies import EAGER, PREDICT
from kdiag.engine import training
from kdiag.steps.budget import SAVE_S
from kdiag.steps.state import RunState

PLANNED_STEPS = 1


def run(state: RunState) -> None:
    state.steps.next("training check", "model(x, training=True) against predict")
    needs = call_estimate_s(state)
    if state.budget.fits(needs + SAVE_S):
        layers, stray = state.worker.call(lambda: training.training_mode_check(state.context, state.reference_outputs))
    else:  # no call starts without the time it takes: the layers are listed (no call), the stray not measured
        layers, stray = training.training_mode_check(state.context, None)
        if layers:
            state.budget.cut("model(x, training=True) was not called (no time left for its call).", needs)
    state.training_dependent_layers, state.training_true_max_abs_diff = layers, stray


def call_estimate_s(state: RunState) -> float:
    """What its one model(x, training=True) call may take: eager's first call, else predict's (0 when
    neither was measured: the check then starts only while time is left)."""
    for name in (EAGER.name, PREDICT.name):
        result = next((r for r in state.results if r.name == name and r.measurement is not None), None)
        if result is not None and math.isfinite(result.measurement.first_call_s):
            return result.measurement.first_call_s
    return 0.0
