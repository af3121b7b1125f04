"""What one `kdiag inspect` run was asked to do: built once, validated once.

The CLI builds a RunConfig from its arguments and `kdiag.inspect()` from its keywords;
both go through `RunConfig.__post_init__`, so a bad budget or batch size gets the same
one-line error (naming the CLI option, the one users see in the docs) either way.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from typing import Any, Dict, Mapping, Optional, Tuple

from kdiag.datamodel.strategies import BY_KEY
from kdiag.datamodel.versions import check_tf_versions
from kdiag.errors import KdiagError

# Upper bounds that catch a typo (1e9 for 1) before it turns into a run that never ends.
MAX_BUDGET_S = 600.0
MAX_MIN_CALLS = 100_000
MAX_BATCH_SIZE = 2**31 - 1  # TensorFlow's dimensions are int32; memory is checked separately
MAX_PROFILE_CALLS = 1_000
MAX_TIME_LIMIT_S = 86_400.0  # a day
#: --keras: "2" (tf-keras), "3", or "both" side by side; None runs whatever Keras this process runs
#: (Keras 3, or tf-keras under TF_USE_LEGACY_KERAS=1).
KERAS_CHOICES = ("2", "3", "both")
MAX_SAMPLE_COUNTS = 16  # --samples: counts in one sweep
MAX_SAMPLES = 10**9  # --samples: one count; the memory each needs is checked separately


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything `kdiag inspect` was asked to do.

    `model` is a path (str) or an in-memory Keras model; `inputs` a path to .npy/.npz, an
    array, or a dict of arrays by input name; None for synthetic inputs.
    """

    model: Any = None
    example: Optional[str] = None
    inputs: Any = None
    batch_size: Optional[int] = None
    input_shapes: Mapping[str, Tuple[int, ...]] = dataclasses.field(default_factory=dict)
    strategies: Optional[Tuple[str, ...]] = None  # keys; None means all
    budget_s: float = 1.0
    min_calls: int = 5
    max_wall_s: Optional[float] = None  # a slow strategy stops after this; None: 6x the budget
    unsafe: bool = False
    custom_objects: Optional[Mapping[str, Any]] = None
    cpp: bool = False
    profile: bool = True
    profile_strategies: Tuple[str, ...] = ()
    profile_calls: int = 10
    time_limit_s: float = 60.0  # the whole run, loading to report; 0: no limit
    redact: bool = True  # report.md and redacted/*.prof show local paths as ~, <python>, <model-dir>
    command: str = ""  # how the run was started, for the report
    keras: Optional[str] = None  # one of KERAS_CHOICES; None: this process's Keras
    # The --custom-objects module file, so that a run under the other Keras (a child process) can
    # load it too; `custom_objects` holds what it defined, for this process.
    custom_objects_file: Optional[str] = None
    # Beyond one batch (kdiag.engine.beyond): the sweeps, the sustained memory loops, the op breakdown.
    samples: Optional[Tuple[int, ...]] = None  # the data-size sweep's sample counts; None: automatic
    sweeps: bool = True
    memory_loops: bool = True
    ops: bool = True
    # --tf: TensorFlow releases to run side by side, each in its own cached environment
    # (kdiag.versions); None: this process's TensorFlow only.
    tf_versions: Optional[Tuple[str, ...]] = None
    # --save-inputs: write the input batch the run used to this .npz (a --tf run shares one batch so).
    save_inputs: Optional[str] = None

    def __post_init__(self):
        if self.model is None and self.example is None:
            raise KdiagError("no model given", "pass a .keras/.h5 file or SavedModel directory, or --example tiny")
        if self.model is not None and self.example is not None:
            raise KdiagError("give either a model path or --example, not both", "drop one of them")
        _check_number("--budget", self.budget_s, low=0.0, high=MAX_BUDGET_S, fix="use e.g. --budget 1",
                      low_inclusive=False)
        _check_integer("--min-calls", self.min_calls, low=1, high=MAX_MIN_CALLS, fix="use e.g. --min-calls 5")
        _check_integer("--profile-calls", self.profile_calls, low=1, high=MAX_PROFILE_CALLS,
                       fix="use e.g. --profile-calls 10")
        if self.batch_size is not None:
            _check_integer("--batch-size", self.batch_size, low=1, high=MAX_BATCH_SIZE, fix="use e.g. --batch-size 1")
        _check_number("--time-limit", self.time_limit_s, low=0.0, high=MAX_TIME_LIMIT_S,
                      fix="use e.g. --time-limit 60, or 0 for no limit")
        if self.max_wall_s is not None:
            _check_number("max_wall_s", self.max_wall_s, low=0.0, high=6 * MAX_BUDGET_S,
                          fix="leave it unset for 6x the budget", low_inclusive=False)
        # Tuples, so the frozen config cannot change under the run, whatever sequence was passed.
        if self.strategies is not None:
            object.__setattr__(self, "strategies", tuple(self.strategies))
            check_strategy_keys(self.strategies)
        object.__setattr__(self, "profile_strategies", tuple(self.profile_strategies))
        check_strategy_keys(self.profile_strategies)
        if self.keras is not None:
            object.__setattr__(self, "keras", str(self.keras))  # keras=2 from Python reads as "2"
            if self.keras not in KERAS_CHOICES:
                raise KdiagError(f"--keras must be one of {', '.join(KERAS_CHOICES)}, not {self.keras!r}",
                                 "use --keras 2 (tf-keras), --keras 3 or --keras both")
        if self.samples is not None:
            if not self.sweeps:
                raise KdiagError("--samples sets the sweep that --no-sweeps turns off", "drop one of them")
            check_sample_counts(self.samples)
            object.__setattr__(self, "samples", tuple(sorted(set(self.samples))))
        if self.save_inputs is not None and not str(self.save_inputs).endswith(".npz"):
            raise KdiagError(f"--save-inputs must name a .npz file, not {self.save_inputs!r}",
                             "use e.g. --save-inputs batch.npz")
        if self.tf_versions is not None:
            object.__setattr__(self, "tf_versions", check_tf_versions(self.tf_versions))
            self._check_tf_options()

    def _check_tf_options(self) -> None:
        """What --tf cannot combine with: every release runs the Keras it brings, from a file."""
        self.check_child_model("--tf")
        if self.keras is not None:
            raise KdiagError("--tf and --keras cannot be combined: each TensorFlow release runs the Keras it "
                             "brings (tf.keras 2 up to 2.15, Keras 3 from 2.16)", "drop --keras")
        if self.cpp:
            raise KdiagError("--tf and --cpp cannot be combined: the C++ floor is built against one TensorFlow",
                             "drop --cpp, or run --cpp without --tf")

    def check_child_model(self, what: str) -> None:
        """A run under other TensorFlow releases (`what`: --tf, kdiag bisect) reads the model from a file."""
        if self.model is not None and not isinstance(self.model, (str, os.PathLike)):
            raise KdiagError(f"{what} needs a model file: an in-memory model cannot be loaded under another "
                             "TensorFlow", "save it (model.save('model.h5')) and pass the path")
        if self.custom_objects and not self.custom_objects_file:
            raise KdiagError(f"{what} needs the custom objects as a module file, for the other releases to load",
                             "pass --custom-objects module.py (the file that defines them)")

    @property
    def wall_cap_s(self) -> float:
        """Wall time after which a slow strategy stops early: `max_wall_s`, or 6x the budget."""
        return self.max_wall_s if self.max_wall_s is not None else 6 * self.budget_s

    @property
    def model_label(self) -> str:
        """What the model is called in progress lines and run folder names."""
        if self.example is not None:
            return self.example
        if isinstance(self.model, str):
            return self.model.rstrip("/").rsplit("/", 1)[-1].split(".")[0] or "model"
        return getattr(self.model, "name", None) or "model"


