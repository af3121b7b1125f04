"""repro.py: a standalone script that reproduces a report's headline with TensorFlow alone.

A TensorFlow maintainer asks for "standalone code to reproduce", and has neither kdiag nor the
user's weights. `render(report)` writes a script that needs only TensorFlow (with its Keras, or
tf-keras when the run used it; LiteRT when installed and the recommended path is TFLite). It
loads the model file given on its command line, or with `--synthetic` rebuilds the model from
the file's architecture config alone with random weights, builds inputs of the report's shapes
and dtypes, checks that the recommended path computes predict's outputs, and times the two
with kdiag's method (a cold call and a warm-up each, then interleaved rounds, medians).

The two paths' code is the report's own snippets: their set-up runs once, their last paragraph
is the timed call. Like kdiag, the script refuses a model whose config holds Python code
(a Lambda layer) or names a module outside Keras, unless given --unsafe.

Standard library only, like every renderer: the script is text made from the Report.
"""

from __future__ import annotations

import re
import string
import textwrap
from typing import List, Optional, Tuple

from kdiag import format as fmt
from kdiag import views
from kdiag.datamodel.report import InputInfo, Report, StrategyResult
from kdiag.datamodel.strategies import BY_NAME, PREDICT, PREDICT_COMPILED, split_snippet
from kdiag.version import __version__

FILE_NAME = "repro.py"

# kdiag's synthetic integers when no consuming layer bounds them (kdiag.engine.intake.inputs.DEFAULT_INT_RANGE,
# which a renderer may not import); the report states the range it used when a layer did.
_DEFAULT_INT_RANGE = (0, 10)


def render(report: Report) -> str:
    """The script's text; a short one that explains itself when the report has nothing to compare."""
    why = unavailable_reason(report)
    if why is not None:
        return _CANNOT.substitute(name=repr(report.model.name), why=repr(why), version=__version__)
    predict = views.usable(report, PREDICT.name)
    best = recommended(report)
    same = best.name == PREDICT.name
    env = report.environment
    values = dict(
        docstring=_docstring(report, predict, best),
        legacy=("os.environ[\"TF_USE_LEGACY_KERAS\"] = \"1\"  # the run used tf-keras (Keras 2)\n"
                if env.legacy_keras else ""),
        keras_import="import tf_keras as keras" if env.legacy_keras else "import keras",
        keras_name="tf-keras" if env.legacy_keras else "Keras",
        legacy_flag=repr(bool(env.legacy_keras)),
        model_name=repr(report.model.name),
        example=repr(report.model.source[len("example:"):] if report.model.source.startswith("example:") else None),
        inputs=_inputs_literal(report.model.inputs),
        budget=repr(report.settings.budget_s),
        min_calls=repr(report.settings.min_calls),
        atol=repr(_tolerance(report)[0]),
        rtol=repr(_tolerance(report)[1]),
        intra=repr(env.intra_op_threads),
        inter=repr(env.inter_op_threads),
        predict_name=repr(PREDICT.name),
        best_name=repr(None if same else best.name),
        measured_ratio=repr(None if same else predict.median_s / best.median_s),
        predict_function=_prepared("prepare_predict", predict),
        best_function=_prepared("prepare_best", best) if not same else
        "prepare_best = None  # predict was the fastest path with matching outputs\n",
    )
    return _TEMPLATE.substitute(values)


def recommended(report: Report) -> Optional[StrategyResult]:
    """The fastest strategy with matching outputs (views.fastest_matching) that the script can run.

    Not the C++ floor (a program of its own), nor predict after compile(): the script loads the
    model without compiling it, and compiling only to call predict is nothing to recommend.
    """
    best = views.fastest_matching(report)
    if best is None or _runnable(best):
        return best
    return next((r for r in views.measured(report) if views.outputs_match(r) and _runnable(r)), None)


def _runnable(result: StrategyResult) -> bool:
    return result.name != PREDICT_COMPILED.name and _language(result) == "python"


def _language(result: StrategyResult) -> str:
    identity = BY_NAME.get(result.name)
    return identity.language if identity is not None else "python"


def _prepared(function: str, result: StrategyResult) -> str:
    """The snippet as `function(model, x)`: its set-up, then `call()` that runs its last paragraph."""
    setup, call = split_snippet(result.snippet)
    lines = [f"def {function}(model, x):",
             f'    """{result.name}, as the report shows it: the set-up once; call() is one call."""']
    if setup:
        lines.append(textwrap.indent(setup, "    "))
    lines += ["", "    def call():", textwrap.indent(call, "        "), "        return y", "", "    return call", ""]
    return "\n".join(lines)


