"""ExecuTorch on a .pte program: torch.export's graph, lowered by edgeorch's exporter to XNNPACK (a user's .pte may
run operators outside a delegate too, on ExecuTorch's portable and optimized kernels)."""

import importlib
import os
import shutil
import tempfile

import numpy as np

from ..signature import Declared, Flatbuffer, mapped
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

PROGRAM_IDENTIFIER = b"ET12"  # bytes 4-8 of every .pte the runtime loads: its flatbuffer's file_identifier
ETDUMP_IDENTIFIER = b"ED00"
EXTENSIONS = ("executorch.extension.pybindings._C", "executorch.extension.pybindings._portable_lib")
METHOD = "forward"  # what torch.export calls the one method of a module, and the one edgeorch runs
XNNPACK = "XnnpackBackend"
# ExecuTorch's ScalarType codes (runtime/core/portable_type/scalar_type.h) -> numpy dtype names
_DTYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 7: "float64",
           11: "bool"}
_KERNEL = "native_call_"  # ETDump's name of a kernel run outside a delegate: native_call_<operator>.<overload>


class ExecuTorch(Adapter):
    """ExecuTorch's runtime through its Python extension, in float32 (the exporter lowers no quantized model): the
    XNNPACK delegate on ExecuTorch's threadpool, and any operator outside it on ExecuTorch's own kernels."""

    name = "executorch"

    def __init__(self, options=None):
        self.options = check_options(options)
        try:
            # torch first: the extension links libtorch, whose tensors its methods take and return
            self.torch = importlib.import_module("torch")
        except ImportError as e:
            raise FrameworkMissing("torch, which executorch's runtime links, does not import "
                                   f"({one_line(e, 200)})") from e
        self.et = _extension()
        self.method = self.program = None
        self.facts = {}

    def info(self, threads):
        backends = list(self.et._get_registered_backend_names())
        return {"name": self.name, "runtime": "executorch",
                "version": distribution_version(("executorch",), _built_version()), "threads": threads,
                "options": {"backend": _backend(self.facts, backends), "precision": "fp32",
                            # the process's one threadpool, which the XNNPACK delegate and the optimized kernels
                            # run on: its size is set with _unsafe_reset_threadpool (torch's threads play no part)
                            "threadpool_threads": self.et._threadpool_get_thread_count(),
                            "threads_set_by": "executorch _unsafe_reset_threadpool" if threads else
                                              "executorch's default pool (its size from cpuinfo's count of cores)",
                            "registered_backends": backends, "torch": self.torch.__version__, **self.facts}}

    def load(self, path, threads):
        self.path = str(path)
        try:
            self.facts = program_facts(read_program(self.path), METHOD)
        except ValueError as e:
            raise ModelLoadError(str(e)) from e
        if threads:
            # the pool is the process's: reset before any method runs on it (resetting under a running one is the
            # "unsafe" of its name)
            self.et._unsafe_reset_threadpool(int(threads))
        try:
            self.program = self.et._load_program(self.path, enable_etdump=False, debug_buffer_size=0,
                                                 program_verification=self.et.Verification.InternalConsistency)
            self.method = self.program.load_method(METHOD)
        except Exception as e:  # a RuntimeError with the runtime's error code only: 0x:14 for a missing kernel
            missing = self._missing_operators()
            if missing:
                raise ModelLoadError(f"this executorch build has no kernel for {', '.join(missing)}, which the "
                                     "program runs outside any delegate: export the model without it, or run it "
                                     "with pytorch or onnxruntime") from e
            raise ModelLoadError(one_line(e)) from e
        meta = self.method.method_meta()
        self.declared = [Declared(_io_name("input", i, meta.num_inputs()), *self._tensor(meta, "input", i))
                         for i in range(meta.num_inputs())]
        self.output_meta = [(_io_name("output", i, meta.num_outputs()), *self._tensor(meta, "output", i))
                            for i in range(meta.num_outputs())]

    def _missing_operators(self):
        registered = set(self.et._get_operator_names())
        return [op for op in self.facts.get("kernels", ()) if op not in registered]

    @staticmethod
    def _tensor(meta, kind, index):
        """(dims, dtype) of the method's input or output `index`; a .pte's shapes are fixed when it is made."""
        try:
            info = getattr(meta, f"{kind}_tensor_meta")(index)
        except Exception as e:  # an int, a bool or a list: the extension refuses its tensor meta
            raise ModelLoadError(f"{kind} {index} of the method is not a tensor ({one_line(e, 200)}); edgeorch feeds "
                                 "and reads tensors") from e
        code = info.dtype()
        if code not in _DTYPES:
            raise ModelLoadError(f"{kind} {index} of the method has ExecuTorch scalar type {code}, which edgeorch "
                                 f"does not feed (it feeds {', '.join(sorted(set(_DTYPES.values())))})")
        return tuple(int(d) for d in info.sizes()), _DTYPES[code]

    def inputs(self):
        return self.declared

    def describe(self):
        return {"outputs": [{"name": name, "shape": list(dims), "dtype": dtype}
                            for name, dims, dtype in self.output_meta]}

    def feed(self, arrays):
        self.tensors = [self.torch.from_numpy(a) for a in arrays]

    def infer(self):
        # The inputs are copied in before every run, as ExecuTorch's Module does: the memory plan reuses an input's
        # buffer for later tensors once the input is read, so a second execute() alone would read what they left.
        self.method.set_inputs(self.tensors)
        self.method.execute()

    def outputs(self):
        return [t.numpy() if hasattr(t, "numpy") else np.asarray(t) for t in self.method.get_outputs()]

    def profile(self, runs):
        """Per operator, from the ETDump of a second program (the timed one is left without an event tracer), the
        same file fed the same inputs, over `runs` inferences after one warm-up run whose events are left out: each
        XNNPACK operator of a delegate by the name XNNPACK gives it (Convolution (NHWC, F32) IGEMM #1; its time
        to the microsecond, as XNNPACK's profiler measures), and each operator outside one by its kernel
        (convolution.out), to the nanosecond. A delegate whose backend records no operators is one row, its call."""
        runs = profile_runs(runs)
        directory = tempfile.mkdtemp(prefix="edgeorch-executorch-profile-")
        try:
            program = self.et._load_program(self.path, enable_etdump=True, debug_buffer_size=0,
                                            program_verification=self.et.Verification.InternalConsistency)
            method = program.load_method(METHOD)
            for _ in range(runs + 1):
                method.set_inputs(self.tensors)
                method.execute()
            dump = os.path.join(directory, "run.etdp")
            program.write_etdump_result_to_file(dump, os.path.join(directory, "debug.bin"))
            data = b""
            if program.has_etdump() and os.path.exists(dump):  # a build without the event tracer writes none
                with open(dump, "rb") as f:
                    data = f.read()
            del method, program
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        if not data:
            raise NotProfiled(f"this executorch build ({_built_version()}) records no ETDump: its wheel was built "
                              "without EXECUTORCH_ENABLE_EVENT_TRACER (PyPI's 1.5.1 wheels have it, 1.1.0's do not); "
                              "ExecuTorch's executor_runner built with it profiles each operator")
        return mean_per_op(etdump_events(data, skip_runs=1), runs)


