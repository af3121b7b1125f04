"""What a model file may make kdiag do, decided before anything in the file runs.

A model file is a program as much as data. Keras files can carry Python bytecode (Lambda layers,
serialized lambdas), name classes Keras would import or look up in its registry, and name files on
disk that a layer reads while it is built (a vocabulary file). SavedModels are TensorFlow graphs that
can read and write files, call back into Python or reach the network, and some of their functions
run while the model loads (resource initialisers), before any call.

Keras' own `safe_mode` is not enough: tf-keras' HDF5 loader ignores it and unmarshals a Lambda
layer's bytecode, and tf-keras imports any module a `.keras` config names. So kdiag reads the
config itself (json, zipfile and h5py only, nothing from Keras) and refuses, with one line, a file
that would run code, read a file or need a class that is not Keras' own, unless the user consented
with --unsafe (everything) or --custom-objects (the classes and functions it defines). SavedModel
graphs are held to an allowlist of computation ops. Keras' `safe_mode` stays on as a second lock,
and the refusals it raises are worded here too (`explain_keras_refusal`), so one module decides.
"""

from __future__ import annotations

import dataclasses
import json
import re
import zipfile
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Set, Tuple

from kdiag.engine.intake.keras_archive import KerasArchive, read_keras_archive
from kdiag.errors import KdiagError
from kdiag.sanitize import clip, joined

UNSAFE_FIX = "if you trust this file, re-run with --unsafe"
CUSTOM_FIX = "pass the module that defines it with --custom-objects module.py (its code will run)"


# --- Keras files -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ConfigFinding:
    """One thing in a Keras config that would run code, read a file or need a class from outside Keras."""

    kind: str  # "code", "file" or "custom"
    where: Tuple[str, ...]  # the names of the layers it sits in, outermost first
    what: str  # for the message: "a Lambda layer", "class 'mypkg>Doubler'", ...
    path: str = ""  # for kind "file": the path the layer would read


# Keras' serialization markers for plain data (tensors, arrays, slices...): nothing to resolve.
DATA_CLASS_NAMES = frozenset({
    "__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__ellipsis__", "__slice__", "__tuple__",
    "__passive_serialization__", "TypeSpec",
})
# Layers whose config holds Python code (bytecode, or a function given by name).
CODE_LAYERS = frozenset({"Lambda"})
# tf-keras wraps TensorFlow calls in functional models as TFOpLambda layers that name a tf.* symbol;
# from_config resolves any public symbol (tf.io.write_file included) and calls it with the saved arguments.
TF_OP_LAYERS = frozenset({"TFOpLambda", "SlicingOpLambda"})
TF_COMPUTE_NAMESPACES = frozenset({
    "__operators__", "math", "linalg", "nn", "signal", "image", "bitwise", "dtypes", "random", "sparse",
    "ragged", "strings",
})
# Top-level tf.* symbols that print (possibly to a file), call Python or load native code.
TF_TOP_LEVEL_NOT_COMPUTATION = frozenset({
    "print", "py_function", "numpy_function", "load_library", "load_op_library", "function", "Module",
    "custom_gradient", "import_graph_def", "init_scope", "device",
})
# tf-keras' ClassMethod layer calls CLASS.METHOD(...): only tensor classes are computation.
TF_TENSOR_CLASSES = frozenset({"RaggedTensor", "SparseTensor", "Tensor", "TensorSpec", "RaggedTensorSpec"})
# Function references are safe only into Keras' own modules of functions (activations, losses...).
KERAS_FUNCTION_MODULES = frozenset({
    "activations", "losses", "metrics", "ops", "backend", "initializers", "regularizers", "constraints",
})
KERAS_PACKAGES = ("keras", "tf_keras")
FUNCTION_VALUED_KEYS = frozenset({"activation", "recurrent_activation"})


@dataclasses.dataclass(frozen=True)
class KerasConfig:
    model: object  # the model config: what builds the layers
    training: object = None  # the training/compile config: what compile=True deserializes


def check_keras_file(path: Path, *, unsafe: bool = False, custom_objects: Optional[dict] = None,
                     archive: Optional[KerasArchive] = None) -> None:
    """Refuse a .keras or .h5 file whose config would run code, read a file or need unknown classes.

    Called after kdiag/load.py has checked that the file is intact (and, for HDF5, read it in a child
    process), before Keras sees it. --unsafe allows everything; --custom-objects names classes.
    `archive`: a .keras file's archive as kdiag.engine.intake.keras_archive already read it.
    """
    if unsafe:
        return
    findings = scan_keras_config(read_keras_config(path, archive), allowed_names(custom_objects))
    if findings:
        raise refusal(path.name, findings)


