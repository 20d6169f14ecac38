"""OpenVINO's CPU plugin on an .onnx model or an OpenVINO IR (.xml, its weights in the .bin beside it)."""

import importlib
import platform

import numpy as np

from ..signature import Declared, InputError
from .base import (
    Adapter,
    FrameworkMissing,
    ModelLoadError,
    OptionError,
    check_options,
    distribution_version,
    mean_per_op,
    one_line,
    profile_runs,
)

DEVICE = "CPU"
# --option precision -> INFERENCE_PRECISION_HINT. Unpinned, the CPU plugin computes in half precision wherever the
# CPU has it natively (f16 on a Pi 5's Cortex-A76, not on a Pi 4's A72; bf16 or f16 on recent x86 Xeons), and then
# misses PyTorch's float32 outputs by about 1% of their range; fp32 is edgeorch's default, as every framework's.
PRECISIONS = {"fp32": "f32", "fp16": "f16"}
# OpenVINO element type names -> numpy dtype names (the types edgeorch feeds)
_DTYPES = {"f32": "float32", "f16": "float16", "f64": "float64", "i8": "int8", "u8": "uint8", "i16": "int16",
           "u16": "uint16", "i32": "int32", "u32": "uint32", "i64": "int64", "u64": "uint64", "boolean": "bool"}
# DEVICE_ARCHITECTURE of the CPU plugin -> the kernel libraries its build for that arch runs on
_BACKENDS = {"intel64": "oneDNN", "intel32": "oneDNN", "arm64": "ACL+oneDNN", "armhf": "ACL+oneDNN"}