def _extension():
    """ExecuTorch's Python extension itself, not executorch.runtime or portable_lib over it: those import
    executorch.exir, the ahead-of-time compiler, which needs ten more packages (torchao, sympy, ruamel.yaml...) and
    takes five times as long to import. It is named _C from 1.5 on, _portable_lib before."""
    errors = []
    for module in EXTENSIONS:
        try:
            return importlib.import_module(module)
        except ImportError as e:
            errors.append(one_line(e, 200))
    raise FrameworkMissing(f"executorch is not installed or its runtime does not import ({'; '.join(errors)})")


def _backend(facts, registered):
    """What runs the program: its delegates' backends (XNNPACK for edgeorch's exports) and ExecuTorch's own kernels
    for the operators outside them; before a program is loaded, XNNPACK where this runtime has it."""
    if not facts:
        return "XNNPACK" if XNNPACK in registered else "ExecuTorch kernels"
    names = ["XNNPACK" if d == XNNPACK else d for d in facts["delegates"]]
    return " + ".join(names + (["ExecuTorch kernels"] if facts["kernels"] or not names else []))


def _built_version():
    """The version the runtime was built as (1.5.1+cpu), where no installed distribution says it."""
    try:
        return importlib.import_module("executorch.version").__version__
    except (ImportError, AttributeError):
        return None


