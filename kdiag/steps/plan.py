"""The plan: what the report must answer, in that order, and what each part of it may cost.

1. Load and inputs; predict and predict (compiled) timed together to a verdict (QUESTION): the
   user's own path and the compile() question.
2. Both profiled, a cold call and at least MIN_PROFILE_CALLS warm ones each (kdiag.steps.profile),
   so that the phases and the compile() verdict exist on every model that fits.
3. The cheapest likely-best direct paths, predict_on_batch and the concrete function, timed to a
   verdict (DIRECT): nothing to export or convert.
4. The other strategies, cheapest preparation first and costliest last (eager, tf.function, XLA,
   the SavedModel export, the TFLite conversion; the C++ floor after them), each started only if
   its estimated start and --min-calls calls fit in what is left (OTHERS).
5. The steps beyond one batch, with what is left (kdiag.steps.beyond).

Interleaving holds within a group: the strategies timed together share the machine's drift. The
groups are timed at different moments, so each later group times predict again beside its own
strategies, one call a round (the anchor), when that costs no more than the group itself. The
first group's predict stays the one the report shows, so the compile() verdict compares calls
timed together; the anchor's median against it is the drift between the two moments, and a drift
beyond the noise gets a note, since the ratios of predict against that group are off by as much.
Pooling the anchor's calls into predict's would have hidden the drift in predict's spread and
mixed moments into the compile() verdict.

The estimates here decide only what is started and what is said up front; what runs is measured.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Optional, Sequence, Tuple

from kdiag.datamodel import strategies as ids
from kdiag.datamodel.config import RunConfig
from kdiag.format import duration

#: Warm calls each profile gets at least, when it fits: two, so that one odd call does not make the phases.
MIN_PROFILE_CALLS = 2


@dataclasses.dataclass(frozen=True)
class TimingGroup:
    """Strategies timed together, interleaved, at one moment of the run."""

    label: str  # "predict and compile()": what the progress line and the notes call it
    keys: Tuple[str, ...]  # --strategies keys, in the order they are prepared
    gated: bool = False  # each one started only if its estimated start and --min-calls calls fit
    anchored: bool = False  # predict re-timed beside it (when that fits)


QUESTION = TimingGroup("predict before and after compile()", (ids.PREDICT.key, ids.PREDICT_COMPILED.key))
DIRECT = TimingGroup("the direct paths", (ids.PREDICT_ON_BATCH.key, ids.CONCRETE.key), anchored=True)
OTHERS = TimingGroup("the other strategies", (ids.EAGER.key, ids.TF_FUNCTION.key, ids.XLA.key, ids.SAVEDMODEL.key,
                                              ids.TFLITE.key), gated=True, anchored=True)
GROUPS = (QUESTION, DIRECT, OTHERS)


def selected_keys(config: RunConfig) -> List[str]:
    """The strategies to time: those asked for (once each), else all of them."""
    return list(dict.fromkeys(config.strategies)) if config.strategies else [s.key for s in ids.PYTHON_STRATEGIES]


def groups(config: RunConfig) -> List[TimingGroup]:
    """The groups with the selected strategies in them, in the plan's order; empty ones left out."""
    chosen = set(selected_keys(config))
    out = []
    for group in GROUPS:
        keys = tuple(k for k in group.keys if k in chosen)
        if keys:
            out.append(dataclasses.replace(group, keys=keys))
    return out


def timing_steps(config: RunConfig) -> int:
    """Progress steps of the timing groups: one per strategy prepared, one per group timed."""
    return sum(len(g.keys) + 1 for g in groups(config))


# --- estimates ------------------------------------------------------------------------------------
# Rough costs, in units of what this run has measured, from the examples, ResNet50 and the
# Conv1D+LSTM(512) model on our 2-core machine: a strategy's preparation and first call in "traces"
# (tracing the model once and running it: trace_s), and its calls against the fastest
# direct path's. model(x) eager ran 2.8-5.4x slower than predict_on_batch there (the more, the busier the
# machine); the SavedModel export took 1.5 traces, the TFLite export and conversion 2.5 (twice the
# SavedModel export, when measured).
PREPARE_TRACES = {ids.SAVEDMODEL.key: 1.5, ids.TFLITE.key: 2.5, ids.XLA.key: 1.0}
FIRST_CALL_TRACES = {ids.TF_FUNCTION.key: 1.0, ids.XLA.key: 2.0, ids.SAVEDMODEL.key: 1.0}
CALL_FACTOR = {ids.EAGER.key: 4.0}
#: A gated strategy starts only if this many times its estimate fits: the strategies of a group are
#: timed in turns, so one that runs over its estimate leaves the others short of --min-calls.
START_MARGIN = 1.5
#: What any preparation that writes files costs at least (an export: a second or so here).
WRITE_FLOOR_S = 0.5


@dataclasses.dataclass(frozen=True)
class Known:
    """What the run has measured so far that the estimates use."""

    medians: Dict[str, float]  # by key: measured medians
    first_calls: Dict[str, float]  # by key: measured first calls
    prepared_s: Dict[str, float]  # by key: measured preparation times
    min_calls: int


def call_estimate_s(known: Known, key: str) -> Optional[float]:
    """A strategy's per-call time: its own median, else the fastest direct path's (or predict's) times a factor."""
    if key in known.medians:
        return known.medians[key]
    base = [known.medians[k] for k in (ids.PREDICT_ON_BATCH.key, ids.CONCRETE.key) if k in known.medians]
    base = base or [known.medians[k] for k in (ids.PREDICT.key,) if k in known.medians]
    return min(base) * CALL_FACTOR.get(key, 1.0) if base else None


