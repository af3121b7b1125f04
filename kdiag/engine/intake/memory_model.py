"""Memory each strategy needs, from the sizes a model declares (kdiag.engine.intake.declared), as measured.

A linear model per strategy in the weights, the number of layers, the largest layer's inputs and
outputs and, for eager calls, every layer's outputs; its coefficients were fitted on peak RSS
measured on real models by bench/calibrate_memory.py, with MARGIN on top (the README says how, and
how it held on models it was not fitted to). Used twice: before Keras builds anything, to refuse a
model whose smallest useful run will not fit (`check_declared_memory`), and after loading, for
kdiag.engine.intake.limits.plan_memory's choice of the strategies that fit (`strategy_needs`).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Mapping, Optional, Sequence, Tuple

from kdiag.engine.intake.declared import DeclaredModel, declared_model
from kdiag.errors import KdiagError

MIB = 1 << 20


@dataclasses.dataclass(frozen=True)
class StrategyMemory:
    """Memory a strategy adds, as measured: a linear model in the weights (W), the number of layers
    (L: tracing, compiling and converting grow with the graph), the largest layer's inputs and
    outputs for one batch (P) and, for eager calls, the inputs and every layer's outputs (E).

    prepare: its peak while it is prepared (a second instance, an export, a conversion, a compile);
    kept: what it holds afterwards, while the other strategies run; call: one call's peak.
    """

    prepare_weights: float = 0.0
    kept_weights: float = 0.0
    fixed_mib: float = 0.0  # prepared and kept alike
    per_layer_mib: float = 0.0  # prepared and kept alike
    prepare_largest: float = 0.0  # x P: a call made while preparing (XLA's probe, TFLite's conversion)
    kept_largest: float = 0.0
    kept_inputs: float = 0.0  # x the input batch: tensors it keeps
    call_largest: float = 0.0  # x P
    call_everything: float = 0.0  # x E
    call_fixed_mib: float = 0.0
    call_per_layer_mib: float = 0.0  # the executor's and oneDNN's per-op state


#: Fitted on bench/calibrate_memory.py's measurements (TensorFlow 2.21, Keras 3.15, oneDNN on, 2 cores):
#: peak RSS above the RSS before, per (model, strategy), for kdiag's four examples, Conv1D + LSTM(512) at
#: 32 x 400 x 16, MobileNetV2 and ResNet50 (weights=None, batch 1 and 8), DenseNet121 and EfficientNetB0
#: (batch 4), an Embedding + bidirectional GRU (64 x 200), Input(10**7) -> ReLU, three Dense(4096) at
#: batch 256 and two Conv2D(32) on 512 x 512 x 3 at batch 4. Each coefficient is the largest the
#: measurements need, so the model is at or above every measured peak; then MARGIN on top.
#: DenseNet121, EfficientNetB0 and the GRU were first held out: the fit without them was too low on them
#: (graph calls 0.65x, SavedModel 0.76x, TFLite 0.82x of the measured peak), so they joined it;
#: InceptionV3 and a Transformer block were measured against this fit, unseen (see the README).
GRAPH_CALL = dict(call_largest=2.3, call_fixed_mib=38, call_per_layer_mib=0.11)  # tensors freed after last use
STRATEGY_MEMORY: Dict[str, StrategyMemory] = {
    "predict": StrategyMemory(**GRAPH_CALL),
    "predict-compiled": StrategyMemory(prepare_weights=2.4, kept_weights=1.6, fixed_mib=16, per_layer_mib=0.1,
                                       **GRAPH_CALL),
    "predict_on_batch": StrategyMemory(**GRAPH_CALL),
    "eager": StrategyMemory(call_everything=2.0, call_fixed_mib=20),  # Keras keeps each layer's outputs
    "tf-function": StrategyMemory(**GRAPH_CALL),
    "concrete": StrategyMemory(fixed_mib=3, per_layer_mib=0.08, kept_inputs=2.1, **GRAPH_CALL),
    "xla": StrategyMemory(fixed_mib=100, per_layer_mib=0.8, prepare_largest=1.4, kept_largest=1.4,
                          call_largest=0.5, call_fixed_mib=50),
    "savedmodel": StrategyMemory(prepare_weights=2.5, kept_weights=2.5, fixed_mib=20, per_layer_mib=0.8,
                                 **GRAPH_CALL),
    "tflite": StrategyMemory(prepare_weights=7.8, kept_weights=5.0, fixed_mib=100, per_layer_mib=1.35,
                             prepare_largest=1.3, kept_largest=1.3, call_largest=1.5, call_fixed_mib=5),
}
#: On top of the fitted model: the largest measured peak is not the largest there is.
MARGIN = 1.25
#: What importing TensorFlow and Keras takes before any model exists (VmRSS 650-680 MB here).
RUNTIME_BYTES = 700 * MIB


@dataclasses.dataclass(frozen=True)
class StrategyNeed:
    """A strategy's estimated memory, margin included: held afterwards, and its peak above that."""

    kept_bytes: int
    transient_bytes: int


