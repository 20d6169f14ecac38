"""The zoo compiled by Apache TVM for the boards' CPUs: one .tvm archive per network, holding a shared library for
each arch TVM runs on (arm64, amd64), from which the board takes its own (the format and its reader are in
edgeorch.bench.adapters.tvm, the board-side adapter).

The network is imported from PyTorch (torch.export, then TVM's Relax front end for an ExportedProgram) and compiled
here, on the host, by tvm.compile with the Relax CPU backend's default pipeline (operators legalized to TIR,
constants folded, operators fused) for a generic CPU of each arch: no -mcpu, so that a library runs on every board of
its arch, and no tuning, which would have to measure on the board. Each library is linked here by a linker for its
arch: GNU ld (Debian's binutils-aarch64-linux-gnu for arm64, the host's own binutils for amd64) or LLVM's ld.lld.
"""

from __future__ import annotations

import hashlib
import io
import json
import mmap
import re
import shutil
import struct
import subprocess
import tempfile
import zipfile
from pathlib import Path

from edgeorch import arch as arch_module
from edgeorch.arch import Arch
from edgeorch.bench.adapters import tvm as tvm_adapter
from edgeorch.console import recording, shell
from edgeorch.errors import ModelError

from . import zoo
from .exporter import Exporter

OPT_LEVEL = 3
PIPELINE = "relax.backend.cpu_generic default: legalize, fold constants, fuse"
# Generic CPUs of each arch: every aarch64 board has NEON (Advanced SIMD); x86_64's baseline is SSE2.
TARGETS: dict[Arch, dict] = {
    Arch.ARM64: {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]},
    Arch.AMD64: {"kind": "llvm", "mtriple": "x86_64-linux-gnu"},
}
# The linkers of a shared library for each arch, the first found is used, and the package that has it.
LINKERS: dict[Arch, tuple[str, ...]] = {
    Arch.ARM64: ("aarch64-linux-gnu-ld", "ld.lld"),
    Arch.AMD64: ("x86_64-linux-gnu-ld", "ld.lld"),
}
LINKER_PACKAGES = {"aarch64-linux-gnu-ld": "binutils-aarch64-linux-gnu",
                   "x86_64-linux-gnu-ld": "binutils-x86-64-linux-gnu", "ld.lld": "lld"}
ELSEWHERE = "benchmark the model with --framework pytorch or onnxruntime, which run it without TVM's converters"

# What a compiled library may leave undefined: it is linked against nothing (the host has no C library of the board)
# and dlopened into a process where TVM's runtime is loaded with RTLD_GLOBAL, and with it the libraries that
# libtvm_runtime.so links: libtvm_ffi, libc, libm, libgcc_s.
_MATH = ("acos asin atan atan2 cos sin tan cosh sinh tanh acosh asinh atanh exp exp2 expm1 log log2 log10 log1p pow "
         "sqrt cbrt erf erfc tgamma lgamma fmod fabs floor ceil round trunc nearbyint rint fma fmin fmax hypot ldexp "
         "frexp copysign").split()
C_SYMBOLS = frozenset([*_MATH, *(f + "f" for f in _MATH), "memcpy", "memset", "memmove", "memcmp", "malloc", "free",
                       "calloc", "realloc", "abort", "__powisf2", "__powidf2"])
TVM_PREFIXES = ("TVM", "__TVM")  # libtvm_runtime's and libtvm_ffi's C API
PARALLEL_LAUNCH = "TVMBackendParallelLaunch"  # a kernel with a parallel loop calls it; none without

_ELF_MACHINE = {arch: arch.info.machine for arch in TARGETS}  # the library's name in the archive, and its ELF machine
_UNSUPPORTED = re.compile(r"Unsupported function types \[([^\]]*)\]")
ModelLoadError = tvm_adapter.ModelLoadError  # what the archive's reader raises, on the board as here
FIX = ("compile the model into edgeorch's archive (the zoo's networks are compiled by name; your own with "
       "edgeorch.models.export_tvm.compile_archive), or pass the .so that TVM's export_library wrote for the board's "
       "arch (aarch64 or x86_64), with --input-shape")


