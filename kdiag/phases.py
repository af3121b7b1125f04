"""Where a profiled call spent its time: phase rules per framework, and the attribution.

A *phase* (``tracing``, ``tf.data pipeline``, ...) is a set of *landmark* functions, each
named by a file path relative to its package root and a function name, never by line
number. `attribute` reads a `pstats.Stats` (cProfile's caller->callee edges with their
times) and gives every function's own time to the innermost landmark above it:

* cProfile keeps edges, not stacks, so a function's time is spread over its callers in
  proportion to the edge times, as gprof does. Two refinements over plain gprof, both
  exact on the two-level trees the tests build: a function's *own* time is spread by
  the per-edge own time cProfile records (``tottime`` of the edge), and what it passes
  down to its callees by the per-edge time spent *below* it (edge ``cumtime`` minus
  edge ``tottime``). A recursive function's re-entries are folded into the calls that
  entered the recursion from outside.
* A landmark takes its own time and that of every non-landmark descendant; deeper
  landmarks win ("innermost"), with two exceptions declared by the rule set:
  *absorbing* phases (``tracing``) keep everything below them, because all Python that
  runs while a graph is being traced is tracing cost, whatever it calls; *weak* phases
  (``eager op dispatch``) only take over from ``other Python``, so an op run eagerly by
  the tf.data or output-conversion code counts for that phase.
* Time under no landmark is ``other Python``. The phases add up to the profiled total
  (the sum of every function's own time).

Limits, inherent in edges without stacks: a helper called from several phases (a
"hub": ``contextlib``, ``builtins.next``, TF's traceback-filtering ``error_handler``)
passes the same mix to all its callees, so a little time leaks between phases through
it (measured on Keras 3 predict: about 1-2% of the total; in tf-keras predict about
half of the small graph-execution time shows as tracing). Cycles through a landmark of
another phase split what they pass down less precisely than own time. And C++ work
done when an object is freed (e.g. the ~30 ms a used tf.data iterator takes to shut
down at the end of Keras 3 ``predict``) is charged by cProfile to the own time of
whichever Python frame was running, here Keras's ``error_handler``: ``other Python``.

This module is a pure function of the profile and the rules: standard library only (no
TensorFlow, no rich). Source files are read only to resolve qualified names
(``Class.method``) from the line a pstats key names, once per file.

The rule sets were chosen by reading the installed sources (TF 2.21, Keras 3.15,
tf-keras 2.21) and checked against cProfile runs of ``model.predict``, ``model(x)`` and
``predict_on_batch`` on a tiny model; `stale_landmarks` checks them against whatever is
installed. The TF 2.0-2.3 rule set is written from the public names of those versions
(not installed here, so never checked by it).
"""

from __future__ import annotations

import ast
import dataclasses
import fnmatch
import importlib.util
import marshal
import math
import os
import pstats
import sys
import tokenize
from typing import Dict, List, Optional, Sequence, Tuple

# ---------------------------------------------------------------------------------------
# Phases
# ---------------------------------------------------------------------------------------

INPUT = "input handling"
TFDATA = "tf.data pipeline"
TRACING = "tracing"
GRAPH = "graph execution"
EAGER = "eager op dispatch"
CALLBACKS = "callbacks & progress bar"
OUTPUT = "output conversion"
OTHER = "other Python"

#: Every phase, in display order. `PhaseBreakdown.phases` always lists all of them.
PHASES: Tuple[str, ...] = (INPUT, TFDATA, TRACING, GRAPH, EAGER, CALLBACKS, OUTPUT, OTHER)

PHASE_DESCRIPTIONS: Dict[str, str] = {
    INPUT: "Keras checking and converting the inputs, choosing a data adapter",
    TFDATA: "building tf.data datasets, creating iterators, fetching batches",
    TRACING: "creating concrete functions: running Python to build a graph, autograph",
    GRAPH: "calling a tf.function: signature matching, cache lookup, the TF runtime",
    EAGER: "running ops one by one from Python (eager layers, tf ops outside a graph)",
    CALLBACKS: "Keras callbacks and the progress bar",
    OUTPUT: "collecting batch outputs, concatenating them, copying them to NumPy",
    OTHER: (
        "Python under no landmark: the Keras loop itself, your code, and C++ teardown that "
        "cProfile charges to the caller (destroying predict's tf.data iterator shows as "
        "the own time of Keras's traceback filter, error_handler)"
    ),
}

