"""Reading a model's declared inputs without its framework, and resolving the user's shapes and files against
them: the same answers, and the same refusals, on the host before anything runs and on the board."""

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from edgeorch.bench import signature
from edgeorch.bench.signature import Declared, InputError, check_inputs, onnx_inputs, resolve, tflite_inputs

from ..input_models import export_input_models

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def onnx_models(tmp_path_factory):
    """ONNX files exported by torch.onnx.export, as edgeorch's zoo does: a conv net with dynamic batch and spatial
    dims, and a model with two inputs (a float tensor and an int64 scalar)."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    return export_input_models(tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="session")
def tflite_models(tmp_path_factory):
    """.tflite files from TensorFlow's converter: three inputs (dynamic float, bool, int64 scalar), and a fully
    int8-quantized net as edgeorch's converter makes them; with the interpreter's own view of their inputs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    tf = pytest.importorskip("tensorflow")
    out = tmp_path_factory.mktemp("tflite")

    class Three(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x"),
                                      tf.TensorSpec([2], tf.bool, name="flag"), tf.TensorSpec([], tf.int64, name="n")])
        def __call__(self, x, flag, n):
            return x * tf.cast(n, tf.float32) + tf.cast(tf.reduce_any(flag), tf.float32)

    class Dense(tf.Module):
        def __init__(self):
            self.w = tf.Variable(tf.random.stateless_normal([4, 2], seed=(1, 2)))

        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
        def __call__(self, x):
            return tf.matmul(x, self.w)

    def representative():
        for i in range(4):
            yield [np.random.default_rng(i).standard_normal((1, 4)).astype(np.float32)]

    files, details = {}, {}
    for name, module, int8 in (("three", Three(), False), ("int8", Dense(), True)):
        converter = tf.lite.TFLiteConverter.from_concrete_functions([module.__call__.get_concrete_function()], module)
        if int8:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = converter.inference_output_type = tf.int8
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            files[name] = out / f"{name}.tflite"
            files[name].write_bytes(converter.convert())
            details[name] = tf.lite.Interpreter(model_path=str(files[name])).get_input_details()
    return files, details


# --- readers -------------------------------------------------------------------------------------------------

def test_onnx_inputs_of_torch_exports(onnx_models):
    assert onnx_inputs(onnx_models / "dynamic.onnx") == [Declared("image", ("batch", 3, "height", "width"), "float32")]
    assert onnx_inputs(onnx_models / "two.onnx") == [Declared("x", (2, 4), "float32"), Declared("n", (), "int64")]


def test_onnx_weights_listed_as_inputs_are_left_out_and_unset_dims_are_dynamic(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [1], [2.0])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])
    x.type.tensor_type.shape.dim[3].Clear()  # neither dim_value nor dim_param
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["y"]), helper.make_node("Cast", ["ids"], ["i"], to=TensorProto.FLOAT)],
        "g", [x, helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 16]),
              helper.make_tensor_value_info("w", TensorProto.FLOAT, [1]),  # an initializer listed as an input
              helper.make_tensor_value_info("free", TensorProto.BOOL, None)],  # no shape at all
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 8, 8])], [weight])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert onnx_inputs(path) == [Declared("x", ("batch", 3, 8, None), "float32"), Declared("ids", (1, 16), "int64"),
                                 Declared("free", None, "bool")]


@pytest.mark.parametrize("data", [b"", b"not a protobuf at all\n", b"\x08\x07\x3a\xff\xff"])
def test_a_file_that_is_not_onnx_is_refused(tmp_path, data):
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    with pytest.raises(ValueError, match="not an ONNX file"):
        onnx_inputs(path)


def test_tflite_inputs_match_the_interpreter(tflite_models):
    files, details = tflite_models
    for name, path in files.items():
        read = tflite_inputs(path)
        seen = [(d["name"], tuple(None if s < 0 else int(s) for s in d["shape_signature"]),
                 np.dtype(d["dtype"]).name, bool(d["quantization"][0])) for d in details[name]]
        assert [tuple(r[:4]) for r in read] == seen
    by_name = {d.name: d for d in tflite_inputs(files["three"])}
    assert by_name["serving_default_x:0"].dims == (None, 4) and by_name["serving_default_n:0"].dims == ()
    assert [d.dtype for d in tflite_inputs(files["int8"])] == ["int8"] and tflite_inputs(files["int8"])[0].quantized


