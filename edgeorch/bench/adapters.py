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

    def prepare(self, seed):
        rng = np.random.default_rng(seed)
        for d in self.interpreter.get_input_details():
            self.interpreter.set_tensor(d["index"], _random_input(tuple(d["shape"]), d["dtype"], rng))

    def infer(self):
        self.interpreter.invoke()


ADAPTERS = {cls.name: cls for cls in (TFLite,)}
