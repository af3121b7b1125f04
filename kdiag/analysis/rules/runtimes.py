"""Runtime changes and tuning: what leaving Keras would add on top of the verdict's path (SavedModel
serving, TFLite, C++), and, on a compute-bound model, where the time goes and what another batch
size gives."""

from __future__ import annotations

from typing import List, Tuple

from kdiag import views
from kdiag.analysis.findings import match_text, median_text, recommend
from kdiag.analysis.registry import RUNTIMES, rule, threshold
from kdiag.datamodel.report import Finding, Report, StrategyResult
from kdiag.datamodel.strategies import CPP, RUNTIME_CHANGES
from kdiag.format import duration
from kdiag.format import ratio as fmt_ratio
from kdiag.views import outputs_match, timed
from kdiag.views import verdict as verdicts
from kdiag.views import wording


@rule("runtime-change", RUNTIMES, thresholds=[
    ("min_ratio", verdicts.RUNTIME_MIN_RATIO, "the fastest runtime change with matching outputs must be at least "
                                              "this much faster than the verdict's path (the drop-in fix when it "
                                              "is recommended, else predict), beyond the noise, to be recommended "
                                              "(kdiag.views.verdict.RUNTIME_MIN_RATIO); below it the finding is "
                                              "info"),
])
def runtime_change(report: Report) -> List[Finding]:
    """What leaving Keras would add: the fastest runtime change against the path the verdict leaves the user on."""
    fid = "runtime-change"
    verdict = verdicts.verdict(report)
    runtime, base, judged = verdict.runtime, verdict.baseline, verdict.runtime_judged
    if judged is None or not judged.enough_calls:
        return []  # not measured, or too few calls: the not-enough-calls finding says so
    evidence = [f"{'The drop-in fix' if base is verdict.fix else 'predict'}, {base.name}: median {median_text(base)} "
                "per call."] + _runtime_lines(report, base)
    if CPP.name in (runtime.name, base.name) or timed(report, CPP.name) is not None:
        evidence.append(f"{CPP.name} ran in its own process after the Python strategies (not interleaved with them), "
                        "so machine drift between the two is not cancelled out.")
    gain = verdict.runtime_gain
    needs = verdicts.leaving_keras(runtime)
    if gain is not None and gain >= threshold(fid, "min_ratio"):
        further = "a further " if base is verdict.fix else ""
        return [Finding(
            id=fid, severity="low",
            title=f"Leaving Keras: {runtime.name} would add {further}{fmt_ratio(gain)} over {base.name} ({needs})",
            evidence=evidence,
            advice=(f"If that gap matters, serve the model with {runtime.name}: measured {fmt_ratio(gain)} faster than "
                    f"{base.name} ({duration(judged.gap_s)} less per call), with matching outputs; it {needs}."),
            **recommend(report, runtime, gain))]
    if not judged.beyond_noise:
        advice = (f"{runtime.name} ran within the noise of {base.name} (±{duration(judged.noise_s)}): no gain could "
                  f"be measured at this noise level; re-run on a quiet machine to tell them apart.")
    else:
        advice = (f"{runtime.name} ran {views.times_text(views.median(runtime) / views.median(base))} than "
                  f"{base.name}: stay with {base.name}.")
    return [Finding(
        id=fid, severity="info",
        title=f"Leaving Keras would not make this model measurably faster than {base.name}",
        evidence=evidence, advice=advice, snippet="")]


def _runtime_lines(report: Report, base: StrategyResult) -> List[str]:
    """Each runtime change measured, against `base` under the one noise rule."""
    lines = []
    for name in RUNTIME_CHANGES:
        result = timed(report, name)
        if result is None or result is base:
            continue
        if not outputs_match(result):
            lines.append(f"{name}: median {duration(result.median_s)}, but its outputs were not shown to match "
                         "the reference, so it is not recommended.")
            continue
        judged = views.judge(*((result, base) if result.median_s >= base.median_s else (base, result)))
        if not judged.enough_calls:
            versus = f"not compared with {base.name} ({judged.calls_text}: too few calls)"
        elif not judged.beyond_noise:
            versus = f"within the noise of {base.name}"
        else:
            versus = f"{views.times_text(result.median_s / base.median_s)} than {base.name}"
        lines.append(f"{name}: median {median_text(result)}, {versus}; {match_text(result)}.")
    return lines


@rule("compute-bound", RUNTIMES + 1, thresholds=[
    ("min_per_call_s", 5e-3, "predict's median must be at least this many seconds for the batch size and execution "
                             "to be worth a finding"),
])
def compute_bound(report: Report) -> List[Finding]:
    """The classification says compute-bound: where execution goes, and what the batch-size sweep showed."""
    fid = "compute-bound"
    verdict = verdicts.verdict(report)
    if verdict.classification != verdicts.COMPUTE_BOUND or verdict.predict.median_s < threshold(fid, "min_per_call_s"):
        return []
    judged = verdict.judged
    if verdict.recommends:
        head = (f"The best drop-in fix, {verdict.fix.name} ({duration(verdict.fix.median_s)}), saves "
                f"{verdicts.overhead_share(verdict):.0%} of predict's {duration(verdict.predict.median_s)}: "
                "most of predict's time is the model's own computation.")
    elif judged.beyond_noise and judged.slow is verdict.predict:
        head = (f"The best drop-in fix, {verdict.fix.name}, is {fmt_ratio(judged.ratio)} faster than predict "
                f"({duration(verdict.fix.median_s)} against {duration(verdict.predict.median_s)}).")
    else:
        said = "within the noise of" if not judged.beyond_noise else f"{views.times_text(1 / judged.ratio)} than"
        head = (f"No drop-in fix is faster than predict ({duration(verdict.predict.median_s)}): the fastest, "
                f"{verdict.fix.name}, is {said} it.")
    batch_line, advice = _batch_size_lines(report)
    return [Finding(
        id=fid,
        severity="info",
        title="Compute-bound: most of predict's time is the model's own computation",
        evidence=[head] + _execution_lines(report) + [batch_line],
        advice=advice,
        snippet="",
    )]


def _execution_lines(report: Report) -> List[str]:
    """The op breakdown in a sentence, when one was listed."""
    ops = report.op_breakdown
    if ops is None or ops.reason or not ops.by_type:
        return []
    types = ", ".join(f"{views.op_type_text(t)} {t.share:.0%}" for t in ops.by_type[:3])
    return [f"Its execution by op type ({ops.calls} traced calls of {ops.strategy}, XProf): {types}."]


def _batch_size_lines(report: Report) -> Tuple[str, str]:
    """(evidence, advice) about other batch sizes: the sweep's answer, or that it was not measured."""
    sweep = report.batch_size_sweep
    if sweep is None or sweep.reason or len(sweep.points) < 2:
        return (f"Other batch sizes were not measured (this run used batch size {report.model.batch_size}).",
                "The time goes into the model's own computation: a faster runtime (see the runtime changes) or a "
                "larger batch may help; kdiag did not measure other batch sizes: re-run with --batch-size N.")
    rates = dict(sweep.throughput)
    first, last = sweep.points[0][0], sweep.points[-1][0]
    line = (f"The batch-size sweep ran {sweep.strategy} from batch {first:,} ({rates[first]:,.0f} samples/s) to "
            f"{last:,} ({rates[last]:,.0f} samples/s).")
    return line, "The time goes into the model's own computation. " + wording.knee(sweep)
