"""The phase rule sets as data: landmark functions per framework version."""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Tuple

from kdiag.datamodel.profile import (CALLBACKS, EAGER, GRAPH, INPUT, OTHER, OUTPUT, PHASES, TFDATA, TRACING,
                                     RuleSetListing)

PHASE_INDEX = {name: i for i, name in enumerate(PHASES)}


@dataclasses.dataclass(frozen=True)
class Landmark:
    """A function that starts a phase.

    path: relative to the package root (``site-packages/``): a file
      (``keras/src/backend/tensorflow/trainer.py``), a directory ending in ``/``
      (``tensorflow/python/data/``: every file below it) or a glob
      (``tensorflow/python/ops/gen_*.py``).
    function: a bare name (``make_iterator``: any function of that name in the path), a
      qualified name (``OwnedIterator.__init__``, ``TensorFlowTrainer.predict.get_data``
      for a closure; ``<locals>`` may be left out), a glob over the qualified name
      (``Progbar.*``), or ``*`` for every function in the path.

    When several landmarks match one function the most specific wins: a qualified name
    over a bare name over a glob over ``*``, then a file over a glob over a directory,
    then the one listed first.
    """

    phase: str
    path: str
    function: str

    def __post_init__(self):
        if self.phase not in PHASE_INDEX or self.phase == OTHER:
            raise ValueError(f"unknown phase {self.phase!r} in landmark {self}")
        if not self.path or not self.function:
            raise ValueError(f"empty path or function in landmark {self}")


@dataclasses.dataclass(frozen=True)
class RuleSet:
    """The landmarks for one framework version, and how phases nest."""

    name: str
    framework: str
    description: str
    landmarks: Tuple[Landmark, ...]
    #: phases that keep everything below them (no deeper landmark takes over)
    absorbing_phases: Tuple[str, ...] = (TRACING,)
    #: phases whose landmarks only take over from "other Python"
    weak_phases: Tuple[str, ...] = (EAGER,)


def _lm(phase: str, path: str, *functions: str) -> List[Landmark]:
    return [Landmark(phase, path, f) for f in functions]


# TensorFlow >= 2.13 layout (tensorflow/python/eager/polymorphic_function/), checked on
# TF 2.21. Shared by the Keras 3 and tf-keras rule sets.
_TF_DATA = [
    *_lm(TFDATA, "tensorflow/python/data/", "*"),
    *_lm(TFDATA, "tensorflow/python/ops/gen_dataset_ops.py", "*"),
    *_lm(TFDATA, "tensorflow/python/ops/gen_experimental_dataset_ops.py", "*"),
    *_lm(TFDATA, "tensorflow/python/distribute/input_lib.py", "*"),
    *_lm(TFDATA, "tensorflow/python/distribute/distribute_lib.py",
         "*experimental_distribute_dataset"),
]

_TF_MODERN = [
    *_TF_DATA,
    # Tracing: only what CREATES a concrete function. tracing_compilation.trace_function
    # and _maybe_define_function run on every tf.function call as a cache lookup.
    *_lm(TRACING, "tensorflow/python/eager/polymorphic_function/tracing_compilation.py",
         "_create_concrete_function"),
    *_lm(TRACING, "tensorflow/python/eager/polymorphic_function/polymorphic_function.py",
         "Function._initialize"),
    *_lm(TRACING, "tensorflow/python/eager/polymorphic_function/atomic_function.py",
         "from_func_graph"),
    *_lm(TRACING, "tensorflow/python/framework/func_graph.py", "func_graph_from_py_func"),
    *_lm(TRACING, "tensorflow/python/autograph/impl/api.py", "converted_call"),
    *_lm(TRACING, "tensorflow/python/autograph/impl/conversion.py", "*"),
    *_lm(TRACING, "tensorflow/python/autograph/pyct/", "*"),
    # Graph building, which only tracing does in TF 2 (they are below the landmarks
    # above anyway; naming them keeps shared helpers from diluting tracing).
    *_lm(TRACING, "tensorflow/python/framework/func_graph.py", "*"),
    *_lm(TRACING, "tensorflow/python/framework/op_def_library.py", "*"),
    *_lm(TRACING, "tensorflow/python/framework/auto_control_deps.py", "*"),
    *_lm(TRACING, "tensorflow/python/framework/ops.py", "Graph._create_op_internal",
         "Graph._create_op_helper", "Graph.create_op", "Operation.*", "_create_c_op"),
    # Graph execution: calling a tf.function / concrete function into the runtime.
    *_lm(GRAPH, "tensorflow/python/eager/polymorphic_function/polymorphic_function.py",
         "Function.__call__"),
    *_lm(GRAPH, "tensorflow/python/eager/polymorphic_function/concrete_function.py",
         "ConcreteFunction.__call__", "ConcreteFunction._call_flat"),
    *_lm(GRAPH, "tensorflow/python/eager/polymorphic_function/atomic_function.py",
         "AtomicFunction.__call__", "AtomicFunction.call_flat",
         "AtomicFunction.call_preflattened"),
    *_lm(GRAPH, "tensorflow/python/eager/context.py", "Context.call_function", "async_wait"),
    # Eager op dispatch (weak): TF ops run op by op from Python. gen_dataset_ops above
    # is more specific, so dataset ops stay tf.data.
    *_lm(EAGER, "tensorflow/python/ops/", "*"),
    *_lm(EAGER, "tensorflow/python/eager/execute.py", "*"),
    *_lm(EAGER, "tensorflow/python/util/dispatch.py", "*"),
    *_lm(EAGER, "tensorflow/python/framework/constant_op.py", "*"),
    # Output conversion: copying an eager tensor to NumPy (waits for the device).
    *_lm(OUTPUT, "tensorflow/python/framework/ops.py", "_EagerTensorBase.numpy"),
]

