"""Memory a model will take, estimated from what its config declares, before Keras builds anything.

A model file's weights are not the only memory it makes kdiag spend. Keras allocates every
variable a config declares while it builds the model, whatever the file stores: a 1.5 KB .keras
declaring Dense(units=10**8) and no weights made Keras allocate gigabytes, then fail. And the
activations of a call grow with the shapes the config declares: `Input((10**8,)) -> ReLU`, 1.4 KB,
passed 8 GB (issue 20). So the config is read here (a JSON dict: Keras 3 `config.json`, or a Keras
2-era HDF5 `model_config`), nothing imported from Keras, and each layer's parameters and output
shape are worked out from the declared shapes:

- input shapes: the InputLayers' `batch_shape` / `batch_input_shape`, then each layer's output
  shape from its class and config (units, filters and kernel sizes, strides and padding, pooling,
  reshapes, embeddings, recurrent units, merges, nested models and wrappers). Keras 3 configs also
  record the shape of every tensor a layer was called on (`__keras_tensor__` in `inbound_nodes`)
  and the shape each layer was built for (`build_config`): those are what Keras allocates from, so
  they win over the propagated ones;
- parameters per layer from those shapes (Dense: input dim x units + units; Conv: kernel x
  channels / groups x filters + filters; Embedding: input_dim x output_dim; LSTM: 4 x (input x
  units + units^2 + units); ...), which `tests/test_declared.py` checks against `count_params()` on
  real models.

A layer class not known here counts no parameters and passes its first input's shape on, and a
dynamic axis counts as 1: the estimate stays a lower bound, so it never refuses a model that fits
on account of what it cannot read. What each strategy needs from these sizes (its copies of the
weights, a call's activations) is kdiag.engine.intake.memory_model's, calibrated on measured peaks.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple


Shape = Tuple[Optional[int], ...]  # batch axis first (None when dynamic)
MODEL_CLASSES = frozenset({"Functional", "Model", "Sequential"})
#: Bytes per element by dtype-policy name; a policy's variables stay float32 under mixed precision.
DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "mixed_float16": 2, "mixed_bfloat16": 2,
               "int8": 1, "uint8": 1, "int16": 2, "int32": 4, "int64": 8, "bool": 1}
#: Nesting deeper than this (models inside models inside ...) is not estimated further.
MAX_DEPTH = 50


@dataclasses.dataclass(frozen=True)
class DeclaredLayer:
    name: str
    class_name: str
    parameters: int  # elements of the variables it declares
    output_elements: int  # per sample: its outputs' elements over every call (node), batch axis excluded
    activation_itemsize: int = 4
    input_elements: int = 0  # per sample: the largest call's inputs


@dataclasses.dataclass(frozen=True)
class DeclaredModel:
    """What a model config declares: its inputs, and per layer its parameters and output sizes."""

    inputs: Tuple[Tuple[str, Shape, int], ...]  # (name, shape with the batch axis, itemsize)
    layers: Tuple[DeclaredLayer, ...]
    unknown: Tuple[str, ...] = ()  # layer classes estimated as shape-preserving, parameter-free
    outputs: Tuple[Shape, ...] = ()  # the model's outputs, batch axis first

    @property
    def parameters(self) -> int:
        return sum(layer.parameters for layer in self.layers)

    @property
    def weights_bytes(self) -> int:
        """Variables are float32 under float32 and mixed precision alike: 4 bytes a parameter."""
        return 4 * self.parameters

    @property
    def fixed_batch(self) -> Optional[int]:
        fixed = {shape[0] for _, shape, _ in self.inputs if shape and shape[0] is not None}
        return fixed.pop() if len(fixed) == 1 else None

    def input_bytes(self, batch: int, overrides: Mapping[str, Sequence[int]] = {}) -> int:
        total = 0
        for name, shape, itemsize in self.inputs:
            dims = overrides.get(name, overrides.get("") if len(self.inputs) == 1 else None)
            inner = tuple(dims) if dims is not None and len(dims) == len(shape) - 1 else shape[1:]
            total += batch * _elements(inner) * itemsize
        return total

    def output_bytes(self, batch: int) -> int:
        """One call's outputs (float32, a dynamic axis as 1)."""
        return batch * sum(4 * _elements(shape[1:]) for shape in self.outputs)

    def activation_bytes(self, batch: int) -> int:
        """Every layer's outputs for one batch, summed: what an eager call holds by its end (Keras keeps
        each layer's outputs until the call returns)."""
        return batch * sum(layer.output_elements * layer.activation_itemsize for layer in self.layers)

    def largest_layer_bytes(self, batch: int) -> int:
        """The largest layer's inputs and outputs together for one batch: what a graph call (which
        frees each tensor once its last reader ran) holds at its peak, at least."""
        return batch * max((
            (layer.input_elements + layer.output_elements) * layer.activation_itemsize for layer in self.layers),
            default=0)


