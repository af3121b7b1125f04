"""Every snippet kdiag shows runs as pasted, given only `model` and `x`.

A report states two names up front: `model`, the loaded Keras model, and `x`, the batch as the
user holds it (a NumPy array, or a list or dict of them). Each strategy's snippet, and each
finding's, must run with nothing else defined, and leave in `y` what predict computes, within
the outputs tolerance. The fast tests check that without TensorFlow (names, syntax, which
snippets findings show); the slow ones execute every snippet on every built-in example.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import io
import re
import shutil
import subprocess
import symtable
import sys
from pathlib import Path
from typing import Dict, List, Set

import numpy as np
import pytest

import factories as fx
from kdiag.analysis import diagnose as dg
from kdiag.datamodel import strategies as ids

GIVEN = {"model", "x"}
PYTHON_SNIPPETS = [s for s in ids.ALL_STRATEGIES if s.language == "python"]


def free_names(code: str) -> Set[str]:
    """Names the code reads that it neither defines nor imports, and that are not builtins."""
    top = symtable.symtable(code, "<snippet>", "exec")
    defined = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    free: Set[str] = set()
    tables = [top]
    while tables:
        table = tables.pop()
        for symbol in table.get_symbols():
            name = symbol.get_name()
            if symbol.is_referenced() and (table is top or symbol.is_global()) and name not in defined:
                free.add(name)
        tables.extend(table.get_children())
    return free - set(dir(builtins))


# --- without TensorFlow -------------------------------------------------------------


@pytest.mark.parametrize("identity", PYTHON_SNIPPETS, ids=lambda s: s.key)
def test_python_snippets_need_nothing_but_model_and_x(identity):
    compile(identity.snippet, identity.key, "exec")  # a SyntaxError fails here
    assert free_names(identity.snippet) <= GIVEN, f"{identity.key} uses undefined names"
    setup, call = ids.split_snippet(identity.snippet)
    assert re.search(r"^y = ", call, re.M), "the last paragraph is one call, and leaves the outputs in y"
    assert not re.search(r"^y\b", setup, re.M), "the set-up computes no outputs"
    assert "..." not in identity.snippet and "path" not in free_names(identity.snippet)


@pytest.mark.parametrize("identity", ids.ALL_STRATEGIES, ids=lambda s: s.key)
def test_every_snippet_line_fits_an_80_column_terminal_and_an_issue_column(identity):
    """By construction, not by the renderer: no output ever wraps a line of code."""
    long = [line for line in identity.snippet.splitlines() if len(line) > ids.SNIPPET_WIDTH]
    assert not long, long


def test_the_free_name_check_catches_what_the_old_snippets_got_wrong():
    assert free_names("fn = serve.get_concrete_function()\ny = fn(x)") - GIVEN == {"serve"}
    assert free_names("model = keras.models.load_model(path, compile=False)") == {"keras", "path"}
    assert free_names("import tensorflow as tf\nf = tf.function(lambda x: model(x))\ny = [f(a) for a in x]") == GIVEN
    with pytest.raises(SyntaxError):
        compile("tf.TensorSpec(x.shape[1:] with None batch, x.dtype)", "old", "exec")


def test_snippets_create_every_file_they_read():
    for identity in PYTHON_SNIPPETS:
        assert "'exported'" not in identity.snippet and '"exported"' not in identity.snippet, identity.key
        if "export_dir" in identity.snippet:
            assert "export_dir = tempfile.mkdtemp()" in identity.snippet, identity.key


def _with_real_snippets(strategies):
    return [dataclasses.replace(s, snippet=ids.BY_NAME[s.name].snippet) for s in strategies]


def _reports_that_fire_every_rule_with_advice():
    """One report per rule that recommends code, with the strategies' real snippets."""
    typical = fx.typical_keras3()
    compute_bound = [fx.strategy(n, m, q) for n, (m, q) in {
        "predict": (70.0, 1.0), "predict_on_batch": (40.0, 0.5), "tf.function": (38.0, 0.5),
        "XLA (jit_compile)": (30.0, 0.5), "TFLite": (32.0, 0.5)}.items()]
    return [
        fx.report(_with_real_snippets(typical), profiles=[  # predict-overhead, retracing
            fx.profile("tf.function", {"tracing": 0.8, "graph execution": 0.2}, 0.25, traces_per_call=1.0)]),
        fx.report(_with_real_snippets(fx.typical_keras3(**{"predict (compiled)": (90.0, 3.0)}))),
        fx.report(_with_real_snippets([fx.strategy("predict", 2.0), fx.strategy("model(x) eager", 5.0),
                                       fx.strategy("tf.function", 1.0)])),
        fx.report(_with_real_snippets(typical), model=fx.model_info(
            training_dependent_layers=["dropout (Dropout)"], training_true_max_abs_diff=0.3)),
        fx.report(_with_real_snippets(compute_bound)),
        fx.report(_with_real_snippets(typical + [fx.strategy("C++ (TF C API)", 0.03, 0.001)])),
    ]


