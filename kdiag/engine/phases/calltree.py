"""The call tree of a profile, pruned to its largest paths, each node coloured by phase.

Built for report.html, which draws it without reading the .prof file: the tree goes
into the Report as `CallNode`s, so every renderer stays free of pstats.

cProfile keeps caller->callee edges, not stacks. A root (a function called from outside
the profile) gets the part of its cumulative time that its recorded callers do not cover; a callee under a node gets the edge's cumulative
time scaled by the node's share of its function's cumulative time. That is exact for a
function called from one place and an estimate (gprof's, snakeviz's) for one called from
several. Recursion is not unrolled: a callee already on the path stays in its caller's
total. The largest nodes are expanded first, until `max_nodes`; nodes under `min_share`
of the total are left out, and so are their subtrees.

Phases follow the path: a landmark moves the phase arriving from above as the rule set
says (innermost wins, tracing absorbs, eager dispatch only takes over "other Python"),
which is `attribute`'s rule applied to one stack instead of a mix over all callers.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import pstats
from typing import Dict, List, Optional, Tuple

from kdiag.datamodel.profile import OTHER, PHASES, CallNode
from kdiag.engine.phases.attribution import landmark_moves
from kdiag.engine.phases.matching import Matcher
from kdiag.engine.phases.qualnames import display_name
from kdiag.engine.phases.rules import PHASE_INDEX, RuleSet

Key = Tuple[str, int, str]

#: What the root of every tree is called: it stands for all the profiled calls together.
ROOT_NAME = "all profiled calls"


@dataclasses.dataclass
class _Building:
    key: Optional[Key]
    phase: int
    total_s: float
    own_s: float
    children: List["_Building"] = dataclasses.field(default_factory=list)


def call_tree(stats: pstats.Stats, rules: RuleSet, max_nodes: int = 300, min_share: float = 0.002,
              max_depth: int = 80) -> Optional[CallNode]:
    """The pruned call tree of `stats`; None for an empty profile."""
    raw = stats.stats  # {key: (cc, nc, tt, ct, {caller: (nc, cc, tt, ct)})}
    if not raw:
        return None
    callees: Dict[Key, Dict[Key, float]] = {}
    roots: List[Tuple[Key, float]] = []
    for key, (_cc, _nc, _tt, ct, callers) in raw.items():
        from_callers = 0.0
        for caller, edge in callers.items():
            if caller != key:  # direct recursion stays in the function's own figures
                edge_ct = float(edge[3]) if isinstance(edge, tuple) else 0.0
                callees.setdefault(caller, {})[key] = edge_ct
                from_callers += edge_ct
        # cProfile records no caller for a call made from outside the profile (the profiled
        # callable itself): what the recorded callers do not account for was called from there.
        root_s = float(ct) - from_callers
        if root_s > 1e-9 * float(ct):
            roots.append((key, root_s))
    total = sum(float(entry[2]) for entry in raw.values())
    if not total > 0.0:
        return None
    matcher = Matcher(rules)
    moves = landmark_moves(raw.keys(), matcher, rules)
    floor = min_share * total

    root = _Building(None, PHASE_INDEX[OTHER], total, 0.0)
    order = itertools.count()  # ties in the heap go by insertion, never by comparing nodes
    pending: list = []  # (-time, order, key, time, parent, phase above, path, depth)
    for key, root_s in roots:
        if root_s >= floor:
            heapq.heappush(pending, (-root_s, next(order), key, root_s, root, root.phase, (), 1))
    nodes = 1
    while pending and nodes < max_nodes:
        _, _, key, time_s, parent, phase_above, path, depth = heapq.heappop(pending)
        _cc, _nc, tt, ct, _callers = raw[key]
        scale = min(1.0, time_s / float(ct)) if ct else 0.0
        move = moves.get(key)
        phase = move[phase_above] if move is not None else phase_above
        node = _Building(key, phase, time_s, float(tt) * scale)
        parent.children.append(node)
        nodes += 1
        if depth >= max_depth:
            continue
        on_path = path + (key,)
        for callee, edge_ct in callees.get(key, {}).items():
            child_s = edge_ct * scale
            if child_s >= floor and callee not in on_path:
                heapq.heappush(pending, (-child_s, next(order), callee, child_s, node, phase, on_path, depth + 1))
    shown = sum(child.total_s for child in root.children)
    # A root's cumulative time can exceed the sum of own times by cProfile's rounding of
    # re-entered frames; the root is never smaller than what it holds.
    root.total_s = max(total, shown)
    root.own_s = max(0.0, total - shown)
    return _freeze(root, matcher)


def _freeze(node: _Building, matcher: Matcher) -> CallNode:
    if node.key is None:
        function, file, line = ROOT_NAME, "", 0
    else:
        function = display_name(node.key)
        file = node.key[0] if node.key[0] == "~" else matcher.rel(node.key[0])
        line = int(node.key[1])
    children = sorted(node.children, key=lambda c: -c.total_s)
    return CallNode(function, file, line, PHASES[node.phase], node.total_s, node.own_s,
                    [_freeze(child, matcher) for child in children])
