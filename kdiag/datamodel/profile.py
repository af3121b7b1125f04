"""What a cProfile pass found: the phase vocabulary, per-phase rows and top functions.

The attribution that produces these lives in `kdiag.engine.phases`; this module only
names the phases and holds the results, so readers of a Report need no profiler code.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

INPUT = "input handling"
TFDATA = "tf.data pipeline"
TRACING = "tracing"
GRAPH = "graph execution"
EAGER = "eager op dispatch"
CALLBACKS = "callbacks & progress bar"
OUTPUT = "output conversion"
OTHER = "other Python"

#: Every phase, in display order. A profile's phase rows always list all of them.
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


@dataclasses.dataclass(frozen=True)
class TopFunction:
    phase: str
    qualname: str
    file: str  # relative to its package root, as landmarks are written
    line: int
    own_s: float  # own time attributed to `phase`, summed over all profiled calls


@dataclasses.dataclass(frozen=True)
class CallNode:
    """One function on one call path of a warm profile: a node of its call tree.

    cProfile keeps caller->callee edges, not stacks, so below the profile's roots a node's
    times are its edge's times scaled by its parent's share of the function (as gprof and
    snakeviz do): exact for a function called from one place, an estimate for one called
    from several. Times are summed over the profiled calls, as cProfile saw them.
    """

    function: str  # qualified name, as in TopFunction
    file: str  # relative to its package root; "~" for a built-in
    line: int
    phase: str  # the phase its own time belongs to on this path (the innermost landmark above it)
    total_s: float  # itself and everything below it
    own_s: float
    children: List["CallNode"] = dataclasses.field(default_factory=list)  # the largest first; small ones pruned


@dataclasses.dataclass(frozen=True)
class PhaseRow:
    name: str
    share: float  # of the profiled warm total, 0..1
    per_call_s: float  # share x the unprofiled median (the profiled time when there is no median)
    profiled_per_call_s: float  # as cProfile saw it (inflated by the profiler)

    @property
    def ms_per_call(self) -> float:
        """per_call_s in milliseconds, as the tables show it (not stored: the JSON holds seconds)."""
        return self.per_call_s * 1e3


@dataclasses.dataclass(frozen=True)
class ProfileResult:
    scenario: str  # the strategy's name, e.g. "predict", "predict (compiled)"
    prof_path: str  # warm calls; "" when the file was not kept (kdiag.inspect without out_dir)
    cold_prof_path: str  # the first call of a fresh instance; "" when not kept
    calls: int  # warm calls profiled
    ruleset: str
    profiled_per_call_s: float
    unprofiled_median_s: Optional[float]  # from the timing pass
    cold_call_profiled_s: float
    phases: List[PhaseRow]
    cold_phases: List[PhaseRow]  # shares of the cold call (times are profiled, not scaled)
    top_functions: List[TopFunction]
    traces_per_call: float  # concrete functions created per warm call
    cold_traces: int  # concrete functions created by the first call
    retracing_warnings: List[str]
    # The warm calls' call tree, pruned to a few hundred nodes; None in reports made before it existed.
    call_tree: Optional[CallNode] = None

    @property
    def inflation(self) -> Optional[float]:
        """Profiled time per call / unprofiled median: how much cProfile's overhead changed the time."""
        if not self.unprofiled_median_s:
            return None
        return self.profiled_per_call_s / self.unprofiled_median_s

    def phase(self, name: str) -> Optional[PhaseRow]:
        return next((p for p in self.phases if p.name == name), None)


@dataclasses.dataclass(frozen=True)
class RuleSetListing:
    """A phase rule set as `kdiag rules` prints it: (phase, path, function) rows in display order."""

    name: str
    framework: str
    description: str
    absorbing_phases: Tuple[str, ...]
    weak_phases: Tuple[str, ...]
    rows: Tuple[Tuple[str, str, str], ...]