def test_findings_show_a_strategy_snippet_or_none():
    """So the slow tests below, which run every strategy snippet, cover every finding's too."""
    snippets = {s.snippet for s in ids.ALL_STRATEGIES}
    with_code: Dict[str, str] = {}
    for report in _reports_that_fire_every_rule_with_advice():
        for finding in dg.diagnose(report):
            assert finding.snippet in snippets | {""}, finding.id
            if finding.snippet:
                with_code[finding.id] = finding.snippet
    assert set(with_code) == {"predict-overhead", "compile-slowdown", "retracing", "eager-slow", "runtime-change"}
    assert "training-dependent-layers" not in with_code  # a note, with no code: kdiag's calls pass training=False


# --- running them -------------------------------------------------------------------


def run_snippet(snippet: str, model, x):
    """Execute in a fresh namespace holding only `model` and `x`; return its `y`."""
    namespace = {"model": model, "x": x}
    with contextlib.redirect_stdout(io.StringIO()):  # model.export() lists its endpoints
        exec(compile(snippet, "<snippet>", "exec"), namespace)
    assert "y" in namespace, "the snippet left no y"
    return namespace["y"]


def assert_outputs_match(y, reference, check) -> None:
    from kdiag.engine.check import compare
    from kdiag.engine.runtimes.base import to_host

    result = compare("predict", reference, to_host(y), atol=check.atol, rtol=check.rtol)
    assert result.matches, f"max |diff| {result.max_abs_diff:g} {result.detail}"


@dataclasses.dataclass
class Run:
    report: object
    model: object
    x: object
    reference: List[np.ndarray]  # predict's outputs on x


def _run(model, x, *args, **options) -> Run:
    """kdiag's report (`kdiag.inspect(*args, **options)`, as briefly as it allows) and predict's outputs."""
    import kdiag
    from kdiag import views
    from kdiag.engine.runtimes.base import to_host

    report = kdiag.inspect(*args, budget_s=0.01, min_calls=1, profile=False, **options)
    assert views.reference_check(report) is not None, "no outputs tolerance to check against"
    return Run(report, model, x, to_host(model.predict(x, verbose=0)))


@pytest.fixture(scope="module", params=["tiny", "mnist-softmax", "mnist-cnn", "lstm"])
def example_run(request) -> Run:
    """The example built and its batch made as kdiag makes them, and kdiag's report on both."""
    from kdiag.engine.intake.inputs import resolve_shapes, synthetic_inputs
    from kdiag.engine.intake.load import load_example
    from kdiag.engine.runtimes.base import StrategyContext

    loaded = load_example(request.param)
    specs = loaded.input_specs
    inputs = synthetic_inputs(specs, resolve_shapes(specs, loaded.default_batch_size, {}))
    x = StrategyContext(loaded, inputs, Path(".")).keras_inputs()
    run = _run(loaded.model, x, example=request.param)  # kdiag builds the same model: same seed, same weights
    assert [list(i.shape) for i in run.report.model.inputs] == [list(a.shape) for a in inputs.arrays.values()]
    return run


def _check_every_snippet(run: Run) -> None:
    from kdiag import views

    check = views.reference_check(run.report)
    ran = []
    for result in run.report.strategies:
        if not result.available or ids.BY_NAME[result.name].language != "python":
            continue
        assert_outputs_match(run_snippet(result.snippet, run.model, run.x), run.reference, check)
        ran.append(result.name)
    for finding in run.report.findings:
        if finding.snippet and (finding.strategy is None or ids.BY_NAME[finding.strategy].language == "python"):
            assert_outputs_match(run_snippet(finding.snippet, run.model, run.x), run.reference, check)
    # Every Python strategy ran here, so every snippet was run: none may hide behind "unavailable".
    assert ran == [s.name for s in ids.PYTHON_STRATEGIES]


@pytest.mark.slow
def test_every_snippet_on_every_example_computes_what_predict_computes(example_run):
    _check_every_snippet(example_run)


@pytest.mark.slow
@pytest.mark.parametrize("structure", ["dict", "list"])
def test_snippets_take_a_dict_or_a_list_of_inputs(keras, structure):
    keras.utils.set_random_seed(0)
    features = keras.Input((4,), name="features")
    tokens = keras.Input((3,), name="tokens", dtype="int32")
    embedded = keras.layers.Flatten()(keras.layers.Embedding(10, 2)(tokens))
    joined = keras.layers.Concatenate()([features, embedded])
    outputs = {"score": keras.layers.Dense(2)(joined), "aux": keras.layers.Dense(1)(features)}
    rng = np.random.default_rng(0)
    arrays = {"features": rng.random((5, 4), dtype=np.float32), "tokens": rng.integers(0, 10, (5, 3), dtype=np.int32)}
    if structure == "dict":
        model, x = keras.Model({"features": features, "tokens": tokens}, outputs), arrays
    else:
        model, x = keras.Model([features, tokens], outputs), [arrays["features"], arrays["tokens"]]
    _check_every_snippet(_run(model, x, model, arrays))  # kdiag takes several inputs as a dict by name


