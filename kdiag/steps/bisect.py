"""`kdiag bisect MODEL --good 2.12 --bad 2.21`: the first release from which predict is slow.

The releases are every final release the package index serves from good to bad (inclusive,
kdiag.versions.index). The search probes bad first: when it is not slower than good beyond the
noise by at least the threshold, the series is flat and nothing more is built. Otherwise it halves
the range between the last good and the first slow release until they are neighbours, so it builds
at most ceil(log2(n)) + 2 environments for n releases (good, bad, and one per halving). It assumes
that a release after a slow one is slow too, as any bisect does; each probe is printed as it ends,
so a series that does not behave so shows.

Each probe measures the strategy (predict unless --strategy says another) under the good release
and the probed one in alternating rounds of timing runs (kdiag.steps.rounds), every run on the
same input batch, pooled per release, and judged by the one noise rule (`views.judge`): slow means
beyond the noise and at least `threshold` times the good release's median. A probe's rounds get
twice the time limit (one run of each release), from its own Budget.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, List, Optional, Sequence, Tuple

from kdiag import views
from kdiag.datamodel.config import RunConfig
from kdiag.datamodel.report import StrategyResult
from kdiag.datamodel.strategies import BY_KEY
from kdiag.datamodel.versions import BisectProbe, BisectRequest, BisectResult
from kdiag.errors import KdiagError
from kdiag.signals import stop_cause
from kdiag.steps.budget import Budget
from kdiag.steps.rounds import (MIN_ROUNDS, ChildRunner, Column, Rounds, cannot_read, check_model, folder_name,
                                plan_more, quoted, workspace)
from kdiag.steps.state import Progress, StepCounter
from kdiag.versions.children import Interpreter
from kdiag.versions.pooling import pool_strategy
from kdiag.views.versions import probe_verdict

#: probe(release index) -> its BisectProbe; `slow` None stops the search (the probe could not tell).
Probe = Callable[[int], BisectProbe]


class BisectInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a bisect; `result` holds the probes that had finished."""

    def __init__(self, result: BisectResult):
        super().__init__("interrupted")
        self.result = result


def search(releases: Sequence[str], probe: Probe, on_probe: Callable[[BisectProbe], None] = lambda p: None
           ) -> Tuple[List[BisectProbe], Optional[str], Optional[str], bool]:
    """Binary search for the first slow release; `releases[0]` is good by definition.

    Returns (the probes in order, the first slow release, the last good one, whether the search
    finished). A flat series gives (probes, None, None, True): the last release is not slow.
    """
    probes: List[BisectProbe] = []

    def ask(index: int) -> BisectProbe:
        outcome = probe(index)
        probes.append(outcome)
        on_probe(outcome)
        return outcome

    last = ask(len(releases) - 1)
    if last.slow is None:
        return probes, None, None, False
    if not last.slow:
        return probes, None, None, True
    good, slow = 0, len(releases) - 1
    while slow - good > 1:
        middle = (good + slow) // 2
        outcome = ask(middle)
        if outcome.slow is None:
            return probes, releases[slow], releases[good], False
        good, slow = (good, middle) if outcome.slow else (middle, slow)
    return probes, releases[slow], releases[good], True


def run(config: RunConfig, request: BisectRequest, *, provider=None, progress: Optional[Progress] = None,
        on_probe: Callable[[BisectResult, BisectProbe], None] = lambda result, probe: None,
        run_child: Optional[ChildRunner] = None, clock=time.perf_counter) -> BisectResult:
    """Find the first release from `request.good` to `request.bad` where `request.strategy` (a key) is slow;
    see the module doc. `on_probe(result so far, probe)` is called as each probe ends; Ctrl-C raises
    BisectInterrupted holding the probes that finished.
    """
    config.check_child_model("kdiag bisect")
    if provider is None:
        from kdiag.versions.provider import CachedReleases

        provider = CachedReleases()
    good, bad, strategy, threshold = request.good, request.bad, request.strategy, request.threshold
    name = BY_KEY[strategy].name
    # Timing runs of the one strategy: profiles and the steps beyond one batch answer other questions.
    config = dataclasses.replace(config, strategies=(strategy,), profile=False, profile_strategies=(),
                                 sweeps=False, memory_loops=False, ops=False, samples=None, tf_versions=None)
    steps = StepCounter(progress, 3, Budget(0, clock))  # the probes' own Budgets hold the time limit
    steps.next("check", "the model file, before any child process starts")
    check_model(config)
    steps.next("resolve", f"the releases from {good} to {bad} the package index serves")
    targets = provider.releases_between(good, bad)
    releases = [t.version for t in targets]
    # The most it may take: an environment and two rounds of two runs per probe, after the good release's.
    steps.total = steps.step + 1 + (math.ceil(math.log2(max(2, len(releases)))) + 1) * (1 + 2 * MIN_ROUNDS)
    steps.next("environment", f"TensorFlow {releases[0]} (good)")
    reference = provider.prepare(targets[0], lambda text: steps.update(f"TensorFlow {releases[0]}: {text}"))
    refused = cannot_read(config, reference)
    if refused:
        raise KdiagError(f"--good {good}: {refused}", "bisect between releases that can read the file")
    result = BisectResult(config.model_label, name, threshold, releases[0], releases[-1], releases, [],
                          command=config.command, package=targets[0].package)
    probes: List[BisectProbe] = []

    def ended(outcome: BisectProbe) -> None:
        probes.append(outcome)
        on_probe(dataclasses.replace(result, probes=list(probes)), outcome)

    with workspace(None) as (folder, private):
        rounds = Rounds(config, steps, folder, private, run_child)
        prober = _Prober(config, targets, reference, provider, rounds, name, threshold, clock)
        try:
            probes, first_slow, last_good, finished = search(releases, prober.probe, ended)
        except KeyboardInterrupt:
            raise BisectInterrupted(dataclasses.replace(
                result, probes=probes, incomplete=True,
                notes=[f"Interrupted by {stop_cause()}: the probes above had finished."])) from None
    return dataclasses.replace(result, probes=probes, first_slow=first_slow if finished else None,
                               last_good=last_good if finished else None, incomplete=not finished,
                               notes=[] if finished else _stopped_notes(probes[-1], first_slow, last_good))


