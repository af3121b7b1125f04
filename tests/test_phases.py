"""Phase attribution: synthetic call trees with known durations, then the real rules on
the installed Keras 3 and tf-keras."""

from __future__ import annotations

import cProfile
import dataclasses
import importlib.util
import json
import os
import pstats
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kdiag.datamodel.profile import EAGER, INPUT, OTHER, PHASES, TFDATA, TRACING
from kdiag.engine import phases
from kdiag.engine.phases import Landmark, PhaseBreakdown, RuleSet
from kdiag.engine.phases.matching import Matcher

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # tests/ holds the synthetic_phases package
    sys.path.insert(0, str(HERE))

from synthetic_phases import app  # noqa: E402

PKG = "synthetic_phases/"

#: Landmarks matching the synthetic package, one module per phase.
RULES = RuleSet(
    name="synthetic",
    framework="tests/synthetic_phases",
    description="one module per phase",
    landmarks=(
        Landmark("input handling", PKG + "loader.py", "*"),
        Landmark("tf.data pipeline", PKG + "pipeline.py", "build"),
        Landmark("tf.data pipeline", PKG + "pipeline.py", "build_in_trace"),
        Landmark("tf.data pipeline", PKG + "pipeline.py", "walk_from_pipeline"),
        Landmark("tf.data pipeline", PKG + "pipeline.py", "Dataset.map"),
        Landmark("tracing", PKG + "tracer.py", "*"),
        Landmark("graph execution", PKG + "runtime.py", "*"),
        Landmark("eager op dispatch", PKG + "eager.py", "op"),
        Landmark("callbacks & progress bar", PKG + "callbacks.py", "pong"),
        Landmark("output conversion", PKG + "output.py", "*"),
    ),
)


def profile(fn, *args, timer=None):
    """Profile fn(*args); the synthetic tests pass time.thread_time, the clock of their
    busy loops, so that a loaded machine cannot stretch them."""
    profiler = cProfile.Profile(timer) if timer else cProfile.Profile()
    profiler.enable()
    result = fn(*args)
    profiler.disable()
    return pstats.Stats(profiler), result


def assert_adds_up(breakdown: PhaseBreakdown, stats: pstats.Stats):
    total = sum(entry[2] for entry in stats.stats.values())
    assert breakdown.total_s == pytest.approx(total, abs=1e-12)
    assert abs(sum(p.seconds for p in breakdown.phases) - breakdown.total_s) < 1e-9
    assert [p.name for p in breakdown.phases] == list(PHASES)
    assert sum(p.share for p in breakdown.phases) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------
# Synthetic call trees
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(app.SCENARIOS))
def test_synthetic_phases_recover_the_truth(scenario):
    stats, truth = profile(app.SCENARIOS[scenario], timer=time.thread_time)
    breakdown = phases.attribute(stats, RULES, calls=1)
    assert_adds_up(breakdown, stats)
    got = {p.name: p.seconds for p in breakdown.phases}
    for name in PHASES:
        expected = truth.get(name, 0.0)
        if expected:
            assert got[name] == pytest.approx(expected, rel=0.05), (name, got)
        else:  # nothing but call overhead and the scenario's own few lines
            assert got[name] < 0.03 * breakdown.total_s, (name, got)


def test_top_functions_name_the_busy_code_by_qualified_name():
    stats, _ = profile(app.qualified, timer=time.thread_time)
    breakdown = phases.attribute(stats, RULES, top=3)
    by_phase = {}
    for top in breakdown.top_functions:
        by_phase.setdefault(top.phase, []).append(top)
    tfdata = by_phase["tf.data pipeline"]
    assert tfdata[0].qualname == "spin" and tfdata[0].file == PKG + "busy.py"
    # a decorated method is keyed by its decorator's line; the source resolves it
    assert "Dataset.map" in [t.qualname for t in tfdata]
    for tops in by_phase.values():
        own = [t.own_s for t in tops]
        assert own == sorted(own, reverse=True) and len(own) <= 3


