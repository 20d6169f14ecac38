"""Converts the zoo to Caffe and runs it with the real pycaffe (Debian bullseye's) against PyTorch.

The Python with caffe is the amd64 `caffe` image's, or the command line in EDGEORCH_CAFFE_PYTHON, e.g.
"chroot /tmp/caffe-root python3" for a root made with `debootstrap --variant=minbase --include=python3-caffe
bullseye /tmp/caffe-root` (with /proc mounted in it). Files reach it on stdin, so it may be anywhere.
"""

import io
import json
import os
import shlex
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgeorch import bench  # noqa: E402
from edgeorch.models import EXPORTERS  # noqa: E402
from edgeorch.models.zoo import NETWORKS, reference_input, reference_output  # noqa: E402

from .conftest import networks  # noqa: E402

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[2] / "edgeorch" / "bench"
CAFFE = EXPORTERS["caffemodel"]
# VGG-16 (530 MB) is left out: it uses no layer that AlexNet does not.
CONVERTED = ["squeezenet1_1", "googlenet", "resnet18", "resnet50", "mobilenet_v2", "alexnet"]

# Runs under the Caffe python (3.9): unpacks the board bundle, the model and the input from the tar on stdin,
# loads the model through the adapter and prints what it did as JSON.
SCRIPT = r"""
import json, os, sys, tarfile, tempfile, time, types
import numpy as np
threads, root = int(sys.argv[1]), tempfile.mkdtemp()
with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as tar:
    tar.extractall(root)
# The adapter alone: whether the whole bundle imports here is test_the_board_bundle_runs_under_caffes_python's.
package = types.ModuleType("edgeorch_bench")
package.__path__ = [os.path.join(root, "edgeorch_bench")]
sys.modules["edgeorch_bench"] = package
from edgeorch_bench.adapters.caffe import Caffe
adapter = Caffe()
start = time.perf_counter()
adapter.load(os.path.join(root, "model.caffemodel"), threads)
loaded = time.perf_counter()
adapter.prepare(0, np.load(os.path.join(root, "input.npy")))
adapter.infer()
done = time.perf_counter()
print(json.dumps({"info": adapter.info(threads), "model": adapter.describe(), "load_s": loaded - start,
                  "forward_s": done - loaded, "outputs": [o.tolist() for o in adapter.outputs()]}))
"""


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _bundle() -> dict[str, bytes]:
    return {f"edgeorch_bench/{p.as_posix()}": (BENCH / p).read_bytes() for p in bench.bundle_files()}


@pytest.fixture(scope="module")
def caffe_python() -> list[str]:
    """The command line of a python3 with caffe: EDGEORCH_CAFFE_PYTHON's, or the amd64 caffe image's."""
    if os.environ.get("EDGEORCH_CAFFE_PYTHON"):
        return shlex.split(os.environ["EDGEORCH_CAFFE_PYTHON"])
    from edgeorch import images
    from edgeorch.arch import Arch
    from edgeorch.inventory import Board
    from edgeorch.plan import plan_target
    from edgeorch.recipes import get_recipe, load_bases
    from edgeorch.releases import Platform

    # the image a bullseye x86 board gets (Docker alone: any board gets the same one)
    bullseye = Platform(os_id="debian", codename="bullseye", pretty="Debian 11", python="3.9", glibc=(2, 31))
    board = Board(name="caffe", host="127.0.0.1", user="root", arch=Arch.AMD64)
    target = plan_target(get_recipe("caffe"), board, bullseye, load_bases())
    image = images.ensure_framework_image(images.engine(), get_recipe("caffe"), target)
    return ["docker", "run", "-i", "--rm", "--network", "none", "--entrypoint", "python3", image.image_id]


def run_in_caffe(caffe_python: list[str], model: Path, x: np.ndarray, threads: int = 0) -> dict:
    """Load `model` with the Caffe adapter under `caffe_python`, run it once on `x`: the script's JSON."""
    npy = io.BytesIO()
    np.save(npy, x)
    stdin = _tar({**_bundle(), "model.caffemodel": model.read_bytes(), "input.npy": npy.getvalue()})
    r = subprocess.run([*caffe_python, "-c", SCRIPT, str(threads)], input=stdin, capture_output=True, timeout=900)
    assert r.returncode == 0, r.stderr.decode(errors="replace")[-4000:]
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


