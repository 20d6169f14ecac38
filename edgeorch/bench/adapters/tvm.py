"""Apache TVM: a model compiled ahead of time, run by the Relax VM of TVM's runtime.

The model is edgeorch's .tvm archive (edgeorch.models.export_tvm makes it on the host): a zip file holding
edgeorch-tvm.json (the inputs, the outputs and what compiled each library) and one shared library per arch it
serves, named as platform.machine() names the arch (aarch64.so, x86_64.so). The board picks its own, writes it into
a private temporary directory (dlopen takes a path), loads it and removes the directory. A user's own library, the
.so that TVM's export_library wrote for this board's arch, runs too; it declares no input shapes, so those come from
--input-shape (and a dtype other than float32 from an --input .npy file).

The archive's format is defined here, where it is read; the exporter writes it with these names.

Board side: standard library, numpy and TVM's runtime only, Python 3.10+. apache-tvm (the only TVM wheel on PyPI)
ships the compiler too; a board imports it with TVM_USE_RUNTIME_LIB=1, so its 250 MB compiler library is never loaded
and nothing beyond apache-tvm-ffi and typing_extensions is needed.
"""

import importlib
import json
import os
import platform
import re
import shutil
import struct
import sys
import tempfile
import time
import zipfile

import numpy as np

from .. import BOARD_PACKAGE
from ..signature import Declared, declared_from_json
from .base import (
    Adapter,
    FrameworkMissing,
    ModelLoadError,
    NotProfiled,
    check_options,
    distribution_version,
    mean_per_op,
    one_line,
    profile_runs,
)

MANIFEST = "edgeorch-tvm.json"  # the archive's description of itself
FORMAT = "edgeorch.tvm/1"  # its "format": a reader refuses any other
ENTRY = "main"  # the Relax function a model runs
EXECUTOR = "relax-vm"

# ELF e_machine -> what platform.machine() says on a userland of that arch
ELF_MACHINES = {62: "x86_64", 183: "aarch64", 40: "armv7l", 3: "i686", 243: "riscv64"}
_ELF_DYN = 3
# TVM's export_library puts the packed modules (the Relax VM's bytecode and constants) under this symbol
# (__tvm_dev_mblob before TVM 0.20): a shared library without it is not one TVM's runtime can run.
LIBRARY_BLOBS = (b"__tvm_ffi__library_bin", b"__tvm_dev_mblob")
_BIG_CORES = 1  # threading::ThreadGroup::kBig, the affinity mode TVM's pool starts in


def board_machine(machine=None, bits=None):
    """The machine name of this userland as the archive names its libraries: platform.machine(), with a 32-bit
    userland on a 64-bit ARM kernel (Raspberry Pi OS 32-bit) as armv7l, and arm64/amd64 spelled the Linux way."""
    machine = str(platform.machine() if machine is None else machine).lower()
    bits = bits or struct.calcsize("P") * 8
    machine = {"arm64": "aarch64", "amd64": "x86_64", "x64": "x86_64"}.get(machine, machine)
    if machine in ("aarch64", "armv8l") and bits == 32:
        return "armv7l"
    return machine


def elf_header(head):
    """(machine, bits, is a shared object) of an ELF file's first 20 bytes; ValueError if it is not ELF."""
    head = bytes(head[:20])
    if len(head) < 20 or head[:4] != b"\x7fELF" or head[4] not in (1, 2) or head[5] not in (1, 2):
        raise ValueError("it is not an ELF file")
    order = "<" if head[5] == 1 else ">"
    e_type, e_machine = struct.unpack(order + "HH", head[16:20])
    return ELF_MACHINES.get(e_machine, f"ELF machine {e_machine}"), 32 * head[4], e_type == _ELF_DYN


