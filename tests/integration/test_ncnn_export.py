"""Really converts zoo networks to ncnn with pnnx and runs them with the board's ncnn adapter, in this process and
through the board's entrypoint, against PyTorch (about 25 s, most of it pnnx converting SqueezeNet)."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pnnx")
pytest.importorskip("ncnn")

from edgeorch.bench.adapters import get  # noqa: E402
from edgeorch.bench.signature import Declared, model_inputs  # noqa: E402
from edgeorch.errors import ModelError  # noqa: E402
from edgeorch.models import EXPORTERS, zoo  # noqa: E402

from .conftest import ROOT  # noqa: E402

pytestmark = pytest.mark.integration

# SqueezeNet: Concat, no BatchNorm. MobileNet-v2 (depthwise convolutions, ReLU6, residual additions) adds 15 s of
# conversion: the exhaustive tier's.
EXPORTED = ["squeezenet1_1", pytest.param("mobilenet_v2", marks=pytest.mark.exhaustive)]
NCNN = EXPORTERS["ncnn"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache") / "models"  # not there yet: the first export makes it


@pytest.fixture(scope="module")
def exported(cache_dir):
    """Each network converted once, when a test first asks for it, into a fresh cache: (path, log lines) of a name."""
    made = {}

    def export(name):
        if name not in made:
            logged = []
            made[name] = NCNN.export(name, 1, cache_dir, logged.append), logged
        return made[name]

    return export


def run(path, name, options=None):
    """The adapter's outputs for the network's reference input, and the adapter."""
    adapter = get("ncnn")(options)
    adapter.load(str(path), 2)
    adapter.prepare(first=zoo.reference_input(name))
    adapter.infer()
    return adapter.outputs(), adapter


@pytest.mark.parametrize("name", EXPORTED)
def test_ncnn_agrees_with_pytorch(exported, name):
    path, logged = exported(name)
    assert logged == [f"converting {name} to ncnn with pnnx (first time only)"]
    assert path.suffix == ".param" and path.with_suffix(".bin").stat().st_size > 1_000_000  # fp32 weights
    expected = zoo.reference_output(name)
    (got,), adapter = run(path, name)
    # the shape is declared in the file: the board needs no --input-shape, and the output has PyTorch's shape; the
    # host reads the same inputs from the file, without ncnn, to check --input and --input-shape before sending it
    assert adapter.inputs() == model_inputs(path) == [Declared("in0", (1, 3, 224, 224), "float32")]
    assert adapter.describe() == {"outputs": [{"name": "out0", "dtype": "float32"}]}
    assert got.shape == expected.shape == (1, 1000) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3 * np.abs(expected).max())
    assert got.argmax() == expected.argmax()
    options = adapter.info(2)["options"]
    assert options["precision"] == "fp32" and options["threads_used"] == 2
    assert not any(options[k] for k in ("use_vulkan_compute", "use_fp16_storage", "use_fp16_arithmetic"))


def test_fp16_is_an_option_and_recorded(exported):
    (got,), adapter = run(exported("squeezenet1_1")[0], "squeezenet1_1", {"precision": "fp16"})
    options = adapter.info(2)["options"]
    assert options["precision"] == "fp16" and options["use_fp16_storage"] and options["use_fp16_arithmetic"]
    # what fp16 changes depends on the CPU (MobileNet-v2 on this x86 host: 1.7e-3 of the range, fp32: 2e-5)
    expected = zoo.reference_output("squeezenet1_1")
    np.testing.assert_allclose(got, expected, rtol=0, atol=5e-2 * np.abs(expected).max())


@pytest.mark.parametrize("name", EXPORTED)
def test_a_cached_export_is_not_converted_again(exported, cache_dir, name):
    path, _ = exported(name)
    weights = path.with_suffix(".bin")
    mtimes, logged = (path.stat().st_mtime_ns, weights.stat().st_mtime_ns), []
    assert NCNN.export(name, 1, cache_dir, logged.append) == path
    assert logged == [] and (path.stat().st_mtime_ns, weights.stat().st_mtime_ns) == mtimes


def test_the_boards_entrypoint_runs_it(exported, tmp_path):
    path, _ = exported("squeezenet1_1")
    np.save(tmp_path / "x.npy", zoo.reference_input("squeezenet1_1"))
    argv = [sys.executable, "-m", "edgeorch.bench", "--framework", "ncnn", "--mode", "bare", "--model", str(path),
            "--iterations", "3", "--warmup", "0", "--threads", "1", "--input", str(tmp_path / "x.npy")]
    done = subprocess.run([*argv, "--outputs"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    doc = json.loads(done.stdout)
    assert doc["status"] == "ok", doc["error"]
    assert doc["model"]["inputs"][0]["shape"] == [1, 3, 224, 224] and doc["model"]["batch"] == 1
    (out,) = doc["outputs"]
    expected = zoo.reference_output("squeezenet1_1")
    assert out["shape"] == [1, 1000] and np.argmax(out["values"]) == expected.argmax()
    # no per-layer times from ncnn's Python module: the profile says so, and which tools have them
    done = subprocess.run([*argv, "--profile", "2"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    profile = json.loads(done.stdout)["profile"]
    assert profile["ops"] == [] and "NCNN_BENCHMARK" in profile["reason"] and "benchncnn" in profile["reason"]


def test_an_operator_ncnn_lacks_is_named_with_what_runs_it_instead(monkeypatch):
    class Spectrum(torch.nn.Module):
        def forward(self, x):
            return torch.fft.rfft(torch.relu(x)).abs().flatten(1)

    monkeypatch.setattr(zoo, "build", lambda name: Spectrum().eval())
    small = dataclasses.replace(zoo.lookup("squeezenet1_1"), input_shape=(1, 3, 8, 8))
    with pytest.raises(ModelError, match=r"ncnn has no layer for .*torch\.fft\.rfft \(torch\.fft\.rfft_\d+\)") as e:
        NCNN.convert(small)
    assert "pytorch or onnxruntime" in e.value.hint
