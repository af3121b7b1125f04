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
from pathlib import Path
from typing import List, Optional, Tuple

from kdiag import format as fmt
from kdiag import views
from kdiag.datamodel.report import InputInfo, Report, StrategyResult
from kdiag.datamodel.strategies import PREDICT, split_snippet
from kdiag.views import verdict as verdicts
from kdiag.views.verdict import repro_unavailable_reason as unavailable_reason
from kdiag.version import __version__

FILE_NAME = "repro.py"
#: The script's body, and the one it writes when there is nothing to reproduce: template files
#: (package data), filled with string.Template.
_TEMPLATES = Path(__file__).with_name("templates")

# kdiag's synthetic integers when no consuming layer bounds them (kdiag.engine.intake.inputs.DEFAULT_INT_RANGE,
# which a renderer may not import); the report states the range it used when a layer did.
_DEFAULT_INT_RANGE = (0, 10)


def render(report: Report) -> str:
    """The script's text; a short one that explains itself when the report has nothing to compare."""
    why = unavailable_reason(report)
    if why is not None:
        return _template("repro-cannot.py.tmpl").substitute(name=repr(report.model.name), why=repr(why),
                                                            version=__version__)
    verdict = verdicts.verdict(report)
    predict, best = verdict.predict, verdict.fix
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
        best_name=repr(best.name),
        measured_ratio=repr(float(f"{predict.median_s / best.median_s:.4g}")),
        predict_function=_prepared("prepare_predict", predict),
        best_function=_prepared("prepare_best", best),
    )
    return _template("repro.py.tmpl").substitute(values)


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
    verdict = verdicts.verdict(report)
    headline = (f"kdiag measured predict at {fmt.duration(predict.median_s)} per call and {best.name}, the best "
                f"drop-in fix, at {fmt.duration(best.median_s)}")
    judged = verdict.judged
    if not judged.enough_calls:
        headline += f" ({judged.calls_text}: too few calls for kdiag to compare them)."
    elif not judged.beyond_noise:
        headline += ", within the noise of each other."
    else:
        headline += f": predict was {views.times_text(predict.median_s / best.median_s)} than it, with matching outputs."
    if verdict.runtime_gain is not None and verdict.recommends:
        headline += (f" ({verdict.runtime.name} was faster still, outside Keras "
                     f"({verdicts.leaving_keras(verdict.runtime)}); this script does not run it: see the report.)")
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
        f"Reproduce kdiag's measurement of {model.name} ({source}): model.predict against {best.name}, the "
        "drop-in fix kdiag recommends. The last line says whether the ratio reproduced (within a factor of 2).",
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
        "Prints both medians, then \"reproduced: ...\" or \"not reproduced: ...\" with the two ratios; exit "
        "status 2 with one line on stderr when it cannot run.", 100)
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _template(name: str) -> string.Template:
    return string.Template((_TEMPLATES / name).read_text(encoding="utf-8"))


# --- the short repro at the top of report.md and report.html ---------------------------------

#: Timed calls per path in the short repro, at most; fewer on a slow model (about 2 s of predict).
SHORT_CALLS = 20


def short_script(report: Report) -> Optional[str]:
    """A self-contained script of about twenty lines, for the top of an issue: load the model, build a
    batch of the report's shapes, prepare the verdict's drop-in fix as its snippet does, and time both
    (medians of warm calls). None when the report has nothing to reproduce. repro.py does the same with
    kdiag's method (interleaved rounds, outputs checked) and says whether it reproduced."""
    if unavailable_reason(report) is not None:
        return None
    verdict = verdicts.verdict(report)
    fix = verdict.fix
    setup, call = split_snippet(fix.snippet)
    expression = call.split("  #", 1)[0].strip()
    expression = expression[len("y = "):] if expression.startswith("y = ") else expression
    calls = max(3, min(SHORT_CALLS, int(2.0 / verdict.predict.median_s)))
    imports = {line for line in setup.splitlines() if line.startswith(("import ", "from "))}
    imports |= {"import timeit", "import numpy as np", "import tf_keras as keras" if report.environment.legacy_keras
                else "import keras"}
    lines = (['import os', 'os.environ["TF_USE_LEGACY_KERAS"] = "1"  # the run used tf-keras', ""]
             if report.environment.legacy_keras else [])
    lines += sorted(imports, key=lambda line: line.split()[1]) + [""] + _model_lines(report)
    lines += _input_lines(report.model.inputs)
    body = [line for line in setup.splitlines() if line and not line.startswith(("import ", "from "))]
    lines += ["", f"# {fix.name}, the drop-in fix, as the report shows it"] + body if body else []
    ratio = verdict.predict.median_s / fix.median_s
    lines += ["", "", f"def median_s(call, n={calls}):", "    call()  # the first call traces or builds: not timed",
              "    return sorted(timeit.repeat(call, number=1, repeat=n))[n // 2]", "", "",
              "predict = median_s(lambda: model.predict(x, verbose=0))", f"fix = median_s(lambda: {expression})",
              f'print(f"predict / {fix.name}: {{predict / fix:.3g}}x (kdiag measured {ratio:.3g}x)")']
    return "\n".join(lines)


def _model_lines(report: Report) -> List[str]:
    source = report.model.source
    if source.startswith("example:"):
        name = source[len("example:"):]
        return ["from kdiag.engine.intake.examples import get_example  # kdiag's built-in example", "",
                f"model = get_example({name!r}).build()"]
    return [f"model = keras.models.load_model({Path(source).name!r}, compile=False)  # the file measured"]


def _input_lines(inputs: List[InputInfo]) -> List[str]:
    """x as kdiag fed it: one array, or a dict by input name; random values of the report's shapes."""
    arrays = [(item.name, _array(item)) for item in inputs]
    if len(arrays) == 1:
        return ["rng = np.random.default_rng(0)", f"x = {arrays[0][1]}  # a batch of the shape measured"]
    return ["rng = np.random.default_rng(0)", "x = {  # a batch of the shapes measured"] + [
        f"    {name!r}: {array}," for name, array in arrays] + ["}"]


def _array(item: InputInfo) -> str:
    shape = tuple(item.shape)
    span = _int_range(item)
    if span is not None:
        return f"rng.integers({span[0]}, {span[1]}, {shape!r}).astype({item.dtype!r})"
    if item.dtype in ("float32", "float64"):
        return f"rng.random({shape!r}, dtype=np.{item.dtype})"
    return f"rng.random({shape!r}).astype({item.dtype!r})"
