"""Framework adapters: load a model, make an input from the model's own signature, run it.

Adding a framework means adding one class here (and one image recipe under images/).
"""

import importlib

import numpy as np


class ModelLoadError(Exception):
    """The model file could not be read by the framework."""


class FrameworkMissing(Exception):
    """The framework is not importable in this environment."""


def _random_input(shape, dtype, rng):
    """A seeded input of the given shape and dtype; integers span the dtype's range."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    raise ModelLoadError(f"input dtype {dtype} is not supported")


def _given(array, shape, dtype):
    """A caller's input (the agreement check's reference), which must fit the model exactly."""
    if tuple(array.shape) != tuple(int(x) for x in shape) or array.dtype != np.dtype(dtype):
        raise ModelLoadError(f"the given input is {array.dtype}{list(array.shape)}, the model takes "
                             f"{np.dtype(dtype)}{[int(x) for x in shape]}")
    return array


class TFLite:
    """TensorFlow Lite through tflite-runtime (or LiteRT, its successor, if that is what is installed)."""

    name = "tflite"
    _runtimes = (("tflite_runtime", "tflite_runtime.interpreter"),
                 ("ai_edge_litert", "ai_edge_litert.interpreter"))

    def __init__(self):
        for package, module in self._runtimes:
            try:
                self._interp_mod = importlib.import_module(module)
                self._package = importlib.import_module(package)
                break
            except ImportError:
                continue
        else:
            raise FrameworkMissing("neither tflite_runtime nor ai_edge_litert is installed")
        self.interpreter = None

    def info(self, threads):
        return {
            "name": self.name,
            "runtime": self._package.__name__,
            "version": getattr(self._package, "__version__", None),
            "threads": threads,
            # The runtime decides: its aarch64/x86_64 builds apply XNNPACK to float models,
            # its armv7 build does not. Explicit on/off is future work (issue: all frameworks).
            "options": {"delegates": "runtime default"},
        }

    def load(self, path, threads):
        try:
            self.interpreter = self._interp_mod.Interpreter(model_path=path, num_threads=threads or None)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelLoadError(" ".join(str(e).split()) or repr(e)) from e

    def describe(self):
        def tensors(details):
            return [{"name": d["name"], "shape": [int(x) for x in d["shape"]],
                     "dtype": np.dtype(d["dtype"]).name,
                     "quantization": [float(q) for q in d.get("quantization", (0.0, 0))]}
                    for d in details]
        return {"inputs": tensors(self.interpreter.get_input_details()),
                "outputs": tensors(self.interpreter.get_output_details())}

    def prepare(self, seed, first=None):
        rng = np.random.default_rng(seed)
        for i, d in enumerate(self.interpreter.get_input_details()):
            data = _given(first, d["shape"], d["dtype"]) if i == 0 and first is not None else None
            self.interpreter.set_tensor(d["index"], data if data is not None else
                                        _random_input(tuple(d["shape"]), d["dtype"], rng))

    def infer(self):
        self.interpreter.invoke()

    def outputs(self):
        return [self.interpreter.get_tensor(d["index"]) for d in self.interpreter.get_output_details()]


class OnnxRuntime:
    """ONNX Runtime: the CUDA execution provider where the wheel and board have one, else CPU."""

    name = "onnxruntime"
    _dtypes = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
               "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int32)": "int32",
               "tensor(int64)": "int64", "tensor(bool)": "bool"}

    def __init__(self):
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
            raise ModelLoadError(" ".join(str(e).split())[:500] or repr(e)) from e

    def _inputs(self):
        for i in self.session.get_inputs():
            if i.type not in self._dtypes:
                raise ModelLoadError(f"input {i.name} has type {i.type}, which edgeorch cannot feed")
            # symbolic dimensions (batch, sequence) are fed as 1
            yield i.name, tuple(d if isinstance(d, int) and d > 0 else 1 for d in i.shape), self._dtypes[i.type]

    def describe(self):
        return {"inputs": [{"name": n, "shape": list(s), "dtype": d} for n, s, d in self._inputs()],
                "outputs": [{"name": o.name, "shape": [d if isinstance(d, int) else str(d) for d in o.shape],
                             "dtype": self._dtypes.get(o.type, o.type)} for o in self.session.get_outputs()]}

    def prepare(self, seed, first=None):
        rng = np.random.default_rng(seed)
        self.feeds = {n: _given(first, s, d) if i == 0 and first is not None else _random_input(s, d, rng)
                      for i, (n, s, d) in enumerate(self._inputs())}

    def infer(self):
        self.last = self.session.run(None, self.feeds)

    def outputs(self):
        return self.last


ADAPTERS = {cls.name: cls for cls in (TFLite, OnnxRuntime)}
