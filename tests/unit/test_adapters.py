"""Board-side adapter logic that needs no framework: options, and reading an ONNX model's inputs without onnx."""

import pytest

from edgeorch.bench import adapters
from edgeorch.bench.adapters import OptionError, onnx_inputs


def test_options_are_checked_against_what_the_adapter_knows():
    assert adapters._options({"xnnpack": "off"}, xnnpack=("on", "off")) == {"xnnpack": "off"}
    with pytest.raises(OptionError, match="unknown option 'threads'; this framework knows \\['xnnpack'\\]"):
        adapters._options({"threads": "4"}, xnnpack=("on", "off"))
    with pytest.raises(OptionError, match="xnnpack='maybe' is not one of \\['on', 'off'\\]"):
        adapters._options({"xnnpack": "maybe"}, xnnpack=("on", "off"))
    with pytest.raises(OptionError, match="knows none"):
        adapters._options({"precision": "fp16"})


def test_onnx_inputs_are_read_from_the_file(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [1], [2.0])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["y"]), helper.make_node("Cast", ["ids"], ["i"], to=TensorProto.FLOAT)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8]),
         helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 16]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [1])],  # an initializer listed as an input
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 8, 8])], [weight])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    # the symbolic batch is fed as 1; the weight is not an input to feed
    assert onnx_inputs(str(path)) == [("x", (1, 3, 8, 8), "float32"), ("ids", (1, 16), "int64")]


@pytest.mark.parametrize("data", [b"", b"not a protobuf at all\n", b"\x08\x07\x3a\xff\xff"])
def test_a_file_that_is_not_onnx_is_refused(tmp_path, data):
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    with pytest.raises(ValueError, match="not an ONNX file"):
        onnx_inputs(str(path))


def test_every_framework_of_the_recipes_has_an_adapter():
    from edgeorch.recipes import load_recipes

    assert set(load_recipes()) == set(adapters.registry())