def test_qualname_at_resolves_decorators_closures_and_lambdas(tmp_path):
    source = textwrap.dedent(
        """\
        import functools

        def deco(f):
            return f

        class Outer:
            class Inner:
                @deco
                @deco
                def method(self):
                    def closure():
                        return lambda: 1
                    return closure

        def top():
            pass
        """
    )
    path = tmp_path / "mod.py"
    path.write_text(source)
    namespace = {}
    exec(compile(source, str(path), "exec"), namespace)
    method = namespace["Outer"].Inner.method
    closure = method(None)
    lam = closure()
    for fn in (method, closure, lam, namespace["top"]):
        code = fn.__code__
        assert phases.qualname_at(str(path), code.co_firstlineno, code.co_name) == fn.__qualname__
    assert phases.qualname_at(str(path), 8, "method") == "Outer.Inner.method"  # decorator line
    assert phases.qualname_at(str(path), 8, "other") is None
    assert phases.qualname_at(str(tmp_path / "missing.py"), 1, "f") is None


def test_landmark_matching_rules():
    rules = RuleSet(
        "t",
        "t",
        "",
        (
            Landmark(TFDATA, "pkg/", "*"),
            Landmark(INPUT, "pkg/", "get"),
            Landmark(TRACING, "pkg/mod.py", "*"),
            Landmark(EAGER, "pkg/gen_*.py", "*"),
        ),
    )
    m = Matcher(rules)
    site = "/usr/lib/python3/site-packages/"
    assert m.match((site + "pkg/other.py", 1, "f")).phase == TFDATA
    assert m.match((site + "pkg/other.py", 1, "get")).phase == INPUT  # bare name beats *
    assert m.match((site + "pkg/mod.py", 1, "f")).phase == TRACING  # file beats directory
    assert m.match((site + "pkg/gen_ops.py", 1, "f")).phase == EAGER  # glob beats directory
    assert m.match((site + "pkgx/mod.py", 1, "f")) is None
    assert m.match(("~", 0, "<built-in method builtins.len>")) is None
    assert phases.relative_path(site + "pkg/mod.py") == "pkg/mod.py"
    assert phases.relative_path(str(HERE / PKG / "busy.py")).endswith(PKG + "busy.py")


def test_cycles_without_roots_and_empty_profiles_terminate():
    class FakeStats:
        pass

    a, b, c = ("/x/a.py", 1, "a"), ("/x/b.py", 1, "b"), ("~", 0, "<built-in method len>")
    fake = FakeStats()
    fake.stats = {
        # a <-> b call each other and nothing calls them: a cycle with no way in
        a: (1, 2, 0.3, 0.9, {b: (1, 1, 0.1, 0.4)}),
        b: (1, 2, 0.5, 0.9, {a: (1, 1, 0.5, 0.6)}),
        c: (3, 3, 0.2, 0.2, {a: (1, 1, 0.0, 0.0), b: (2, 2, 0.0, 0.0)}),  # zero edge times
    }
    breakdown = phases.attribute(fake, RULES)
    assert abs(sum(p.seconds for p in breakdown.phases) - 1.0) < 1e-9
    assert breakdown.seconds(OTHER) == pytest.approx(1.0)

    fake.stats = {}
    empty = phases.attribute(fake, RULES)
    assert empty.total_s == 0.0 and all(p.seconds == 0.0 for p in empty.phases)


def test_breakdown_is_plain_data():
    stats, _ = profile(app.nested, timer=time.thread_time)
    breakdown = phases.attribute(stats, RULES, calls=3)
    data = json.loads(json.dumps(dataclasses.asdict(breakdown)))
    assert data["calls"] == 3 and data["ruleset"] == "synthetic"
    assert [p["name"] for p in data["phases"]] == list(PHASES)
    assert breakdown.per_call_s() == pytest.approx(breakdown.total_s / 3)
    assert breakdown.share(INPUT) == pytest.approx(breakdown.seconds(INPUT) / breakdown.total_s)


def test_rule_sets_and_table():
    assert phases.select_rules(legacy=False) is phases.KERAS3_TF
    assert phases.select_rules(legacy=True) is phases.TF_KERAS_2
    assert phases.get_rules("tf-2.0-2.3") is phases.TF_2_0_TO_2_3
    with pytest.raises(KeyError):
        phases.get_rules("nope")
    for rules in phases.RULESETS.values():
        rows = phases.rules_table(rules)
        assert len(rows) == len(rules.landmarks)
        order = [PHASES.index(phase) for phase, _, _ in rows]
        assert order == sorted(order)
        assert all(isinstance(cell, str) for row in rows for cell in row)
        assert len(set(rules.landmarks)) == len(rules.landmarks), "duplicate landmark"
    with pytest.raises(ValueError):
        Landmark("no such phase", "a.py", "f")
    with pytest.raises(ValueError):
        Landmark(OTHER, "a.py", "f")  # other Python is what no landmark claims


