"""Every sentence that two outputs show, written once.

The terminal, report.md and report.html read these (through kdiag.views.sections, or directly for
the headline and the verdict line), so a change of wording reaches every output at once. Plain
text: each renderer escapes it for its own format.
"""

from __future__ import annotations

from typing import List, Sequence

from kdiag import format as fmt
from kdiag.datamodel.beyond import CROSSOVER_WITHIN, GROWTH_CONFIDENCE, THROUGHPUT_GAIN
from kdiag.datamodel.measurement import NOISE_THRESHOLD
from kdiag.datamodel.profile import ProfileResult
from kdiag.datamodel.report import Finding, Report
from kdiag.datamodel.strategies import PREDICT
from kdiag.views import facts
from kdiag.views import verdict as verdicts

INCOMPLETE = ("Incomplete run: kdiag stopped before it measured everything; the figures below are what it measured "
              "up to then.")
NO_FINDINGS = "kdiag found nothing to report from these measurements."
NO_STRATEGY = "No strategy was measured."
NEVER_RECOMMENDED = "A strategy whose outputs differ is never recommended."
NO_REFERENCE = "No reference ran, so no outputs were compared."
NOISE_MARK = f"~ marks a noisy measurement (IQR/median > {NOISE_THRESHOLD:.0%})."
PRECISION = ("Each strategy was timed until the 95% confidence interval of its median (95% CI, from order "
             "statistics) was within --precision of it, or its --budget was spent; n counts the timed samples, "
             "and n × k means each sample is the mean of k back-to-back calls (a fast call is timed so).")
VERSUS_PREDICT = (f"vs predict: judged by the one noise rule (medians apart by more than both IQRs, "
                  f"{facts.MIN_CALLS_FOR_VERDICT}+ calls each); same: within the noise; n<5: too few calls.")
#: The same, as the terminal's caption under the table says it.
VERSUS_PREDICT_SHORT = "vs predict: same = within the noise, n<5 = too few calls"
PROFILES_NOT_KEPT = ("The .prof files were not kept (kdiag.inspect without out_dir): the phases above are all that "
                     "remains of the profiling pass.")
KERAS3_TRACES = ("Keras 3 `predict` traces its tf.data map functions on every call: those traces are predict's own "
                 "overhead, not a retracing of your model.")


def plural(count: int, word: str, many: str = "") -> str:
    """"1 sample", "4,096 samples", "1 strategy", "3 strategies": a count and its noun, never "1 samples"
    (kdiag.datamodel.words, which the engine's lines use too)."""
    return fmt.count(count, word, many or None)


def samples_text(count: int) -> str:
    return plural(count, "sample")


def run_summary(report: Report) -> str:
    """How the run measured, in one sentence."""
    s = report.settings
    ways = plural(len(facts.measured(report)), "way")
    until = (f"each until its median's 95% interval was within ±{s.precision * 100:g}% or for a budget of "
             f"{s.budget_s:.3g} s" if s.precision else f"budget {s.budget_s:.3g} s per strategy")
    return (f"{ways} of calling the model timed, batch size {s.batch_size}, {until} "
            f"(at least {plural(s.min_calls, 'call')}), rounds interleaved across strategies.")


# --- the verdict (kdiag.views.verdict): the one answer every output opens and ends with ---------

def _d(result) -> str:
    return fmt.duration(facts.median(result))


def _n(result) -> str:
    return f"n={result.measurement.count:,}"


def _percent(share: float) -> str:
    """A share as a percentage that never rounds to a claim: 0.9967 is "over 99%", not "100%"."""
    if share > 0.99:
        return "over 99%"
    return f"{share:.0%}" if share >= 0.01 else "under 1%"


def classification(report: Report) -> str:
    """The one line that opens every report: overhead-bound, compute-bound or inconclusive, and why."""
    v = verdicts.verdict(report)
    if v.classification == verdicts.OVERHEAD_BOUND:
        return (f"Overhead-bound: {_percent(verdicts.overhead_share(v))} of predict's {_d(v.predict)} per call is predict's "
                f"own work; {v.fix.name} computes the same outputs in {_d(v.fix)}.")
    if v.classification == verdicts.COMPUTE_BOUND:
        if v.recommends:
            return (f"Compute-bound: the model's own computation is most of predict's {_d(v.predict)} per call; the "
                    f"best drop-in fix, {v.fix.name}, saves {_percent(verdicts.overhead_share(v))} of it.")
        return (f"Compute-bound: no drop-in fix is measurably faster than predict ({_d(v.predict)} per call): the "
                "time is the model's own computation.")
    return f"Inconclusive: {_unjudged(report, v)}."


