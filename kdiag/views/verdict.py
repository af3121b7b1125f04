"""The verdict: predict against the best drop-in fix, judged, and what leaving Keras would add.

Advice comes in three kinds (kdiag.datamodel.strategies): *drop-in fixes* (the same process and the
same model object, one call changed: predict_on_batch, tf.function, a concrete function, XLA),
*runtime changes* (leaving Keras: SavedModel serving, TFLite, C++) and *tuning* (threads, batch
size). The verdict names the best drop-in fix with matching outputs; the `predict-overhead`
finding recommends the same one, under the same thresholds (`FIX_MIN_RATIO`, `FIX_MIN_GAP_S`), so
the verdict line, the report headlines, report.json's `verdict`, repro.py and finding 1 can never
name different paths. A runtime change is stated as what it adds on top of the fix.

Every comparison here goes through `facts.judge`: below MIN_CALLS_FOR_VERDICT calls a side, or
within the noise, the verdict says what is known and claims no ratio.

The classification that opens every report, from these facts:

- overhead-bound: the fix is judged faster than predict by FIX_MIN_RATIO or more *and* by at least
  OVERHEAD_BOUND_RATIO (2x): more than half of predict's time is predict's own work, not the model's;
- compute-bound: predict and the fix were judged, and predict's own work is at most half its time
  (within the noise, or a smaller gain): the model's computation dominates;
- inconclusive: predict or every drop-in fix unmeasured, outputs unchecked, or too few calls.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Optional, Sequence

from kdiag.datamodel.report import Report, StrategyResult
from kdiag.datamodel.strategies import BY_NAME, DROP_IN_FIXES, PREDICT, RUNTIME_CHANGES
from kdiag.views.facts import MIN_CALLS_FOR_VERDICT, Judgement, fastest_usable, judge, median, usable

#: predict's median / the fix's must reach this, beyond the noise, for the fix to be recommended.
FIX_MIN_RATIO = 1.2
#: And predict must take at least this many seconds more per call: a gain below it is not worth a change.
FIX_MIN_GAP_S = 1e-3
#: From this ratio up, more than half of predict's time is its own work: overhead-bound.
OVERHEAD_BOUND_RATIO = 2.0
#: A runtime change is stated as a gain only when this much faster than the fix, beyond the noise.
RUNTIME_MIN_RATIO = 1.1

OVERHEAD_BOUND = "overhead-bound"
COMPUTE_BOUND = "compute-bound"
INCONCLUSIVE = "inconclusive"


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the report answers first: predict against the best drop-in fix, and what leaving Keras adds."""

    predict: Optional[StrategyResult]  # measured, matching (it is the reference)
    fix: Optional[StrategyResult]  # the fastest drop-in fix with matching outputs (a candidate)
    judged: Optional[Judgement]  # predict (slow) against the fix (fast); None unless both are usable
    runtime: Optional[StrategyResult]  # the fastest runtime change with matching outputs
    runtime_judged: Optional[Judgement]  # the slower of fix (or predict) and runtime against the faster
    classification: str
    rerun: str  # "rerun with --time-limit 150" when a comparison lacks calls; "" otherwise

    @property
    def recommends(self) -> bool:
        """The fix is judged faster than predict, beyond the noise, by enough to act on."""
        j = self.judged
        return (j is not None and j.beyond_noise and j.slow is self.predict and j.ratio >= FIX_MIN_RATIO
                and j.gap_s >= FIX_MIN_GAP_S)

    @property
    def speedup(self) -> Optional[float]:
        """predict's median / the fix's, when the fix is recommended."""
        return self.judged.ratio if self.recommends else None

    @property
    def runtime_gain(self) -> Optional[float]:
        """How much faster the runtime change is than the path the user would otherwise take (the fix
        when it is recommended, else predict), when judged so by RUNTIME_MIN_RATIO or more."""
        j = self.runtime_judged
        if j is None or not j.beyond_noise or j.fast is not self.runtime or j.ratio < RUNTIME_MIN_RATIO:
            return None
        return j.ratio

    @property
    def baseline(self) -> Optional[StrategyResult]:
        """What the user runs after taking the advice: the fix when recommended, else predict."""
        return self.fix if self.recommends else self.predict


def verdict(report: Report) -> Verdict:
    """The report's verdict (see the module's docstring)."""
    predict = usable(report, PREDICT.name)
    # The fastest drop-in fix timed often enough to be judged; only when none was, the fastest at all
    # (and then no verdict): a fix on two calls must not hide one that can be judged.
    candidates = [r for r in (usable(report, name) for name in DROP_IN_FIXES) if r is not None]
    judged_enough = [r for r in candidates if r.measurement.count >= MIN_CALLS_FOR_VERDICT]
    fix = min(judged_enough or candidates, key=median) if candidates else None
    judged = judge(*_ordered(predict, fix)) if predict is not None and fix is not None else None
    runtime = fastest_usable(report, RUNTIME_CHANGES)
    partial = Verdict(predict, fix, judged, runtime, None, INCONCLUSIVE, "")
    base = partial.baseline
    runtime_judged = judge(*_ordered(base, runtime)) if base is not None and runtime is not None else None
    rerun = rerun_hint(report, [judged.slow, judged.fast]) if judged is not None and not judged.enough_calls else ""
    return dataclasses.replace(partial, runtime_judged=runtime_judged, classification=_classify(partial),
                               rerun=rerun)


