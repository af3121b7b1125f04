"""The child of kdiag.engine.beyond.threads: a SavedModel timed with a given number of intra-op threads.

Run as `python -I THIS_FILE SAVED_MODEL_DIR INPUTS.npz THREADS`, from a private empty folder.
TensorFlow fixes its thread pools when it initialises, so the count is set here, before the first
op, in a process of its own. The protocol is lines on stdin and stdout, one JSON object each:

- the child loads the model, makes one untimed call, and prints {"ready": true, "first_call_s": ...}
  or {"error": "..."};
- "run N" makes N timed calls and prints {"samples_s": [...]};
- "quit", or the end of stdin, ends it.

This file runs in a bare interpreter, so its top level imports the standard library only.
"""

import json
import os
import sys
import time


def say(**fields):
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def main(argv):
    directory, inputs_path, threads = argv[1], argv[2], int(argv[3])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import numpy as np
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        with np.load(inputs_path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        restored = tf.saved_model.load(directory)
        signatures = dict(getattr(restored, "signatures", {}) or {})
        signature = signatures.get("serving_default") or (next(iter(signatures.values())) if signatures else None)
        if signature is None:
            say(error="the SavedModel has no serving signature")
            return 0
        wanted = sorted(signature.structured_input_signature[1])
        if set(wanted) != set(arrays):
            if len(wanted) != 1 or len(arrays) != 1:
                say(error=f"the serving signature takes {wanted}, not the model's inputs {sorted(arrays)}")
                return 0
            arrays = {wanted[0]: next(iter(arrays.values()))}
        tensors = {name: tf.constant(array) for name, array in arrays.items()}

        def call():
            for value in signature(**tensors).values():
                value.numpy()  # on the host before the clock stops

        began = time.perf_counter()
        call()
        say(ready=True, first_call_s=time.perf_counter() - began,
            threads=tf.config.threading.get_intra_op_parallelism_threads())
    except Exception as exc:  # reported by the parent as "not measured"
        say(error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300])
        return 0
    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        samples = []
        for _ in range(int(words[1])):
            began = time.perf_counter()
            call()
            samples.append(time.perf_counter() - began)
        say(samples_s=samples)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