def test_phases_module_imports_neither_tensorflow_nor_rich():
    code = (
        "import sys, kdiag.engine.phases; "
        "bad = [m for m in ('tensorflow', 'rich', 'keras', 'tf_keras') if m in sys.modules]; "
        "sys.exit(str(bad) if bad else 0)"
    )
    root = str(HERE.parent)
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env=env)


# ---------------------------------------------------------------------------------------
# The real rule sets against the installed packages
# ---------------------------------------------------------------------------------------


def _need(module):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")


@pytest.mark.parametrize("rules", [phases.KERAS3_TF, phases.TF_KERAS_2], ids=lambda r: r.name)
def test_landmarks_exist_in_the_installed_packages(rules):
    """Every path exists and every named function is defined there (no TF import)."""
    _need("tensorflow")
    _need("keras" if rules is phases.KERAS3_TF else "tf_keras")
    assert phases.stale_landmarks(rules) == []


def test_stale_landmarks_are_reported():
    _need("tensorflow")
    rules = RuleSet(
        "stale",
        "",
        "",
        (
            Landmark(TRACING, "tensorflow/python/framework/func_graph.py", "no_such_function"),
            Landmark(TRACING, "tensorflow/python/no_such_dir/", "*"),
            Landmark(TRACING, "no_such_package_xyz/mod.py", "f"),
        ),
    )
    problems = phases.stale_landmarks(rules)
    assert len(problems) == 3, problems


_PROFILE_PREDICT = textwrap.dedent(
    """\
    import cProfile, sys
    import numpy as np
    import tensorflow as tf
    keras = tf.keras  # Keras 3, or tf-keras under TF_USE_LEGACY_KERAS=1
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(2, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    x = np.random.default_rng(0).random((32, 4)).astype("float32")
    for _ in range(2):
        model.predict(x, verbose=0)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(3):
        model.predict(x, verbose=0)
    profiler.disable()
    profiler.dump_stats(sys.argv[1])
    print(type(model).__module__)
    """
)


def _profile_predict_in_subprocess(tmp_path, legacy):
    script = tmp_path / "profile_predict.py"
    script.write_text(_PROFILE_PREDICT)
    out = tmp_path / "predict.prof"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="-1")
    env["TF_USE_LEGACY_KERAS"] = "1" if legacy else "0"
    done = subprocess.run(
        [sys.executable, str(script), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return pstats.Stats(str(out)), done.stdout


def _check_predict_breakdown(breakdown, stats):
    assert_adds_up(breakdown, stats)
    for name in (TFDATA, INPUT, TRACING):
        assert breakdown.seconds(name) > 0.0, name
    assert breakdown.share(OTHER) < 0.5
    # predict re-creates its tf.data pipeline and traces its map functions on every call
    assert breakdown.share(TFDATA) + breakdown.share(TRACING) > 0.5
    assert any(t.phase == TFDATA for t in breakdown.top_functions)


@pytest.mark.slow
def test_keras3_predict_profile_matches_the_rules():
    _need("keras")
    import numpy as np

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    if not keras.__version__.startswith("3"):
        pytest.skip("Keras 3 is not the installed keras")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(2, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
    x = np.random.default_rng(0).random((32, 4)).astype("float32")
    for _ in range(2):
        model.predict(x, verbose=0)
    stats, _ = profile(lambda: [model.predict(x, verbose=0) for _ in range(3)])
    breakdown = phases.attribute(stats, phases.KERAS3_TF, calls=3)
    _check_predict_breakdown(breakdown, stats)


@pytest.mark.slow
def test_tf_keras_predict_profile_matches_the_rules(tmp_path):
    _need("tensorflow")
    _need("tf_keras")
    stats, stdout = _profile_predict_in_subprocess(tmp_path, legacy=True)
    assert stdout.strip().startswith("tf_keras"), stdout
    breakdown = phases.attribute(stats, phases.TF_KERAS_2, calls=3)
    _check_predict_breakdown(breakdown, stats)
