"""OpenCV's DNN module (cv2.dnn) on an .onnx model."""

import importlib

import numpy as np

from ..signature import onnx_inputs
from .base import Adapter, FrameworkMissing, ModelLoadError, check_options, distribution_version, one_line


class OpenCV(Adapter):
    """OpenCV's DNN module (cv2.dnn) on an ONNX model, with its default backend on the CPU."""

    name = "opencv"

    def __init__(self, options=None):
        self.options = check_options(options)
        try:
            self.cv2 = importlib.import_module("cv2")
        except ImportError as e:
            raise FrameworkMissing("cv2 (opencv-python-headless) is not installed") from e

    def info(self, threads):
        build = self.cv2.getBuildInformation()
        parallel = [line.split(":", 1)[1].strip() for line in build.splitlines()
                    if line.strip().startswith("Parallel framework:")]
        return {"name": self.name, "runtime": "cv2.dnn", "version": distribution_version(
                    ("opencv-python-headless", "opencv-python", "opencv-contrib-python"), self.cv2.__version__),
                "threads": threads,
                "options": {"backend": "opencv", "target": "cpu", "parallel": parallel[0] if parallel else None,
                            "threads_used": self.cv2.getNumThreads(), "build": self.cv2.__version__}}

    def load(self, path, threads):
        if threads:
            self.cv2.setNumThreads(threads)
        try:
            self.declared = onnx_inputs(path)  # cv2.dnn does not say what its network takes
            self.net = self.cv2.dnn.readNetFromONNX(path)
        except (self.cv2.error, ValueError) as e:
            raise ModelLoadError(one_line(e)) from e
        self.net.setPreferableBackend(self.cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(self.cv2.dnn.DNN_TARGET_CPU)

    def inputs(self):
        return self.declared

    def describe(self):
        return {"outputs": [{"name": n} for n in self.net.getUnconnectedOutLayersNames()]}

    def feed(self, arrays):
        for decl, data in zip(self.declared, arrays):
            # OpenCV 4's Mat has no 64-bit integer type (its ONNX importer computes int64 tensors in int32), nor
            # a bool one; the seeded integers are small, so nothing is lost. Not run here: no cv2 on this host.
            if data.dtype == np.int64:
                data = data.astype(np.int32)
            elif data.dtype == np.bool_:
                data = data.astype(np.uint8)
            self.net.setInput(data, decl.name)

    def infer(self):
        self.last = self.net.forward(self.net.getUnconnectedOutLayersNames())

    def outputs(self):
        return list(self.last)
