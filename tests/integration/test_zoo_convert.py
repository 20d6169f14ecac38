"""Really converts the zoo's networks to TFLite and frozen TensorFlow graphs and runs them against PyTorch (~3 min)."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

from edgeorch.bench.adapters.tensorflow import TensorFlow  # noqa: E402
from edgeorch.errors import ModelError  # noqa: E402
from edgeorch.models import EXPORTERS, export_tf, zoo  # noqa: E402

from .conftest import networks  # noqa: E402

pytestmark = pytest.mark.integration

# VGG-16 (550 MB in each format, minutes to convert on two cores) is left out: it uses no operator AlexNet does not.
CONVERTED = ["squeezenet1_1", "googlenet", "resnet18", "resnet50", "mobilenet_v2", "alexnet"]
# int8 rounding, ~0.29 of a quantization step at every layer (as TFLite's QuantizationDebugger shows), compounds
# through networks with random weights: over 11 inputs, int8 SqueezeNet's logits correlate with PyTorch's at
# 0.77-0.95 (0.94 on reference_input), MobileNet-v2's at 0.61-0.70 (0.68); its top-5 holds PyTorch's top-1 for only
# 5 of them. Unrelated logits correlate at about +-0.03, so these floors still catch a wrongly converted network.
INT8_MIN_CORRELATION = {"squeezenet1_1": 0.7, "mobilenet_v2": 0.5}
TFLITE, GRAPH = EXPORTERS["tflite"], EXPORTERS["tf-graph"]
TFLITE_INT8 = TFLITE.variants[0]


def run_tflite(path, x):
    """Output of the TFLite model at `path` on float `x`, (de)quantizing int8 input and output as a board would."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation in favour of ai_edge_litert
        interpreter = tf.lite.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert (inp["name"], list(inp["shape"]), list(out["shape"])) == ("input", list(x.shape), [1, 1000])
    if inp["dtype"] == np.int8:
        scale, zero = inp["quantization"]
        x = np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    y = interpreter.get_tensor(out["index"])
    if out["dtype"] == np.int8:
        scale, zero = out["quantization"]
        y = (y.astype(np.float32) - zero) * scale
    return y, (inp["dtype"], out["dtype"])


def assert_agrees(got, name):
    expected = zoo.reference_output(name)
    # As in the ONNX tests: kernels summing in another order differ by up to 1e-4 of the output range.
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3 * np.ptp(expected))
    assert got.argmax() == expected.argmax()


@pytest.mark.parametrize("name", networks(CONVERTED))
def test_tflite_agrees_with_pytorch(cache_dir, name):
    logged = []
    path = TFLITE.export(name, 1, cache_dir, logged.append)
    assert logged == [f"converting {name} to TFLite (first time only)"]
    got, dtypes = run_tflite(path, zoo.reference_input(name))
    assert dtypes == (np.float32, np.float32)
    assert_agrees(got, name)

    assert TFLITE.export(name, 1, cache_dir, logged.append) == path
    assert len(logged) == 1  # a cache hit: not converted again


@pytest.mark.parametrize("name", networks(CONVERTED))
def test_tf_graph_agrees_with_pytorch(cache_dir, name):
    logged = []
    path = GRAPH.export(name, 1, cache_dir, logged.append)
    assert logged == [f"converting {name} to a TensorFlow graph (first time only)"]
    ops = {node.op for node in tf.compat.v1.GraphDef.FromString(path.read_bytes()).node}
    assert not ops & {"VarHandleOp", "ReadVariableOp", "VariableV2"}  # frozen: the weights are constants
    adapter = TensorFlow()  # what a board with full TensorFlow runs
    adapter.load(str(path), 0)
    adapter.prepare(0, zoo.reference_input(name))
    adapter.infer()
    assert_agrees(adapter.outputs()[0], name)

    assert GRAPH.export(name, 1, cache_dir, logged.append) == path
    assert len(logged) == 1


@pytest.mark.parametrize("name", INT8_MIN_CORRELATION)
def test_int8_tflite_is_integer_and_close_to_pytorch(cache_dir, name):
    logged = []
    path = TFLITE_INT8.export(name, 1, cache_dir, logged.append)
    assert logged == [f"converting {name} to TFLite int8 (first time only)"]
    assert path.name.startswith(f"{name}_int8-") and path.suffix == ".tflite"
    got, dtypes = run_tflite(path, zoo.reference_input(name))
    assert dtypes == (np.int8, np.int8)
    assert np.corrcoef(got[0], zoo.reference_output(name)[0])[0, 1] > INT8_MIN_CORRELATION[name]

    assert TFLITE_INT8.export(name, 1, cache_dir, logged.append) == path
    assert len(logged) == 1


POOLS = [(3, 2, 1, False), (3, 2, 0, True), (3, 1, 1, True), (5, 3, 2, False), (2, 3, 1, True)]  # ResNet's, GoogLeNet's


@pytest.mark.parametrize("pool", POOLS, ids=lambda p: "k{}s{}p{}{}".format(*p[:3], "ceil" if p[3] else ""))
def test_max_pooling_ignores_its_padding(monkeypatch, pool):
    # In the zoo every max pool follows a ReLU, where zero padding would pass too: negative inputs tell them apart.
    kernel, stride, padding, ceil_mode = pool
    module = torch.nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil_mode)
    monkeypatch.setattr(zoo, "build", lambda _name: torch.nn.Sequential(module))
    x = -1 - np.abs(zoo.reference_input("resnet18"))
    expected = module(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(export_tf.keras_model("resnet18")(x).numpy().transpose(0, 3, 1, 2), expected)


def test_an_unknown_layer_is_named(monkeypatch):
    monkeypatch.setattr(zoo, "build", lambda _name: torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.GELU()))
    with pytest.raises(ModelError, match="cannot convert _1: no Keras equivalent for GELU"):
        export_tf.keras_model("resnet18")