def _ordered(a: StrategyResult, b: StrategyResult):
    """(slower, faster): judge() takes the slower first, so that its ratio is 1 or more."""
    return (a, b) if median(a) >= median(b) else (b, a)


def _classify(v: Verdict) -> str:
    if v.judged is None or not v.judged.enough_calls:
        return INCONCLUSIVE
    if v.recommends and v.judged.ratio >= OVERHEAD_BOUND_RATIO:
        return OVERHEAD_BOUND
    return COMPUTE_BOUND


def overhead_share(v: Verdict) -> Optional[float]:
    """The share of predict's median that the fix does without: 1 - fix / predict (judged only)."""
    if v.judged is None or not v.judged.enough_calls or v.judged.slow is not v.predict:
        return None
    return 1.0 - median(v.fix) / median(v.predict)


def rerun_hint(report: Report, short: Sequence[StrategyResult]) -> str:
    """The option that would give `short` (strategies timed fewer than MIN_CALLS_FOR_VERDICT times) their
    calls: "rerun with --time-limit 150" when the run had a time limit, else "--max-wall 12" (the
    per-strategy wall cap stopped them), else "--min-calls 5". An estimate, rounded up."""
    few = [r for r in short if r.measurement is not None and r.measurement.count < MIN_CALLS_FOR_VERDICT]
    if not few:
        return ""
    settings = report.settings
    if settings.min_calls < MIN_CALLS_FOR_VERDICT:
        return f"rerun with --min-calls {MIN_CALLS_FOR_VERDICT}"
    # Each short strategy needs its missing calls, interleaved with the others: their sum, twice over
    # for the profiling pass and the steps after timing that scale with a call's cost.
    missing_s = math.fsum((MIN_CALLS_FOR_VERDICT - r.measurement.count) * median(r) for r in few)
    if settings.time_limit_s:
        spent = max(settings.elapsed_s or 0.0, settings.time_limit_s)
        return f"rerun with --time-limit {_round_up(spent + 2 * missing_s, 10):.0f}"
    slowest = max(median(r) for r in few)
    return f"rerun with --max-wall {_round_up(1.5 * MIN_CALLS_FOR_VERDICT * slowest, 5):.0f}"


def _round_up(value: float, step: int) -> float:
    return math.ceil(value / step) * step


def leaving_keras(result: StrategyResult) -> str:
    """"needs conversion": what a runtime change takes, from the strategy's identity."""
    identity = BY_NAME.get(result.name)
    return identity.leaving_keras if identity is not None and identity.leaving_keras else "leaves Keras"


def as_dict(report: Report) -> Dict[str, Any]:
    """The verdict as report.json's top-level `verdict` object (derived: never read back)."""
    v = verdict(report)

    def strategy(result: Optional[StrategyResult]) -> Optional[Dict[str, Any]]:
        if result is None:
            return None
        return {"strategy": result.name, "median_s": median(result), "count": result.measurement.count}

    return {
        "classification": v.classification,
        "predict": strategy(v.predict),
        "fix": strategy(v.fix),
        "fix_recommended": v.recommends,
        "fix_speedup": v.speedup,
        "judged": v.judged is not None and v.judged.enough_calls,
        "beyond_noise": v.judged is not None and v.judged.beyond_noise,
        "runtime": strategy(v.runtime),
        "runtime_gain": v.runtime_gain,
        "runtime_needs": leaving_keras(v.runtime) if v.runtime is not None else None,
        "rerun": v.rerun or None,
    }


def repro_unavailable_reason(report: Report) -> Optional[str]:
    """Why repro.py has nothing to reproduce (the verdict's drop-in fix against predict), or None."""
    if not report.model.keras_model:
        return "the model is a plain SavedModel: it has no Keras predict to compare with"
    if usable(report, PREDICT.name) is None:
        return "kdiag could not measure predict on this model, so there is no headline to reproduce"
    if verdict(report).fix is None:
        return "no drop-in fix was measured with outputs matching predict's"
    return None


__all__ = ["Verdict", "verdict", "as_dict", "repro_unavailable_reason", "rerun_hint", "overhead_share", "leaving_keras",
           "FIX_MIN_RATIO", "FIX_MIN_GAP_S", "OVERHEAD_BOUND_RATIO", "RUNTIME_MIN_RATIO", "OVERHEAD_BOUND",
           "COMPUTE_BOUND", "INCONCLUSIVE"]
