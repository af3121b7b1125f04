"""kdiag.analysis.diagnose on hand-built Reports: each finding fires on measurements that show it, and
stays silent on ones that don't. No TensorFlow here."""

from __future__ import annotations

import ast
import importlib
import dataclasses
import inspect
import re
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import factories as fx  # noqa: E402
from kdiag.analysis import diagnose as dg  # noqa: E402
from kdiag.analysis.registry import SEVERITY_LADDER  # noqa: E402
from kdiag import views  # noqa: E402
from kdiag.datamodel.report import Finding  # noqa: E402


def ids(findings):
    return [f.id for f in findings]


def only(findings, finding_id) -> Finding:
    chosen = [f for f in findings if f.id == finding_id]
    assert len(chosen) == 1, ids(findings)
    return chosen[0]


def replace(strategies, name, **kwargs):
    """The list with one strategy rebuilt by fx.strategy(name, **kwargs)."""
    return [fx.strategy(name, **kwargs) if s.name == name else s for s in strategies]


# --- the names and the thresholds table ---------------------------------------------


def test_every_identity_in_the_data_model_has_code_that_prepares_it():
    from kdiag.datamodel import strategies as ids
    from kdiag.engine.runtimes import strategies

    assert tuple(s.identity for s in strategies.STRATEGIES) == ids.PYTHON_STRATEGIES
    assert ids.ALL_STRATEGIES == ids.PYTHON_STRATEGIES + (ids.CPP,)
    assert len({s.name for s in ids.ALL_STRATEGIES}) == len(ids.ALL_STRATEGIES)  # names are unique


def _threshold_references():
    """(finding id, name) of every threshold(...) and ratio_severity(...) call in the rule modules (kdiag/analysis/rules/), constants
    resolved (a function's own, then its module's)."""
    import pkgutil

    from kdiag.analysis import rules

    found = set()
    for info in pkgutil.iter_modules(rules.__path__):
        tree = ast.parse(inspect.getsource(importlib.import_module(f"kdiag.analysis.rules.{info.name}")))
        module_ids = _constants(tree.body)
        for func in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
            local_ids = {**module_ids, **_constants(ast.walk(func))}
            for node in ast.walk(func):
                called = getattr(node.func, "id", None) if isinstance(node, ast.Call) else None
                if called in ("threshold", "ratio_severity"):
                    first, second = node.args
                    finding = first.value if isinstance(first, ast.Constant) else local_ids[first.id]
                    if called == "threshold":
                        found.add((finding, second.value))
                    else:  # the ladder reads the finding's three ratio thresholds
                        found.update((finding, name) for _, name in SEVERITY_LADDER)
    return found


def _constants(nodes):
    names = {}
    for node in nodes:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names[target.id] = node.value.value
    return names


def test_every_threshold_is_used_by_its_finding_and_only_table_thresholds_are_used():
    table = {(t.finding_id, t.name) for t in dg.THRESHOLDS}
    assert _threshold_references() == table
    assert {t.finding_id for t in dg.THRESHOLDS} <= set(dg.FINDING_IDS)


def test_thresholds_table_rows_are_printable():
    rows = dg.thresholds_table()
    assert len(rows) == len(dg.THRESHOLDS)
    assert ("predict-overhead", "min_ratio", "1.2", dg.THRESHOLDS[0].meaning) == rows[0]
    assert all(len(row) == 4 and all(isinstance(c, str) and c for c in row) for row in rows)


def test_threshold_values_drive_the_rules(monkeypatch):
    strategies = fx.typical_keras3()
    report = fx.report(strategies)
    assert "predict-overhead" in ids(dg.diagnose(report))
    from kdiag.analysis import registry

    patched = dict(registry._THRESHOLD_VALUES)
    patched[("predict-overhead", "min_ratio")] = 1000.0
    monkeypatch.setattr(registry, "_THRESHOLD_VALUES", patched)
    assert "predict-overhead" not in ids(dg.diagnose(report))


# --- predict-overhead ----------------------------------------------------------------