_PHASE_INDEX = {name: i for i, name in enumerate(PHASES)}
_OTHER_INDEX = _PHASE_INDEX[OTHER]


# ---------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------


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
        if self.phase not in _PHASE_INDEX or self.phase == OTHER:
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
    rows = sorted(ruleset.landmarks, key=lambda lm: (_PHASE_INDEX[lm.phase], order[lm]))
    return [(lm.phase, lm.path, lm.function) for lm in rows]


# ---------------------------------------------------------------------------------------
# Matching a pstats key against landmarks
# ---------------------------------------------------------------------------------------

_GLOB_CHARS = frozenset("*?[")


def _is_glob(text: str) -> bool:
    return any(c in _GLOB_CHARS for c in text)


def relative_path(filename: str) -> str:
    """`filename` relative to its package root: after the last ``site-packages/`` (or
    ``dist-packages/``), else after the longest `sys.path` entry containing it, else the
    path itself (with ``/`` separators)."""
    path = filename.replace(os.sep, "/") if os.sep != "/" else filename
    for marker in ("/site-packages/", "/dist-packages/"):
        i = path.rfind(marker)
        if i >= 0:
            return path[i + len(marker):]
    best = ""
    for entry in sys.path:
        root = os.path.abspath(entry or os.curdir).replace(os.sep, "/").rstrip("/") + "/"
        if len(root) > len(best) and path.startswith(root):
            best = root
    return path[len(best):] if best else path


def _path_matcher(pattern: str):
    """A predicate on relative paths for a landmark path (file, directory or glob)."""
    if _is_glob(pattern):
        anywhere = "*/" + pattern
        return lambda rel: fnmatch.fnmatchcase(rel, pattern) or fnmatch.fnmatchcase(rel, anywhere)
    if pattern.endswith("/"):
        inner = "/" + pattern
        return lambda rel: rel.startswith(pattern) or inner in rel
    tail = "/" + pattern
    return lambda rel: rel == pattern or rel.endswith(tail)


def _segments(qualname: str) -> List[str]:
    return [s for s in qualname.split(".") if s and s != "<locals>"]


class _Matcher:
    """Landmark lookup for pstats keys, with the specificity order of `Landmark`."""

    def __init__(self, ruleset: RuleSet):
        self.ruleset = ruleset
        self.by_bare: Dict[str, list] = {}
        self.generic: list = []  # "*" and globbed last segments
        for i, lm in enumerate(ruleset.landmarks):
            rank = _function_rank(lm.function)
            entry = (lm, _path_matcher(lm.path), (rank, _path_rank(lm.path), -i))
            last = lm.function.rsplit(".", 1)[-1]
            if lm.function == "*" or _is_glob(last):
                self.generic.append(entry)
            else:
                self.by_bare.setdefault(last, []).append(entry)
        self._rel: Dict[str, str] = {}

    def rel(self, filename: str) -> str:
        r = self._rel.get(filename)
        if r is None:
            r = self._rel[filename] = relative_path(filename)
        return r

    def match(self, key: Tuple[str, int, str]) -> Optional[Landmark]:
        filename, line, bare = key
        if filename == "~" or not filename:  # built-ins are never landmarks
            return None
        candidates = self.by_bare.get(bare, []) + self.generic
        if not candidates:
            return None
        rel = self.rel(filename)
        best = None
        for lm, path_matches, score in candidates:
            if best is not None and score < best[0]:
                continue
            if not path_matches(rel):
                continue
            if score[0] > 0 and not self._function_matches(lm.function, filename, line, bare):
                continue
            best = (score, lm)
        return best[1] if best else None

    @staticmethod
    def _function_matches(function: str, filename: str, line: int, bare: str) -> bool:
        if "." not in function and not _is_glob(function):
            return function == bare
        qualname = qualname_at(filename, line, bare)
        if qualname is None:  # no source: fall back on the bare name
            last = function.rsplit(".", 1)[-1]
            return _is_glob(last) and fnmatch.fnmatchcase(bare, last) or last == bare
        have = _segments(qualname)
        if _is_glob(function):
            pattern = ".".join(_segments(function))
            joined = ".".join(have)
            return fnmatch.fnmatchcase(joined, pattern) or fnmatch.fnmatchcase(
                joined, "*." + pattern)
        want = _segments(function)
        return have[-len(want):] == want