class OpenVINO(Adapter):
    """OpenVINO on its CPU device: one stream (the LATENCY hint), float32 arithmetic unless precision=fp16."""

    name = "openvino"
    OPTIONS = {"precision": tuple(PRECISIONS)}

    def __init__(self, options=None):
        self.options = {"precision": "fp32", **check_options(options, **self.OPTIONS)}
        try:
            self.ov = importlib.import_module("openvino")
        except ImportError as e:
            raise FrameworkMissing("openvino is not installed") from e
        self.core = self.ov.Core()
        self.capabilities = [str(c) for c in self._device("OPTIMIZATION_CAPABILITIES") or ()]
        if self.options["precision"] == "fp16" and "FP16" not in self.capabilities:
            # the plugin would quietly compute in f32: a run labelled fp16 would measure fp32
            raise OptionError(f"precision=fp16: this CPU has no half-precision arithmetic OpenVINO uses (its "
                              f"capabilities are {', '.join(self.capabilities) or 'unknown'})")
        self.compiled = self.model = None

    def _device(self, key):
        """A property of the CPU device, or None where this version or build does not have it."""
        try:
            return self.core.get_property(DEVICE, key)
        except Exception:  # RuntimeError for an unknown key; some values do not convert to Python
            return None

    def _compiled_property(self, key):
        try:
            return self.compiled.get_property(key)
        except Exception:
            return None

    def info(self, threads):
        architecture = str(self._device("DEVICE_ARCHITECTURE") or platform.machine())
        options = {"device": DEVICE, "precision": self.options["precision"], "performance_hint": "LATENCY",
                   "backend": _BACKENDS.get(architecture, "unknown"), "architecture": architecture,
                   "cpu": self._device("FULL_DEVICE_NAME"), "capabilities": self.capabilities,
                   "build": self.ov.get_version()}
        if self.compiled is not None:  # what the plugin settled on: the precision it computes in, threads, streams
            precision = self._compiled_property("INFERENCE_PRECISION_HINT")
            options.update(inference_precision=None if precision is None else precision.get_type_name(),
                           threads_used=self._compiled_property("INFERENCE_NUM_THREADS"),
                           streams=self._compiled_property("NUM_STREAMS"))
        return {"name": self.name, "runtime": "openvino", "version": distribution_version(("openvino",),
                                                                                           self.ov.__version__),
                "threads": threads, "options": options}

    def config(self, threads, profiling=False):
        """The compile_model configuration: edgeorch's threads, the precision pinned, one stream for latency."""
        config = {"INFERENCE_PRECISION_HINT": PRECISIONS[self.options["precision"]], "PERFORMANCE_HINT": "LATENCY",
                  "PERF_COUNT": bool(profiling)}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        return config

    def load(self, path, threads):
        self.path, self.threads, self.compiled = str(path), threads, None
        try:
            self.model = self.core.read_model(self.path)  # an .xml's weights: the .bin of the same name beside it
        except Exception as e:  # OpenVINO raises RuntimeError, or its own exception types, for unreadable models
            raise ModelLoadError(one_line(e)) from e
        self.declared = [parameter(p) for p in self.model.inputs]

    def inputs(self):
        return self.declared

    def reshape(self, shapes):
        """Give each dynamic input the shape asked for (OpenVINO's Model.reshape), then compile: the model as it
        will run, built before the first inference and timed as loading."""
        new = {d.name: list(shapes[d.name]) for d in self.declared
               if d.name in shapes and (d.dims is None or list(d.dims) != list(shapes[d.name]))}
        try:
            if new:
                self.model.reshape(new)
            self.compiled = self.core.compile_model(self.model, DEVICE, self.config(self.threads))
        except Exception as e:
            raise ModelLoadError(one_line(e)) from e
        self.request = self.compiled.create_infer_request()

    def describe(self):
        return {"outputs": [{"name": tensor_name(o), "shape": [d.get_length() if d.is_static else "?"
                                                               for d in o.get_partial_shape()],
                             "dtype": _DTYPES.get(o.get_element_type().get_type_name(),
                                                  o.get_element_type().get_type_name())}
                            for o in self.compiled.outputs]}

    def feed(self, arrays):
        if self.compiled is None:  # fed without reshape(): the model's own shapes
            self.reshape({})
        # Tensors that share the arrays' memory, set once: no inference copies its inputs.
        self.tensors = [self.ov.Tensor(np.ascontiguousarray(a), shared_memory=True) for a in arrays]
        for index, tensor in enumerate(self.tensors):
            self.request.set_input_tensor(index, tensor)

    def infer(self):
        self.request.infer()

    def outputs(self):
        return [self.request.get_output_tensor(i).data.copy() for i in range(len(self.compiled.outputs))]

    def profile(self, runs):
        """Per node of the graph OpenVINO's CPU plugin executes, from its performance counters (PERF_COUNT) over
        `runs` inferences of a second compiled model (the timed one never counts), the same model, configuration
        and inputs, after one warm-up inference whose counts are left out. The nodes are those after the plugin's
        fusions: a ReLU fused into its convolution does not run and is left out, the Reorder nodes it inserts to
        change a tensor's layout are in. Each time is the node's wall time, to the microsecond."""
        runs = profile_runs(runs)
        compiled = self.core.compile_model(self.model, DEVICE, self.config(self.threads, profiling=True))
        request = compiled.create_infer_request()
        for index, tensor in enumerate(self.tensors):
            request.set_input_tensor(index, tensor)
        request.infer()
        events = []
        executed = self.ov.ProfilingInfo.Status.EXECUTED
        for _ in range(runs):
            request.infer()  # the counters are the last inference's
            events.extend(node_events(request.get_profiling_info(), executed))
        return mean_per_op(events, runs)


def node_events(infos, executed):
    """(node type, node name, ns) of each node of an inference's profiling info that ran (status `executed`)."""
    return [(i.node_type, i.node_name, i.real_time.total_seconds() * 1e9) for i in infos if i.status == executed]


def tensor_name(port):
    """A port's tensor name, or its node's name where the tensor has none."""
    try:
        return port.get_any_name()
    except RuntimeError:
        return port.get_node().get_friendly_name()


def parameter(port):
    """Declared of a model input: its name, its dims (None where dynamic, None as a whole for a dynamic rank) and
    its numpy dtype; InputError for a type edgeorch cannot feed."""
    shape, name = port.get_partial_shape(), tensor_name(port)
    dims = None if shape.rank.is_dynamic else tuple(d.get_length() if d.is_static else None for d in shape)
    element = port.get_element_type().get_type_name()
    if element not in _DTYPES:
        raise InputError(f"input {name!r} of the model has OpenVINO type {element}, which edgeorch cannot feed "
                         "(it feeds float, integer and bool tensors)")
    return Declared(name, dims, _DTYPES[element])
