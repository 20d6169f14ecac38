"""The zoo's networks as Caffe models: one binary .caffemodel holding both the definition and the weights."""

from __future__ import annotations

import operator
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from edgeorch.bench import protowire
from edgeorch.bench.protowire import fields, varint
from edgeorch.errors import ModelError

from . import zoo
from .exporter import Exporter

# Field numbers of BVLC caffe.proto, as in Debian bullseye's caffe 1.0.0+git20180821 (libcaffe-dev's caffe.pb.h):
# NetParameter: name 1, layer 100. LayerParameter: name 1, type 2, bottom 3, top 4, blobs 7, concat_param 104,
# convolution_param 106, dummy_data_param 109, eltwise_param 110, inner_product_param 117, pooling_param 121,
# relu_param 123, flatten_param 135, batch_norm_param 139, scale_param 142, input_param 143, crop_param 144,
# clip_param 148. BlobProto: data 5 (packed), shape 7. BlobShape: dim 1 (packed).
# ConvolutionParameter: num_output 1, bias_term 2, group 5, pad_h 9, pad_w 10, kernel_h 11, kernel_w 12,
# stride_h 13, stride_w 14, dilation 18. PoolingParameter: pool 1 (MAX 0, AVE 1), kernel_h 5, kernel_w 6,
# stride_h 7, stride_w 8, pad_h 9, pad_w 10, global_pooling 12. InnerProductParameter: num_output 1,
# bias_term 2. EltwiseParameter: operation 1 (SUM 1). ConcatParameter: axis 2. FlattenParameter: axis 1,
# end_axis 2. InputParameter: shape 1. BatchNormParameter: use_global_stats 1, eps 3. ScaleParameter:
# bias_term 4. ClipParameter: min 1, max 2. CropParameter: axis 1. DummyDataParameter: shape 6.
_NET_NAME, _NET_LAYER = 1, 100
_MAX, _AVE, _SUM = 0, 1, 1


class CaffeExporter(Exporter):
    """The traced graph written as a NetParameter, BatchNorm folded into the convolutions."""

    format, suffix, doing = "caffemodel", ".caffemodel", "converting {name} to Caffe"
    sources = (protowire,)  # its varint writes every field

    def toolchain(self, network: str) -> str:
        return f"torch={zoo.import_torch(f'convert {network} to Caffe').__version__}"

    def convert(self, network: zoo.Network) -> bytes:
        return net_parameter(zoo.build(network.name), network.input_shape, name=network.name)

    def check(self, path: Path, network: zoo.Network) -> None:
        _verify(path, network.name)


def net_parameter(model, input_shape: tuple[int, ...], *, name: str = "net") -> bytes:
    """The NetParameter bytes of `model` (eval mode): input blob "input" of `input_shape`, output blob "output"."""
    import torch
    from torch.fx.passes.shape_prop import ShapeProp

    try:
        graph = torch.fx.symbolic_trace(model)
    except Exception as exc:
        raise ModelError(f"cannot trace {name} with torch.fx: {type(exc).__name__}: {exc}",
                         hint="the Caffe converter needs a network without data-dependent control flow") from exc
    with torch.no_grad():
        ShapeProp(graph).propagate(torch.zeros(input_shape))
    layers = _Converter(graph, name).run()
    return _str(_NET_NAME, name) + b"".join(_bytes(_NET_LAYER, layer.encode()) for layer in layers)


@dataclass
class _Layer:
    name: str
    type: str
    bottoms: list[str]
    tops: list[str]
    params: bytes = b""  # the encoded <type>_param field, if any
    blobs: list = field(default_factory=list)  # numpy arrays, in Caffe's order for the type

    def encode(self) -> bytes:
        return b"".join([
            _str(1, self.name), _str(2, self.type),
            *(_str(3, b) for b in self.bottoms), *(_str(4, t) for t in self.tops),
            *(_bytes(7, _blob(a)) for a in self.blobs), self.params,
        ])


