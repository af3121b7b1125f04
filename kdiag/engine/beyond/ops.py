"""What execution is made of: the best path's ops by self time, from a TensorFlow profiler trace.

A few warm calls run under `tf.profiler.experimental`; XProf's own converter (the `xprof`
package, tool `framework_op_stats`: the table TensorBoard's profile plugin shows) turns the trace
into per-op statistics. kdiag reads that table; it does not parse traces itself. Without XProf
the breakdown is "not measured", with the extra that installs it named.

The ops are listed only when graph execution is more than half of the traced calls' time: on a
model whose time goes to Python and dispatch, a list of ops would point at the wrong thing.
"""

from __future__ import annotations

import importlib.util
import json
import re
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from kdiag.datamodel.beyond import OpBreakdown, OpRow
from kdiag.errors import first_line
from kdiag.tempdirs import temporary_directory

NOT_INSTALLED = "not measured: XProf's trace converter is not installed: pip install kdiag[ops]"
TOOL = "framework_op_stats"
#: Ops are listed (largest first) until they cover this share of execution, at most MAX_OPS of them.
COVER_SHARE = 0.90
MAX_OPS = 20
#: Graph execution must take more than this share of the traced calls for the ops to be listed.
MIN_EXECUTION_SHARE = 0.5
#: Traced calls at most; at least MIN_TRACED_CALLS whatever the budget.
TRACED_CALLS = 5
MIN_TRACED_CALLS = 2
#: Starting and stopping the profiler and converting the trace take about this long whatever the calls.
MIN_BUDGET_S = 0.5


def xprof_version() -> Optional[str]:
    """The installed XProf's version, or None when its converter cannot be imported."""
    try:
        if importlib.util.find_spec("xprof") is None or importlib.util.find_spec("xprof.convert") is None:
            return None
    except (ImportError, ValueError):
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xprof")
    except PackageNotFoundError:
        return "unknown version"


def op_breakdown(strategy: str, call: Callable[[], object], budget_s: float, median_s: Optional[float] = None,
                 clock: Callable[[], float] = time.perf_counter) -> OpBreakdown:
    """Trace a few warm calls of `call` and convert the trace with XProf."""
    version = xprof_version()
    if version is None:
        return OpBreakdown(strategy, reason=NOT_INSTALLED)
    if budget_s < MIN_BUDGET_S:
        return OpBreakdown(strategy, reason=f"not measured: a trace and its conversion take ~{MIN_BUDGET_S:g} s, and "
                                            f"this step's budget is {budget_s:.2g} s (a larger --budget gives it more)")
    from kdiag.engine.tf import native_stderr_captured, tf_and_keras

    tf = tf_and_keras()[0]
    call()  # warm: the trace is of execution, not of a first call's tracing
    per_call = median_s if median_s else _timed(call, clock)
    calls = max(MIN_TRACED_CALLS, min(TRACED_CALLS, int(budget_s / 3 / per_call) if per_call > 0 else TRACED_CALLS))
    with temporary_directory(prefix="kdiag-trace-") as logdir:
        try:
            with native_stderr_captured():
                tf.profiler.experimental.start(logdir)
            try:
                began = clock()
                for _ in range(calls):
                    call()
                traced_s = clock() - began
            finally:
                with native_stderr_captured():
                    tf.profiler.experimental.stop()
        except Exception as exc:  # another profiler session, a profiler this build lacks
            return OpBreakdown(strategy, reason=f"not measured: the TensorFlow profiler failed: {first_line(exc)}")
        files = sorted(str(p) for p in Path(logdir).glob("plugins/profile/*/*.xplane.pb"))
        if not files:
            return OpBreakdown(strategy, reason="not measured: the TensorFlow profiler wrote no trace")
        try:
            with native_stderr_captured():  # XProf's native start-up lines
                from xprof.convert import raw_to_tool_data

                data, _ = raw_to_tool_data.xspace_to_tool_data(files, TOOL, {})
        except Exception as exc:
            return OpBreakdown(strategy, reason=f"not measured: XProf could not convert the trace: {first_line(exc)}")
    if not data:
        return OpBreakdown(strategy, reason=f"not measured: XProf's {TOOL} returned nothing for the trace")
    try:
        where, rows = op_table(json.loads(data))
    except (ValueError, KeyError, TypeError) as exc:
        return OpBreakdown(strategy, reason=f"not measured: XProf's {TOOL} table was not as expected: "
                                            f"{first_line(exc)}")
    return summarise(strategy, calls, traced_s, where, rows, f"xprof {version} ({TOOL})")


def _timed(call, clock) -> float:
    began = clock()
    call()
    return clock() - began


