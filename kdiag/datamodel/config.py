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
from typing import Any, Callable, Collection, Dict, Iterator, List, Mapping, Optional, Tuple

from kdiag.datamodel.strategies import BY_KEY
from kdiag.datamodel.versions import check_tf_versions, parse_tf_versions
from kdiag.errors import KdiagError
from kdiag.sanitize import joined

# Upper bounds that catch a typo (1e9 for 1) before it turns into a run that never ends.
MAX_BUDGET_S = 600.0
MAX_MIN_CALLS = 100_000
MAX_BATCH_SIZE = 2**31 - 1  # TensorFlow's dimensions are int32; memory is checked separately
MAX_PROFILE_CALLS = 1_000
MAX_TIME_LIMIT_S = 86_400.0  # a day
MAX_PRECISION = 0.5  # ±50%: a wider interval says nothing
#: --keras: "2" (tf-keras), "3", or "both" side by side; None runs whatever Keras this process runs
#: (Keras 3, or tf-keras under TF_USE_LEGACY_KERAS=1).
KERAS_CHOICES = ("2", "3", "both")
MAX_SAMPLE_COUNTS = 16  # --samples: counts in one sweep
MAX_SAMPLES = 10**9  # --samples: one count; the memory each needs is checked separately


@dataclasses.dataclass(frozen=True)
class Option:
    """How one RunConfig field is spelled on the command line, and what it means.

    The one place an option is spelled: `kdiag inspect`'s argparse options (`add_arguments`),
    the parsed arguments back to a RunConfig (`from_arguments`), and a child run's arguments
    (`RunConfig.to_argv`) are all read from these, so no copy can drift.
    """

    flag: str  # "--budget"; "" for the positional model
    help: str
    metavar: Optional[str] = None
    #: "value" (one argument), "switch" (sets True), "negated" (sets False: --no-profile), "both"
    #: (--ops sets True, --no-ops False; neither leaves the default), "repeat" (an argument each time it
    #: is given), "positional".
    kind: str = "value"
    type: Optional[Callable[[str], Any]] = None  # argparse's conversion (int, float)
    parse: Optional[Callable[[Any], Any]] = None  # the parsed argument -> the field's value
    show: Optional[Callable[[Any], List[str]]] = None  # the field's value -> its words on a command line
    choices: Optional[Tuple[str, ...]] = None


def _option(flag: str, help: str, **kwargs) -> Dict[str, Option]:
    return {"option": Option(flag, help, **kwargs)}


def _keys(text: str) -> Tuple[str, ...]:
    return tuple(k.strip() for k in text.split(",") if k.strip())


def _float_words(value: float) -> List[str]:
    return [repr(float(value))]


def _joined(values) -> List[str]:
    return [",".join(str(v) for v in values)]


