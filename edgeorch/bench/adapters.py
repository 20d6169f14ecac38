"""Framework adapters: load a model, make an input from the model's own signature, run it.

Adding a framework means adding one class here (and one image recipe under images/).
"""

import importlib
import json
import os
import re

import numpy as np

from .protowire import fields


class ModelLoadError(Exception):
    """The model file could not be read by the framework."""


class FrameworkMissing(Exception):
    """The framework is not importable in this environment."""


class OptionError(Exception):
    """An --option the adapter does not know, or a value it does not take."""


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


def _options(given, **allowed):
    """The adapter options (--option KEY=VALUE) after checking each against what the adapter knows."""
    given = dict(given or {})
    for key, value in given.items():
        if key not in allowed:
            raise OptionError(f"unknown option {key!r}; this framework knows {sorted(allowed) or 'none'}")
        if value not in allowed[key]:
            raise OptionError(f"option {key}={value!r} is not one of {list(allowed[key])}")
    return given


def _arrays(inputs, seed, first=None):
    """One array per (shape, dtype) of `inputs`: seeded random data, or for the first the caller's `first`
    (the agreement check's reference input), which must fit the model exactly."""
    rng = np.random.default_rng(seed)
    arrays = [_random_input(tuple(int(x) for x in shape), dtype, rng) for shape, dtype in inputs]
    if first is not None and inputs:
        shape, dtype = tuple(int(x) for x in inputs[0][0]), np.dtype(inputs[0][1])
        if tuple(first.shape) != shape or first.dtype != dtype:
            raise ModelLoadError(f"the given input is {first.dtype}{list(first.shape)}, the model takes "
                                 f"{dtype}{list(shape)}")
        arrays[0] = first
    return arrays


class TFLite:
    """TensorFlow Lite through tflite-runtime; XNNPACK (its default CPU delegate) can be switched off."""

    name = "tflite"
    package = "tflite_runtime"

    def __init__(self, options=None):
        self.options = _options(options, xnnpack=("on", "off"))
        try:
            self._package = importlib.import_module(self.package)
            self._interp_mod = importlib.import_module(self.package + ".interpreter")
        except ImportError as e:
            raise FrameworkMissing(f"{self.package} is not installed") from e
        self.interpreter = None

    def info(self, threads):
        return {
            "name": self.name,
            "runtime": self.package,
            "version": getattr(self._package, "__version__", None),
            "threads": threads,
            # With xnnpack=on the runtime decides: its aarch64/x86_64 builds apply XNNPACK to float
            # models, the armv7 build of tflite-runtime does not.
            "options": {"xnnpack": self.options.get("xnnpack", "on")},
        }

    def load(self, path, threads):
        kwargs = {}
        if self.options.get("xnnpack") == "off":
            kwargs["experimental_op_resolver_type"] = \
                self._interp_mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            self.interpreter = self._interp_mod.Interpreter(model_path=path, num_threads=threads or None, **kwargs)
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
        details = self.interpreter.get_input_details()
        if first is not None and details and first.dtype.kind == "f" and details[0]["quantization"][0]:
            (scale, zero), info = details[0]["quantization"], np.iinfo(details[0]["dtype"])
            # a float reference input into a quantized model
            first = np.clip(np.round(first / scale) + zero, info.min, info.max).astype(details[0]["dtype"])
        for d, data in zip(details, _arrays([(d["shape"], d["dtype"]) for d in details], seed, first)):
            self.interpreter.set_tensor(d["index"], data)

    def infer(self):
        self.interpreter.invoke()

    def outputs(self):
        """The outputs, dequantized where the model is quantized (they are compared with float references)."""
        out = []
        for d in self.interpreter.get_output_details():
            value, (scale, zero) = self.interpreter.get_tensor(d["index"]), d["quantization"]
            out.append((value.astype(np.float32) - zero) * scale if scale else value)
        return out


class LiteRT(TFLite):
    """LiteRT (ai-edge-litert), TensorFlow Lite's successor, on the same .tflite models."""

    name = "litert"
    package = "ai_edge_litert"


class OnnxRuntime:
    """ONNX Runtime: the CUDA execution provider where the wheel and board have one, else CPU."""

    name = "onnxruntime"
    _dtypes = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
               "tensor(int8)": "int8", "tensor(uint8)": "uint8", "tensor(int32)": "int32",
               "tensor(int64)": "int64", "tensor(bool)": "bool"}

    def __init__(self, options=None):
        self.options = _options(options)
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
        inputs = list(self._inputs())
        self.feeds = dict(zip((n for n, _, _ in inputs), _arrays([(s, d) for _, s, d in inputs], seed, first)))

    def infer(self):
        self.last = self.session.run(None, self.feeds)

    def outputs(self):
        return self.last


