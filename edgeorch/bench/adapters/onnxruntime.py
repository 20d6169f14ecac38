"""ONNX Runtime on an .onnx model."""

import importlib
import json
import os
import shutil
import tempfile

from ..signature import Declared, InputError, onnx_inputs
from .base import Adapter, FrameworkMissing, ModelLoadError, check_options, mean_per_op, one_line, profile_runs

_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
           "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int16)": "int16", "tensor(int32)": "int32",
           "tensor(int64)": "int64", "tensor(bool)": "bool"}


class OnnxRuntime(Adapter):
    """ONNX Runtime: the CUDA execution provider where the wheel and board have one, else CPU."""

    name = "onnxruntime"

    def __init__(self, options=None):
        self.options = check_options(options)
        try:
            self.ort = importlib.import_module("onnxruntime")
        except ImportError as e:
            raise FrameworkMissing("onnxruntime is not installed") from e
        available = self.ort.get_available_providers()
        self.providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.session = None

    def info(self, threads):
        return {"name": self.name, "runtime": "onnxruntime", "version": self.ort.__version__,
                "threads": threads, "options": {"providers": self.providers, "graph_optimization": "all"}}

    def _session_options(self, threads):
        options = self.ort.SessionOptions()
        options.intra_op_num_threads = threads
        return options

    def load(self, path, threads):
        self.path, self.threads = str(path), threads
        options = self._session_options(threads)
        try:
            self.session = self.ort.InferenceSession(path, options, providers=self.providers)
        except Exception as e:  # ORT raises its own pybind exception types for bad models
            raise ModelLoadError(one_line(e)) from e
        try:
            # the file's own declaration, as the host read it before the run: the same names, dims and refusals
            self.declared = onnx_inputs(path)
        except InputError:
            raise
        except ValueError:  # not readable here, but ONNX Runtime read it: its own view of the inputs
            self.declared = [Declared(i.name, tuple(d if isinstance(d, str) or isinstance(d, int) and d > 0 else None
                                                    for d in i.shape),
                                      _DTYPES.get(i.type)) for i in self.session.get_inputs()]

    def inputs(self):
        return self.declared

    def describe(self):
        return {"outputs": [{"name": o.name, "shape": [d if isinstance(d, int) else str(d) for d in o.shape],
                             "dtype": _DTYPES.get(o.type, o.type)} for o in self.session.get_outputs()]}

    def feed(self, arrays):
        self.feeds = {d.name: a for d, a in zip(self.declared, arrays)}

    def infer(self):
        self.last = self.session.run(None, self.feeds)

    def outputs(self):
        return self.last

    def profile(self, runs):
        """Per node, over `runs` inferences of a second session with ONNX Runtime's profiler on (a session profiles
        from its creation to end_profiling(), so the timed one is left as it is): the same model, threads and
        providers, fed the same inputs, after one warm-up run whose nodes are left out. The nodes are those of the
        optimised graph (fused ones under the fused node's name: Conv+Relu is one Conv); each time is the host's
        wall time of the node's kernel, to the microsecond, which on the CUDA provider is its launch, not the GPU's
        work."""
        runs = profile_runs(runs)
        directory = tempfile.mkdtemp(prefix="edgeorch-ort-profile-")
        try:
            options = self._session_options(self.threads)
            options.enable_profiling = True
            options.profile_file_prefix = os.path.join(directory, "profile")
            session = self.ort.InferenceSession(self.path, options, providers=self.providers)
            for _ in range(runs + 1):
                session.run(None, self.feeds)
            with open(session.end_profiling()) as f:
                trace = json.load(f)
            del session
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return mean_per_op(node_events(trace, skip_runs=1), runs)


def node_events(trace, skip_runs=0):
    """(op type, node name, ns) of each node run in an ONNX Runtime profile (Chrome trace events: a list, or
    {"traceEvents": [...]}), in the order they started, leaving out the nodes of the first `skip_runs` runs."""
    events = trace.get("traceEvents", []) if isinstance(trace, dict) else trace
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])
    start = runs[skip_runs - 1]["ts"] + runs[skip_runs - 1]["dur"] if skip_runs and len(runs) >= skip_runs else None
    suffix = "_kernel_time"
    nodes = sorted((e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith(suffix)
                    and (start is None or e["ts"] >= start)), key=lambda e: e["ts"])
    return [(e.get("args", {}).get("op_name", "?"), e["name"][:-len(suffix)], float(e["dur"]) * 1000.0)
            for e in nodes]