def test_predict_overhead_recommends_the_fastest_matching_direct_path_with_its_measured_speedup():
    report = fx.report(fx.typical_keras3(), profiles=[
        fx.profile("predict", {"tf.data pipeline": 0.45, "tracing": 0.30, "graph execution": 0.05,
                               "other Python": 0.20}, 60.0, inflation=1.6, traces_per_call=3.0, cold_traces=5),
    ])
    finding = only(dg.diagnose(report), "predict-overhead")
    assert finding.strategy == "concrete function"  # 0.2 ms: faster than tf.function and predict_on_batch
    assert finding.measured_speedup == pytest.approx(60.0 / 0.2)
    assert finding.outputs_match is True
    assert finding.snippet == "run_concrete_function(x)"
    assert finding.severity == "high"
    text = " ".join(finding.evidence)
    assert "60 ms" in text and "200 µs" in text
    assert "tf.data pipeline 27 ms (45%)" in text and "tracing 18 ms (30%)" in text
    assert "graph execution" not in text  # 5%: below the dominant-phase share
    assert "1.60x" in text  # the profiler's inflation is stated
    assert "3 concrete functions per warm call" in text and "not a retracing" in text
    assert "model(x, training=False) (eager): median 1.2 ms" in text


def test_predict_overhead_never_recommends_a_strategy_whose_outputs_differ_or_were_not_checked():
    strategies = fx.typical_keras3()
    strategies = replace(strategies, "concrete function", median_ms=0.2, matches=False, max_abs_diff=0.5)
    strategies = replace(strategies, "tf.function", median_ms=0.25, matches=None)
    strategies = replace(strategies, "XLA (jit_compile)", median_ms=0.22, matches=False, max_abs_diff=0.5)
    strategies = replace(strategies, "SavedModel serve", median_ms=0.3, matches=None)
    finding = only(dg.diagnose(fx.report(strategies)), "predict-overhead")
    assert finding.strategy == "predict_on_batch"
    assert finding.measured_speedup == pytest.approx(60.0 / 0.7)


def test_predict_overhead_is_silent_when_no_direct_path_was_measured_or_matches():
    strategies = [fx.strategy("predict", 60.0),
                  fx.strategy("predict_on_batch", available=False, reason="failed to prepare: boom"),
                  fx.strategy("tf.function", 0.25, matches=False, max_abs_diff=1.0),
                  fx.strategy("model(x) eager", 1.0)]
    assert "predict-overhead" not in ids(dg.diagnose(fx.report(strategies)))
    no_predict = [fx.strategy("predict", available=False), fx.strategy("tf.function", 0.25)]
    assert "predict-overhead" not in ids(dg.diagnose(fx.report(no_predict)))


def test_predict_overhead_needs_both_the_ratio_and_the_absolute_gap():
    small_gap = [fx.strategy("predict", 0.9), fx.strategy("predict_on_batch", 0.1)]  # 9x but 0.8 ms
    assert "predict-overhead" not in ids(dg.diagnose(fx.report(small_gap)))
    small_ratio = [fx.strategy("predict", 50.0), fx.strategy("predict_on_batch", 45.0)]  # 5 ms but 1.11x
    assert "predict-overhead" not in ids(dg.diagnose(fx.report(small_ratio)))
    both = [fx.strategy("predict", 6.0), fx.strategy("predict_on_batch", 1.5)]  # 4x and 4.5 ms
    finding = only(dg.diagnose(fx.report(both)), "predict-overhead")
    assert finding.severity == "medium"


def test_predict_overhead_has_no_fixed_3x_gate_and_its_severity_scales_with_the_gain():
    # ResNet50 at batch 1: predict 249 ms, predict_on_batch 105 ms, matching: 2.4x, 144 ms a call.
    resnet = [fx.strategy("predict", 249.0, 5.0), fx.strategy("predict_on_batch", 105.0, 3.0)]
    finding = only(dg.diagnose(fx.report(resnet)), "predict-overhead")
    assert finding.strategy == "predict_on_batch" and finding.severity == "medium"
    assert "144 ms saved per call" in finding.advice
    modest = [fx.strategy("predict", 30.0, 0.5), fx.strategy("predict_on_batch", 22.0, 0.5)]  # 1.36x
    assert only(dg.diagnose(fx.report(modest)), "predict-overhead").severity == "low"
    huge = [fx.strategy("predict", 60.0, 1.0), fx.strategy("concrete function", 0.2, 0.01)]
    assert only(dg.diagnose(fx.report(huge)), "predict-overhead").severity == "high"