class PyTorch:
    """PyTorch on CUDA where the board has a GPU, else on the CPU: a TorchScript module (.pt) run by the
    TorchScript interpreter, or an ExportedProgram (.pt2, torch.export) run eagerly, op by op."""

    name = "pytorch"

    def __init__(self, options=None):
        try:
            self.torch = importlib.import_module("torch")
        except ImportError as e:
            raise FrameworkMissing("torch is not installed") from e
        cuda = self.torch.cuda.is_available()
        self.options = {"device": "cuda" if cuda else "cpu", "precision": "fp32",
                        **_options(options, device=("cpu", "cuda"), precision=("fp32", "fp16"))}
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
        extra = {"edgeorch.json": ""}
        self.executor = "eager" if str(path).endswith(".pt2") else "torchscript"
        try:
            if self.executor == "eager":
                program = torch.export.load(path, extra_files=extra)
                self.module = program.module().to(self.options["device"])
            else:
                self.module = torch.jit.load(path, map_location=self.options["device"], _extra_files=extra).eval()
        except (RuntimeError, ValueError, KeyError) as e:
            raise ModelLoadError(" ".join(str(e).split())[:500] or repr(e)) from e
        if not extra["edgeorch.json"]:
            # Neither format keeps input shapes one can read back; edgeorch's exports carry them in this extra file.
            raise ModelLoadError("the file does not say its input shapes: save it with extra files {'edgeorch.json': "
                                 "json.dumps({'inputs': [{'name': 'input', 'shape': [1, 3, 224, 224], "
                                 "'dtype': 'float32'}]})} (torch.jit.save's _extra_files, torch.export.save's "
                                 "extra_files)")
        self.signature = json.loads(extra["edgeorch.json"])
        if self.options["precision"] == "fp16":
            self.module = self.module.half()

    def describe(self):
        return {"inputs": self.signature["inputs"], "outputs": self.signature.get("outputs", [])}

    def prepare(self, seed, first=None):
        arrays = _arrays([(i["shape"], i["dtype"]) for i in self.signature["inputs"]], seed, first)
        half = self.options["precision"] == "fp16"
        self.inputs = [self.torch.from_numpy(a).to(self.options["device"]) for a in arrays]
        self.inputs = [t.half() if half and t.is_floating_point() else t for t in self.inputs]

    def infer(self):
        with self.torch.inference_mode():
            self.last = self.module(*self.inputs)
        if self.options["device"] == "cuda":
            # CUDA kernels run asynchronously: without this the timer would measure their launch only.
            self.torch.cuda.synchronize()

    def outputs(self):
        last = self.last if isinstance(self.last, (tuple, list)) else [self.last]
        return [t.detach().float().cpu().numpy() if t.is_floating_point() else t.detach().cpu().numpy() for t in last]


class TensorFlow:
    """Full TensorFlow running a frozen GraphDef (.pb) as a graph function on the CPU, without Keras."""

    name = "tensorflow"

    def __init__(self, options=None):
        self.options = _options(options)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # read at import: no page of C++ info lines
        try:
            self.tf = importlib.import_module("tensorflow")
        except ImportError as e:
            raise FrameworkMissing("tensorflow is not installed") from e

    def info(self, threads):
        tf = self.tf
        return {"name": self.name, "runtime": "tensorflow", "version": tf.__version__, "threads": threads,
                "options": {"device": "cpu", "graph": "frozen GraphDef", "intra_op_threads":
                            tf.config.threading.get_intra_op_parallelism_threads() or "default",
                            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")}}

    def load(self, path, threads):
        tf = self.tf
        if threads:  # before the first op runs, or TensorFlow refuses
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        try:
            graph = tf.compat.v1.GraphDef.FromString(open(path, "rb").read())
        except Exception as e:  # protobuf's DecodeError
            raise ModelLoadError(f"not a TensorFlow GraphDef: {e}") from e
        consumed = {i.split(":")[0].lstrip("^") for node in graph.node for i in node.input}
        self.inputs = [(n.name, tuple(max(d.size, 1) for d in n.attr["shape"].shape.dim),
                        tf.dtypes.as_dtype(n.attr["dtype"].type).name) for n in graph.node if n.op == "Placeholder"]
        outputs = [n.name for n in graph.node
                   if n.name not in consumed and n.op not in ("Const", "NoOp", "Placeholder")]
        if not self.inputs or not outputs:
            raise ModelLoadError(f"the graph has {len(self.inputs)} placeholders and {len(outputs)} outputs")
        try:
            imported = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph, name=""), [])
            self.run = imported.prune([f"{n}:0" for n, _, _ in self.inputs], [f"{n}:0" for n in outputs])
        except (ValueError, tf.errors.OpError) as e:
            raise ModelLoadError(" ".join(str(e).split())[:500]) from e
        self.output_names = outputs

    def describe(self):
        return {"inputs": [{"name": n, "shape": list(s), "dtype": d} for n, s, d in self.inputs],
                "outputs": [{"name": n} for n in self.output_names]}

    def prepare(self, seed, first=None):
        self.feeds = [self.tf.constant(a) for a in _arrays([(s, d) for _, s, d in self.inputs], seed, first)]

    def infer(self):
        self.last = self.run(*self.feeds)

    def outputs(self):
        return [t.numpy() for t in (self.last if isinstance(self.last, (list, tuple)) else [self.last])]