class TvmExporter(Exporter):
    """tvm.compile of torch.export's program, once per arch, into edgeorch's .tvm archive."""

    format, suffix, doing = "tvm", ".tvm", "compiling {name} with TVM for arm64 and amd64"
    sources = (tvm_adapter, arch_module)  # the archive's format, and the arches' machine names that name its files

    def toolchain(self, network: str) -> str:
        torch = zoo.import_torch(f"compile {network} with TVM")
        linkers = " ".join(f"{arch.value}-linker={found[1] if found else 'none'}"
                           for arch, found in ((a, find_linker(a)) for a in TARGETS))
        return f"tvm={tvm_version(network)} torch={torch.__version__} opt_level={OPT_LEVEL} {linkers}"

    def convert(self, network: zoo.Network) -> bytes:
        import torch

        return compile_archive(zoo.build(network.name), torch.zeros(network.input_shape), network.name)

    def check(self, path: Path, network: zoo.Network) -> None:
        """Raise ModelError, and remove `path`, unless it holds a library per arch that a board of it can load (ELF
        machine, no executable stack, nothing undefined that the board's process lacks), declares the network's input
        and output, and the library of this host's arch loads into TVM's runtime and VM here."""
        batch = network.input_shape[0]
        try:
            manifest = check_archive(path)
            inputs = [(i["shape"], i["dtype"]) for i in manifest["inputs"]]
            outputs = [(o.get("shape"), o.get("dtype")) for o in manifest.get("outputs") or []]
            if inputs != [(list(network.input_shape), "float32")] or outputs != [([batch, 1000], "float32")]:
                raise ModelLoadError(f"it declares inputs {inputs} and outputs {outputs}, not the network's "
                                     f"{list(network.input_shape)} float32 -> {[batch, 1000]}")
            if tvm_adapter.board_machine() in manifest["libraries"]:
                tvm_adapter.Tvm().load(str(path), 0)  # a load and the VM made, nothing run
        except (ModelLoadError, tvm_adapter.FrameworkMissing, OSError, zipfile.BadZipFile, ValueError) as exc:
            path.unlink(missing_ok=True)
            raise ModelError(f"the compiled {path.name} is not what a board runs: {exc}",
                             hint="compile it again; if it persists, report it with the TVM version and the linker "
                                  "(edgeorch-tvm.json in the archive names them)") from exc

    def validate(self, path: Path) -> None:
        """Raise ModelError unless `path` is edgeorch's .tvm archive with a library for arm64 or amd64, or a .so that
        TVM's export_library wrote for one of them."""
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist", hint="check the path given to --model")
        if path.suffix not in (self.suffix, ".so"):
            raise ModelError(f"{path} is not a TVM model: its name ends in neither .tvm (edgeorch's archive) nor .so "
                             "(a library that TVM's export_library wrote)", hint=FIX)
        if path.stat().st_size == 0:
            raise ModelError(f"model file {path} is empty", hint="copy or compile the model again")
        if path.suffix == ".so":
            validate_library(path)
            return
        if not zipfile.is_zipfile(path):
            raise ModelError(f"{path} is not an edgeorch TVM archive (not a zip file)", hint=FIX)
        try:
            with zipfile.ZipFile(path) as archive:
                manifest = tvm_adapter.read_manifest(archive)
        except (ModelLoadError, zipfile.BadZipFile, OSError) as exc:
            raise ModelError(f"{path} is not an edgeorch TVM archive: {exc}", hint=FIX) from exc
        if not set(manifest["libraries"]) & set(_ELF_MACHINE.values()):
            raise ModelError(f"{path} holds TVM libraries for {', '.join(sorted(manifest['libraries']))} only, none "
                             f"for an arch edgeorch runs TVM on ({', '.join(sorted(_ELF_MACHINE.values()))})", hint=FIX)


