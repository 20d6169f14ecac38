"""The hand-written protobuf writer and the PyTorch -> Caffe conversion, decoded with google.protobuf: no caffe."""

import numpy as np
import pytest

from edgeorch.bench.adapters.caffe import _without_blobs
from edgeorch.bench.protowire import fields, varint
from edgeorch.errors import ModelError
from edgeorch.models.export_caffe import _caffe_pooled, _float, _shape, net_parameter

torch = pytest.importorskip("torch")
descriptor_pb2 = pytest.importorskip("google.protobuf.descriptor_pb2")
from google.protobuf import descriptor_pool, message_factory  # noqa: E402
from torch import nn  # noqa: E402

# The part of BVLC caffe.proto the converter writes, field numbers as there: (name, number, type, label, message).
U32, I32, I64, F, B, S, M = "uint32", "int32", "int64", "float", "bool", "string", "message"
CAFFE_SUBSET = {
    "BlobShape": [("dim", 1, I64, "repeated", None)],
    "BlobProto": [("shape", 7, M, "optional", "BlobShape"), ("data", 5, F, "repeated", None)],
    "ConvolutionParameter": [("num_output", 1, U32), ("bias_term", 2, B), ("group", 5, U32), ("pad_h", 9, U32),
                             ("pad_w", 10, U32), ("kernel_h", 11, U32), ("kernel_w", 12, U32),
                             ("stride_h", 13, U32), ("stride_w", 14, U32), ("dilation", 18, U32, "repeated")],
    "PoolingParameter": [("pool", 1, I32), ("kernel_h", 5, U32), ("kernel_w", 6, U32), ("stride_h", 7, U32),
                         ("stride_w", 8, U32), ("pad_h", 9, U32), ("pad_w", 10, U32), ("global_pooling", 12, B)],
    "InnerProductParameter": [("num_output", 1, U32), ("bias_term", 2, B)],
    "EltwiseParameter": [("operation", 1, I32)],
    "ConcatParameter": [("axis", 2, I32)],
    "FlattenParameter": [("axis", 1, I32), ("end_axis", 2, I32)],
    "InputParameter": [("shape", 1, M, "repeated", "BlobShape")],
    "ClipParameter": [("min", 1, F), ("max", 2, F)],
    "CropParameter": [("axis", 1, I32)],
    "DummyDataParameter": [("shape", 6, M, "repeated", "BlobShape")],
    "LayerParameter": [("name", 1, S), ("type", 2, S), ("bottom", 3, S, "repeated"), ("top", 4, S, "repeated"),
                       ("blobs", 7, M, "repeated", "BlobProto")]
    + [(f"{p}_param", n, M, "optional", f"{t}Parameter") for p, n, t in (
        ("concat", 104, "Concat"), ("convolution", 106, "Convolution"), ("dummy_data", 109, "DummyData"),
        ("eltwise", 110, "Eltwise"), ("inner_product", 117, "InnerProduct"), ("pooling", 121, "Pooling"),
        ("flatten", 135, "Flatten"), ("input", 143, "Input"), ("crop", 144, "Crop"), ("clip", 148, "Clip"))],
    "NetParameter": [("name", 1, S), ("layer", 100, M, "repeated", "LayerParameter")],
}


@pytest.fixture(scope="module")
def NetParameter():
    f = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="caffe_subset.proto", package="caffe", syntax="proto2")
    for message, specs in CAFFE_SUBSET.items():
        m = proto.message_type.add(name=message)
        for name, number, type_, label, *of in (spec + ("optional",) if len(spec) == 3 else spec for spec in specs):
            field = m.field.add(name=name, number=number, label=getattr(f, f"LABEL_{label.upper()}"),
                                type=getattr(f, f"TYPE_{type_.upper()}"))
            if of and of[0]:
                field.type_name = f".caffe.{of[0]}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe.NetParameter"))