def test_predict_overhead_inside_the_noise_is_not_claimed():
    noisy = [fx.strategy("predict", 30.0, 6.0), fx.strategy("predict_on_batch", 22.0, 4.0)]  # 8 ms < 10 ms
    assert "predict-overhead" not in ids(dg.diagnose(fx.report(noisy)))


def test_predict_traces_are_not_reported_as_retracing():
    report = fx.report(fx.typical_keras3(), profiles=[
        fx.profile("predict", {"tracing": 0.5, "other Python": 0.5}, 60.0, traces_per_call=3.0),
        fx.profile("predict (compiled)", {"tracing": 0.5, "other Python": 0.5}, 61.0, traces_per_call=3.0),
    ])
    assert "retracing" not in ids(dg.diagnose(report))


# --- compile ------------------------------------------------------------------------


def test_compile_slowdown_fires_beyond_noise_and_recommends_loading_without_compile():
    strategies = fx.typical_keras3(**{"predict (compiled)": (90.0, 3.0)})
    strategies = replace(strategies, "predict", median_ms=60.0, iqr_ms=2.0,
                         snippet="model = keras.models.load_model(path, compile=False)\nmodel.predict(x, verbose=0)")
    report = fx.report(strategies, profiles=[
        fx.profile("predict", {"tf.data pipeline": 0.5, "other Python": 0.5}, 60.0),
        fx.profile("predict (compiled)", {"tf.data pipeline": 0.5, "callbacks & progress bar": 0.2,
                                          "other Python": 0.3}, 90.0),
    ])
    findings = dg.diagnose(report)
    finding = only(findings, "compile-slowdown")
    assert "compile-no-effect" not in ids(findings)
    assert finding.measured_speedup == pytest.approx(1.5)
    assert finding.strategy == "predict" and finding.outputs_match is True
    assert "compile=False" in finding.snippet and "compile=False" in finding.advice
    text = " ".join(finding.evidence)
    assert "callbacks & progress bar +18.0 ms (0 → 18 ms)" in text
    assert "tf.data pipeline +15.0 ms (30 → 45 ms)" in text


def test_compile_slowdown_inside_the_noise_is_not_reproduced():
    # 1.25x slower, but the IQRs (10 + 8 ms) exceed the 15 ms difference.
    strategies = [fx.strategy("predict", 60.0, 10.0), fx.strategy("predict (compiled)", 75.0, 8.0)]
    findings = dg.diagnose(fx.report(strategies))
    assert "compile-slowdown" not in ids(findings)
    info = only(findings, "compile-no-effect")
    assert info.severity == "info" and info.measured_speedup is None and info.strategy is None
    assert info.evidence[0] == ("compile() changed predict by +25.0% "
                                "(within the noise of ±30.0%, the sum of both IQRs).")
    assert info.title == "compile() left predict's total time within the noise (±30.0%)"


def test_compile_with_no_total_effect_says_which_phases_moved_beyond_their_noise():
    """The lstm example read "compile() had no measurable effect" beside phase deltas of +8.06, -4.56 and
    -4.75 ms beyond their bands: the title now says both."""
    strategies = [fx.strategy("predict", 60.0, 1.0), fx.strategy("predict (compiled)", 60.5, 1.0)]
    profiles = [fx.profile("predict", {"tf.data pipeline": 0.5, "tracing": 0.3, "other Python": 0.2}, 60.0),
                fx.profile("predict (compiled)", {"tf.data pipeline": 0.35, "tracing": 0.45, "other Python": 0.2},
                           60.5)]
    info = only(dg.diagnose(fx.report(strategies, profiles=profiles)), "compile-no-effect")
    assert info.title == ("compile() left predict's total time within the noise (±3.3%), though 2 of its phases "
                          "moved beyond their noise")
    assert "no measurable effect" not in info.title


def test_compile_small_but_real_change_is_outside_noise_yet_below_threshold():
    strategies = [fx.strategy("predict", 60.0, 1.0), fx.strategy("predict (compiled)", 66.0, 1.0)]
    info = only(dg.diagnose(fx.report(strategies)), "compile-no-effect")
    assert "+10.0% (outside the noise of ±3.3%" in info.evidence[0]
    # The title agrees with the evidence: a real, small slow-down, not "no effect".
    assert info.title.startswith("compile() made predict 10.0% slower: measurable")


