"""Really runs OpenVINO, in this process, through edgeorch's adapter: the zoo's ONNX as the exporter makes it and a
user's IR (.xml + .bin) against PyTorch, its per-node profile, and a model with dynamic dimensions (about 30 s)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
ov = pytest.importorskip("openvino")

from edgeorch.bench.adapters.base import ModelLoadError  # noqa: E402
from edgeorch.bench.adapters.openvino import OpenVINO  # noqa: E402
from edgeorch.bench.signature import InputError, resolve  # noqa: E402
from edgeorch.models import EXPORTERS, model_name  # noqa: E402
from edgeorch.models import resolve as resolve_model  # noqa: E402
from edgeorch.models.zoo import reference_input, reference_output  # noqa: E402

from .conftest import export_each  # noqa: E402

pytestmark = pytest.mark.integration

OPENVINO = EXPORTERS["openvino"]
RUN = ["squeezenet1_1", "mobilenet_v2"]  # fire modules and concats; depthwise convs, ReLU6 and residual adds


@pytest.fixture(scope="module")
def exported(cache_dir):
    return export_each(OPENVINO, RUN, cache_dir / "models")


def run(path, name, threads=2):
    """The adapter, loaded with `path` and run once on the network's reference input."""
    adapter = OpenVINO()
    adapter.load(str(path), threads)
    adapter.prepare(0, reference_input(name))
    adapter.infer()
    return adapter


def assert_agrees_with_pytorch(got, name):
    expected = reference_output(name)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3 * np.abs(expected).max())
    assert got.argmax() == expected.argmax()


@pytest.mark.parametrize("name", RUN)
def test_the_zoo_runs_in_float32_and_agrees_with_pytorch(exported, name):
    path, logged = exported[name]
    assert logged == [f"exporting {name} to ONNX (first time only)"] and path.suffix == ".onnx"
    adapter = run(path, name)
    (got,) = adapter.outputs()
    assert_agrees_with_pytorch(got, name)
    options = adapter.info(2)["options"]
    assert (options["inference_precision"], options["threads_used"], options["streams"]) == ("f32", 2, 1)
    assert adapter.describe() == {"outputs": [{"name": "output", "shape": [1, 1000], "dtype": "float32"}]}


def test_the_zoo_file_is_the_onnx_exporters_file(exported):
    path, _ = exported["squeezenet1_1"]
    logged = []
    assert EXPORTERS["onnx"].export("squeezenet1_1", 1, path.parent, logged.append) == path and logged == []


def test_a_users_ir_runs_from_its_xml_and_the_bin_beside_it(exported, tmp_path):
    path, _ = exported["squeezenet1_1"]
    xml = tmp_path / "squeeze.xml"
    # compress_to_fp16=False: save_model stores the weights as f16 unless told not to
    ov.save_model(ov.Core().read_model(str(path)), str(xml), compress_to_fp16=False)
    assert model_name(str(xml), "openvino") == "squeeze"
    spec = resolve_model(str(xml), "openvino", cache_dir=tmp_path / "cache")
    assert [p.name for p, _ in spec.companions] == ["squeeze.bin"]
    # on the board both are pushed under one new stem: OpenVINO finds the .bin by the .xml's name
    pushed = tmp_path / "board" / "0123abcd.xml"
    pushed.parent.mkdir()
    pushed.write_bytes(xml.read_bytes())
    pushed.with_suffix(".bin").write_bytes(xml.with_suffix(".bin").read_bytes())
    (got,) = run(pushed, "squeezenet1_1", threads=1).outputs()
    assert_agrees_with_pytorch(got, "squeezenet1_1")

    pushed.with_suffix(".bin").unlink()
    with pytest.raises(ModelLoadError, match="bin file cannot be found"):
        OpenVINO().load(str(pushed), 1)


def test_the_profile_has_a_row_per_node_run_and_leaves_the_timed_model_as_it_was(exported):
    path, _ = exported["squeezenet1_1"]
    adapter = run(path, "squeezenet1_1")
    before = adapter.outputs()[0]
    ops = adapter.profile(3)
    assert ops and all(set(op) == {"op_type", "op_name", "time_ns"} for op in ops)
    assert all(op["time_ns"] >= 0 for op in ops) and sum(op["time_ns"] for op in ops) > 0
    # SqueezeNet 1.1 has 26 convolutions; the ReLUs fused into them do not run
    assert sum(op["op_type"] == "Convolution" for op in ops) == 26
    assert "/0/Conv/WithoutBiases" in {op["op_name"] for op in ops}
    adapter.infer()
    # the timed model counts nothing: its nodes all say NOT_RUN, in no time
    assert not any(i.real_time.total_seconds() for i in adapter.request.get_profiling_info())
    np.testing.assert_array_equal(adapter.outputs()[0], before)


def test_dynamic_dimensions_are_asked_for_and_set_by_reshape(tmp_path):
    import openvino.opset13 as ops

    x = ops.parameter(ov.PartialShape([-1, 3]), ov.Type.f32, name="x")
    steps = ops.parameter(ov.PartialShape([2]), ov.Type.i64, name="steps")
    x.output(0).set_names({"x"})
    steps.output(0).set_names({"steps"})
    total = ops.add(ops.convert(ops.reduce_sum(steps, [0]), "f32"), x)
    xml = tmp_path / "dynamic.xml"
    ov.save_model(ov.Model([total], [x, steps], "dynamic"), str(xml))
    adapter = OpenVINO()
    adapter.load(str(xml), 1)
    assert [(d.name, d.dims, d.dtype) for d in adapter.inputs()] == [("x", (None, 3), "float32"),
                                                                      ("steps", (2,), "int64")]
    with pytest.raises(InputError, match=r"pass --input-shape x=<\?>x3"):
        resolve(adapter.inputs())
    resolved = resolve(adapter.inputs(), {"x": (4, 3)})
    adapter.reshape({i["name"]: tuple(i["shape"]) for i in resolved})
    adapter.feed([np.ones((4, 3), np.float32), np.array([2, 5], np.int64)])
    adapter.infer()
    np.testing.assert_array_equal(adapter.outputs()[0], np.full((4, 3), 8.0, np.float32))