def read_manifest(archive):
    """The manifest of an open zipfile.ZipFile, checked: its format, inputs and a library per arch, each a member.
    ModelLoadError saying what is wrong."""
    try:
        manifest = json.loads(archive.read(MANIFEST))
    except KeyError:
        raise ModelLoadError(f"it is a zip file without {MANIFEST}, not an edgeorch TVM archive") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelLoadError(f"its {MANIFEST} is not JSON: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise ModelLoadError(f"its {MANIFEST} is of format {found!r}, not {FORMAT!r} (an archive of another edgeorch "
                             "version?)")
    libraries, names = manifest.get("libraries"), set(archive.namelist())
    if not isinstance(libraries, dict) or not libraries:
        raise ModelLoadError(f"its {MANIFEST} lists no library")
    for machine, library in libraries.items():
        if not isinstance(library, dict) or library.get("file") not in names:
            raise ModelLoadError(f"its {MANIFEST} lists a library for {machine} that the archive does not hold")
    inputs = manifest.get("inputs")
    if not isinstance(inputs, list) or not all(
            isinstance(i, dict) and isinstance(i.get("name"), str) and isinstance(i.get("dtype"), str)
            and isinstance(i.get("shape"), list) and all(isinstance(d, int) and d >= 0 for d in i["shape"])
            for i in inputs):
        raise ModelLoadError(f"its {MANIFEST} does not list the inputs as [{{name, shape, dtype}}]")
    return manifest


def library_for(manifest, machine):
    """The archive member of the library for `machine`; ModelLoadError naming the arches the archive has."""
    libraries = manifest["libraries"]
    if machine not in libraries:
        raise ModelLoadError(f"the archive holds TVM libraries for {', '.join(sorted(libraries))}, none for this "
                             f"board's {machine}: compile the model for {machine}, or run it on a board of one of "
                             "those")
    return libraries[machine]["file"]


def extract_library(archive, member, machine):
    """A private temporary directory (mode 0700) holding `member` of the archive as model.so, and that file's path;
    ModelLoadError unless it is a shared library for `machine`. The caller removes the directory."""
    directory = tempfile.mkdtemp(prefix="edgeorch-tvm-")
    try:
        target = os.path.join(directory, "model.so")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as out, archive.open(member) as source:
            shutil.copyfileobj(source, out, 1 << 20)
        with open(target, "rb") as f:
            _check_library(f.read(20), machine, f"its {member}")
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return directory, target


def _check_library(head, machine, what):
    try:
        found, bits, shared = elf_header(head)
    except ValueError as e:
        raise ModelLoadError(f"{what}: {e}") from None
    if not shared:
        raise ModelLoadError(f"{what} is an ELF file but not a shared library (TVM's export_library writes one)")
    if found != machine:
        raise ModelLoadError(f"{what} is a library for {found} ({bits}-bit), this board is {machine}: compile it for "
                             f"{machine} (tvm.compile with an {machine} target, export_library with a linker for it)")


def op_type(symbol):
    """The operator type of a VM call: a kernel's name without the counters TVM appends to a name used before
    (conv2d12 -> conv2d, fused_conv2d1_add1_relu1 -> fused_conv2d_add_relu); a VM builtin's own name."""
    if symbol.startswith("vm."):
        return symbol
    return "_".join(re.sub(r"(?<=[A-Za-z])\d+$", "", token) for token in symbol.split("_"))


def _import_runtime():
    """The tvm module and its Relax VM: on a board (this module as edgeorch_bench's) runtime-only, with
    TVM_USE_RUNTIME_LIB=1 for the import alone; on the host (edgeorch.bench's: the exporter's check, the tests) as it
    is, since the same process compiles with it."""
    if "tvm" in sys.modules or __name__.split(".")[0] != BOARD_PACKAGE:
        return importlib.import_module("tvm"), importlib.import_module("tvm.runtime.vm")
    before = os.environ.get("TVM_USE_RUNTIME_LIB")
    os.environ["TVM_USE_RUNTIME_LIB"] = "1"
    try:
        return importlib.import_module("tvm"), importlib.import_module("tvm.runtime.vm")
    finally:
        if before is None:
            del os.environ["TVM_USE_RUNTIME_LIB"]
        else:
            os.environ["TVM_USE_RUNTIME_LIB"] = before


class Tvm(Adapter):
    """TVM's runtime on the CPU: the Relax VM running a library compiled ahead of time for this arch."""

    name = "tvm"

    def __init__(self, options=None):
        self.options = check_options(options)
        try:
            self.tvm, self.vm_module = _import_runtime()
        except (ImportError, OSError, RuntimeError) as e:  # no wheel, or its libtvm_runtime.so does not load
            raise FrameworkMissing(f"TVM's runtime is not importable ({one_line(e)}); install apache-tvm with "
                                   "apache-tvm-ffi and typing_extensions") from e
        self.vm = self.manifest = None
        self.library = "not loaded"

    def info(self, threads):
        tvm, manifest = self.tvm, self.manifest or {}
        library = (manifest.get("libraries") or {}).get(board_machine(), {})
        compiler = manifest.get("compiler") or {}
        return {"name": self.name, "runtime": "apache-tvm",
                "version": distribution_version(("apache-tvm",), tvm.__version__), "threads": threads,
                "options": {"executor": EXECUTOR, "library": self.library,
                            "target": library.get("target"), "opt_level": compiler.get("opt_level"),
                            "pipeline": compiler.get("pipeline"), "compiled_by": compiler.get("tvm"),
                            "precision": manifest.get("precision"),
                            # kernels without a parallel loop never use the pool, whatever its size
                            "parallel_kernels": library.get("parallel_kernels"),
                            "pool_threads": self._pool_threads() if self.vm is not None else "not loaded",
                            "runtime_only": bool(getattr(tvm.base, "_RUNTIME_ONLY", False))}}

    def _pool_threads(self):
        return int(self.tvm.get_global_func("runtime.NumThreads")())

    def _set_threads(self, threads):
        """Size TVM's thread pool. The pool is made once per thread, on the first parallel kernel (or pool call),
        with TVM_NUM_THREADS workers as the environment says then (else all cores, half of them on x86); it can
        shrink afterwards but never grow. So the variable is set before the pool exists, and config_threadpool
        makes it now with that many, rather than capped at the cores TVM counts as big."""
        if threads:
            os.environ["TVM_NUM_THREADS"] = str(threads)
            self.tvm.get_global_func("runtime.config_threadpool")(_BIG_CORES, int(threads))

    def load(self, path, threads):
        self._set_threads(threads)
        machine = board_machine()
        with open(path, "rb") as f:
            head = f.read(20)
        if head[:4] == b"\x7fELF":
            _check_library(head, machine, "the file")
            module = self._load_module(str(path))
            self.manifest, self.library = None, "the user's shared library"
            self.declared = None
        elif zipfile.is_zipfile(path):
            try:
                with zipfile.ZipFile(path) as archive:
                    manifest = read_manifest(archive)
                    member = library_for(manifest, machine)
                    directory, library = extract_library(archive, member, machine)
            except (zipfile.BadZipFile, OSError) as e:
                raise ModelLoadError(f"the archive cannot be read: {e}") from e
            try:
                module = self._load_module(library)
            finally:
                shutil.rmtree(directory, ignore_errors=True)  # dlopen has mapped it; the file is no longer needed
            self.manifest, self.library = manifest, f"{member} of the archive"
            self.declared = declared_from_json(manifest["inputs"])
        else:
            raise ModelLoadError("it is neither an edgeorch .tvm archive (a zip file) nor a shared library that TVM's "
                                 "export_library wrote")
        try:
            self.vm = self.vm_module.VirtualMachine(module, self.tvm.cpu())
            arity = int(self.vm["get_function_arity"](ENTRY))
            names = [str(self.vm["get_function_param_name"](ENTRY, i)) for i in range(arity)]
        except Exception as e:  # tvm_ffi raises its own error types
            raise ModelLoadError(f"TVM's Relax VM cannot run the library: {one_line(e)}") from e
        if self.declared is None:
            # a bare library names its inputs but records neither shapes nor dtypes: --input-shape gives them
            self.declared = [Declared(name, None, None) for name in names]
        elif [d.name for d in self.declared] != names:
            raise ModelLoadError(f"the library's {ENTRY} takes {names}, the archive lists inputs "
                                 f"{[d.name for d in self.declared]}")
        self.function = self.vm[ENTRY]

    def _load_module(self, library):
        # TVM picks the loader by the file's suffix
        if not library.endswith(".so"):
            directory = tempfile.mkdtemp(prefix="edgeorch-tvm-")
            try:
                shutil.copyfile(library, os.path.join(directory, "model.so"))
                return self._load_module(os.path.join(directory, "model.so"))
            finally:
                shutil.rmtree(directory, ignore_errors=True)
        try:
            return self.tvm.runtime.load_module(library)
        except Exception as e:  # a library of another TVM version, or one that needs symbols nothing provides
            raise ModelLoadError(f"TVM's runtime cannot load the library: {one_line(e)}") from e

    def inputs(self):
        return self.declared

    def describe(self):
        outputs = (self.manifest or {}).get("outputs") or []
        return {"outputs": [{"name": o.get("name"), "shape": o.get("shape"), "dtype": o.get("dtype")} for o in outputs]}

    def feed(self, arrays):
        # copied into TVM's tensors once, here: an inference then runs the VM alone, as TFLite's invoke() does
        device = self.tvm.cpu()
        self.args = [self.tvm.runtime.tensor(np.ascontiguousarray(a), device=device) for a in arrays]

    def infer(self):
        self.last = self.function(*self.args)

    def outputs(self):
        found = []

        def walk(value):
            if hasattr(value, "numpy"):
                found.append(value.numpy())
            else:  # the VM returns a tuple (an ffi Array) of tensors, possibly nested
                for item in value:
                    walk(item)

        walk(self.last)
        return found

    def profile(self, runs):
        """Per VM call, over `runs` inferences with an instrument on the Relax VM (set_instrument: a callback before
        and after each call instruction, part of TVM's runtime; the profiling VM of older TVM is gone from 0.27).
        The calls are the compiled kernels (fused ones under TVM's fused name) and the VM's builtins (allocations,
        shape checks); each time is the host's wall time between the two callbacks, so it includes the few
        microseconds the VM takes to call back into Python. The instrument is removed afterwards."""
        runs = profile_runs(runs)
        if not hasattr(self.vm, "set_instrument"):
            raise NotProfiled("this TVM runtime's Relax VM has no set_instrument; TVM's own profiler needs its "
                              "compiler (relax.VirtualMachine(..., profile=True) in TVM < 0.20)")
        clock, events, started = time.perf_counter_ns, [], []

        def instrument(func, symbol, before, ret, *args):
            if before:
                started.append(clock())
            else:
                end = clock()
                events.append((op_type(str(symbol)), str(symbol), end - started.pop()))
            return 0  # VMInstrumentReturnKind.NO_OP: run the call

        self.vm.set_instrument(instrument)
        try:
            for _ in range(runs):
                self.infer()
        finally:
            self.vm.set_instrument(None)
        if not events:
            raise NotProfiled("TVM's Relax VM called the instrument for no call")
        return mean_per_op(events, runs)