def test_compile_findings_are_silent_without_both_measurements():
    strategies = [fx.strategy("predict", 60.0), fx.strategy("predict (compiled)", available=False)]
    found = ids(dg.diagnose(fx.report(strategies)))
    assert "compile-slowdown" not in found and "compile-no-effect" not in found


# --- retracing ----------------------------------------------------------------------


def test_retracing_fires_for_a_non_predict_scenario_that_traces_on_warm_calls():
    report = fx.report(fx.typical_keras3(), profiles=[
        fx.profile("tf.function", {"tracing": 0.8, "graph execution": 0.2}, 0.25, traces_per_call=1.0,
                   cold_traces=1),
    ])
    finding = only(dg.diagnose(report), "retracing")
    assert finding.severity == "high"
    assert finding.measured_speedup is None and finding.strategy is None
    assert "tf.function: 1 concrete functions created per warm call over 10 profiled calls" in finding.evidence[0]
    assert "tracing took 200 µs per call (80%)" in finding.evidence[0]


def test_retracing_fires_on_a_retracing_warning_even_for_predict():
    warning = "5 out of the last 5 calls to <function f> triggered tf.function retracing."
    report = fx.report(fx.typical_keras3(), profiles=[
        fx.profile("predict", {"other Python": 1.0}, 60.0, retracing_warnings=[warning]),
    ])
    finding = only(dg.diagnose(report), "retracing")
    assert finding.severity == "medium"
    assert any(warning in line for line in finding.evidence)


def test_retracing_fires_on_a_warning_captured_while_timing():
    note = "TensorFlow warned while timing: 5 out of the last 5 calls to <function f> triggered tf.function retracing."
    finding = only(dg.diagnose(fx.report(fx.typical_keras3(), notes=[note])), "retracing")
    assert note in finding.evidence


def test_retracing_is_silent_without_traces_or_warnings():
    report = fx.report(fx.typical_keras3(), profiles=[
        fx.profile("tf.function", {"graph execution": 1.0}, 0.25, traces_per_call=0.0, cold_traces=1),
    ])
    assert "retracing" not in ids(dg.diagnose(report))


# --- eager-slow ---------------------------------------------------------------------


def test_eager_slow_recommends_the_fastest_matching_graph_path():
    strategies = [fx.strategy("predict", 20.0), fx.strategy("model(x) eager", 5.0), fx.strategy("tf.function", 1.0),
                  fx.strategy("concrete function", 0.5, matches=False, max_abs_diff=3.0)]
    finding = only(dg.diagnose(fx.report(strategies)), "eager-slow")
    assert finding.strategy == "tf.function"
    assert finding.measured_speedup == pytest.approx(5.0)


def test_eager_slow_is_silent_below_the_ratio_or_without_a_graph_path():
    close = [fx.strategy("model(x) eager", 1.5), fx.strategy("tf.function", 1.0)]
    assert "eager-slow" not in ids(dg.diagnose(fx.report(close)))
    unmeasured = [fx.strategy("model(x) eager", 5.0), fx.strategy("tf.function", available=False)]
    assert "eager-slow" not in ids(dg.diagnose(fx.report(unmeasured)))


# --- training-dependent-layers ------------------------------------------------------


def test_the_training_flag_is_a_note_for_code_that_passes_training_true_never_the_first_finding():
    """On ResNet50, MobileNetV2 and a trained .h5, "[high] Outputs depend on the training flag" came first,
    with `model(x, training=False)` (the slow eager path) as the only snippet: only kdiag passed training=True."""
    model = fx.model_info(training_dependent_layers=["dropout (Dropout)", "bn (BatchNormalization)"],
                          training_true_max_abs_diff=0.3)
    findings = dg.diagnose(fx.report(fx.typical_keras3(), model=model))
    finding = only(findings, "training-dependent-layers")
    assert finding.severity == "info" and finding.kind == "note" and finding.snippet == ""
    assert "dropout (Dropout), bn (BatchNormalization)" in finding.evidence[0]
    assert "max |diff| 3.0e-01, above the outputs tolerance (atol 1e-05)" in finding.evidence[1]
    assert "training=True" in finding.title and "training=False" in finding.advice
    assert findings[0].id == "predict-overhead"