class Tiny(nn.Module):
    """Every kind of node the zoo has, on a 16x16 input: the stem's pool is a floor-mode one Caffe rounds up."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
                                  nn.MaxPool2d(3, 2, 1))
        self.a, self.b = nn.Conv2d(8, 4, 1), nn.Conv2d(8, 4, 3, padding=1, groups=4)
        self.head = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(), nn.Linear(8, 10))

    def forward(self, x):
        x = self.stem(x)
        return self.head(torch.cat([self.a(x), self.b(x)], 1) + x)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = Tiny().eval()
    with torch.no_grad():  # statistics that are not the identity, so that folding them shows
        model.stem[1].running_mean.uniform_(-1, 1)
        model.stem[1].running_var.uniform_(0.5, 2)
        model.stem[1].weight.uniform_(0.5, 2)
        model.stem[1].bias.uniform_(-1, 1)
    return model


@pytest.mark.parametrize(("n", "encoded"), [(0, "00"), (1, "01"), (150, "9601"), (300, "ac02"),
                                            (2**32, "8080808010"), (-1, "ffffffffffffffffff01")])
def test_varints_are_encoded_as_the_protobuf_spec_shows(n, encoded):
    assert varint(n).hex() == encoded


def test_fixed_and_packed_fields():
    assert _float(2, 6.0).hex() == "15" + "0000c040"  # field 2, wire type 5, little-endian IEEE 754
    assert _shape((1, 3, 224, 224)).hex() == "0a06" + "0103e001e001"  # field 1, 6 bytes: 1, 3, 224 and 224 (two each)
    assert [(n, w, bytes(v)) for n, w, v, _, _ in fields(_shape((1, 300)))] == [(1, 2, bytes.fromhex("01ac02"))]


def test_caffes_rounded_up_pool_size_is_pytorchs_ceil_mode_size():
    # Why ceil-mode pools (GoogLeNet's, SqueezeNet's) convert as they are, padded ones included.
    for size in range(5, 20):
        for kernel, stride, pad in ((3, 2, 0), (3, 2, 1), (2, 2, 0), (3, 1, 1), (5, 3, 2)):
            pool = nn.MaxPool2d(kernel, stride, pad, ceil_mode=True)
            assert _caffe_pooled(size, kernel, stride, pad) == pool(torch.zeros(1, 1, size, size)).shape[-1]


def test_the_tiny_net_decodes_with_caffes_field_numbers(NetParameter, tiny):
    net = NetParameter.FromString(net_parameter(tiny, (1, 3, 16, 16), name="tiny"))
    assert net.name == "tiny"
    assert [layer.type for layer in net.layer] == [
        "Input", "Convolution", "Clip", "Pooling", "DummyData", "Crop", "Convolution", "Convolution", "Concat",
        "Eltwise", "ReLU", "Pooling", "Flatten", "InnerProduct"]  # BatchNorm folded, Dropout gone
    layers = {layer.type: layer for layer in net.layer}
    assert list(layers["Input"].input_param.shape[0].dim) == [1, 3, 16, 16] and list(layers["Input"].top) == ["input"]
    assert (layers["Clip"].clip_param.min, layers["Clip"].clip_param.max) == (0.0, 6.0)
    grouped = net.layer[7].convolution_param
    assert (grouped.group, grouped.kernel_h, grouped.pad_w, grouped.num_output) == (4, 3, 1, 4)
    # PyTorch pools 8x8 to 4x4 (floor), Caffe to 5x5: cropped to the DummyData blob's 4x4 from axis 2.
    crop = layers["Crop"]
    assert list(crop.bottom) == [net.layer[3].top[0], layers["DummyData"].top[0]] and crop.crop_param.axis == 2
    assert list(layers["DummyData"].dummy_data_param.shape[0].dim) == [1, 1, 4, 4]
    assert layers["Eltwise"].eltwise_param.operation == 1  # SUM
    assert net.layer[-1].top == ["output"] and net.layer[-2].bottom == [net.layer[-3].top[0]]
    fc = net.layer[-1]
    assert [list(b.shape.dim) for b in fc.blobs] == [[10, 8], [10]]
    weight = np.array(fc.blobs[0].data, np.float32).reshape(10, 8)
    np.testing.assert_array_equal(weight, tiny.head[4].weight.detach().numpy())


def test_batch_norm_is_folded_into_the_conv_exactly(NetParameter, tiny):
    conv = NetParameter.FromString(net_parameter(tiny, (1, 3, 16, 16))).layer[1]
    weight, bias = (np.array(b.data, np.float32).reshape(tuple(b.shape.dim)) for b in conv.blobs)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = tiny.stem[1](tiny.stem[0](x))
        got = nn.functional.conv2d(x, torch.from_numpy(weight), torch.from_numpy(bias), 2, 1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_the_board_reads_the_definition_without_the_blobs(NetParameter, tiny):
    data = net_parameter(tiny, (1, 3, 16, 16))
    full, definition = NetParameter.FromString(data), NetParameter.FromString(_without_blobs(data))
    assert sum(len(layer.blobs) for layer in full.layer) == 8
    for layer in full.layer:
        del layer.blobs[:]
    assert definition == full


def test_an_unconvertible_node_is_named(tiny):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GELU(), nn.Flatten(), nn.Linear(4 * 14 * 14, 10))
    with pytest.raises(ModelError, match=r"node _1 \(call_module GELU\)"):
        net_parameter(model, (1, 3, 16, 16), name="gelu-net")