def check_strategy_keys(keys) -> None:
    unknown = [k for k in keys if k not in BY_KEY]
    if unknown:
        raise KdiagError(f"unknown strategy {', '.join(map(repr, unknown))}", f"choose from: {', '.join(BY_KEY)}")


def check_sample_counts(counts) -> None:
    fix = "use e.g. --samples 32,256,4096"
    if isinstance(counts, (str, bytes)) or not hasattr(counts, "__iter__"):
        raise KdiagError(f"--samples must be a list of sample counts, not {counts!r}", fix)
    counts = list(counts)
    if not counts or len(counts) > MAX_SAMPLE_COUNTS:
        raise KdiagError(f"--samples takes 1 to {MAX_SAMPLE_COUNTS} counts, not {len(counts)}", fix)
    for count in counts:
        _check_integer("--samples", count, low=1, high=MAX_SAMPLES, fix=fix)


def parse_samples(text: str) -> Tuple[int, ...]:
    """`--samples 256,4096` → (256, 4096); a count that is not a whole number gets one line."""
    try:
        counts = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        raise KdiagError(f"--samples {text!r} is not a list of whole numbers separated by commas",
                         "use e.g. --samples 32,256,4096") from None
    check_sample_counts(counts)
    return counts


def parse_shape_overrides(items) -> Dict[str, Tuple[int, ...]]:
    """`NAME=D1,D2` (dims after the batch axis) → {NAME: (D1, D2)}; a bare `D1,D2` gets name ''."""
    overrides = {}
    for item in items:
        name, _, dims = item.rpartition("=")
        try:
            shape = tuple(int(d) for d in dims.split(",") if d.strip())
        except ValueError:
            shape = ()
        if not shape or any(d <= 0 for d in shape):
            raise KdiagError(
                f"--input-shape {item!r} is not NAME=D1,D2,... with positive integers",
                "write it like --input-shape tokens=128 (the dimensions after the batch axis)",
            )
        overrides[name] = shape
    return overrides


def _check_number(option: str, value, *, low: float, high: float, fix: str, low_inclusive: bool = True) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value >= low if low_inclusive else value > low) and value <= high
    if not ok:
        bound = f"{'at least' if low_inclusive else 'above'} {low:g} and at most {high:g}"
        raise KdiagError(f"{option} must be a finite number {bound}, not {value!r}", fix)


def _check_integer(option: str, value, *, low: int, high: int, fix: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= value <= high:
        raise KdiagError(f"{option} must be a whole number from {low} to {high:,}, not {value!r}", fix)