def _tolerance(report: Report) -> Tuple[float, float]:
    check = views.reference_check(report)
    return (check.atol, check.rtol) if check is not None else (1e-5, 1e-4)


def _inputs_literal(inputs: List[InputInfo]) -> str:
    rows = []
    for item in inputs:
        rows.append(f"    ({item.name!r}, {tuple(item.shape)!r}, {item.dtype!r}, {_int_range(item)!r}, "
                    f"{item.value_range!r}),")
    return "\n".join(rows)


def _int_range(item: InputInfo) -> Optional[Tuple[int, int]]:
    match = re.search(r"integers in \[(-?\d+), (-?\d+)\)", item.value_range)
    if match:
        return int(match.group(1)), int(match.group(2))
    return _DEFAULT_INT_RANGE if re.match(r"u?int", item.dtype) else None


def _docstring(report: Report, predict: StrategyResult, best: StrategyResult) -> str:
    env = report.environment
    model = report.model
    keras = f"tf-keras {env.keras}" if env.legacy_keras else f"Keras {env.keras}"
    if best.name == PREDICT.name:
        headline = (f"kdiag measured predict at {fmt.duration(predict.median_s)} per call, and no other path "
                    "with matching outputs was faster.")
    else:
        headline = (f"kdiag measured predict at {fmt.duration(predict.median_s)} per call and {best.name} at "
                    f"{fmt.duration(best.median_s)}: predict took {fmt.ratio(predict.median_s / best.median_s)} "
                    "the time, with matching outputs.")
    floor = views.fastest_matching(report)
    if floor is not None and floor is not best:
        headline += f" ({floor.name} was faster still; this script does not run it: see the report.)"
    needs = "TensorFlow" + (" and tf-keras" if env.legacy_keras else "")
    if "litert" in best.snippet.lower():
        needs += " (and LiteRT, pip install ai-edge-litert, if you have it: else tf.lite runs it)"
    source = ("kdiag's built-in example " + model.source[len("example:"):] if model.source.startswith("example:")
              else f"a {model.format} model")
    measured = ("the example, saved with model.save()" if model.source.startswith("example:")
                else "the model file that was measured")
    usage = [f"    python repro.py MODEL               # {measured} (.keras or .h5)",
             "    python repro.py --synthetic MODEL   # its architecture only, random weights: no weights needed;",
             "                                        # MODEL may also be the architecture alone, as JSON",
             "                                        # (model.to_json(), or config.json from inside a .keras)"]
    if model.source.startswith("example:"):
        usage.insert(0, "    python repro.py                     # rebuilds the example (needs kdiag installed)")
    paragraphs = [
        f"Reproduce kdiag's measurement of {model.name} ({source}): model.predict against "
        f"{'itself' if best.name == PREDICT.name else best.name}.",
        headline + f" Measured with TensorFlow {env.tensorflow}, {keras}, Python {env.python}, on {env.cpu_model} "
        f"({env.cpu_cores} cores); batch size {model.batch_size}. Generated by kdiag {__version__}.",
        f"Needs only {needs}. Usage:",
    ]
    own = [i.name for i in model.inputs if i.value_range == "user data"]
    if own:
        paragraphs.insert(2, f"kdiag ran on the user's own data for {', '.join(own)}: pass it with --inputs, or the "
                             "script draws random values of the same shape and dtype.")
    text = "\n\n".join(textwrap.fill(p, 100) for p in paragraphs) + "\n\n" + "\n".join(usage) + "\n\n" + textwrap.fill(
        "Options: --inputs FILE.npz (your own batch, by input name; .npy for one input), --budget SECONDS "
        "(timed seconds per path), --unsafe (load a model whose config holds Python code: it will run). "
        "Prints both medians and their ratio; exit status 2 with one line on stderr when it cannot run.", 100)
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def unavailable_reason(report: Report) -> Optional[str]:
    """Why this report has no measurement to reproduce, or None when it has one."""
    if not report.model.keras_model:
        return "the model is a plain SavedModel: it has no Keras predict to compare with"
    if views.usable(report, PREDICT.name) is None:
        return "kdiag could not measure predict on this model, so there is no headline to reproduce"
    if recommended(report) is None:
        return "no strategy that Python can run was measured with outputs matching predict's"
    return None


_CANNOT = string.Template('''\
#!/usr/bin/env python3
"""kdiag ${version} could not write a reproduction for this run: it says why when run."""
import sys

sys.exit("repro.py: error: " + ${name} + ": " + ${why})
''')


