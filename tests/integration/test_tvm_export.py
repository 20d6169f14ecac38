"""Really compiles squeezenet1_1 with Apache TVM for arm64 and amd64 into edgeorch's .tvm archive, and runs this host's
library with the board-side adapter, in this process and as a board runs it, against PyTorch (about a minute). The
aarch64 library is checked as a file (its ELF header, by readelf too, and the symbols it needs), not run."""

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tvm")

from edgeorch.bench import BOARD_PACKAGE  # noqa: E402
from edgeorch.bench.adapters.tvm import Tvm, board_machine, read_manifest  # noqa: E402
from edgeorch.bench.signature import model_inputs  # noqa: E402
from edgeorch.errors import ModelError  # noqa: E402
from edgeorch.images import copy_bundle  # noqa: E402
from edgeorch.models import EXPORTERS  # noqa: E402
from edgeorch.models.export_tvm import compile_archive, library_info  # noqa: E402
from edgeorch.models.zoo import reference_input, reference_output  # noqa: E402

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NAME = "squeezenet1_1"
TVM = EXPORTERS["tvm"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """squeezenet1_1 compiled once into a fresh cache: (path, log lines)."""
    logged = []
    return TVM.export(NAME, 1, tmp_path_factory.mktemp("cache"), logged.append), logged


@pytest.fixture(scope="module")
def expected():
    return reference_output(NAME)


def agrees(got, expected):
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-3 * np.abs(expected).max())
    assert got.argmax() == expected.argmax()


def test_the_archive_holds_a_library_for_each_arch_that_a_board_can_load(compiled, tmp_path):
    path, logged = compiled
    assert logged == [f"compiling {NAME} with TVM for arm64 and amd64 (first time only)"]
    assert path.suffix == ".tvm" and stat.S_IMODE(path.stat().st_mode) == 0o644
    with zipfile.ZipFile(path) as archive:
        manifest = read_manifest(archive)
        libraries = {m: archive.read(lib["file"]) for m, lib in manifest["libraries"].items()}
    assert set(libraries) == {"aarch64", "x86_64"}
    assert manifest["inputs"] == [{"name": "input", "shape": [1, 3, 224, 224], "dtype": "float32"}]
    assert manifest["outputs"] == [{"name": "output", "shape": [1, 1000], "dtype": "float32"}]
    assert manifest["compiler"]["tvm"] == pytest.importorskip("tvm").__version__
    assert json.loads(manifest["libraries"]["aarch64"]["target"]) == {"kind": "llvm", "mtriple": "aarch64-linux-gnu",
                                                                       "mattr": ["+neon"]}
    for machine, data in libraries.items():
        info = library_info(data)
        assert (info["machine"], info["bits"], info["shared"], info["exec_stack"]) == (machine, 64, True, False)
        # linked against nothing: what it needs comes from TVM's runtime and the C library in the board's process
        assert set(info["undefined"]) <= {"TVMFFIErrorSetRaisedFromCStrParts", "memcpy", "memset"}, machine
    (tmp_path / "aarch64.so").write_bytes(libraries["aarch64"])
    readelf = shutil.which("readelf") or shutil.which("aarch64-linux-gnu-readelf")
    if readelf:
        header = subprocess.run([readelf, "-h", str(tmp_path / "aarch64.so")], capture_output=True, text=True,
                                check=True).stdout
        assert "AArch64" in header and "DYN (Shared object file)" in header and "ELF64" in header


def test_this_hosts_library_runs_in_the_adapter_and_agrees_with_pytorch(compiled, expected, monkeypatch):
    path, _ = compiled
    adapter = Tvm()
    seen = []
    load = adapter._load_module

    def watched(library):
        seen.append((library, stat.S_IMODE(os.stat(os.path.dirname(library)).st_mode)))
        return load(library)

    monkeypatch.setattr(adapter, "_load_module", watched)
    adapter.load(str(path), 1)
    # the library went through a private directory of its own (mkdtemp: 0700), removed once loaded
    (library, mode), = seen
    assert mode == 0o700 and not os.path.exists(os.path.dirname(library))
    assert model_inputs(path) == adapter.inputs()  # as the host reads them from the archive, without TVM
    adapter.prepare(first=reference_input(NAME))
    adapter.infer()
    (got,) = adapter.outputs()
    agrees(got, expected)
    options = adapter.info(1)["options"]
    assert options["library"] == f"{board_machine()}.so of the archive" and options["executor"] == "relax-vm"
    assert options["opt_level"] == 3 and options["precision"] == "fp32" and board_machine() in options["target"]

    ops = adapter.profile(2)
    assert {o["op_type"] for o in ops} >= {"fused_conv2d_add_relu", "max_pool2d", "concatenate"}
    assert all(o["time_ns"] > 0 for o in ops) and len({o["op_name"] for o in ops}) == len(ops)
    adapter.infer()  # the profiler's instrument is gone: the VM runs as before
    np.testing.assert_array_equal(adapter.outputs()[0], got)


def test_the_board_entrypoint_runs_it_with_tvms_runtime_alone_on_the_threads_asked(compiled, expected, tmp_path):
    path, _ = compiled
    copy_bundle(tmp_path / "bundle" / BOARD_PACKAGE)  # the board's package, as deployed
    np.save(tmp_path / "x.npy", reference_input(NAME))
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    env.pop("TVM_NUM_THREADS", None)
    done = subprocess.run([sys.executable, "-m", BOARD_PACKAGE, "--framework", "tvm", "--mode", "bare", "--model",
                           str(path), "--threads", "2", "--iterations", "2", "--warmup", "0", "--sample-interval", "0",
                           "--input", str(tmp_path / "x.npy"), "--outputs"],
                          cwd=tmp_path / "bundle", env=env, capture_output=True, text=True, timeout=300, check=False)
    doc = json.loads(done.stdout.splitlines()[0])
    assert doc["status"] == "ok", (doc.get("error"), done.stderr[-2000:])
    options = doc["framework"]["options"]
    assert options["runtime_only"] and options["pool_threads"] == 2  # libtvm_compiler.so never loaded
    assert doc["model"]["inputs"][0]["shape"] == [1, 3, 224, 224]
    (output,) = doc["outputs"]
    agrees(np.array(output["values"], dtype=np.float32).reshape(output["shape"]), expected)
    assert list((tmp_path / "tmp").iterdir()) == []  # the library's temporary directory is gone


def test_an_operator_tvm_cannot_import_is_named_with_the_frameworks_that_run_it():
    class Spectrum(torch.nn.Module):
        def forward(self, x):
            return torch.fft.rfft(x).abs()

    with pytest.raises(ModelError, match="no converter for _fft_r2c.default, which spectrum uses: pytorch and "
                                         "onnxruntime run it instead") as err:
        compile_archive(Spectrum().eval(), torch.zeros(1, 8), "spectrum")
    assert "--framework pytorch" in err.value.hint
