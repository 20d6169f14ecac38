"""TensorRT: an engine built on the board from the ONNX model, cached in --cache-dir (else beside the model),
run on the GPU.

Engines are specific to the GPU and the TensorRT build that made them, so they are built where
they run and never shipped. A model with dynamic dimensions gets one optimization profile whose
min, opt and max are the shapes the run feeds (--input-shape). Device memory, copies and the
stream go through the CUDA runtime (libcudart) by ctypes, so neither pycuda nor cuda-python has to be on the board.

Board side: standard library, numpy and `tensorrt` only, Python 3.8+ (JetPack 5's Python).
"""

import ctypes
import ctypes.util
import glob
import hashlib
import importlib
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

from .. import file_sha256
from ..signature import format_shape, onnx_inputs
from .base import Adapter, FrameworkMissing, ModelLoadError, NotProfiled, check_options, profile_runs

PRECISIONS = ("fp32", "fp16")

# TensorRT DataType member name -> numpy dtype name. BF16, FP8, INT4 and FP4 have no numpy
# dtype: a model with such an input or output is refused rather than fed garbage.
_NUMPY_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT8": "int8", "INT32": "int32",
                 "INT64": "int64", "UINT8": "uint8", "BOOL": "bool"}

# Before TensorRT 8.4 the builder's default workspace is tiny and many fast tactics are skipped;
# later versions default to all device memory and this is not used.
_LEGACY_WORKSPACE_BYTES = 1 << 29


def major_version(version):
    """The major number of a TensorRT version string such as '8.5.2.2' or '10.3.0'."""
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


def numpy_dtype(trt_dtype):
    """The numpy dtype name of a TensorRT DataType, or ModelLoadError for one numpy lacks."""
    member = str(trt_dtype).rsplit(".", 1)[-1]  # pybind enums print as 'DataType.FLOAT'
    if member not in _NUMPY_DTYPES:
        raise ModelLoadError(f"a tensor of TensorRT type {member} cannot be fed or read from numpy")
    return _NUMPY_DTYPES[member]


def engine_cache_path(model_path, onnx_sha256, trt_version, precision, device, cache_dir=None, shapes=None):
    """Where the engine of this model, TensorRT build, precision, GPU and input shapes is kept.

    Any change of the five gives another file: an engine is only valid for the exact
    TensorRT version and GPU that built it, fp16 and fp32 engines differ, and a dynamic
    model's engine holds the profile of the shapes it was built for.
    """
    model_path = Path(model_path)
    fed = ",".join(f"{name}={format_shape(shape)}" for name, shape in sorted((shapes or {}).items()))
    key = hashlib.sha256("\0".join([onnx_sha256, str(trt_version), precision, device, fed]).encode()).hexdigest()
    directory = Path(cache_dir) if cache_dir else model_path.parent
    return directory / f"{model_path.stem}.trt{trt_version}.{precision}.{key[:16]}.engine"


def network_flags(trt):
    """Flags for builder.create_network: ONNX needs explicit batch, which is the only mode in TensorRT 10."""
    if major_version(trt.__version__) >= 10:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def io_api(engine, context):
    """'tensors' (TensorRT >= 8.5, the only API of 10) or 'bindings' (TensorRT 8.0-8.4, JetPack 4.6)."""
    if hasattr(engine, "num_io_tensors") and hasattr(context, "execute_async_v3"):
        return "tensors"
    if hasattr(engine, "num_bindings") and hasattr(context, "execute_async_v2"):
        return "bindings"
    raise ModelLoadError("this TensorRT has neither execute_async_v3 nor execute_async_v2 (TensorRT < 8?)")


def io_tensors(trt, engine, api):
    """[(name, is_input, shape, numpy dtype name)] in the engine's order, through either API; -1 in a shape
    stands for a dynamic dimension."""
    if api == "tensors":
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        found = [(n, engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT, engine.get_tensor_shape(n),
                  engine.get_tensor_dtype(n)) for n in names]
    else:
        found = [(engine.get_binding_name(i), bool(engine.binding_is_input(i)), engine.get_binding_shape(i),
                  engine.get_binding_dtype(i)) for i in range(engine.num_bindings)]
    return [(name, is_input, tuple(int(d) for d in shape), numpy_dtype(dtype))
            for name, is_input, shape, dtype in found]


