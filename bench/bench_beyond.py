"""Benchmark: `kdiag inspect` with the steps beyond one batch as a user runs it by default (the sweeps;
the op breakdown and threads where graph execution is most of predict's time), with all of them
(--memory-loop --ops), and with none.

Prints, per example, kdiag's wall time (a fresh process, TensorFlow import included) each way, and
what the run with all of them found: the crossover, the spread of the paths at the largest sample
count, the batch size where samples/s stop growing, the memory verdicts, the top ops' share of
execution and the threads effect with its noise band. Not a test: figures depend on the machine.

    python bench/bench_beyond.py            # tiny and lstm
    python bench/bench_beyond.py mnist-cnn  # others
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

EXAMPLES = ("tiny", "lstm")
OFF = ["--no-sweeps", "--no-memory-loop", "--no-ops"]
ALL = ["--memory-loop", "--ops"]


def run(example: str, extra=()) -> tuple:
    with tempfile.TemporaryDirectory(prefix="kdiag-bench-") as out:
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "kdiag", "inspect", "--example", example, "--format", "json",
                                 "--out", str(Path(out) / "run"), *extra], capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{example}: kdiag failed:\n{result.stderr}")
    return wall, json.loads(result.stdout)


def describe(data: dict) -> list:
    from kdiag import views
    from kdiag.datamodel.report import Report

    report = Report.from_dict(data)
    lines = []
    sweep = report.data_size_sweep
    if sweep is not None and not sweep.reason and sweep.counts:
        lines.append(f"data size: counts {', '.join(f'{n:,}' for n in sweep.counts)}; crossover "
                     f"{views.crossover_text(sweep)}; spread of the paths at {sweep.largest:,} samples "
                     f"{sweep.spread_at_largest:.2f}x (predict / fastest loop {sweep.ratio_at(sweep.largest):.2f}x); "
                     f"{sweep.spent_s:.1f} s")
    elif sweep is not None:
        lines.append(f"data size: {sweep.reason}")
    batches = report.batch_size_sweep
    if batches is not None and batches.points:
        knee = batches.knee()
        lines.append(f"batch size ({batches.strategy}): {batches.points[0][0]}..{batches.points[-1][0]:,}; "
                     + (f"samples/s stop growing at {knee:,}" if knee else "still growing at the largest") +
                     f"; {batches.spent_s:.1f} s")
    if report.memory_loops is not None:
        if report.memory_loops.reason:
            lines.append(f"memory: {report.memory_loops.reason}")
        for loop in report.memory_loops.loops:
            lines.append(f"memory, {loop.strategy}: {views.growth_text(loop)} -> {views.memory_verdict(loop)}")
    ops = report.op_breakdown
    if ops is not None:
        if ops.reason:
            lines.append(f"ops: {ops.reason}")
        else:
            lines.append(f"ops ({ops.strategy}): top {len(ops.ops)} ops cover {ops.listed_share:.1%} of execution; "
                         + ", ".join(f"{t.name} {t.share:.0%}" for t in ops.by_type[:3]))
    if report.threads_effect is not None:
        lines.append(f"threads: {views.threads_text(report.threads_effect)}")
    return lines


def main(argv):
    for example in argv or EXAMPLES:
        off_wall, _ = run(example, OFF)
        default_wall, _ = run(example)
        all_wall, data = run(example, ALL)
        print(f"{example}: kdiag wall {default_wall:.1f} s by default, {all_wall:.1f} s with every step beyond one "
              f"batch (--memory-loop --ops), {off_wall:.1f} s with none")
        for line in describe(data):
            print(f"  {line}")


if __name__ == "__main__":
    main(sys.argv[1:])
