"""The zoo in TensorFlow's formats: TFLite (float, and int8 as `<network>_int8`) and a frozen GraphDef.

Both start from one Keras model: the torch.fx graph of the zoo's PyTorch build, rebuilt layer by layer with its
weights copied.

Every format takes the same NCHW float32 input as PyTorch and ONNX, named "input", and gives (batch, 1000) logits
(named "output" in the frozen graph); the NHWC layout TensorFlow's CPU kernels need is a transpose inside the model.

A board with full TensorFlow (no Keras) runs the frozen graph as the board-side TensorFlow adapter does.
"""

from __future__ import annotations

import operator
import os
from pathlib import Path

from edgeorch.errors import ModelError

from . import tflite, zoo
from .exporter import Exporter, quiet

INT8 = "_int8"  # zoo network + this: its full-integer TFLite variant, a model of its own
CALIBRATION_INPUTS = 32  # representative inputs for int8 quantization, reference_input's seeds 1..32
_NHWC = {0: 0, 1: 3, 2: 1, 3: 2}  # where each NCHW axis of a 4-D tensor lies in the NHWC Keras tensor


def keras_model(name: str, batch: int = 1):  # -> keras.Model
    """Network `name` as a Keras functional model with zoo.build's weights: NCHW (batch, 3, H, W) in, logits out."""
    import keras
    import torch

    module = zoo.build(name)
    graph = torch.fx.symbolic_trace(module).graph
    modules = dict(module.named_modules())
    inputs = keras.Input(zoo.NETWORKS[name].input_shape[1:], batch_size=batch, name="input")
    values = {}
    for node in graph.nodes:
        if node.op == "placeholder":
            values[node] = keras.layers.Permute((2, 3, 1), name="to_nhwc")(inputs)
        elif node.op == "output":
            outputs = values[node.args[0]]
        else:
            args = torch.fx.node.map_arg(node.args, values.__getitem__)
            target = modules[node.target] if node.op == "call_module" else node.target
            values[node] = _layer(target, node.name, *args, **node.kwargs)
    return keras.Model(inputs, outputs, name=name)


def _layer(op, name: str, x, *args, **kwargs):  # -> keras.KerasTensor
    """The Keras equivalent of one traced torch call `op(x, *args)`, on NHWC tensors, its weights copied."""
    import keras
    import torch
    from torch import nn

    if isinstance(op, nn.Conv2d):
        return _conv2d(op, name, x)
    if isinstance(op, nn.BatchNorm2d):
        bn = keras.layers.BatchNormalization(epsilon=op.eps, name=name)
        return _weighted(bn, x, op.weight, op.bias, op.running_mean, op.running_var)
    if isinstance(op, nn.MaxPool2d):
        return _max_pool2d(op, name, x)
    if isinstance(op, nn.AdaptiveAvgPool2d):
        return _adaptive_avg_pool2d(op, name, x)
    if isinstance(op, nn.Linear):
        return _weighted(keras.layers.Dense(op.out_features, name=name), x, op.weight.T, op.bias)
    if isinstance(op, nn.ReLU) or op in (torch.relu, nn.functional.relu):
        return keras.layers.ReLU(name=name)(x)
    if isinstance(op, nn.ReLU6):
        return keras.layers.ReLU(6.0, name=name)(x)
    if isinstance(op, nn.Dropout | nn.Identity):
        return x
    if isinstance(op, nn.Flatten) or op is torch.flatten:
        return _flatten(op, name, x, args, kwargs)
    if op in (operator.add, torch.add):
        return keras.layers.Add(name=name)([x, *args])
    if op is torch.cat:
        axis = args[0] if args else kwargs.get("dim", 0)
        return keras.layers.Concatenate(_NHWC[axis % 4] if len(x[0].shape) == 4 else axis, name=name)(list(x))
    raise ModelError(f"cannot convert {name}: no Keras equivalent for {getattr(op, '__name__', type(op).__name__)}",
                     hint="add it to edgeorch.models.export_tf._layer")


def _weighted(layer, x, *weights):  # -> keras.KerasTensor
    """`layer` applied to `x`, then given the torch weights (those that are not None)."""
    y = layer(x)
    layer.set_weights([w.detach().numpy() for w in weights if w is not None])
    return y


