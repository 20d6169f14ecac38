"""BVLC Caffe (pycaffe, CPU) as Debian bullseye packages it: python3-caffe, Python 3.9.

Loads the self-describing .caffemodel edgeorch.caffe_export writes (definition and weights in one
NetParameter). Runs on Python 3.9: no match statements, no `X | Y` annotations.
"""

import ctypes
import importlib
import os
import sys
import tempfile
import time

from ..protowire import fields, varint
from ..signature import Declared
from .base import Adapter, FrameworkMissing, ModelLoadError, check_options, mean_per_op, one_line, profile_runs

# Where a NetParameter's layers are (field 100; V1 nets: 2) and their blobs inside them (LayerParameter 7;
# V1LayerParameter 6): BVLC caffe.proto. Caffe needs the definition as text; the blobs it reads itself.
_LAYER_BLOBS = {100: 7, 2: 6}


class Caffe(Adapter):
    """Caffe in CPU mode; its GEMMs run on whatever BLAS libblas.so.3 is (OpenBLAS in edgeorch's images)."""

    name = "caffe"

    def __init__(self, options=None):
        self.options = check_options(options)  # none: threads is the only knob, and it is the BLAS's
        # glog's INFO lines (a page per Net) would bury the board's stderr; set before Caffe's first log.
        os.environ.setdefault("GLOG_minloglevel", "2")
        try:
            self.caffe = importlib.import_module("caffe")
            self.caffe_pb2 = importlib.import_module("caffe.proto.caffe_pb2")
            self.text_format = importlib.import_module("google.protobuf.text_format")
        except ImportError as e:
            raise FrameworkMissing(f"pycaffe is not importable ({e}); on Debian bullseye: apt install python3-caffe") \
                from e
        self.caffe.set_mode_cpu()
        self.blas_path = _mapped_blas()
        self.net = None

    def info(self, threads):
        return {"name": self.name, "runtime": "pycaffe", "version": _version(self.caffe), "threads": threads,
                # Caffe's own layers are single-threaded; only its BLAS calls (the convolutions' and inner
                # products' GEMMs) use threads: threads > 0 sets OpenBLAS's count at load, 0 leaves the BLAS
                # default (OpenBLAS: OPENBLAS_NUM_THREADS, else every core). Another BLAS ignores threads.
                "options": {"mode": "cpu", "blas": _blas_name(self.blas_path),
                            "blas_threads": threads if threads and self._set_threads is not None else "default"}}

    @property
    def _set_threads(self):
        try:
            return ctypes.CDLL(self.blas_path).openblas_set_num_threads if self.blas_path else None
        except (OSError, AttributeError):
            return None

    def load(self, path, threads):
        if threads and self._set_threads is not None:
            self._set_threads(int(threads))
        try:
            with open(path, "rb") as f:
                definition = self.caffe_pb2.NetParameter.FromString(_without_blobs(f.read()))
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"cannot read {path} as a Caffe NetParameter: {e}") from e
        except Exception as e:  # protobuf's DecodeError
            raise ModelLoadError(f"{path} is not a binary Caffe NetParameter: {e}") from e
        if not definition.layer and not definition.layers:
            raise ModelLoadError(f"{path} holds weights only: edgeorch needs the definition in the same file")
        with tempfile.NamedTemporaryFile("w", suffix=".prototxt", prefix="edgeorch-") as prototxt:
            prototxt.write(self.text_format.MessageToString(definition))
            prototxt.flush()
            try:
                # Caffe aborts the process on a CHECK failure (a bad shape, an unknown layer type): only what
                # it reports as a Python exception can be turned into ModelLoadError here.
                self.net = self.caffe.Net(prototxt.name, str(path), self.caffe.TEST)
            except Exception as e:
                raise ModelLoadError(one_line(e)) from e

    def _input_names(self):
        return list(self.net.inputs) or [top for layer, tops in self.net.top_names.items()
                                          for top in tops if self.net.layer_dict[layer].type == "Input"]

    def inputs(self):
        # Fixed in the definition, but a blob can take another shape of the same rank: --input-shape reshapes it.
        return [Declared(n, tuple(int(d) for d in self.net.blobs[n].data.shape), "float32", resizable=True)
                for n in self._input_names()]

    def reshape(self, shapes):
        changed = False
        for n in self._input_names():
            if tuple(self.net.blobs[n].data.shape) != tuple(shapes[n]):
                self.net.blobs[n].reshape(*shapes[n])
                changed = True
        if changed:
            try:
                self.net.reshape()  # the layers after the inputs take the new shapes
            except Exception as e:
                raise ModelLoadError(f"Caffe cannot reshape the net to {shapes}: {one_line(e)}") from e

    def describe(self):
        def tensors(names):
            return [{"name": n, "shape": [int(d) for d in self.net.blobs[n].data.shape], "dtype": "float32"}
                    for n in names]
        return {"inputs": tensors(self._input_names()), "outputs": tensors(self.net.outputs)}

    def feed(self, arrays):
        for n, data in zip(self._input_names(), arrays):
            self.net.blobs[n].data[...] = data

    def infer(self):
        self.net.forward()

    def outputs(self):
        # Copies: the blobs are overwritten by the next forward.
        return [self.net.blobs[n].data.copy() for n in self.net.outputs]

    def profile(self, runs):
        """Per layer: Caffe has no profiler a Python caller can switch on (`caffe time` is its command-line tool),
        but a forward is its layers' Forward calls one after another, which pycaffe can make one at a time. So after
        one warm-up forward, each of `runs` passes runs every layer alone, in the net's order, timed by
        time_layers(); a layer's time includes the few microseconds of pycaffe's call around it."""
        runs = profile_runs(runs)
        self.net.forward()
        return time_layers(self.net, runs)


