"""Turn a path, an example name or an in-memory model into a LoadedModel.

Two Keras instances are loaded: one with compile=False (the "predict" scenario) and
one compiled (the "predict (compiled)" scenario), so the two never share a cached
predict function and can be timed interleaved.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from pathlib import Path
from typing import Callable, List, Mapping, Optional, Sequence, Tuple

from kdiag.engine.intake import safety
from kdiag.errors import KdiagError, first_line
from kdiag.sanitize import joined
from kdiag.engine.intake.declared import DeclaredModel, declared_model_of
from kdiag.engine.intake.h5probe import probe
from kdiag.engine.intake.savedmodel_files import check_saved_model_files
from kdiag.engine.intake.inputs import InputSpec
from kdiag.engine.intake.keras_archive import KerasArchive, read_keras_archive
from kdiag.engine.intake.keras_era import Era, read_era
from kdiag.engine.intake.limits import check_model_file_memory
from kdiag.engine.intake.memory_model import check_declared_memory

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
DEFAULT_COMPILE = dict(optimizer="rmsprop", loss="mse")
DEFAULT_COMPILE_TEXT = "compile(optimizer='rmsprop', loss='mse')"


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    name: str
    source: str  # a path, "example:NAME" or "in-memory"
    format: str  # "keras", "h5", "savedmodel", "example", "in-memory"
    input_specs: List[InputSpec]
    input_structure: str  # "single", "list" or "dict": how the Keras model takes its inputs
    load_time_s: float
    model: object = None  # Keras model loaded with compile=False; None for a plain SavedModel
    compiled_factory: Optional["CompiledFactory"] = None  # a second, compiled instance
    uncompiled_factory: Optional[Callable[[], object]] = None  # a fresh uncompiled one (profiling's cold call)
    plain_compile_config: str = ""  # for a model with no compiled scenario (a plain SavedModel): why

    @property
    def compile_config(self) -> str:
        """What predict (compiled) was compiled with (after it ran: what was actually used)."""
        return self.compiled_factory.description if self.compiled_factory is not None else self.plain_compile_config
    saved_model: object = None  # tf.saved_model.load(...) result for SavedModel directories
    saved_model_dir: Optional[Path] = None
    default_batch_size: Optional[int] = None  # an example's batch size
    load_notes: List[str] = dataclasses.field(default_factory=list)  # what Keras warned while loading
    keras2_signs: List[str] = dataclasses.field(default_factory=list)  # why the file looks saved by Keras 2
    declared: Optional[DeclaredModel] = None  # what its config declares (None: a plain SavedModel)

    @property
    def is_keras(self) -> bool:
        return self.model is not None

    def output_specs(self) -> List[tuple]:
        """(shape, dtype) of each declared output; raises when the model declares none (subclassed)."""
        if self.model is not None:
            return [(tuple(t.shape), t.dtype) for t in self.model.outputs]
        if self.saved_model is not None:
            from kdiag.engine.tf import tf_and_keras

            tf, _ = tf_and_keras()
            structure = serving_signature(self.saved_model, self.source).structured_outputs
            return [(tuple(s.shape), s.dtype) for s in tf.nest.flatten(structure)]
        return []

    def parameter_count(self) -> Optional[int]:
        if self.model is not None:
            return int(self.model.count_params())
        if self.saved_model is not None:
            variables = getattr(self.saved_model, "variables", None) or []
            return int(sum(int(v.shape.num_elements() or 0) for v in variables)) or None
        return None


def load_path(path, *, unsafe: bool = False, custom_objects: Optional[dict] = None,
              batch_size: Optional[int] = None, input_shapes: Optional[Mapping[str, Sequence[int]]] = None
              ) -> LoadedModel:
    """Load a model file or SavedModel after every check that needs nothing from it to run.

    `batch_size` and `input_shapes` (as the run will use them) size the memory estimate made from
    the config before Keras builds anything (kdiag.engine.intake.declared)."""
    path = Path(path)
    checked = check_file(path, unsafe=unsafe, custom_objects=custom_objects, batch_size=batch_size,
                         input_shapes=input_shapes)
    if checked.format == "savedmodel":
        return _load_saved_model(path)
    era = checked.era
    loader = lambda compile: _keras_load(path, compile, unsafe, custom_objects, era)  # noqa: E731
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = loader(False)
    load_time = time.perf_counter() - start
    loaded = _from_keras(model, path.stem, str(path), checked.format, load_time,
                         _compiled_factory(loader, checked.compile_config), uncompiled_factory=lambda: loader(False),
                         load_notes=_weight_warnings(caught), declared=checked.declared)
    return dataclasses.replace(loaded, keras2_signs=list(era.signs))


@dataclasses.dataclass(frozen=True)
class CheckedFile:
    """A model file that passed every check made before a loader sees it."""

    format: str  # "keras", "h5", "savedmodel"
    compile_config: Optional[dict] = None
    era: Optional[Era] = None  # who saved a Keras file
    declared: Optional[DeclaredModel] = None  # what its config declares (sizes)


def check_file(path, *, unsafe: bool = False, custom_objects: Optional[dict] = None,
               batch_size: Optional[int] = None, input_shapes: Optional[Mapping[str, Sequence[int]]] = None
               ) -> CheckedFile:
    """Every check `load_path` makes before a Keras or TensorFlow loader sees the file: it exists, is whole,
    fits in memory, and runs nothing from the file (kdiag.engine.intake.safety). `kdiag inspect --tf` runs
    it before any child process starts (each child runs it again under its own Keras)."""
    path = Path(path)
    if not path.exists():
        raise KdiagError(f"{path} does not exist", "check the path, or try --example tiny")
    if path.is_dir() and any(os.path.lexists(path / name) for name in ("saved_model.pb", "saved_model.pbtxt")):
        check_saved_model_files(path, unsafe=unsafe)  # regular files inside it, before anything opens one
    check_model_file_memory(path)  # .keras and SavedModel; an .h5's datasets are sized by its probe
    if path.is_dir():
        if (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file():
            safety.check_saved_model(path, unsafe=unsafe)  # its graph, before TensorFlow runs any of it
            return CheckedFile("savedmodel")
        raise KdiagError(
            f"{path} is a directory but not a SavedModel (no saved_model.pb in it)",
            "point kdiag at a .keras or .h5 file, or at the directory that holds saved_model.pb",
        )
    suffix = path.suffix.lower()
    if suffix not in (".keras", ".h5", ".hdf5"):
        raise KdiagError(
            f"{path.name} has an extension kdiag does not know ({suffix or 'none'})",
            "give a .keras or .h5/.hdf5 file, or a SavedModel directory",
        )
    if path.stat().st_size == 0:
        raise KdiagError(f"{path.name} is empty (0 bytes)", "save the model again; the file was not written")
    archive = None
    if suffix == ".keras":
        archive = _check_keras_zip(path)  # config.json and metadata.json read once, shared below
        model_config, compile_config = archive.config, archive.config.get("compile_config")
        fmt = "keras"
    else:
        model_config, compile_config = _check_h5(path)
        fmt = "h5"
    # Before Keras sees the file: tf-keras' HDF5 loader would run a Lambda's bytecode even in safe_mode.
    safety.check_keras_file(path, unsafe=unsafe, custom_objects=custom_objects, archive=archive)
    era = read_era(path, archive)
    # Keras allocates every variable the config declares while it builds, whatever the file stores.
    # The parsed config is not kept (it goes with this frame) while Keras parses its own.
    declared = check_declared_memory(path.name, model_config, batch_size, input_shapes or {})
    return CheckedFile(fmt, compile_config, era, declared)


def load_example(name: str) -> LoadedModel:
    from kdiag.engine.intake.examples import get_example

    example = get_example(name)
    start = time.perf_counter()
    model = example.build()
    load_time = time.perf_counter() - start

    def compiled():
        twin = example.build()  # same seed, same weights
        twin.compile(**DEFAULT_COMPILE)
        return twin

    return _from_keras(model, name, f"example:{name}", "example", load_time,
                       CompiledFactory(compiled, f"the default {DEFAULT_COMPILE_TEXT}"), uncompiled_factory=example.build,
                       default_batch_size=example.batch_size)


def from_model(model) -> LoadedModel:
    """An in-memory Keras model (the Python API)."""
    from kdiag.engine.tf import tf_and_keras

    _, keras = tf_and_keras()

    def clone():
        twin = keras.models.clone_model(model)
        twin.set_weights(model.get_weights())
        return twin

    def compiled():
        twin = clone()
        twin.compile(**DEFAULT_COMPILE)
        return twin

    return _from_keras(model, model.name, "in-memory", "in-memory", 0.0,
                       CompiledFactory(compiled, f"a clone of the model with the default {DEFAULT_COMPILE_TEXT}"),
                       uncompiled_factory=clone)


# --- Keras files ------------------------------------------------------------------


def _check_keras_zip(path: Path) -> KerasArchive:
    """Refuse what is not a sane .keras archive before Keras sees it (its sizes, checksums and JSON:
    kdiag.engine.intake.keras_archive), then probe its HDF5 entries; the archive as read, once."""
    archive = read_keras_archive(path)
    _check_unicode(path, archive.config, "config.json")
    for member in archive.members:
        if member.lower().endswith((".h5", ".hdf5")):
            probe(path, member)
    return archive


def _check_h5(path: Path) -> Tuple[dict, Optional[dict]]:
    """Refuse what is not a Keras HDF5 model before Keras sees it; its model and training configs."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head != HDF5_SIGNATURE:
        raise KdiagError(
            f"{path.name} is not an HDF5 file (its first bytes are not the HDF5 signature)",
            "give the .h5 file Keras wrote, or save the model again with model.save('model.keras')",
        )
    probe(path)
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            if "model_config" not in handle.attrs:
                raise KdiagError(
                    f"{path.name} holds no model_config: it is a weights-only file",
                    "save the whole model (model.save), or rebuild it in code and call kdiag.inspect(model)",
                )
            model_config = _h5_json(path, handle.attrs["model_config"], "model_config")
            raw = handle.attrs.get("training_config")
            training_config = None if raw is None else _h5_json(path, raw, "training_config")
    except KdiagError:
        raise
    except Exception as exc:
        raise KdiagError(
            f"{path.name} could not be read as HDF5 (truncated or damaged: {exc})",
            "save the model again",
        ) from exc
    _check_unicode(path, model_config, "model_config")
    return model_config, training_config