def tvm_version(network: str) -> str:
    """The installed apache-tvm's version, read without importing it; ModelError saying how to install it."""
    from importlib import metadata

    try:
        return metadata.version("apache-tvm")
    except metadata.PackageNotFoundError as exc:
        raise ModelError(f"cannot compile {network} with TVM: apache-tvm is not installed",
                         hint="install the models extra (pip install -e '.[models]')") from exc


def find_linker(arch: Arch) -> tuple[str, str] | None:
    """(path, version line) of the first linker for `arch` on this host, or None."""
    for name in LINKERS[arch]:
        path = shutil.which(name)
        if path:
            try:
                done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60, check=False)
            except (OSError, subprocess.TimeoutExpired):
                continue
            lines = done.stdout.splitlines()
            return path, (lines[0].strip() if lines else name)
    return None


def _import_compiler(name: str):
    """tvm, tvm.relax and the PyTorch front end; ModelError if TVM or its compiler is missing."""
    try:
        import tvm
    except ImportError as exc:
        raise ModelError(f"cannot compile {name} with TVM: apache-tvm is not importable ({exc})",
                         hint="install the models extra (pip install -e '.[models]')") from exc
    if getattr(tvm.base, "_RUNTIME_ONLY", False):
        raise ModelError(f"cannot compile {name}: TVM is loaded without its compiler in this process "
                         "(TVM_USE_RUNTIME_LIB=1 at its import, or libtvm_compiler.so did not load)",
                         hint="unset TVM_USE_RUNTIME_LIB and compile in a fresh process; reinstall apache-tvm if it "
                              "persists")
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    return tvm, relax, from_exported_program


def unsupported_operators(error: BaseException) -> list[str]:
    """The operators that TVM's PyTorch front end names as having no converter in `error`, else []."""
    found = _UNSUPPORTED.search(str(error))
    return re.findall(r"'([^']+)'", found.group(1)) if found else []


def compile_archive(model, example, name: str) -> bytes:
    """The .tvm archive of a torch.nn.Module in eval mode, taking one tensor like `example`: a library for each arch of
    TARGETS. ModelError where PyTorch cannot export it, TVM has no converter for an operator, or cannot compile it."""
    import torch

    tvm, relax, from_exported_program = _import_compiler(name)
    linkers = {arch: find_linker(arch) for arch in TARGETS}
    missing = [arch for arch, found in linkers.items() if found is None]
    if missing:
        names = " or ".join(LINKERS[missing[0]])
        raise ModelError(f"cannot link {name} for {missing[0].value}: no linker for it here ({names})",
                         hint=f"install {LINKER_PACKAGES[LINKERS[missing[0]][0]]} (./setup.sh does), or lld")
    with torch.no_grad():
        try:
            program = torch.export.export(model, (example,))
        except Exception as exc:
            raise ModelError(f"torch.export cannot export {name}: {type(exc).__name__}: {exc}",
                             hint=ELSEWHERE) from exc
        try:
            module = from_exported_program(program, keep_params_as_input=False)
        except Exception as exc:  # the front end asserts on unknown operators, raises anything on the others
            ops = unsupported_operators(exc)
            if ops:
                raise ModelError(f"TVM {tvm.__version__}'s PyTorch front end has no converter for {', '.join(ops)}, "
                                 f"which {name} uses: pytorch and onnxruntime run it instead", hint=ELSEWHERE) from exc
            raise ModelError(f"TVM's PyTorch front end cannot import {name}: {type(exc).__name__}: {exc}",
                             hint=ELSEWHERE) from exc
    inputs, outputs = _signature(module)
    libraries, described = {}, {}
    for arch, target in TARGETS.items():
        data = _compile(tvm, relax, module, target, linkers[arch][0], f"{name} for {arch.value}")
        info = library_info(data)
        machine = _ELF_MACHINE[arch]
        described[machine] = {"file": f"{machine}.so", "arch": arch.value, "target": json.dumps(target),
                              "linker": linkers[arch][1], "parallel_kernels": PARALLEL_LAUNCH in info["undefined"],
                              "sha256": hashlib.sha256(data).hexdigest()}
        libraries[f"{machine}.so"] = data
    manifest = {"format": tvm_adapter.FORMAT, "model": name, "entry": tvm_adapter.ENTRY,
                "executor": tvm_adapter.EXECUTOR, "precision": "fp32", "inputs": inputs, "outputs": outputs,
                "compiler": {"tvm": tvm.__version__, "torch": torch.__version__, "opt_level": OPT_LEVEL,
                             "pipeline": PIPELINE,
                             "frontend": "torch.export.export + tvm.relax.frontend.torch.from_exported_program"},
                "libraries": described}
    return archive_bytes(manifest, libraries)


