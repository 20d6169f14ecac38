"""PyTorch: a TorchScript module (.pt) or an ExportedProgram (.pt2, torch.export)."""

import importlib
import json
import re

from ..signature import EXTRA_FILE, Declared, declared_from_json
from .base import (
    Adapter,
    FrameworkMissing,
    ModelLoadError,
    OptionError,
    check_options,
    mean_per_op,
    one_line,
    profile_runs,
)

# Warm-up inferences before a profile: TorchScript's profiling executor records shapes on the first runs and
# optimises the graph after them, which is not what the timed runs execute.
PROFILE_WARMUP = 3
# key_averages() rows the profiler makes about itself, not the model
_PROFILER_ROWS = ("ProfilerStep", "[memory]", "[OutOfMemory]", "Activity Buffer Request", "PyTorch Profiler")


class PyTorch(Adapter):
    """PyTorch on CUDA where the board has a GPU, else on the CPU: a TorchScript module (.pt) run by the
    TorchScript interpreter, or an ExportedProgram (.pt2, torch.export) run eagerly, op by op."""

    name = "pytorch"
    OPTIONS = {"device": ("cpu", "cuda"), "precision": ("fp32", "fp16")}

    def __init__(self, options=None):
        try:
            self.torch = importlib.import_module("torch")
        except ImportError as e:
            raise FrameworkMissing("torch is not installed") from e
        cuda = self.torch.cuda.is_available()
        self.options = {"device": "cuda" if cuda else "cpu", "precision": "fp32",
                        **check_options(options, **self.OPTIONS)}
        if self.options["device"] == "cuda" and not cuda:
            raise OptionError("device=cuda: this torch build or board has no CUDA device")
        if self.options["precision"] == "fp16" and self.options["device"] != "cuda":
            raise OptionError("precision=fp16 needs device=cuda: PyTorch's CPU kernels for half are slow emulation")
        self.module = None

    def info(self, threads):
        torch = self.torch
        blas = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
        return {"name": self.name, "runtime": "torch", "version": torch.__version__, "threads": threads,
                "options": {**self.options, "executor": getattr(self, "executor", "not loaded"),
                            "intra_op_threads": torch.get_num_threads(),
                            "blas": blas and blas.group(1), "mkldnn": torch.backends.mkldnn.is_available(),
                            "cuda": torch.version.cuda if self.options["device"] == "cuda" else None}}

    def load(self, path, threads):
        torch = self.torch
        if threads:
            torch.set_num_threads(threads)
        extra = {EXTRA_FILE: ""}
        self.executor = "eager" if str(path).endswith(".pt2") else "torchscript"
        try:
            if self.executor == "eager":
                program = torch.export.load(path, extra_files=extra)
                self.module = program.module().to(self.options["device"])
            else:
                program = None
                self.module = torch.jit.load(path, map_location=self.options["device"], _extra_files=extra).eval()
        except (RuntimeError, ValueError, KeyError) as e:
            raise ModelLoadError(one_line(e)) from e
        # edgeorch's exports say their inputs in this extra file; otherwise an ExportedProgram's graph has them,
        # and a TorchScript module only its arguments' names (no shapes: --input-shape must give them).
        signature = json.loads(extra[EXTRA_FILE]) if extra[EXTRA_FILE] else {}
        self.output_signature = signature.get("outputs", [])
        if signature.get("inputs"):
            self.declared = declared_from_json(signature["inputs"])
        elif program is not None:
            self.declared = self._program_inputs(program)
        else:
            self.declared = self._script_inputs()
        if self.options["precision"] == "fp16":
            self.module = self.module.half()

    @staticmethod
    def _program_inputs(program):
        users = set(program.graph_signature.user_inputs)
        declared = []
        for node in program.graph.nodes:
            value = node.meta.get("val") if node.op == "placeholder" and node.name in users else None
            if value is not None and hasattr(value, "shape"):
                dims = tuple(d if isinstance(d, int) else str(d) for d in value.shape)  # SymInt: dynamic
                declared.append(Declared(node.name, dims, str(value.dtype).replace("torch.", "")))
        return declared

    def _script_inputs(self):
        arguments = self.module.forward.schema.arguments[1:]  # after self
        other = [a for a in arguments if str(a.type) != "Tensor"]
        if other:
            raise ModelLoadError(f"forward's argument {other[0].name} is a {other[0].type}; edgeorch feeds tensors")
        # dtype None: float32, unless an --input file says otherwise
        return [Declared(a.name, None, None) for a in arguments]

    def inputs(self):
        return self.declared

    def describe(self):
        return {"outputs": self.output_signature}

    def feed(self, arrays):
        half = self.options["precision"] == "fp16"
        self.tensors = [self.torch.from_numpy(a).to(self.options["device"]) for a in arrays]
        self.tensors = [t.half() if half and t.is_floating_point() else t for t in self.tensors]

    def infer(self):
        with self.torch.inference_mode():
            self.last = self.module(*self.tensors)
        if self.options["device"] == "cuda":
            # CUDA kernels run asynchronously: without this the timer would measure their launch only.
            self.torch.cuda.synchronize()

    def profile(self, runs):
        """Per operator (aten::conv2d, aten::addmm...: TorchScript and eager runs have no node names at this level,
        so the name is the key too), from torch.profiler over `runs` inferences after PROFILE_WARMUP untimed ones.
        On the CPU each op's time is its self CPU time: time spent in its children (aten::conv2d calls
        aten::convolution, which calls the kernel) is theirs, so nothing is counted twice. On CUDA it is the GPU
        time of the kernels the op launched itself (the CPU side of a launch is left out), and ops that launched
        none are left out. The TorchScript interpreter's own work shows as the row `forward`."""
        runs = profile_runs(runs)
        torch = self.torch
        for _ in range(PROFILE_WARMUP):
            self.infer()
        cuda = self.options["device"] == "cuda"
        activities = [torch.profiler.ProfilerActivity.CPU]
        if cuda:
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as profiler:
            for _ in range(runs):
                self.infer()
        return mean_per_op(op_events(profiler.key_averages(), cuda), runs)

    def outputs(self):
        last = self.last if isinstance(self.last, (tuple, list)) else [self.last]
        return [t.detach().float().cpu().numpy() if t.is_floating_point() else t.detach().cpu().numpy() for t in last]


def op_events(averages, cuda=False):
    """(key, key, ns totalled over the runs) of each row of torch.profiler's key_averages(), first seen first:
    self CPU time (microseconds in the profiler), or on CUDA the self device time of the CPU-side op rows."""
    events = []
    for row in averages:
        key = str(row.key)
        if key.startswith(_PROFILER_ROWS):
            continue
        if cuda:
            if "CPU" not in str(getattr(row, "device_type", "CPU")):
                continue  # a kernel's own row: its time is its launching op's self device time already
            us = getattr(row, "self_device_time_total", None)
            if us is None:  # torch < 2.4
                us = getattr(row, "self_cuda_time_total", 0)
            if not us:
                continue
        else:
            us = row.self_cpu_time_total
        events.append((key, key, float(us) * 1000.0))
    return events