_K3_TRAINER = "keras/src/backend/tensorflow/trainer.py"

KERAS3_TF = RuleSet(
    name="keras3-tensorflow",
    framework="Keras 3 with the TensorFlow backend (TF >= 2.16)",
    description=(
        "Keras 3 predict: TFEpochIterator picks a data adapter, ArrayDataAdapter builds a "
        "tf.data pipeline (tracing three map functions) and two iterators per call; the "
        "cached predict_function is a tf.function. Read from Keras 3.15 and TF 2.21."
    ),
    landmarks=tuple([
        *_lm(INPUT, "keras/src/trainers/data_adapters/", "*"),
        *_lm(INPUT, "keras/src/trainers/epoch_iterator.py", "*"),
        *_lm(INPUT, _K3_TRAINER, "TFEpochIterator.*", "TensorFlowTrainer.predict.get_data"),
        *_lm(TFDATA, "keras/src/trainers/data_adapters/", "get_tf_dataset"),
        *_lm(TRACING, _K3_TRAINER, "TensorFlowTrainer.make_predict_function"),
        *_lm(TRACING, "keras/src/backend/tensorflow/core.py", "compute_output_spec"),
        *_lm(GRAPH, _K3_TRAINER, "TFEpochIterator.tf_sync"),
        *_lm(EAGER, _K3_TRAINER, "TensorFlowTrainer.predict_step"),
        *_lm(EAGER, "keras/src/layers/layer.py", "Layer.__call__"),
        *_lm(EAGER, "keras/src/ops/", "*"),
        *_lm(CALLBACKS, "keras/src/callbacks/", "*"),
        *_lm(CALLBACKS, "keras/src/utils/progbar.py", "*"),
        *_lm(OUTPUT, _K3_TRAINER, "convert_to_np_if_not_ragged", "potentially_ragged_concat",
             "TensorFlowTrainer.predict.append_to_outputs"),
        *_lm(OUTPUT, "keras/src/backend/tensorflow/core.py", "convert_to_numpy"),
        *_TF_MODERN,
    ]),
)

_TFK_TRAINING = "tf_keras/src/engine/training.py"
_TFK_DATA = "tf_keras/src/engine/data_adapter.py"

TF_KERAS_2 = RuleSet(
    name="tf-keras-2",
    framework="tf-keras 2.x (Keras 2; TF_USE_LEGACY_KERAS=1 or TF <= 2.15)",
    description=(
        "Keras 2 predict: DataHandler selects a data adapter whose constructor builds the "
        "tf.data pipeline (tracing its map functions); the iterator is consumed inside "
        "the predict_function graph. Read from tf-keras 2.21 and TF 2.21."
    ),
    landmarks=tuple([
        *_lm(INPUT, _TFK_DATA, "*"),
        *_lm(TFDATA, _TFK_DATA, "*.slice_inputs", "single_batch_iterator",
             "*._configure_dataset_and_inferred_steps"),
        *_lm(TRACING, _TFK_TRAINING, "Model.make_predict_function"),
        *_lm(EAGER, _TFK_TRAINING, "Model.predict_step", "Model.__call__"),
        *_lm(EAGER, "tf_keras/src/engine/base_layer.py", "Layer.__call__"),
        *_lm(CALLBACKS, "tf_keras/src/callbacks.py", "*"),
        *_lm(CALLBACKS, "tf_keras/src/utils/generic_utils.py", "Progbar.*"),
        *_lm(OUTPUT, _TFK_TRAINING, "potentially_ragged_concat", "Model.predict.<lambda>"),
        *_lm(OUTPUT, "tf_keras/src/utils/tf_utils.py", "sync_to_numpy_or_python_type"),
        *_TF_MODERN,
    ]),
)

_OLD_KERAS = "tensorflow/python/keras/engine/"