def declared_model(config) -> DeclaredModel:
    """Read a model config (Keras 3 config.json or a Keras 2 model_config, as parsed JSON)."""
    if not isinstance(config, dict):
        return DeclaredModel((), ())
    reader = _Reader()
    inputs = reader.model(config, None, depth=0)
    return DeclaredModel(tuple(inputs), tuple(reader.layers), tuple(sorted(reader.unknown)),
                         tuple(reader.last_outputs))


def declared_model_of(model) -> Optional[DeclaredModel]:
    """The declared model of a Keras model already built (an example, or one passed to the API), from
    its own serialised config; None when it cannot be serialised (a subclassed model, say)."""
    try:
        saving = getattr(__import__(type(model).__module__.split(".")[0]), "saving", None)
        serialize = getattr(saving, "serialize_keras_object", None)
        config = serialize(model) if serialize is not None else None
        if not isinstance(config, dict) or "config" not in config:
            config = {"class_name": type(model).__name__, "config": model.get_config()}
        declared = declared_model(config)
    except Exception:  # an estimate: a model that will not describe itself gets the older, weight-based one
        return None
    return declared if declared.layers else None


# --- the config reader ---------------------------------------------------------------------------


class _Reader:
    def __init__(self):
        self.layers: List[DeclaredLayer] = []
        self.unknown = set()

    def model(self, entry: dict, given: Optional[List[Shape]], depth: int) -> List[Tuple[str, Shape, int]]:
        """Walk a model entry ({class_name, config}); returns its inputs. Sets self.last_outputs."""
        self.last_outputs: List[Shape] = []
        config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
        layers = [layer for layer in config.get("layers") or [] if isinstance(layer, dict)]
        if depth > MAX_DEPTH:
            return []
        if entry.get("class_name") == "Sequential" or not any("inbound_nodes" in layer for layer in layers):
            return self._sequential(entry, layers, given, depth)
        return self._functional(config, layers, given, depth)

    def _sequential(self, entry, layers, given, depth):
        inputs = []
        shape = _build_shape(entry) or (given[0] if given else None)
        if layers and layers[0].get("class_name") == "InputLayer":
            shape = _input_shape(layers[0]) or shape
            inputs.append((_name(layers[0]), shape, _itemsize(layers[0])))
            layers = layers[1:]
        elif layers:
            first = layers[0].get("config") if isinstance(layers[0].get("config"), dict) else {}
            declared = first.get("batch_input_shape") or first.get("batch_shape")
            shape = _shape(declared) if declared is not None else (_build_shape(layers[0]) or shape)
            if shape is not None:
                inputs.append((f"{_name(layers[0])}_input", shape, _itemsize(layers[0])))
        for layer in layers:
            outputs = self.layer(layer, [shape] if shape is not None else [], depth)
            shape = outputs[0] if outputs else None
        self.last_outputs = [shape] if shape is not None else []
        return inputs

    def _functional(self, config, layers, given, depth):
        outputs: Dict[Tuple[str, int], List[Shape]] = {}
        inputs = []
        input_names = [_name(layer) for layer in layers if layer.get("class_name") == "InputLayer"]
        given = list(given or [])
        pending = []
        for layer in layers:
            if layer.get("class_name") == "InputLayer":
                shape = _input_shape(layer)
                position = input_names.index(_name(layer))
                if shape is None and position < len(given):
                    shape = given[position]
                if shape is not None:
                    outputs[(_name(layer), 0)] = [shape]
                    inputs.append((_name(layer), shape, _itemsize(layer)))
                continue
            for node_index, node in enumerate(layer.get("inbound_nodes") or []):
                pending.append((layer, node_index, node))
        # Keras lists layers in an order it can rebuild from, nearly always topological: a few
        # passes settle the rest; what never resolves is left out of the estimate.
        for _ in range(len(pending) + 1):
            waiting = []
            for layer, node_index, node in pending:
                shapes = _node_input_shapes(node, outputs)
                if shapes is None:
                    waiting.append((layer, node_index, node))
                    continue
                outputs[(_name(layer), node_index)] = self.layer(layer, shapes, depth, node_index == 0)
            if len(waiting) == len(pending):
                break
            pending = waiting
        self.last_outputs = []
        for reference in _references(config.get("output_layers")):
            found = outputs.get((reference[0], reference[1]))
            if found and reference[2] < len(found):
                self.last_outputs.append(found[reference[2]])
        return inputs

    def layer(self, entry: dict, shapes: List[Shape], depth: int, count_parameters: bool = True) -> List[Shape]:
        """Record one call of a layer on `shapes`; its output shapes."""
        class_name = entry.get("class_name")
        config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
        built = _build_shape(entry)
        if not shapes and built is not None:
            shapes = [built]
        if class_name in MODEL_CLASSES or (isinstance(config.get("layers"), list) and "name" in config):
            before = len(self.layers)
            self.model(entry, shapes, depth + 1)
            if not count_parameters:  # a shared submodel's second call: its activations only
                self.layers[before:] = [dataclasses.replace(layer, parameters=0) for layer in self.layers[before:]]
            return list(self.last_outputs)
        parameters, out = _layer_math(class_name, config, shapes, self, depth)
        if built is not None and len(shapes) <= 1 and shapes[:1] != [built]:
            # Keras builds the variables from build_config when it deserialises the layer, before the
            # layer is called on anything: the parameters are those; the activations, the call's.
            parameters = _layer_math(class_name, config, [built], self, depth)[0]
        if out is None:
            self.unknown.add(str(class_name))
            out = [shapes[0]] if shapes else []
        self.layers.append(DeclaredLayer(_name(entry), str(class_name), parameters if count_parameters else 0,
                                         sum(_elements(shape[1:]) for shape in out), _itemsize(entry),
                                         sum(_elements(shape[1:]) for shape in shapes)))
        return out


