"""Every sentence that two outputs show, written once.

The terminal, report.md and report.html read these (through kdiag.views.sections, or directly for
the headline and the verdict line), so a change of wording reaches every output at once. Plain
text: each renderer escapes it for its own format.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Sequence

from kdiag import format as fmt
from kdiag.datamodel.beyond import CROSSOVER_WITHIN, GROWTH_CONFIDENCE, THROUGHPUT_GAIN
from kdiag.datamodel.measurement import NOISE_THRESHOLD
from kdiag.datamodel.profile import ProfileResult
from kdiag.datamodel.report import Finding, Report
from kdiag.datamodel.strategies import PREDICT
from kdiag.views import facts

INCOMPLETE = ("Incomplete run: kdiag stopped before it measured everything; the figures below are what it measured "
              "up to then.")
NO_FINDINGS = "kdiag found nothing to report from these measurements."
NO_STRATEGY = "No strategy was measured."
NEVER_RECOMMENDED = "A strategy whose outputs differ is never recommended."
NO_REFERENCE = "No reference ran, so no outputs were compared."
NOISE_MARK = f"~ marks a noisy measurement (IQR/median > {NOISE_THRESHOLD:.0%})."
SPEED_UP = "Speed-up = predict's median / this median."
PROFILES_NOT_KEPT = ("The .prof files were not kept (kdiag.inspect without out_dir): the phases above are all that "
                     "remains of the profiling pass.")
KERAS3_TRACES = ("Keras 3 `predict` traces its tf.data map functions on every call: those traces are predict's own "
                 "overhead, not a retracing of your model.")


@dataclasses.dataclass(frozen=True)
class Headline:
    """The fastest strategy with matching outputs, its time, and how it compares with predict."""

    best: str
    time: str  # "239 µs"
    versus: str  # "275x faster than predict (66 ms)", or "" when it is predict

    @property
    def text(self) -> str:
        return f"Fastest with matching outputs: {self.best}, {self.time} per call" + (
            f", {self.versus}." if self.versus else ".")


def headline(report: Report) -> Optional[Headline]:
    """The report's headline; None when no measured strategy has checked, matching outputs."""
    best = facts.fastest_matching(report)
    if best is None:
        return None
    predict = facts.timed(report, PREDICT.name)
    versus = ""
    if predict is not None and best is not predict:
        versus = (f"{fmt.ratio(facts.median(predict) / facts.median(best))} faster than predict "
                  f"({fmt.duration(facts.median(predict))})")
    return Headline(best.name, fmt.duration(facts.median(best)), versus)


NO_HEADLINE = "No measured strategy has outputs checked against a reference, so none is recommended."


def run_summary(report: Report) -> str:
    """How the run measured, in one sentence."""
    s = report.settings
    return (f"{len(facts.measured(report))} ways of calling the model timed, batch size {s.batch_size}, budget "
            f"{s.budget_s:g} s per strategy (at least {s.min_calls} calls), rounds interleaved across strategies.")


def verdict_line(report: Report, width: int = 80, saved: bool = False) -> str:
    """One line: predict's time, the fastest strategy with matching outputs, and the gain.

    The longest wording that fits `width` columns, e.g. `predict: 66 ms · best: concrete function
    239 µs (275x faster, outputs match) · see report.md`.
    """
    candidates = _verdict_candidates(report, "incomplete run · " if report.incomplete else "",
                                     " · see report.md" if saved else "")
    return next((c for c in candidates if len(c) <= width), candidates[-1])


def _verdict_candidates(report: Report, lead: str, tail: str) -> List[str]:
    predict = facts.timed(report, PREDICT.name)
    best = facts.fastest_matching(report)
    if best is None:
        said = ("no strategy was measured" if not facts.measured(report)
                else "no strategy has checked, matching outputs: nothing to recommend")
        before = f"predict: {fmt.duration(facts.median(predict))} · " if predict is not None else ""
        return [f"{lead}{before}{said}{tail}", f"{lead}{before}{said}", f"{lead}{said}"]
    if predict is None:
        head = f"best: {best.name} {fmt.duration(facts.median(best))}"
        return [f"{lead}{head} (outputs match; predict was not timed){tail}", f"{lead}{head} (outputs match)",
                f"{lead}{head}"]
    if best is predict:
        head = f"predict: {fmt.duration(facts.median(predict))} · best: predict"
        return [f"{lead}{head} (nothing faster has matching outputs){tail}", f"{lead}{head}{tail}", f"{lead}{head}"]
    speedup = fmt.ratio(facts.median(predict) / facts.median(best))
    time = f"predict: {fmt.duration(facts.median(predict))}"
    head = f"best: {best.name} {fmt.duration(facts.median(best))}"
    return [f"{lead}{time} · {head} ({speedup} faster, outputs match){tail}",
            f"{lead}{time} · {head} ({speedup} faster, outputs match)",
            f"{lead}{time} · {head} ({speedup} faster)",
            f"{lead}{head} ({speedup} faster than predict)",
            f"{lead}{head} ({speedup} faster)"]


