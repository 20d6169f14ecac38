"""Framework adapters, one module each, found through a lazy registry: naming a framework imports its module
only, so a board without TensorFlow can still run TFLite and nothing imports a framework it does not run.

Adding a framework means one module here, one line in ADAPTERS, and one image recipe under images/.
"""

import importlib

from .base import FrameworkMissing, ModelLoadError, NotProfiled, OptionError  # noqa: F401  # what the entrypoint catches

# framework name -> (module of this package, class)
ADAPTERS = {
    "tflite": ("tflite", "TFLite"),
    "litert": ("tflite", "LiteRT"),
    "onnxruntime": ("onnxruntime", "OnnxRuntime"),
    "pytorch": ("pytorch", "PyTorch"),
    "tensorflow": ("tensorflow", "TensorFlow"),
    "opencv": ("opencv", "OpenCV"),
    "caffe": ("caffe", "Caffe"),
    "tensorrt": ("tensorrt", "TensorRT"),
}


def names():
    """The frameworks this bundle has an adapter for."""
    return sorted(ADAPTERS)


def get(name):
    """The adapter class of framework `name`, importing its module now; KeyError for an unknown name."""
    module, cls = ADAPTERS[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)