def read_keras_config(path: Path, archive: Optional[KerasArchive] = None) -> KerasConfig:
    """The model and training configs of a .keras archive (config.json) or an HDF5 file (its attributes)."""
    try:
        if path.suffix.lower() == ".keras":
            config = (archive if archive is not None else read_keras_archive(path)).config
            training = config.get("compile_config") if isinstance(config, dict) else None
            if isinstance(config, dict):
                config = {key: value for key, value in config.items() if key != "compile_config"}
            return KerasConfig(config, training)
        import h5py

        with h5py.File(path, "r") as handle:
            model = _json_attribute(handle.attrs.get("model_config"))
            training = _json_attribute(handle.attrs.get("training_config"))
        return KerasConfig(model, training)
    except (OSError, ValueError, KeyError, RecursionError, zipfile.BadZipFile) as exc:
        raise KdiagError(f"{path.name} is damaged (its model config cannot be read: {type(exc).__name__})",
                         "save the model again, or download it again") from exc


def _json_attribute(raw):
    if raw is None:
        return None
    return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))


def allowed_names(custom_objects: Optional[dict]) -> Set[str]:
    """The names --custom-objects vouches for: its keys and the objects' own names."""
    names: Set[str] = set()
    for key, value in (custom_objects or {}).items():
        names.add(str(key))
        name = getattr(value, "__name__", None)
        if name:
            names.add(name)
    return names


def _named(name: str, allowed: Set[str]) -> bool:
    """A registered name 'package>Name' is vouched for by 'package>Name' or by 'Name'."""
    return name in allowed or name.rsplit(">", 1)[-1] in allowed


def scan_keras_config(config: KerasConfig, allowed: Iterable[str] = ()) -> List[ConfigFinding]:
    """Everything in the config that would run code, read a file or need a class Keras does not ship.

    Walks every nested object (functional and sequential submodels, TimeDistributed and Bidirectional
    wrappers, initializers, activations), iteratively, so a deep config cannot exhaust the stack.
    The training config is only searched for code: Keras resolves its names among built-ins.
    """
    allowed = set(allowed)
    findings: List[ConfigFinding] = []
    for value, where in _objects(config.model):
        findings.extend(_model_object_findings(value, where, allowed))
    for value, where in _objects(config.training):
        findings.extend(_code_findings(value, where) or _imported_module(value, where, allowed))
    unique = list(dict.fromkeys(findings))
    order = {"code": 0, "file": 1, "custom": 2}
    return sorted(unique, key=lambda finding: order[finding.kind])


def _objects(root) -> Iterator[Tuple[dict, Tuple[str, ...]]]:
    """Every dict in the config, with the names of the layers it sits in (its own name last)."""
    stack = [(root, None)]  # the model itself: its name would only repeat in every message
    while stack:
        value, where = stack.pop()
        if isinstance(value, dict):
            inner = value.get("config")
            name = inner.get("name") if isinstance(inner, dict) and "class_name" in value else None
            here = () if where is None else where + (name,) if isinstance(name, str) else where
            yield value, here
            stack.extend((child, here) for child in reversed(list(value.values())))
        elif isinstance(value, list):
            stack.extend((child, where or ()) for child in reversed(value))


def _code_findings(value: dict, where) -> List[ConfigFinding]:
    """Bytecode anywhere: Keras 3's `__lambda__` objects and tf-keras' marshalled Lambda functions."""
    if value.get("class_name") == "__lambda__":
        return [ConfigFinding("code", where, "a serialized Python lambda")]
    if any(key.endswith("function_type") and kind == "lambda" for key, kind in value.items()):
        return [ConfigFinding("code", where, "a serialized Python lambda")]
    return []


def _imported_module(value: dict, where, allowed: Set[str]) -> List[ConfigFinding]:
    """tf-keras imports the module an object names to find its class or function: code from outside Keras."""
    module, class_name = value.get("module"), value.get("class_name")
    if not isinstance(module, str) or _in_keras(module) or module == "builtins" or not isinstance(class_name, str):
        return []
    name = value.get("config") if class_name == "function" else class_name
    if isinstance(name, str) and _named(name, allowed):
        return []
    return [ConfigFinding("custom", where, f"{module}.{name}")]


def _model_object_findings(value: dict, where, allowed: Set[str]) -> List[ConfigFinding]:
    findings = _code_findings(value, where)
    if findings:
        return findings
    found = [
        ConfigFinding("custom", where, f"function {ref!r}")
        for key, ref in value.items()
        if key in FUNCTION_VALUED_KEYS and isinstance(ref, str) and ">" in ref and not _named(ref, allowed)
    ]
    class_name = value.get("class_name")
    if not isinstance(class_name, str) or class_name in DATA_CLASS_NAMES:
        return found
    inner = value.get("config")
    inner = inner if isinstance(inner, dict) else {}
    if class_name == "function":
        return found + _function_reference(value, where, allowed)
    custom = _custom_class(value, class_name)
    if custom:
        registered = value.get("registered_name")
        if not (_named(custom, allowed) or class_name in allowed
                or isinstance(registered, str) and _named(registered, allowed)):
            found.append(ConfigFinding("custom", where, f"class {custom!r}"))
        return found
    return found + _builtin_layer_findings(class_name, inner, where, allowed)