def _shape_words(shapes: Mapping[str, Tuple[int, ...]]) -> List[str]:
    words = []
    for name, dims in shapes.items():
        shape = ",".join(str(d) for d in dims)
        words.append(f"{name}={shape}" if name else shape)
    return words


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything `kdiag inspect` was asked to do: the one list of its options.

    `model` is a path (str) or an in-memory Keras model; `inputs` a path to .npy/.npz, an
    array, or a dict of arrays by input name; None for synthetic inputs. A field with an
    `option` in its metadata is a command-line option; `custom_objects` (what the module file
    defined, for this process) and `command` (how the run was started) are not.
    """

    model: Any = dataclasses.field(default=None, metadata=_option(
        "", ".keras or .h5/.hdf5 file, or a SavedModel directory", kind="positional"))
    example: Optional[str] = dataclasses.field(default=None, metadata=_option(
        "--example", "a built-in example instead of a file: tiny, mnist-softmax, mnist-cnn, lstm", metavar="NAME"))
    inputs: Any = dataclasses.field(default=None, metadata=_option(
        "--inputs", "your own inputs: .npy (one input) or .npz (by name)", metavar="FILE"))
    batch_size: Optional[int] = dataclasses.field(default=None, metadata=_option(
        "--batch-size", "batch size (default: the model's fixed one, else the example's, else 1)", metavar="N",
        type=int))
    input_shapes: Mapping[str, Tuple[int, ...]] = dataclasses.field(default_factory=dict, metadata=_option(
        "--input-shape", "size of dynamic axes after the batch axis, per input (repeatable)", metavar="NAME=D1,D2",
        kind="repeat", parse=lambda items: parse_shape_overrides(items), show=_shape_words))
    strategies: Optional[Tuple[str, ...]] = dataclasses.field(default=None, metadata=_option(  # keys; None: all
        "--strategies", f"only these, comma-separated, from: {', '.join(BY_KEY)}", metavar="A,B", parse=_keys,
        show=_joined))
    budget_s: float = dataclasses.field(default=1.0, metadata=_option(
        "--budget", "timed seconds per strategy at most (default 1): a strategy stops sooner once its median is "
                    "known within --precision; the sweeps, memory loops and op breakdown get their budgets in "
                    "proportion", metavar="SECONDS", type=float, show=_float_words))
    min_calls: int = dataclasses.field(default=5, metadata=_option(
        "--min-calls", "timed calls at least (default 5): neither --budget nor --max-wall cuts below it, only "
                       "--time-limit", metavar="N", type=int))
    max_wall_s: Optional[float] = dataclasses.field(default=None, metadata=_option(  # None: 6x the budget
        "--max-wall", "wall time after which a slow strategy stops, once it has --min-calls (default: 6x "
                      "--budget)", metavar="SECONDS", type=float, show=_float_words))
    precision: float = dataclasses.field(default=0.02, metadata=_option(
        "--precision", "stop timing a strategy once the 95%% confidence interval of its median is within ±this "
                       "fraction of it (default 0.02; 0: spend the whole --budget)", metavar="FRACTION", type=float,
        show=_float_words))
    unsafe: bool = dataclasses.field(default=False, metadata=_option(
        "--unsafe", "allow Lambda layers to be deserialised (runs code from the file)", kind="switch"))
    custom_objects: Optional[Mapping[str, Any]] = None
    cpp: bool = dataclasses.field(default=False, metadata=_option(
        "--cpp", "also time the C++ floor: the exported SavedModel through the TF C API (cpp_baseline/)",
        kind="switch"))
    profile: bool = dataclasses.field(default=True, metadata=_option(
        "--no-profile", "skip the cProfile passes", kind="negated"))
    profile_strategies: Tuple[str, ...] = dataclasses.field(default=(), metadata=_option(
        "--profile", "also profile these strategies (predict before and after compile() always are)",
        metavar="A,B", parse=_keys, show=_joined))
    # Five: predict does the same work on every warm call, and its phase shares from five calls stay
    # within a few points of those from ten (the tiny example and the LSTM example, here).
    profile_calls: int = dataclasses.field(default=5, metadata=_option(
        "--profile-calls", "warm calls per cProfile pass (default 5)", metavar="N", type=int))
    time_limit_s: float = dataclasses.field(default=60.0, metadata=_option(  # loading to report; 0: no limit
        "--time-limit", "for the whole run, loading to report (default 60; 0: none): what would not fit is left out "
                        "and the report says what, and the limit that would fit it", metavar="SECONDS", type=float,
        show=_float_words))
    redact: bool = dataclasses.field(default=True, metadata=_option(  # local paths as ~, <python>, <model-dir>
        "--no-redact", "keep local paths in report.md (default: ~, <python>, <model-dir>) and write no redacted/ "
                       "copies of the .prof files", kind="negated"))
    command: str = ""  # how the run was started, for the report
    keras: Optional[str] = dataclasses.field(default=None, metadata=_option(  # one of KERAS_CHOICES; None: this one
        "--keras", "which Keras runs the model: 3 (the default; 2 under TF_USE_LEGACY_KERAS=1), 2 (tf-keras, in a "
                   "child process), or both side by side in one report (needs tf-keras: pip install kdiag[legacy])",
        choices=KERAS_CHOICES))
    # The --custom-objects module file, so that a run under the other Keras (a child process) can
    # load it too; `custom_objects` holds what it defined, for this process.
    custom_objects_file: Optional[str] = dataclasses.field(default=None, metadata=_option(
        "--custom-objects", "a Python file defining the model's custom classes (its code runs)", metavar="MODULE.py"))
    # Beyond one batch (kdiag.engine.beyond.steps): the sweeps, the sustained memory loops, the op breakdown.
    samples: Optional[Tuple[int, ...]] = dataclasses.field(default=None, metadata=_option(  # None: automatic
        "--samples", "sample counts for the data-size sweep (default: one batch, 256, 4096, 65536 as the time "
                     "allows)", metavar="N,N", parse=lambda text: parse_samples(text), show=_joined))
    sweeps: bool = dataclasses.field(default=True, metadata=_option(
        "--no-sweeps", "skip the data-size and batch-size sweeps", kind="negated"))
    memory_loops: bool = dataclasses.field(default=False, metadata=_option(
        "--memory-loop", "run the sustained loops that watch memory over many calls (off by default: about 10 s "
                         "at the default --budget)", kind="both"))
    # None: when predict's profile shows graph execution takes most of its time (kdiag.steps.beyond).
    ops: Optional[bool] = dataclasses.field(default=None, metadata=_option(
        "--ops", "the op breakdown (TensorFlow profiler + XProf) and the threads comparison (two child "
                 "processes): by default only when predict's profile shows graph execution takes most of its "
                 "time; --ops always, --no-ops never", kind="both"))
    # Other TensorFlow releases side by side (kdiag.steps.tf_versions), each in its own cached environment;
    # None: this process's TensorFlow only.
    tf_versions: Optional[Tuple[str, ...]] = dataclasses.field(default=None, metadata=_option(
        "--tf", "TensorFlow releases side by side, each in its own cached environment, in alternating rounds: e.g. "
                "2.15,installed,nightly (2.15: the newest 2.15.x the index serves; installed: this environment's). "
                "kdiag envs lists the environments", metavar="V,V", parse=lambda text: parse_tf_versions(text),
        show=_joined))
    save_inputs: Optional[str] = dataclasses.field(default=None, metadata=_option(  # a .npz, never overwritten
        "--save-inputs", "also save the input batch the run used (time the same data again with --inputs; --tf "
                         "shares one batch so)", metavar="FILE.npz"))

    def __post_init__(self):
        if self.model is None and self.example is None:
            raise KdiagError("no model given", "pass a .keras/.h5 file or SavedModel directory, or --example tiny")
        if self.model is not None and self.example is not None:
            raise KdiagError("give either a model path or --example, not both", "drop one of them")
        _check_number("--budget", self.budget_s, low=0.0, high=MAX_BUDGET_S, fix="use e.g. --budget 1",
                      low_inclusive=False)
        _check_integer("--min-calls", self.min_calls, low=1, high=MAX_MIN_CALLS, fix="use e.g. --min-calls 5")
        _check_number("--precision", self.precision, low=0.0, high=MAX_PRECISION,
                      fix="use e.g. --precision 0.02 (±2%), or 0 to spend the whole --budget")
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

    def to_argv(self) -> List[str]:
        """`kdiag inspect` arguments that ask for this run: every option whose value is not the default.

        Paths are written as they are: a caller that runs them elsewhere makes them absolute first
        (kdiag.engine.keras_child). `custom_objects` and `command` have no option: a child loads
        `custom_objects_file` itself, and records its own command line.
        """
        argv = ["inspect"]
        for field, option in options():
            value = getattr(self, field.name)
            if value == _default(field):
                continue
            if option.kind in ("switch", "negated"):
                argv.append(option.flag)
                continue
            if option.kind == "both":
                argv.append(option.flag if value else "--no-" + option.flag[2:])
                continue
            words = option.show(value) if option.show is not None else [str(value)]
            if option.kind == "positional":
                argv += words
            else:
                for word in words:
                    argv += [option.flag, word]
        return argv

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


def options(names: Optional[Collection[str]] = None) -> Iterator[Tuple[dataclasses.Field, Option]]:
    """Every RunConfig field that is a command-line option (or those of `names`), in the order
    `kdiag inspect --help` lists them."""
    for field in dataclasses.fields(RunConfig):
        if "option" in field.metadata and (names is None or field.name in names):
            yield field, field.metadata["option"]


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def add_arguments(parser, names: Optional[Collection[str]] = None) -> None:
    """The options of RunConfig (those of `names`: `kdiag bisect` takes some) on an argparse parser, each
    stored under its field's name."""
    for field, option in options(names):
        if option.kind == "positional":
            parser.add_argument(field.name, nargs="?", help=option.help)
            continue
        common = dict(dest=field.name, help=option.help)
        if option.kind == "switch":
            parser.add_argument(option.flag, action="store_true", **common)
        elif option.kind == "negated":
            parser.add_argument(option.flag, action="store_false", **common)
        elif option.kind == "both":
            import argparse

            parser.add_argument(option.flag, action=argparse.BooleanOptionalAction, default=_default(field),
                                **common)
        else:
            raw_default = [] if option.kind == "repeat" else (None if option.parse else _default(field))
            parser.add_argument(option.flag, action="append" if option.kind == "repeat" else "store",
                                default=raw_default, metavar=option.metavar, type=option.type,
                                choices=option.choices, **common)


def from_arguments(args, names: Optional[Collection[str]] = None, **others) -> "RunConfig":
    """A RunConfig from argparse's namespace (see `add_arguments`, with the same `names`), with `others` for
    the fields that are not options (custom_objects, command); the options not in `names` keep their defaults."""
    values = dict(others)
    for field, option in options(names):
        value = getattr(args, field.name)
        if option.parse is not None and value is not None:
            value = option.parse(value)
        elif option.parse is not None:
            value = _default(field)
        values[field.name] = value
    return RunConfig(**values)


def check_strategy_keys(keys) -> None:
    unknown = [k for k in keys if k not in BY_KEY]
    if unknown:
        raise KdiagError(f"unknown strategy {joined(map(repr, unknown))}", f"choose from: {', '.join(BY_KEY)}")


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
