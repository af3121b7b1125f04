"""The op breakdown: reading XProf's framework_op_stats table, choosing the ops to list, and saying
what is missing when XProf is not installed.

The tables here have the columns XProf 2.24 returns (ids as in its output); the slow test at the end
traces the lstm example and converts the trace with the installed XProf.
"""

from __future__ import annotations

import math

import pytest

from kdiag.datamodel.beyond import OpRow
from kdiag.engine.beyond import ops

COLUMNS = ["rank", "host_or_device", "type", "operation", "occurrences", "total_time", "avg_time", "total_self_time",
           "avg_self_time", "device_total_self_time_percent", "device_cumulative_total_self_time_percent",
           "host_total_self_time_percent", "Host_cumulative_total_self_time_percent", "measured_flop_rate",
           "model_flop_rate", "measured_memory_bw", "operational_intensity", "bound_by", "eager"]


def table(rows, where="Host"):
    """XProf's table for (type, name, occurrences, self µs) rows; shares of the rows given."""
    total = sum(r[3] for r in rows if r[0] != "IDLE")
    out = []
    for rank, (op_type, name, count, self_us) in enumerate(rows, 1):
        share = self_us / total if op_type != "IDLE" else 0.4
        host, device = (share, 0.0) if where == "Host" else (0.0, share)
        values = [rank, where, op_type, name, count, self_us, self_us / max(count, 1), self_us, self_us / max(count, 1),
                  device, 0.0, host, 0.0, 0.0, 0.0, 0.0, 0.0, "Unknown", "Function"]
        out.append({"c": [{"v": v} for v in values]})
    return {"cols": [{"id": c, "label": c} for c in COLUMNS], "p": {}, "rows": out}


LSTM_LIKE = [("_MklMatMul", "lstm/while/MatMul_1", 192, 54000.0), ("MatMul", "lstm_2/while/MatMul_1", 192, 53000.0),
             ("MatMul", "lstm/while/MatMul", 192, 52000.0), ("MatMul", "lstm_2/while/MatMul", 192, 17000.0),
             ("Transpose", "lstm/transpose_1", 3, 4800.0), ("_FusedConv2D", "conv1d/convolution", 3, 4600.0),
             ("TensorListFromTensor", "lstm/TensorArrayUnstack", 3, 3600.0), ("Split", "lstm/while/split", 384, 1000.0)]


def test_the_table_without_idle_is_read_and_its_shares_are_xprof_s():
    with_idle = table([("IDLE", "IDLE", 0, 130000.0)] + LSTM_LIKE)
    without = table(LSTM_LIKE)
    where, rows = ops.op_table([with_idle, without])
    assert where == "host"
    assert [r.name for r in rows][:2] == ["lstm/while/MatMul_1", "lstm_2/while/MatMul_1"]
    assert rows[0] == OpRow("lstm/while/MatMul_1", "MatMul", 192, pytest.approx(0.054), pytest.approx(54000 / 190000),
                            "_MklMatMul")
    assert rows[1].kernel == ""  # the plain op ran: no kernel beside it
    assert math.fsum(r.share for r in rows) == pytest.approx(1.0)


def test_idle_is_dropped_even_when_only_the_table_with_it_is_given():
    where, rows = ops.op_table(table([("IDLE", "IDLE", 0, 130000.0)] + LSTM_LIKE))
    assert "IDLE" not in {r.op_type for r in rows} and len(rows) == len(LSTM_LIKE)


def test_on_an_accelerator_the_device_ops_are_the_execution():
    rows = table(LSTM_LIKE, where="Device")
    rows["rows"].append(table([("Send", "host/send", 1, 100.0)])["rows"][0])
    where, chosen = ops.op_table([rows])
    assert where == "device" and "host/send" not in {r.name for r in chosen}


def test_ops_are_listed_until_ninety_percent_is_covered():
    _, rows = ops.op_table([table(LSTM_LIKE)])
    breakdown = ops.summarise("concrete function", 3, 0.2, "host", rows, "xprof test")
    assert [op.name for op in breakdown.ops] == [r.name for r in rows[:4]]
    assert 0.90 <= breakdown.listed_share <= 1.0
    assert breakdown.other_ops == 4 and breakdown.other_share == pytest.approx(1 - breakdown.listed_share)
    assert breakdown.by_type[0].name == "MatMul" and breakdown.by_type[0].occurrences == 768
    assert breakdown.by_type[0].kernel == "_MklMatMul"  # oneDNN's kernel and the plain one, as one type
    assert {t.name for t in breakdown.by_type} == {"MatMul", "Transpose", "Conv2D", "TensorListFromTensor", "Split"}
    assert breakdown.by_type[0].share == pytest.approx(176000 / 190000)
    assert breakdown.execution_share == pytest.approx(0.19 / 0.2)
    assert breakdown.reason == ""


