"""OpenCV's DNN module (cv2.dnn) on an .onnx model or a Darknet network (.cfg, its .weights beside it)."""

import importlib
import os

import numpy as np

from ..signature import darknet_inputs, onnx_inputs
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

_ONNX_PREFIX = "onnx_node!"  # OpenCV 4's ONNX importer names each layer after its node with this in front


class OpenCV(Adapter):
    """OpenCV's DNN module (cv2.dnn) on an ONNX model or a Darknet network, with its default backend on the CPU."""

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
            if path.endswith(".cfg"):
                self.declared = darknet_inputs(path)  # cv2.dnn does not say what its network takes
                self.net = self._darknet(path)
            else:
                self.declared = onnx_inputs(path)
                self.net = self.cv2.dnn.readNetFromONNX(path)
        except (self.cv2.error, ValueError) as e:
            raise ModelLoadError(one_line(e)) from e
        self.net.setPreferableBackend(self.cv2.dnn.DNN_BACKEND_OPENCV)
        self.net.setPreferableTarget(self.cv2.dnn.DNN_TARGET_CPU)

    def _darknet(self, path):
        """The network of a Darknet .cfg and the .weights of the same stem beside it."""
        read = getattr(self.cv2.dnn, "readNetFromDarknet", None)
        if read is None:
            raise ModelLoadError(
                f"OpenCV {self.cv2.__version__} has no Darknet importer (OpenCV 5 removed it): run Darknet networks "
                "on a board whose opencv build is 4.x (Python 3.10 to 3.12, or Debian trixie on armv7; `invoke "
                "matrix` lists them), or convert the network to ONNX")
        weights = os.path.splitext(path)[0] + ".weights"
        if not os.path.isfile(weights):
            raise ModelLoadError(f"{os.path.basename(path)} needs its Darknet weights beside it, and {weights} "
                                 "does not exist")
        return read(path, weights)

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

    def profile(self, runs):
        """Per layer, from Net.getPerfProfile() after each of `runs` forwards (cv2.dnn always times its layers, so
        the net is used as it is, after one warm-up forward). Layers are those cv2.dnn runs after its own fusions:
        OpenCV 4 keeps an activation it fused into the convolution before it as a layer of 0 ns and adds an
        Identity layer per output; OpenCV 5's engine rewrites the graph at its first forward (fused layers are
        gone, TransformLayout layers appear), so the names are read after the forwards."""
        runs = profile_runs(runs)
        self.infer()
        ticks = None
        for _ in range(runs):
            self.infer()
            _, timings = self.net.getPerfProfile()
            timings = np.asarray(timings, dtype=np.float64).ravel()
            ticks = timings if ticks is None else ticks + timings
        names = list(self.net.getLayerNames())
        layers = [(str(self.net.getLayer(n).type), n[len(_ONNX_PREFIX):] if n.startswith(_ONNX_PREFIX) else n)
                  for n in names]
        return mean_per_op(layer_events(layers, ticks, self.cv2.getTickFrequency()), runs)


def layer_events(layers, ticks, frequency):
    """(type, name, ns) per layer from getPerfProfile()'s timings (ticks, summed over the runs) and the layers of
    getLayerNames(), matched by position: both leave out OpenCV 4's input layer (id 0, never timed) and list the
    rest in the same order, as OpenCV 5's do. Any other count is refused rather than guessed."""
    ticks = [float(t) for t in ticks]
    if len(ticks) != len(layers):
        raise NotProfiled(f"cv2.dnn gave {len(ticks)} layer timings for {len(layers)} layers, which cannot be matched "
                          "up; Net.getPerfProfile()'s total is still the whole forward's")
    return [(kind, name, t * 1e9 / frequency) for (kind, name), t in zip(layers, ticks)]