def time_layers(net, runs, clock=time.perf_counter_ns):
    """The mean time of each layer of a pycaffe Net over `runs` passes through its layers in order, each layer
    run alone (Net._forward(i, i), C++'s ForwardFromTo; forward(start=, end=) where a pycaffe lacks it):
    [{"op_type": the layer's type, "op_name": its name, "time_ns"}]."""
    names = list(net._layer_names)
    kinds = [str(layer.type) for layer in net.layers]
    step = getattr(net, "_forward", None)
    events = []
    for _ in range(runs):
        for i, name in enumerate(names):
            start = clock()
            if step is not None:
                step(i, i)
            else:
                net.forward(start=name, end=name)
            events.append((kinds[i], name, clock() - start))
    return mean_per_op(events, runs)


def _without_blobs(data):
    """The NetParameter bytes with every layer's blobs left out: the definition alone, without decoding floats."""
    view, out = memoryview(data), bytearray()
    for number, wire_type, value, start, end in fields(view):
        if number in _LAYER_BLOBS and wire_type == 2:
            kept = b"".join(value[s:e] for n, _, _, s, e in fields(value) if n != _LAYER_BLOBS[number])
            out += varint(number << 3 | 2) + varint(len(kept)) + kept
        else:
            out += view[start:end]
    return bytes(out)


def _mapped_blas():
    """Path of the BLAS library this process has mapped (Linux), or None."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "/" in line}
    except OSError:
        return None
    # The library itself before the libblas.so.3 that Debian's alternatives point at it.
    for prefix in ("libopenblas", "libblis", "libmkl_rt", "libblas.so"):
        for path in sorted(paths):
            if os.path.basename(path).startswith(prefix):
                return path
    return None


def _blas_name(path):
    if not path:
        return "unknown"
    for name in ("openblas-pthread", "openblas-openmp", "openblas-serial", "openblas", "blis", "atlas", "mkl"):
        if name in path:
            return name
    return "reference" if "/blas/" in path else os.path.basename(path)


def _version(caffe):
    """Debian's package version where dpkg has one: caffe.__version__ is "1.0.0" for the release and every later
    snapshot alike (Debian's is git20180821, with Clip and Swish); the recipe's "1.0.0" matches its first part."""
    # the userland's own dpkg records: / in Docker and natively, the bundle's copy of the image's in bare mode
    status = os.path.join(os.path.dirname(sys.base_prefix), "var", "lib", "dpkg", "status")
    try:
        with open(status) as f:
            for block in f.read().split("\n\n"):
                lines = block.splitlines()
                if lines and lines[0] in ("Package: python3-caffe", "Package: python3-caffe-cpu") \
                        and "Status: install ok installed" in lines:
                    return next(line.split(": ", 1)[1] for line in lines if line.startswith("Version:"))
    except (OSError, StopIteration):
        pass
    version = getattr(caffe, "__version__", None)
    return str(version) if version else None
