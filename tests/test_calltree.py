"""The call tree report.html draws: built from cProfile's edges, pruned, phases along each path.

The profiles here are hand-written pstats dictionaries, so every expected time is exact.
"""

from __future__ import annotations

import json

import pytest

from kdiag.datamodel.profile import INPUT, OTHER, TRACING, CallNode
from kdiag.datamodel.report import Report
from kdiag.engine.phases import Landmark, RuleSet
from kdiag.engine.phases.calltree import ROOT_NAME, call_tree

import factories as fx

PKG = "/src/synthetic_phases/"
RULES = RuleSet(
    name="synthetic", framework="tests", description="two landmark files",
    landmarks=(Landmark(INPUT, "synthetic_phases/loader.py", "*"),
               Landmark(TRACING, "synthetic_phases/tracer.py", "*")),
)

MAIN = (PKG + "app.py", 1, "main")
LOAD = (PKG + "loader.py", 10, "load")
TRACE = (PKG + "tracer.py", 5, "trace")
HELPER = (PKG + "helpers.py", 3, "helper")


class FakeStats:
    """What call_tree reads of pstats.Stats: {key: (cc, nc, tt, ct, {caller: (nc, cc, tt, ct)})}."""

    def __init__(self, stats):
        self.stats = stats


def shared_helper_profile() -> FakeStats:
    """main (own 1) calls load (own 1) and trace (own 1); both call helper (own 7 in all):
    4 s of it under load, 3 s under trace."""
    return FakeStats({
        MAIN: (1, 1, 1.0, 10.0, {}),
        LOAD: (1, 1, 1.0, 5.0, {MAIN: (1, 1, 1.0, 5.0)}),
        TRACE: (1, 1, 1.0, 4.0, {MAIN: (1, 1, 1.0, 4.0)}),
        HELPER: (2, 2, 7.0, 7.0, {LOAD: (1, 1, 4.0, 4.0), TRACE: (1, 1, 3.0, 3.0)}),
    })


def by_name(node: CallNode):
    return {child.function: child for child in node.children}


def test_tree_follows_the_edges_and_splits_a_shared_helper_by_caller():
    tree = call_tree(shared_helper_profile(), RULES)
    assert tree.function == ROOT_NAME and tree.total_s == pytest.approx(10.0)
    (main,) = tree.children
    assert (main.function, main.total_s, main.own_s, main.phase) == ("main", 10.0, 1.0, OTHER)
    assert [c.function for c in main.children] == ["load", "trace"]  # largest first
    load, trace = main.children
    assert (load.total_s, load.own_s, load.phase) == (5.0, 1.0, INPUT)
    assert (trace.total_s, trace.own_s, trace.phase) == (4.0, 1.0, TRACING)
    # The helper's own time follows the edge it was called through, and the phase of that path.
    (under_load,) = load.children
    (under_trace,) = trace.children
    assert (under_load.total_s, under_load.own_s, under_load.phase) == (pytest.approx(4.0), pytest.approx(4.0), INPUT)
    assert (under_trace.total_s, under_trace.own_s, under_trace.phase) == (pytest.approx(3.0), pytest.approx(3.0),
                                                                           TRACING)
    assert under_load.file.endswith("synthetic_phases/helpers.py") and under_load.line == 3


def test_tracing_absorbs_what_lies_below_it():
    stats = shared_helper_profile()
    # trace now calls load: a loader run while tracing is tracing cost, not input handling.
    stats.stats[LOAD] = (2, 2, 1.0, 6.0, {MAIN: (1, 1, 0.5, 5.0), TRACE: (1, 1, 0.5, 1.0)})
    stats.stats[TRACE] = (1, 1, 1.0, 4.0, {MAIN: (1, 1, 1.0, 4.0)})
    tree = call_tree(stats, RULES)
    trace = by_name(tree.children[0])["trace"]
    assert by_name(trace)["load"].phase == TRACING
    assert by_name(by_name(tree.children[0])["load"])["helper"].phase == INPUT


def test_a_cycle_is_not_unrolled():
    a, b = (PKG + "app.py", 20, "a"), (PKG + "app.py", 30, "b")
    stats = FakeStats({
        MAIN: (1, 1, 0.5, 3.5, {}),
        a: (2, 1, 1.0, 3.0, {MAIN: (1, 1, 0.5, 3.0), b: (1, 1, 0.5, 1.0)}),  # b calls a back
        b: (1, 1, 2.0, 2.5, {a: (1, 1, 2.0, 2.5)}),
    })
    tree = call_tree(stats, RULES)
    assert [c.function for c in tree.children] == ["main"]  # a and b are not roots: callers cover them
    (node_a,) = tree.children[0].children
    (node_b,) = node_a.children
    assert node_b.total_s == pytest.approx(2.5)
    assert node_b.children == []  # a is already on the path


def test_a_function_also_called_from_outside_the_profile_is_a_root_too():
    stats = shared_helper_profile()
    # helper was also called once directly by the profiled callable: 2 s its callers do not cover.
    stats.stats[HELPER] = (3, 3, 9.0, 9.0, {LOAD: (1, 1, 4.0, 4.0), TRACE: (1, 1, 3.0, 3.0)})
    tree = call_tree(stats, RULES)
    assert {c.function: c.total_s for c in tree.children} == {"main": 10.0, "helper": pytest.approx(2.0)}
    assert tree.total_s == pytest.approx(12.0)


def test_pruning_keeps_the_largest_nodes_and_leaves_out_small_ones():
    root_key = (PKG + "app.py", 1, "main")
    leaves = {(PKG + "app.py", 100 + i, f"leaf{i}"): float(i + 1) for i in range(50)}
    total_leaves = sum(leaves.values())
    stats = {root_key: (1, 1, 0.0, total_leaves, {})}
    for key, seconds in leaves.items():
        stats[key] = (1, 1, seconds, seconds, {root_key: (1, 1, seconds, seconds)})
    tree = call_tree(FakeStats(stats), RULES, max_nodes=12, min_share=0.0)
    kept = [c.function for c in tree.children[0].children]
    assert len(kept) == 10  # root + main + 10 leaves = 12 nodes
    assert kept == [f"leaf{i}" for i in range(49, 39, -1)]
    small = call_tree(FakeStats(stats), RULES, max_nodes=1000, min_share=0.02)
    assert all(c.total_s >= 0.02 * total_leaves for c in small.children[0].children)
    assert len(small.children[0].children) < 50


def test_an_empty_profile_has_no_tree():
    assert call_tree(FakeStats({}), RULES) is None


def test_the_tree_survives_the_json_round_trip():
    tree = call_tree(shared_helper_profile(), RULES)
    profile = fx.profile("predict", {INPUT: 1.0}, 60.0)
    import dataclasses

    report = fx.report(fx.typical_keras3(), [dataclasses.replace(profile, call_tree=tree)])
    back = Report.from_dict(json.loads(json.dumps(report.to_dict())))
    assert back.profiles[0].call_tree == tree
    # A report saved before the tree existed still loads.
    data = report.to_dict()
    del data["profiles"][0]["call_tree"]
    assert Report.from_dict(data).profiles[0].call_tree is None