def _signature(module) -> tuple[list[dict], list[dict]]:
    """The main function's inputs and outputs, [{name, shape, dtype}] each, from their Relax struct info."""
    main = module[tvm_adapter.ENTRY]

    def tensor(info) -> dict:  # a TensorType (TVM 0.27's name for a TensorStructInfo)
        return {"shape": [int(d) for d in info.shape.values], "dtype": str(info.dtype)}

    inputs = [{"name": p.name, **tensor(p.ty)} for p in main.params]
    returned = main.ret_ty
    fields = list(returned.fields) if hasattr(returned, "fields") else [returned]
    outputs = [{"name": "output" if len(fields) == 1 else f"output{i}", **tensor(f)} for i, f in enumerate(fields)]
    return inputs, outputs


def _compile(tvm, relax, module, target: dict, linker: str, what: str) -> bytes:
    """The shared library of `module` for `target`, linked by `linker`; ModelError if either fails."""
    target = tvm.target.Target(target)
    try:
        with tvm.transform.PassContext(opt_level=OPT_LEVEL):
            executable = tvm.compile(module, target=target, relax_pipeline=relax.get_default_pipeline(target))
    except Exception as exc:
        raise ModelError(f"TVM cannot compile {what}: {type(exc).__name__}: {' '.join(str(exc).split())[:500]}",
                         hint=ELSEWHERE) from exc

    def link(output: str, objects: list[str], options=None) -> None:
        # linked against nothing: see C_SYMBOLS; -z noexecstack, as glibc 2.41 refuses to dlopen an executable stack
        argv = [linker, "-shared", "-z", "noexecstack", "-o", output, *objects]
        with recording(shell(argv)) as rec:  # in the commands.log of the run that compiles it
            done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
            rec.exit_code, rec.output = done.returncode, done.stderr or done.stdout
        if done.returncode:
            raise ModelError(f"linking {what} failed: {linker} exited {done.returncode}: "
                             f"{' '.join((done.stderr or done.stdout).split())[:500]}",
                             hint="check the linker's install (binutils-aarch64-linux-gnu, or lld)")

    link.output_format = "so"
    with tempfile.TemporaryDirectory(prefix="edgeorch-tvm-") as tmp:
        work = Path(tmp) / "objects"
        work.mkdir()
        executable.export_library(str(Path(tmp) / "model.so"), fcompile=link, workspace_dir=str(work))
        return (Path(tmp) / "model.so").read_bytes()