def test_the_training_flag_is_silent_within_tolerance_and_when_unmeasured():
    within = fx.model_info(training_dependent_layers=["bn (BatchNormalization)"], training_true_max_abs_diff=1e-7)
    assert "training-dependent-layers" not in ids(dg.diagnose(fx.report(fx.typical_keras3(), model=within)))
    unmeasured = fx.model_info(training_dependent_layers=["bn (BatchNormalization)"])
    assert "training-dependent-layers" not in ids(dg.diagnose(fx.report(fx.typical_keras3(), model=unmeasured)))


def test_training_dependent_layers_silent_without_such_layers():
    assert "training-dependent-layers" not in ids(dg.diagnose(fx.report(fx.typical_keras3())))


# --- compute-bound and floor-gap ----------------------------------------------------


def _compute_bound_strategies(**overrides):
    figures = {"predict": (70.0, 1.0), "predict_on_batch": (40.0, 0.5), "tf.function": (38.0, 0.5),
               "XLA (jit_compile)": (30.0, 0.5), "TFLite": (32.0, 0.5)}
    figures.update(overrides)
    return [fx.strategy(n, m, q) for n, (m, q) in figures.items()]


def test_compute_bound_says_what_the_classification_says_and_recommends_nothing_itself():
    """XLA is the verdict's drop-in fix here (30 against 70 ms: 2.3x, more than half of predict's time is
    its own work), so the classification is overhead-bound and no compute-bound finding fires; with XLA at
    50 ms (1.4x) the model's computation dominates."""
    assert "compute-bound" not in ids(dg.diagnose(fx.report(_compute_bound_strategies())))
    report = fx.report(_compute_bound_strategies(**{"XLA (jit_compile)": (50.0, 0.5), "tf.function": (52.0, 0.5),
                                                    "predict_on_batch": (55.0, 0.5)}))
    assert views.verdict.verdict(report).classification == "compute-bound"
    findings = dg.diagnose(report)
    finding = only(findings, "compute-bound")
    assert finding.title.startswith("Compute-bound") and finding.strategy is None and finding.severity == "info"
    assert "XLA (jit_compile) (50 ms), saves 29% of predict's 70 ms" in finding.evidence[0]
    assert "batch size 8" in " ".join(finding.evidence) and "--batch-size" in finding.advice
    assert only(findings, "predict-overhead").strategy == "XLA (jit_compile)"  # the fix: the verdict's


def test_compute_bound_silent_on_a_fast_model_or_an_overhead_bound_one():
    fast = _compute_bound_strategies(**{"predict": (4.0, 0.1), "tf.function": (3.0, 0.1), "TFLite": (2.5, 0.1),
                                        "predict_on_batch": (3.5, 0.1), "XLA (jit_compile)": (3.2, 0.1)})
    assert "compute-bound" not in ids(dg.diagnose(fx.report(fast)))  # under 5 ms a call
    assert "compute-bound" not in ids(dg.diagnose(fx.report(fx.typical_keras3())))  # overhead-bound


def test_a_runtime_change_is_what_leaving_keras_adds_over_the_drop_in_fix():
    strategies = fx.typical_keras3() + [fx.strategy("C++ (TF C API)", 0.03, 0.001)]
    finding = only(dg.diagnose(fx.report(strategies)), "runtime-change")
    assert finding.strategy == "C++ (TF C API)" and finding.kind == "runtime"
    assert finding.measured_speedup == pytest.approx(0.2 / 0.03)  # over the fix: concrete function
    assert finding.title == ("Leaving Keras: C++ (TF C API) would add a further 6.67x over concrete function "
                             "(needs a C++ program)")
    text = " ".join(finding.evidence)
    assert "concrete function" in text and "TFLite: median 50 µs" in text and "4.00x faster than concrete" in text
    assert "not interleaved" in text


def test_a_runtime_whose_outputs_differ_is_never_used_and_a_slower_one_is_said_plainly():
    strategies = [fx.strategy("predict", 3.0, 0.05), fx.strategy("tf.function", 1.0, 0.05),
                  fx.strategy("TFLite", 1.3, 0.05), fx.strategy("C++ (TF C API)", 0.1, matches=False, max_abs_diff=1.0)]
    findings = dg.diagnose(fx.report(strategies))
    finding = only(findings, "runtime-change")
    assert finding.severity == "info" and finding.strategy is None and finding.measured_speedup is None
    assert finding.title == "Leaving Keras would not make this model measurably faster than tf.function"
    assert finding.advice == "TFLite ran 1.30x slower than tf.function: stay with tf.function."
    assert "not shown to match" in " ".join(finding.evidence)
    assert only(findings, "runtime-outputs-differ").kind == "runtime"