def _builtin_layer_findings(class_name: str, inner: dict, where, allowed: Set[str]) -> List[ConfigFinding]:
    """A Keras layer of its own that runs code or reads a file named by the config."""
    if class_name in CODE_LAYERS and not _lambda_named_by(inner, allowed):
        return [ConfigFinding("code", where, f"a {class_name} layer")]
    if class_name in TF_OP_LAYERS:
        symbol = inner.get("function")
        if not (isinstance(symbol, str) and _tf_symbol_is_computation(symbol)):
            return [ConfigFinding("code", where, f"a {class_name} layer calling tf.{symbol}")]
    elif class_name == "ClassMethod" and inner.get("cls_symbol") not in TF_TENSOR_CLASSES:
        return [ConfigFinding("code", where, f"a ClassMethod layer calling tf.{inner.get('cls_symbol')}")]
    elif class_name == "TFSMLayer":
        return [ConfigFinding("file", where, "a TFSMLayer (it loads and runs another SavedModel)",
                              str(inner.get("filepath", "?")))]
    elif isinstance(inner.get("vocabulary"), str) and inner["vocabulary"]:
        return [ConfigFinding("file", where, f"a {class_name} layer", inner["vocabulary"])]
    return []


def _custom_class(value: dict, class_name: str) -> Optional[str]:
    """The name of a class that is not Keras' own, or None for a built-in.

    Keras 3 and recent tf-keras configs say where a class lives ("module") and under which name it is
    registered ("registered_name": "package>Name" for custom classes). Older configs give a bare
    class_name, which Keras resolves only among its own classes, or "package>Name" from its registry.
    """
    registered = value.get("registered_name")
    if "module" in value:
        module = value.get("module")
        if not _in_keras(module):
            return registered if isinstance(registered, str) and registered else f"{module}.{class_name}"
        if isinstance(registered, str) and ">" in registered:
            return registered
        return None
    if ">" in class_name:
        return class_name
    return None


def _in_keras(module) -> bool:
    return isinstance(module, str) and module.split(".", 1)[0] in KERAS_PACKAGES


def _function_reference(value: dict, where, allowed: Set[str]) -> List[ConfigFinding]:
    """A function given by name: a Keras built-in (activations, losses...), or someone else's code."""
    module, name = value.get("module"), value.get("config")
    if not isinstance(name, str):
        return []
    if module == "builtins":  # Keras 3: a built-in by bare name, or a registered 'package>name'
        custom = ">" in name
    elif _in_keras(module):
        parts = [part for part in module.split(".")[1:] if part != "src"]
        custom = not parts or parts[0] not in KERAS_FUNCTION_MODULES
    else:  # tf-keras would import this module to find the function
        custom = True
    if custom and not _named(name, allowed):
        label = name if module == "builtins" or not isinstance(module, str) else f"{module}.{name}"
        return [ConfigFinding("custom", where, f"function {label!r}")]
    return []


def _lambda_named_by(inner: dict, allowed: Set[str]) -> bool:
    """A Lambda whose functions are all named functions that --custom-objects supplies runs only the
    user's own code; one with bytecode (or anything else) is code from the file."""
    if inner.get("function") is None or not allowed:
        return False
    for key in ("function", "output_shape", "mask"):
        function, kind = inner.get(key), inner.get(f"{key}_type")
        if function is None:
            continue
        if isinstance(function, str) and kind in (None, "function") and _named(function, allowed):
            continue
        if isinstance(function, dict) and function.get("class_name") == "function" and \
                isinstance(function.get("config"), str) and _named(function["config"], allowed):
            continue
        if key == "output_shape" and kind == "raw":
            continue
        return False
    return True


def _tf_symbol_is_computation(symbol: str) -> bool:
    parts = symbol.split(".")
    if len(parts) == 1:
        return re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", symbol) is not None and \
            symbol not in TF_TOP_LEVEL_NOT_COMPUTATION
    return parts[0] in TF_COMPUTE_NAMESPACES


