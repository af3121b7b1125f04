"""Benchmark: `kdiag inspect --time-limit 60` end to end on the four targets of the real-models issue.

The models are built here in code (keras.applications with weights=None: nothing is downloaded),
saved, then inspected by a fresh `python -m kdiag` process, as a user would. Prints each run's wall
time against the limit, and what the report says it left out. Not a test: figures depend on the
machine (targets on the 2-core development machine: tiny <= 20 s, the others <= 60 s + 10%).

    python3 bench/bench_real_models.py [--time-limit 60] [NAME ...]   # tiny mobilenetv2 resnet50 lstm512
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

BUILD = textwrap.dedent("""
    import sys
    import keras
    name, path = sys.argv[1], sys.argv[2]
    if name == "mobilenetv2":
        model = keras.applications.MobileNetV2(weights=None)
    elif name == "resnet50":
        model = keras.applications.ResNet50(weights=None)
    else:  # the kind of model in the compile() questions: Conv1D + LSTM(512) on 32 x 400 x 16
        inputs = keras.Input((400, 16), batch_size=32)
        x = keras.layers.Conv1D(64, 5, activation="relu")(inputs)
        x = keras.layers.LSTM(512)(x)
        model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    model.save(path)
""")
TARGETS = {"tiny": 20.0, "mobilenetv2": 66.0, "resnet50": 66.0, "lstm512": 66.0}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("names", nargs="*", default=list(TARGETS))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kdiag-bench-"))
    print(f"kdiag inspect --time-limit {args.time_limit:g}, a fresh process per model (TensorFlow import included)")
    for name in args.names:
        if name == "tiny":
            target = ["--example", "tiny"]
        else:
            path = work / f"{name}.keras"
            subprocess.run([sys.executable, "-c", BUILD, name, str(path)], check=True, capture_output=True)
            target = [str(path)]
        out = work / f"run-{name}"
        start = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "kdiag", "inspect", *target, "--time-limit",
                                 str(args.time_limit), "--format", "json", "--out", str(out)],
                                capture_output=True, text=True)
        wall = time.perf_counter() - start
        if result.returncode != 0:
            print(f"{name:12} exit {result.returncode}: {result.stderr.strip().splitlines()[-1]}")
            continue
        report = json.loads(result.stdout)
        limit_note = next((n for n in report["notes"] if n.startswith("Time limit")), "nothing left out")
        measured = [s for s in report["strategies"] if s["median_s"]]
        print(f"{name:12} wall {wall:5.1f} s (target <= {TARGETS.get(name, 66):.0f} s); "
              f"{len(measured)}/{len(report['strategies'])} strategies measured; "
              f"min calls {min(s['measurement']['count'] for s in measured)}; {limit_note}")


if __name__ == "__main__":
    main()