def set_input_shapes(context, engine, api, shapes):
    """Give the execution context the shape of each dynamic input; the outputs' shapes follow from them."""
    if api == "tensors":
        for name, shape in shapes.items():
            if not context.set_input_shape(name, tuple(shape)):
                raise ModelLoadError(f"TensorRT refused input {name} of shape {format_shape(shape)}")
    else:
        for i in range(engine.num_bindings):
            name = engine.get_binding_name(i)
            if engine.binding_is_input(i) and name in shapes and not context.set_binding_shape(i, tuple(shapes[name])):
                raise ModelLoadError(f"TensorRT refused input {name} of shape {format_shape(shapes[name])}")


def context_shapes(context, engine, api):
    """{tensor name: shape} as the execution context has them once every input's shape is set."""
    if api == "tensors":
        return {engine.get_tensor_name(i): tuple(int(d) for d in context.get_tensor_shape(engine.get_tensor_name(i)))
                for i in range(engine.num_io_tensors)}
    return {engine.get_binding_name(i): tuple(int(d) for d in context.get_binding_shape(i))
            for i in range(engine.num_bindings)}


def cudart_candidates():
    """Library names and paths to try for libcudart, most specific last-resort last."""
    names = ["libcudart.so"]
    found = ctypes.util.find_library("cudart")
    if found:
        names.append(found)
    # Runtime-only images (l4t-tensorrt *-runtime) ship libcudart.so.<major> without the
    # unversioned link, which only the -dev package adds.
    for pattern in ("/usr/local/cuda*/lib64/libcudart.so.*", "/usr/local/cuda*/targets/*/lib/libcudart.so.*",
                    "/usr/lib/*-linux-gnu/libcudart.so.*",
                    os.path.join(sys.prefix, "lib", "python*", "site-packages", "nvidia", "cuda_runtime", "lib",
                                 "libcudart.so.*")):
        names.extend(sorted(glob.glob(pattern), reverse=True))
    return names