def test_runtime_change_silent_without_a_runtime():
    strategies = [s for s in fx.typical_keras3() if s.name not in ("TFLite", "SavedModel serve")]
    assert "runtime-change" not in ids(dg.diagnose(fx.report(strategies)))


# --- noisy, outputs-differ ----------------------------------------------------------


def test_noisy_lists_every_noisy_strategy_and_only_those():
    strategies = fx.typical_keras3(**{"predict": (60.0, 12.0), "tf.function": (0.25, 0.05)})
    finding = only(dg.diagnose(fx.report(strategies)), "noisy")
    assert len(finding.evidence) == 2
    assert finding.evidence[0] == "predict: IQR 12 ms, 20% of its 60 ms median (n=5)."
    assert finding.evidence[1].startswith("tf.function:")
    assert "noisy" not in ids(dg.diagnose(fx.report(fx.typical_keras3())))


def test_outputs_differ_lists_them_and_says_the_fastest_is_still_not_recommended():
    strategies = fx.typical_keras3()
    strategies = replace(strategies, "TFLite", median_ms=0.05, matches=False, max_abs_diff=0.25,
                         detail="output 0 has shape (8,), the reference (8, 1)")
    findings = dg.diagnose(fx.report(strategies))
    assert "outputs-differ" not in ids(findings)  # no call on the model object differs: not a correctness finding
    finding = only(findings, "runtime-outputs-differ")
    assert len(finding.evidence) == 1
    assert "TFLite: max |diff| 2.5e-01 against predict" in finding.evidence[0]
    assert "fastest measured" in finding.evidence[0]
    assert all(f.strategy != "TFLite" for f in findings)


def test_a_drop_in_call_whose_outputs_differ_is_a_correctness_finding_first():
    strategies = replace(fx.typical_keras3(), "XLA (jit_compile)", median_ms=0.1, matches=False, max_abs_diff=0.5)
    findings = dg.diagnose(fx.report(strategies))
    assert findings[0].id == "outputs-differ" and findings[0].kind == "correctness"
    assert "XLA (jit_compile)" in findings[0].title
    assert only(findings, "predict-overhead").strategy == "concrete function"


def test_the_reference_itself_never_counts_as_differing():
    strategies = [fx.strategy("predict", 60.0, matches=False, reference="predict"),
                  fx.strategy("predict_on_batch", 1.0)]
    findings = dg.diagnose(fx.report(strategies))
    assert "outputs-differ" not in ids(findings)
    assert only(findings, "predict-overhead").strategy == "predict_on_batch"


# --- all together -------------------------------------------------------------------


def test_findings_come_in_the_order_a_user_needs_them():
    strategies = fx.typical_keras3(**{"predict (compiled)": (120.0, 2.0), "model(x) eager": (5.0, 0.1),
                                      "TFLite": (0.04, 0.001)})
    strategies = replace(strategies, "XLA (jit_compile)", median_ms=0.22, matches=False, max_abs_diff=0.5)
    model = fx.model_info(training_dependent_layers=["d (Dropout)"], training_true_max_abs_diff=0.5)
    report = fx.report(strategies, model=model, profiles=[
        fx.profile("tf.function", {"tracing": 1.0}, 0.25, traces_per_call=0.5),
    ])
    findings = dg.diagnose(report)
    order = ids(findings)
    # Correctness (a call on the model object differs), the drop-in fixes, runtime changes, then notes.
    assert order == ["outputs-differ", "predict-overhead", "compile-slowdown", "eager-slow", "retracing",
                     "runtime-change", "training-dependent-layers"]
    assert [dg.FINDING_ORDER.index(i) for i in order] == sorted(dg.FINDING_ORDER.index(i) for i in order)
    kinds = [f.kind for f in findings]
    assert kinds == ["correctness", "drop-in", "drop-in", "drop-in", "drop-in", "runtime", "note"]
    from kdiag.datamodel.report import FINDING_KINDS
    order_of_kinds = [k for k, _ in FINDING_KINDS]
    assert [order_of_kinds.index(k) for k in kinds] == sorted(order_of_kinds.index(k) for k in kinds)


