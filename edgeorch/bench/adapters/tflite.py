"""TensorFlow Lite (tflite-runtime) and its successor LiteRT (ai-edge-litert): the same .tflite models, on the CPU or
through an external delegate (the Edge TPU's libedgetpu)."""

import importlib
import os

import numpy as np

from ..signature import Declared
from .base import Adapter, FrameworkMissing, ModelLoadError, NotProfiled, OptionError, Rule, check_options, one_line

EDGETPU = "/usr/lib/aarch64-linux-gnu/libedgetpu.so.1"  # libedgetpu1-std's library on an arm64 board
_PATH_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-/")
HAILO = ("names HailoRT, which is no TFLite delegate: Hailo accelerators run .hef files compiled by Hailo's Dataflow "
         "Compiler, through HailoRT (hailo_platform, from Hailo's Developer Zone, not on PyPI), and edgeorch has no "
         "HailoRT adapter")
NO_LIBRARY = ("the Edge TPU's is libedgetpu1-std (or -max) from Coral's apt repository (packages.cloud.google.com/apt, "
              "coral-edgetpu-stable), with the accelerator plugged in (a PCIe one also needs gasket-dkms for "
              "/dev/apex_0); install it on the board (in Docker mode it is mounted from there), or name the library "
              "the board has")


def delegate_library(value):
    """Why `value` is not the path of a delegate library edgeorch can pass on (None when it is): absolute, of the
    characters library paths are made of, so that it reaches the board's shell and docker's --mount as it is."""
    if not value.startswith("/"):
        return f"must be the absolute path of the library on the board (e.g. {EDGETPU}), not a relative one"
    odd = sorted(set(value) - _PATH_CHARS)
    if odd:
        return (f"must be a path of letters, digits and ._+-/ only, and this one holds {', '.join(map(repr, odd))}: "
                "a library's path needs no other, and it reaches the board's shell and docker's --mount")
    if value.endswith("/"):
        return "names a directory, not a library file"
    if os.path.basename(value).startswith("libhailort"):
        return HAILO
    return None


class TFLite(Adapter):
    """TensorFlow Lite through tflite-runtime; XNNPACK (its default CPU delegate) can be switched off, and an external
    delegate (delegate=PATH of its library, e.g. the Edge TPU's) given the graph first."""

    name = "tflite"
    package = "tflite_runtime"
    OPTIONS = {"xnnpack": ("on", "off"),
               "delegate": Rule("<absolute path of an external delegate's library on the board>", delegate_library)}
    # tflite_runtime 2.14's Interpreter (as tf.lite's) has no profiler: its C++ wrapper binds invoke, tensors
    # and node lists only, and TFLite's op profiler is installed by the C++ tools alone.
    NOT_PROFILED = ("the TFLite Python interpreter exposes no per-operator timings; "
                    "TFLite's benchmark_model --enable_op_profiling=true does")

    def __init__(self, options=None):
        self.options = check_options(options, **self.OPTIONS)
        try:
            self._package = importlib.import_module(self.package)
            self._interp_mod = importlib.import_module(self.package + ".interpreter")
        except ImportError as e:
            raise FrameworkMissing(f"{self.package} is not installed") from e
        self.interpreter = None
        # loaded here, before the model: a missing or broken library is a bad option, not a model that fails to load
        self.delegate = self._load_delegate(self.options.get("delegate"))

    def _load_delegate(self, path):
        """The external delegate in the library at `path` (load_delegate, as Coral's docs do), or None without one;
        OptionError, with the fix, where the board has no such library or it does not load."""
        if path is None:
            return None
        if not os.path.isfile(path):
            raise OptionError(f"no delegate library at {path} on this board: {NO_LIBRARY}")
        try:
            return self._interp_mod.load_delegate(path)
        except AttributeError as e:  # ctypes: the library has no tflite_plugin_create_delegate
            raise OptionError(f"{path} is not an external TFLite delegate: {one_line(e)}; name a library that "
                              "implements TFLite's external delegate interface (libedgetpu.so.1 does)") from e
        except (ValueError, RuntimeError, OSError) as e:  # it did not load, or it refused to create its delegate
            raise OptionError(f"the delegate library {path} does not load: {one_line(e)} (check that its "
                              "accelerator is plugged in and that this login may open its device)") from e

    def info(self, threads):
        return {
            "name": self.name,
            "runtime": self.package,
            "version": getattr(self._package, "__version__", None),
            "threads": threads,
            # With xnnpack=on the runtime decides: its aarch64/x86_64 builds apply XNNPACK to float
            # models, the armv7 build of tflite-runtime does not.
            "options": {"xnnpack": self.options.get("xnnpack", "on"), **self._delegate_info()},
        }

    def _delegate_info(self):
        """The delegate as given and the file its library is (where the given path is a link, as libedgetpu's is)."""
        if self.delegate is None:
            return {}
        return {"delegate": self.options["delegate"], "delegate_file": os.path.realpath(self.options["delegate"])}

    def load(self, path, threads):
        kwargs = {"experimental_delegates": [self.delegate]} if self.delegate is not None else {}
        if self.options.get("xnnpack") == "off":
            kwargs["experimental_op_resolver_type"] = \
                self._interp_mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            self.interpreter = self._interp_mod.Interpreter(model_path=path, num_threads=threads or None, **kwargs)
        except (ValueError, RuntimeError) as e:
            raise ModelLoadError(one_line(e, 10_000)) from e

    def inputs(self):
        def dims(d):  # shape_signature has -1 where the model leaves a dimension to run time
            signature = d.get("shape_signature")
            return tuple(None if int(x) < 0 else int(x) for x in (d["shape"] if signature is None else signature))
        return [Declared(d["name"], dims(d), np.dtype(d["dtype"]).name, bool(d["quantization"][0]))
                for d in self.interpreter.get_input_details()]

    def reshape(self, shapes):
        try:
            for d in self.interpreter.get_input_details():
                if list(d["shape"]) != list(shapes[d["name"]]):
                    self.interpreter.resize_tensor_input(d["index"], list(shapes[d["name"]]), strict=True)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise ModelLoadError(one_line(e, 10_000)) from e

    def describe(self):
        def tensors(details):
            return [{"name": d["name"], "shape": [int(x) for x in d["shape"]],
                     "dtype": np.dtype(d["dtype"]).name,
                     "quantization": [float(q) for q in d.get("quantization", (0.0, 0))]}
                    for d in details]
        return {"inputs": tensors(self.interpreter.get_input_details()),
                "outputs": tensors(self.interpreter.get_output_details())}

    def convert(self, name, array):
        d = next(d for d in self.interpreter.get_input_details() if d["name"] == name)
        if array.dtype.kind == "f" and d["quantization"][0]:
            # a float reference input into a quantized model
            (scale, zero), info = d["quantization"], np.iinfo(d["dtype"])
            return np.clip(np.round(array / scale) + zero, info.min, info.max).astype(d["dtype"])
        return array

    def feed(self, arrays):
        for d, data in zip(self.interpreter.get_input_details(), arrays):
            self.interpreter.set_tensor(d["index"], data)

    def infer(self):
        self.interpreter.invoke()

    def profile(self, runs):
        raise NotProfiled(self.NOT_PROFILED)

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
    # ai_edge_litert 2.3: neither its Interpreter (experimental_force_delegate_node_profiling only says which nodes
    # a profiler would time, and none can be installed from Python) nor its CompiledModel returns operator times.
    NOT_PROFILED = ("the LiteRT Python interpreter exposes no per-operator timings; "
                    "LiteRT's benchmark_model --enable_op_profiling=true does")