@pytest.mark.parametrize("name", networks(CONVERTED))
def test_caffe_agrees_with_pytorch(caffe_python, cache_dir, name):
    x = reference_input(NETWORKS[name])
    result = run_in_caffe(caffe_python, CAFFE.export(name, 1, cache_dir), x)
    assert result["model"] == {"inputs": [{"name": "input", "shape": list(x.shape), "dtype": "float32"}],
                               "outputs": [{"name": "output", "shape": [1, 1000], "dtype": "float32"}]}
    got, expected = np.array(result["outputs"][0], np.float32), reference_output(name)
    # The same bound as ONNX Runtime's: kernels that sum in another order, and BatchNorm folded into the convs.
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3 * np.abs(expected).max())
    assert got.argmax() == expected.argmax()


def test_the_adapter_reports_caffe_and_its_blas(caffe_python, cache_dir):
    model = CAFFE.export("squeezenet1_1", 1, cache_dir)
    info = run_in_caffe(caffe_python, model, reference_input("squeezenet1_1"), 1)["info"]
    assert (info["name"], info["runtime"], info["threads"]) == ("caffe", "pycaffe", 1)
    assert info["version"] and info["options"]["mode"] == "cpu"
    # OpenBLAS is what takes the thread count; with another BLAS the images would run single-threaded GEMMs.
    assert info["options"]["blas"].startswith("openblas") and info["options"]["blas_threads"] == 1


def test_the_entrypoint_benchmarks_a_caffe_model(caffe_python, cache_dir):
    x, npy = reference_input("resnet18"), io.BytesIO()
    np.save(npy, x)
    stdin = _tar({**_bundle(), "model.caffemodel": CAFFE.export("resnet18", 1, cache_dir).read_bytes(),
                  "input.npy": npy.getvalue()})
    # The whole board side under Caffe's Python 3.9, as a bare-metal run starts it.
    script = ("import os, runpy, sys, tarfile, tempfile\n"
              "root = tempfile.mkdtemp()\n"
              "tarfile.open(fileobj=sys.stdin.buffer, mode='r|').extractall(root)\n"
              "sys.path.insert(0, root)\n"
              "sys.argv = ['edgeorch_bench', '--framework', 'caffe', '--mode', 'bare', '--threads', '1',\n"
              "            '--model', os.path.join(root, 'model.caffemodel'),\n"
              "            '--input', os.path.join(root, 'input.npy'),\n"
              "            '--iterations', '2', '--warmup', '1', '--outputs']\n"
              "runpy.run_module('edgeorch_bench', run_name='__main__')\n")
    r = subprocess.run([*caffe_python, "-c", script], input=stdin, capture_output=True, timeout=600)
    doc = json.loads(r.stdout)
    assert (r.returncode, doc["status"], doc["error"]) == (0, "ok", None)
    assert doc["framework"]["name"] == "caffe" and doc["timing"]["count"] == 2
    got, expected = np.array(doc["outputs"][0]["values"], np.float32), reference_output("resnet18").ravel()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3 * np.abs(expected).max())


def test_the_file_is_cached_and_reproducible(tmp_path):
    logged = []
    path = CAFFE.export("squeezenet1_1", 1, tmp_path, logged.append)
    assert logged == ["converting squeezenet1_1 to Caffe (first time only)"]
    assert path.parent == tmp_path.resolve() and path.name.startswith("squeezenet1_1-")
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # as a copy cut off by a full disk would be
    logged = []
    assert CAFFE.export("squeezenet1_1", 1, tmp_path, logged.append) == path
    assert "does not match its checksum" in logged[0]
    assert path.read_bytes() == good  # the conversion is reproducible, byte for byte
    logged = []
    assert CAFFE.export("squeezenet1_1", 1, tmp_path, logged.append) == path and logged == []