def test_advice_that_backfires_is_said_plainly():
    # MobileNetV2 at batch 1: model(x) eager 2.4x slower than predict.
    strategies = [fx.strategy("predict", 40.0, 1.0), fx.strategy("model(x) eager", 96.0, 2.0),
                  fx.strategy("predict_on_batch", 30.0, 1.0), fx.strategy("concrete function", 9.7, 0.2)]
    findings = dg.diagnose(fx.report(strategies))
    backfire = only(findings, "advice-backfires")
    assert backfire.title == "Calling model(x) directly, the usual advice, is 2.40x slower than predict here"
    assert "concrete function measured 4.12x faster than predict" in backfire.advice
    assert "eager-slow" not in ids(findings)  # eager is not worth tuning when it is slower than predict
    assert ids(findings).index("predict-overhead") < ids(findings).index("advice-backfires")


def _factory_with_calls(n_predict: int, n_other: int, predict_ms: float = 60.0, other_ms: float = 0.2):
    return [fx.strategy("predict", predict_ms, calls=n_predict),
            fx.strategy("predict (compiled)", predict_ms * 1.5, calls=n_predict),
            fx.strategy("concrete function", other_ms, calls=n_other),
            fx.strategy("TFLite", other_ms * 5, calls=n_other)]


@pytest.mark.parametrize("n_predict, n_other", [(1, 1), (2, 2), (1, 50), (2, 7)])
def test_too_few_calls_give_no_verdict_in_either_direction(n_predict, n_other):
    findings = dg.diagnose(fx.report(_factory_with_calls(n_predict, n_other)))
    # Claims that compare predict (always under 5 calls here) with anything.
    claims = ["predict-overhead", "compile-slowdown", "compile-no-effect", "advice-backfires"]
    if n_other < 5:  # then concrete function vs TFLite cannot be judged either
        claims += ["floor-gap", "compute-bound", "eager-slow"]
    for claim in claims:
        assert claim not in ids(findings), claim
    few = only(findings, "not-enough-calls")
    assert f"n={n_predict}" in " ".join(few.evidence)


def test_equal_medians_are_no_effect_and_nothing_is_recommended():
    strategies = [fx.strategy("predict", 60.0, 1.0), fx.strategy("predict (compiled)", 60.0, 1.0),
                  fx.strategy("predict_on_batch", 60.0, 1.0), fx.strategy("TFLite", 60.0, 1.0)]
    findings = dg.diagnose(fx.report(strategies))
    compile_finding = only(findings, "compile-no-effect")
    assert compile_finding.title == "compile() left predict's total time within the noise (±3.3%)"
    assert "+0.0% (within the noise" in compile_finding.evidence[0]
    assert not [f for f in findings if f.strategy]


@pytest.mark.parametrize("case", ["n=1", "n=2", "equal medians", "floor slower", "typical"])
def test_no_title_contradicts_its_text_and_no_ratio_below_one_is_printed(case):
    if case == "n=1":
        strategies = _factory_with_calls(1, 1)
    elif case == "n=2":
        strategies = _factory_with_calls(2, 2)
    elif case == "equal medians":
        strategies = [fx.strategy(n, 60.0, 1.0) for n in ("predict", "predict (compiled)", "predict_on_batch",
                                                          "TFLite")]
    elif case == "floor slower":
        # The heavy LSTM: TFLite was the slowest path, concrete function the fastest.
        strategies = [fx.strategy("predict", 7600.0, 50.0), fx.strategy("predict (compiled)", 7000.0, 60.0),
                      fx.strategy("concrete function", 6600.0, 40.0), fx.strategy("TFLite", 36700.0, 100.0)]
    else:
        strategies = fx.typical_keras3()
    for finding in dg.diagnose(fx.report(strategies)):
        text = " ".join([finding.title, finding.advice, *finding.evidence])
        for value in re.findall(r"(\d+(?:\.\d+)?)x the time", text):
            assert float(value) >= 1.0, text
        assert not re.search(r"\b0\.\d+x\b", text), text
        if "no measurable effect" in finding.title or "did not" in finding.title:
            assert "outside the noise" not in text, text
        if "slower" in finding.title and finding.id.startswith("compile"):
            assert "within the noise" not in text, text
        if case == "floor slower":
            assert "floor (TFLite)" not in text and "fastest floor" not in text, text


