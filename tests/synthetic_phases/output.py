"""Output conversion landmarks."""

from synthetic_phases import busy, eager


def convert(own, op_s):
    busy.spin(own)
    eager.op(op_s)


def convert_shared(seconds):
    busy.work(seconds)
