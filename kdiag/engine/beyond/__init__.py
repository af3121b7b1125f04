"""Beyond one batch: data-size and batch-size sweeps, memory over many calls, op breakdown, threads."""