# --- per layer class: parameters and output shapes ----------------------------------------------

_IDENTITY = (
    "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax", "ThresholdedReLU", "Dropout", "SpatialDropout1D",
    "SpatialDropout2D", "SpatialDropout3D", "AlphaDropout", "GaussianDropout", "GaussianNoise",
    "ActivityRegularization", "Masking", "Identity", "Rescaling", "UnitNormalization", "CenterCrop",
    "Resizing", "RandomFlip", "RandomRotation", "RandomZoom", "RandomContrast", "RandomTranslation",
    "RandomCrop", "RandomBrightness", "TFOpLambda", "Lambda",
    "Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum",  # merges of same-shaped inputs
)
_POOLING = tuple(f"{kind}{rank}D" for kind in ("MaxPooling", "AveragePooling", "MaxPool", "AvgPool")
                 for rank in (1, 2, 3))


def _layer_math(class_name, config, shapes: List[Shape], reader: _Reader, depth: int):
    """(parameters, output shapes) of one call, or (0, None) for a class not known here."""
    if not shapes:
        return 0, None
    handler = _HANDLERS.get(class_name)
    if handler is None and isinstance(class_name, str) and class_name.startswith("Global") \
            and "Pooling" in class_name:
        handler = _global_pooling
    if handler is None:
        return 0, None
    return handler(class_name, config, shapes, reader, depth)


