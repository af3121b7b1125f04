"""repro.py: the standalone reproduction in every run folder, and folded into report.md.

The fast tests read the script as text and import it as a module (its top level imports the
standard library only); the slow ones run it in a subprocess on saved .keras and .h5 models,
with their weights and with --synthetic (the architecture alone, random weights).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

import factories as fx
from kdiag.datamodel import strategies as ids
from kdiag.render import markdown as md
from kdiag.render import repro
from test_snippets import free_names


def with_real_snippets(strategies):
    return [dataclasses.replace(s, snippet=ids.BY_NAME[s.name].snippet) for s in strategies]


def typical(**overrides):
    return fx.report(with_real_snippets(fx.typical_keras3(**overrides)))


def load_script(text: str, tmp_path: Path, name: str = "repro_under_test"):
    path = tmp_path / f"{name}.py"
    path.write_text(text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # not __main__: defines, runs nothing
    return module


def run_script(path: Path, *args, timeout=300, quiet: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3") if quiet else {
        k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "KDIAG_SHOW_TF_LOGS")}
    env.pop("PYTHONPATH", None)  # standalone: it must not need kdiag on the path
    return subprocess.run([sys.executable, str(path), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=path.parent)


# --- the text -----------------------------------------------------------------------


@pytest.mark.parametrize("best", ids.DROP_IN_FIXES)
def test_the_script_is_complete_python_whichever_fix_is_recommended(best, tmp_path):
    figures = {name: (60.0, 1.0) for name in (s.name for s in ids.PYTHON_STRATEGIES)}
    figures[best] = (0.1, 0.001)
    report = fx.report(with_real_snippets([fx.strategy(n, m, q) for n, (m, q) in figures.items()]))
    text = repro.render(report)
    compile(text, "repro.py", "exec")
    assert free_names(text) == set(), "a name the script uses is defined nowhere"
    assert "$" not in text.replace("$(", ""), "a template placeholder was left unfilled"
    module = load_script(text, tmp_path)
    assert module.BEST_NAME == best and module.TOLERANCE == 2.0
    assert module.KDIAG_RATIO == pytest.approx(600.0)
    setup, call = ids.split_snippet(ids.BY_NAME[best].snippet)
    # the timed call is the report's own snippet's last paragraph, inside call()
    assert "    def call():\n" + textwrap.indent(call, " " * 8) + "\n        return y\n" in text
    short = repro.short_script(report)
    compile(short, "short", "exec")
    assert free_names(short) == set() and max(len(line) for line in short.splitlines()) <= 88


def test_the_last_line_says_whether_it_reproduced_within_the_tolerance(tmp_path):
    module = load_script(repro.render(typical()), tmp_path)  # kdiag measured 300x
    assert module.verdict(310.0, True) == ("reproduced: predict is 310x slower than concrete function (kdiag "
                                           "measured 300x; within the 2x tolerance)")
    assert module.verdict(120.0, True) == ("not reproduced: predict is 120x slower than concrete function here "
                                           "(kdiag measured 300x): the two ratios are 2.50x apart, beyond the 2x "
                                           "tolerance")
    assert module.verdict(0.5, True).startswith("not reproduced: predict is 2.00x faster than concrete function")
    assert module.verdict(300.0, False).endswith("its outputs differ here")


def test_the_free_name_check_sees_into_functions():
    assert free_names("def f():\n    return g\n") == {"g"}
    assert free_names("def f():\n    import numpy as np\n    return np\n") == set()


def test_the_script_times_the_verdicts_drop_in_fix_never_a_runtime():
    """repro.py timed predict against TFLite while finding 1 said concrete function, and its ratio did
    not reproduce (3,705x against 13,988x) with no comment: now it times the verdict's fix."""
    from kdiag.views import verdict

    report = fx.report(with_real_snippets(fx.typical_keras3() + [fx.strategy("C++ (TF C API)", 0.01, 0.001)]))
    assert verdict.verdict(report).fix.name == "concrete function"
    assert "BEST_NAME = 'concrete function'" in repro.render(report)
    differs = fx.report(with_real_snippets(fx.typical_keras3()))
    differs = dataclasses.replace(differs, strategies=[
        dataclasses.replace(s, outputs=fx.check(matches=False, max_abs_diff=1.0)) if s.name == "concrete function"
        else s for s in differs.strategies])
    text = repro.render(differs)
    assert "BEST_NAME = 'XLA (jit_compile)'" in text  # never one whose outputs differ