def _h5_json(path: Path, raw, what: str):
    """An HDF5 attribute holding JSON, decoded strictly: h5py's surrogateescape hides damaged bytes."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
        text.encode("utf-8")  # a lone surrogate here is a damaged byte h5py let through
        return json.loads(text)
    except ValueError as exc:  # UnicodeError and JSONDecodeError are both ValueErrors
        raise KdiagError(
            f"{path.name} is damaged (its {what} is not valid UTF-8 JSON: {exc})",
            "save the model again, or download it again",
        ) from exc


def _check_unicode(path: Path, config, what: str) -> None:
    """Refuse a config whose strings hold lone surrogates (a JSON escape like \\ud800, or a damaged byte):
    they are no valid layer name and no report could be written with them."""
    try:
        json.dumps(config, ensure_ascii=False).encode("utf-8")
    except (UnicodeError, TypeError, ValueError) as exc:
        raise KdiagError(
            f"{path.name} is damaged (its {what} holds text that is not valid Unicode: {exc})",
            "save the model again, or download it again",
        ) from exc


def _keras_load(path: Path, compile: bool, unsafe: bool, custom_objects: Optional[dict], era: Era):
    from kdiag.engine.tf import tf_and_keras

    _, keras = tf_and_keras()
    try:
        return keras.models.load_model(
            str(path), compile=compile, safe_mode=not unsafe, custom_objects=custom_objects
        )
    except Exception as exc:
        raise _explain_load_error(path, exc, era) from exc


def _explain_load_error(path: Path, exc: Exception, era: Era) -> KdiagError:
    refused = safety.explain_keras_refusal(path.name, exc)  # Keras' own safe_mode, worded as kdiag's
    if refused is not None:
        return refused
    first = first_line(exc)
    from kdiag.engine.tf import legacy_keras_requested

    if legacy_keras_requested():
        version = era.version
        if version is not None and version.startswith("3."):  # tf-keras cannot read what Keras 3 wrote
            return KdiagError(
                f"{path.name} could not be loaded by tf-keras (Keras 2): it was saved by Keras {version} "
                f"({type(exc).__name__}: {first[:160]})",
                "run it under Keras 3 with --keras 3; --debug shows the traceback",
            )
    elif _keras_major() == 3:  # not under TensorFlow <= 2.15 (kdiag --tf), whose own Keras is 2
        signs = era.signs
        if signs:  # Keras 3 reads most Keras 2 files, not all: tf-keras reads what Keras 2 wrote
            return KdiagError(
                f"{path.name} could not be loaded by Keras 3 ({type(exc).__name__}: {first[:200]}); it looks "
                f"saved by Keras 2 ({signs[0]})",
                "run it under tf-keras with --keras 2 (pip install kdiag[legacy]); --debug shows the traceback",
            )
    return KdiagError(
        f"{path.name} could not be loaded by Keras{_keras_version_text()} ({type(exc).__name__}: {first[:200]})",
        "check that the file is complete and was saved by Keras; --debug shows the traceback",
    )


def _keras_major() -> int:
    from kdiag.engine.tf import tf_and_keras

    version = str(getattr(tf_and_keras()[1], "__version__", "3"))
    return int(version.split(".", 1)[0]) if version.split(".", 1)[0].isdigit() else 3


def _keras_version_text() -> str:
    """" 2.15.0" under TensorFlow <= 2.15 (its own Keras 2, which reads fewer files than the newer ones); ""."""
    from kdiag.engine.tf import legacy_keras_requested, tf_and_keras

    if legacy_keras_requested() or _keras_major() != 2:
        return ""
    return f" {tf_and_keras()[1].__version__}"


def _weight_warnings(caught) -> List[str]:
    """Keras only warns when a file's layer weights cannot be loaded (it keeps fresh random ones):
    the report must say so, since every figure is then about a model with other weights."""
    notes = []
    for item in caught:
        text = " ".join(str(item.message).split())
        if "Skipping" in text and "optimizer" not in text:
            notes.append(f"Keras could not load all of the file's weights and kept initial values: {text[:300]}")
    return notes


class CompiledFactory:
    """Makes predict (compiled)'s own compiled instance; `description` says what it was compiled with.

    A Keras 2-era file's saved training config may not restore under Keras 3 (an optimizer
    argument such as `lr` or `decay` that Keras 3 renamed). Then the instance is compiled with
    the file's saved loss and metrics and a default optimizer, and `description` (read when the
    report is built, after the strategy ran) says exactly that. Only if that fails too does the
    predict (compiled) row fail; nothing else of the run depends on it.
    """

    def __init__(self, make: Callable[[], object], description: str,
                 substitute: Optional[Callable[[], object]] = None, saved: Optional[dict] = None):
        self.make = make
        self.description = description
        self.substitute = substitute
        self.saved = saved or {}

    def __call__(self):
        try:
            return self.make()
        except Exception as exc:
            if self.substitute is None:
                raise
            reason = exc.__cause__ if isinstance(exc, KdiagError) and exc.__cause__ is not None else exc
            model = self.substitute()
            loss, metrics = self.saved.get("loss"), _metric_names(self.saved.get("metrics"))
            self.description = (
                f"the file's saved training config could not be restored under this Keras "
                f"({type(reason).__name__}: {first_line(reason, 160)}); compiled instead with its saved loss "
                f"{loss!r}, metrics {metrics!r} and the default optimizer 'rmsprop'")
            return model


def _compiled_factory(loader, compile_config: Optional[dict]) -> CompiledFactory:
    if compile_config:
        def substitute():
            model = loader(False)
            model.compile(optimizer=DEFAULT_COMPILE["optimizer"], loss=compile_config.get("loss"),
                          loss_weights=compile_config.get("loss_weights"),
                          metrics=_metric_names(compile_config.get("metrics")))
            return model

        return CompiledFactory(lambda: loader(True), "the training config saved in the file", substitute,
                               compile_config)

    def default_compiled():
        model = loader(False)
        model.compile(**DEFAULT_COMPILE)
        return model

    return CompiledFactory(default_compiled, f"the default {DEFAULT_COMPILE_TEXT} (the file has no training config)")


def _metric_names(metrics) -> Optional[list]:
    """Saved metrics as names Keras 3 compiles: Keras 2 nests them per output ([['accuracy']]) and
    may store a serialised wrapper ({'class_name': 'MeanMetricWrapper', 'config': {'name': 'accuracy'}})."""
    if not metrics:
        return None
    names = []

    def walk(item):
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, dict):
            name = item.get("config", {}).get("name") if isinstance(item.get("config"), dict) else None
            if isinstance(name, str):
                names.append(name)
        elif isinstance(item, (list, tuple)):
            for child in item:
                walk(child)

    walk(metrics)
    return list(dict.fromkeys(names)) or None


def _from_keras(model, name, source, fmt, load_time, compiled_factory: CompiledFactory, *,
                uncompiled_factory, load_notes=(), default_batch_size=None,
                declared: Optional[DeclaredModel] = None) -> LoadedModel:
    specs, structure = keras_input_specs(model)
    return LoadedModel(
        declared=declared if declared is not None else declared_model_of(model),
        name=name,
        source=source,
        format=fmt,
        input_specs=specs,
        input_structure=structure,
        load_time_s=load_time,
        model=model,
        compiled_factory=compiled_factory,
        uncompiled_factory=uncompiled_factory,
        default_batch_size=default_batch_size,
        load_notes=list(load_notes),
    )


def keras_input_specs(model):
    """The model's declared inputs, and whether it takes one tensor, a list or a dict."""
    declared, graph = _declared_inputs(model)
    if isinstance(declared, dict):
        structure, tensors = "dict", list(declared.items())
    elif isinstance(declared, (list, tuple)):
        structure = "list" if len(declared) != 1 or isinstance(declared, list) else "single"
        tensors = [(_tensor_name(t, i), t) for i, t in enumerate(declared)]
    else:
        structure, tensors = "single", [(_tensor_name(declared, 0), declared)]
    ranges = _integer_ranges(graph)
    specs = []
    for name, tensor in tensors:
        dtype = _dtype_name(tensor.dtype)
        int_range, why = ranges.get(id(tensor), (None, ""))
        specs.append(InputSpec(name, tuple(_dims(tensor.shape)), dtype, int_range, why))
    return specs, structure