def _conv2d(op, name: str, x):  # -> keras.KerasTensor
    """An nn.Conv2d as a Keras Conv2D, or DepthwiseConv2D when each input channel is a group of its own."""
    import keras

    if op.padding_mode != "zeros" or isinstance(op.padding, str):
        raise ModelError(f"cannot convert {name}: Conv2d padding {op.padding!r} ({op.padding_mode})",
                         hint="give convolutions explicit zero padding, as torchvision's do")
    # 'same' pads as PyTorch does at stride 1 (odd kernels); at stride 2 it would pad one row fewer before.
    same = op.stride == (1, 1) and all(2 * p == d * (k - 1)
                                       for p, d, k in zip(op.padding, op.dilation, op.kernel_size))
    if any(op.padding) and not same:
        x = keras.layers.ZeroPadding2D(tuple((p, p) for p in op.padding), name=f"{name}_pad")(x)
    spec = dict(kernel_size=op.kernel_size, strides=op.stride, dilation_rate=op.dilation, name=name,
                padding="same" if same else "valid", use_bias=op.bias is not None)
    if op.groups == 1:
        return _weighted(keras.layers.Conv2D(op.out_channels, **spec), x, op.weight.permute(2, 3, 1, 0), op.bias)
    if op.groups == op.in_channels:  # depthwise: output channel i*m+j comes from input channel i
        m = op.out_channels // op.in_channels
        kernel = op.weight.permute(2, 3, 0, 1).reshape(*op.kernel_size, op.in_channels, m)
        return _weighted(keras.layers.DepthwiseConv2D(depth_multiplier=m, **spec), x, kernel, op.bias)
    raise ModelError(f"cannot convert {name}: a Conv2d with {op.groups} groups that is not depthwise",
                     hint="TensorFlow Lite has no grouped convolution; split it into convolutions and a concat")