def test_inputs_are_the_reports_shapes_dtypes_and_integer_ranges(tmp_path):
    model = fx.model_info(inputs=[
        fx.InputInfo("pixels", [8, 28, 28], "float32", "uniform floats in [0, 1)"),
        fx.InputInfo("tokens", [8, 16], "int32", "integers in [0, 5000) (Embedding 'emb' accepts indices below 5000)"),
        fx.InputInfo("flags", [8, 3], "int64", "user data"),
    ])
    text = repro.render(fx.report(with_real_snippets(fx.typical_keras3()), model=model))
    assert "kdiag ran on the user's own data for flags: pass it with --inputs" in " ".join(text.split())
    module = load_script(text, tmp_path)
    assert module.INPUTS == [
        ("pixels", (8, 28, 28), "float32", None, "uniform floats in [0, 1)"),
        ("tokens", (8, 16), "int32", (0, 5000), "integers in [0, 5000) (Embedding 'emb' accepts indices below 5000)"),
        ("flags", (8, 3), "int64", (0, 10), "user data"),
    ]
    arrays = module.make_inputs(None)
    assert {k: (v.shape, str(v.dtype)) for k, v in arrays.items()} == {
        "pixels": ((8, 28, 28), "float32"), "tokens": ((8, 16), "int32"), "flags": ((8, 3), "int64")}
    assert 0 <= arrays["tokens"].min() and arrays["tokens"].max() < 5000 and arrays["tokens"].max() >= 10


def test_the_script_draws_the_very_values_kdiag_drew(tmp_path):
    import numpy as np
    from kdiag.engine.intake.inputs import InputSpec, synthetic_inputs

    specs = [InputSpec("image", (None, 5, 3), "float32"), InputSpec("tokens", (None, 7), "int32", (0, 300), "emb"),
             InputSpec("ids", (None, 2), "int64"), InputSpec("mask", (None, 4), "bool"),
             InputSpec("half", (None, 6), "float16"), InputSpec("byte", (None, 3), "uint8", (0, 1000), "wide")]
    drawn = synthetic_inputs(specs, {s.name: (2,) + s.shape[1:] for s in specs})
    infos = [fx.InputInfo(name, list(array.shape), str(array.dtype), drawn.descriptions[name])
             for name, array in drawn.arrays.items()]
    script = load_script(repro.render(dataclasses.replace(typical(), model=fx.model_info(inputs=infos))), tmp_path)
    ours = script.make_inputs(None)
    assert list(ours) == list(drawn.arrays)
    for name, array in drawn.arrays.items():
        assert ours[name].dtype == array.dtype and np.array_equal(ours[name], array), name


def test_a_hostile_model_name_stays_inside_the_docstring_and_strings(tmp_path):
    name = 'evil"""\nimport os; os.system("touch pwned")\n"""\\'
    report = dataclasses.replace(typical(), model=fx.model_info(name=name))
    module = load_script(repro.render(report), tmp_path)
    assert module.MODEL_NAME == name
    assert not (tmp_path / "pwned").exists()


def test_the_legacy_flavour_is_set_before_tensorflow_is_imported(tmp_path):
    report = fx.report(with_real_snippets(fx.typical_keras3()), env=fx.environment(legacy_keras=True,
                                                                                  keras="2.21.0"))
    text = repro.render(report)
    assert text.index('os.environ["TF_USE_LEGACY_KERAS"] = "1"') < text.index("import tensorflow")
    assert "import tf_keras as keras" in text and "LEGACY_KERAS = True" in text


@pytest.mark.parametrize("report, why", [
    (fx.report(with_real_snippets([fx.strategy("SavedModel serve", 1.0)]), model=fx.model_info(keras_model=False)),
     "plain SavedModel"),
    (fx.report(with_real_snippets([fx.strategy("predict", available=False, reason="failed"),
                                   fx.strategy("concrete function", 1.0)])), "could not measure predict"),
])
def test_a_run_with_nothing_to_compare_gets_a_script_that_says_why(report, why, tmp_path):
    path = tmp_path / "repro.py"
    path.write_text(repro.render(report))
    result = run_script(path)
    assert result.returncode != 0 and why in result.stderr and result.stderr.count("\n") == 1
    assert why in md.render(report)


def _keras_zip(path: Path, config: dict) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
    return path


def _layer(class_name, module="keras.layers", **config):
    return {"module": module, "class_name": class_name, "config": {"name": class_name.lower(), **config}}


@pytest.mark.parametrize("layer, refusal", [
    (_layer("Lambda", function={"class_name": "__lambda__", "config": {"code": "YmFk"}}), "Python code"),
    (_layer("Dense", activation={"class_name": "__lambda__", "config": {"code": "YmFk"}}), "Python code"),
    (_layer("Lambda", function="bad", function_type="lambda"), "Python code"),
    (_layer("Doubler", module="mypackage.layers"), "module 'mypackage.layers'"),
])
def test_code_in_the_config_is_refused_before_anything_loads(layer, refusal, tmp_path):
    """As kdiag refuses it; the script fails with one line before it even imports TensorFlow."""
    inner = _layer("Functional", module="keras.src.models.functional", layers=[layer])
    model = _keras_zip(tmp_path / "hostile.keras", inner)
    path = tmp_path / "repro.py"
    path.write_text(repro.render(typical()))
    for args in ([model], ["--synthetic", model]):
        result = run_script(path, *args, timeout=60)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("repro.py: error: ") and refusal in result.stderr
        assert result.stderr.count("\n") == 1 and "--unsafe" in result.stderr
        assert "Traceback" not in result.stderr