def _function_rank(function: str) -> int:
    if function == "*":
        return 0
    if _is_glob(function):
        return 1
    return 3 if "." in function else 2


def _path_rank(path: str) -> int:
    if _is_glob(path):
        return 1
    return 0 if path.endswith("/") else 2


# ---------------------------------------------------------------------------------------
# Qualified names from source
# ---------------------------------------------------------------------------------------

_SOURCE_INDEX: Dict[str, Optional[Dict[int, List[Tuple[str, str]]]]] = {}

_COMPREHENSIONS = {
    ast.ListComp: "<listcomp>",
    ast.SetComp: "<setcomp>",
    ast.DictComp: "<dictcomp>",
    ast.GeneratorExp: "<genexpr>",
}


def _load_code(filename: str):
    """The module code object: from its up-to-date ``__pycache__`` file when there is
    one (what actually ran), else compiled from the source."""
    try:
        pyc = importlib.util.cache_from_source(filename)
        with open(pyc, "rb") as fh:
            data = fh.read()
        if data[:4] == importlib.util.MAGIC_NUMBER and int.from_bytes(data[4:8], "little") == 0:
            st = os.stat(filename)
            mtime = int.from_bytes(data[8:12], "little")
            size = int.from_bytes(data[12:16], "little")
            if mtime == int(st.st_mtime) & 0xFFFFFFFF and size == st.st_size & 0xFFFFFFFF:
                return marshal.loads(data[16:])
    except (OSError, ValueError, EOFError, TypeError, NotImplementedError):
        pass
    with tokenize.open(filename) as fh:
        return compile(fh.read(), filename, "exec", dont_inherit=True)


def _index_from_code(code) -> Dict[int, List[Tuple[str, str]]]:
    index: Dict[int, List[Tuple[str, str]]] = {}
    stack = [code]
    while stack:
        for const in stack.pop().co_consts:
            if hasattr(const, "co_qualname"):
                index.setdefault(const.co_firstlineno, []).append((const.co_name, const.co_qualname))
                stack.append(const)
    return index


def _index_from_ast(tree: ast.AST) -> Dict[int, List[Tuple[str, str]]]:
    index: Dict[int, List[Tuple[str, str]]] = {}

    def add(line: int, bare: str, qualname: str):
        entries = index.setdefault(line, [])
        if (bare, qualname) not in entries:
            entries.append((bare, qualname))

    stack: List[Tuple[ast.AST, str]] = [(tree, "")]
    while stack:
        node, prefix = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                qualname = prefix + child.name
                first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                add(first, child.name, qualname)
                stack.append((child, qualname + ".<locals>."))
            elif isinstance(child, ast.ClassDef):
                stack.append((child, prefix + child.name + "."))
            elif isinstance(child, ast.Lambda):
                qualname = prefix + "<lambda>"
                add(child.lineno, "<lambda>", qualname)
                stack.append((child, qualname + ".<locals>."))
            elif type(child) in _COMPREHENSIONS:
                bare = _COMPREHENSIONS[type(child)]
                add(child.lineno, bare, prefix + bare)
                stack.append((child, prefix + bare + ".<locals>."))
            else:
                stack.append((child, prefix))
    return index


def _index_source(filename: str) -> Optional[Dict[int, List[Tuple[str, str]]]]:
    """line -> [(bare name, qualified name)] for every function, lambda and comprehension
    of `filename`, keyed by the line CPython records as the code's first line (for a
    decorated function, its first decorator's), hence the line in a pstats key. None
    when the source cannot be read. Cached per file."""
    if filename in _SOURCE_INDEX:
        return _SOURCE_INDEX[filename]
    index: Optional[Dict[int, List[Tuple[str, str]]]] = None
    try:
        if sys.version_info >= (3, 11):  # code objects carry co_qualname
            index = _index_from_code(_load_code(filename))
        else:
            with tokenize.open(filename) as fh:
                index = _index_from_ast(ast.parse(fh.read(), filename))
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError, RecursionError):
        index = None
    _SOURCE_INDEX[filename] = index
    return index