def op_table(tables) -> Tuple[str, List[OpRow]]:
    """The ops of XProf's framework_op_stats output, idle time left out: ("host" or "device", rows).

    XProf returns the table twice, with and without the IDLE row (TensorBoard's "include idle"
    switch); rows come in its own order, largest self time first. On an accelerator the
    device's ops are the execution; on a CPU-only run every op is a host op.
    """
    if isinstance(tables, dict):
        tables = [tables]
    table = next((t for t in tables if not any(_cells(t, r)["type"] == "IDLE" for r in t["rows"])), tables[-1])
    rows = [_cells(table, r) for r in table["rows"]]
    rows = [r for r in rows if r["type"] != "IDLE"]
    device = [r for r in rows if str(r["host_or_device"]).lower() == "device"]
    where, chosen = ("device", device) if device else ("host", rows)
    share_key = "device_total_self_time_percent" if device else "host_total_self_time_percent"
    ops = [_row(str(r["operation"]), str(r["type"]), int(r["occurrences"] or 0),
                float(r["total_self_time"] or 0.0) / 1e6, float(r[share_key] or 0.0)) for r in chosen]
    return where, sorted(ops, key=lambda op: -op.self_s)


#: What oneDNN (`_Mkl`, `_MklNative`) and TensorFlow's graph rewrites (`_Fused`, `PadWith`, `WithBias`)
#: put around a plain op's name. On x86 CPUs oneDNN is on by default, so the same MatMul reads
#: `_MklMatMul` on one machine and `MatMul` on another: the op table shows the plain name, and the
#: kernel beside it.
_KERNEL_PREFIX = re.compile(r"^_Mkl(?:Native)?|^_")
_FUSED = re.compile(r"^(?:PadWith)?(?:_?Fused)?(?!BatchNorm)")
_WITH_BIAS = re.compile(r"WithBias$")


def _row(name: str, kernel: str, occurrences: int, self_s: float, share: float) -> OpRow:
    plain = plain_op_type(kernel)
    return OpRow(name, plain, occurrences, self_s, share, kernel if kernel != plain else "")


def plain_op_type(kernel: str) -> str:
    """The op a kernel runs: `_MklMatMul` and `_MklFusedMatMul` are MatMul, `_FusedConv2D` and
    `_MklNativePadWithFusedConv2D` Conv2D; `_MklFusedBatchNormV3` is FusedBatchNormV3, a plain op
    of its own. A name with no such prefix is returned as it is."""
    if not kernel.startswith("_"):
        return kernel
    plain = _KERNEL_PREFIX.sub("", kernel, count=1)
    plain = _WITH_BIAS.sub("", _FUSED.sub("", plain, count=1))
    return plain or kernel


def _cells(table, row) -> dict:
    ids = [column["id"] for column in table["cols"]]
    return {key: cell.get("v") if isinstance(cell, dict) else None for key, cell in zip(ids, row["c"])}


def summarise(strategy: str, calls: int, traced_s: float, where: str, ops: Sequence[OpRow],
              converter: str, cover: float = COVER_SHARE, max_ops: int = MAX_OPS,
              min_execution_share: float = MIN_EXECUTION_SHARE) -> OpBreakdown:
    """The top ops until `cover` of execution, the op types, and whether execution is worth listing."""
    total = sum(op.self_s for op in ops)
    listed: List[OpRow] = []
    covered = 0.0
    for op in ops:
        if covered >= cover or len(listed) >= max_ops:
            break
        listed.append(op)
        covered += op.share
    types: dict = {}
    for op in ops:
        row = types.setdefault(op.op_type, [0, 0.0, 0.0, []])
        row[0] += op.occurrences
        row[1] += op.self_s
        row[2] += op.share
        if op.kernel and op.kernel not in row[3]:
            row[3].append(op.kernel)
    by_type = sorted((OpRow(name, name, n, s, share, ", ".join(kernels))
                      for name, (n, s, share, kernels) in types.items()), key=lambda r: -r.self_s)
    breakdown = OpBreakdown(strategy, calls, traced_s, total, listed, len(ops) - len(listed),
                            max(0.0, 1.0 - covered) if ops else 0.0, by_type, where, converter)
    share = breakdown.execution_share
    if not ops:
        return OpBreakdown(strategy, calls, traced_s, 0.0, where=where, converter=converter,
                           reason="not listed: the trace holds no TensorFlow ops")
    if share is not None and share <= min_execution_share:
        return OpBreakdown(strategy, calls, traced_s, total, where=where, converter=converter,
                           reason=(f"not listed: graph execution is {share:.0%} of {strategy}'s traced time, "
                                   f"not more than {min_execution_share:.0%}: the time goes to Python and "
                                   "dispatch around the ops, not to the ops"))
    return breakdown
