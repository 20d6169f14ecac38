"""The TensorRT adapter's own logic, against small fakes of `tensorrt` and the CUDA runtime.

No GPU here: the fakes stand in for TensorRT's Python API (TensorRT 10's named tensors and
TensorRT 8's bindings) and for a CUDA stream whose work happens only when it is synchronized,
as on a real GPU.
"""

import shutil
import subprocess
from types import SimpleNamespace

import numpy as np
import pytest

from edgeorch.bench.adapters import tensorrt as ta
from edgeorch.bench.adapters.base import FrameworkMissing, ModelLoadError, OptionError
from edgeorch.bench.protowire import varint
from edgeorch.bench.signature import InputError


class DataType:
    def __init__(self, name):
        self.name = name

    def __str__(self):  # as pybind11 prints TensorRT's enums
        return f"DataType.{self.name}"


FLOAT, HALF, BF16, INT32 = DataType("FLOAT"), DataType("HALF"), DataType("BF16"), DataType("INT32")


class FakeGpu:
    """Device memory and one stream: enqueued work runs only at sync(), like a real GPU's."""

    def __init__(self):
        self.memory, self.queue, self.calls = {}, [], []

    def device(self):
        return "Orin", "sm_87"

    def malloc(self, nbytes):
        ptr = 0x1000 * (len(self.memory) + 1)
        self.memory[ptr] = bytearray(nbytes)
        return ptr

    def free(self, ptr):
        self.memory.pop(ptr, None)

    def stream(self):
        return 7

    def destroy_stream(self, stream):
        pass

    def h2d(self, dst, array, stream):
        self.calls.append("h2d")
        data = array.tobytes()
        self.queue.append(lambda: self.memory[dst].__setitem__(slice(None), data))

    def d2h(self, array, src, stream):
        self.calls.append("d2h")
        self.queue.append(lambda: array.reshape(-1).view(np.uint8).__setitem__(
            slice(None), np.frombuffer(bytes(self.memory[src]), np.uint8)))

    def enqueue_double(self, src, dst):
        def run():
            self.memory[dst][:] = (np.frombuffer(bytes(self.memory[src]), np.float32) * 2).tobytes()
        self.queue.append(run)

    def sync(self, stream):
        self.calls.append("sync")
        while self.queue:
            self.queue.pop(0)()


def onnx_model(dims, doc=b""):
    """The bytes of an ONNX model with one float input x of `dims` (a str is a dim_param) and output y."""
    def message(number, payload):
        return varint(number << 3 | 2) + varint(len(payload)) + payload

    def dim(d):
        return message(1, message(2, d.encode()) if isinstance(d, str) else varint(1 << 3) + varint(d))

    def value_info(name):  # ValueInfoProto name, TypeProto.tensor_type elem_type FLOAT, shape
        return message(1, name) + message(2, message(1, varint(1 << 3) + varint(1) + message(2, b"".join(
            dim(d) for d in dims))))
    graph = message(11, value_info(b"x")) + message(12, value_info(b"y"))  # GraphProto input, output
    return message(7, graph) + (message(6, doc) if doc else b"")  # ModelProto graph, doc_string


