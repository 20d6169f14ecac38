"""ONNX Runtime on an .onnx model."""

import importlib

from ..signature import Declared, InputError, onnx_inputs
from .base import Adapter, FrameworkMissing, ModelLoadError, check_options, one_line

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

    def load(self, path, threads):
        options = self.ort.SessionOptions()
        options.intra_op_num_threads = threads
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
