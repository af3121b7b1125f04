"""TFLite call styles side by side, interleaved in one process: the signature runner (what kdiag
timed before) against set_tensor/invoke/get_tensor with indices looked up once (what it times now),
each on LiteRT (ai-edge-litert) and on TensorFlow's deprecated tf.lite.Interpreter.

    python3 bench/bench_tflite.py [EXAMPLE ...]      # default: tiny mnist-softmax

Prints per-call medians and the ratios measured in this run; outputs are checked equal.
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings

import numpy as np

from kdiag.steps.load import make_inputs
from kdiag.datamodel.config import RunConfig
from kdiag.engine.intake.load import load_example
from kdiag.engine.runtimes.base import StrategyContext, to_host
from kdiag.engine.runtimes.strategies import BY_KEY
from kdiag.engine.runtimes.tflite import tflite_model

ROUNDS, CALLS_PER_ROUND = 40, 250


def interpreters(blob):
    from ai_edge_litert.interpreter import Interpreter as LiteRT

    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        legacy = tf.lite.Interpreter(model_content=blob)
    return {"LiteRT": LiteRT(model_content=blob), "tf.lite": legacy}


def runner_call(interpreter, arrays):
    runner = interpreter.get_signature_runner()
    return lambda: runner(**arrays)


def fast_call(interpreter, arrays):
    interpreter.allocate_tensors()
    runner = interpreter.get_signature_runner()
    feeds = [(runner.get_input_details()[n]["index"], a) for n, a in arrays.items()]
    fetches = [(n, d["index"]) for n, d in runner.get_output_details().items()]
    del runner

    def call():
        for index, array in feeds:
            interpreter.set_tensor(index, array)
        interpreter.invoke()
        return {n: interpreter.get_tensor(i) for n, i in fetches}

    return call


def bench(example: str) -> None:
    import tempfile
    from pathlib import Path

    loaded = load_example(example)
    inputs = make_inputs(loaded, RunConfig(example=example))
    ctx = StrategyContext(loaded, inputs, Path(tempfile.mkdtemp(prefix="kdiag-bench-")))
    blob = tflite_model(ctx)
    calls = {}
    for name, interpreter in interpreters(blob).items():
        # Two interpreters per runtime: a live signature runner blocks invoke() on its interpreter.
        calls[f"{name} signature runner"] = runner_call(interpreter, inputs.arrays)
    for name, interpreter in interpreters(blob).items():
        calls[f"{name} set/invoke/get"] = fast_call(interpreter, inputs.arrays)
    # kdiag's TFLite row as timed before this change (runner, outputs copied by to_host) and now.
    before = interpreters(blob)["tf.lite"]
    runner = before.get_signature_runner()
    calls["kdiag row before (runner)"] = lambda: dict(enumerate(to_host(runner(**inputs.arrays))))
    now = BY_KEY["tflite"].prepare(ctx)
    calls["kdiag row now"] = lambda: dict(enumerate(now()))
    reference = list(calls["LiteRT signature runner"]().values())
    for name, call in calls.items():
        got = list(call().values())
        assert all(np.array_equal(a, b) for a, b in zip(reference, got)), f"{name}: outputs differ"
    samples = {name: [] for name in calls}
    for _ in range(ROUNDS):  # interleaved: drift hits every style alike
        for name, call in calls.items():
            start = time.perf_counter()
            for _ in range(CALLS_PER_ROUND):
                call()
            samples[name].append((time.perf_counter() - start) / CALLS_PER_ROUND)
    medians = {name: statistics.median(s) for name, s in samples.items()}
    print(f"\n{example} (batch {inputs.batch_size}), median of {ROUNDS} rounds x {CALLS_PER_ROUND} calls; "
          "outputs equal across all")
    for name, median in medians.items():
        print(f"  {name:32} {median * 1e6:8.2f} µs")
    for runtime in ("LiteRT", "tf.lite"):
        ratio = medians[f"{runtime} signature runner"] / medians[f"{runtime} set/invoke/get"]
        print(f"  {runtime}: signature runner / set-invoke-get = {ratio:.2f}x")
    print(f"  set-invoke-get: tf.lite / LiteRT = "
          f"{medians['tf.lite set/invoke/get'] / medians['LiteRT set/invoke/get']:.2f}x")
    print(f"  kdiag's TFLite row: before / now = {medians['kdiag row before (runner)'] / medians['kdiag row now']:.2f}x")


if __name__ == "__main__":
    for name in sys.argv[1:] or ["tiny", "mnist-softmax"]:
        bench(name)