class _Converter:
    """One walk over a traced, shape-propagated graph, emitting a Caffe layer (or none) per node."""

    def __init__(self, graph, name: str):
        self.graph, self.name = graph, name
        self.modules = dict(graph.named_modules())
        self.blob: dict = {}  # fx node -> the Caffe blob holding its value
        self.layers: list[_Layer] = []
        self.folded: set = set()  # BatchNorm nodes already folded into the conv before them

    def run(self) -> list[_Layer]:
        import torch

        for node in self.graph.graph.nodes:
            if node.op == "placeholder":
                self.emit(node, "Input", [], _bytes(143, _bytes(1, _shape(_node_shape(node)))), top="input")
            elif node.op == "output":
                self.finish(node)
            elif node.op == "call_module":
                self.module(node, self.modules[node.target], torch.nn)
            elif node.op in ("call_function", "call_method"):
                self.function(node, torch)
            else:
                self.unhandled(node)
        return self.layers

    def emit(self, node, type_: str, bottoms: list, params: bytes = b"", blobs=(), top: str | None = None) -> str:
        top = top or node.name
        self.layers.append(_Layer(top, type_, [self.blob[b] if not isinstance(b, str) else b for b in bottoms],
                                  [top], params, list(blobs)))
        self.blob[node] = top
        return top

    def unhandled(self, node, why: str = "") -> None:
        what = type(self.modules[node.target]).__name__ if node.op == "call_module" else node.target
        raise ModelError(f"cannot convert {self.name} to Caffe: node {node.name} ({node.op} {what}) "
                         f"has no Caffe equivalent here{': ' + why if why else ''}",
                         hint="extend edgeorch/models/export_caffe.py for it, "
                              "or leave this network out of the Caffe runs")

    def module(self, node, m, nn) -> None:
        (x,) = node.args
        if isinstance(m, nn.Conv2d):
            self.conv(node, m, x, nn)
        elif isinstance(m, nn.BatchNorm2d):
            if node not in self.folded:
                self.batch_norm(node, m, x)
        elif isinstance(m, nn.ReLU6):  # before Hardtanh, its base class
            # This build has Clip (BVLC master, 2018); the 1.0 release would need relu(x) - relu(x - 6).
            self.emit(node, "Clip", [x], _bytes(148, _float(1, 0.0) + _float(2, 6.0)))
        elif isinstance(m, nn.ReLU):
            self.emit(node, "ReLU", [x])
        elif isinstance(m, nn.MaxPool2d | nn.AvgPool2d):
            self.pool(node, m, x)
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            self.adaptive_pool(node, x)
        elif isinstance(m, nn.Linear):
            blobs = [m.weight] + ([m.bias] if m.bias is not None else [])
            params = _uint(1, m.out_features) + _uint(2, m.bias is not None)
            self.emit(node, "InnerProduct", [x], _bytes(117, params), [_np(b) for b in blobs])
        elif isinstance(m, nn.Flatten):
            self.flatten(node, x, m.start_dim, m.end_dim)
        elif isinstance(m, nn.Dropout | nn.Identity):
            self.blob[node] = self.blob[x]  # eval mode: the identity
        else:
            self.unhandled(node)

    def function(self, node, torch) -> None:
        f, args = node.target, node.args
        if f in (operator.add, torch.add, "add") and len(args) == 2 and not node.kwargs:
            if not all(isinstance(a, torch.fx.Node) for a in args):
                self.unhandled(node, "only tensor + tensor is an Eltwise SUM")
            self.emit(node, "Eltwise", list(args), _bytes(110, _uint(1, _SUM)))
        elif f is torch.cat:
            tensors = args[0]
            dim = args[1] if len(args) > 1 else node.kwargs.get("dim", 0)
            self.emit(node, "Concat", list(tensors), _bytes(104, _uint(2, dim % len(_node_shape(node)))))
        elif f in (torch.flatten, "flatten"):
            start = args[1] if len(args) > 1 else node.kwargs.get("start_dim", 0)
            end = args[2] if len(args) > 2 else node.kwargs.get("end_dim", -1)
            self.flatten(node, args[0], start, end)
        elif f in (torch.relu, torch.nn.functional.relu, "relu") and len(args) == 1:
            self.emit(node, "ReLU", [args[0]])
        else:
            self.unhandled(node)

    def conv(self, node, m, x, nn) -> None:
        if m.padding_mode != "zeros" or isinstance(m.padding, str):
            self.unhandled(node, f"padding {m.padding!r} ({m.padding_mode})")
        weight = m.weight.detach().double()
        bias = m.bias.detach().double() if m.bias is not None else None
        users = list(node.users)
        norm = self.modules.get(users[0].target) if len(users) == 1 and users[0].op == "call_module" else None
        fold = isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats
        if fold:
            # Folded: one layer instead of three, as deployed Caffe models are, and exact to float rounding.
            scale = norm.running_var.double().add(norm.eps).rsqrt()
            if norm.affine:
                scale = scale * norm.weight.detach().double()
            shift = -norm.running_mean.double() * scale
            if norm.affine:
                shift = shift + norm.bias.detach().double()
            bias = shift + (bias * scale if bias is not None else 0)
            weight = weight * scale.view(-1, 1, 1, 1)
            self.folded.add(users[0])
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = m.kernel_size, m.stride, m.padding, m.dilation
        params = (_uint(1, m.out_channels) + _uint(2, bias is not None) + _uint(5, m.groups)
                  + _uint(9, ph) + _uint(10, pw) + _uint(11, kh) + _uint(12, kw) + _uint(13, sh) + _uint(14, sw)
                  + (_uint(18, dh) + _uint(18, dw) if (dh, dw) != (1, 1) else b""))
        top = self.emit(node, "Convolution", [x], _bytes(106, params),
                        [_np(weight)] + ([_np(bias)] if bias is not None else []))
        if fold:
            self.blob[users[0]] = top

    def batch_norm(self, node, m, x) -> None:
        if not m.track_running_stats:
            self.unhandled(node, "BatchNorm2d without running statistics")
        import numpy as np

        # Caffe's BatchNorm divides its mean and variance blobs by the third one, the "scale factor".
        blobs = [_np(m.running_mean), _np(m.running_var), np.ones(1, np.float32)]
        top = self.emit(node, "BatchNorm", [x], _bytes(139, _uint(1, 1) + _float(3, m.eps)), blobs)
        if m.affine:
            self.emit(node, "Scale", [top], _bytes(142, _uint(4, 1)), [_np(m.weight), _np(m.bias)],
                      top=f"{node.name}_scale")

    def pool(self, node, m, x) -> None:
        pair = _pair
        (kh, kw), (sh, sw), (ph, pw) = pair(m.kernel_size), pair(m.stride or m.kernel_size), pair(m.padding)
        is_max = not hasattr(m, "count_include_pad")
        if (is_max and pair(m.dilation) != (1, 1)) or (not is_max and (ph or pw or m.ceil_mode)):
            # Caffe's average pooling divides by the window clipped to the padded input: only unpadded floor-mode
            # windows are all whole, and so divided as PyTorch divides them.
            self.unhandled(node, "dilated max pooling or padded/ceil-mode average pooling")
        (h, w), want = _node_shape(x)[2:], _node_shape(node)[2:]
        got = _caffe_pooled(h, kh, sh, ph), _caffe_pooled(w, kw, sw, pw)
        params = (_uint(1, _MAX if is_max else _AVE) + _uint(5, kh) + _uint(6, kw) + _uint(7, sh) + _uint(8, sw)
                  + _uint(9, ph) + _uint(10, pw))
        if got == want:
            self.emit(node, "Pooling", [x], _bytes(121, params))
        elif got[0] >= want[0] and got[1] >= want[1]:
            # Caffe rounds the output size up, PyTorch's floor mode down: the extra last row and column are windows
            # PyTorch does not have, and the others are the same, so a Crop to PyTorch's size (the DummyData blob
            # gives Crop the shape) makes it exact. Crop is in Caffe 1.0; round_mode FLOOR only in later builds.
            ceil = self.emit(node, "Pooling", [x], _bytes(121, params), top=f"{node.name}_ceil")
            ref = self.emit(node, "DummyData", [], _bytes(109, _bytes(6, _shape((1, 1, *want)))),
                            top=f"{node.name}_size")
            self.emit(node, "Crop", [ceil, ref], _bytes(144, _uint(1, 2)))
        else:
            self.unhandled(node, f"Caffe would pool {(h, w)} to {got}, PyTorch to {tuple(want)}")

    def adaptive_pool(self, node, x) -> None:
        (h, w), (oh, ow) = _node_shape(x)[2:], _node_shape(node)[2:]
        if (oh, ow) == (h, w):
            self.blob[node] = self.blob[x]  # AlexNet's and VGG's on 224x224 inputs: nothing to pool
        elif (oh, ow) == (1, 1):
            self.emit(node, "Pooling", [x], _bytes(121, _uint(1, _AVE) + _uint(12, 1)))
        elif h % oh == 0 and w % ow == 0:  # then PyTorch's adaptive windows are equal and do not overlap
            kh, kw = h // oh, w // ow
            params = _uint(1, _AVE) + _uint(5, kh) + _uint(6, kw) + _uint(7, kh) + _uint(8, kw)
            self.emit(node, "Pooling", [x], _bytes(121, params))
        else:
            self.unhandled(node, f"adaptive pooling of {(h, w)} to {(oh, ow)} has unequal windows")

    def flatten(self, node, x, start: int, end: int) -> None:
        rank = len(_node_shape(x))
        params = _uint(1, start % rank) + (_uint(2, end % rank) if end % rank != rank - 1 else b"")
        self.emit(node, "Flatten", [x], _bytes(135, params))

    def finish(self, node) -> None:
        (result,) = node.args
        shape = _node_shape(result)
        if not hasattr(result, "op") or len(shape) != 2:
            self.unhandled(node, f"the output must be one (N, classes) tensor, not {shape}")
        last = self.blob[result]
        if self.layers[-1].tops != [last]:
            self.unhandled(node, "the output is not the last layer's")
        # Renamed at the end: Dropout and identities leave a blob standing for several nodes.
        for layer in self.layers:
            layer.tops = ["output" if t == last else t for t in layer.tops]
            layer.bottoms = ["output" if b == last else b for b in layer.bottoms]