def test_a_truncated_tflite_is_refused(tflite_models):
    data = tflite_models[0]["three"].read_bytes()
    path = tflite_models[0]["three"].with_name("cut.tflite")
    path.write_bytes(data[:40])
    with pytest.raises(ValueError, match="not a TFLite file"):
        tflite_inputs(path)


def test_edgeorchs_pytorch_archives_say_their_inputs_and_others_are_left_to_the_board(tmp_path):
    torch = pytest.importorskip("torch")
    module = torch.jit.trace(torch.nn.Linear(4, 2), torch.zeros(3, 4))
    signature_json = '{"inputs": [{"name": "input", "shape": [3, 4], "dtype": "float32"}]}'
    torch.jit.save(module, str(tmp_path / "zoo.pt"), _extra_files={"edgeorch.json": signature_json})
    torch.jit.save(module, str(tmp_path / "mine.pt"))
    assert signature.model_inputs(tmp_path / "zoo.pt") == [Declared("input", (3, 4), "float32")]
    assert check_inputs(tmp_path / "mine.pt") is None  # only torch can read its arguments: the board refuses


# --- what the user gives ---------------------------------------------------------------------------------------

def test_input_shapes_parse_like_trtexecs():
    assert signature.parse_shapes(["image=1x3x224x224", "n=scalar", "ids=16"]) == {
        "image": (1, 3, 224, 224), "n": (), "ids": (16,)}


@pytest.mark.parametrize("value, says", [
    ("noequals", "is not NAME=DIMS"), ("=1x3", "is not NAME=DIMS"), ("x=1xfoo", "'1xfoo' is not dimensions"),
    ("x=", "'' is not dimensions"), ("x=1x0x3", "'1x0x3' is not dimensions"), ("x=1,3", "'1,3' is not dimensions"),
])
def test_a_bad_input_shape_names_the_option_and_the_fix(value, says):
    with pytest.raises(InputError, match=says) as caught:
        signature.parse_shape(value)
    assert str(caught.value).startswith(f"--input-shape {value!r}") and "e.g. --input-shape input=1x3x224x224" in \
        str(caught.value)


def test_input_values_name_an_input_or_feed_the_first():
    assert signature.parse_inputs(["ids=a.npy", "/data/x.npy", "mask=/d/m=1.npy"]) == {
        "ids": "a.npy", "": "/data/x.npy", "mask": "/d/m=1.npy"}
    assert signature.parse_input("./a=b.npy") == ("", "./a=b.npy")  # a path before the '=': a bare file
    with pytest.raises(InputError, match="two files"):
        signature.parse_inputs(["x=a.npy", "x=b.npy"])


@pytest.mark.parametrize("array", [np.zeros((1, 3, 2), np.float32), np.array(3, np.int64), np.ones(4, bool),
                                   np.zeros((2, 2), np.float16), np.zeros(5, np.uint8)])
def test_npy_headers_are_read_as_numpy_would(tmp_path, array):
    np.save(tmp_path / "a.npy", array)
    assert signature.npy_header(tmp_path / "a.npy") == (array.shape, array.dtype.name)


def test_a_file_that_is_not_npy_is_refused(tmp_path):
    (tmp_path / "a.npy").write_text("1,2,3\n")
    with pytest.raises(InputError, match=r"--input .*a.npy is not a readable .npy file"):
        signature.npy_header(tmp_path / "a.npy")


# --- resolution --------------------------------------------------------------------------------------------------

def test_a_dynamic_input_without_a_shape_is_refused_naming_it_its_dims_and_the_option(onnx_models):
    with pytest.raises(InputError) as caught:
        check_inputs(onnx_models / "dynamic.onnx")
    assert str(caught.value) == ("input 'image' of the model has dynamic dimensions [batch, 3, height, width], which "
                                 "edgeorch does not guess: pass --input-shape image=<batch>x3x<height>x<width> with a "
                                 "number for each <...>")
    assert check_inputs(onnx_models / "dynamic.onnx", {"image": (2, 3, 16, 16)}) == [
        {"name": "image", "shape": [2, 3, 16, 16], "dtype": "float32", "source": "seeded"}]


def test_a_dynamic_tflite_input_is_refused_too(tflite_models):
    with pytest.raises(InputError, match=r"input 'serving_default_x:0' of the model has dynamic dimensions \[\?, 4\]"):
        check_inputs(tflite_models[0]["three"])