def test_a_damaged_or_weightless_file_is_one_line(tmp_path):
    path = tmp_path / "repro.py"
    path.write_text(repro.render(typical()))
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    (tmp_path / "arch.json").write_text("{}")
    for args, says in [(["broken.keras"], "cannot read the model config"), (["arch.json"], "add --synthetic"),
                       (["--synthetic", "arch.json"], "holds no Keras model config"),
                       (["missing.h5"], "does not exist")]:
        result = run_script(path, *args, timeout=60)
        assert result.returncode == 2 and says in result.stderr and "Traceback" not in result.stderr, result.stderr


# --- where it goes ----------------------------------------------------------------------


def test_report_md_opens_with_the_short_script_and_names_repro_py():
    report = typical()
    text = md.render(report)
    summary = text[:text.index("## Findings")]
    assert "**Reproduce** with TensorFlow alone" in summary and "`repro.py` in the run folder" in summary
    assert repro.short_script(report) in summary
    assert "#!/usr/bin/env python3" not in text  # repro.py itself is in the run folder, not pasted


def test_save_run_writes_repro_py_next_to_the_reports(tmp_path):
    from kdiag.runfolder import save_run

    report = typical()
    save_run(report, tmp_path)
    assert (tmp_path / "repro.py").read_text(encoding="utf-8") == repro.render(report)
    assert {"report.json", "report.md", "repro.py"} <= {p.name for p in tmp_path.iterdir()}


# --- running it ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """A small two-layer model saved as .keras and .h5, kdiag's report on the .keras, and its repro.py."""
    import kdiag
    from kdiag.engine.tf import tf_and_keras

    _, keras = tf_and_keras()
    root = tmp_path_factory.mktemp("repro")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((16,), name="features")
    outputs = keras.layers.Dense(4, activation="softmax")(keras.layers.Dense(8, activation="relu")(inputs))
    model = keras.Model(inputs, outputs, name="small")
    model.save(root / "small.keras")
    model.save(root / "small.h5")
    report = kdiag.inspect(root / "small.keras", batch_size=4, budget_s=0.02, min_calls=2, profile=False,
                           strategies=["predict", "predict_on_batch", "concrete", "tflite"])
    (root / "repro.py").write_text(repro.render(report), encoding="utf-8")
    return root, report


TF_LOG_LINE = ("WARNING: All log messages before absl", "I0000 ", "W0000 ", "E0000 ", "cuda", "oneDNN",
               "WARNING:tensorflow", "UserWarning", "DeprecationWarning")


@pytest.mark.slow
@pytest.mark.parametrize("args", [["small.keras"], ["--synthetic", "small.keras"], ["small.h5"],
                                  ["--synthetic", "small.h5"]], ids=" ".join)
def test_repro_py_runs_on_the_model_file_or_its_architecture_alone(saved_models, args):
    root, report = saved_models
    result = run_script(root / "repro.py", *args, "--budget", "0.02", quiet=False)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    from kdiag.views import verdict

    best = verdict.verdict(report).fix.name
    assert f"outputs: {best} matches predict" in result.stdout
    assert any(line.startswith("predict ") and "median" in line for line in lines)
    assert any(line.startswith(best) and "median" in line for line in lines)
    assert lines[-1].startswith(("reproduced: predict is ", "not reproduced: predict is ")), lines[-1]
    assert "kdiag measured" in lines[-1]
    weights = "random (--synthetic" if "--synthetic" in args else "from small."
    assert weights in lines[0]
    # Not one of TensorFlow's log lines, though nothing here set TF_CPP_MIN_LOG_LEVEL for it.
    assert not [line for line in result.stderr.splitlines() if line.startswith(TF_LOG_LINE) or "tensorflow" in line], \
        result.stderr


@pytest.mark.slow
def test_the_short_script_at_the_top_of_report_md_runs(saved_models):
    root, report = saved_models
    (root / "short.py").write_text(repro.short_script(report), encoding="utf-8")
    result = run_script(root / "short.py", quiet=True)
    assert result.returncode == 0, result.stderr[-3000:]
    from kdiag.views import verdict

    assert f"predict / {verdict.verdict(report).fix.name}: " in result.stdout and "kdiag measured" in result.stdout
