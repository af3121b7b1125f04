"""Benchmark: `kdiag inspect` on every built-in example, as a user runs it.

Prints, per example, kdiag's own wall time (a fresh process, TensorFlow import
included) and predict's median over the fastest strategy's, measured side by side in
the same run. Not a test: figures depend on the machine.

    python bench/bench_examples.py            # every example
    python bench/bench_examples.py tiny lstm  # some
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

EXAMPLES = ("tiny", "mnist-softmax", "mnist-cnn", "lstm")


def run(example: str) -> dict:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "kdiag", "inspect", "--example", example, "--format", "json"],
        capture_output=True, text=True,
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{example}: kdiag failed:\n{result.stderr}")
    report = json.loads(result.stdout)
    measured = sorted((s for s in report["strategies"] if s["median_s"] and s["outputs_match"] is not False),
                      key=lambda s: s["median_s"])
    predict = next(s for s in report["strategies"] if s["name"] == "predict")
    fastest = measured[0]
    return dict(example=example, wall_s=wall, predict_s=predict["median_s"], fastest=fastest["name"],
                fastest_s=fastest["median_s"], measured=len(measured))


def main(argv):
    examples = argv or EXAMPLES
    print(f"{'example':14} {'kdiag wall':>10} {'measured':>8} {'predict':>10} {'fastest':>10}  "
          f"{'predict/fastest':>15}  fastest strategy")
    for example in examples:
        row = run(example)
        print(f"{row['example']:14} {row['wall_s']:9.1f}s {row['measured']:>8} {row['predict_s'] * 1e3:8.2f}ms "
              f"{row['fastest_s'] * 1e3:8.3f}ms  {row['predict_s'] / row['fastest_s']:14,.0f}x  {row['fastest']}")


if __name__ == "__main__":
    main(sys.argv[1:])