_TEMPLATE = string.Template('''\
#!/usr/bin/env python3
"""${docstring}
"""

import argparse
import json
import os
import re
import statistics
import sys
import time
import zipfile

${legacy}os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up log lines

MODEL_NAME = ${model_name}
LEGACY_KERAS = ${legacy_flag}  # the run used tf-keras (Keras 2) rather than Keras 3
EXAMPLE = ${example}  # kdiag's built-in example, when the run used one
# name, shape (batch axis first), dtype, integer range, and how kdiag made the values
INPUTS = [
${inputs}
]
BUDGET_S = ${budget}  # timed seconds per path, at least MIN_CALLS calls
MIN_CALLS = ${min_calls}
ROUNDS = 5  # the budget is spread over interleaved rounds, so machine drift hits both paths alike
ATOL, RTOL = ${atol}, ${rtol}  # outputs match when |diff| <= ATOL + RTOL * |predict's|
INTRA_OP_THREADS, INTER_OP_THREADS = ${intra}, ${inter}  # 0: TensorFlow's default
PREDICT_NAME = ${predict_name}
BEST_NAME = ${best_name}  # the recommended path; None when it is predict itself
KDIAG_RATIO = ${measured_ratio}


class Refused(Exception):
    """A problem to report in one line, with exit status 2."""


# --- the model -------------------------------------------------------------------------


def read_config(path):
    """The architecture config of a .keras file, an .h5 file or a JSON file: nothing from it runs."""
    lower = path.lower()
    try:
        if lower.endswith(".keras"):
            with zipfile.ZipFile(path) as archive:
                return json.loads(archive.read("config.json"))
        if lower.endswith((".h5", ".hdf5")):
            import h5py  # installed with TensorFlow

            with h5py.File(path, "r") as handle:
                raw = handle.attrs.get("model_config")
            if raw is None:
                raise Refused(f"{path} holds no model_config: it is a weights-only file")
            return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
        if lower.endswith(".json"):
            with open(path, encoding="utf-8") as handle:
                config = json.load(handle)
            return json.loads(config) if isinstance(config, str) else config
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise Refused(f"cannot read the model config in {path} ({type(exc).__name__}: {exc})") from None
    raise Refused(f"{path}: give a .keras, .h5 or .json (architecture) file")


def refuse_code(config, path):
    """Refuse, as kdiag does, a config that would run Python code or import a module outside Keras."""
    stack = [config]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            kind = value.get("class_name")
            if kind in ("Lambda", "__lambda__") or any(
                    key.endswith("function_type") and item == "lambda" for key, item in value.items()):
                raise Refused(f"{path} holds Python code (a Lambda layer or a serialized lambda), which would run "
                              "when the model is built; if you trust this file, re-run with --unsafe")
            module = value.get("module")
            if isinstance(module, str) and module.split(".")[0] not in ("keras", "tf_keras", "builtins"):
                raise Refused(f"{path} needs code from outside Keras (module {module!r}): this script cannot "
                              "load custom objects; if you trust the file and have that module, re-run with --unsafe")
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def checked_config(path, synthetic, unsafe):
    """The file's architecture config, read before anything in the file runs, and refused when it
    holds code; None when there is no file (kdiag's example) or --unsafe skips the check."""
    if path is None:
        return None
    if not os.path.exists(path):
        raise Refused(f"{path} does not exist")
    if path.lower().endswith(".json") and not synthetic:
        raise Refused(f"{path} holds an architecture without weights: add --synthetic to use random weights")
    if unsafe and not synthetic:
        return None
    config = read_config(path)
    if not unsafe:
        refuse_code(config, path)
    if not isinstance(config, dict) or "class_name" not in config:
        raise Refused(f"{path} holds no Keras model config")
    return config


def load_model(path, config, synthetic, unsafe):
    """The model: loaded from the file, rebuilt from its config with random weights, or kdiag's example."""
    ${keras_import}

    if path is None:
        return build_example(keras)
    try:
        if not synthetic:
            return keras.models.load_model(path, compile=False, safe_mode=not unsafe)
        keras.utils.set_random_seed(0)  # the same random weights on every run
        if not LEGACY_KERAS and (path.lower().endswith((".h5", ".hdf5")) or "module" not in config):
            # An .h5 file's config, or a Keras 2-era one: Keras 3 reads those only through the legacy
            # loader that keras.models.load_model uses for .h5 files (it has no public name).
            from keras.src.legacy.saving import saving_utils

            return saving_utils.model_from_config(config)
        return keras.models.model_from_json(json.dumps(config))
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise Refused(f"{path} could not be {'rebuilt' if synthetic else 'loaded'} by ${keras_name} "
                      f"({type(exc).__name__}: {first})") from None


def build_example(keras):
    if EXAMPLE is None:
        raise Refused("give the model file: python repro.py MODEL (or --synthetic MODEL)")
    try:
        from kdiag.engine.intake.examples import get_example
    except ImportError:
        raise Refused(f"this run used kdiag's built-in example {EXAMPLE!r}: install kdiag, or save the example "
                      "where kdiag is installed and pass the file: python -c \\"from kdiag.engine.intake.examples import "
                      f"get_example; get_example('{EXAMPLE}').build().save('{EXAMPLE}.keras')\\"") from None
    return get_example(EXAMPLE).build()


# --- the inputs ------------------------------------------------------------------------


def make_inputs(inputs_file):
    """Arrays by input name: the user's file, else values drawn as kdiag drew them."""
    import numpy as np

    if inputs_file is not None:
        try:
            loaded = np.load(inputs_file)  # no pickles: allow_pickle stays False
            arrays = dict(loaded) if hasattr(loaded, "files") else {INPUTS[0][0]: loaded}
            missing = [name for name, *_ in INPUTS if name not in arrays]
            if missing:
                raise Refused(f"{inputs_file} has no array named {', '.join(missing)}")
            return {name: np.asarray(arrays[name], dtype=dtype) for name, _, dtype, _, _ in INPUTS}
        except (OSError, ValueError, TypeError) as exc:
            raise Refused(f"cannot use {inputs_file} as inputs ({type(exc).__name__}: {exc})") from None
    rng = np.random.default_rng(0)  # kdiag's seed, and its order of inputs: the same values kdiag used
    arrays = {}
    for name, shape, dtype, int_range, _ in INPUTS:
        dtype = np.dtype(dtype)
        if dtype.kind in "iu":
            bounds = np.iinfo(dtype)
            low, high = max(int_range[0], int(bounds.min)), min(int_range[1], int(bounds.max) + 1)
            arrays[name] = rng.integers(low, high, size=shape, dtype=dtype)
        elif dtype.kind == "b":
            arrays[name] = rng.integers(0, 2, size=shape, dtype=bool)
        elif dtype in (np.float32, np.float64):
            arrays[name] = rng.random(shape, dtype=dtype)
        elif dtype.kind == "f":  # float16 and the like: drawn as float32
            arrays[name] = rng.random(shape, dtype=np.float32).astype(dtype)
        else:
            raise Refused(f"input {name!r} has dtype {dtype}, which this script cannot draw: pass --inputs FILE")
    return arrays


def pack(model, arrays):
    """The arrays as the model takes them: one array, a list, or a dict by input name."""
    try:
        declared = model.input
    except (AttributeError, ValueError):  # a Sequential that was never called: one input
        declared = None
    names = [name for name, *_ in INPUTS]
    if isinstance(declared, dict):
        unknown = sorted(set(declared) - set(arrays))
        if unknown:
            raise Refused(f"the model takes inputs {', '.join(unknown)}, which the report does not list")
        return {key: arrays[key] for key in declared}
    if isinstance(declared, (list, tuple)) and (len(declared) != 1 or isinstance(declared, list)):
        if len(declared) != len(names):
            raise Refused(f"the model takes {len(declared)} inputs, the report lists {len(names)}")
        return [arrays[name] for name in names]
    if len(names) != 1:
        raise Refused(f"the model takes one input, the report lists {len(names)}")
    return arrays[names[0]]


# --- the two paths: the report's snippets --------------------------------------------------


${predict_function}

${best_function}

def to_host(value):
    """Outputs as a flat list of NumPy arrays (dict values by key), copied to host memory."""
    import numpy as np

    if isinstance(value, dict):
        # output_2 before output_10, as kdiag orders them
        keys = sorted(value, key=lambda k: [int(p) if p.isdigit() else p for p in re.split(r"(\\d+)", str(k))])
        return [array for key in keys for array in to_host(value[key])]
    if isinstance(value, (list, tuple)):
        return [array for item in value for array in to_host(item)]
    return [value.numpy() if hasattr(value, "numpy") else np.asarray(value)]


def max_diff(reference, candidate):
    """The largest |diff|, and whether every element is within ATOL + RTOL * |reference|."""
    import numpy as np

    if len(reference) != len(candidate):
        return float("inf"), False
    worst, matches = 0.0, True
    for ref, got in zip(reference, candidate):
        ref = np.asarray(ref, dtype=np.float64)
        got = np.asarray(got, dtype=np.float64).reshape(ref.shape)
        if ref.size:
            diff = np.abs(got - ref)
            worst = max(worst, float(diff.max()))
            matches = matches and bool(np.all(diff <= ATOL + RTOL * np.abs(ref)))
    return worst, matches


# --- timing: kdiag's method -------------------------------------------------------------


def measure(calls, budget_s, min_calls, rounds=ROUNDS):
    """A cold call and a warm-up per path, then interleaved rounds until each path has spent
    budget_s on at least min_calls timed calls (or 6x the budget); the timed samples per path."""
    samples = {name: [] for name in calls}
    spent = dict.fromkeys(calls, 0.0)
    for name, call in calls.items():
        call()  # cold: tracing, conversion and first-call work, not timed here
        start = time.perf_counter()
        call()  # warm-up
        spent[name] += time.perf_counter() - start

    def done(name):
        enough = sum(samples[name]) >= budget_s and len(samples[name]) >= min_calls
        return enough or (spent[name] >= 6 * budget_s and bool(samples[name]))

    while not all(done(name) for name in calls):
        for name, call in calls.items():
            in_round = 0.0
            while not done(name) and (in_round == 0.0 or in_round < budget_s / rounds):
                start = time.perf_counter()
                call()
                elapsed = time.perf_counter() - start
                samples[name].append(elapsed)
                spent[name] += elapsed
                in_round += elapsed
    return samples


def duration(seconds):
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    return f"{seconds * 1e3:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"


def times(ratio):
    return f"{ratio:,.0f}x" if ratio >= 100 else f"{ratio:.1f}x" if ratio >= 10 else f"{ratio:.2f}x"


def iqr(values):
    if len(values) < 2:
        return 0.0
    quartiles = statistics.quantiles(values, n=4, method="inclusive")
    return quartiles[2] - quartiles[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description="Time model.predict against the path kdiag recommends.")
    parser.add_argument("model", nargs="?", help="the .keras or .h5 file (with --synthetic: or a JSON config)")
    parser.add_argument("--synthetic", action="store_true",
                        help="rebuild the model from its architecture config with random weights")
    parser.add_argument("--inputs", help="your own batch: .npz by input name, or .npy for one input")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="timed seconds per path")
    parser.add_argument("--unsafe", action="store_true", help="load a model whose config holds Python code")
    args = parser.parse_args(argv)
    if not args.budget > 0 or args.budget > 3600:
        parser.error("--budget takes seconds between 0 and 3600")
    if args.synthetic and args.model is None:
        parser.error("--synthetic needs the MODEL whose architecture to rebuild")
    try:
        config = checked_config(args.model, args.synthetic, args.unsafe)  # before TensorFlow: a refusal is quick
        import tensorflow as tf

        if INTRA_OP_THREADS:
            tf.config.threading.set_intra_op_parallelism_threads(INTRA_OP_THREADS)
        if INTER_OP_THREADS:
            tf.config.threading.set_inter_op_parallelism_threads(INTER_OP_THREADS)
        model = load_model(args.model, config, args.synthetic, args.unsafe)
        x = pack(model, make_inputs(args.inputs))
    except Refused as exc:
        print(f"repro.py: error: {exc}", file=sys.stderr)
        return 2
    weights = ("random (--synthetic: the architecture only)" if args.synthetic
               else "kdiag's example (seeded)" if args.model is None else f"from {args.model}")
    print(f"{MODEL_NAME}: TensorFlow {tf.__version__}; weights {weights}; inputs "
          + ", ".join(f"{name} {tuple(shape)} {dtype}" for name, shape, dtype, _, _ in INPUTS))
    calls = {PREDICT_NAME: prepare_predict(model, x)}
    if BEST_NAME is not None:
        calls[BEST_NAME] = prepare_best(model, x)
    reference = to_host(calls[PREDICT_NAME]())
    if BEST_NAME is not None:
        worst, matches = max_diff(reference, to_host(calls[BEST_NAME]()))
        print(f"outputs: {BEST_NAME} {'matches' if matches else 'DIFFERS FROM'} predict (max |diff| {worst:.1e})")
    samples = measure({name: (lambda call=call: to_host(call())) for name, call in calls.items()},
                      args.budget, MIN_CALLS)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    width = max(len(name) for name in medians)
    for name, values in samples.items():
        print(f"{name:<{width}}  median {duration(medians[name]):>9}  IQR {duration(iqr(values)):>9}  "
              f"n={len(values)}")
    if BEST_NAME is None:
        print("ratio: 1x (predict was the fastest path with matching outputs when kdiag measured it)")
    else:
        ratio = medians[PREDICT_NAME] / medians[BEST_NAME]
        print(f"ratio: predict / {BEST_NAME} = {times(ratio)} (kdiag measured {times(KDIAG_RATIO)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
''')
