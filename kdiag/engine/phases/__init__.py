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

from kdiag.engine.phases.attribution import PhaseBreakdown, PhaseShare, attribute
from kdiag.engine.phases.matching import relative_path
from kdiag.engine.phases.qualnames import display_name, qualname_at
from kdiag.engine.phases.rules import (KERAS3_TF, RULESETS, TF_2_0_TO_2_3, TF_KERAS_2, Landmark, RuleSet, get_rules,
                                       listing, rules_table, select_rules)
from kdiag.engine.phases.stale import stale_landmarks

__all__ = [
    "KERAS3_TF", "RULESETS", "TF_2_0_TO_2_3", "TF_KERAS_2", "Landmark", "PhaseBreakdown", "PhaseShare", "RuleSet",
    "attribute", "display_name", "get_rules", "listing", "qualname_at", "relative_path", "rules_table", "select_rules",
    "stale_landmarks",
]