def _unjudged(report: Report, v) -> str:
    """Why no verdict: what is known instead."""
    if v.predict is None:
        return ("predict was not measured with its outputs, so there is nothing to compare with"
                if facts.timed(report, PREDICT.name) is None else "predict's outputs were not checked")
    if v.fix is None:
        return f"predict {_d(v.predict)} ({_n(v.predict)}); no drop-in fix was measured with matching outputs"
    return (f"predict {_d(v.predict)} ({_n(v.predict)}), {v.fix.name} {_d(v.fix)} ({_n(v.fix)}): not enough calls "
            f"to compare" + (f"; {v.rerun}" if v.rerun else ""))


def verdict_text(report: Report) -> str:
    """The verdict as a paragraph (report.md and report.html open with it; **strong** marks the answer)."""
    v = verdicts.verdict(report)
    if v.classification == verdicts.INCONCLUSIVE:
        return f"**No verdict:** {_unjudged(report, v)}."
    j = v.judged
    calls = f"{_n(j.slow)} and {_n(j.fast)}"
    if v.recommends:
        text = (f"**Call {v.fix.name} instead of predict:** {_d(v.fix)} against {_d(v.predict)} per call, "
                f"{fmt.ratio(j.ratio)} faster, beyond the noise ({calls}), with matching outputs.")
    elif not j.beyond_noise:
        text = (f"**Keep predict:** no drop-in fix is measurably faster; the fastest, {v.fix.name} ({_d(v.fix)}), is "
                f"within the noise of predict ({_d(v.predict)}, ±{fmt.duration(j.noise_s)}; {calls}).")
    elif j.slow is v.predict:
        text = (f"**Keep predict:** the fastest drop-in fix, {v.fix.name}, is {fmt.ratio(j.ratio)} faster "
                f"({_d(v.fix)} against {_d(v.predict)}), below the {verdicts.FIX_MIN_RATIO:g}x worth a change.")
    else:
        text = (f"**Keep predict:** it is the fastest drop-in path ({_d(v.predict)}); the next, {v.fix.name}, is "
                f"{fmt.ratio(j.ratio)} slower ({calls}).")
    return text + _runtime_sentence(v)


def _runtime_sentence(v) -> str:
    gain = v.runtime_gain
    if gain is None:
        return ""
    over = "a further " if v.recommends else ""
    versus = "" if v.recommends else " than predict"
    return (f" Leaving Keras: {v.runtime.name} would add {over}{fmt.ratio(gain)}{versus} ({_d(v.runtime)}; "
            f"{verdicts.leaving_keras(v.runtime)}).")


def environment_line(report: Report) -> str:
    """The environment in one line, for the top of an issue (the template's fields are in full below)."""
    env = report.environment
    keras = f"tf-keras {env.keras} (TF_USE_LEGACY_KERAS=1)" if env.legacy_keras else f"Keras {env.keras}"
    gpus = "; ".join(env.gpu_models) or ", ".join(env.gpus) or "no GPU"
    parts = [f"TensorFlow {env.tensorflow}" + (f" ({env.tensorflow_install})" if env.tensorflow_install else ""),
             keras, f"Python {env.python}"] + ([f"NumPy {env.numpy}"] if env.numpy else [])
    parts += [env.os_distribution or env.os, f"{env.cpu_model}, {plural(env.cpu_cores, 'core')}", gpus]
    return " · ".join(parts)


def current_behaviour(report: Report) -> str:
    """What the user sees today: predict's cost per call, measured."""
    predict = facts.timed(report, PREDICT.name)
    if predict is None:
        return "predict was not measured on this model."
    return (f"`model.predict(x)` takes {_d(predict)} per call on a batch of {report.model.batch_size} (median of "
            f"{plural(predict.measurement.count, 'call')}).")


