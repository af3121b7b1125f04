"""`tf.function(..., jit_compile=True)`: the graph compiled by XLA."""

from __future__ import annotations

from kdiag.datamodel import strategies as ids
from kdiag.engine.intake.limits import StrategyCost
from kdiag.engine.runtimes.base import ChunkCall, Strategy, serving_function, to_host
from kdiag.errors import NotApplicable, first_line


def prepare(ctx):
    fn = serving_function(ctx, jit_compile=True)
    x = ctx.keras_inputs()
    try:
        to_host(fn(x))  # fails here if XLA cannot compile an op; the timing run re-traces nothing
    except Exception as exc:
        raise NotApplicable(f"XLA could not compile the model: {first_line(exc)}") from exc
    # That probe call warmed the function, so give the timing run a fresh one: its first
    # call must include the XLA compilation, as it does for the user.
    fn = serving_function(ctx, jit_compile=True)
    return lambda: to_host(fn(x))


def prepare_chunked(ctx) -> ChunkCall:
    # XLA compiles once per input shape: a new chunk size pays a compilation on its first call.
    fn = serving_function(ctx, jit_compile=True)
    return lambda arrays: to_host(fn(ctx.pack(arrays)))


# Its graph captures the loaded instance's variables as resources: no copy of the weights.
STRATEGY = Strategy(ids.XLA, prepare, cost=StrategyCost(0), prepare_chunked=prepare_chunked)
