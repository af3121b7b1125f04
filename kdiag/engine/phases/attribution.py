"""gprof-style attribution of a profile's own time to phases over its caller edges."""

from __future__ import annotations

import dataclasses
import math
import pstats
from typing import Dict, List, Optional, Sequence, Tuple

from kdiag.datamodel.profile import OTHER, PHASES, TopFunction
from kdiag.engine.phases.matching import Matcher
from kdiag.engine.phases.qualnames import display_name
from kdiag.engine.phases.rules import PHASE_INDEX, RuleSet

OTHER_INDEX = PHASE_INDEX[OTHER]


@dataclasses.dataclass(frozen=True)
class PhaseShare:
    name: str
    seconds: float  # summed over all profiled calls
    share: float  # of the profiled total, 0..1


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


def landmark_moves(keys, matcher: Matcher, rules: RuleSet) -> Dict:
    """What each landmark among `keys` does to the phase arriving from above: a list that
    maps the index of the phase above to the index of the phase below it."""
    absorbing = frozenset(PHASE_INDEX[p] for p in rules.absorbing_phases)
    weak = frozenset(PHASE_INDEX[p] for p in rules.weak_phases)
    moves: Dict = {}
    for key in keys:
        lm = matcher.match(key)
        if lm is None:
            continue
        phase = PHASE_INDEX[lm.phase]
        moves[key] = [
            q if (q in absorbing or (phase in weak and q != OTHER_INDEX)) else phase
            for q in range(len(PHASES))
        ]
    return moves


def _edges(raw, keys):
    """({function: (edges into it from other callers, its recursive own time, its recursive total)},
    {caller: its callees}), from pstats' caller dictionaries."""
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
    return edges_of, callees_of


def attribute(stats: pstats.Stats, rules: RuleSet, calls: int = 1, top: int = 5) -> PhaseBreakdown:
    """Split the profiled time into phases by `rules` (see the module docstring).

    `calls` is how many calls of the profiled callable the profile holds (recorded in
    the result, nothing is divided by it); `top` how many functions to keep per phase
    in `top_functions`.
    """
    raw = stats.stats  # {key: (cc, nc, tt, ct, {caller: (nc, cc, tt, ct)})}
    keys = list(raw)
    matcher = Matcher(rules)
    n_phases = len(PHASES)
    origin = [0.0] * n_phases
    origin[OTHER_INDEX] = 1.0
    moves = landmark_moves(keys, matcher, rules)

    edges_of, callees_of = _edges(raw, keys)
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
        acc_own[OTHER_INDEX] += flow.own[-1]
        acc_down[OTHER_INDEX] += flow.down[-1]
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