def archive_bytes(manifest: dict, libraries: dict[str, bytes]) -> bytes:
    """The archive: the manifest, then the libraries, stored (float weights hardly compress; the board reads them as
    they are), with fixed dates and modes so that the same libraries make the same bytes."""
    buffer = io.BytesIO()
    members = [(tvm_adapter.MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode()),
               *sorted(libraries.items())]
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def check_archive(path: Path) -> dict:
    """The manifest of an archive whose every arch's library is a shared library of that arch, without an
    executable stack, needing only symbols that a board's process has; ModelLoadError saying which is not."""
    with zipfile.ZipFile(path) as archive:
        manifest = tvm_adapter.read_manifest(archive)
        for machine in _ELF_MACHINE.values():
            member = tvm_adapter.library_for(manifest, machine)
            try:
                info = library_info(archive.read(member))
            except ValueError as exc:
                raise ModelLoadError(f"its {member}: {exc}") from exc
            if info["machine"] != machine or not info["shared"]:
                raise ModelLoadError(f"its {member} is {'a shared library' if info['shared'] else 'an ELF file'} for "
                                     f"{info['machine']}, not a shared library for {machine}")
            if info["exec_stack"]:
                raise ModelLoadError(f"its {member} asks for an executable stack, which glibc 2.41 refuses to dlopen")
            lacking = [s for s in info["undefined"] if not s.startswith(TVM_PREFIXES) and s not in C_SYMBOLS]
            if lacking:
                raise ModelLoadError(f"its {member} needs symbols that neither TVM's runtime nor the C library "
                                     f"provides: {', '.join(lacking[:10])}")
    return manifest


def library_info(data: bytes) -> dict:
    """{machine, bits, shared, exec_stack, undefined: [global symbols it needs]} of a 64-bit little-endian ELF file's
    bytes (both of edgeorch's arches); ValueError if it is not one."""
    machine, bits, shared = tvm_adapter.elf_header(data)
    if bits != 64 or data[5] != 1:
        raise ValueError(f"it is a {bits}-bit {'little' if data[5] == 1 else 'big'}-endian ELF file, not a 64-bit "
                         "little-endian one")
    try:
        phoff, shoff = struct.unpack_from("<QQ", data, 32)
        phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 54)
        exec_stack = False
        for k in range(phnum):
            p_type, p_flags = struct.unpack_from("<II", data, phoff + k * phentsize)
            if p_type == 0x6474E551:  # PT_GNU_STACK
                exec_stack = bool(p_flags & 1)  # PF_X
        sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + k * shentsize) for k in range(shnum)]
        undefined = []
        for _, sh_type, _, _, offset, size, link, _, _, entsize in sections:
            if sh_type != 11:  # SHT_DYNSYM
                continue
            strings = sections[link][4]
            for at in range(offset + entsize, offset + size, entsize):  # entry 0 is the null symbol
                st_name, st_info, _, st_shndx = struct.unpack_from("<IBBH", data, at)
                if st_shndx == 0 and st_info >> 4 == 1:  # SHN_UNDEF, STB_GLOBAL: weak ones may stay unresolved
                    end = data.index(b"\0", strings + st_name)
                    undefined.append(data[strings + st_name:end].decode())
    except (struct.error, IndexError, ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"its ELF headers are damaged ({exc})") from exc
    return {"machine": machine, "bits": bits, "shared": shared, "exec_stack": exec_stack,
            "undefined": sorted(undefined)}


def validate_library(path: Path) -> None:
    """Raise ModelError unless `path` is a shared library for an arch edgeorch runs TVM on, with TVM's packed
    modules in it (what export_library writes)."""
    fix = FIX
    with open(path, "rb") as f:
        try:
            machine, bits, shared = tvm_adapter.elf_header(f.read(20))
        except ValueError as exc:
            raise ModelError(f"{path} is not a TVM library: {exc}", hint=fix) from exc
        if not shared or machine not in _ELF_MACHINE.values():
            kind = "a shared library" if shared else "an ELF file but not a shared library"
            raise ModelError(f"{path} is {kind} for {machine} ({bits}-bit); edgeorch runs TVM on "
                             f"{', '.join(sorted(_ELF_MACHINE.values()))}", hint=fix)
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            if not any(data.find(blob) >= 0 for blob in tvm_adapter.LIBRARY_BLOBS):
                raise ModelError(f"{path} is a shared library without TVM's packed modules "
                                 f"({tvm_adapter.LIBRARY_BLOBS[0].decode()}): not one TVM's export_library wrote",
                                 hint=fix)
