"""TensorFlow releases other than the running one: the machinery `kdiag inspect --tf` and `kdiag bisect` run on.

- `index`: which releases the package index serves for this Python (pip's own answer).
- `environments`: the cached environments, one per (release, Python), and kdiag copied into each.
- `processes`: children in their own process group, stopped whole (SIGTERM, then SIGKILL).
- `children`: one ordinary kdiag run under a release, in a `python -I` child; its Report read back.
- `provider`: a release → the interpreter that runs it (tests substitute the running one).
- `pooling`: one release's runs pooled into one Report.

The runs themselves (alternating rounds, merging, the search) are steps of the run:
kdiag.steps.rounds, kdiag.steps.tf_versions and kdiag.steps.bisect. This package sits between them
and the engine: it drives whole kdiag runs in other interpreters (kdiag.engine.keras_child's
machinery), and builds the environments they run in.
"""