TF_2_0_TO_2_3 = RuleSet(
    name="tf-2.0-2.3",
    framework="tf.keras in TensorFlow 2.0-2.3 (tensorflow/python/keras, eager/function.py)",
    description=(
        "The names behind the 'predict 30x slower after compile()' reports "
        "(tensorflow/tensorflow#33340): training_v2 _process_inputs and "
        "_standardize_user_data, data adapters, Function._create_graph_function. Written "
        "from the public sources of those versions; not installed here, so unchecked."
    ),
    landmarks=tuple([
        *_lm(INPUT, _OLD_KERAS + "training_v2.py", "_process_inputs",
             "_process_training_inputs"),
        *_lm(INPUT, _OLD_KERAS + "training.py", "Model._standardize_user_data",
             "Model._standardize_tensors"),
        *_lm(INPUT, _OLD_KERAS + "training_v1.py", "Model._standardize_user_data",
             "Model._standardize_tensors"),
        *_lm(INPUT, _OLD_KERAS + "training_utils.py", "standardize_input_data"),
        *_lm(INPUT, _OLD_KERAS + "data_adapter.py", "*"),
        *_lm(TFDATA, _OLD_KERAS + "data_adapter.py", "*.slice_inputs"),
        *_TF_DATA,
        *_lm(TRACING, "tensorflow/python/eager/function.py", "Function._create_graph_function"),
        *_lm(TRACING, "tensorflow/python/eager/def_function.py", "Function._initialize"),
        *_lm(TRACING, "tensorflow/python/framework/func_graph.py", "func_graph_from_py_func"),
        *_lm(TRACING, "tensorflow/python/autograph/impl/api.py", "converted_call"),
        *_lm(TRACING, "tensorflow/python/autograph/impl/conversion.py", "*"),
        *_lm(TRACING, "tensorflow/python/autograph/pyct/", "*"),
        *_lm(TRACING, _OLD_KERAS + "training_v2_utils.py", "_make_execution_function"),
        *_lm(TRACING, _OLD_KERAS + "training.py", "Model.make_predict_function"),
        *_lm(GRAPH, "tensorflow/python/eager/def_function.py", "Function.__call__"),
        *_lm(GRAPH, "tensorflow/python/eager/function.py", "Function.__call__",
             "ConcreteFunction.__call__", "ConcreteFunction._call_flat",
             "_EagerDefinedFunction.call"),
        *_lm(GRAPH, "tensorflow/python/keras/backend.py", "EagerExecutionFunction.__call__",
             "GraphExecutionFunction.__call__"),
        *_lm(GRAPH, "tensorflow/python/eager/context.py", "async_wait"),
        *_lm(EAGER, "tensorflow/python/ops/", "*"),
        *_lm(EAGER, "tensorflow/python/eager/execute.py", "*"),
        *_lm(EAGER, "tensorflow/python/util/dispatch.py", "*"),
        *_lm(EAGER, "tensorflow/python/framework/constant_op.py", "*"),
        *_lm(EAGER, _OLD_KERAS + "base_layer.py", "Layer.__call__"),
        *_lm(EAGER, _OLD_KERAS + "training.py", "Model.predict_step"),
        *_lm(CALLBACKS, "tensorflow/python/keras/callbacks.py", "*"),
        *_lm(CALLBACKS, "tensorflow/python/keras/utils/generic_utils.py", "Progbar.*"),
        *_lm(CALLBACKS, _OLD_KERAS + "training_v2.py", "TrainingContext.*"),
        *_lm(OUTPUT, _OLD_KERAS + "training_utils.py", "*Aggregator.*"),
        *_lm(OUTPUT, _OLD_KERAS + "training_v2.py", "_aggregate_predict_results"),
        *_lm(OUTPUT, "tensorflow/python/keras/utils/tf_utils.py", "to_numpy_or_python_type",
             "sync_to_numpy_or_python_type"),
        *_lm(OUTPUT, "tensorflow/python/framework/ops.py", "_EagerTensorBase.numpy"),
    ]),
)

#: Every rule set by name.
RULESETS: Dict[str, RuleSet] = {r.name: r for r in (KERAS3_TF, TF_KERAS_2, TF_2_0_TO_2_3)}


def select_rules(legacy: bool) -> RuleSet:
    """The rule set for the Keras in use: tf-keras 2.x when `legacy`, else Keras 3."""
    return TF_KERAS_2 if legacy else KERAS3_TF


def get_rules(name: str) -> RuleSet:
    """A rule set by `RuleSet.name`; KeyError names the known ones."""
    try:
        return RULESETS[name]
    except KeyError:
        raise KeyError(f"unknown rule set {name!r}; known: {', '.join(RULESETS)}") from None


def rules_table(ruleset: RuleSet) -> List[Tuple[str, str, str]]:
    """Rows (phase, path, function), by phase in display order then as listed."""
    order = {lm: i for i, lm in enumerate(ruleset.landmarks)}
    rows = sorted(ruleset.landmarks, key=lambda lm: (PHASE_INDEX[lm.phase], order[lm]))
    return [(lm.phase, lm.path, lm.function) for lm in rows]


def listing(ruleset: RuleSet) -> RuleSetListing:
    """The rule set as data for `kdiag rules` (renderers never import the engine)."""
    return RuleSetListing(ruleset.name, ruleset.framework, ruleset.description, tuple(ruleset.absorbing_phases),
                          tuple(ruleset.weak_phases), tuple(rules_table(ruleset)))