def qualname_at(filename: str, line: int, bare: str) -> Optional[str]:
    """The qualified name (``Class.method``, ``outer.<locals>.inner``) of the function
    named `bare` whose code starts at `line` of `filename`; None without source."""
    if bare == "<module>":
        return bare
    index = _index_source(filename)
    if index is None:
        return None
    for name, qualname in index.get(line, ()):
        if name == bare:
            return qualname
    return None


def display_name(key: Tuple[str, int, str]) -> str:
    """A readable name for a pstats key: the qualified name where the source has it."""
    filename, line, bare = key
    if filename == "~":
        return bare
    return qualname_at(filename, line, bare) or bare


# ---------------------------------------------------------------------------------------
# Attribution
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PhaseShare:
    name: str
    seconds: float  # summed over all profiled calls
    share: float  # of the profiled total, 0..1


@dataclasses.dataclass(frozen=True)
class TopFunction:
    phase: str
    qualname: str
    file: str  # relative to its package root, as landmarks are written
    line: int
    own_s: float  # own time attributed to `phase`, summed over all profiled calls


@dataclasses.dataclass(frozen=True)
class PhaseBreakdown:
    """Where the profiled time went. Seconds are totals over `calls` profiled calls."""

    ruleset: str
    total_s: float
    calls: int
    phases: List[PhaseShare]
    top_functions: List[TopFunction]

    def seconds(self, phase: str) -> float:
        for p in self.phases:
            if p.name == phase:
                return p.seconds
        raise KeyError(phase)

    def share(self, phase: str) -> float:
        for p in self.phases:
            if p.name == phase:
                return p.share
        raise KeyError(phase)

    def per_call_s(self, phase: Optional[str] = None) -> float:
        """Seconds per profiled call, of one phase or (None) of the total."""
        seconds = self.total_s if phase is None else self.seconds(phase)
        return seconds / self.calls if self.calls else seconds


def _strongly_connected(nodes: Sequence, succ: Dict) -> List[List]:
    """Tarjan's algorithm, iterative; components come out callees first."""
    index: Dict = {}
    low: Dict = {}
    on_stack = set()
    stack: List = []
    out: List[List] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(succ.get(root, ())))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(succ.get(nxt, ()))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                out.append(component)
    return out


def _normalized(weights: List[float]) -> Optional[List[float]]:
    total = sum(weights)
    if not total > 0.0:
        return None
    return [w / total for w in weights]


class _Inflow:
    """How one function's time splits over its callers (self-calls apart); the last
    weight is for calls with no recorded caller (the profile's roots).

    Own time goes by the edges' own time, which cProfile records exactly per edge, with
    the time of recursive self-calls folded into the calls that entered the recursion.
    What the function passes down to its callees goes by the time spent below it per
    edge (edge cumulative minus edge own time).
    """

    __slots__ = ("callers", "own", "down")

    def __init__(self, entry, self_tt: float, self_ct: float, edges):
        _, _, tt, ct, _ = entry
        tt, ct = float(tt), float(ct)
        self.callers = [caller for caller, _, _, _ in edges]
        e_tt = [t for _, _, t, _ in edges]
        below = [max(c - t, 0.0) for _, _, t, c in edges]
        below_total = sum(below)
        if below_total > 0.0:
            own = [t + self_tt * b / below_total for t, b in zip(e_tt, below)]
        else:
            own = list(e_tt)
        own_root = tt - sum(e_tt) - self_tt
        own.append(own_root if own_root > 1e-9 * tt else 0.0)
        down_root = (ct - tt) - below_total
        below.append(down_root if down_root > 1e-9 * ct else 0.0)
        fallbacks = (
            [c for _, _, _, c in edges] + [0.0],
            [float(n) for _, n, _, _ in edges] + [0.0],
            [1.0] * len(edges) + [0.0],
        )
        if not edges:
            own = below = [1.0]
        own_n = _normalized(own)
        down_n = _normalized(below)
        for fallback in fallbacks:
            if own_n is not None and down_n is not None:
                break
            own_n = own_n or down_n or _normalized(fallback)
            down_n = down_n or own_n
        self.own = own_n or [0.0] * len(edges) + [1.0]
        self.down = down_n or self.own