def refusal(file_name: str, findings: List[ConfigFinding]) -> KdiagError:
    """One line for the most serious kind of finding (code, then file reads, then custom classes)."""
    kind = findings[0].kind
    same = [finding for finding in findings if finding.kind == kind]
    if kind == "code":
        lambdas = [f for f in same if "Lambda layer" in f.what and "TFOpLambda" not in f.what]
        first = (lambdas or same)[0]
        if lambdas:
            return lambda_refusal(file_name, _places(lambdas), len(_unique(_place(f.where) for f in lambdas)))
        place = f" in layer{_place(first.where)}" if first.where else ""
        return KdiagError(f"{file_name} holds code that Keras would run while loading: {first.what}{place}",
                          UNSAFE_FIX)
    if kind == "file":
        first = same[0]
        return file_read_refusal(file_name, first.what + _place(first.where), first.path,
                                 vocabulary="TFSMLayer" not in first.what)
    return custom_object_refusal(
        file_name, joined(_unique(f.what + (f" in layer{_place(f.where)}" if f.where else "") for f in same)))


def lambda_refusal(file_name: str, where: str = "", count: int = 1) -> KdiagError:
    layers = "a Lambda layer" if count <= 1 else "Lambda layers"
    return KdiagError(
        f"{file_name} contains {layers}{where}, whose Python code Keras would run on loading", UNSAFE_FIX)


def custom_object_refusal(file_name: str, detail: str) -> KdiagError:
    return KdiagError(f"{file_name} needs a custom object that is not registered ({clip(detail, 300)})", CUSTOM_FIX)


def file_read_refusal(file_name: str, what: str, path: str, vocabulary: bool = True) -> KdiagError:
    """A layer that would open a path its config names: not a Lambda, and --unsafe is not the only way out."""
    fix = ("if you mean it to read that file, re-run with --unsafe (which also lets Lambda code run); better, "
           "save the model with the vocabulary inside it (layer.set_vocabulary(terms) before model.save)"
           if vocabulary else "if you trust this file and that path, re-run with --unsafe")
    return KdiagError(f"{file_name} has {what} that would read {path!r} from disk while loading (a path named "
                      "in the model's config, outside the model file)", fix)


def _place(where: Tuple[str, ...]) -> str:
    if not where:
        return ""
    layer, outer = where[-1], where[:-1]
    shown = " > ".join(repr(name) for name in outer[-3:])  # a deep config would make a page-long line
    if len(outer) > 3:
        shown = "... > " + shown
    return f" '{layer}'" + (f" (inside {shown})" if outer else "")


def _places(findings: List[ConfigFinding]) -> str:
    places = _unique(_place(finding.where).strip() for finding in findings)
    places = [place for place in places if place]
    if not places:
        return ""
    more = f" and {len(places) - 3} more" if len(places) > 3 else ""
    return " " + ", ".join(places[:3]) + more


def _unique(items: Iterable[str]) -> List[str]:
    return list(dict.fromkeys(items))


def explain_keras_refusal(file_name: str, exc: BaseException) -> Optional[KdiagError]:
    """The refusals Keras' safe_mode raises itself (the second lock), worded as kdiag's own; None if
    the error is something else."""
    text = str(exc)
    lowered = text.lower()
    if "vocabulary file outside" in lowered:
        match = re.search(r"Vocabulary file:? '?([^'\n]*)'?", text)
        return file_read_refusal(file_name, "a lookup layer", match.group(1) if match else "a vocabulary file")
    if "TFSMLayer" in text:
        return KdiagError(f"{file_name} has a TFSMLayer, which loads and runs another SavedModel from disk",
                          "if you trust this file and that SavedModel, re-run with --unsafe")
    if "safe_mode" in text or ("unsafe" in lowered and "lambda" in lowered):
        return lambda_refusal(file_name)
    if "Could not locate" in text or "Unknown layer" in text or ("Unknown " in text and "custom" in lowered):
        first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
        return custom_object_refusal(file_name, first[:160])
    return None


# --- SavedModels -------------------------------------------------------------------

