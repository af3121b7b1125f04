"""The cProfile pass on real Keras predict: .prof files, phases, traces, compile() comparison."""

import logging
import pstats
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from kdiag.api import inspect
from kdiag.datamodel.profile import GRAPH, INPUT, TFDATA, TRACING
from kdiag.engine.phases.profiling import capture_tf_warnings, file_stem
from kdiag.render.terminal import render
from kdiag.views import compile_phase_deltas

from conftest import FAST


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    options = {**FAST, "min_calls": 3, "profile": True}
    report = inspect(example="tiny", strategies=["predict", "predict-compiled", "tf-function"],
                     profile_strategies=["tf-function"], profile_calls=3, out_dir=out, **options)
    return report, out


@pytest.mark.slow
def test_predict_before_and_after_compile_and_extra_strategies_are_profiled(profiled):
    report, out = profiled
    assert [p.scenario for p in report.profiles] == ["predict", "predict (compiled)", "tf.function"]
    for profile in report.profiles:
        for path in (profile.prof_path, profile.cold_prof_path):
            assert path.startswith(str(out))
            stats = pstats.Stats(path)  # what snakeviz opens
            assert stats.total_tt > 0


@pytest.mark.slow
def test_phases_add_up_and_keras3_predict_is_pipeline_and_tracing(profiled):
    report, _ = profiled
    predict = report.profile("predict")
    assert sum(p.share for p in predict.phases) == pytest.approx(1.0, abs=0.01)
    shares = {p.name: p.share for p in predict.phases}
    assert shares[INPUT] + shares[TFDATA] + shares[TRACING] > 0.5
    assert shares[GRAPH] < 0.10  # the model's own execution is a small part of predict
    # ms per call are the shares of the *unprofiled* median
    ms_total = sum(p.ms_per_call for p in predict.phases)
    assert ms_total == pytest.approx(report.strategy("predict").median_s * 1e3, rel=0.01)


@pytest.mark.slow
def test_traces_per_call_counts_concrete_functions(profiled):
    report, _ = profiled
    assert report.profile("predict").traces_per_call > 0  # Keras 3 predict traces its tf.data map functions
    assert report.profile("predict").cold_traces >= report.profile("predict").traces_per_call
    steady = report.profile("tf.function")
    assert steady.traces_per_call == 0 and steady.cold_traces >= 1  # traced once, then cached


@pytest.mark.slow
def test_terminal_shows_phases_side_by_side_with_the_compile_delta(profiled):
    report, _ = profiled
    text = render(report, width=160, verbose=True)  # the .prof files are listed with --verbose
    for phrase in ("Where the time goes", "tf.data pipeline", "predict (compiled)", "compile() Δ", "kdiag view"):
        assert phrase in text
    rows = compile_phase_deltas(report)
    assert [r.phase for r in rows][:3] == [INPUT, TFDATA, TRACING]


def test_retracing_warnings_are_captured_not_printed(capsys):
    with capture_tf_warnings() as seen:
        logging.getLogger("tensorflow").warning("5 out of the last 5 calls to <f> triggered tf.function retracing.")
    assert seen == ["5 out of the last 5 calls to <f> triggered tf.function retracing."]
    captured = capsys.readouterr()
    assert "retracing" not in captured.err + captured.out


def test_profile_file_names_are_safe():
    assert file_stem("predict (compiled)") == "predict-compiled"
    assert file_stem("XLA (jit_compile)") == "xla-jit_compile"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_view_server_serves_the_profile_on_localhost_and_stops(profiled):
    report, _ = profiled
    port = _free_port()
    url = f"http://127.0.0.1:{port}/snakeviz/" + urllib.parse.quote(report.profiles[0].prof_path, safe="")
    process = subprocess.Popen([sys.executable, "-m", "kdiag", "view", report.profiles[0].prof_path, "--server",
                                "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 30
        body = None
        while time.time() < deadline and body is None:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    body = response.read().decode()
            except OSError:
                time.sleep(0.3)
        assert body is not None and "snakeviz" in body.lower()
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert process.returncode is not None
    # Stopping kdiag stopped snakeviz: nothing serves on that port any more.
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)


def test_view_refuses_what_is_not_a_profile(tmp_path):
    import io

    from kdiag.cli import Env, main

    (tmp_path / "x.prof").write_text("not a profile")
    env = Env(io.StringIO(), io.StringIO())
    assert main(["view", str(tmp_path / "x.prof")], env) == 2
    assert "not a cProfile" in env.stderr.getvalue()
    assert main(["view", str(tmp_path / "missing.prof")], env) == 2


def test_view_binds_localhost_unless_told():
    from pathlib import Path

    from kdiag.view import snakeviz_command

    assert snakeviz_command(Path("a.prof"), True, None, 8080)[3:5] == ["-H", "127.0.0.1"]
    assert "0.0.0.0" in snakeviz_command(Path("a.prof"), True, "0.0.0.0", 8080)
