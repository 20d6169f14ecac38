"""Really exports the zoo's networks to ONNX and runs them with ONNX Runtime against PyTorch (about 30 s)."""

import hashlib
import stat

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from edgeorch.models import EXPORTERS  # noqa: E402
from edgeorch.models.zoo import NETWORKS, build, reference_input  # noqa: E402

from .conftest import export_each, networks  # noqa: E402

pytestmark = pytest.mark.integration

# VGG-16 (550 MB of ONNX) is left out: it uses no operator that AlexNet does not.
EXPORTED = ["squeezenet1_1", "googlenet", "resnet18", "resnet50", "mobilenet_v2", "alexnet"]
ONNX = EXPORTERS["onnx"]


@pytest.fixture(scope="module")
def exported(cache_dir):
    return export_each(ONNX, EXPORTED, cache_dir / "models")


def run_onnx(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.shape, out.shape) == ("input", list(x.shape), [1, 1000])  # static: no symbolic dims
    return session.run(None, {"input": x})[0]


@pytest.mark.parametrize("name", networks(EXPORTED))
def test_onnx_runtime_agrees_with_pytorch(exported, name):
    path, logged = exported[name]
    assert logged == [f"exporting {name} to ONNX (first time only)"]
    x = reference_input(NETWORKS[name])
    with torch.no_grad():
        expected = build(name)(torch.from_numpy(x)).numpy()
    got = run_onnx(path, x)
    # Kernels that sum in another order differ, through ResNet-50's 53 convs, by up to 1e-4 of the output range.
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3 * np.abs(expected).max())
    assert got.argmax() == expected.argmax()


@pytest.mark.parametrize("name", networks(EXPORTED))
def test_the_file_is_cached_with_its_checksum(exported, cache_dir, name):
    path, _ = exported[name]
    assert path.parent == cache_dir.resolve() / "models" and path.name.startswith(f"{name}-")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # readable by containers running as another user
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.with_name(path.name + ".sha256").read_text() == f"{digest}  {path.name}\n"

    mtime, logged = path.stat().st_mtime_ns, []
    assert ONNX.export(name, 1, cache_dir / "models", logged.append) == path
    assert logged == [] and path.stat().st_mtime_ns == mtime  # a hit: not exported, not even rewritten


def test_a_damaged_cached_file_is_exported_again(tmp_path):
    path = ONNX.export("squeezenet1_1", 1, tmp_path)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # as a copy cut off by a full disk would be
    logged = []
    assert ONNX.export("squeezenet1_1", 1, tmp_path, logged.append) == path
    assert "does not match its checksum" in logged[0]
    assert path.read_bytes() == good  # the export is reproducible, byte for byte