class OpenCV:
    """OpenCV's DNN module (cv2.dnn) on an ONNX model, with its default backend on the CPU."""

    name = "opencv"

    def __init__(self, options=None):
        self.options = _options(options)
        try:
            self.cv2 = importlib.import_module("cv2")
        except ImportError as e:
            raise FrameworkMissing("cv2 (opencv-python-headless) is not installed") from e

    def info(self, threads):
        build = self.cv2.getBuildInformation()
        parallel = [line.split(":", 1)[1].strip() for line in build.splitlines()
                    if line.strip().startswith("Parallel framework:")]
        return {"name": self.name, "runtime": "cv2.dnn", "version": _distribution_version(
                    ("opencv-python-headless", "opencv-python", "opencv-contrib-python"), self.cv2.__version__),
                "threads": threads,
                "options": {"backend": "opencv", "target": "cpu", "parallel": parallel[0] if parallel else None,
                            "threads_used": self.cv2.getNumThreads(), "build": self.cv2.__version__}}

    def load(self, path, threads):
        if threads:
            self.cv2.setNumThreads(threads)
        try:
            self.inputs = onnx_inputs(path)
            self.net = self.cv2.dnn.readNetFromONNX(path)
        except (self.cv2.error, ValueError) as e:
            raise ModelLoadError(" ".join(str(e).split())[:500]) from e
        self.net.setPreferableBackend(self.cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(self.cv2.dnn.DNN_TARGET_CPU)

    def describe(self):
        return {"inputs": [{"name": n, "shape": list(s), "dtype": d} for n, s, d in self.inputs],
                "outputs": [{"name": n} for n in self.net.getUnconnectedOutLayersNames()]}

    def prepare(self, seed, first=None):
        for (name, _, _), data in zip(self.inputs, _arrays([(s, d) for _, s, d in self.inputs], seed, first)):
            self.net.setInput(data, name)

    def infer(self):
        self.last = self.net.forward(self.net.getUnconnectedOutLayersNames())

    def outputs(self):
        return list(self.last)


def _distribution_version(names, fallback):
    """The version of the first installed distribution of `names` (the wheel's, e.g. 4.11.0.86), else `fallback`."""
    from importlib import metadata

    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return fallback


_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64"}


def onnx_inputs(path):
    """[(name, shape, dtype)] of an ONNX model's graph inputs, read from the file without the onnx package.

    cv2.dnn does not say what its network takes; symbolic dimensions are fed as 1.
    """
    def sub(message, number):  # the message fields `number` of a message
        return [v for n, w, v, _, _ in fields(message) if n == number and w == 2]

    def ints(message, number):
        return [v for n, w, v, _, _ in fields(message) if n == number and w == 0]

    with open(path, "rb") as f:
        data = f.read()
    try:
        graph = sub(data, 7)  # ModelProto.graph
        if not graph:
            raise ValueError("it has no graph")
        # TensorProto.name of the initializers: old exports list the weights among the inputs
        weights = {bytes(name) for tensor in sub(graph[0], 5) for name in sub(tensor, 8)}
        inputs = []
        for info in sub(graph[0], 11):  # GraphProto.input: ValueInfoProto name, type
            name = b"".join(bytes(v) for v in sub(info, 1))
            if name in weights:
                continue
            tensor = [t for kind in sub(info, 2) for t in sub(kind, 1)]  # TypeProto.tensor_type
            dtype = next((_ONNX_DTYPES.get(v) for t in tensor for v in ints(t, 1)), None)  # elem_type
            shape = tuple(next(iter(ints(dim, 1)), 0) or 1 for t in tensor for s in sub(t, 2) for dim in sub(s, 1))
            if dtype is None:
                raise ValueError(f"input {name.decode()} has a type edgeorch cannot feed")
            inputs.append((name.decode(), shape, dtype))
    except ValueError as e:
        raise ValueError(f"not an ONNX file: {e}") from e
    return inputs


def registry():
    """Framework name -> adapter class."""
    # adapters in modules of their own import this one's helpers
    from .caffe_adapter import Caffe
    from .tensorrt_adapter import TensorRT

    return {cls.name: cls for cls in (TFLite, LiteRT, OnnxRuntime, PyTorch, TensorFlow, OpenCV, Caffe, TensorRT)}