# Ops that compute on tensors, hold variables and lookup tables, or route control flow. Anything else
# (file I/O, Python callbacks, printing to files, datasets, queues, collectives and RPC, native
# modules) is refused. Written out rather than derived from TensorFlow's `is_stateful` flag, which is
# False for ReadFile, MatchingFiles, ImmutableConst and PyFuncStateless.
COMPUTATION_OPS = frozenset("""
Const Placeholder PlaceholderWithDefault PlaceholderV2 Identity IdentityN NoOp StopGradient PreventGradient
EnsureShape CheckNumerics CheckNumericsV2 Assert Snapshot ControlTrigger
PartitionedCall StatefulPartitionedCall If StatelessIf While StatelessWhile Case StatelessCase For
Switch Merge Enter Exit NextIteration LoopCond RefSwitch RefMerge RefEnter RefExit RefNextIteration RefIdentity
SymbolicGradient OptionalFromValue OptionalGetValue OptionalHasValue OptionalNone
VarHandleOp ReadVariableOp AssignVariableOp AssignAddVariableOp AssignSubVariableOp VarIsInitializedOp
DestroyResourceOp VariableShape ResourceGather ResourceGatherNd DisableCopyOnRead
ResourceScatterAdd ResourceScatterSub ResourceScatterMul ResourceScatterDiv ResourceScatterMin
ResourceScatterMax ResourceScatterUpdate ResourceScatterNdAdd ResourceScatterNdSub ResourceScatterNdUpdate
ResourceStridedSliceAssign Variable VariableV2 Assign AssignAdd AssignSub IsVariableInitialized
HashTable HashTableV2 MutableHashTable MutableHashTableV2 MutableHashTableOfTensors MutableHashTableOfTensorsV2
MutableDenseHashTable MutableDenseHashTableV2 AnonymousHashTable AnonymousMutableHashTable
AnonymousMutableHashTableOfTensors AnonymousMutableDenseHashTable InitializeTable InitializeTableV2
LookupTableFind LookupTableFindV2 LookupTableImport LookupTableImportV2 LookupTableInsert LookupTableInsertV2
LookupTableSize LookupTableSizeV2 LookupTableExport LookupTableExportV2 LookupTableRemoveV2
Abs Acos Acosh Asin Asinh Atan Atan2 Atanh Ceil Cos Cosh Digamma Erf Erfc Erfinv Exp Expm1 Floor Inv
Invert IsFinite IsInf IsNan Lgamma Log Log1p LogicalNot Neg Ndtri Reciprocal Rint Round Rsqrt Sigmoid Sign
Sin Sinh Softplus Softsign Sqrt Square Tan Tanh Relu Relu6 Elu Selu LeakyRelu Softmax LogSoftmax
Real Imag Angle Conj Complex ComplexAbs Cast Bitcast PopulationCount Betainc Igamma Igammac Polygamma Zeta
BesselI0 BesselI0e BesselI1 BesselI1e BesselJ0 BesselJ1 BesselK0 BesselK0e BesselK1 BesselK1e BesselY0
BesselY1 Dawsn Expint FresnelCos FresnelSin Spence
Add AddV2 AddN AccumulateNV2 Sub Mul MulNoNan Div DivNoNan RealDiv FloorDiv FloorMod Mod TruncateDiv
TruncateMod Pow Maximum Minimum SquaredDifference Xdivy Xlogy Xlog1py Equal NotEqual Greater GreaterEqual
Less LessEqual LogicalAnd LogicalOr ApproximateEqual BitwiseAnd BitwiseOr BitwiseXor LeftShift RightShift
NextAfter ClipByValue Select SelectV2 BiasAdd BiasAddV1
Sum Prod Max Min Mean All Any ArgMax ArgMin EuclideanNorm Cumsum Cumprod CumulativeLogsumexp
MatMul BatchMatMul BatchMatMulV2 BatchMatMulV3 SparseMatMul Einsum MatrixInverse MatrixDeterminant
LogMatrixDeterminant Cholesky Qr Svd SelfAdjointEig SelfAdjointEigV2 Eig Lu MatrixSolve MatrixSolveLs
MatrixTriangularSolve BandedTriangularSolve MatrixBandPart MatrixDiag MatrixDiagV2 MatrixDiagV3
MatrixDiagPart MatrixDiagPartV2 MatrixDiagPartV3 MatrixSetDiag MatrixSetDiagV2 MatrixSetDiagV3
MatrixExponential MatrixLogarithm MatrixSquareRoot TridiagonalMatMul TridiagonalSolve Cross
Reshape Shape ShapeN Size Rank ExpandDims Squeeze Transpose ConjugateTranspose Pack Unpack Concat ConcatV2
ConcatOffset Split SplitV Slice StridedSlice TensorStridedSliceUpdate Gather GatherV2 GatherNd ScatterNd
TensorScatterAdd TensorScatterSub TensorScatterMax TensorScatterMin TensorScatterUpdate Tile Pad PadV2
MirrorPad Fill Empty ZerosLike OnesLike Range LinSpace OneHot Reverse ReverseV2 ReverseSequence Roll Where
BroadcastTo BroadcastArgs BroadcastGradientArgs DepthToSpace SpaceToDepth SpaceToBatch SpaceToBatchND
BatchToSpace BatchToSpaceND InvertPermutation Unique UniqueV2 UniqueWithCounts UniqueWithCountsV2 TopK TopKV2
InTopK InTopKV2 NthElement Bucketize LowerBound UpperBound DynamicPartition DynamicStitch
ParallelDynamicStitch Diag DiagPart UnravelIndex ListDiff SetSize DenseToDenseSetOperation
DenseToSparseSetOperation ExtractImagePatches ExtractVolumePatches DataFormatDimMap DataFormatVecPermute
Bincount DenseBincount HistogramFixedWidth Fingerprint MakeUnique InplaceAdd InplaceSub InplaceUpdate
SegmentSum SegmentMean SegmentMax SegmentMin SegmentProd SegmentSumV2 SegmentMaxV2 SegmentMinV2 SegmentProdV2
UnsortedSegmentSum UnsortedSegmentMax UnsortedSegmentMin UnsortedSegmentProd
Conv Conv2D Conv3D DepthwiseConv2dNative Conv2DBackpropInput Conv2DBackpropInputV2 Conv3DBackpropInputV2
Conv2DBackpropFilter Conv3DBackpropFilterV2 DepthwiseConv2dNativeBackpropInput
DepthwiseConv2dNativeBackpropFilter MaxPool MaxPoolV2 MaxPool3D AvgPool AvgPool3D MaxPoolWithArgmax
FusedBatchNorm FusedBatchNormV2 FusedBatchNormV3 BatchNormWithGlobalNormalization LRN Dilation2D
SoftmaxCrossEntropyWithLogits SparseSoftmaxCrossEntropyWithLogits L2Loss FractionalMaxPool FractionalAvgPool
CTCGreedyDecoder CTCBeamSearchDecoder CTCLoss CTCLossV2 BlockLSTM BlockLSTMV2 LSTMBlockCell GRUBlockCell
CudnnRNN CudnnRNNV2 CudnnRNNV3 CudnnRNNBackprop CudnnRNNBackpropV2 CudnnRNNBackpropV3 CudnnRNNParamsSize
CudnnRNNParamsToCanonical CudnnRNNParamsToCanonicalV2 CudnnRNNCanonicalToParams CudnnRNNCanonicalToParamsV2
_FusedConv2D _FusedMatMul _FusedBatchNormEx _FusedDepthwiseConv2dNative
ResizeBilinear ResizeNearestNeighbor ResizeBicubic ResizeArea ScaleAndTranslate CropAndResize AdjustContrast
AdjustContrastv2 AdjustHue AdjustSaturation RGBToHSV HSVToRGB ImageProjectiveTransformV2
ImageProjectiveTransformV3 NonMaxSuppression NonMaxSuppressionV2 NonMaxSuppressionV3 NonMaxSuppressionV4
NonMaxSuppressionV5 NonMaxSuppressionWithOverlaps CombinedNonMaxSuppression DrawBoundingBoxes
DrawBoundingBoxesV2 ExtractGlimpse ExtractGlimpseV2 StatelessSampleDistortedBoundingBox
SampleDistortedBoundingBox SampleDistortedBoundingBoxV2 DecodeJpeg DecodeAndCropJpeg DecodePng DecodeGif
DecodeBmp DecodeWebP DecodeImage ExtractJpegShape EncodeJpeg EncodeJpegVariableQuality EncodePng
DecodeWav EncodeWav AudioSpectrogram Mfcc
FFT FFT2D FFT3D FFTND IFFT IFFT2D IFFT3D IFFTND RFFT RFFT2D RFFT3D RFFTND IRFFT IRFFT2D IRFFT3D IRFFTND
RandomUniform RandomUniformInt RandomStandardNormal TruncatedNormal ParameterizedTruncatedNormal RandomShuffle
RandomGamma RandomPoisson RandomPoissonV2 Multinomial RandomIndexShuffle StatelessShuffle
StatelessRandomUniform StatelessRandomUniformV2 StatelessRandomUniformInt StatelessRandomUniformIntV2
StatelessRandomUniformFullInt StatelessRandomUniformFullIntV2 StatelessRandomNormal StatelessRandomNormalV2
StatelessTruncatedNormal StatelessTruncatedNormalV2 StatelessMultinomial StatelessRandomBinomial
StatelessRandomGammaV2 StatelessRandomGammaV3 StatelessRandomPoisson StatelessParameterizedTruncatedNormal
StatelessRandomGetKeyCounter StatelessRandomGetKeyCounterAlg StatelessRandomGetAlg RngBitGenerator
RngReadAndSkip RngSkip StatefulUniform StatefulUniformInt StatefulUniformFullInt StatefulStandardNormalV2
StatefulTruncatedNormal StatefulRandomBinomial NonDeterministicInts
StringJoin StringSplit StringSplitV2 StringLength StringLower StringUpper StringStrip StringToHashBucket
StringToHashBucketFast StringToHashBucketStrong StringToNumber AsString Substr RegexReplace
StaticRegexReplace RegexFullMatch StaticRegexFullMatch StringFormat ReduceJoin StringNGrams UnicodeDecode
UnicodeDecodeWithOffsets UnicodeEncode UnicodeScript UnicodeTranscode DecodeBase64 EncodeBase64
UnsortedSegmentJoin DecodeRaw DecodePaddedRaw DecodeCSV DecodeCompressed DecodeJSONExample ParseTensor
SerializeTensor ParseExample ParseExampleV2 ParseSingleExample ParseSequenceExample ParseSequenceExampleV2
ParseSingleSequenceExample
EmptyTensorList TensorListReserve TensorListFromTensor TensorListGetItem TensorListSetItem TensorListStack
TensorListLength TensorListElementShape TensorListPushBack TensorListPushBackBatch TensorListPopBack
TensorListConcat TensorListConcatV2 TensorListConcatLists TensorListGather TensorListScatter
TensorListScatterV2 TensorListScatterIntoExistingList TensorListSplit TensorListResize
TensorArrayV3 TensorArrayReadV3 TensorArrayWriteV3 TensorArrayGatherV3 TensorArrayScatterV3
TensorArraySizeV3 TensorArrayCloseV3 TensorArrayConcatV3 TensorArraySplitV3 TensorArrayGradV3
EmptyTensorMap TensorMapInsert TensorMapLookup TensorMapErase TensorMapHasKey TensorMapSize TensorMapStackKeys
SparseToDense SparseAdd SparseConcat SparseReshape SparseReorder SparseSlice SparseSplit SparseFillEmptyRows
SparseTensorDenseMatMul SparseTensorDenseAdd SparseReduceSum SparseReduceSumSparse SparseReduceMax
SparseReduceMaxSparse SparseSoftmax SparseSegmentSum SparseSegmentMean SparseSegmentSqrtN
SparseSegmentSumWithNumSegments SparseSegmentMeanWithNumSegments SparseSegmentSqrtNWithNumSegments
SparseDenseCwiseAdd SparseDenseCwiseMul SparseDenseCwiseDiv SparseCross SparseCrossV2 SparseCrossHashed
SparseBincount SparseSparseMaximum SparseSparseMinimum SparseToSparseSetOperation SerializeSparse
SerializeManySparse DeserializeSparse DeserializeManySparse DenseCountSparseOutput SparseCountSparseOutput
RaggedGather RaggedRange RaggedTensorToTensor RaggedTensorToSparse RaggedTensorToVariant
RaggedTensorFromVariant RaggedCross RaggedBincount RaggedCountSparseOutput RaggedFillEmptyRows
FakeQuantWithMinMaxArgs FakeQuantWithMinMaxVars FakeQuantWithMinMaxVarsPerChannel QuantizeAndDequantize
QuantizeAndDequantizeV2 QuantizeAndDequantizeV3 QuantizeAndDequantizeV4 QuantizeV2 Dequantize
UniformQuantize UniformDequantize UniformRequantize
""".split())
# Print ops write to stderr unless told otherwise; "file://..." streams are file writes.
PRINT_OPS = frozenset({"PrintV2", "Print"})
# The saver's own functions: reachable from the SaverDef's save tensor or restore op only.
SAVE_OPS = frozenset({"SaveV2", "SaveSlices", "Save", "MergeV2Checkpoints", "ShardedFilename", "ShardedFilespec"})
RESTORE_OPS = frozenset({"RestoreV2", "Restore", "RestoreSlice"})
# Lookup tables initialised from a vocabulary file: allowed when the file is one of the SavedModel's
# own assets (passed in as a function argument), not a path written into the graph.
ASSET_FILE_OPS = frozenset({"InitializeTableFromTextFile", "InitializeTableFromTextFileV2"})
MAX_OPS_NAMED = 6