def test_no_ops_are_listed_when_execution_is_not_more_than_half_the_traced_time():
    _, rows = ops.op_table([table(LSTM_LIKE)])
    breakdown = ops.summarise("concrete function", 3, 1.0, "host", rows, "xprof test")
    assert breakdown.ops == [] and breakdown.by_type == []
    assert breakdown.reason.startswith("not listed: graph execution is 19% of concrete function's traced time")
    assert breakdown.execution_share == pytest.approx(0.19)


@pytest.mark.parametrize("kernel, plain", [
    ("_MklMatMul", "MatMul"), ("_MklFusedMatMul", "MatMul"), ("_MklNativeFusedMatMul", "MatMul"),
    ("_FusedMatMul", "MatMul"), ("_FusedConv2D", "Conv2D"), ("_MklNativePadWithFusedConv2D", "Conv2D"),
    ("_MklConv2DWithBias", "Conv2D"), ("_FusedDepthwiseConv2dNative", "DepthwiseConv2dNative"),
    ("_MklFusedBatchNormV3", "FusedBatchNormV3"), ("_MklBatchMatMulV2", "BatchMatMulV2"), ("_MklEinsum", "Einsum"),
    ("MatMul", "MatMul"), ("FusedBatchNormV3", "FusedBatchNormV3"), ("Conv2D", "Conv2D"),
])
def test_kernel_names_map_to_the_plain_op_whatever_the_cpu(kernel, plain):
    assert ops.plain_op_type(kernel) == plain


def test_the_op_table_shows_the_plain_name_with_the_kernel_beside_it():
    from kdiag.views import sections

    _, rows = ops.op_table([table(LSTM_LIKE)])
    breakdown = ops.summarise("concrete function", 3, 0.2, "host", rows, "xprof test")
    section = sections.op_breakdown(breakdown)
    types = [row[1].text for row in section.tables[0].rows if row[1].text]
    assert types[0] == "MatMul (kernel _MklMatMul)" and types[1] == "MatMul"
    from kdiag import sanitize

    plain = sanitize.render_literals(section.after[0], str, str, lambda code: f"`{code}`")
    assert "`MatMul` 93% (kernel `_MklMatMul`)" in plain


def test_without_xprof_the_breakdown_names_the_extra_that_installs_it(monkeypatch):
    monkeypatch.setattr(ops.importlib.util, "find_spec", lambda name, *a: None)
    assert ops.xprof_version() is None
    called = []
    breakdown = ops.op_breakdown("concrete function", lambda: called.append(1), budget_s=1.0)
    assert breakdown.reason == "not measured: XProf's trace converter is not installed: pip install kdiag[ops]"
    assert breakdown.ops == [] and called == []  # nothing traced for nothing


def test_a_budget_too_small_for_a_trace_traces_nothing(monkeypatch):
    monkeypatch.setattr(ops, "xprof_version", lambda: "2.24.2")
    breakdown = ops.op_breakdown("concrete function", lambda: pytest.fail("called"), budget_s=0.06)
    assert breakdown.reason.startswith("not measured: a trace and its conversion take ~0.5 s, and this step's budget")


@pytest.mark.slow
def test_the_lstm_example_s_top_ops_cover_ninety_to_a_hundred_percent_of_its_traced_execution():
    pytest.importorskip("xprof", reason="XProf is in the test extra: pip install -e .[test]")
    from kdiag.engine.intake.inputs import resolve_shapes, synthetic_inputs
    from kdiag.engine.intake.load import load_example
    from kdiag.engine.runtimes.base import StrategyContext
    from kdiag.engine.runtimes.strategies import BY_KEY

    loaded = load_example("lstm")
    inputs = synthetic_inputs(loaded.input_specs, resolve_shapes(loaded.input_specs, 32, {}))
    ctx = StrategyContext(loaded, inputs, work_dir=None)
    breakdown = ops.op_breakdown("concrete function", BY_KEY["concrete"].prepare(ctx), budget_s=1.0)
    assert breakdown.reason == "", breakdown.reason
    assert breakdown.execution_share > 0.5
    assert 0.90 <= breakdown.listed_share <= 1.0
    assert breakdown.ops[0].op_type == "MatMul"  # the LSTM cells' matrix products
    assert breakdown.converter.startswith("xprof ")
