"""Step: the training-mode check (kdiag.engine.training), last of the measuring steps because
model(x, training=True) updates BatchNormalization's moving statistics."""

from __future__ import annotations

from kdiag.engine import training
from kdiag.steps.state import RunState

PLANNED_STEPS = 1


def run(state: RunState) -> None:
    state.steps.next("training check", "model(x, training=True) against predict")
    layers, stray = training.training_mode_check(state.context, state.reference_outputs)
    state.training_dependent_layers, state.training_true_max_abs_diff = layers, stray