class CudaRuntime:
    """The few CUDA runtime calls the adapter needs, through ctypes."""

    H2D, D2H = 1, 2  # cudaMemcpyKind
    _CC_MAJOR, _CC_MINOR = 75, 76  # cudaDevAttrComputeCapabilityMajor/Minor

    def __init__(self):
        errors = []
        for name in cudart_candidates():
            try:
                self.lib = ctypes.CDLL(name)
                break
            except OSError as e:
                errors.append(str(e))
        else:
            raise FrameworkMissing("libcudart (the CUDA runtime) cannot be loaded: "
                                   + ("; ".join(errors[:3]) or "not found"))
        lib, vp, size = self.lib, ctypes.c_void_p, ctypes.c_size_t
        lib.cudaGetErrorString.restype = ctypes.c_char_p
        lib.cudaGetErrorString.argtypes = [ctypes.c_int]
        lib.cudaMalloc.argtypes = [ctypes.POINTER(vp), size]
        lib.cudaFree.argtypes = [vp]
        lib.cudaMemcpyAsync.argtypes = [vp, vp, size, ctypes.c_int, vp]
        lib.cudaStreamCreate.argtypes = [ctypes.POINTER(vp)]
        lib.cudaStreamSynchronize.argtypes = [vp]
        lib.cudaStreamDestroy.argtypes = [vp]
        lib.cudaGetDevice.argtypes = [ctypes.POINTER(ctypes.c_int)]
        lib.cudaDeviceGetAttribute.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.c_int]

    def _check(self, err, what):
        if err != 0:
            message = self.lib.cudaGetErrorString(err)
            raise RuntimeError(f"{what} failed: CUDA error {err} ({message.decode() if message else '?'})")

    def malloc(self, nbytes):
        ptr = ctypes.c_void_p()
        self._check(self.lib.cudaMalloc(ctypes.byref(ptr), max(int(nbytes), 1)), f"cudaMalloc({nbytes})")
        return ptr.value

    def free(self, ptr):
        self.lib.cudaFree(ptr)

    def stream(self):
        s = ctypes.c_void_p()
        self._check(self.lib.cudaStreamCreate(ctypes.byref(s)), "cudaStreamCreate")
        return s.value

    def destroy_stream(self, stream):
        self.lib.cudaStreamDestroy(stream)

    def h2d(self, dst, array, stream):
        self._check(self.lib.cudaMemcpyAsync(dst, array.ctypes.data, array.nbytes, self.H2D, stream),
                    "copying an input to the GPU")

    def d2h(self, array, src, stream):
        self._check(self.lib.cudaMemcpyAsync(array.ctypes.data, src, array.nbytes, self.D2H, stream),
                    "copying an output from the GPU")

    def sync(self, stream):
        self._check(self.lib.cudaStreamSynchronize(stream), "cudaStreamSynchronize (the inference itself)")

    def device(self):
        """(GPU name, 'sm_XY') of the current device."""
        dev, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        self._check(self.lib.cudaGetDevice(ctypes.byref(dev)), "cudaGetDevice")
        self._check(self.lib.cudaDeviceGetAttribute(ctypes.byref(major), self._CC_MAJOR, dev), "cudaDeviceGetAttribute")
        self._check(self.lib.cudaDeviceGetAttribute(ctypes.byref(minor), self._CC_MINOR, dev), "cudaDeviceGetAttribute")
        # cudaDeviceProp's layout changes between CUDA versions, but `char name[256]` is its first
        # field in all of them; the buffer is larger than any version's struct.
        props = ctypes.create_string_buffer(8192)
        get = getattr(self.lib, "cudaGetDeviceProperties_v2", None) or self.lib.cudaGetDeviceProperties
        self._check(get(props, dev), "cudaGetDeviceProperties")
        name = props.raw[:256].split(b"\0", 1)[0].decode(errors="replace").strip()
        return name, f"sm_{major.value}{minor.value}"


def _profiler(trt, reports):
    """A trt.IProfiler that appends (layer name, milliseconds) to `reports` for each layer of each inference."""
    class Profiler(trt.IProfiler):
        def __init__(self):
            trt.IProfiler.__init__(self)

        def report_layer_time(self, layer_name, ms):
            reports.append((layer_name, ms))

    return Profiler()


def layer_times(reports, types=None):
    """[{"op_type", "op_name", "time_ns"}] from an IProfiler's (layer name, ms) reports: each layer's mean over the
    inferences TensorRT reported (each reports every layer once: the count of the most reported layer), in the
    order of the first one. op_type is types[name] where the inspector gave one, else layer_type(name)."""
    types = types or {}
    totals, counts = {}, {}
    for name, ms in reports:
        totals[name] = totals.get(name, 0.0) + float(ms) * 1e6
        counts[name] = counts.get(name, 0) + 1
    runs = max(counts.values()) if counts else 1
    return [{"op_type": types.get(name) or layer_type(name), "op_name": name, "time_ns": total / runs}
            for name, total in totals.items()]