def _max_pool2d(op, name: str, x):  # -> keras.KerasTensor
    """An nn.MaxPool2d as a Keras MaxPooling2D, its padding (PyTorch's, and ceil_mode's) made of edge rows."""
    import keras

    if _pair(op.dilation) != (1, 1):
        raise ModelError(f"cannot convert {name}: a dilated MaxPool2d", hint="pool without dilation")
    kernel, stride = _pair(op.kernel_size), _pair(op.stride)
    axes = [(size, k, s, *_pool_pads(size, k, s, p, op.ceil_mode))
            for size, k, s, p in zip(x.shape[1:3], kernel, stride, _pair(op.padding))]
    # No padded element may win the max. TF's 'same' padding never does: it fits ceil(size / stride) windows,
    # padding half, rounded down, before. Elsewhere the edge rows, repeated, never beat themselves; -inf
    # padding would do as well in float, but breaks int8 TFLite.
    same = all(-(-size // s) == (size + p + r - k) // s + 1 and p == (p + r) // 2 for size, k, s, p, r in axes)
    if not same:
        for axis, (*_, p, r) in enumerate(axes, 1):
            x = _edges(x, name, axis, p, max(r, 0))  # r < 0: the last rows are in no window, which 'valid' skips too
    return keras.layers.MaxPooling2D(kernel, stride, padding="same" if same else "valid", name=name)(x)


def _edges(x, name: str, axis: int, before: int, after: int):  # -> keras.KerasTensor
    """`x` with its first and last rows along `axis` repeated, as padding for a max."""
    import keras

    at = (slice(None),) * axis
    ends = [x[(*at, slice(0, 1))]] * before, [x[(*at, slice(-1, None))]] * after
    return keras.layers.Concatenate(axis, name=f"{name}_pad{axis}")([*ends[0], x, *ends[1]]) if any(ends) else x


def _adaptive_avg_pool2d(op, name: str, x):  # -> keras.KerasTensor
    """An nn.AdaptiveAvgPool2d as nothing, a global mean or a Keras AveragePooling2D of equal windows."""
    import keras

    _, h, w, _ = x.shape
    oh, ow = _pair(op.output_size)
    if (h, w) == (oh, ow):  # AlexNet's and VGG's, on 224x224 inputs
        return x
    if (oh, ow) == (1, 1):  # TFLite's MEAN: XNNPACK fails to prepare SqueezeNet's int8 13x13 AVERAGE_POOL_2D
        return keras.layers.GlobalAveragePooling2D(keepdims=True, name=name)(x)
    if h % (oh or h) or w % (ow or w):
        raise ModelError(f"cannot convert {name}: adaptive pooling of {h}x{w} to {oh}x{ow} has unequal windows",
                         hint="use an input size whose feature map divides evenly")
    return keras.layers.AveragePooling2D((h // oh, w // ow), name=name)(x)


def _flatten(op, name: str, x, args: tuple, kwargs: dict):  # -> keras.KerasTensor
    """nn.Flatten or torch.flatten of all but the batch dimension, in PyTorch's (NCHW) order."""
    import keras

    start = args[0] if args else kwargs.get("start_dim", getattr(op, "start_dim", 0))  # torch.flatten's is 0
    end = args[1] if len(args) > 1 else kwargs.get("end_dim", getattr(op, "end_dim", -1))
    if (start, end) != (1, -1):
        raise ModelError(f"cannot convert {name}: a flatten of dimensions {start} to {end}",
                         hint="flatten all but the batch dimension, as nn.Flatten() does")
    if len(x.shape) == 4 and x.shape[1:3] != (1, 1):  # PyTorch's flatten order is NCHW's
        x = keras.layers.Permute((3, 1, 2), name=f"{name}_to_nchw")(x)
    return keras.layers.Flatten(name=name)(x)


def _pair(v) -> tuple:
    return (v, v) if isinstance(v, int) else tuple(v)


def _pool_pads(size: int, k: int, s: int, p: int, ceil_mode: bool) -> tuple[int, int]:
    """PyTorch's pooling padding of one axis as (before, after): `after` covers the last window (< 0: not all)."""
    out = -(-(size + 2 * p - k) // s) + 1 if ceil_mode else (size + 2 * p - k) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:  # PyTorch drops a last window that would start in the padding
        out -= 1
    return p, (out - 1) * s + k - size - p


class TFLiteExporter(Exporter):
    """The Keras model through the TFLite converter; with `int8`, fully integer, a model of its own (`_int8`)."""

    format, suffix = "tflite", ".tflite"
    sources = (tflite,)  # validate_tflite, which checks what it writes

    def __init__(self, int8: bool = False):
        self.int8 = int8
        self.variant = INT8 if int8 else ""
        self.doing = "converting {name} to TFLite" + (" int8" if int8 else "")
        self.variants = () if int8 else (TFLiteExporter(int8=True),)

    def toolchain(self, network: str) -> str:
        return _versions(network)

    def convert(self, network: zoo.Network) -> bytes:
        return _convert(network, lambda function, model: _tflite(network.name, function, model, self.int8))

    def check(self, path: Path, network: zoo.Network) -> None:
        tflite.validate_tflite(path)

    def validate(self, path: Path) -> None:
        tflite.validate_tflite(path)  # whatever its name


class GraphExporter(Exporter):
    """The Keras model's function with its variables frozen to constants: a GraphDef TensorFlow runs without Keras."""

    format, suffix, doing = "tf-graph", ".pb", "converting {name} to a TensorFlow graph"
    sources = (tflite,)

    def toolchain(self, network: str) -> str:
        return _versions(network)

    def convert(self, network: zoo.Network) -> bytes:
        return _convert(network, _graph_def)

    def check(self, path: Path, network: zoo.Network) -> None:
        _check_graph(path, network.name)


def _versions(name: str) -> str:
    tf, keras, torch = _frameworks(name)
    return f"tf={tf.__version__} keras={keras.__version__} torch={torch.__version__}"


def _frameworks(name: str) -> tuple:
    """The tensorflow, keras and torch modules, or a ModelError saying which one is missing."""
    import importlib

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # read at TF's first import; 2 still shows ERROR lines
    with quiet(name, "TensorFlow"):  # absl's lines before its logging is set up ignore that variable
        try:
            return tuple(importlib.import_module(m) for m in ("tensorflow", "keras", "torch"))
        except ImportError as exc:
            raise ModelError(f"cannot convert {name}: {exc}",
                             hint="install the models extra (pip install -e '.[models]')") from exc


def _convert(network: zoo.Network, to_bytes) -> bytes:
    with quiet(network.name, "TensorFlow"):
        import keras
        import tensorflow as tf

        keras.utils.clear_session()  # automatic names ("get_item_1") end up in the files: restart their counters
        model = keras_model(network.name, network.input_shape[0])
        spec = tf.TensorSpec(model.input_shape, tf.float32, name="input")
        # TFLiteConverter.from_keras_model fails on Keras 3 models (TF 2.21): both formats start from this function.
        function = tf.function(lambda x: tf.identity(model(x, training=False), name="output"))
        return to_bytes(function.get_concrete_function(spec), model)


def _tflite(name: str, function, model, int8: bool) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], model)
    if int8:
        seeds = range(1, CALIBRATION_INPUTS + 1)  # seed 0 is the reference input the result is checked on
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        batch = model.input_shape[0]
        converter.representative_dataset = lambda: ([zoo.reference_input(name, seed, batch)] for seed in seeds)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


def _graph_def(function, _model) -> bytes:
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(function)
    return frozen.graph.as_graph_def().SerializeToString()


def _check_graph(path: Path, name: str) -> None:
    """Raise ModelError unless `path` is a GraphDef with the "input" and "output" nodes a board runs."""
    import tensorflow as tf

    try:
        nodes = {node.name for node in tf.compat.v1.GraphDef.FromString(path.read_bytes()).node}
    except Exception as exc:  # protobuf's DecodeError, among others
        path.unlink(missing_ok=True)
        raise ModelError(f"the converted {path.name} is not a GraphDef: {exc}", hint="convert it again") from exc
    if not {"input", "output"} <= nodes:
        path.unlink(missing_ok=True)
        raise ModelError(f"the converted graph of {name} lacks an 'input' or 'output' node",
                         hint="this is a bug in edgeorch.models.export_tf; report it with the TensorFlow version")
