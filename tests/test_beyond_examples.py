"""Beyond one batch on the built-in examples, end to end with small budgets, and the options that drive it.

- tiny: the crossover is found and stated, or "none up to N" with N given, in the report and the terminal;
- lstm: the paths converge: at the largest count the slowest graph path takes less than 1.5x the fastest;
- the memory loops run on a real model and give a verdict.
"""

from __future__ import annotations

import re

import pytest

from kdiag import views
from kdiag.datamodel.config import RunConfig, parse_samples
from kdiag.errors import KdiagError



# --- options (no TensorFlow) -----------------------------------------------------------------


def test_samples_parse_as_whole_numbers_and_bad_ones_get_one_line():
    assert parse_samples("256,4096") == (256, 4096)
    assert parse_samples("65_536") == (65536,)
    for bad, words in (("1,two", "not a list of whole numbers"), ("0", "from 1 to"), ("", "1 to 16 counts"),
                       (",".join(["1"] * 17), "1 to 16 counts"), ("1e3", "not a list of whole numbers")):
        with pytest.raises(KdiagError) as caught:
            parse_samples(bad)
        assert words in caught.value.message and "--samples" in caught.value.message
        assert "\n" not in caught.value.message


def test_samples_are_kept_sorted_and_unique_and_refused_with_no_sweeps():
    assert RunConfig(example="tiny", samples=[4096, 32, 32]).samples == (32, 4096)
    with pytest.raises(KdiagError) as caught:
        RunConfig(example="tiny", samples=[32], sweeps=False)
    assert "--no-sweeps" in caught.value.message


def test_the_cli_passes_the_new_options_on():
    from kdiag.cli import build_parser, request_from_args

    argv = ["inspect", "--example", "tiny", "--samples", "32,256", "--no-memory-loop", "--no-ops"]
    config = request_from_args(build_parser().parse_args(argv), argv).config
    assert config.samples == (32, 256) and config.sweeps and not config.memory_loops and not config.ops
    argv = ["inspect", "--example", "tiny", "--no-sweeps"]
    assert request_from_args(build_parser().parse_args(argv), argv).config.sweeps is False


# --- the examples --------------------------------------------------------------------------------


@pytest.mark.slow
def test_tiny_states_its_crossover_or_none_up_to_the_largest_count():
    from kdiag.api import inspect
    from kdiag.engine.beyond.ops import NOT_INSTALLED, xprof_version
    from kdiag.render.terminal import render

    report = inspect(example="tiny", strategies=["predict", "predict_on_batch", "concrete"], budget_s=0.3,
                     min_calls=3, max_wall_s=2.0, profile=False, memory_loops=False, samples=[32, 256, 2048])
    sweep = report.data_size_sweep
    assert sweep.reason == "" and sweep.best_path == "concrete function"
    assert sweep.counts == [32, 256, 2048]
    assert [s.strategy for s in sweep.series] == ["predict", "predict_on_batch", "concrete function"]
    stated = views.crossover_text(sweep)
    assert re.fullmatch(r"from [\d,]+ samples|none up to 2,048 samples", stated), stated
    assert f"Crossover (predict within 10% of the fastest loop): {stated}." in render(report, width=160, verbose=True)
    finding = next(f for f in report.findings if f.id == "data-size")
    assert ("no crossover" in finding.title) == stated.startswith("none")
    assert len(report.batch_size_sweep.points) >= 2 and report.batch_size_sweep.points[0][0] == 1
    # A 13-parameter model spends its call in Python and dispatch: no ops to list, no threads to compare.
    ops = report.op_breakdown
    if xprof_version() is None:
        assert ops.reason == NOT_INSTALLED
    else:
        assert ops.reason.startswith("not listed: graph execution is") and ops.execution_share < 0.5
    assert report.threads_effect.reason.startswith("not measured")


def _measured(name: str, median_s: float):
    from kdiag.datamodel.measurement import Measurement
    from kdiag.datamodel.report import OutputCheck, StrategyResult

    return StrategyResult(name, "", True, measurement=Measurement(name, median_s * 3, (median_s,) * 5),
                          outputs=OutputCheck("predict", 0.0, 1e-5, 1e-4, True))


@pytest.fixture(scope="module")
def lstm_context(tmp_path_factory):
    from kdiag.engine.intake.inputs import resolve_shapes, synthetic_inputs
    from kdiag.engine.intake.load import load_example
    from kdiag.engine.runtimes.base import StrategyContext

    loaded = load_example("lstm")
    inputs = synthetic_inputs(loaded.input_specs, resolve_shapes(loaded.input_specs, 32, {}))
    return StrategyContext(loaded, inputs, tmp_path_factory.mktemp("lstm"))


@pytest.mark.slow
def test_lstm_paths_converge_at_the_largest_count(lstm_context):
    from kdiag.engine.beyond.steps import data_size_step

    # Medians of the order this machine measures; they only plan the sweep, which times for itself.
    results = [_measured("predict", 0.1), _measured("predict_on_batch", 0.04), _measured("concrete function", 0.04)]
    sweep = data_size_step(lstm_context, results, results[2], [32, 2048], budget_s=24.0, say=lambda *a: None)
    assert sweep.reason == "" and sweep.counts == [32, 2048], sweep.skipped
    assert min(len(runs) for s in sweep.series for runs in s.runs_s) >= 2
    # On this shared machine other processes only ever add time, and predict's tf.data threads lose the
    # most when they compete for the two cores: each path's fastest interleaved run is its own cost.
    fastest = [min(s.runs_s[-1]) for s in sweep.series]
    assert max(fastest) / min(fastest) < 1.5, [s.runs_s for s in sweep.series]
    at_one_batch = [min(s.runs_s[0]) for s in sweep.series]
    assert max(at_one_batch) / min(at_one_batch) > max(fastest) / min(fastest)  # predict's set-up shrinks per sample
    assert sweep.spread_at_largest < 2.0  # the medians the report shows, with the noise in them


@pytest.mark.slow
def test_memory_loops_on_a_real_model_give_a_verdict_per_path(lstm_context):
    from kdiag.engine.beyond.steps import memory_step

    results = [_measured("predict", 0.1), _measured("concrete function", 0.04)]
    loops = memory_step(lstm_context, results, results[1], budget_s=3.0, say=lambda *a: None)
    assert [loop.strategy for loop in loops.loops] == ["predict", "concrete function"]
    for loop in loops.loops:
        assert loop.reason == "" and loop.calls >= 1 and loop.warmup_calls >= 3
        assert loop.peak_rss_bytes > 100e6  # TensorFlow alone takes more than that
        verdict = views.memory_verdict(loop)
        assert re.fullmatch(r"grows RSS by ~.+ per 1,000 calls|no growth measured over [\d,]+ calls|"
                            r"RSS rose by .+ in a few steps, not steadily .+: no steady growth measured|"
                            r"not judged: \d+ RSS samples are too few for a slope", verdict), verdict