# --- the C++ snippet ----------------------------------------------------------------


def _tensorflow_lib() -> Path:
    import importlib.util

    return Path(list(importlib.util.find_spec("tensorflow").submodule_search_locations)[0])


@pytest.mark.slow
def test_the_cpp_snippet_builds_with_its_own_command_and_runs_the_exported_tiny_example(tmp_path, tf):
    """Exempt from the Python run, but complete: built as its comment says, it computes predict's value."""
    if shutil.which("c++") is None or not (_tensorflow_lib() / "include" / "tensorflow" / "c" / "c_api.h").is_file():
        pytest.skip("no C++ compiler or no TensorFlow C API header here")
    from kdiag.engine.intake.load import load_example

    build = [line[len("// "):] for line in ids.CPP.snippet.splitlines() if line.startswith(("// TF=", "// LIBS=",
                                                                                             "// c++ "))]
    assert len(build) == 3, ids.CPP.snippet
    (tmp_path / "run.cc").write_text(ids.CPP.snippet)
    compiled = subprocess.run(["bash", "-c", " && ".join(build)], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)
    assert compiled.returncode == 0, compiled.stderr[-2000:]
    model = load_example("tiny").model
    model.export(str(tmp_path / "exported"), verbose=False)
    ran = subprocess.run(["./run"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr[-2000:]
    value = float(re.search(r"y\[0\] = (\S+)", ran.stdout).group(1))
    expected = model.predict(np.full((32, 4), 0.5, np.float32), verbose=0)[0, 0]
    assert value == pytest.approx(float(expected), abs=1e-5)


LEGACY_RUN = """
import contextlib, io, sys
from kdiag.datamodel import strategies as ids
from kdiag.engine.check import compare
from kdiag.engine.intake.inputs import resolve_shapes, synthetic_inputs
from kdiag.engine.intake.load import load_example
from kdiag.engine.runtimes.base import StrategyContext, to_host
from pathlib import Path

loaded = load_example("tiny")
assert type(loaded.model).__module__.startswith("tf_keras"), type(loaded.model)
specs = loaded.input_specs
x = StrategyContext(loaded, synthetic_inputs(specs, resolve_shapes(specs, loaded.default_batch_size, {})),
                    Path(".")).keras_inputs()
reference = to_host(loaded.model.predict(x, verbose=0))
for identity in ids.PYTHON_STRATEGIES:
    namespace = {"model": loaded.model, "x": x}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(identity.snippet, identity.key, "exec"), namespace)
    check = compare("predict", reference, to_host(namespace["y"]))
    print(identity.key, "match" if check.matches else f"DIFFER {check.max_abs_diff}")
"""


@pytest.mark.slow
def test_every_snippet_runs_under_tf_keras_too(tmp_path):
    """The snippets use no `keras` name, so they run unchanged on a tf-keras model (TF_USE_LEGACY_KERAS=1)."""
    import os

    root = str(Path(__file__).resolve().parent.parent)  # this checkout's kdiag, not an installed one
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=root)
    result = subprocess.run([sys.executable, "-c", LEGACY_RUN], capture_output=True, text=True, timeout=300,
                            env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.split(" ")[0] in ids.BY_KEY]
    assert lines == [f"{s.key} match" for s in ids.PYTHON_STRATEGIES], result.stdout


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir() or (__import__("os").cpu_count() or 1) < 2,
                    reason="counts threads in /proc, on a machine with two cores or more")
def test_the_threads_snippet_run_first_gives_tensorflow_one_intra_op_thread(tmp_path):
    """The advice used to be tf.config.threading.set_intra_op_parallelism_threads(1), which raises once the
    model is loaded. TF_NUM_INTRAOP_THREADS, set before TensorFlow starts, shrinks its intra-op pool: the
    process has fewer threads than one without it."""
    from kdiag.analysis.rules.beyond import THREADS_SNIPPET

    work = ("import os\nos.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'\nimport tensorflow as tf\n"
            "a = tf.random.normal((256, 256))\nfor _ in range(20):\n    a = tf.matmul(a, a) / 256.0\n"
            "print(len(os.listdir('/proc/self/task')))\n")
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("TF_NUM_")}

    def threads(code):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                              cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        return int(done.stdout.strip().splitlines()[-1])

    assert threads(THREADS_SNIPPET + "\n" + work) < threads(work)