def start_estimate_s(known: Known, key: str, prepared: bool = True) -> Optional[float]:
    """A strategy's preparation (unless `prepared` is False), first call and --min-calls calls,
    estimated; None with nothing to go on."""
    call = call_estimate_s(known, key)
    trace = trace_s(known)
    if call is None or trace is None:
        return None
    prepare = known.prepared_s.get(key) if prepared else 0.0
    if prepare is None:
        prepare = PREPARE_TRACES.get(key, 0.0) * trace
        if key == ids.TFLITE.key and ids.SAVEDMODEL.key in known.prepared_s:
            prepare = 2 * known.prepared_s[ids.SAVEDMODEL.key]  # another export, then the conversion
        if key in (ids.SAVEDMODEL.key, ids.TFLITE.key):
            prepare = max(prepare, WRITE_FLOOR_S)
    first = known.first_calls.get(key, call + FIRST_CALL_TRACES.get(key, 0.0) * trace)
    return prepare + first + known.min_calls * call


def trace_s(known: Known) -> Optional[float]:
    """Tracing the model once and calling it: the concrete function's preparation (it traces there) and
    first call when they were measured, else predict's first call (which traces the model and more)."""
    if ids.CONCRETE.key in known.first_calls:
        return known.prepared_s.get(ids.CONCRETE.key, 0.0) + known.first_calls[ids.CONCRETE.key]
    return known.first_calls.get(ids.PREDICT.key)


def profiled_call_s(call_s: float, cold: bool = False) -> float:
    """A call under cProfile: it inflates Python, not kernels. Measured here: 1.2-1.7x on the examples'
    Python-heavy predict calls, and 15-70 ms added to a predict call whatever the model (0.86-1.16x
    on the Conv1D+LSTM(512) model's 0.5 s calls). A cold call traces: more Python."""
    return call_s + min(call_s, 1.0 if cold else 0.1)


@dataclasses.dataclass(frozen=True)
class AnswerCost:
    """What the verdicts of steps 1-3 need, estimated from predict's first two calls."""

    call_s: float  # one warm predict call
    needs_s: float  # from the start of the run to the verdicts, the report included
    limit_s: float

    @property
    def suggested_limit_s(self) -> float:
        """A --time-limit that leaves a fifth to spare, rounded up to tens."""
        return math.ceil(self.needs_s * 1.2 / 10) * 10

    def line(self, name: str = ids.PREDICT.name) -> str:
        return (f"one {name} call takes ~{duration(self.call_s)}: a judged answer needs ~{self.needs_s:.0f} s; the "
                f"limit is {self.limit_s:g} s (--time-limit {self.suggested_limit_s:.0f} to get it)")


def answer_cost(config: RunConfig, elapsed_s: float, reserve_s: float, instance_s: float, first_s: float,
                second_s: float) -> AnswerCost:
    """The run's elapsed time plus what steps 1-3 still need at --min-calls, from predict's first (cold)
    and second calls and what loading a fresh instance takes (`instance_s`): predict's timed calls,
    predict (compiled)'s instance, first call and timed calls,
    the profiles (a fresh instance, a cold call and MIN_PROFILE_CALLS warm ones each), each direct path's
    first call and timed calls (taken as predict's: an upper bound, as they skip its pipeline), the report."""
    keys = set(selected_keys(config))
    n = config.min_calls
    needs = n * second_s
    if ids.PREDICT_COMPILED.key in keys:
        needs += instance_s + first_s + n * second_s
    if config.profile:
        passes = sum(k in keys for k in (ids.PREDICT.key, ids.PREDICT_COMPILED.key))
        needs += passes * (instance_s + profiled_call_s(first_s, cold=True)
                           + MIN_PROFILE_CALLS * profiled_call_s(second_s))
    needs += sum(first_s + n * second_s for k in DIRECT.keys if k in keys)
    return AnswerCost(second_s, elapsed_s + needs + reserve_s, config.time_limit_s)


def direct_minimum_s(config: RunConfig, known: Known) -> float:
    """What step 3 needs at --min-calls: each direct path's first call and timed calls, estimated."""
    keys = set(selected_keys(config))
    total = 0.0
    for key in DIRECT.keys:
        if key in keys:
            call = call_estimate_s(known, key) or 0.0
            total += known.first_calls.get(ids.PREDICT.key, call) + config.min_calls * call
    return total


def anchor_calls(group: TimingGroup, known: Known, group_estimate_s: float) -> int:
    """Calls of predict beside `group` (its anchor): --min-calls (5 at least), when they cost no more
    than the group's own timing at --min-calls (first calls included, preparation not); 0 otherwise
    (the group is then timed alone, and the report says so). On a slow model, where ratios are modest
    and a drift could turn them, that is most groups; on a fast one, where predict is 100x its direct
    paths, it is none."""
    median = known.medians.get(ids.PREDICT.key)
    if not group.anchored or median is None:
        return 0
    calls = max(known.min_calls, 5)
    return calls if calls * median <= group_estimate_s else 0


def drift_note(label: str, first: Sequence[float], again: Sequence[float], seconds_apart: float) -> str:
    """A note when predict's median beside `label` differs from its first beyond the noise; "" otherwise."""
    from kdiag.datamodel.measurement import summary

    a, b = summary(first), summary(again)
    if not a["count"] or not b["count"] or a["median_s"] <= 0:
        return ""
    gap = b["median_s"] - a["median_s"]
    if abs(gap) <= a["iqr_s"] + b["iqr_s"]:
        return ""
    return (f"The machine drifted: predict's median was {duration(a['median_s'])} when timed with predict "
            f"(compiled), and {duration(b['median_s'])} ({gap / a['median_s']:+.0%}) when timed again beside "
            f"{label}, ~{seconds_apart:.0f} s later; ratios of predict against {label} may be off by as much.")
