"""One run of `kdiag inspect`, as declared steps over a mutable RunState (kdiag.steps.pipeline).

Each module is one step (load, timing, cpp, profile, beyond, training, report) or what the steps
share: `state` (RunState, the progress counter) and `budget` (the one reader of the time limit).
A step asks the Budget what it may spend and tells it what it cut; it never reads the deadline.

Runs made of other runs, in child processes: `keras_sides` (--keras), `tf_versions` (--tf) and
`bisect` (kdiag bisect), the last two taking turns between TensorFlow releases (`rounds`).
"""