def _stopped_notes(stuck: BisectProbe, first_slow: Optional[str], last_good: Optional[str]) -> List[str]:
    """Why the search stopped at a probe it could not judge, and what would let it go on."""
    notes = [f"The search stopped at {stuck.tensorflow}, which it could not judge: {stuck.reason or stuck.verdict}."]
    if first_slow is not None:
        notes.append(f"The first slow release lies after {last_good} and at or before {first_slow}.")
    if stuck.probed is not None and stuck.good is not None and min(stuck.probed.count, stuck.good.count) < 5:
        notes.append("Rerun with a larger --budget or --min-calls: a verdict needs at least 5 calls a side.")
    elif stuck.probed is not None:
        notes.append("The noise band is the spread of the calls themselves, which more calls do not narrow: rerun "
                     "on a quieter machine, or bisect a path with less spread (--strategy).")
    return notes


@dataclasses.dataclass
class _Prober:
    """Probes one release against the good one, in alternating timing rounds; judged."""

    config: RunConfig
    targets: Sequence
    reference: Interpreter
    provider: object
    rounds: Rounds
    name: str
    threshold: float
    clock: Callable[[], float]

    def probe(self, index: int) -> BisectProbe:
        target, steps = self.targets[index], self.rounds.steps
        steps.next("environment", f"TensorFlow {target.version}")
        try:
            probed = self.provider.prepare(target, lambda text: steps.update(f"TensorFlow {target.version}: {text}"))
        except KdiagError as failed:
            return BisectProbe(target.version, None, None, None, "not measured", reason=quoted(failed.message))
        columns = [Column(self.reference, folder_name(self.reference)), Column(probed, folder_name(probed))]
        columns[1].reason = cannot_read(self.config, probed)
        if columns[1].reason:
            return BisectProbe(target.version, None, None, None, "not measured", 0, probed.environment,
                               columns[1].reason)
        budget = Budget(2 * self.config.time_limit_s, self.clock, reserve_s=0.0)  # one run of each release
        done = 0
        while all(c.runnable for c in columns) and plan_more(done, columns, budget):
            done += 1
            for column in columns:
                self.rounds.run(column, done, max(MIN_ROUNDS, done), full=False)
        failed = next((c for c in columns if not c.runnable), None)
        if failed is not None:
            return BisectProbe(target.version, None, None, None, "not measured", done, probed.environment,
                               f"{failed.label}: {failed.reason}")
        good, probed_result = (pool_strategy([r.strategy(self.name) for r in c.reports]) for c in columns)
        slow, verdict = judge_probe(good, probed_result, self.threshold)
        return BisectProbe(target.version, good.measurement, probed_result.measurement, slow, verdict, done,
                           probed.environment)


def judge_probe(good: Optional[StrategyResult], probed: Optional[StrategyResult], threshold: float
                ) -> Tuple[Optional[bool], str]:
    """(slow, verdict). Slow: slower than good beyond the noise by at least `threshold`. Not slow: faster
    beyond the noise, or below the threshold. None, cannot tell: too few calls, or at least `threshold`
    slower but within the noise (calling that "not slow" would send the search the wrong way)."""
    if views.median(good) is None or views.median(probed) is None:
        missing = probed if views.median(probed) is None else good
        why = missing.reason if missing is not None and missing.reason else "no timed calls"
        return None, f"not measured: {quoted(why)}"
    judged = views.judge(probed, good)
    verdict = probe_verdict(judged, threshold)
    if not judged.enough_calls or (not judged.beyond_noise and judged.ratio >= threshold):
        return None, verdict
    return judged.beyond_noise and judged.ratio >= threshold, verdict