def _declared_inputs(model):
    """The model's input tensors, and the graph model whose layers consume them."""
    try:
        return model.input, model
    except (AttributeError, ValueError) as exc:
        # A Keras 3 Sequential loaded from a Keras 2-era .h5 is built, but only its
        # inner functional graph knows its inputs.
        inner = getattr(model, "_functional", None)
        if inner is not None:
            return inner.input, inner
        raise KdiagError(
            f"model {model.name!r} does not declare its inputs ({exc})",
            "build it with keras.Input(...) before saving, or call kdiag.inspect(model, inputs=...) in Python",
        ) from exc


def _tensor_name(tensor, index: int) -> str:
    name = getattr(tensor, "name", None) or f"input_{index}"
    return name.split(":")[0]


def _dims(shape):
    dims = shape.as_list() if hasattr(shape, "as_list") else list(shape)
    return [None if d is None else int(d) for d in dims]


def _dtype_name(dtype) -> str:
    return getattr(dtype, "name", None) or str(dtype)


def _integer_ranges(model):
    """Map id(input tensor) → ([low, high), reason) from the layers that consume it directly."""
    ranges = {}
    inputs = model.inputs or []
    input_ids = {id(t) for t in inputs}
    for layer in getattr(model, "layers", []):
        limit = _layer_index_limit(layer)
        if limit is None:
            continue
        for node in getattr(layer, "_inbound_nodes", []):
            for tensor in _flatten(getattr(node, "input_tensors", [])):
                if id(tensor) in input_ids:
                    reason = f"{type(layer).__name__} '{layer.name}' accepts indices below {limit}"
                    current = ranges.get(id(tensor))
                    if current is None or limit < current[0][1]:
                        ranges[id(tensor)] = ((0, limit), reason)
    return ranges