def op_is_computation(op: str) -> bool:
    """An allowlisted op, or the gradient of one (saved training functions hold ReluGrad and the like)."""
    if op in COMPUTATION_OPS:
        return True
    base = re.sub(r"(Grad)+(V\d+)?$", "", op)
    return base != op and base in COMPUTATION_OPS


@dataclasses.dataclass
class GraphScan:
    """Ops a SavedModel's graphs hold that are not computation, and where."""

    refused: Dict[str, List[str]] = dataclasses.field(default_factory=dict)  # op → functions (or "graph")

    def add(self, op: str, where: str) -> None:
        places = self.refused.setdefault(op, [])
        if where not in places:
            places.append(where)


def check_saved_model(path: Path, *, unsafe: bool = False) -> None:
    """Refuse a SavedModel whose graph (top level or function library) holds ops outside the allowlist."""
    if unsafe:
        return
    scan = scan_saved_model(path)
    if scan.refused:
        ops = sorted(scan.refused)
        named = ", ".join(f"{op} (in {scan.refused[op][0]})" for op in ops[:MAX_OPS_NAMED])
        more = f" and {len(ops) - MAX_OPS_NAMED} more" if len(ops) > MAX_OPS_NAMED else ""
        raise KdiagError(
            f"{path.name} is a SavedModel whose graph holds operations that are not computation: {named}{more}; "
            "they would touch files, call Python, or reach other processes or the network when it is loaded or "
            "called", "if you trust this SavedModel, re-run with --unsafe")