def expected_behaviour(report: Report) -> str:
    """What predict could cost, judged: the drop-in fix's time when the verdict recommends it."""
    v = verdicts.verdict(report)
    if v.classification == verdicts.INCONCLUSIVE:
        return f"not known: {_unjudged(report, v)}."
    if v.recommends:
        return (f"about what the model's own computation costs: {v.fix.name} computes the same outputs in "
                f"{_d(v.fix)} per call on the same model object (median of {plural(v.fix.measurement.count, 'call')}), "
                f"{fmt.ratio(v.judged.ratio)} faster than predict.")
    return f"what it does: no drop-in fix is measurably faster than predict ({_d(v.predict)}) on this model."


def verdict_line(report: Report, width: int = 80) -> str:
    """One line, the terminal's last: predict, the drop-in fix and what leaving Keras adds, judged.

    The longest wording that fits `width` columns, e.g. `predict 41 ms · fix: concrete function 192 µs,
    213x faster (outputs match) · TFLite: a further 103x (needs conversion)`.
    """
    candidates = [("incomplete run · " if report.incomplete else "") + c for c in _verdict_candidates(report)]
    return next((c for c in candidates if len(c) <= width), candidates[-1])


def _verdict_candidates(report: Report) -> List[str]:
    v = verdicts.verdict(report)
    if v.predict is None or v.fix is None:
        said = _unjudged(report, v)
        return [f"no verdict: {said}", "no verdict: " + said.split(";")[0].split(", so")[0]]
    j = v.judged
    head = f"predict {_d(v.predict)}"
    if not j.enough_calls:
        known = f"predict {_d(v.predict)} ({_n(v.predict)}) · {v.fix.name} {_d(v.fix)} ({_n(v.fix)})"
        return [f"{known}: not enough calls to compare; {v.rerun}", f"{head} ({_n(v.predict)}): no verdict; {v.rerun}",
                f"no verdict; {v.rerun}"]
    runtime = ""
    if v.runtime_gain is not None:
        runtime = (f" · {v.runtime.name}: {'a further ' if v.recommends else ''}{fmt.ratio(v.runtime_gain)}"
                   f"{'' if v.recommends else ' faster'} ({verdicts.leaving_keras(v.runtime)})")
    if v.recommends:
        fix = f"fix: {v.fix.name} {_d(v.fix)}, {fmt.ratio(j.ratio)} faster"
        return [f"{head} · {fix} (outputs match){runtime}", f"{head} · {fix}{runtime}", f"{head} · {fix} (outputs match)",
                f"{head} · {fix}", f"fix: {v.fix.name}, {fmt.ratio(j.ratio)} faster than predict"]
    if not j.beyond_noise:
        said = f"no drop-in fix measurably faster ({v.fix.name} within the noise)"
    elif j.slow is v.predict:
        said = f"no drop-in fix worth it ({v.fix.name} {fmt.ratio(j.ratio)} faster)"
    else:
        said = f"no drop-in fix is faster ({v.fix.name} {fmt.ratio(j.ratio)} slower)"
    return [f"{head} · {said}{runtime}", f"{head} · {said}", f"{head} · keep predict"]


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
    text = (f"Phases {what}, from a separate cProfile pass: ms per call are the profiled shares × the unprofiled "
            "median, since cProfile changes the time" + (f" ({'; '.join(effects)})" if effects else "")
            + ". A phase's noise is its share × each side's IQR, summed.")
    if unscaled:
        text += (f" No unprofiled median for {', '.join(unscaled)}: those ms are as profiled, "
                 "cProfile overhead included.")
    return text


def crossover(sweep) -> str:
    return f"**Crossover** (predict within {CROSSOVER_WITHIN:.0%} of the fastest loop): {facts.crossover_text(sweep)}."


def knee(sweep) -> str:
    """Where the batch-size sweep's samples/s stop growing, at what latency, and why the doubling stopped."""
    found = sweep.knee()
    if found is not None:
        rate, per_call = dict(sweep.throughput)[found], fmt.duration(dict(sweep.points)[found])
        where = (f"On {sweep.strategy}, samples/s stop growing by more than {THROUGHPUT_GAIN:.0%} at batch {found:,} "
                 f"({rate:,.0f} samples/s, {per_call} per call): a larger batch adds latency, not throughput. A "
                 f"server that can wait {per_call} to answer gains most from batches of up to {found:,}; one that "
                 "must answer sooner, from the largest batch its latency allows.")
    else:
        where = (f"On {sweep.strategy}, samples/s were still growing at batch {sweep.points[-1][0]:,}, the largest "
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