def fake_trt(gpu, version="10.3.0", fast_fp16=True, bindings=False, shape=(1, 3)):
    """A `tensorrt` module whose engines double their one float32 input."""
    trt = SimpleNamespace(__version__=version, builds=[], profiles=[], DataType=DataType,
                          Logger=type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None}),
                          BuilderFlag=SimpleNamespace(FP16="FP16"),
                          NetworkDefinitionCreationFlag=SimpleNamespace(EXPLICIT_BATCH=0),
                          TensorIOMode=SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT"))
    names = ("x", "y")

    class Context:
        def __init__(self):
            self.addresses, self.shapes = {}, {}

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr

        def set_input_shape(self, name, given):
            self.shapes.update(x=tuple(given), y=tuple(given))  # y = 2x: the output takes the input's shape
            return True

        def get_tensor_shape(self, name):
            return self.shapes.get(name, shape)

        def execute_async_v3(self, stream):
            gpu.calls.append("execute_v3")
            gpu.enqueue_double(self.addresses["x"], self.addresses["y"])
            return True

    class BindingContext:
        def __init__(self):
            self.shapes = {}

        def set_binding_shape(self, i, given):
            self.shapes.update({0: tuple(given), 1: tuple(given)})
            return True

        def get_binding_shape(self, i):
            return self.shapes.get(i, shape)

        def execute_async_v2(self, bindings, stream_handle):
            gpu.calls.append("execute_v2")
            gpu.enqueue_double(*bindings)
            return True

    class Engine:  # TensorRT >= 8.5
        num_io_tensors = 2

        def get_tensor_name(self, i):
            return names[i]

        def get_tensor_mode(self, name):
            return "INPUT" if name == "x" else "OUTPUT"

        def get_tensor_shape(self, name):
            return shape

        def get_tensor_dtype(self, name):
            return FLOAT

        def create_execution_context(self):
            return Context()

    class BindingEngine:  # TensorRT 8.0-8.4
        num_bindings = 2

        def get_binding_name(self, i):
            return names[i]

        def binding_is_input(self, i):
            return i == 0

        def get_binding_shape(self, i):
            return shape

        def get_binding_dtype(self, i):
            return FLOAT

        def create_execution_context(self):
            return BindingContext()

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, plan):
            return (BindingEngine if bindings else Engine)() if bytes(plan).startswith(b"plan") else None

    class Config:
        def __init__(self):
            self.flags = []

        def add_optimization_profile(self, profile):
            trt.profiles.append(profile.shapes)

        def set_memory_pool_limit(self, pool, size):
            pass

        def set_flag(self, flag):
            self.flags.append(flag)

    class Parser:
        def __init__(self, network, logger):
            self.errors = []

        def parse_from_file(self, path):
            if b"Frobnicate" in open(path, "rb").read():
                self.errors = ["node 3 (Frobnicate): no importer registered for op Frobnicate"]
            return not self.errors

        @property
        def num_errors(self):
            return len(self.errors)

        def get_error(self, i):
            return self.errors[i]

    class Builder:
        platform_has_fast_fp16 = fast_fp16

        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return SimpleNamespace(flags=flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            profile = SimpleNamespace(shapes={})
            profile.set_shape = lambda name, low, opt, high: profile.shapes.__setitem__(name, (low, opt, high))
            return profile

        def build_serialized_network(self, network, config):
            trt.builds.append(config.flags)
            return b"plan" + ",".join(config.flags).encode()

    trt.Runtime, trt.Builder, trt.OnnxParser = Runtime, Builder, Parser
    return trt


@pytest.fixture
def gpu():
    return FakeGpu()


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "net.onnx"
    path.write_bytes(onnx_model([1, 3]))
    return path


@pytest.fixture
def dynamic_model(tmp_path):
    path = tmp_path / "dynamic.onnx"
    path.write_bytes(onnx_model(["batch", 3]))
    return path


def adapter(monkeypatch, trt, gpu, **kwargs):
    monkeypatch.setattr(ta, "_import_trt", lambda: trt)
    monkeypatch.setattr(ta, "CudaRuntime", lambda: gpu)
    return ta.TensorRT(**kwargs)


def loaded(a, model):
    """The adapter after the entrypoint's steps: load, then the engine built (or found) for the declared shapes."""
    a.load(str(model), 0)
    a.prepare()
    return a


# --- pure parts --------------------------------------------------------------------------

def test_each_part_of_the_cache_key_gives_another_engine_file(tmp_path):
    base = dict(model_path=tmp_path / "resnet50.onnx", onnx_sha256="a" * 64, trt_version="10.3.0",
                precision="fp32", device="Orin (sm_87)")
    path = ta.engine_cache_path(**base)
    assert path.parent == tmp_path and path.name.startswith("resnet50.trt10.3.0.fp32.")
    assert path.suffix == ".engine"
    assert ta.engine_cache_path(**base) == path
    changed = [dict(base, onnx_sha256="b" * 64), dict(base, trt_version="8.5.2.2"), dict(base, precision="fp16"),
               dict(base, device="NVIDIA Tegra X1 (sm_53)")]
    assert len({ta.engine_cache_path(**c) for c in changed} | {path}) == 5
    assert ta.engine_cache_path(**base, cache_dir=tmp_path / "cache").parent == tmp_path / "cache"
    # a dynamic model's engine is built for the shapes it is fed: another shape, another engine
    shaped = {ta.engine_cache_path(**base, shapes={"x": s}) for s in [(1, 3, 224, 224), (8, 3, 224, 224)]}
    assert len(shaped | {path}) == 3


def test_an_unknown_precision_is_refused_before_tensorrt_is_touched(monkeypatch):
    monkeypatch.setattr(ta, "_import_trt", lambda: pytest.fail("imported tensorrt"))
    with pytest.raises(OptionError, match=r"precision='int8' is not one of \['fp32', 'fp16'\]"):
        ta.TensorRT({"precision": "int8"})


def test_tensorrt_types_map_to_numpy_and_those_numpy_lacks_are_refused():
    assert [ta.numpy_dtype(t) for t in (FLOAT, HALF, INT32)] == ["float32", "float16", "int32"]
    with pytest.raises(ModelLoadError, match="TensorRT type BF16 cannot be fed"):
        ta.numpy_dtype(BF16)


@pytest.mark.parametrize("version, flags", [("10.3.0", 0), ("8.5.2.2", 1), ("8.2.1.8", 1)])
def test_explicit_batch_is_asked_for_only_before_tensorrt_10(version, flags):
    assert ta.network_flags(SimpleNamespace(__version__=version,
                                            NetworkDefinitionCreationFlag=SimpleNamespace(EXPLICIT_BATCH=0))) == flags


def test_the_named_tensor_api_is_preferred_where_both_exist():
    v3 = SimpleNamespace(execute_async_v3=1)
    v2 = SimpleNamespace(execute_async_v2=1)
    both = SimpleNamespace(execute_async_v3=1, execute_async_v2=1)
    assert ta.io_api(SimpleNamespace(num_io_tensors=2), v3) == "tensors"  # TensorRT 10
    assert ta.io_api(SimpleNamespace(num_io_tensors=2, num_bindings=2), both) == "tensors"  # 8.5, 8.6
    assert ta.io_api(SimpleNamespace(num_bindings=2), v2) == "bindings"  # 8.0-8.4 (JetPack 4.6)
    with pytest.raises(ModelLoadError, match="neither execute_async_v3 nor execute_async_v2"):
        ta.io_api(SimpleNamespace(), SimpleNamespace(execute=1))


def test_a_dynamic_shape_is_reported_as_the_engine_has_it(gpu):
    trt = fake_trt(gpu, shape=(-1, 3))
    engine = trt.Runtime(None).deserialize_cuda_engine(b"plan")
    assert ta.io_tensors(trt, engine, "tensors") == [("x", True, (-1, 3), "float32"), ("y", False, (-1, 3), "float32")]


# --- the adapter against the fakes --------------------------------------------------------

def test_the_engine_is_built_once_and_then_loaded_from_the_cache(monkeypatch, gpu, model):
    trt = fake_trt(gpu)
    first = adapter(monkeypatch, trt, gpu)
    info = first.info(4)
    first.load(str(model), 4)
    first.prepare()
    assert trt.builds == [[]] and info["options"]["engine_cache"] == "miss"
    engine_file = info["options"]["engine_file"]
    assert engine_file.startswith(str(model.parent)) and open(engine_file, "rb").read() == b"plan"

    second = adapter(monkeypatch, trt, gpu)
    second.load(str(model), 4)
    second.prepare()
    assert trt.builds == [[]] and second.info(4)["options"]["engine_cache"] == "hit"
    assert second.info(4)["options"]["engine_file"] == engine_file
    assert info["version"] == "10.3.0" and info["options"]["device"] == "Orin (sm_87)"


def test_fp16_sets_the_builder_flag_and_has_its_own_engine(monkeypatch, gpu, model):
    trt = fake_trt(gpu)
    fp32 = adapter(monkeypatch, trt, gpu)
    fp32.load(str(model), 0)
    fp32.prepare()
    fp16 = adapter(monkeypatch, trt, gpu, options={"precision": "fp16"})
    fp16.load(str(model), 0)
    fp16.prepare()
    assert trt.builds == [[], ["FP16"]]
    assert fp16.info(0)["options"]["engine_file"] != fp32.info(0)["options"]["engine_file"]
    assert fp16.info(0)["options"]["precision"] == "fp16"


def test_fp16_is_refused_where_the_gpu_has_no_fast_fp16(monkeypatch, gpu, model):
    trt = fake_trt(gpu, fast_fp16=False)
    with pytest.raises(ModelLoadError, match=r"fp16 was asked for but Orin \(sm_87\) has no fast fp16; use fp32"):
        loaded(adapter(monkeypatch, trt, gpu, options={"precision": "fp16"}), model)
    assert trt.builds == []


def test_a_corrupt_cached_engine_is_rebuilt(monkeypatch, gpu, model):
    trt = fake_trt(gpu)
    a = loaded(adapter(monkeypatch, trt, gpu), model)
    path = a.info(0)["options"]["engine_file"]
    open(path, "wb").write(b"truncated")
    b = loaded(adapter(monkeypatch, trt, gpu), model)
    assert len(trt.builds) == 2 and b.info(0)["options"]["engine_cache"] == "miss"
    assert open(path, "rb").read() == b"plan"


def test_a_read_only_model_directory_still_runs_uncached(monkeypatch, gpu, model, tmp_path):
    a = loaded(adapter(monkeypatch, fake_trt(gpu), gpu, cache_dir=tmp_path / "missing"), model)
    assert a.info(0)["options"]["engine_cache"] == "miss" and a.info(0)["options"]["engine_file"] is None


def test_the_parsers_complaint_reaches_the_user(monkeypatch, gpu, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(onnx_model([1, 3], doc=b"Frobnicate"))
    with pytest.raises(ModelLoadError, match="no importer registered for op Frobnicate"):
        loaded(adapter(monkeypatch, fake_trt(gpu), gpu), bad)


@pytest.mark.parametrize("version, bindings, execute", [("10.3.0", False, "execute_v3"),
                                                        ("8.2.1.8", True, "execute_v2")])
def test_infer_returns_only_when_the_outputs_are_on_the_host(monkeypatch, gpu, model, version, bindings, execute):
    a = loaded(adapter(monkeypatch, fake_trt(gpu, version=version, bindings=bindings), gpu), model)
    assert a.describe() == {"inputs": [{"name": "x", "shape": [1, 3], "dtype": "float32"}],
                            "outputs": [{"name": "y", "shape": [1, 3], "dtype": "float32"}]}
    given = np.array([[1.0, -2.0, 0.5]], dtype=np.float32)
    a.prepare(0, given)
    a.infer()
    # the copies and the engine run are only enqueued: the last call must wait for them, or
    # the entrypoint's timer would stop before the GPU has done the work
    assert gpu.calls == ["h2d", execute, "d2h", "sync"] and not gpu.queue
    np.testing.assert_array_equal(a.outputs()[0], given * 2)


def test_a_given_input_of_the_wrong_shape_is_refused(monkeypatch, gpu, model):
    a = loaded(adapter(monkeypatch, fake_trt(gpu), gpu), model)
    with pytest.raises(InputError, match=r"the model takes float32\[1, 3\]"):
        a.prepare(0, np.zeros((1, 4), np.float32))


def test_a_dynamic_model_without_its_shape_is_refused_naming_the_input(monkeypatch, gpu, dynamic_model):
    trt = fake_trt(gpu, shape=(-1, 3))
    a = adapter(monkeypatch, trt, gpu)
    a.load(str(dynamic_model), 0)
    with pytest.raises(InputError, match=r"input 'x' of the model has dynamic dimensions \[batch, 3\].*"
                                         r"--input-shape x=<batch>x3"):
        a.prepare()
    assert trt.builds == []


@pytest.mark.parametrize("version, bindings", [("10.3.0", False), ("8.2.1.8", True)])
def test_a_dynamic_model_is_built_for_the_shape_given(monkeypatch, gpu, dynamic_model, tmp_path, version, bindings):
    trt = fake_trt(gpu, version=version, bindings=bindings, shape=(-1, 3))
    a = adapter(monkeypatch, trt, gpu, cache_dir=tmp_path)
    a.load(str(dynamic_model), 0)
    assert [d.dims for d in a.inputs()] == [("batch", 3)]
    a.reshape({"x": (4, 3)})
    # one optimization profile whose min, opt and max are the shape the run feeds
    assert trt.profiles == [{"x": ((4, 3), (4, 3), (4, 3))}]
    assert a.describe()["outputs"] == [{"name": "y", "shape": [4, 3], "dtype": "float32"}]
    given = np.arange(12, dtype=np.float32).reshape(4, 3)
    a.feed([given])
    a.infer()
    np.testing.assert_array_equal(a.outputs()[0], given * 2)
    other = adapter(monkeypatch, trt, gpu, cache_dir=tmp_path)
    other.load(str(dynamic_model), 0)
    other.reshape({"x": (2, 3)})
    assert len(trt.builds) == 2 and other.info(0)["options"]["engine_file"] != a.info(0)["options"]["engine_file"]


def test_engines_go_to_the_cache_dir_the_entrypoint_is_given(monkeypatch, gpu, model, tmp_path):
    from edgeorch.bench.__main__ import _adapter

    monkeypatch.setattr(ta, "_import_trt", lambda: fake_trt(gpu))
    monkeypatch.setattr(ta, "CudaRuntime", lambda: gpu)
    cache = tmp_path / "engines"
    cache.mkdir()
    a = loaded(_adapter("tensorrt", [], str(cache)), model)
    assert a.info(0)["options"]["engine_file"].startswith(str(cache) + "/")


def test_missing_tensorrt_says_where_it_comes_from(monkeypatch):
    def missing():
        raise ImportError("No module named 'tensorrt'")
    monkeypatch.setattr(ta, "_import_trt", missing)
    with pytest.raises(FrameworkMissing, match="python3-libnvinfer"):
        ta.TensorRT()


# --- the ctypes layer, against a stand-in libcudart built from C -----------------------------

FAKE_CUDART = r"""
#include <stdlib.h>
#include <string.h>
/* Host memory plays device memory; the ABI (argument types, out-pointers) is libcudart's. */
const char *cudaGetErrorString(int e) { return e == 2 ? "out of memory" : "unknown error"; }
int cudaMalloc(void **p, size_t n) { if (n > ((size_t)1 << 40)) return 2; *p = malloc(n); return 0; }
int cudaFree(void *p) { free(p); return 0; }
int cudaMemcpyAsync(void *d, const void *s, size_t n, int kind, void *stream) {
    if (kind != 1 && kind != 2) return 21; memcpy(d, s, n); return 0; }
int cudaStreamCreate(void **s) { *s = (void *)0x5; return 0; }
int cudaStreamSynchronize(void *s) { return s == (void *)0x5 ? 0 : 400; }
int cudaStreamDestroy(void *s) { return 0; }
int cudaGetDevice(int *d) { *d = 0; return 0; }
int cudaDeviceGetAttribute(int *v, int attr, int dev) { *v = attr == 75 ? 8 : 7; return 0; }
int cudaGetDeviceProperties_v2(void *prop, int dev) { strcpy((char *)prop, "Orin"); return 0; }
"""


@pytest.fixture(scope="module")
def fake_cudart(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler to build the stand-in libcudart")
    d = tmp_path_factory.mktemp("cudart")
    (d / "cudart.c").write_text(FAKE_CUDART)
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(d / "libcudart.so.12"), str(d / "cudart.c")], check=True)
    return str(d / "libcudart.so.12")


def test_the_ctypes_layer_moves_bytes_and_reports_cuda_errors(monkeypatch, fake_cudart):
    monkeypatch.setattr(ta, "cudart_candidates", lambda: ["libcudart-not-here.so", fake_cudart])
    cuda = ta.CudaRuntime()
    assert cuda.device() == ("Orin", "sm_87")
    host = np.arange(6, dtype=np.float32).reshape(2, 3)
    back = np.zeros_like(host)
    ptr, stream = cuda.malloc(host.nbytes), cuda.stream()
    cuda.h2d(ptr, host, stream)
    cuda.d2h(back, ptr, stream)
    cuda.sync(stream)
    np.testing.assert_array_equal(back, host)
    cuda.free(ptr)
    with pytest.raises(RuntimeError, match=r"cudaMalloc\(\d+\) failed: CUDA error 2 \(out of memory\)"):
        cuda.malloc(1 << 41)


def test_no_cuda_runtime_is_a_missing_framework(monkeypatch):
    monkeypatch.setattr(ta, "cudart_candidates", lambda: ["libcudart-not-here.so"])
    with pytest.raises(FrameworkMissing, match="libcudart .* cannot be loaded"):
        ta.CudaRuntime()