def read_saved_model(path: Path):
    """The SavedModel protocol buffer (saved_model.pb, or saved_model.pbtxt)."""
    from kdiag.engine.tf import tf_and_keras

    tf_and_keras()  # TensorFlow's import, with its native start-up noise held back
    from google.protobuf import message, text_format
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    binary = path / "saved_model.pb"
    try:
        if binary.is_file():
            proto.ParseFromString(binary.read_bytes())
        else:
            text_format.Parse((path / "saved_model.pbtxt").read_text(encoding="utf-8"), proto)
    except (message.DecodeError, text_format.ParseError, UnicodeDecodeError, OSError, ValueError) as exc:
        raise KdiagError(f"{path} could not be read as a SavedModel (saved_model.pb is damaged: "
                         f"{type(exc).__name__})", "export the model again, or download it again") from exc
    return proto


def scan_saved_model(path: Path) -> GraphScan:
    scan = GraphScan()
    for meta_graph in read_saved_model(path).meta_graphs:
        _scan_meta_graph(meta_graph, scan)
    return scan


def _scan_meta_graph(meta_graph, scan: GraphScan) -> None:
    graph = meta_graph.graph_def
    functions = {function.signature.name: function for function in graph.library.function}
    saver = meta_graph.saver_def
    save_nodes = _ancestors(graph.node, _node_name(saver.save_tensor_name))
    restore_nodes = _ancestors(graph.node, _node_name(saver.restore_op_name))
    save_functions = _called_closure([n for n in graph.node if n.name in save_nodes], functions)
    restore_functions = _called_closure([n for n in graph.node if n.name in restore_nodes], functions)
    assets_inside = all(_plain_file_name(asset.filename) for asset in meta_graph.asset_file_def)

    def allowed(node, extra, arguments) -> bool:
        if node.op in functions or op_is_computation(node.op) or node.op in extra:
            return True
        if node.op in PRINT_OPS:
            stream = node.attr["output_stream"].s.decode("utf-8", "replace") if "output_stream" in node.attr else ""
            return not stream.startswith("file:")
        if node.op in ASSET_FILE_OPS:  # the file name must be a function argument bound to an asset
            data_inputs = [name for name in node.input if not name.startswith("^")]
            return assets_inside and len(data_inputs) >= 2 and data_inputs[1].split(":")[0] in arguments
        return False

    for node in graph.node:
        extra = (SAVE_OPS if node.name in save_nodes else frozenset()) | \
            (RESTORE_OPS if node.name in restore_nodes else frozenset())
        if not allowed(node, extra, ()):
            scan.add(_op_label(node), "the graph")
    for name, function in functions.items():
        extra = (SAVE_OPS if name in save_functions else frozenset()) | \
            (RESTORE_OPS if name in restore_functions else frozenset())
        arguments = {arg.name for arg in function.signature.input_arg}
        for node in function.node_def:
            if not allowed(node, extra, arguments):
                scan.add(_op_label(node), name)


