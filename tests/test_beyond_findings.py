"""Findings and summaries beyond one batch, on hand-built Reports: no TensorFlow.

data-size turns the sweep into advice with its numbers; memory-growth appears only beyond the band;
intra-op-threads only beyond the noise; the terminal and Markdown summaries show each step.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import factories as fx  # noqa: E402
from kdiag.analysis import diagnose as dg  # noqa: E402
from kdiag.datamodel import beyond as b  # noqa: E402
from kdiag.datamodel.measurement import Measurement  # noqa: E402
from kdiag.render import markdown as md  # noqa: E402
from kdiag.render.terminal import render as render_terminal  # noqa: E402

COUNTS = (32, 256, 4096, 65536)


def sweep(predict, loop, best="concrete function", skipped=()):
    return b.DataSizeSweep(32, best, [
        b.SweepSeries("predict", "model.predict(X, batch_size=32)", list(zip(COUNTS, predict))),
        b.SweepSeries("predict_on_batch", "predict_on_batch on each chunk of 32",
                      list(zip(COUNTS, [s * 2 for s in loop]))),
        b.SweepSeries(best, f"{best} on each chunk of 32", list(zip(COUNTS, loop))),
    ], list(skipped), 6.0, 5.0)


def with_parts(**parts):
    report = dataclasses.replace(fx.report(fx.typical_keras3()), **parts)
    return dataclasses.replace(report, findings=dg.diagnose(report))


def only(report, finding_id):
    chosen = [f for f in report.findings if f.id == finding_id]
    assert len(chosen) == 1, [f.id for f in report.findings]
    return chosen[0]


def test_data_size_comes_with_the_drop_in_fixes_after_the_verdicts_own():
    order = dg.FINDING_ORDER
    assert order.index("predict-overhead") < order.index("data-size") < order.index("advice-backfires")


def test_a_crossover_gives_advice_for_small_calls_and_keeps_predict_for_bulk_scoring():
    report = with_parts(data_size_sweep=sweep(predict=[0.06, 0.08, 0.52, 8.2], loop=[0.0002, 0.0016, 0.48, 8.0]))
    finding = only(report, "data-size")
    assert report.data_size_sweep.crossover() == 4096
    assert finding.title == ("For fewer than 4,096 samples per call, concrete function is up to 300x faster; from "
                             "4,096 samples predict is within 10%")
    assert "For 1–4,095 samples per call, call concrete function on chunks of 32" in finding.advice
    assert "from ~4,096 samples predict is within 8% — keep it for bulk scoring" in finding.advice
    assert finding.strategy == "concrete function" and finding.measured_speedup == pytest.approx(300)
    assert finding.outputs_match is True and finding.snippet == "run_concrete_function(x)"
    assert finding.evidence[2] == "4,096 samples: predict 520 ms, concrete function loop 480 ms: predict 1.08x slower."


def test_no_crossover_says_none_up_to_the_largest_count_with_its_ratio():
    report = with_parts(data_size_sweep=sweep(predict=[0.06, 0.08, 0.3, 3.0], loop=[0.0002, 0.0016, 0.026, 0.4],
                                              skipped=["1,048,576 samples: not measured: would take ~90 s"]))
    finding = only(report, "data-size")
    assert finding.title == ("predict stays 7.50x slower than a loop of concrete function up to 65,536 samples: "
                             "no crossover")
    assert finding.severity == "medium"
    assert finding.evidence[-1] == "1,048,576 samples: not measured: would take ~90 s."


def test_predict_within_ten_percent_from_one_batch_is_told_to_stay():
    report = with_parts(data_size_sweep=sweep(predict=[0.021, 0.16, 2.6, 41.0], loop=[0.02, 0.15, 2.5, 40.0]))
    finding = only(report, "data-size")
    assert finding.severity == "info" and finding.strategy is None and finding.snippet == ""
    assert finding.title.startswith("predict is within 10% of the fastest loop from 32 samples")


def test_a_best_path_whose_outputs_differ_is_not_recommended_by_the_sweep():
    strategies = [fx.strategy(s.name, s.median_s * 1e3, matches=False) if s.name == "concrete function" else s
                  for s in fx.typical_keras3()]
    report = dataclasses.replace(fx.report(strategies),
                                 data_size_sweep=sweep([0.06, 0.08, 0.3, 3.0], [0.0002, 0.0016, 0.026, 0.4]))
    finding = only(dataclasses.replace(report, findings=dg.diagnose(report)), "data-size")
    assert finding.strategy is None and finding.snippet == ""
    assert "not shown to match the reference" in finding.advice


def test_a_sweep_that_did_not_run_gives_no_finding():
    report = with_parts(data_size_sweep=b.DataSizeSweep(32, reason="not measured: predict was not measured"))
    assert "data-size" not in [f.id for f in report.findings]


def leak(strategy, per_call, calls=1000, jitter=20_000):
    import random

    rng = random.Random(1)
    points = [(c, int(6e8 + per_call * c + rng.randint(-jitter, jitter))) for c in range(0, calls + 1, 5)]
    return b.MemoryLoop(strategy, calls, 8.0, 20, 1.0, points)


def test_memory_growth_names_the_growing_path_and_the_one_that_does_not_grow():
    loops = b.MemoryLoops([leak("predict", 2100), leak("concrete function", 0)], 10.0)
    finding = only(with_parts(memory_loops=loops), "memory-growth")
    assert finding.title == ("predict grows RSS by ~2.1 MB per 1,000 calls; concrete function does not")
    assert finding.strategy == "concrete function" and finding.outputs_match is True
    assert "no growth measured over 1,000 calls" in finding.advice
    assert finding.evidence[0].startswith("predict: RSS 2.1 MB per 1,000 calls (95% band 2.")


def test_no_memory_finding_when_every_loop_stays_within_its_band():
    loops = b.MemoryLoops([leak("predict", 0), leak("concrete function", 0)], 10.0)
    report = with_parts(memory_loops=loops)
    assert "memory-growth" not in [f.id for f in report.findings]
    text = render_terminal(report, width=200, verbose=True)
    assert "no growth measured over 1,000 calls" in text


def test_rss_that_rose_in_a_few_steps_is_said_so_and_is_no_finding():
    points = [(c, 700_000_000 + 600_000 * (c >= 56) + 600_000 * (c >= 112)) for c in range(0, 192)]
    stepped = b.MemoryLoop("concrete function", 191, 5.0, 20, 0.5, points)
    report = with_parts(memory_loops=b.MemoryLoops([leak("predict", 0), stepped], 10.0))
    assert "memory-growth" not in [f.id for f in report.findings]
    assert ("RSS rose by 1.2 MB over 191 calls in a few steps, not steadily (as allocators and caches warm up): no "
            "steady growth measured") in md.render(report)
    # A growing predict next to it: the stepped loop is not offered as the flat alternative.
    report = with_parts(memory_loops=b.MemoryLoops([leak("predict", 2100), stepped], 10.0))
    finding = only(report, "memory-growth")
    assert finding.title == "predict grows RSS by ~2.1 MB per 1,000 calls" and finding.strategy is None


def threads(one, many):
    return b.ThreadsEffect("SavedModel serve (the exported graph)", 2,
                           Measurement("one", 0.1, tuple(one)), Measurement("many", 0.1, tuple(many)), 12.0, 5.0)


def test_threads_effect_beyond_the_noise_is_a_finding_and_within_it_is_not():
    faster = with_parts(threads_effect=threads([0.040, 0.041, 0.039, 0.040, 0.042], [0.021, 0.020, 0.022, 0.020,
                                                                                       0.021]))
    finding = only(faster, "intra-op-threads")
    assert finding.title == "2 intra-op threads run the graph 1.90x faster than 1"
    assert "noise band ±" in finding.evidence[0]
    slower = with_parts(threads_effect=threads([0.010, 0.0101, 0.0099, 0.010, 0.0102],
                                               [0.020, 0.0201, 0.0199, 0.020, 0.0202]))
    one = only(slower, "intra-op-threads")
    assert 'os.environ["TF_NUM_INTRAOP_THREADS"] = "1"' in one.snippet and "before TensorFlow is imported" in one.snippet
    assert "too small" not in one.advice  # a cause kdiag did not measure
    noisy = with_parts(threads_effect=threads([0.030, 0.045, 0.020, 0.050, 0.025], [0.028, 0.040, 0.022, 0.045, 0.03]))
    assert "intra-op-threads" not in [f.id for f in noisy.findings]
    few = with_parts(threads_effect=threads([0.040, 0.041], [0.020, 0.021]))
    assert "intra-op-threads" not in [f.id for f in few.findings]


def full_report():
    ops = b.OpBreakdown("concrete function", 5, 0.2, 0.19,
                        [b.OpRow("lstm/while/MatMul", "MatMul", 320, 0.1, 0.6),
                         b.OpRow("lstm/while/MatMul_1", "MatMul", 320, 0.06, 0.32)],
                        3, 0.08, [b.OpRow("MatMul", "MatMul", 640, 0.16, 0.92),
                                  b.OpRow("Conv2D", "Conv2D", 5, 0.01, 0.05, "_FusedConv2D")], "host", "xprof 2.24.2")
    batches = b.BatchSizeSweep("concrete function", [(1, 0.001), (2, 0.001), (4, 0.0011), (8, 0.0021), (16, 0.0042)],
                               stopped_by="2 doublings in a row raised samples/s by 10% or less")
    return with_parts(data_size_sweep=sweep([0.06, 0.08, 0.52, 8.2], [0.0002, 0.0016, 0.48, 8.0]),
                      batch_size_sweep=batches,
                      memory_loops=b.MemoryLoops([leak("predict", 2100), leak("concrete function", 0)], 10.0),
                      op_breakdown=ops, threads_effect=threads([0.04] * 5, [0.02] * 5))


def test_the_terminal_summary_shows_every_step():
    text = render_terminal(full_report(), width=200, verbose=True)
    assert "Data size: the whole array end to end" in text
    assert "Crossover (predict within 10% of the fastest loop): from 4,096 samples." in text
    assert ("samples/s stop growing by more than 10% at batch 4 (3,636 samples/s, 1.1 ms per call): a larger batch "
            "adds latency, not throughput") in " ".join(text.split())
    assert "grows RSS by ~2.1 MB per 1,000 calls" in text
    assert "lstm/while/MatMul_1" in text and "3 other ops" in text and "MatMul 92%" in text
    assert "1 intra-op thread 40 ms vs 2 threads (one per core) 20 ms per call" in text


def test_the_markdown_summary_shows_every_step_and_renders_as_github_does():
    text = md.render(full_report())
    section = text[text.index("<details><summary>Beyond one batch</summary>"):]
    section = section[:section.index("</details>") + len("</details>")]
    assert "**Crossover** (predict within 10% of the fastest loop): from 4,096 samples." in section
    assert "| **4** | 1.1 ms | 275 µs | 3,636 |" in section
    assert "| predict | 1,000 | 8 s | 602 MB |" in section
    assert "| `lstm/while/MatMul` | MatMul | 320 | 20 ms | 60.0% |" in section
    assert "By op type: `MatMul` 92%, `Conv2D` 5% (kernel `_FusedConv2D`)." in section
    assert "noise band ±" in section
    cmarkgfm = pytest.importorskip("cmarkgfm")
    html = cmarkgfm.github_flavored_markdown_to_html(section)
    assert "<code>_FusedConv2D</code>" in html  # an op name's underscore is not emphasis
    assert html.count("<em>") == 1 and "<em>3 other ops</em>" in html
    assert html.count("<table>") == 4


def test_reasons_stand_in_for_steps_that_did_not_run():
    report = with_parts(data_size_sweep=b.DataSizeSweep(32, reason="not measured: predict was not measured"),
                        op_breakdown=b.OpBreakdown("concrete function", reason="not measured: XProf's trace converter "
                                                   "is not installed: pip install kdiag[ops]"),
                        threads_effect=b.ThreadsEffect("SavedModel serve", reason="not measured: test"))
    for text in (render_terminal(report, width=200, verbose=True), md.render(report).replace("\\", "")):
        assert "not measured: predict was not measured" in text
        assert "pip install kdiag[ops]" in text
        assert "not measured: test" in text