def _global_pooling(class_name, config, shapes, reader, depth):
    shape = shapes[0]
    channels_first = config.get("data_format") == "channels_first"
    channels = shape[1] if channels_first else shape[-1]
    if not config.get("keepdims"):
        return 0, [(shape[0], channels)]
    return 0, [_with_channels(shape[0], (1,) * (len(shape) - 2), channels, channels_first)]


def _normalization(class_name, config, shapes, reader, depth):
    channels = _axis_size(shapes[0], config.get("axis", -1))
    if class_name == "Normalization":  # mean, variance and a count
        return 2 * channels + 1, [shapes[0]]
    learned = channels * (bool(config.get("scale", True)) + bool(config.get("center", True)))
    moving = 2 * channels if class_name == "BatchNormalization" else 0  # moving mean and variance
    return learned + moving, [shapes[0]]


def _prelu(class_name, config, shapes, reader, depth):
    shared = config.get("shared_axes") or []
    return _elements([1 if i + 1 in shared else (d or 1) for i, d in enumerate(shapes[0][1:])]), [shapes[0]]


def _permute(class_name, config, shapes, reader, depth):
    shape = shapes[0]
    dims = [int(d) for d in config.get("dims") or [] if isinstance(d, (int, float)) and 0 < d < len(shape)]
    return 0, [(shape[0],) + tuple(shape[d] for d in dims) if len(dims) == len(shape) - 1 else shape]


def _concatenate(class_name, config, shapes, reader, depth):
    shape = shapes[0]
    if any(len(s) != len(shape) for s in shapes):
        return 0, [shape]
    index = config.get("axis", -1) % len(shape)
    total = sum(s[index] for s in shapes) if all(s[index] is not None for s in shapes) else None
    return 0, [shape[:index] + (total,) + shape[index + 1:]]


def _padding(class_name, config, shapes, reader, depth):
    zero = class_name.startswith("Zero")
    return 0, [_padded(config, shapes[0], "padding" if zero else "cropping", 1 if zero else -1)]