def _caffe_pooled(size: int, kernel: int, stride: int, pad: int) -> int:
    """Caffe 1.0's pooled size (pooling_layer.cpp: Reshape): rounded up, less a window that starts in the padding."""
    out = -(-(size + 2 * pad - kernel) // stride) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _node_shape(node) -> tuple[int, ...]:
    return tuple(node.meta["tensor_meta"].shape)


def _np(tensor):  # -> numpy float32
    return tensor.detach().float().cpu().numpy()


def _verify(path: Path, name: str) -> None:
    """Raise ModelError unless `path` decodes as a net from an Input "input" to a layer whose top is "output"."""
    try:
        layers = [dict(_decode_layer(v)) for f, _, v, _, _ in fields(path.read_bytes()) if f == _NET_LAYER]
        ok = layers[0]["type"] == "Input" and layers[0]["top"] == "input" and layers[-1]["top"] == "output"
    except (ValueError, KeyError, IndexError) as exc:
        ok, layers = False, exc
    if not ok:
        path.unlink(missing_ok=True)
        raise ModelError(f"the converted {path.name} is not a Caffe net from 'input' to 'output' ({layers!r:.200})",
                         hint="this is a bug in edgeorch.models.export_caffe; report it with the torch version")


def _decode_layer(data) -> Iterator[tuple[str, str]]:
    for f, _, v, _, _ in fields(data):
        if f in (2, 4):  # type, top (the last one wins: every layer here has one)
            yield ("type" if f == 2 else "top"), bytes(v).decode()


# Writing a NetParameter: the protobuf wire format (reading it: edgeorch.bench.protowire).


def _tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def _uint(number: int, value: int) -> bytes:
    """An int32, int64, uint32, bool or enum field (wire type 0)."""
    return _tag(number, 0) + varint(int(value))


def _float(number: int, value: float) -> bytes:
    return _tag(number, 5) + struct.pack("<f", value)


def _bytes(number: int, data: bytes) -> bytes:
    """A length-delimited field: a string, bytes, an embedded message or a packed repeated scalar."""
    return _tag(number, 2) + varint(len(data)) + data


def _str(number: int, text: str) -> bytes:
    return _bytes(number, text.encode())


def _shape(dims) -> bytes:
    """A BlobShape: its dims packed (`repeated int64 dim = 1 [packed = true]`)."""
    return _bytes(1, b"".join(varint(int(d)) for d in dims))


def _blob(array) -> bytes:
    """A BlobProto with shape and packed float data (`repeated float data = 5 [packed = true]`)."""
    import numpy as np

    return _bytes(7, _shape(array.shape)) + _bytes(5, np.ascontiguousarray(array, dtype="<f4").tobytes())