def test_an_input_without_a_declared_shape_needs_one():
    with pytest.raises(InputError, match=r"input 'x' of the model has no declared shape .* --input-shape x=DIMS"):
        resolve([Declared("x", None, None)])
    assert resolve([Declared("x", None, None)], {"x": (2, 2)}) == [
        {"name": "x", "shape": [2, 2], "dtype": "float32", "source": "seeded"}]


@pytest.mark.parametrize("shapes, files, says", [
    ({"images": (1, 3)}, {}, "--input-shape names 'images', which is not an input of the model; its inputs are: x, n"),
    ({}, {"m": "m.npy"}, "--input names 'm', which is not an input of the model; its inputs are: x, n"),
    ({"x": (2, 5)}, {}, r"--input-shape x=2x5: dimension 1 of input 'x' is fixed at 4 in the model \[2, 4\]"),
    ({"x": (2, 4, 1)}, {}, r"--input-shape x=2x4x1: input 'x' of the model has 2 dimensions \[2, 4\], not 3"),
])
def test_shapes_and_files_that_do_not_fit_the_model_are_refused(onnx_models, shapes, files, says):
    with pytest.raises(InputError, match=says):
        check_inputs(onnx_models / "two.onnx", shapes, files)


def test_files_give_their_shape_and_must_hold_the_models_dtype(onnx_models, tmp_path):
    np.save(tmp_path / "image.npy", np.zeros((2, 3, 9, 9), np.float32))
    np.save(tmp_path / "n.npy", np.array(4, np.int32))
    assert check_inputs(onnx_models / "dynamic.onnx", files={"": str(tmp_path / "image.npy")})[0]["shape"] == \
        [2, 3, 9, 9]
    with pytest.raises(InputError, match=r"holds shape 2x3x9x9, but --input-shape gives image=1x3x9x9"):
        check_inputs(onnx_models / "dynamic.onnx", {"image": (1, 3, 9, 9)}, {"image": str(tmp_path / "image.npy")})
    with pytest.raises(InputError, match=r"holds int32, but input 'n' of the model takes int64: save it as int64"):
        check_inputs(onnx_models / "two.onnx", files={"n": str(tmp_path / "n.npy")})


def test_a_float_file_may_feed_a_quantized_tflite_input(tflite_models, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 4), np.float32))
    assert check_inputs(tflite_models[0]["int8"], files={"": str(tmp_path / "x.npy")})[0]["dtype"] == "int8"


def test_formats_read_only_by_their_framework_are_left_to_the_board(tmp_path):
    (tmp_path / "m.pb").write_bytes(b"\x0a\x03abc")
    assert check_inputs(tmp_path / "m.pb", {"x": (1,)}) is None


def test_the_host_refuses_with_the_boards_own_message(onnx_models):
    pytest.importorskip("onnxruntime")
    from edgeorch.bench.__main__ import run

    for argv, shapes in (([], {}), (["--input-shape", "image=1x3x8x8x1"], {"image": (1, 3, 8, 8, 1)})):
        with pytest.raises(InputError) as host:
            check_inputs(onnx_models / "dynamic.onnx", shapes)
        doc, code = run(["--framework", "onnxruntime", "--mode", "bare", "--model", str(onnx_models / "dynamic.onnx"),
                         "--sample-interval", "0", *argv])
        assert (code, doc["error"]) == (2, {"kind": "args", "message": str(host.value)})


# --- hashing --------------------------------------------------------------------------------------------------

def test_the_model_is_hashed_in_chunks_not_read_whole(tmp_path):
    big = tmp_path / "big.onnx"
    with open(big, "wb") as f:
        f.truncate(256 * 2**20)  # sparse: 256 MB to hash, none of it on disk
    code = ("import resource, sys; from edgeorch.bench.__main__ import _check_model; from types import SimpleNamespace;"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
            f"m = _check_model(SimpleNamespace(model={str(big)!r}, model_sha256=None));"
            "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss;"
            "print(m['size_bytes'], m['sha256'], (after - before) // 1024)")
    size, digest, grew_mb = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                           check=True).stdout.split()
    import hashlib
    assert (int(size), digest) == (256 * 2**20, hashlib.sha256(bytes(256 * 2**20)).hexdigest())
    assert int(grew_mb) < 32  # reading it whole would add its 256 MB to the run's peak memory