def test_every_recommendation_is_a_measured_strategy_with_matching_outputs():
    strategies = fx.typical_keras3(**{"predict (compiled)": (120.0, 2.0), "model(x) eager": (5.0, 0.1)})
    report = fx.report(strategies)
    for finding in dg.diagnose(report):
        if finding.strategy is not None:
            result = report.strategy(finding.strategy)
            assert result.available and result.measurement.count
            assert views.outputs_match(result) and finding.outputs_match is True
            assert finding.measured_speedup and finding.measured_speedup > 1


def test_an_empty_report_has_no_findings():
    assert dg.diagnose(fx.report([])) == []


def test_findings_survive_the_json_round_trip():
    from kdiag.datamodel.report import Report

    report = fx.report(fx.typical_keras3())
    report = dataclasses.replace(report, findings=dg.diagnose(report))
    again = Report.from_dict(report.to_dict())
    assert again.findings == report.findings


def test_only_recommend_sets_a_finding_s_recommendation():
    """No rule writes strategy=, measured_speedup= or outputs_match= itself: they come from
    kdiag.analysis.findings.recommend, which refuses what was not measured or does not match."""
    import pkgutil

    from kdiag.analysis import rules

    fields = {"strategy", "measured_speedup", "outputs_match"}
    for info in pkgutil.iter_modules(rules.__path__):
        tree = ast.parse(inspect.getsource(importlib.import_module(f"kdiag.analysis.rules.{info.name}")))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Finding":
                assert not fields & {k.arg for k in node.keywords}, f"{info.name}: line {node.lineno}"
                assert len(node.args) <= 6, f"{info.name}: line {node.lineno} passes the recommendation by position"


def test_a_keras_applications_model_with_batchnorm_and_dropout_gets_the_drop_in_fix_first():
    """MobileNetV2 at batch 1 (figures shaped as measured on it): the training-flag note came first,
    "[high]", with model(x, training=False), the slow eager path, as the only snippet. Now finding 1 is
    the drop-in fix with its snippet, and the verdict line names the same path."""
    from kdiag.datamodel.strategies import BY_NAME
    from kdiag.views import wording

    layers = [f"block_{i}_bn (BatchNormalization)" for i in range(52)] + ["dropout (Dropout)"]
    model = fx.model_info(name="mobilenetv2_1.00_224", batch_size=1, training_dependent_layers=layers,
                          training_true_max_abs_diff=0.71,
                          inputs=[fx.InputInfo("input_layer", [1, 224, 224, 3], "float32", "uniform [0, 1)")])
    figures = {"predict": (40.0, 1.0), "predict (compiled)": (41.0, 1.0), "predict_on_batch": (30.0, 1.0),
               "model(x) eager": (96.0, 2.0), "tf.function": (10.0, 0.2), "concrete function": (9.7, 0.2),
               "XLA (jit_compile)": (40.0, 1.0), "SavedModel serve": (10.5, 0.3), "TFLite": (8.0, 0.2)}
    strategies = [dataclasses.replace(fx.strategy(n, m, q), snippet=BY_NAME[n].snippet) for n, (m, q) in figures.items()]
    report = fx.report(strategies, model=model, batch_size=1)
    report = dataclasses.replace(report, findings=dg.diagnose(report))
    first = report.findings[0]
    assert first.id == "predict-overhead" and first.strategy == "concrete function"
    assert first.snippet == BY_NAME["concrete function"].snippet
    assert "fix: concrete function" in wording.verdict_line(report, 80)
    training = only(report.findings, "training-dependent-layers")
    assert training.severity == "info" and training.snippet == "" and training.kind == "note"
    backfires = [f.title for f in report.findings if f.id == "advice-backfires"]
    assert any("model(x) directly" in t for t in backfires) and any("XLA" in t for t in backfires)


@pytest.mark.parametrize("finding_id", ["predict-overhead", "keras-versions", "tf-versions"])
def test_one_ladder_grades_every_measured_ratio_by_its_findings_thresholds(finding_id):
    from kdiag.analysis.registry import ratio_severity, threshold

    high, medium, low = (threshold(finding_id, name) for _, name in SEVERITY_LADDER)
    assert high > medium > low
    assert [ratio_severity(finding_id, r) for r in (high, medium, low, low * 0.99)] == ["high", "medium", "low", "info"]