def _op_label(node) -> str:
    if node.op in PRINT_OPS and "output_stream" in node.attr:
        return f"{node.op} to {node.attr['output_stream'].s.decode('utf-8', 'replace')}"
    return node.op


def _plain_file_name(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")


def _node_name(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]


def _ancestors(nodes, start: str) -> Set[str]:
    """The node named start and every node it depends on (data and control inputs)."""
    if not start:
        return set()
    inputs = {node.name: [_node_name(name) for name in node.input] for node in nodes}
    seen, stack = set(), [start]
    while stack:
        name = stack.pop()
        if name in seen or name not in inputs:
            continue
        seen.add(name)
        stack.extend(inputs[name])
    return seen


def _called_closure(nodes, functions) -> Set[str]:
    """The library functions these nodes call, directly or through the functions they call."""
    seen: Set[str] = set()
    stack = [name for node in nodes for name in _called(node, functions)]
    while stack:
        name = stack.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        stack.extend(called for node in functions[name].node_def for called in _called(node, functions))
    return seen


def _called(node, functions) -> Iterator[str]:
    if node.op in functions:
        yield node.op
    for value in node.attr.values():
        if value.HasField("func"):
            yield value.func.name
        elif value.HasField("list"):
            yield from (function.name for function in value.list.func)