def _layer_index_limit(layer) -> Optional[int]:
    kind = type(layer).__name__
    if kind == "Embedding":
        return int(layer.input_dim)
    if kind == "CategoryEncoding":
        return int(layer.num_tokens)
    return None


def _flatten(value):
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _flatten(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _flatten(item)
    else:
        yield value


# --- SavedModel directories -------------------------------------------------------


def _load_saved_model(path: Path) -> LoadedModel:
    from kdiag.engine.tf import tf_and_keras

    tf, _ = tf_and_keras()
    start = time.perf_counter()
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:
        raise KdiagError(
            f"{path} could not be loaded as a SavedModel ({type(exc).__name__}: {first_line(exc, 200)})",
            "check that the directory is complete (saved_model.pb and variables/)",
        ) from exc
    load_time = time.perf_counter() - start
    signature = serving_signature(loaded, path)
    _, kwargs = signature.structured_input_signature
    specs = [
        InputSpec(name, tuple(_dims(spec.shape)), spec.dtype.name) for name, spec in sorted(kwargs.items())
    ]
    if not specs:
        raise KdiagError(f"{path}'s serving signature takes no inputs", "export a signature with inputs")
    return LoadedModel(
        name=path.name,
        source=str(path),
        format="savedmodel",
        input_specs=specs,
        input_structure="dict",
        load_time_s=load_time,
        plain_compile_config="not applicable: a SavedModel holds no Keras training config",
        saved_model=loaded,
        saved_model_dir=path,
    )


SERVING_SIGNATURE = "serving_default"


def serving_signature(loaded, path):
    signatures = getattr(loaded, "signatures", {}) or {}
    if SERVING_SIGNATURE in signatures:
        return signatures[SERVING_SIGNATURE]
    if len(signatures) == 1:
        return next(iter(signatures.values()))
    raise KdiagError(
        f"{path} has no '{SERVING_SIGNATURE}' signature"
        + (f" (it has: {joined(signatures)})" if signatures else " (it has none)"),
        "export it with model.export(dir) or tf.saved_model.save(obj, dir, signatures=...)",
    )
