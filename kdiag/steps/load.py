"""Step 1 and 2: load the model (safely: kdiag.engine.intake), and build the batch it is called on.

Then the memory plan: strategies whose copies of the weights and inputs, or whose activations, would
not fit get a "not measured" row instead of an out-of-memory kill (kdiag.engine.intake.limits, with
kdiag.engine.intake.memory_model's calibrated figures for what the model declares).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from kdiag.datamodel.config import RunConfig
from kdiag.engine.intake.inputs import (ModelInputs, check_user_array, load_user_inputs, resolve_shapes,
                                        synthetic_inputs, unused_arrays_note)
from kdiag.engine.intake.load import LoadedModel, from_model, load_example, load_path
from kdiag.errors import KdiagError
from kdiag.steps.state import RunState

PLANNED_STEPS = 2


def run(state: RunState) -> None:
    config = state.config
    state.steps.next("load", f"example {config.example}" if config.example else str(config.model))
    # On the worker, until the limit itself (nothing is measured yet, so no report waits to be saved).
    state.loaded = _within_the_limit(state, "loading the model", lambda: load_model(config))
    state.steps.next("inputs", "building the input batch")
    state.inputs = _within_the_limit(state, "building the input batch", lambda: make_inputs(state.loaded, config))
    state.notes.extend(state.inputs.notes)
    if config.save_inputs:  # --save-inputs: the batch, for another run to time the same data (--tf does)
        from kdiag.engine.intake.inputs import save_inputs

        save_inputs(state.inputs, config.save_inputs)


def _within_the_limit(state: RunState, what: str, work):
    """`work()` on the run's worker; the time limit stopping it is a refusal: nothing was measured."""
    from kdiag.steps.worker import TimeUp

    try:
        return state.worker.call(work, keep_s=0.0)
    except TimeUp as up:
        limit = state.config.time_limit_s
        raise KdiagError(f"{what} did not finish within --time-limit {limit:g} s (stopped after "
                         f"{state.budget.elapsed():.0f} s; nothing was measured)",
                         "rerun with a larger --time-limit (0 for none) if the model is meant to take this long") \
            from up


def plan_memory(state: RunState, strategies, profile: bool) -> None:
    """Which strategies (and whether the profiles) fit in the memory left; a note when profiling does not."""
    from kdiag.engine.intake.limits import PROFILE_KEY, memory_plan_for
    from kdiag.engine.intake.memory_model import strategy_needs
    from kdiag.engine.runtimes.strategies import memory_costs

    costs = memory_costs(strategies, keras=state.loaded.is_keras)
    inputs = state.inputs
    calibrated = strategy_needs(state.loaded.declared, list(costs), inputs.batch_size,
                                {name: array.shape[1:] for name, array in inputs.arrays.items()}) \
        if state.loaded.is_keras else None
    memory = memory_plan_for(state.loaded, inputs.arrays, costs, profile=profile, calibrated=calibrated)
    state.memory_skip = dict(memory.skip)
    if PROFILE_KEY in memory.skip:
        state.notes.append(memory.skip[PROFILE_KEY])


def load_model(config: RunConfig) -> LoadedModel:
    if config.example is not None:
        return load_example(config.example)
    if isinstance(config.model, (str, Path)):
        return load_path(config.model, unsafe=config.unsafe,
                         custom_objects=dict(config.custom_objects) if config.custom_objects else None,
                         batch_size=config.batch_size, input_shapes=config.input_shapes)
    return from_model(config.model)


def make_inputs(loaded: LoadedModel, config: RunConfig) -> ModelInputs:
    """The user's arrays (a file, an array or a dict of them), or synthetic ones from the model's signature."""
    specs = loaded.input_specs
    if config.inputs is not None:
        if isinstance(config.inputs, (str, Path)):
            return load_user_inputs(Path(config.inputs), specs)
        arrays = config.inputs if isinstance(config.inputs, dict) else {specs[0].name: config.inputs}
        checked = {s.name: check_user_array(s, arrays[s.name]) for s in specs}
        return ModelInputs(checked, {n: "user data" for n in checked},
                           unused_arrays_note("the inputs given", [k for k in arrays if k not in checked]))
    batch = batch_size(loaded, config.batch_size)
    from kdiag.engine.intake.limits import check_input_memory, estimate_output_bytes

    shapes = resolve_shapes(specs, batch, config.input_shapes)
    check_input_memory(specs, shapes, estimate_output_bytes(loaded, batch))
    return synthetic_inputs(specs, shapes)


def batch_size(loaded: LoadedModel, requested: Optional[int]) -> int:
    """The model's fixed batch size (refusing another), else the one asked for, else the example's or 1."""
    fixed = {s.shape[0] for s in loaded.input_specs if s.shape and s.shape[0] is not None}
    if fixed:
        size = fixed.pop()
        if requested is not None and requested != size:
            raise KdiagError(
                f"the model's batch size is fixed at {size}, so --batch-size {requested} cannot be used",
                f"drop --batch-size or pass --batch-size {size}",
            )
        return size
    if requested is not None:
        return requested
    return loaded.default_batch_size or 1