def attribute(stats: pstats.Stats, rules: RuleSet, calls: int = 1, top: int = 5) -> PhaseBreakdown:
    """Split the profiled time into phases by `rules` (see the module docstring).

    `calls` is how many calls of the profiled callable the profile holds (recorded in
    the result, nothing is divided by it); `top` how many functions to keep per phase
    in `top_functions`.
    """
    raw = stats.stats  # {key: (cc, nc, tt, ct, {caller: (nc, cc, tt, ct)})}
    keys = list(raw)
    matcher = _Matcher(rules)
    n_phases = len(PHASES)
    absorbing = frozenset(_PHASE_INDEX[p] for p in rules.absorbing_phases)
    weak = frozenset(_PHASE_INDEX[p] for p in rules.weak_phases)
    origin = [0.0] * n_phases
    origin[_OTHER_INDEX] = 1.0

    # What each landmark does to the phase mix arriving from above.
    moves: Dict = {}
    for key in keys:
        lm = matcher.match(key)
        if lm is None:
            continue
        phase = _PHASE_INDEX[lm.phase]
        moves[key] = [
            q if (q in absorbing or (phase in weak and q != _OTHER_INDEX)) else phase
            for q in range(n_phases)
        ]

    # Edges into each function.
    edges_of: Dict = {}
    callees_of: Dict = {}
    for key in keys:
        self_tt = self_ct = 0.0
        edges = []
        for caller, edge in raw[key][4].items():
            if isinstance(edge, tuple):
                count, e_tt, e_ct = max(edge[0], edge[1]), float(edge[2]), float(edge[3])
            else:  # very old pstats files store a bare call count
                count, e_tt, e_ct = edge, 0.0, 0.0
            if caller == key:
                self_tt += e_tt
                self_ct += e_ct
                continue
            edges.append((caller, count, e_tt, e_ct))
            callees_of.setdefault(caller, []).append(key)
        edges_of[key] = (edges, self_tt, self_ct)
    inflow = {
        key: _Inflow(raw[key], self_tt, self_ct, edges)
        for key, (edges, self_tt, self_ct) in edges_of.items()
    }

    down: Dict = {}  # the phase mix a function passes to its callees
    own: Dict = {}  # the phase mix of its own time

    def evaluate(key) -> List[float]:
        flow = inflow[key]
        acc_own = [0.0] * n_phases
        acc_down = [0.0] * n_phases
        used_own = used_down = 0.0
        for caller, w_own, w_down in zip(flow.callers, flow.own, flow.down):
            dist = down.get(caller)
            if dist is None:
                if caller in raw:  # a caller in the same cycle, not yet evaluated
                    continue
                dist = origin
            used_own += w_own
            used_down += w_down
            for q, mass in enumerate(dist):
                if mass:
                    acc_own[q] += w_own * mass
                    acc_down[q] += w_down * mass
        acc_own[_OTHER_INDEX] += flow.own[-1]
        acc_down[_OTHER_INDEX] += flow.down[-1]
        used_own += flow.own[-1]
        used_down += flow.down[-1]
        acc_own = [v / used_own for v in acc_own] if used_own > 0 else list(origin)
        acc_down = [v / used_down for v in acc_down] if used_down > 0 else acc_own
        move = moves.get(key)
        if move is not None:
            moved_own = [0.0] * n_phases
            moved_down = [0.0] * n_phases
            for q in range(n_phases):
                moved_own[move[q]] += acc_own[q]
                moved_down[move[q]] += acc_down[q]
            acc_own, acc_down = moved_own, moved_down
        own[key] = acc_own
        previous = down.get(key)
        down[key] = acc_down
        if previous is None:
            return 1.0
        return max(abs(a - b) for a, b in zip(previous, acc_down))

    # Callers before callees: components of the call graph in reverse Tarjan order;
    # around a cycle, sweep until the mixes settle (bounded).
    for component in reversed(_strongly_connected(keys, callees_of)):
        if len(component) == 1:
            evaluate(component[0])
            continue
        for _ in range(max(20, min(500, 200_000 // len(component)))):
            if max(evaluate(key) for key in component) < 1e-9:
                break

    # Sum own times per phase.
    per_phase: List[List[float]] = [[] for _ in PHASES]
    contributions: List[List[Tuple[float, Tuple[str, int, str]]]] = [[] for _ in PHASES]
    all_tt = []
    for key in keys:
        tt = float(raw[key][2])
        all_tt.append(tt)
        if tt == 0.0:
            continue
        for q, frac in enumerate(own[key]):
            if frac:
                amount = tt * frac
                per_phase[q].append(amount)
                contributions[q].append((amount, key))
    total = math.fsum(all_tt)
    seconds = [math.fsum(parts) for parts in per_phase]
    # The phases add up to the total exactly: float rounding goes to the largest phase.
    residual = total - math.fsum(seconds)
    if residual:
        seconds[max(range(n_phases), key=lambda q: seconds[q])] += residual

    phases = [
        PhaseShare(name, s, (s / total) if total > 0 else 0.0)
        for name, s in zip(PHASES, seconds)
    ]
    tops: List[TopFunction] = []
    for q, name in enumerate(PHASES):
        for amount, key in sorted(contributions[q], key=lambda c: (-c[0], c[1]))[:top]:
            tops.append(TopFunction(
                phase=name,
                qualname=display_name(key),
                file=key[0] if key[0] == "~" else matcher.rel(key[0]),
                line=int(key[1]),
                own_s=amount,
            ))
    return PhaseBreakdown(
        ruleset=rules.name, total_s=total, calls=int(calls), phases=phases, top_functions=tops
    )


# ---------------------------------------------------------------------------------------
# Checking rules against what is installed
# ---------------------------------------------------------------------------------------


def _package_root(top: str) -> Optional[str]:
    """The directory holding package `top` (site-packages), found without importing it."""
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    locations = list(spec.submodule_search_locations or [])
    if locations:
        return os.path.dirname(os.path.abspath(locations[0]))
    if spec.origin:
        return os.path.dirname(os.path.abspath(spec.origin))
    return None


def _files_for(path: str, root: str) -> List[str]:
    full = os.path.join(root, *path.rstrip("/").split("/"))
    if _is_glob(path):
        import glob

        return sorted(f for f in glob.glob(os.path.join(root, path)) if f.endswith(".py"))
    if path.endswith("/"):
        found = []
        for dirpath, _, names in os.walk(full):
            found.extend(os.path.join(dirpath, n) for n in sorted(names) if n.endswith(".py"))
        return found
    return [full] if os.path.isfile(full) else []


def _defines(filename: str, function: str) -> bool:
    index = _index_source(filename)
    if index is None:
        return False
    names = {qualname for entries in index.values() for _, qualname in entries}
    want = _segments(function)
    for qualname in names:
        have = _segments(qualname)
        if _is_glob(function):
            joined = ".".join(have)
            pattern = ".".join(want)
            if fnmatch.fnmatchcase(joined, pattern) or fnmatch.fnmatchcase(joined, "*." + pattern):
                return True
        elif have[-len(want):] == want:
            return True
    return False


def stale_landmarks(ruleset: RuleSet) -> List[str]:
    """Problems with `ruleset` against the installed packages: a path that does not
    exist, or a function that no file of the path defines. Packages that are not
    installed are reported once each."""
    problems: List[str] = []
    roots: Dict[str, Optional[str]] = {}
    for lm in ruleset.landmarks:
        top = lm.path.split("/", 1)[0]
        if top not in roots:
            roots[top] = _package_root(top)
            if roots[top] is None:
                problems.append(f"package {top!r} is not installed")
        root = roots[top]
        if root is None:
            continue
        files = _files_for(lm.path, root)
        if not files:
            problems.append(f"{lm.phase}: {lm.path} does not exist under {root}")
            continue
        if lm.function == "*":
            continue
        if not any(_defines(f, lm.function) for f in files):
            problems.append(f"{lm.phase}: {lm.path} defines no {lm.function}")
    return problems