def _io_name(kind, index, count):
    """input (output) for a method's only one, else input_0, input_1...: a .pte keeps no names."""
    return kind if count == 1 else f"{kind}_{index}"


# --- reading a .pte and an ETDump without the runtime: flatbuffers, read as the schemas in ExecuTorch's wheel say --

def read_program(path):
    """{method: {"operators": ["aten::convolution.out", ...], "delegates": ["XnnpackBackend", ...]}} of a .pte,
    read from its flatbuffer (mapped: a 500 MB program's weights are not read): the operators are those its
    instructions call on the runtime's kernels, outside any delegate. ValueError, saying why, for a file that is
    not an ExecuTorch program this runtime reads."""
    def read(data):
        if len(data) < 8:
            raise ValueError("it is shorter than a flatbuffer's 8-byte header")
        identifier = bytes(data[4:8])
        if identifier != PROGRAM_IDENTIFIER:
            raise ValueError(program_identifier_problem(identifier))
        fb = Flatbuffer(data)
        methods = {}
        for plan in fb.tables(fb.root(), 1):  # Program: version=0, execution_plan=1
            # ExecutionPlan: name=0, values=2, inputs=3, ..., operators=6, delegates=7; Operator: name=0, overload=1;
            # BackendDelegate: id=0
            operators = [(fb.string(op, 0) or "?") + (f".{fb.string(op, 1)}" if fb.string(op, 1) else "")
                         for op in fb.tables(plan, 6)]
            values = fb.tables(plan, 2)
            methods[fb.string(plan, 0)] = {"operators": operators,
                                           "delegates": [fb.string(d, 0) for d in fb.tables(plan, 7)],
                                           "inputs": [_tensor_value(fb, values, i) for i in fb.int32s(plan, 3) or ()]}
        return methods

    return mapped(path, read, "ExecuTorch program")


def _tensor_value(fb, values, index):
    """(sizes, scalar type code) of value `index` of a plan where it is a tensor, else None. EValue: val_type=0 (the
    union's type: 5 is Tensor), val=1; Tensor: scalar_type=0, storage_offset=1, sizes=2."""
    if not 0 <= index < len(values):
        raise ValueError(f"an input is value {index} of a plan of {len(values)} values")
    if fb.scalar(values[index], 0, "<B", 0) != 5:
        return None
    tensor = fb.table(values[index], 1)
    return tuple(fb.int32s(tensor, 2) or ()), fb.scalar(tensor, 0, "<b", 0)


def pte_inputs(path):
    """[Declared] of the forward method's inputs, as the runtime's method meta gives them once loaded; None where one
    is no tensor or of a type edgeorch does not feed (the board says which). ValueError as read_program."""
    inputs = _method(read_program(path), METHOD)["inputs"]
    if any(i is None or i[1] not in _DTYPES for i in inputs):
        return None
    return [Declared(_io_name("input", k, len(inputs)), dims, _DTYPES[code]) for k, (dims, code) in enumerate(inputs)]


