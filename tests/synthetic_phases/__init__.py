"""Synthetic programs for tests/test_phases.py: busy loops of known length in modules
whose paths and function names are the landmarks of `tests.test_phases.RULES`.

Each module stands for one phase (loader: input handling, pipeline: tf.data, tracer:
tracing, runtime: graph execution, eager: eager op dispatch, callbacks: callbacks,
output: output conversion); `busy` and `recursion` hold shared non-landmark helpers,
and `app` the scenarios, each returning the true seconds per phase.
"""
