"""Apache TVM without TVM: the .tvm archive's reader and its pick of the board's library, the checks of a user's
file, the ELF reading, the profile's operator types, and the recipe."""

import glob
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgeorch.arch import Arch
from edgeorch.bench import adapters
from edgeorch.bench.adapters.tvm import (
    FORMAT,
    MANIFEST,
    ModelLoadError,
    board_machine,
    elf_header,
    library_for,
    op_type,
    read_manifest,
)
from edgeorch.errors import ModelError
from edgeorch.models import EXPORTERS, NETWORKS, export_tvm, zoo_models
from edgeorch.models.export_tvm import archive_bytes, library_info, unsupported_operators
from edgeorch.recipes import get_recipe

ROOT = Path(__file__).resolve().parents[2]
TVM = EXPORTERS["tvm"]
ELF_MACHINE = {"aarch64": 183, "x86_64": 62, "armv7l": 40}


def elf(machine="x86_64", bits=64, e_type=3, tail=b""):
    """The first bytes of an ELF file: enough for its header to be read, and whatever `tail` adds."""
    return (b"\x7fELF" + bytes([bits // 32, 1, 1, 0]) + bytes(8) + struct.pack("<HH", e_type, ELF_MACHINE[machine])
            + bytes(44) + tail)


def manifest(machines=("aarch64", "x86_64"), **changes):
    return {"format": FORMAT, "model": "net", "entry": "main", "executor": "relax-vm", "precision": "fp32",
            "inputs": [{"name": "input", "shape": [1, 3, 8, 8], "dtype": "float32"}],
            "outputs": [{"name": "output", "shape": [1, 10], "dtype": "float32"}],
            "libraries": {m: {"file": f"{m}.so", "target": "{}"} for m in machines}, **changes}


def archive(path, machines=("aarch64", "x86_64"), **changes):
    """An archive as the exporter writes it, each library's bytes an ELF header of its arch."""
    path.write_bytes(archive_bytes(manifest(machines, **changes), {f"{m}.so": elf(m) for m in machines}))
    return path


def test_the_board_names_its_arch_as_the_archive_names_the_libraries():
    assert board_machine("aarch64", 64) == "aarch64" and board_machine("arm64", 64) == "aarch64"
    assert board_machine("x86_64", 64) == "x86_64" and board_machine("AMD64", 64) == "x86_64"
    # Raspberry Pi OS 32-bit on a 64-bit kernel: the userland, and so every library it can load, is armv7
    assert board_machine("aarch64", 32) == "armv7l" and board_machine("armv7l", 32) == "armv7l"
    assert {a.info.machine for a in export_tvm.TARGETS} == {"aarch64", "x86_64"}


def test_the_board_picks_its_own_library_or_names_the_arches_the_archive_has(tmp_path):
    with zipfile.ZipFile(archive(tmp_path / "net.tvm")) as z:
        found = read_manifest(z)
        assert library_for(found, "aarch64") == "aarch64.so" and library_for(found, "x86_64") == "x86_64.so"
        assert z.read("aarch64.so")[18] == 183  # the member holds what was written for it
    with pytest.raises(ModelLoadError, match="holds TVM libraries for aarch64, x86_64, none for this board's riscv64"):
        library_for(found, "riscv64")
    assert MANIFEST == "edgeorch-tvm.json"


def test_the_archive_is_the_same_bytes_for_the_same_libraries(tmp_path):
    one = archive(tmp_path / "a.tvm").read_bytes()
    assert archive(tmp_path / "b.tvm").read_bytes() == one
    with zipfile.ZipFile(tmp_path / "a.tvm") as z:
        assert z.namelist() == [MANIFEST, "aarch64.so", "x86_64.so"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())


@pytest.mark.parametrize("changes, problem", [
    ({"format": "edgeorch.tvm/0"}, "is of format 'edgeorch.tvm/0', not 'edgeorch.tvm/1'"),
    ({"libraries": {}}, "lists no library"),
    ({"libraries": {"aarch64": {"file": "gone.so"}}}, "lists a library for aarch64 that the archive does not hold"),
    ({"inputs": [{"name": "input", "shape": [1, "batch"], "dtype": "float32"}]}, "does not list the inputs"),
])
def test_a_damaged_manifest_is_refused_saying_what_is_wrong(tmp_path, changes, problem):
    with zipfile.ZipFile(archive(tmp_path / "net.tvm", **changes)) as z, pytest.raises(ModelLoadError, match=problem):
        read_manifest(z)


def test_a_zip_without_the_manifest_is_not_an_archive(tmp_path):
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("model.so", elf())
    with zipfile.ZipFile(tmp_path / "other.zip") as z, pytest.raises(ModelLoadError, match="without edgeorch-tvm"):
        read_manifest(z)


def test_validate_takes_the_archive_and_a_library_of_tvm_for_an_arch_it_runs_on(tmp_path):
    TVM.validate(archive(tmp_path / "net.tvm"))
    TVM.validate(archive(tmp_path / "arm.tvm", machines=("aarch64",)))
    library = tmp_path / "user.so"
    library.write_bytes(elf("aarch64", tail=b"..__tvm_ffi__library_bin.."))
    TVM.validate(library)


@pytest.mark.parametrize("name, data, problem, fix", [
    ("net.onnx", b"x", "is not a TVM model: its name ends in neither .tvm", "compile_archive"),
    ("net.tvm", b"", "is empty", "again"),
    ("net.tvm", b"not a zip", "is not an edgeorch TVM archive \\(not a zip file\\)", "export_library"),
    ("lib.so", b"#!/bin/sh\n" * 3, "is not a TVM library: it is not an ELF file", "export_library"),
    ("lib.so", elf("armv7l", bits=32), "is a shared library for armv7l \\(32-bit\\); edgeorch runs TVM on aarch64, "
     "x86_64", "board's arch"),
    ("lib.so", elf(e_type=1), "is an ELF file but not a shared library", "export_library"),
    ("lib.so", elf(tail=b"no blob here"), "without TVM's packed modules", "export_library"),
])
def test_validate_names_the_file_and_the_fix(tmp_path, name, data, problem, fix):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ModelError, match=problem) as err:
        TVM.validate(path)
    assert str(path) in str(err.value) and fix in err.value.hint


def test_validate_refuses_an_archive_for_no_arch_edgeorch_runs_tvm_on(tmp_path):
    only_armv7 = tmp_path / "net.tvm"
    only_armv7.write_bytes(archive_bytes(manifest(("armv7l",)), {"armv7l.so": elf("armv7l", bits=32)}))
    with pytest.raises(ModelError, match="holds TVM libraries for armv7l only, none for an arch edgeorch runs TVM on"):
        TVM.validate(only_armv7)
    with pytest.raises(ModelError, match="does not exist"):
        TVM.validate(tmp_path / "missing.tvm")


def test_the_elf_reader_reads_a_real_shared_library():
    # numpy's own extension module: a shared library of this host's arch that needs the C library
    path = next(p for p in glob.glob(os.path.join(os.path.dirname(np.__file__), "*", "_multiarray_umath*.so")))
    data = Path(path).read_bytes()
    info = library_info(data)
    assert info["machine"] == board_machine() and info["shared"] and info["bits"] == 64
    assert not info["exec_stack"] and "memcpy" in info["undefined"]
    assert elf_header(data[:20]) == (board_machine(), 64, True)
    with pytest.raises(ValueError, match="ELF headers are damaged"):
        library_info(data[:4096])
    with pytest.raises(ValueError, match="not an ELF file"):
        elf_header(b"PK\x03\x04" + bytes(16))


def test_the_profile_groups_tvms_kernels_by_operator():
    assert op_type("conv2d12") == "conv2d" and op_type("max_pool2d1") == "max_pool2d" and op_type("mean") == "mean"
    assert op_type("fused_conv2d1_add1_relu1") == op_type("fused_conv2d_add_relu") == "fused_conv2d_add_relu"
    assert op_type("vm.builtin.alloc_tensor") == "vm.builtin.alloc_tensor"


def test_an_operator_tvm_cannot_import_is_named():
    error = AssertionError("Unsupported function types ['_fft_r2c.default', 'aten_foo.default']")
    assert unsupported_operators(error) == ["_fft_r2c.default", "aten_foo.default"]
    assert unsupported_operators(ValueError("something else")) == []


def test_a_missing_tvm_is_a_model_error_saying_how_to_install_it(monkeypatch):
    from importlib import metadata

    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    with pytest.raises(ModelError, match="cannot compile resnet18 with TVM: apache-tvm is not installed") as err:
        export_tvm.tvm_version("resnet18")
    assert "pip install -e '.[models]'" in err.value.hint


def test_the_recipe_serves_arm64_and_amd64_on_python_3_10_to_3_13():
    recipe = get_recipe("tvm")
    assert recipe.model_format == "tvm" and recipe.arches == (Arch.ARM64, Arch.AMD64)
    assert recipe.version == "0.27.0.post1"
    assert recipe.packages_for(recipe.builds[0], Arch.ARM64) == (
        "apache-tvm==0.27.0.post1", "apache-tvm-ffi==0.1.15.post2", "typing-extensions==4.16.0")
    for arch in (Arch.ARM64, Arch.AMD64):
        assert all(recipe.why_not(arch, py, "bookworm") is None for py in ("3.10", "3.11", "3.12", "3.13"))
        assert "requires Python 3.10" in recipe.why_not(arch, "3.9", "bullseye")
    assert "no armv7l wheel" in recipe.why_not(Arch.ARMV7)
    assert set(NETWORKS) <= set(zoo_models("tvm")) and TVM.suffix == ".tvm"


def test_the_cache_key_follows_the_archives_format_and_the_adapter_imports_no_tvm():
    assert {"tvm.py", "arch.py", "export_tvm.py"} <= {p.name for p in TVM.files()}
    code = ("import sys; from edgeorch.bench import adapters; assert adapters.get('tvm').name == 'tvm'; "
            "print('tvm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False"] and "tvm" in adapters.names()


def test_an_archives_inputs_are_checked_on_the_host_as_the_board_would(tmp_path):
    """--input is checked against the archive's manifest before anything is sent, with the board's message."""
    from edgeorch.bench.signature import Declared, InputError, check_inputs, model_inputs
    path = archive(tmp_path / "net.tvm")
    assert model_inputs(path) == [Declared("input", (1, 3, 8, 8), "float32")]
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 9, 9), np.float32))
    with pytest.raises(InputError, match="dimension 2 of input 'input' is fixed at 8"):
        check_inputs(path, files={"": str(tmp_path / "x.npy")})
    (tmp_path / "torn.tvm").write_bytes(path.read_bytes()[:100])  # unreadable here: the board says why
    assert check_inputs(tmp_path / "torn.tvm") is None
