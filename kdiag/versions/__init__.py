"""One model under several TensorFlow releases: `kdiag inspect --tf` and `kdiag bisect`.

- `index`: which releases the package index serves for this Python (pip's own answer).
- `environments`: the cached environments, one per (release, Python), and kdiag copied into each.
- `processes`: children in their own process group, stopped whole (SIGTERM, then SIGKILL).
- `children`: one ordinary kdiag run under a release, in a `python -I` child; its Report read back.
- `provider`: a release → the interpreter that runs it (tests substitute the running one).
- `pooling`: one release's runs pooled into one Report.
- `rounds`: releases in alternating rounds, merged into one Report (`Report.tf_versions`).
- `bisect`: the binary search for the first slow release, and its measurements.
"""