def tolerance(report: Report) -> str:
    """How outputs were compared, or that they were not."""
    check = facts.reference_check(report)
    if check is None:
        return NO_REFERENCE
    return (f"Outputs are compared with {check.reference}'s on the same inputs: |diff| <= {check.atol:g} + "
            f"{check.rtol:g}·|reference| element-wise (max |diff| shown).")


def finding_meta(finding: Finding) -> str:
    """"measured speed-up 306x with concrete function (outputs match)"; "" when it recommends nothing."""
    if finding.measured_speedup is None or not finding.strategy:
        return ""
    match = " (outputs match)" if finding.outputs_match else ""
    return f"measured speed-up {fmt.ratio(finding.measured_speedup)} with {finding.strategy}{match}"


def phase_scaling(profiles: Sequence[ProfileResult], what: str) -> str:
    """How a phase's milliseconds were made from cProfile's shares and the unprofiled median."""
    effects = [f"{p.scenario}: {facts.inflation_text(p)}" for p in profiles if p.inflation]
    unscaled = [p.scenario for p in profiles if not p.unprofiled_median_s]
    text = (f"Phases {what}, from a separate cProfile pass. The ms per call are the profiled shares scaled to "
            "the unprofiled median from the timing pass, because cProfile changes the time"
            + (f" ({'; '.join(effects)})" if effects else "") + "; the shares are as profiled. A phase's noise is "
            "its share times each side's IQR, summed.")
    if unscaled:
        text += (f" No unprofiled median for {', '.join(unscaled)}: those ms are as profiled, "
                 "cProfile overhead included.")
    return text


def crossover(sweep) -> str:
    return f"**Crossover** (predict within {CROSSOVER_WITHIN:.0%} of the fastest loop): {facts.crossover_text(sweep)}."


def knee(sweep) -> str:
    """Where the batch-size sweep's samples/s stop growing, and why the doubling stopped."""
    found = sweep.knee()
    where = (f"On {sweep.strategy}, samples/s stop growing by more than {THROUGHPUT_GAIN:.0%} at batch {found:,}: "
             "the batch a server should collect." if found is not None else
             f"On {sweep.strategy}, samples/s were still growing at batch {sweep.points[-1][0]:,}, the largest "
             "measured.")
    return f"{where} The doubling stopped: {sweep.stopped_by}."


MEMORY_LOOPS = (f"The process's RSS sampled over a sustained loop of calls (after a warm-up); growth is the "
                f"least-squares slope with its {GROWTH_CONFIDENCE:.0%} band.")


def op_breakdown(ops) -> str:
    share = ops.execution_share
    parallel = " (ops ran on several threads at once)" if share is not None and share > 1 else ""
    return (f"Ops by self time over {ops.calls} traced calls ({ops.where} ops, idle excluded), from a TensorFlow "
            f"profiler trace converted by {ops.converter}. Graph execution was "
            f"{'—' if share is None else f'{share:.0%}'} of the traced calls' time{parallel}.")


def keras_sides(old: str, new: str) -> str:
    return (f"Median per call; each Keras timed the model in its own process, on the same inputs; ~ marks a noisy "
            f"measurement. The sections below are the {new} run's; report.json holds the {old} run in full "
            "(other_keras), and the run in a child process saved its own reports in keras-N/ of the run folder.")


def releases(reference: str, rounds: int) -> str:
    return (f"Median per call over every run of each release ({rounds} rounds, the releases taking turns; the same "
            f"options, time limit and input batch for each); ~ marks a noisy measurement. Every release is judged "
            f"against {reference} by the one noise rule: a ratio only beyond the noise and with at least "
            f"{facts.MIN_CALLS_FOR_VERDICT} timed calls a side. The sections below are the {reference} run's; report.json "
            "holds every release's run in full (tf_versions), and each release's first run saved its own reports "
            "in tf-VERSION/ of the run folder.")