def strategy_need(model: DeclaredModel, key: str, batch: int, overrides: Mapping[str, Sequence[int]] = {}
                  ) -> StrategyNeed:
    """What strategy `key` keeps and needs at its peak on top of the loaded model and the inputs."""
    cost = STRATEGY_MEMORY.get(key, StrategyMemory(**GRAPH_CALL))
    weights = model.weights_bytes
    largest = model.largest_layer_bytes(batch)
    inputs = model.input_bytes(batch, overrides)
    graph = cost.fixed_mib * MIB + cost.per_layer_mib * MIB * len(model.layers)
    kept = cost.kept_weights * weights + graph + cost.kept_largest * largest + cost.kept_inputs * inputs
    prepare = cost.prepare_weights * weights + graph + cost.prepare_largest * largest
    call = (cost.call_largest * largest + cost.call_everything * (inputs + model.activation_bytes(batch))
            + cost.call_fixed_mib * MIB + cost.call_per_layer_mib * MIB * len(model.layers))
    return StrategyNeed(int(MARGIN * kept), int(MARGIN * max(prepare, kept + call)))


def strategy_needs(model: Optional[DeclaredModel], keys: Sequence[str], batch: int,
                   overrides: Mapping[str, Sequence[int]] = {}) -> Dict[str, Tuple[int, int]]:
    """{key: (kept, transient)} for kdiag.engine.intake.limits.plan_memory; empty without a declared model."""
    if model is None or not model.layers:
        return {}
    return {key: dataclasses.astuple(strategy_need(model, key, batch, overrides)) for key in keys}


@dataclasses.dataclass(frozen=True)
class IntakeEstimate:
    """The memory the smallest useful run needs (load the model, build the inputs, call predict),
    from the config alone."""

    model: DeclaredModel
    batch: int
    load_bytes: int  # the weights, held twice while loading
    run_bytes: int  # the weights, the inputs and their tensors, predict's outputs kept and its call
    runtime_bytes: int  # TensorFlow itself, when it is not imported yet

    @property
    def need_bytes(self) -> int:
        return self.runtime_bytes + max(self.load_bytes, self.run_bytes)


def intake_estimate(config, batch_size: Optional[int], overrides: Mapping[str, Sequence[int]] = {},
                    tensorflow_loaded: bool = False) -> IntakeEstimate:
    from kdiag.engine.intake.limits import LOAD_COPIES

    model = declared_model(config)
    batch = model.fixed_batch or batch_size or 1
    inputs = model.input_bytes(batch, overrides)
    predict = strategy_need(model, "predict", batch, overrides)
    run = model.weights_bytes + 2 * inputs + model.output_bytes(batch) + predict.kept_bytes + predict.transient_bytes
    return IntakeEstimate(model, batch, int(LOAD_COPIES * model.weights_bytes), int(run),
                          0 if tensorflow_loaded else RUNTIME_BYTES)


def check_declared_memory(what: str, config, batch_size: Optional[int],
                          overrides: Mapping[str, Sequence[int]] = {}) -> DeclaredModel:
    """Refuse, before Keras builds anything, a model whose declared sizes will not fit: its
    parameters (Keras allocates them while building, whatever the file stores) and, at this batch,
    its inputs and predict's activations. Returns the declared model for the later plans."""
    import sys

    from kdiag.engine.intake import limits

    estimate = intake_estimate(config, batch_size, overrides, tensorflow_loaded="tensorflow" in sys.modules)
    available = limits.available_memory_bytes()
    if estimate.need_bytes > available:
        model, batch = estimate.model, estimate.batch
        raise KdiagError(
            f"not enough memory to run {what}: {limits.needs_line(estimate.need_bytes, available)} (estimated from "
            f"what its config declares: {model.parameters:,} parameters ({limits.size_text(model.weights_bytes)}, "
            f"held twice while loading) and, at batch {batch}, inputs of "
            f"{limits.size_text(model.input_bytes(batch, overrides))} and activations of up to "
            f"{limits.size_text(model.largest_layer_bytes(batch))} per layer)",
            limits.FREE_MEMORY_FIX if estimate.load_bytes >= estimate.run_bytes
            else "use a smaller --batch-size, or " + limits.FREE_MEMORY_FIX)
    return estimate.model