def engine_layer_types(trt, engine):
    """{layer name: LayerType} from the engine inspector (TensorRT >= 8.2), empty where it has no such detail."""
    try:
        inspector = engine.create_engine_inspector()
        return inspector_layer_types(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
    except Exception:  # no inspector (TensorRT < 8.2), or it refused: layer_type() guesses from the names
        return {}


def inspector_layer_types(text):
    """{layer name: LayerType} from the engine inspector's JSON: its Layers are dicts with both keys where the
    engine was built with ProfilingVerbosity.DETAILED, plain names otherwise."""
    try:
        info = json.loads(text)
    except (TypeError, ValueError):
        return {}
    layers = info.get("Layers", []) if isinstance(info, dict) else []
    return {str(layer["Name"]): str(layer["LayerType"]) for layer in layers
            if isinstance(layer, dict) and layer.get("Name") and layer.get("LayerType")}


def layer_type(name):
    """A guess at an engine layer's type from its name alone: TensorRT names a layer after the ONNX nodes in it,
    which torch.onnx names "/scope/OpType" (older exports "OpType_12"), joined by " + " when it fused them; its own
    layers are "Reformatting CopyNode ...", "{ForeignNode[...]}" (a Myelin subgraph), "PWN(...)" (fused pointwise
    ops) and "(Unnamed Layer* 3) [Convolution]"."""
    name = str(name).strip()
    if name.startswith("Reformatting CopyNode"):
        return "Reformat"
    if name.startswith("{ForeignNode["):
        return "ForeignNode"
    if name.startswith("PWN("):
        return "PointWise"
    unnamed = re.search(r"\[([A-Za-z][A-Za-z ]*)\]", name) if name.startswith("(Unnamed Layer") else None
    if unnamed:
        return unnamed.group(1)
    parts = []
    for part in name.split(" + "):
        last = part.strip().rstrip("/").rsplit("/", 1)[-1]
        last = re.sub(r"(_output)?_\d+$", "", last)
        parts.append(last or part.strip())
    return "+".join(parts)


def _import_trt():
    return importlib.import_module("tensorrt")


class TensorRT(Adapter):
    """TensorRT from the board vendor's image or JetPack, fp32 or fp16, on the GPU."""

    name = "tensorrt"
    uses_cache_dir = True  # the entrypoint passes --cache-dir: engines outlive the container that built them
    OPTIONS = {"precision": PRECISIONS}

    def __init__(self, options=None, cache_dir=None):
        self.precision = check_options(options, **self.OPTIONS).get("precision", "fp32")
        try:
            self.trt = _import_trt()
        except ImportError as e:
            raise FrameworkMissing(f"tensorrt is not importable ({e}); it comes with JetPack "
                                   "(python3-libnvinfer) or NVIDIA's TensorRT images, not from PyPI") from e
        self.cuda = CudaRuntime()
        self.cache_dir = cache_dir
        self.logger = self.trt.Logger(self.trt.Logger.WARNING)
        try:
            gpu, cc = self.cuda.device()
        except RuntimeError as e:
            raise FrameworkMissing(f"no usable CUDA GPU: {e} (in Docker: run with --runtime nvidia "
                                   "on a Jetson, --gpus all elsewhere)") from e
        self.device = f"{gpu} ({cc})"
        self.engine = self.context = None
        self._buffers, self._stream = [], None
        # reshape() records the engine cache's outcome here; the entrypoint asks info() again after it.
        self._options = {"precision": self.precision, "device": self.device, "engine_cache": "not loaded",
                         "engine_file": None, "threads": "ignored: TensorRT runs the model on the GPU"}

    def info(self, threads):
        return {"name": self.name, "runtime": "tensorrt", "version": self.trt.__version__,
                "threads": threads, "options": self._options}

    # --- load: read what the model takes; reshape: deserialize the cached engine, or build and cache it ------

    def load(self, path, threads):
        try:
            self.digest = file_sha256(path)
            # the ONNX file's own declaration: TensorRT's says -1 for the same dynamic dimensions
            self.declared = onnx_inputs(path)
        except (OSError, ValueError) as e:
            raise ModelLoadError(str(e)) from e
        self.path = path

    def inputs(self):
        return self.declared

    def reshape(self, shapes):
        dynamic = {d.name: tuple(shapes[d.name]) for d in self.declared
                   if d.dims is None or any(not isinstance(x, int) for x in d.dims)}
        runtime = self.trt.Runtime(self.logger)
        cache = engine_cache_path(self.path, self.digest, self.trt.__version__, self.precision, self.device,
                                  self.cache_dir, dynamic)
        engine, status = None, "miss"
        if cache.is_file():
            engine = self._deserialize(runtime, cache.read_bytes())
            if engine is not None:
                status = "hit"
            else:
                print(f"edgeorch: cached engine {cache} cannot be loaded; rebuilding it", file=sys.stderr)
        if engine is None:
            plan = self._build(self.path, dynamic)
            engine = self._deserialize(runtime, plan)
            if engine is None:
                raise ModelLoadError("TensorRT built an engine it cannot deserialize (see its log on stderr)")
            if not self._save(cache, plan):
                cache = None
        self._options.update(engine_cache=status, engine_file=str(cache) if cache else None)
        self.runtime, self.engine, self._dynamic = runtime, engine, dynamic
        self.context = engine.create_execution_context()
        if self.context is None:
            raise ModelLoadError("TensorRT could not create an execution context (out of GPU memory?)")
        api = io_api(engine, self.context)
        if dynamic:
            set_input_shapes(self.context, engine, api, dynamic)
        self._bind(api, context_shapes(self.context, engine, api) if dynamic else {})

    @staticmethod
    def _deserialize(runtime, plan):
        try:
            return runtime.deserialize_cuda_engine(plan)
        except Exception:  # TensorRT logs why; the caller rebuilds or reports
            return None

    def _build(self, path, dynamic):
        trt = self.trt
        if hasattr(trt, "init_libnvinfer_plugins"):
            trt.init_libnvinfer_plugins(self.logger, "")
        builder = trt.Builder(self.logger)
        if self.precision == "fp16" and getattr(builder, "platform_has_fast_fp16", True) is False:
            raise ModelLoadError(f"fp16 was asked for but {self.device} has no fast fp16; use fp32")
        network = builder.create_network(network_flags(trt))
        parser = trt.OnnxParser(network, self.logger)
        # parse_from_file finds external weight files beside the model; parse() would not
        ok = parser.parse_from_file(str(path)) if hasattr(parser, "parse_from_file") else \
            parser.parse(Path(path).read_bytes())
        if not ok:
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ModelLoadError(f"TensorRT's ONNX parser refused the model: {errors or 'no reason given'}")
        config = builder.create_builder_config()
        if not hasattr(config, "set_memory_pool_limit"):
            config.max_workspace_size = _LEGACY_WORKSPACE_BYTES
        if self.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        if dynamic:
            # One profile, exactly the shapes this run feeds: TensorRT tunes its kernels for them.
            profile = builder.create_optimization_profile()
            for name, shape in dynamic.items():
                profile.set_shape(name, shape, shape, shape)
            config.add_optimization_profile(profile)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise ModelLoadError("TensorRT could not build an engine for this model (its log on stderr says why)")
        return bytes(plan)

    @staticmethod
    def _save(cache, plan):
        """Write the engine atomically; False (and a note on stderr) where the directory is read-only."""
        try:
            fd, tmp = tempfile.mkstemp(dir=str(cache.parent), prefix=cache.name, suffix=".partial")
            with os.fdopen(fd, "wb") as f:
                f.write(plan)
            os.replace(tmp, str(cache))
            return True
        except OSError as e:
            print(f"edgeorch: the TensorRT engine is not cached ({e}); the next run builds it again",
                  file=sys.stderr)
            return False

    def _bind(self, api, shapes):
        self._api = api
        # the context's shapes where inputs are dynamic (the outputs' follow from them), else the engine's
        self._tensors = [(name, is_input, shapes.get(name, shape), dtype)
                         for name, is_input, shape, dtype in io_tensors(self.trt, self.engine, api)]
        unset = [(name, shape) for name, _, shape, _ in self._tensors if any(d < 0 for d in shape)]
        if unset:
            raise ModelLoadError(f"tensor {unset[0][0]} still has a dynamic shape {list(unset[0][1])} after its "
                                 "inputs' shapes were set")
        self._stream = self.cuda.stream()
        self._inputs, self._outputs, addresses = [], [], []
        for name, is_input, shape, dtype in self._tensors:
            ptr = self.cuda.malloc(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize)
            self._buffers.append(ptr)
            addresses.append(ptr)
            if api == "tensors":
                self.context.set_tensor_address(name, ptr)
            if is_input:
                self._inputs.append([ptr, None, dtype])
            else:
                self._outputs.append((ptr, np.empty(shape, dtype=dtype)))
        self._bindings = addresses  # execute_async_v2 takes them in binding order

    # --- run -----------------------------------------------------------------------------------

    def describe(self):
        def tensors(want_input):
            return [{"name": n, "shape": list(s), "dtype": d} for n, i, s, d in self._tensors if i == want_input]
        return {"inputs": tensors(True), "outputs": tensors(False)}

    def feed(self, arrays):
        # The engine's input order is the ONNX graph's; its dtypes may differ from the file's (TensorRT 8 takes
        # an int64 input as int32), so each array is cast to what the engine holds.
        by_name = {d.name: a for d, a in zip(self.declared, arrays)}
        names = [n for n, i, _, _ in self._tensors if i]
        for k, name in enumerate(names):
            self._inputs[k][1] = np.ascontiguousarray(by_name[name], dtype=self._inputs[k][2])

    def infer(self):
        # One inference as a TensorRT user sees it: inputs to the GPU, the engine, outputs back.
        # The copies are included because a PyTorch or ONNX Runtime (CUDA) user pays them too, so
        # the frameworks are compared on the same work. Every call here only *enqueues* on the
        # stream and returns at once; the final synchronize waits until the outputs are in host
        # memory, so the entrypoint's perf_counter around infer() times the whole inference
        # rather than the enqueueing (and no inference spills into the next one's measurement).
        for ptr, host, _ in self._inputs:
            self.cuda.h2d(ptr, host, self._stream)
        if self._api == "tensors":
            ok = self.context.execute_async_v3(self._stream)
        else:
            ok = self.context.execute_async_v2(bindings=self._bindings, stream_handle=self._stream)
        if not ok:
            raise RuntimeError("TensorRT could not enqueue the inference (its log on stderr says why)")
        for ptr, host in self._outputs:
            self.cuda.d2h(host, ptr, self._stream)
        self.cuda.sync(self._stream)

    def outputs(self):
        return [host.copy() for _, host in self._outputs]

    def profile(self, runs):
        """Per engine layer, from an IProfiler over `runs` inferences after one warm-up. The profiler is set on a
        second execution context on the same buffers (and input shapes), used for these runs only, so the timed
        context never has one. TensorRT times each layer of the built engine: its layers are fusions of the ONNX
        nodes ("/conv/Conv + /relu/Relu"), reformats and Myelin subgraphs. The op type is the engine inspector's
        LayerType where the engine was built with detailed profiling verbosity (edgeorch builds it with TensorRT's
        default, which has names only), else guessed from the layer's name by layer_type()."""
        runs = profile_runs(runs)
        self.infer()
        reports = []
        profiler = _profiler(self.trt, reports)
        main, context = self.context, self.engine.create_execution_context()
        if context is None:
            raise NotProfiled("TensorRT could not create a second execution context to profile with (out of GPU "
                              "memory?); trtexec --dumpProfile profiles the engine on its own")
        try:
            if self._dynamic:
                set_input_shapes(context, self.engine, self._api, self._dynamic)
            if self._api == "tensors":
                for (name, _, _, _), ptr in zip(self._tensors, self._bindings):
                    context.set_tensor_address(name, ptr)
            context.profiler = profiler
            self.context = context
            for _ in range(runs):
                self.infer()
        finally:
            self.context = main
            context = None  # before the profiler it points to
        if not reports:
            raise NotProfiled("TensorRT reported no layer times to the IProfiler; trtexec --dumpProfile profiles the "
                              "engine on its own")
        return layer_times(reports, engine_layer_types(self.trt, self.engine))

    def __del__(self):
        # the context and engine go before the memory they point into
        self.context = self.engine = None
        cuda = getattr(self, "cuda", None)
        try:
            for ptr in getattr(self, "_buffers", []):
                cuda.free(ptr)
            if getattr(self, "_stream", None) is not None:
                cuda.destroy_stream(self._stream)
        except Exception:  # at interpreter exit ctypes may be gone already; the driver frees it all
            pass