def program_identifier_problem(identifier):
    """Why a file whose bytes 4-8 are `identifier` is not a program this runtime loads."""
    if identifier[:2] == b"ET" and identifier[2:].isdigit():
        return (f"it is an ExecuTorch program of format {identifier.decode()}, and this runtime reads "
                f"{PROGRAM_IDENTIFIER.decode()}: export it again with the ExecuTorch of edgeorch's recipe")
    return f"bytes 4-8 are {identifier!r}, not the .pte identifier {PROGRAM_IDENTIFIER.decode()}"


def _method(methods, method):
    """What read_program found of `method`; ValueError naming the methods there are where it has none."""
    if method not in methods:
        raise ValueError(f"it has no method {method!r} (its methods: {', '.join(map(str, methods)) or 'none'}); "
                         "edgeorch runs a module's forward")
    return methods[method]


def program_facts(methods, method):
    """What info() says of the program: the delegates of `method` and the kernels it runs outside them."""
    found = _method(methods, method)
    return {"delegates": sorted(set(found["delegates"])), "kernels": list(found["operators"])}


def etdump_events(data, skip_runs=0):
    """(op type, op name, ns) of each operator run in an ETDump's bytes, in the order they ended, leaving out the
    first `skip_runs` inferences (warm-up) and the load: delegates' operators by the names their backends give them
    (XNNPACK: "Convolution (NHWC, F32) IGEMM #1", typed without its " #1"), kernels by their operator. Times are the
    runtime's ticks, nanoseconds on Linux. ValueError for bytes that are not an ETDump."""
    base = 4 if bytes(data[8:12]) == ETDUMP_IDENTIFIER else 0  # the runtime writes it size-prefixed
    if bytes(data[base + 4:base + 8]) != ETDUMP_IDENTIFIER:
        raise ValueError(f"not an ETDump: no {ETDUMP_IDENTIFIER.decode()} identifier")
    fb = Flatbuffer(data, base)
    # ETDump: version=0, run_data=1; RunData: name=0, ..., events=3 (one per execute(); "Default" holds the load)
    runs = [r for r in fb.tables(fb.root(), 1) if fb.string(r, 0) == "Execute"][skip_runs:]
    events = []
    for run in runs:
        profiled = []
        for event in fb.tables(run, 3):
            profile = fb.table(event, 0)  # Event: profile_event=0, allocation_event=1, debug_event=2
            if profile is None:
                continue
            # ProfileEvent: name=0, chain_index=1, instruction_id=2, delegate_debug_id_int=3,
            # delegate_debug_id_str=4, delegate_debug_metadata=5, start_time=6, end_time=7
            profiled.append((fb.string(profile, 0), fb.scalar(profile, 2, "<i", -1), fb.scalar(profile, 3, "<i", -1),
                             fb.string(profile, 4),
                             fb.scalar(profile, 7, "<Q", 0) - fb.scalar(profile, 6, "<Q", 0)))
        events += run_events(profiled)
    return events


def run_events(profiled):
    """(op type, op name, ns) of one run's ETDump events (name, instruction, delegate int id, delegate str id, ns):
    each delegate's operators, qualified by the instruction that called the delegate where there are several; a
    delegate that recorded none as its call; each kernel outside a delegate by its operator and instruction."""
    delegated = {i for name, i, num, text, _ in profiled if name is None and (text is not None or num != -1)}
    calls = {i for name, i, *_ in profiled if name == "DELEGATE_CALL"}
    events = []
    for name, instruction, num, text, ns in profiled:
        if name is None and (text is not None or num != -1):
            op = text if text is not None else f"delegate operator {num}"
            where = f" (delegate at instruction {instruction})" if len(calls | delegated) > 1 else ""
            events.append((op.rsplit(" #", 1)[0], op + where, ns))
        elif name == "DELEGATE_CALL" and instruction not in delegated:
            events.append(("DELEGATE_CALL", f"delegate at instruction {instruction}", ns))
        elif name and name.startswith(_KERNEL):
            op = name[len(_KERNEL):]
            events.append((op, f"{op} (instruction {instruction})", ns))
    return events