#: Per layer class: (class name, config, input shapes, reader, depth) -> (parameters, output shapes).
_HANDLERS = {
    **{name: lambda c, config, shapes, r, d: (0, [shapes[0]]) for name in _IDENTITY},
    "Dense": lambda c, config, shapes, r, d: (
        _dense(shapes[0][-1], _int(config.get("units")), config.get("use_bias", True)),
        [shapes[0][:-1] + (_int(config.get("units")),)]),
    "Embedding": lambda c, config, shapes, r, d: (
        _int(config.get("input_dim")) * _int(config.get("output_dim")), [shapes[0] + (_int(config.get("output_dim")),)]),
    **{name: lambda c, config, shapes, r, d: _conv(config, shapes[0], transpose=False)
       for name in ("Conv1D", "Conv2D", "Conv3D", "Convolution1D", "Convolution2D", "Convolution3D")},
    **{name: lambda c, config, shapes, r, d: _conv(config, shapes[0], transpose=True)
       for name in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose", "Convolution2DTranspose")},
    **{name: lambda c, config, shapes, r, d: _depthwise(config, shapes[0])
       for name in ("DepthwiseConv1D", "DepthwiseConv2D")},
    **{name: lambda c, config, shapes, r, d: _separable(config, shapes[0])
       for name in ("SeparableConv1D", "SeparableConv2D", "SeparableConvolution2D")},
    **{name: lambda c, config, shapes, r, d: (0, [_pooled(config, shapes[0])]) for name in _POOLING},
    **{name: _normalization
       for name in ("BatchNormalization", "LayerNormalization", "GroupNormalization", "Normalization")},
    "PReLU": _prelu,
    **{name: lambda c, config, shapes, r, d: _recurrent(c, config, shapes[0])
       for name in ("LSTM", "GRU", "SimpleRNN", "CuDNNLSTM", "CuDNNGRU")},
    "Bidirectional": lambda c, config, shapes, r, d: _bidirectional(config, shapes[0], r, d),
    "TimeDistributed": lambda c, config, shapes, r, d: _time_distributed(config, shapes[0], r, d),
    "Flatten": lambda c, config, shapes, r, d: (0, [(shapes[0][0], _elements(shapes[0][1:]))]),
    "Reshape": lambda c, config, shapes, r, d: (
        0, [(shapes[0][0],) + _reshaped(shapes[0][1:], config.get("target_shape"))]),
    "Permute": _permute,
    "RepeatVector": lambda c, config, shapes, r, d: (0, [(shapes[0][0], _int(config.get("n"))) + shapes[0][1:]]),
    **{name: _padding for name in ("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D", "Cropping1D", "Cropping2D",
                                   "Cropping3D")},
    **{name: lambda c, config, shapes, r, d: (0, [_scaled(config, shapes[0], config.get("size", 2))])
       for name in ("UpSampling1D", "UpSampling2D", "UpSampling3D")},
    "Concatenate": _concatenate,
    "MultiHeadAttention": lambda c, config, shapes, r, d: _attention(config, shapes),
    "Attention": lambda c, config, shapes, r, d: (0, [shapes[0]]),
    "AdditiveAttention": lambda c, config, shapes, r, d: (
        (shapes[0][-1] or 0) if config.get("use_scale", True) else 0, [shapes[0]]),
}


def _dense(inputs: Optional[int], units: int, bias) -> int:
    return (inputs or 0) * units + (units if bias else 0)


def _spatial(config, shape: Shape):
    """(channels-last?, spatial dims, channels) of a conv or pooling input."""
    first = config.get("data_format") == "channels_first"
    return first, (shape[2:] if first else shape[1:-1]), (shape[1] if first else shape[-1])


def _tuple(value, rank: int, default: int = 1) -> Tuple[int, ...]:
    if value is None:
        return (default,) * rank
    if isinstance(value, (list, tuple)):
        values = [int(v) if isinstance(v, (int, float)) else default for v in value][:rank]
        return tuple(values + [values[-1] if values else default] * (rank - len(values)))
    return (int(value),) * rank if isinstance(value, (int, float)) else (default,) * rank


def _out_dim(size: Optional[int], kernel: int, stride: int, dilation: int, padding: str) -> Optional[int]:
    if size is None:
        return None
    if padding in ("same", "causal"):
        return -(-size // max(stride, 1))
    effective = (kernel - 1) * dilation + 1
    return max(0, (size - effective) // max(stride, 1) + 1)


@dataclasses.dataclass(frozen=True)
class _Window:
    """A convolution's or pooling's sliding window over its input's spatial axes."""

    channels_first: bool
    spatial: Tuple[Optional[int], ...]
    channels: int
    kernel: Tuple[int, ...]
    strides: Tuple[int, ...]
    dilation: Tuple[int, ...]
    padding: str

    def out_dims(self) -> Tuple[Optional[int], ...]:
        return tuple(_out_dim(s, k, st, d, self.padding)
                     for s, k, st, d in zip(self.spatial, self.kernel, self.strides, self.dilation))


def _window(config, shape: Shape) -> _Window:
    first, spatial, channels = _spatial(config, shape)
    rank = len(spatial)
    return _Window(first, spatial, channels or 0, _tuple(config.get("kernel_size"), rank),
                   _tuple(config.get("strides"), rank), _tuple(config.get("dilation_rate"), rank),
                   str(config.get("padding", "valid")).lower())


def _bias(config, count: int) -> int:
    return count if config.get("use_bias", True) else 0


def _conv(config, shape: Shape, transpose: bool):
    w = _window(config, shape)
    filters = _int(config.get("filters"))
    groups = max(_int(config.get("groups", 1)), 1)
    parameters = math.prod(w.kernel) * w.channels // groups * filters + _bias(config, filters)
    if transpose:
        dims = tuple(None if s is None else (s * st if w.padding == "same" else s * st + max(k - st, 0))
                     for s, k, st in zip(w.spatial, w.kernel, w.strides))
    else:
        dims = w.out_dims()
    return parameters, [_with_channels(shape[0], dims, filters, w.channels_first)]


def _depthwise(config, shape: Shape):
    w = _window(config, shape)
    out_channels = w.channels * _int(config.get("depth_multiplier", 1))
    parameters = math.prod(w.kernel) * out_channels + _bias(config, out_channels)
    return parameters, [_with_channels(shape[0], w.out_dims(), out_channels, w.channels_first)]


def _separable(config, shape: Shape):
    w = _window(config, shape)
    depthwise = w.channels * _int(config.get("depth_multiplier", 1))
    filters = _int(config.get("filters"))
    parameters = math.prod(w.kernel) * depthwise + depthwise * filters + _bias(config, filters)
    return parameters, [_with_channels(shape[0], w.out_dims(), filters, w.channels_first)]


def _with_channels(batch, dims, channels, channels_first: bool) -> Shape:
    return (batch, channels) + tuple(dims) if channels_first else (batch,) + tuple(dims) + (channels,)


def _pooled(config, shape: Shape) -> Shape:
    first, spatial, channels = _spatial(config, shape)
    rank = len(spatial)
    pool = _tuple(config.get("pool_size"), rank, 2)
    strides = _tuple(config.get("strides") if config.get("strides") is not None else list(pool), rank)
    padding = str(config.get("padding", "valid")).lower()
    dims = tuple(_out_dim(s, p, st, 1, padding) for s, p, st in zip(spatial, pool, strides))
    return _with_channels(shape[0], dims, channels, first)


def _padded(config, shape: Shape, key: str, sign: int) -> Shape:
    first, spatial, channels = _spatial(config, shape)
    rank = len(spatial)
    value = config.get(key, 1 if sign == 1 else 0)
    pairs = []
    for i in range(rank):
        item = value[i] if isinstance(value, (list, tuple)) and i < len(value) else value
        if isinstance(item, (list, tuple)):
            pairs.append(sum(int(v) for v in item))
        elif isinstance(item, (int, float)):
            pairs.append(2 * int(item))
        else:
            pairs.append(0)
    dims = tuple(None if s is None else max(0, s + sign * p) for s, p in zip(spatial, pairs))
    return _with_channels(shape[0], dims, channels, first)


def _scaled(config, shape: Shape, size) -> Shape:
    first, spatial, channels = _spatial(config, shape)
    factors = _tuple(size, len(spatial), 2)
    dims = tuple(None if s is None else s * f for s, f in zip(spatial, factors))
    return _with_channels(shape[0], dims, channels, first)


def _recurrent(class_name, config, shape: Shape):
    units = _int(config.get("units"))
    inputs = shape[-1] or 0
    bias = bool(config.get("use_bias", True))
    if class_name in ("LSTM", "CuDNNLSTM"):
        parameters = 4 * (inputs * units + units * units + (units if bias else 0))
    elif class_name in ("GRU", "CuDNNGRU"):
        reset_after = config.get("reset_after", True) or class_name == "CuDNNGRU"
        parameters = 3 * (inputs * units + units * units + ((2 if reset_after else 1) * units if bias else 0))
    else:
        parameters = inputs * units + units * units + (units if bias else 0)
    out = shape[:2] + (units,) if config.get("return_sequences") else (shape[0], units)
    outputs = [out]
    if config.get("return_state"):
        outputs += [(shape[0], units)] * (2 if "LSTM" in class_name else 1)
    return parameters, outputs


def _bidirectional(config, shape: Shape, reader: _Reader, depth: int):
    forward = config.get("layer") if isinstance(config.get("layer"), dict) else {}
    backward = config.get("backward_layer") if isinstance(config.get("backward_layer"), dict) else forward
    parameters = 0
    outs = []
    for entry in (forward, backward):
        inner = entry.get("config") if isinstance(entry.get("config"), dict) else {}
        count, out = _layer_math(entry.get("class_name"), inner, [shape], reader, depth + 1)
        if out is None:
            return 0, None
        parameters += count
        outs.append(out[0])
    mode = config.get("merge_mode", "concat")
    if mode == "concat":
        return parameters, [outs[0][:-1] + ((outs[0][-1] or 0) + (outs[1][-1] or 0),)]
    if mode is None:
        return parameters, outs
    return parameters, [outs[0]]


def _time_distributed(config, shape: Shape, reader: _Reader, depth: int):
    entry = config.get("layer") if isinstance(config.get("layer"), dict) else {}
    inner_shape = (shape[0],) + shape[2:]
    if entry.get("class_name") in MODEL_CLASSES:
        before = len(reader.layers)
        reader.model(entry, [inner_shape], depth + 1)
        steps = shape[1] or 1
        # The inner model's layers run once per time step: their activations are per step.
        reader.layers[before:] = [dataclasses.replace(layer, output_elements=layer.output_elements * steps)
                                  for layer in reader.layers[before:]]
        out = reader.last_outputs[0] if reader.last_outputs else inner_shape
        return 0, [(shape[0], shape[1]) + out[1:]]
    inner = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    parameters, out = _layer_math(entry.get("class_name"), inner, [inner_shape], reader, depth + 1)
    if out is None:
        return 0, None
    return parameters, [(shape[0], shape[1]) + out[0][1:]]


def _attention(config, shapes: List[Shape]):
    query = shapes[0]
    value = shapes[1] if len(shapes) > 1 else query
    key = shapes[2] if len(shapes) > 2 else value
    heads = _int(config.get("num_heads"))
    key_dim = _int(config.get("key_dim"))
    value_dim = _int(config.get("value_dim")) or key_dim
    bias = bool(config.get("use_bias", True))
    q, k, v = query[-1] or 0, key[-1] or 0, value[-1] or 0
    out_dim = q
    if isinstance(config.get("output_shape"), (list, tuple)) and config["output_shape"]:
        out_dim = _int(config["output_shape"][-1])
    elif isinstance(config.get("output_shape"), (int, float)):
        out_dim = int(config["output_shape"])
    parameters = (q * heads * key_dim + k * heads * key_dim + v * heads * value_dim
                  + heads * value_dim * out_dim)
    if bias:
        parameters += 2 * heads * key_dim + heads * value_dim + out_dim
    return parameters, [query[:-1] + (out_dim,)]


def _reshaped(inner: Shape, target) -> Tuple[Optional[int], ...]:
    if not isinstance(target, (list, tuple)):
        return tuple(inner)
    dims = [int(d) if isinstance(d, (int, float)) else -1 for d in target]
    if -1 in dims and all(d is not None for d in inner):
        known = math.prod(d for d in dims if d != -1) or 1
        dims[dims.index(-1)] = _elements(inner) // known
    return tuple(None if d == -1 else d for d in dims)


# --- small readers ------------------------------------------------------------------------------


def _int(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return 0
    return max(0, int(value))


def _shape(value) -> Optional[Shape]:
    if not isinstance(value, (list, tuple)) or any(isinstance(d, (list, dict)) for d in value):
        return None
    return tuple(None if d is None or isinstance(d, bool) or not isinstance(d, (int, float)) or d < 0 else int(d)
                 for d in value)


def _build_shape(entry: dict) -> Optional[Shape]:
    build = entry.get("build_config")
    if isinstance(build, dict):
        return _shape(build.get("input_shape"))
    return None


def _input_shape(entry: dict) -> Optional[Shape]:
    config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    for key in ("batch_shape", "batch_input_shape"):
        if config.get(key) is not None:
            return _shape(config[key])
    if config.get("shape") is not None:  # Keras 3's keras.Input(shape=...) spelling, batch axis excluded
        inner = _shape(config["shape"])
        return None if inner is None else (None,) + inner
    return None


def _name(entry: dict) -> str:
    config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    name = entry.get("name", config.get("name"))
    return name if isinstance(name, str) else str(name)


def _itemsize(entry: dict) -> int:
    config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    dtype = config.get("dtype")
    if isinstance(dtype, dict):
        inner = dtype.get("config") if isinstance(dtype.get("config"), dict) else {}
        dtype = inner.get("name")
    return DTYPE_BYTES.get(dtype, 4) if isinstance(dtype, str) else 4


def _elements(dims) -> int:
    """Elements of a shape without its batch axis; a dynamic axis counts as 1 (a lower bound)."""
    return math.prod(1 if d is None else int(d) for d in dims)


def _axis_size(shape: Shape, axis) -> int:
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    total = 1
    for a in axes:
        if isinstance(a, (int, float)) and -len(shape) <= int(a) < len(shape):
            total *= shape[int(a)] or 1
    return total


def _references(value) -> Iterator[Tuple[str, int, int]]:
    """[name, node, tensor] references: one, a list of them, or Keras 3's dict of them."""
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)) and len(value) >= 3 and isinstance(value[0], str):
        yield value[0], _int(value[1]), _int(value[2])
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _references(item)


def _node_input_shapes(node, outputs: Mapping[Tuple[str, int], List[Shape]]) -> Optional[List[Shape]]:
    """The shapes a node was called on: as Keras 3 recorded them, else looked up from the layers that
    made them; None while one of those is not known yet."""
    recorded = list(_keras_tensors(node))
    if recorded:
        references = [history for _, history in recorded]
    else:  # Keras 2: [[layer, node, tensor, kwargs], ...]
        references = [tuple(item[:3]) for item in (node if isinstance(node, list) else [])
                      if isinstance(item, list) and len(item) >= 3 and isinstance(item[0], str)]
    shapes = []
    for index, (name, node_index, tensor_index) in enumerate(references):
        found = outputs.get((name, _int(node_index)))
        propagated = found[_int(tensor_index)] if found is not None and _int(tensor_index) < len(found) else None
        written = recorded[index][0] if recorded else None
        if propagated is None and written is None:
            return None  # its producer is not known yet (or never will be)
        # Keras rebuilds the graph from the inputs, so the recorded shape is only a hint (a config
        # can lie in it); the propagated one may miss for a class not known here. The larger counts.
        candidates = [shape for shape in (propagated, written) if shape is not None]
        shapes.append(max(candidates, key=lambda shape: _elements(shape[1:])))
    return shapes


def _keras_tensors(value) -> Iterator[Tuple[Optional[Shape], Tuple[str, int, int]]]:
    """Keras 3's `__keras_tensor__` records in a node's args: (shape, (layer, node, tensor))."""
    stack = [value.get("args")] if isinstance(value, dict) else []
    while stack:
        item = stack.pop(0)
        if isinstance(item, dict) and item.get("class_name") == "__keras_tensor__":
            config = item.get("config") if isinstance(item.get("config"), dict) else {}
            history = config.get("keras_history") or ["", 0, 0]
            yield _shape(config.get("shape")), (str(history[0]), _int(history[1]), _int(history[2]))
        elif isinstance(item, (list, tuple)):
            stack[0:0] = list(item)
        elif isinstance(item, dict):
            stack[0:0] = list(item.values())
