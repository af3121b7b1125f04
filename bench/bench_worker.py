"""Does timing on the run's worker thread (kdiag.steps.worker) move the figures? The same timing loop
(kdiag.engine.measure) run on the main thread and through the worker, taking turns in one process, on
a concrete function of a tiny model (~0.2 ms a call) and on a call that does nothing (~0.2 µs).

    python3 bench/bench_worker.py [ROUNDS]      # default 6 rounds of each

Prints the median of the rounds' medians per place and the ratio worker / main measured in this run.
"""

from __future__ import annotations

import statistics
import sys

import numpy as np

from kdiag.engine.measure import MeasureSettings, measure_interleaved
from kdiag.engine.tf import tf_and_keras
from kdiag.steps.budget import Budget
from kdiag.steps.worker import ModelWorker


def main(rounds: int = 6) -> None:
    tf, keras = tf_and_keras()
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    function = tf.function(lambda x: model(x)).get_concrete_function(tf.TensorSpec((None, 4), tf.float32))
    x = tf.constant(np.ones((1, 4), np.float32))
    calls = {"concrete function": lambda: function(x).numpy(), "nothing": lambda: np.zeros(3)}
    settings = MeasureSettings(budget_s=0.5, min_calls=5)
    worker = ModelWorker(Budget(0))
    medians = {place: {name: [] for name in calls} for place in ("main", "worker")}
    for _ in range(rounds):
        for place in ("main", "worker"):
            timed = (measure_interleaved(calls, settings) if place == "main" else
                     worker.call(lambda: measure_interleaved(calls, settings)))
            for name, outcome in timed.items():
                medians[place][name].append(outcome.measurement.median_s)
    worker.close()
    for name in calls:
        main_s, worker_s = (statistics.median(medians[place][name]) for place in ("main", "worker"))
        print(f"{name:18} main thread {main_s * 1e6:9.2f} µs   worker {worker_s * 1e6:9.2f} µs   "
              f"worker / main {worker_s / main_s:.3f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
