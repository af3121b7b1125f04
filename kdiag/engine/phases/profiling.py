"""The cProfile pass, separate from timing: one cold call and N warm calls per scenario.

Each pass is dumped as a `.prof` file (pstats format: `pstats.Stats` and snakeviz open
it), attributed to phases by `kdiag.engine.phases`, and scaled to the *unprofiled* median
from the timing pass, so cProfile's own overhead does not inflate the per-phase
milliseconds (it inflates Python-heavy phases more than others; the shares are the
profiled ones, and the report says so).
"""

from __future__ import annotations

import contextlib
import cProfile
import logging
import marshal
import os
import pstats
import re
import tempfile
from pathlib import Path
from typing import Callable, Iterator, List, Optional

from kdiag.datamodel.profile import PhaseRow, ProfileResult
from kdiag.engine.phases import PhaseBreakdown, attribute, select_rules
from kdiag.engine.phases.calltree import call_tree

# Creating a concrete function always builds a FuncGraph here, in every TF 2.x.
TRACE_LANDMARK = ("tensorflow/python/framework/func_graph.py", "func_graph_from_py_func")


def profile_scenario(
    scenario: str,
    make_call: Callable[[], Callable[[], object]],
    out_dir: Path,
    warm_calls: int,
    unprofiled_median_s: Optional[float],
    legacy: bool,
    file_stem: str,
) -> ProfileResult:
    """Profile a fresh instance: its first call, then `warm_calls` calls, two .prof files."""
    rules = select_rules(legacy)
    with capture_tf_warnings() as warnings_seen:
        call = make_call()
        cold = cProfile.Profile()
        cold.enable()
        call()
        cold.disable()
        warm = cProfile.Profile()
        warm.enable()
        for _ in range(warm_calls):
            call()
        warm.disable()
    out_dir.mkdir(parents=True, exist_ok=True)
    cold_path = out_dir / f"{file_stem}.cold.prof"
    warm_path = out_dir / f"{file_stem}.prof"
    cold.dump_stats(str(cold_path))
    warm.dump_stats(str(warm_path))
    cold_stats = pstats.Stats(str(cold_path))
    warm_stats = pstats.Stats(str(warm_path))
    warm_breakdown = attribute(warm_stats, rules, calls=warm_calls)
    cold_breakdown = attribute(cold_stats, rules, calls=1)
    return ProfileResult(
        scenario=scenario,
        prof_path=str(warm_path),
        cold_prof_path=str(cold_path),
        calls=warm_calls,
        ruleset=rules.name,
        profiled_per_call_s=warm_breakdown.per_call_s(),
        unprofiled_median_s=unprofiled_median_s,
        cold_call_profiled_s=cold_breakdown.total_s,
        phases=phase_rows(warm_breakdown, unprofiled_median_s),
        cold_phases=phase_rows(cold_breakdown, None),
        top_functions=warm_breakdown.top_functions,
        traces_per_call=count_calls(warm_stats, *TRACE_LANDMARK) / warm_calls,
        cold_traces=count_calls(cold_stats, *TRACE_LANDMARK),
        retracing_warnings=[w for w in warnings_seen if "retracing" in w],
        call_tree=call_tree(warm_stats, rules),
    )


def phase_rows(breakdown: PhaseBreakdown, unprofiled_median_s: Optional[float]) -> List[PhaseRow]:
    per_call = breakdown.per_call_s()
    scale = unprofiled_median_s if unprofiled_median_s else per_call
    return [PhaseRow(p.name, p.share, p.share * scale, p.share * per_call) for p in breakdown.phases]


def count_calls(stats: pstats.Stats, path_suffix: str, function: str) -> int:
    """How many times a function (matched by file path suffix and name) was called."""
    total = 0
    for (filename, _line, name), (_cc, nc, _tt, _ct, _callers) in stats.stats.items():
        if name == function and filename.replace("\\", "/").endswith(path_suffix):
            total += nc
    return total


class _Collector(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: List[str] = []

    def emit(self, record):
        text = " ".join(record.getMessage().split())
        if text not in self.messages:
            self.messages.append(text)


@contextlib.contextmanager
def capture_tf_warnings() -> Iterator[List[str]]:
    """TensorFlow's Python warnings (retracing among them) are collected, not printed raw."""
    logger = logging.getLogger("tensorflow")
    collector = _Collector()
    saved_propagate, saved_handlers = logger.propagate, list(logger.handlers)
    logger.handlers = [collector]
    logger.propagate = False
    try:
        yield collector.messages
    finally:
        logger.handlers = saved_handlers
        logger.propagate = saved_propagate


def write_redacted(source: Path, target: Path, redact: Callable[[str], str]) -> None:
    """A copy of a .prof file whose file names (and function names) went through `redact`.

    A .prof file is pstats' marshalled dict {(file, line, function): (cc, nc, tt, ct, callers)},
    callers keyed the same way; only the keys change, so pstats and snakeviz read the copy as
    they read the original. Two entries that redact to one key (never expected) are added up.
    """
    with open(source, "rb") as handle:
        stats = marshal.load(handle)
    # One object per distinct key, as in the original: marshal writes a repeated object once
    # and refers back to it, so fresh equal strings would double the file's size.
    keys = {}

    def key(entry):
        if entry not in keys:
            file, line, name = entry
            keys[entry] = (redact(file), line, redact(name))
        return keys[entry]

    def add(a, b):
        return tuple(x + y for x, y in zip(a, b))

    redacted = {}
    for entry, (cc, nc, tt, ct, callers) in stats.items():
        renamed = {}
        for caller, figures in callers.items():
            k = key(caller)
            renamed[k] = add(renamed[k], figures) if k in renamed else figures
        k = key(entry)
        if k in redacted:
            old = redacted[k]
            merged = dict(old[4])
            for caller, figures in renamed.items():
                merged[caller] = add(merged[caller], figures) if caller in merged else figures
            redacted[k] = (*add(old[:4], (cc, nc, tt, ct)), merged)
        else:
            redacted[k] = (cc, nc, tt, ct, renamed)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            marshal.dump(redacted, handle)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o644 & ~umask)  # as readable as the original .prof (mkstemp made it private)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_stem(scenario: str) -> str:
    """'predict (compiled)' → 'predict-compiled': safe in any file system and URL."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", scenario).strip("-").lower()
