"""Really lowers the zoo to ExecuTorch (XNNPACK) and runs the .pte with the board's adapter, in this process, against
PyTorch; and a model ExecuTorch cannot lower, or cannot run, told as such (about 60 s, most of it importing
executorch.exir and lowering SqueezeNet)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("executorch.exir")

from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner  # noqa: E402
from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower  # noqa: E402

from edgeorch.bench.adapters import ModelLoadError  # noqa: E402
from edgeorch.bench.adapters.executorch import PROGRAM_IDENTIFIER, ExecuTorch, read_program  # noqa: E402
from edgeorch.bench.signature import model_inputs  # noqa: E402
from edgeorch.errors import ModelError  # noqa: E402
from edgeorch.models import EXPORTERS, zoo  # noqa: E402
from edgeorch.models.zoo import reference_input, reference_output  # noqa: E402
from edgeorch.stats import agreement  # noqa: E402

pytestmark = pytest.mark.integration

PTE = EXPORTERS["pte"]
# MobileNet-v2 adds depthwise convolutions, ReLU6 and residual additions to what XNNPACK runs: 30 s more.
LOWERED = ["squeezenet1_1", pytest.param("mobilenet_v2", marks=pytest.mark.exhaustive)]


def run(path, x, threads=0):
    adapter = ExecuTorch()
    adapter.load(str(path), threads)
    adapter.prepare(first=x)
    adapter.infer()
    return adapter


@pytest.mark.parametrize("name", LOWERED)
def test_the_lowered_network_runs_in_executorch_as_pytorch_does(cache_dir, name):
    logged = []
    path = PTE.export(name, 1, cache_dir, logged.append)
    assert logged == [f"lowering {name} to ExecuTorch (XNNPACK) (first time only)"]
    assert path.read_bytes()[4:8] == PROGRAM_IDENTIFIER and path.suffix == ".pte"
    PTE.validate(path)  # what a user's copy of it would be checked with

    adapter = run(path, reference_input(name))
    assert [(d.name, d.dims, d.dtype) for d in adapter.inputs()] == [("input", (1, 3, 224, 224), "float32")]
    assert model_inputs(path) == adapter.inputs()  # as the host reads them from the file, without the runtime
    assert adapter.describe() == {"outputs": [{"name": "output", "shape": [1, 1000], "dtype": "float32"}]}
    (got,), expected = adapter.outputs(), reference_output(name)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3 * np.abs(expected).max())
    assert agreement(expected, got)["agree"] and got.argmax() == expected.argmax()
    adapter.infer()  # a second run reads the same inputs: they are copied in before every run
    np.testing.assert_array_equal(adapter.outputs()[0], got)

    options = adapter.info(0)["options"]
    # the whole network in the XNNPACK delegate: no operator left to ExecuTorch's own kernels
    assert (options["backend"], options["delegates"], options["kernels"]) == ("XNNPACK", ["XnnpackBackend"], [])
    assert options["threadpool_threads"] >= 1 and adapter.info(0)["version"] == "1.5.1"


def test_a_profile_lists_each_xnnpack_operator_once_per_inference(cache_dir):
    adapter = run(PTE.export("squeezenet1_1", 1, cache_dir), reference_input("squeezenet1_1"))
    ops = adapter.profile(3)
    types = {op["op_type"] for op in ops}
    # SqueezeNet's 26 convolutions: XNNPACK runs its 1x1 ones as fully connected GEMMs
    assert len([o for o in ops if o["op_type"].startswith(("Convolution", "Fully Connected"))]) == 26
    assert {"Max Pooling (NHWC, F32)", "Global Average Pooling (NWC, F32)"} & types
    assert all(op["time_ns"] >= 0 for op in ops) and sum(op["time_ns"] for op in ops) > 0
    assert len({op["op_name"] for op in ops}) == len(ops)  # each named once: "#1", "#2"...
    adapter.infer()  # the timed program is untouched by the profiling one
    assert adapter.outputs()[0].shape == (1, 1000)


def test_the_file_is_cached(cache_dir):
    path = PTE.export("squeezenet1_1", 1, cache_dir)
    mtime, logged = path.stat().st_mtime_ns, []
    assert PTE.export("squeezenet1_1", 1, cache_dir, logged.append) == path
    assert logged == [] and path.stat().st_mtime_ns == mtime


class Mixed(torch.nn.Module):
    """A convolution XNNPACK takes, then operators it does not (cumsum, argmax): ExecuTorch's kernels run those."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        return torch.cumsum(y, 1).sin(), y.argmax(1)


def test_operators_outside_the_delegate_run_on_executorchs_kernels_run_after_run(tmp_path):
    model, x = Mixed().eval(), np.random.default_rng(0).standard_normal((1, 3, 8, 8), dtype=np.float32)
    program = torch.export.export(model, (torch.from_numpy(x),))
    path = tmp_path / "mixed.pte"
    path.write_bytes(to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)
    with torch.no_grad():
        expected = [t.numpy() for t in model(torch.from_numpy(x))]
    adapter = run(path, x)
    assert [o["name"] for o in adapter.describe()["outputs"]] == ["output_0", "output_1"]
    for _ in range(2):  # the plan reuses the input's buffer once read: a second run must copy the input in again
        got = adapter.outputs()
        np.testing.assert_allclose(got[0], expected[0], rtol=0, atol=1e-4)
        np.testing.assert_array_equal(got[1], expected[1])
        adapter.infer()
    options = adapter.info(0)["options"]
    assert options["backend"] == "XNNPACK + ExecuTorch kernels"
    assert options["kernels"] == ["aten::cumsum.out", "aten::argmax.out"]
    names = [op["op_name"] for op in adapter.profile(2)]
    assert {"cumsum.out (instruction 1)", "argmax.out (instruction 2)"} <= set(names)


class Median(torch.nn.Module):
    def forward(self, x):
        return x.median(dim=-1).values


class Histogram(torch.nn.Module):
    def forward(self, x):
        return torch.histc(x, bins=4)


def test_an_operator_executorch_cannot_lower_is_named(monkeypatch, tmp_path):
    monkeypatch.setattr(zoo, "build", lambda name: Median().eval())
    with pytest.raises(ModelError, match="ExecuTorch cannot lower squeezenet1_1: it uses aten.median.dim") as error:
        PTE.export("squeezenet1_1", 1, tmp_path)
    assert "pytorch or onnxruntime" in error.value.hint
    assert list(tmp_path.iterdir()) == []


def test_an_operator_the_runtime_has_no_kernel_for_is_named_at_load(tmp_path):
    # lowered by forcing histc past the verifier: the file is made, and the runtime cannot load it
    program = torch.export.export(Histogram(), (torch.zeros(1, 3, 4, 4),))
    config = EdgeCompileConfig(_core_aten_ops_exception_list=[torch.ops.aten.histc.default])
    path = tmp_path / "histc.pte"
    path.write_bytes(to_edge_transform_and_lower(program, compile_config=config).to_executorch().buffer)
    assert read_program(path)["forward"]["operators"] == ["aten::histc.out"]
    adapter = ExecuTorch()
    with pytest.raises(ModelLoadError, match="no kernel for aten::histc.out, .*or run it with pytorch or onnxruntime"):
        adapter.load(str(path), 0)
