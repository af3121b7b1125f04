"""The Report: everything one run measured, serialisable to and from JSON.

Renderers only read a Report, and a Report renders nothing: `kdiag.render_report(report, "markdown")`
and `kdiag.print_report(report)` sit at the top (kdiag.api). `kdiag compare` rebuilds Reports from
saved JSON with `Report.from_dict`, so nothing is re-run to re-render.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from kdiag.datamodel.beyond import (BatchSizeSweep, DataSizeSweep, MemoryLoop, MemoryLoops, OpBreakdown,
                                    ThreadsEffect)
from kdiag.datamodel.measurement import Measurement
from kdiag.datamodel.profile import ProfileResult
from kdiag.datamodel.versions import INSTALLED, NIGHTLY, BisectProbe, BisectResult, EnvironmentInfo
from kdiag.errors import KdiagError, first_line
from kdiag.version import __version__

#: 2: times in seconds everywhere (PhaseRow.per_call_s, ProfileResult.profiled_per_call_s), the
#: statistics of a Measurement stored (its samples may be a rounded subset), kdiag_version,
#: and the environment fields of TensorFlow's issue template. Schema 1 files still load.
SCHEMA_VERSION = 2
READABLE_SCHEMAS = (1, 2)


@dataclasses.dataclass(frozen=True)
class OutputCheck:
    """A strategy's outputs against the reference (predict's) on the same inputs."""

    reference: str
    max_abs_diff: float
    atol: float
    rtol: float
    matches: bool
    detail: str = ""  # why it failed beyond the numbers (shape or structure mismatch)
    # Its own outputs on two calls, the cold one and a later one, on the same inputs: whether they
    # agree within the same tolerance (None: called once, or not checked), and by how much.
    repeatable: Optional[bool] = None
    repeat_max_abs_diff: Optional[float] = None
    repeat_detail: str = ""  # why they differ beyond the numbers (a shape that changed)
    # How many of its output values (cold call) are NaN or infinite, of how many.
    nonfinite_values: int = 0
    output_values: int = 0

    @property
    def varies(self) -> bool:
        """Its outputs changed between two calls on the same inputs: it is never recommended."""
        return self.repeatable is False


@dataclasses.dataclass(frozen=True)
class StrategyResult:
    name: str
    snippet: str
    available: bool
    reason: str = ""  # why it is not available / not applicable
    measurement: Optional[Measurement] = None
    outputs: Optional[OutputCheck] = None
    notes: List[str] = dataclasses.field(default_factory=list)  # captured warnings
    # predict timed again beside each later group of strategies (kdiag.steps.plan): the drift check.
    # Its figures stay those of `measurement`, timed beside predict (compiled). A re-timing has no cold
    # call: its first_call_s is its first call there, predict being warm by then (also among its samples).
    retimed: List[Measurement] = dataclasses.field(default_factory=list)

    @property
    def median_s(self) -> Optional[float]:
        return self.measurement.median_s if self.measurement else None


@dataclasses.dataclass(frozen=True)
class InputInfo:
    name: str
    shape: List[Optional[int]]  # as used, batch axis included
    dtype: str
    value_range: str  # how the synthetic values were drawn, or "user data"


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    name: str
    source: str  # the path, or "example:NAME"
    format: str  # "keras", "h5", "savedmodel", "example"
    parameters: Optional[int]
    inputs: List[InputInfo]
    batch_size: int
    load_time_s: float
    compile_config: str  # what "predict (compiled)" was compiled with, and where that came from
    keras_model: bool  # False for a plain SavedModel: Keras-only strategies are not applicable
    # Layers whose output depends on `training` (Dropout, BatchNormalization, ...), and how
    # far model(x, training=True) strays from the reference outputs: measured, not assumed.
    training_dependent_layers: List[str] = dataclasses.field(default_factory=list)
    training_true_max_abs_diff: Optional[float] = None
    # The absolute folder holding the model file or SavedModel ("" for an example or an object),
    # so report.md can show it as <model-dir>.
    directory: str = ""
    # Why the file looks saved by Keras 2 (or 1), e.g. "its keras_version attribute is '2.2.4'";
    # empty when nothing says so. Such a file may run differently under Keras 3: `--keras both`.
    keras2_signs: List[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Finding:
    """One diagnosis: what was measured, what to do, and the gain measured on this model."""

    id: str  # stable, e.g. "predict-overhead"
    severity: str  # "high", "medium", "low", "info"
    title: str
    evidence: List[str]  # the measured numbers behind it, as sentences
    advice: str
    snippet: str  # the code of the better strategy ("" when there is none to show)
    strategy: Optional[str] = None  # the recommended strategy's name, when there is one
    measured_speedup: Optional[float] = None  # baseline median / recommended median, measured
    outputs_match: Optional[bool] = None  # of the recommended strategy
    kind: str = ""  # a key of FINDING_KINDS: where it stands in the order to act on; "" in older reports


#: What the user should do, in order: the kinds of finding, each with the heading the reports give it.
#: Findings come in this order (kdiag.analysis.registry gives every rule its kind).
FINDING_KINDS = (
    ("correctness", "Correctness: a call you would make computes different outputs"),
    ("drop-in", "Drop-in fixes: the same process, the same model object"),
    ("backfires", "Advice that backfires on this model"),
    ("memory", "Memory over many calls"),
    ("runtime", "Runtime changes (leaving Keras) and tuning"),
    ("note", "Worth knowing (nothing to change)"),
    ("noise", "How firm the figures are"),
)


@dataclasses.dataclass(frozen=True)
class Environment:
    python: str
    os: str
    cpu_model: str
    cpu_cores: int
    tensorflow: str
    tensorflow_git: str
    keras: str
    keras_backend: str
    legacy_keras: bool
    intra_op_threads: int
    inter_op_threads: int
    onednn: str
    cuda_build: str  # CUDA/cuDNN versions TensorFlow was built with (tf.sysconfig.get_build_info())
    gpus: List[str]
    # Fields of TensorFlow's bug template ("" or empty: not recorded, e.g. a schema 1 report).
    os_distribution: str = ""  # PRETTY_NAME of /etc/os-release, or the platform module's best
    tensorflow_install: str = ""  # "binary (pip)", "binary (conda)", "source (...)": how TF was installed
    numpy: str = ""
    gpu_models: List[str] = dataclasses.field(default_factory=list)  # "name, memory" per GPU
    # Where paths are redacted from in report.md: the home folder (~) and the Python install and
    # site-packages folders (<python>). Recorded with the run so that rendering stays a pure function.
    home: str = ""
    python_paths: List[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class RunSettings:
    command: str
    budget_s: float
    min_calls: int
    max_wall_s: float
    batch_size: int
    timestamp: str
    time_limit_s: float = 0.0  # the whole run's limit; 0: none (and in reports from before it existed)
    elapsed_s: Optional[float] = None  # loading to findings, as measured; the report's writing is not in it
    redact_paths: bool = True  # report.md shows ~, <python> and <model-dir> for local paths (--no-redact)
    # --precision: timing stopped once the median's 95% interval was within ±this of it; None in reports
    # written before it existed, whose strategies spent their whole budget.
    precision: Optional[float] = None


@dataclasses.dataclass(frozen=True)
class VersionRun:
    """One `--tf` entry: the release it resolved to, its environment, and its Report.

    `report` is None for the entry that is the enclosing Report itself (`reference`: the first
    entry measured, which the others are judged against), and for an entry that measured
    nothing (`reason` says why: a file this release cannot read, say).
    """

    requested: str  # as asked: "2.15", "2.16.2", "installed", "nightly"
    tensorflow: str  # the release measured: "2.15.1" ("" when it never resolved)
    package: str  # the distribution: "tensorflow-cpu", "tensorflow", "tf-nightly"
    environment: Optional[EnvironmentInfo] = None  # None: the running environment (`installed`)
    rounds: int = 0  # child runs pooled into its figures
    report: Optional["Report"] = None
    reference: bool = False
    reason: str = ""

    @property
    def label(self) -> str:
        """"2.15.1", "2.21.0 (installed)", "2.22.0.dev20260101 (nightly)": a column header."""
        suffix = f" ({self.requested})" if self.requested in (INSTALLED, NIGHTLY) else ""
        return (self.tensorflow or self.requested) + suffix


@dataclasses.dataclass(frozen=True)
class VersionComparison:
    """`kdiag inspect --tf A,B,...`: the same model under several TensorFlow releases.

    Every release ran as ordinary kdiag child runs in its own environment, on the same input
    batch (saved once, passed to every run) with the same options and time limit, in alternating
    rounds (A, B, A, B, ...); each release's timed calls are pooled over its rounds.
    """

    runs: List[VersionRun]
    rounds: int  # rounds run (the first a full run each, the others timing only)
    inputs: str  # how the batch was shared, in words
    notes: List[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Report:
    settings: RunSettings
    environment: Environment
    model: ModelInfo
    strategies: List[StrategyResult]
    profiles: List[ProfileResult] = dataclasses.field(default_factory=list)
    findings: List[Finding] = dataclasses.field(default_factory=list)
    notes: List[str] = dataclasses.field(default_factory=list)
    incomplete: bool = False
    schema_version: int = SCHEMA_VERSION
    kdiag_version: str = __version__  # of the kdiag that measured it
    # `--keras both`: the same model measured under the other Keras, in its own process. This
    # report is then the Keras 3 run and `other_keras` the Keras 2 (tf-keras) one, with its own
    # settings, environment, strategies, profiles and findings; the findings that compare the two
    # are this report's. None for a run under one Keras (and in reports made before it existed).
    other_keras: Optional[Report] = None
    # Beyond one batch (kdiag.datamodel.beyond); None when the step was off, or the report is older.
    data_size_sweep: Optional[DataSizeSweep] = None
    batch_size_sweep: Optional[BatchSizeSweep] = None
    memory_loops: Optional[MemoryLoops] = None
    op_breakdown: Optional[OpBreakdown] = None
    threads_effect: Optional[ThreadsEffect] = None
    # `--tf`: this report is the reference release's (the first measured), and `tf_versions` lists
    # every release with its own Report nested (None for single runs and older reports).
    tf_versions: Optional[VersionComparison] = None

    def strategy(self, name: str) -> Optional[StrategyResult]:
        return next((s for s in self.strategies if s.name == name), None)

    def to_dict(self) -> Dict[str, Any]:
        return _to_jsonable(self)

    def profile(self, scenario: str) -> Optional[ProfileResult]:
        return next((p for p in self.profiles if p.scenario == scenario), None)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Report":
        """A Report from parsed report.json, of this schema or an older one (converted)."""
        version = data.get("schema_version")
        if version not in READABLE_SCHEMAS or isinstance(version, bool):
            raise KdiagError(
                f"report schema_version {version!r} is not one this kdiag reads "
                f"({', '.join(map(str, READABLE_SCHEMAS))})",
                "re-run `kdiag inspect` with this version to make a comparable report",
            )
        if version == 1:
            data = upgrade_schema_1(data)
        return _from_jsonable(cls, data)


#: report.json of a long run with every raw sample stays far below this; a larger file is not ours.
MAX_REPORT_BYTES = 256 << 20


def read_report(path: Union[str, Path]) -> Report:
    """A Report from a JSON file written by kdiag; KdiagError (one line) when it cannot be read."""
    path = Path(path)
    fix = "give the report.json that `kdiag inspect` saved in its run folder"
    try:
        if path.exists() and not path.is_dir() and not path.is_file():
            raise KdiagError(f"{path} is not a regular file (a device, pipe or socket)", fix)
        if path.is_file() and path.stat().st_size > MAX_REPORT_BYTES:
            raise KdiagError(f"{path} is {path.stat().st_size / (1 << 20):,.0f} MiB, larger than any kdiag report "
                             f"(at most {MAX_REPORT_BYTES >> 20} MiB)", fix)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KdiagError(f"{path}: no such file", fix) from None
    except IsADirectoryError:
        raise KdiagError(f"{path} is a directory, not a report", f"{fix}, e.g. {path / 'report.json'}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KdiagError(f"cannot read {path}: {first_line(exc, 200)}", fix) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KdiagError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})",
                         fix) from None
    except RecursionError:
        raise KdiagError(f"{path} nests deeper than any kdiag report", fix) from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise KdiagError(f"{path} is not a kdiag report (no schema_version)", fix)
    try:
        return Report.from_dict(data)
    except KdiagError as exc:
        raise KdiagError(f"{path}: {exc.problem}", exc.fix) from None
    except ReportFieldError as exc:
        raise KdiagError(f"{path} is not a kdiag report: {exc}", fix) from None
    except RecursionError:
        raise KdiagError(f"{path} nests deeper than any kdiag report", fix) from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise KdiagError(f"{path} does not have the fields of a kdiag report ({first_line(exc, 200)})",
                         fix) from None


def upgrade_schema_1(data: Dict[str, Any]) -> Dict[str, Any]:
    """A schema 1 report as schema 2 (a new dict): milliseconds to seconds, statistics from the samples.

    Only what has the expected shape is converted; anything else is left for the type checks of
    `_from_jsonable` to name.
    """
    data = dict(data, schema_version=2, kdiag_version=data.get("kdiag_version", "unknown (a schema 1 report)"))

    def phase_row(row):
        if not isinstance(row, dict):
            return row
        row = dict(row)
        for old, new in (("ms_per_call", "per_call_s"), ("profiled_ms_per_call", "profiled_per_call_s")):
            if old in row:
                value = row.pop(old)
                row[new] = value / 1e3 if isinstance(value, (int, float)) and not isinstance(value, bool) else value
        return row

    def profile(item):
        if not isinstance(item, dict):
            return item
        item = dict(item)
        if "profiled_s_per_call" in item:
            item["profiled_per_call_s"] = item.pop("profiled_s_per_call")
        for key in ("phases", "cold_phases"):
            if isinstance(item.get(key), list):
                item[key] = [phase_row(r) for r in item[key]]
        return item

    def strategy(item):
        if not isinstance(item, dict) or not isinstance(item.get("measurement"), dict):
            return item
        # Schema 1 kept every sample and wrote its statistics only as a courtesy: computing them
        # again from the samples gives the same figures, and the ones schema 1 did not write.
        measurement = {k: v for k, v in item["measurement"].items()
                       if k in ("strategy", "first_call_s", "samples_s", "stopped_early", "source")}
        return dict(item, measurement=measurement)

    if isinstance(data.get("profiles"), list):
        data["profiles"] = [profile(p) for p in data["profiles"]]
    if isinstance(data.get("strategies"), list):
        data["strategies"] = [strategy(s) for s in data["strategies"]]
    return data


# --- (de)serialisation ------------------------------------------------------------
# Generic over the dataclasses of the data model, driven by their
# type hints, so adding a field needs no serialisation code. Derived figures
# (calls/s, inflation, ...) are written too, for readers of the JSON, and ignored on load.

_DERIVED = {
    Measurement: ("calls_per_s", "noisy"),
    ProfileResult: ("inflation",),
    DataSizeSweep: ("crossover_samples", "spread_at_largest"),
    BatchSizeSweep: ("knee_batch", "throughput"),
    MemoryLoop: ("peak_rss_bytes", "growth_per_1000_calls_bytes", "growth_band_bytes", "total_growth_bytes",
                 "growing"),
    OpBreakdown: ("execution_share",),
    ThreadsEffect: ("ratio",),
    BisectProbe: ("ratio",),
    BisectResult: ("ratio", "max_environments"),
}
#: Written last, after the short fields, so a reader of the JSON sees the figures first.
_LAST = {Measurement: ("samples_s",)}


def jsonable(value: Any) -> Any:
    """Any value of the data model (a Report, a BisectResult, ...) as JSON-ready data, as report.json
    writes it: NaN and infinities as null, derived figures included."""
    return _to_jsonable(value)


def _to_jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        last = _LAST.get(type(value), ())
        out = {f.name: _to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name not in last}
        for prop in _DERIVED.get(type(value), ()):
            out[prop] = _to_jsonable(getattr(value, prop))
        for name in last:
            out[name] = _to_jsonable(getattr(value, name))
        if isinstance(value, StrategyResult):
            # Flat convenience fields that machines read first (since schema 1).
            m = value.measurement
            out["median_s"] = _float(m.median_s) if m and m.count else None
            out["p90_s"] = _float(m.p90_s) if m and m.count else None
            out["first_call_s"] = _float(m.first_call_s) if m else None
            out["outputs_match"] = (value.outputs.matches and not value.outputs.varies) if value.outputs else None
            out["max_abs_diff"] = _float(value.outputs.max_abs_diff) if value.outputs else None
        return out
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_jsonable(v) for k, v in value.items()}
    if isinstance(value, float):
        return _float(value)
    return value


def _float(x: float) -> Optional[float]:
    # JSON has no NaN/inf; None says "no value".
    if x is None or x != x or x in (float("inf"), float("-inf")):
        return None
    return float(x)


class ReportFieldError(ValueError):
    """A field of a saved report has the wrong type; the message names the field."""


def _from_jsonable(tp: Any, data: Any, where: str = "report") -> Any:
    """Rebuild `tp` from parsed JSON, checking every type on the way (a report is untrusted input)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union:  # Optional[X]
        if data is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _from_jsonable(inner[0], data, where)
    if tp is float:  # JSON has no NaN: None stands for "no value"
        if data is None:
            return float("nan")
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise ReportFieldError(f"{where} should be a number, not {type(data).__name__}")
        return float(data)
    if data is None:
        raise ReportFieldError(f"{where} is null")
    if origin in (list, List):
        if not isinstance(data, list):
            raise ReportFieldError(f"{where} should be a list, not {type(data).__name__}")
        return [_from_jsonable(args[0] if args else Any, v, f"{where}[{i}]") for i, v in enumerate(data)]
    if origin in (dict, Dict):
        if not isinstance(data, dict):
            raise ReportFieldError(f"{where} should be an object, not {type(data).__name__}")
        return dict(data)
    if dataclasses.is_dataclass(tp):
        return _dataclass_from_jsonable(tp, data, where)
    return _value_from_jsonable(tp, data, where)


def _dataclass_from_jsonable(tp: Any, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ReportFieldError(f"{where} should be an object, not {type(data).__name__}")
    hints = typing.get_type_hints(tp)
    kwargs = {}
    for f in dataclasses.fields(tp):
        if f.name in data:
            kwargs[f.name] = _from_jsonable(hints[f.name], data[f.name], f"{where}.{f.name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ReportFieldError(f"{where} has no {f.name}")
    return tp(**kwargs)


def _value_from_jsonable(tp: Any, data: Any, where: str) -> Any:
    """A tuple of numbers, a str, an int or a bool, checked; anything else as it is."""
    if tp is tuple:
        if not isinstance(data, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                 for v in data):
            raise ReportFieldError(f"{where} should be a list of numbers")
        return tuple(data)
    expected = {str: str, int: int, bool: bool}.get(tp)
    if expected is not None and (not isinstance(data, expected) or (expected is int and isinstance(data, bool))):
        raise ReportFieldError(f"{where} should be {expected.__name__}, not {type(data).__name__}")
    return data
