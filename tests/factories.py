"""Hand-built Reports for tests that need no TensorFlow (diagnose, renderers, compare).

Measurements are made of five samples laid out so that the median and the IQR are
exactly the ones asked for (percentiles interpolate linearly, as numpy does):
``[m - iqr, m - iqr/2, m, m + iqr/2, m + iqr]`` has median m and IQR = iqr.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from kdiag.datamodel.measurement import Measurement
from kdiag.datamodel.profile import PHASES, TopFunction
from kdiag.datamodel.profile import PhaseRow, ProfileResult
from kdiag.datamodel.report import (Environment, Finding, InputInfo, ModelInfo, OutputCheck, Report, RunSettings,
                          StrategyResult)

ATOL = 1e-5
RTOL = 1e-4
#: The home folder of the factory environment (report.md shows it as ~).
HOME = "/home/alice"


def measurement(name: str, median_ms: float, iqr_ms: float = 0.0, first_call_ms: Optional[float] = None,
                source: str = "python", calls: int = 5) -> Measurement:
    m, q = median_ms / 1e3, iqr_ms / 1e3
    if calls == 5:
        samples = (m - q, m - q / 2, m, m + q / 2, m + q)
    else:  # evenly spread over [m - q, m + q]: the median stays m
        samples = tuple(m - q + 2 * q * i / (calls - 1) for i in range(calls)) if calls > 1 else (m,)
    first = (first_call_ms if first_call_ms is not None else median_ms * 10) / 1e3
    return Measurement(strategy=name, first_call_s=first, samples_s=samples, source=source)


def check(reference: str = "predict", max_abs_diff: float = 0.0, matches: bool = True, detail: str = "") -> OutputCheck:
    return OutputCheck(reference, max_abs_diff, ATOL, RTOL, matches, detail)


def strategy(name: str, median_ms: Optional[float] = None, iqr_ms: float = 0.0, *, matches: Optional[bool] = True,
             max_abs_diff: float = 0.0, reference: str = "predict", snippet: Optional[str] = None,
             available: bool = True, reason: str = "", detail: str = "", notes: Sequence[str] = (),
             first_call_ms: Optional[float] = None, calls: int = 5) -> StrategyResult:
    """A measured strategy (median_ms given), or an unavailable one (available=False, reason).

    matches: True/False for an outputs check; None for "not checked".
    """
    if not available:
        return StrategyResult(name, snippet or f"# {name}", False, reason or "not available: test")
    outputs = None if matches is None else check(reference, max_abs_diff, matches, detail)
    return StrategyResult(name, snippet if snippet is not None else f"run_{_ident(name)}(x)", True,
                          measurement=measurement(name, median_ms, iqr_ms, first_call_ms, calls=calls),
                          outputs=outputs,
                          notes=list(notes))


def _ident(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def profile(scenario: str, shares: Dict[str, float], median_ms: Optional[float], *, inflation: float = 2.0,
            calls: int = 10, traces_per_call: float = 0.0, cold_traces: int = 0,
            retracing_warnings: Sequence[str] = (), top_functions: Iterable[TopFunction] = ()) -> ProfileResult:
    """A profile whose phases have the given shares (the rest of PHASES get 0)."""
    profiled_ms = (median_ms or 1.0) * inflation
    rows = []
    for name in PHASES:
        share = shares.get(name, 0.0)
        scale = median_ms if median_ms else profiled_ms
        rows.append(PhaseRow(name, share, share * scale / 1e3, share * profiled_ms / 1e3))
    cold = [PhaseRow(r.name, r.share, r.profiled_per_call_s * 5, r.profiled_per_call_s * 5) for r in rows]
    stem = scenario.replace(" ", "-").replace("(", "").replace(")", "")
    return ProfileResult(
        scenario=scenario,
        prof_path=f"/runs/tiny/{stem}.prof",
        cold_prof_path=f"/runs/tiny/{stem}.cold.prof",
        calls=calls,
        ruleset="keras3-tensorflow",
        profiled_per_call_s=profiled_ms / 1e3,
        unprofiled_median_s=median_ms / 1e3 if median_ms else None,
        cold_call_profiled_s=profiled_ms * 5 / 1e3,
        phases=rows,
        cold_phases=cold,
        top_functions=list(top_functions),
        traces_per_call=traces_per_call,
        cold_traces=cold_traces,
        retracing_warnings=list(retracing_warnings),
    )


def top_function(phase: str, qualname: str, own_ms_total: float, file: str = "keras/src/x.py",
                 line: int = 10) -> TopFunction:
    return TopFunction(phase, qualname, file, line, own_ms_total / 1e3)


def environment(**changes) -> Environment:
    fields = dict(
        python="3.11.7", os="Linux-6.1-x86_64-with-glibc2.36", cpu_model="Test CPU @ 2.0GHz", cpu_cores=2,
        tensorflow="2.21.0", tensorflow_git="v2.21.0-0-gabcdef", keras="3.15.0", keras_backend="tensorflow",
        legacy_keras=False, intra_op_threads=0, inter_op_threads=0,
        onednn="default (on for x86 Linux builds since TF 2.9)", cuda_build="not a CUDA build", gpus=[],
        os_distribution="Debian GNU/Linux 12 (bookworm)", tensorflow_install="binary (pip, tensorflow)", numpy="2.4.6",
        gpu_models=[], home=HOME, python_paths=[f"{HOME}/.venv/lib/python3.11/site-packages", "/usr/lib/python3.11",
                                                f"{HOME}/.venv"],
    )
    fields.update(changes)
    return Environment(**fields)


def model_info(**changes) -> ModelInfo:
    fields = dict(
        name="tiny", source="example:tiny", format="example", parameters=13,
        inputs=[InputInfo("x", [8, 4], "float32", "uniform [0, 1), seed 0")], batch_size=8, load_time_s=0.05,
        compile_config="adam / mse (the example's own compile)", keras_model=True,
    )
    fields.update(changes)
    return ModelInfo(**fields)


def settings(**changes) -> RunSettings:
    fields = dict(command="kdiag inspect --example tiny", budget_s=1.0, min_calls=5, max_wall_s=6.0,
                  batch_size=8, timestamp="2025-01-01T00:00:00+00:00")
    fields.update(changes)
    return RunSettings(**fields)


def report(strategies: Sequence[StrategyResult], profiles: Sequence[ProfileResult] = (),
           findings: Sequence[Finding] = (), model: Optional[ModelInfo] = None, notes: Sequence[str] = (),
           env: Optional[Environment] = None, **setting_changes) -> Report:
    return Report(
        settings=settings(**setting_changes),
        environment=env or environment(),
        model=model or model_info(),
        strategies=list(strategies),
        profiles=list(profiles),
        findings=list(findings),
        notes=list(notes),
    )


def typical_keras3(**overrides: Tuple[float, float]) -> List[StrategyResult]:
    """The shape of a Keras 3 run on a small model: predict ~60 ms, direct paths ~1 ms.

    overrides: name -> (median_ms, iqr_ms) to change a strategy's figures.
    """
    figures = {
        "predict": (60.0, 2.0),
        "predict (compiled)": (61.0, 2.0),
        "predict_on_batch": (0.7, 0.02),
        "model(x) eager": (1.2, 0.05),
        "tf.function": (0.25, 0.01),
        "concrete function": (0.2, 0.01),
        "XLA (jit_compile)": (0.22, 0.01),
        "SavedModel serve": (0.3, 0.01),
        "TFLite": (0.05, 0.002),
    }
    figures.update(overrides)
    return [strategy(name, median, iqr) for name, (median, iqr) in figures.items()]
