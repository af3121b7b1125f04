"""tf.data pipeline landmarks (one decorated method, matched by qualified name)."""

from synthetic_phases import busy, recursion, runtime


def build(own, execute_s):
    busy.spin(own)
    runtime.execute(execute_s)


def build_in_trace(seconds):
    busy.spin(seconds)


def walk_from_pipeline(depth, seconds):
    recursion.walk(depth, seconds)


class Dataset:
    @busy.passthrough
    def map(self, seconds):
        busy.spin(seconds)

    def helper(self, seconds):  # not a landmark: same file, other name
        busy.spin(seconds)
