"""Adapter.profile(runs): per-operator times from each framework's own profiler.

Real profiles where the framework is in this venv (ONNX Runtime, PyTorch, TensorFlow; OpenCV where cv2 is), on
tiny models built here, checked against a plain timed inference; the bookkeeping of the frameworks that are not
(Caffe, TensorRT), and of every parser, on fakes with a known truth.
"""

import importlib.util
import statistics
import time
from types import SimpleNamespace

import numpy as np
import pytest

from edgeorch.bench.adapters import NotProfiled
from edgeorch.bench.adapters import caffe as caffe_adapter
from edgeorch.bench.adapters import onnxruntime as ort_adapter
from edgeorch.bench.adapters import opencv as cv_adapter
from edgeorch.bench.adapters import pytorch as torch_adapter
from edgeorch.bench.adapters import tensorflow as tf_adapter
from edgeorch.bench.adapters import tensorrt as trt_adapter
from edgeorch.bench.adapters.base import Adapter, mean_per_op
from edgeorch.bench.adapters.tflite import LiteRT, TFLite

RUNS = 10


def _installed(name):
    return importlib.util.find_spec(name) is not None


def latency_ns(adapter, n=10):
    """The median of `n` plain infer() calls, in ns."""
    times = []
    for _ in range(n):
        start = time.perf_counter_ns()
        adapter.infer()
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times)


def profiled(adapter, runs=RUNS, attempts=3):
    """adapter.profile(runs), checked: well-formed rows that add up to roughly what an inference takes, measured
    here before and after the profile. This machine is shared: within a generous factor of either, and a burst of
    load that spoils one attempt (it may fall on the profile alone) is followed by another."""
    seen = []
    for _ in range(attempts):
        before = latency_ns(adapter)
        rows = adapter.profile(runs)
        after = latency_ns(adapter)
        assert rows and all(set(r) == {"op_type", "op_name", "time_ns"} for r in rows)
        assert all(isinstance(r["op_type"], str) and isinstance(r["op_name"], str) for r in rows)
        assert all(isinstance(r["time_ns"], float) and r["time_ns"] >= 0 for r in rows)
        total = sum(r["time_ns"] for r in rows)
        seen.append((total, before, after))
        if 0.1 * min(before, after) <= total <= 3 * max(before, after):
            return rows
    raise AssertionError(f"the profile's sum is not within 0.1x to 3x of a timed inference: (sum, before, after) "
                         f"in ns = {seen}")


def conv_onnx(path):
    """A small ONNX model: Conv -> Relu -> Conv -> Relu -> Flatten -> MatMul, a few milliseconds of work."""
    onnx = pytest.importorskip("onnx", reason="onnx (the models extra) builds the test model")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def weight(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(np.float32), name)

    conv = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", **conv),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", **conv),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("Flatten", ["r2"], ["f"], name="flatten"),
             helper.make_node("MatMul", ["f", "m"], ["y"], name="fc")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 48, 48])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
                              [weight("w1", 16, 3, 3, 3), weight("b1", 16), weight("w2", 16, 16, 3, 3),
                               weight("b2", 16), weight("m", 16 * 48 * 48, 10)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


# --- the shared helper and the default ------------------------------------------------------------------------

def test_mean_per_op_averages_over_the_runs_in_first_seen_order():
    events = [("Conv", "a", 100), ("Relu", "b", 10), ("Conv", "c", 50),  # run 1
              ("Conv", "a", 300), ("Relu", "b", 30), ("Conv", "c", 70), ("Add", "late", 8)]  # run 2, one op more
    assert mean_per_op(events, 2) == [
        {"op_type": "Conv", "op_name": "a", "time_ns": 200.0}, {"op_type": "Relu", "op_name": "b", "time_ns": 20.0},
        {"op_type": "Conv", "op_name": "c", "time_ns": 60.0}, {"op_type": "Add", "op_name": "late", "time_ns": 4.0}]
    # an op run twice in each inference (a shared layer) counts twice
    assert mean_per_op([("MatMul", "m", 5)] * 6, 3) == [{"op_type": "MatMul", "op_name": "m", "time_ns": 10.0}]
    assert mean_per_op([], 4) == []
    for runs in (0, -1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="positive integer"):
            mean_per_op(events, runs)


def test_an_adapter_without_a_profile_says_so():
    class Plain(Adapter):
        name = "plain"

    with pytest.raises(NotProfiled, match="plain: edgeorch has no per-operator profile"):
        Plain().profile(3)


def test_tflite_and_litert_say_which_tool_profiles_their_ops():
    # Their Python interpreters (tflite_runtime 2.14, ai_edge_litert 2.3) have no profiling hook: no framework
    # is needed to say so.
    with pytest.raises(NotProfiled) as raised:
        TFLite.__new__(TFLite).profile(10)
    assert str(raised.value) == ("the TFLite Python interpreter exposes no per-operator timings; TFLite's "
                                 "benchmark_model --enable_op_profiling=true does")
    with pytest.raises(NotProfiled, match="LiteRT Python interpreter exposes no per-operator timings; LiteRT's "
                                          "benchmark_model --enable_op_profiling=true does"):
        LiteRT.__new__(LiteRT).profile(10)


# --- ONNX Runtime ---------------------------------------------------------------------------------------------

def test_onnxruntime_trace_events_leave_out_the_warm_up_and_keep_the_order():
    def node(name, op, ts, dur):
        return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}

    trace = [{"cat": "Session", "name": "session_initialization", "ts": 0, "dur": 50},
             node("conv", "Conv", 101, 90), node("fc", "MatMul", 192, 5),
             {"cat": "Session", "name": "model_run", "ts": 100, "dur": 100},  # the warm-up: after its nodes
             {"cat": "Node", "name": "conv_fence_before", "ts": 301, "dur": 1, "args": {"op_name": "Conv"}},
             node("fc", "MatMul", 330, 3), node("conv", "Conv", 302, 20),  # out of order in the file
             {"cat": "Session", "name": "model_run", "ts": 300, "dur": 40}]
    assert ort_adapter.node_events(trace, skip_runs=1) == [("Conv", "conv", 20_000.0), ("MatMul", "fc", 3000.0)]
    assert [e[1] for e in ort_adapter.node_events({"traceEvents": trace})] == ["conv", "fc", "conv", "fc"]


def test_onnxruntime_profiles_each_node_of_its_optimised_graph(tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime (the dev extra) is not installed")
    from edgeorch.bench.adapters.onnxruntime import OnnxRuntime

    adapter = OnnxRuntime()
    adapter.load(conv_onnx(tmp_path / "tiny.onnx"), 1)
    adapter.prepare()
    adapter.infer()
    expected = adapter.outputs()[0].copy()
    rows = profiled(adapter)
    types = [r["op_type"] for r in rows]
    # ONNX Runtime fuses each Relu into its Conv: the ops a user recognises are Conv and MatMul
    assert types.count("Conv") == 2 and "MatMul" in types, rows
    assert {"op_type": "MatMul", "op_name": "fc"} in [{k: r[k] for k in ("op_type", "op_name")} for r in rows]
    assert all(r["time_ns"] > 0 for r in rows if r["op_type"] in ("Conv", "MatMul"))
    assert types.index("Conv") < types.index("MatMul")  # execution order
    adapter.infer()  # the timed session is untouched and still answers the same
    np.testing.assert_allclose(adapter.outputs()[0], expected, rtol=1e-5)
    assert not list(tmp_path.glob("*.json"))  # the profile file went with its temporary directory


# --- OpenCV ---------------------------------------------------------------------------------------------------

def test_opencv_timings_are_matched_to_layers_by_position():
    layers = [("Convolution", "conv1"), ("ReLU", "relu1"), ("MatMul", "fc"), ("Identity", "y")]
    ticks = [2_000.0, 0.0, 500.0, 10.0]  # summed over the runs; a 1 GHz tick clock: 1 tick = 1 ns
    assert cv_adapter.layer_events(layers, ticks, 1e9) == [("Convolution", "conv1", 2000.0), ("ReLU", "relu1", 0.0),
                                                           ("MatMul", "fc", 500.0), ("Identity", "y", 10.0)]
    assert cv_adapter.layer_events(layers[:1], [3.0], 1e6) == [("Convolution", "conv1", 3000.0)]
    with pytest.raises(NotProfiled, match="5 layer timings for 4 layers"):
        cv_adapter.layer_events(layers, ticks + [1.0], 1e9)


@pytest.mark.skipif(not _installed("cv2"), reason="cv2 (opencv-python-headless) is not installed in this venv")
def test_opencv_profiles_each_layer_it_runs(tmp_path):
    from edgeorch.bench.adapters.opencv import OpenCV

    adapter = OpenCV()
    adapter.load(conv_onnx(tmp_path / "tiny.onnx"), 0)
    adapter.prepare()
    rows = profiled(adapter)
    convs = [r for r in rows if "conv" in r["op_type"].lower()]
    assert [r["op_name"] for r in convs] == ["conv1", "conv2"], rows  # OpenCV 4's "onnx_node!" prefix is dropped
    assert all(r["time_ns"] > 0 for r in convs)
    assert any(r["op_type"] in ("MatMul", "Gemm", "InnerProduct") and r["op_name"] == "fc" for r in rows), rows
    # OpenCV 4 lists a Relu it fused into the convolution as a layer of 0 ns; OpenCV 5 drops it
    assert all(r["time_ns"] == 0 for r in rows if r["op_type"] == "ReLU")


# --- PyTorch --------------------------------------------------------------------------------------------------

def row(key, self_cpu_us, self_device_us=0, device_type="DeviceType.CPU"):
    return SimpleNamespace(key=key, self_cpu_time_total=self_cpu_us, self_device_time_total=self_device_us,
                           device_type=device_type)


def test_pytorch_rows_use_self_time_and_skip_the_profilers_own():
    rows = [row("ProfilerStep#0", 900), row("forward", 3), row("aten::conv2d", 2), row("aten::_convolution", 40),
            row("aten::relu", 5), row("[memory]", 0)]
    assert torch_adapter.op_events(rows) == [("forward", "forward", 3000.0), ("aten::conv2d", "aten::conv2d", 2000.0),
                                             ("aten::_convolution", "aten::_convolution", 40_000.0),
                                             ("aten::relu", "aten::relu", 5000.0)]
    # on CUDA: the GPU time of the kernels each op launched itself; kernels' own rows and launch-free ops are out
    cuda = [row("aten::cudnn_convolution", 30, 400), row("void implicit_gemm<...>", 0, 400, "DeviceType.CUDA"),
            row("aten::view", 2, 0), row("cudaLaunchKernel", 8, 0), row("aten::relu", 4, 20)]
    assert torch_adapter.op_events(cuda, cuda=True) == [("aten::cudnn_convolution", "aten::cudnn_convolution",
                                                         400_000.0), ("aten::relu", "aten::relu", 20_000.0)]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit: what edgeorch exports all the same
def test_pytorch_profiles_a_torchscript_module(tmp_path):
    torch = pytest.importorskip("torch", reason="torch (the models extra) is not installed")
    from edgeorch.bench.adapters.pytorch import PyTorch

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.conv2 = torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.Conv2d(16, 16, 3, padding=1)
            self.fc = torch.nn.Linear(16 * 48 * 48, 10)

        def forward(self, x):
            return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).flatten(1))

    # big enough that the convolutions, not the profiler's few microseconds per op, make up the time
    path = tmp_path / "net.pt"
    torch.jit.save(torch.jit.script(Net().eval()), str(path))
    adapter = PyTorch({"device": "cpu"})
    adapter.load(str(path), 0)  # 0: leave this process's torch threads as they are
    adapter.reshape({})
    adapter.feed([np.random.default_rng(0).standard_normal((1, 3, 48, 48)).astype(np.float32)])
    rows = profiled(adapter)
    keys = [r["op_type"] for r in rows]
    assert all(r["op_type"] == r["op_name"] for r in rows)
    assert {"aten::conv2d", "aten::_convolution"} & set(keys), keys
    assert "aten::relu" in keys and not [k for k in keys if k.startswith("ProfilerStep")]
    assert keys.index("aten::conv2d") < keys.index("aten::relu")  # first seen first
    assert sum(r["time_ns"] for r in rows if "conv" in r["op_type"]) > 0
    adapter.infer()
    assert adapter.outputs()[0].shape == (1, 10)


# --- TensorFlow -----------------------------------------------------------------------------------------------

def xspace(lines):
    """An XSpace-like object: one /host:CPU plane of `lines` {name: [(event name, offset ps, duration ps)]}."""
    names = sorted({event[0] for events in lines.values() for event in events} | {"pruned"})
    metadata = {i: SimpleNamespace(name=n) for i, n in enumerate(names)}
    ids = {m.name: i for i, m in metadata.items()}
    plane = SimpleNamespace(name="/host:CPU", event_metadata=metadata, lines=[
        SimpleNamespace(name=name, timestamp_ns=1000 * k, events=[
            SimpleNamespace(metadata_id=ids[e], offset_ps=start, duration_ps=dur) for e, start, dur in events])
        for k, (name, events) in enumerate(lines.items())])
    other = SimpleNamespace(name="/device:GPU:0", event_metadata={0: SimpleNamespace(name="gpu:Kernel")},
                            lines=[SimpleNamespace(name="s", timestamp_ns=0, events=[
                                SimpleNamespace(metadata_id=0, offset_ps=0, duration_ps=10 ** 9)])])
    return SimpleNamespace(planes=[plane, other])


def test_tensorflow_trace_keeps_op_kernels_in_start_order_with_self_times():
    space = xspace({
        "python": [("pruned", 0, 9_000_000), ("EagerLocalExecute: __inference_pruned_22", 10, 8_000_000),
                   ("KernelAndDeviceFunc::Run", 20, 7_000_000)],
        # a second thread: its timestamp is 1 us later, so its Relu starts after the first thread's Conv2D
        "tf_Compute/1": [("ExecutorState::Process", 0, 5_000_000), ("Conv2D:_MklNativeConv2D", 100, 3_000_000),
                         ("call:PartitionedCall#id=3,iter=0#", 4_000_000, 500_000),
                         ("call/inner:Mul", 4_100_000, 200_000)],
        "tf_Compute/2": [("Relu:Relu", 0, 20_000)],
    })
    assert tf_adapter.xspace_op_events(space) == [
        ("_MklNativeConv2D", "Conv2D", 3000.0), ("Relu", "Relu", 20.0),
        ("PartitionedCall", "call", 300.0), ("Mul", "call/inner", 200.0)]  # the call op without its body


def frozen_graph(tf, path):
    """A frozen GraphDef as edgeorch's tf-graph exports are: two convolutions and a MatMul, constants inlined."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    rng = np.random.default_rng(0)
    w1, w2 = (tf.constant((rng.standard_normal(s) * 0.1).astype(np.float32)) for s in ((3, 3, 3, 16), (3, 3, 16, 16)))
    m = tf.constant((rng.standard_normal((48 * 48 * 16, 10)) * 0.1).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([1, 48, 48, 3], tf.float32, name="x")])
    def net(x):
        y = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME"))
        y = tf.nn.relu(tf.nn.conv2d(y, w2, 1, "SAME"))
        return tf.matmul(tf.reshape(y, [1, -1]), m)

    graph = convert_variables_to_constants_v2(net.get_concrete_function()).graph.as_graph_def()
    path.write_bytes(graph.SerializeToString())
    return str(path)


def test_tensorflow_profiles_the_graph_function_it_times(tmp_path):
    tf = pytest.importorskip("tensorflow", reason="tensorflow (the models extra) is not installed")
    from edgeorch.bench.adapters.tensorflow import TensorFlow

    adapter = TensorFlow()
    adapter.load(frozen_graph(tf, tmp_path / "net.pb"), 0)  # 0: TensorFlow's threads cannot change once it ran
    adapter.prepare()
    rows = profiled(adapter)
    convs = [r for r in rows if "Conv2D" in r["op_type"]]
    assert len(convs) == 2 and all(r["time_ns"] > 0 for r in convs), rows
    assert any("MatMul" in r["op_type"] for r in rows), rows
    assert [r["op_name"] for r in rows].index(convs[0]["op_name"]) == 0  # execution order
    assert not list(tmp_path.glob("**/*.xplane.pb"))
    adapter.infer()
    assert adapter.outputs()[0].shape == (1, 10)


# --- Caffe (not installable here: a fake pycaffe Net) ---------------------------------------------------------

class FakeClock:
    def __init__(self):
        self.now = 0

    def __call__(self):
        return self.now


class FakeCaffeNet:
    """A pycaffe Net whose layers take known times on a fake clock; with or without Net._forward."""

    def __init__(self, clock, costs, has_step=True):
        self.clock, self.costs, self.calls = clock, costs, []
        self._layer_names = [name for name, _, _ in costs]
        self.layers = [SimpleNamespace(type=kind) for _, kind, _ in costs]
        if has_step:
            self._forward = self._step

    def _step(self, start, end):
        for i in range(start, end + 1):
            self.calls.append(self._layer_names[i])
            self.clock.now += self.costs[i][2]
        return 0.0

    def forward(self, start=None, end=None):
        names = self._layer_names
        self._step(names.index(start) if start else 0, names.index(end) if end else len(names) - 1)
        return {}


@pytest.mark.parametrize("has_step", [True, False])
def test_caffe_times_each_layer_alone_in_the_nets_order(has_step):
    clock = FakeClock()
    net = FakeCaffeNet(clock, [("data", "Input", 0), ("conv1", "Convolution", 900), ("relu1", "ReLU", 100),
                               ("fc", "InnerProduct", 300)], has_step)
    rows = caffe_adapter.time_layers(net, 3, clock=clock)
    assert rows == [{"op_type": "Input", "op_name": "data", "time_ns": 0.0},
                    {"op_type": "Convolution", "op_name": "conv1", "time_ns": 900.0},
                    {"op_type": "ReLU", "op_name": "relu1", "time_ns": 100.0},
                    {"op_type": "InnerProduct", "op_name": "fc", "time_ns": 300.0}]
    assert net.calls == ["data", "conv1", "relu1", "fc"] * 3


def test_caffe_adapter_profile_warms_up_then_times_its_net():
    clock_net = FakeCaffeNet(FakeClock(), [("data", "Input", 0), ("conv1", "Convolution", 5)])
    adapter = caffe_adapter.Caffe.__new__(caffe_adapter.Caffe)  # no pycaffe here: the net is the fake's
    adapter.net = clock_net
    rows = adapter.profile(2)
    assert [(r["op_type"], r["op_name"]) for r in rows] == [("Input", "data"), ("Convolution", "conv1")]
    assert clock_net.calls == ["data", "conv1"] * 3  # one whole forward first, then two timed passes
    assert all(r["time_ns"] >= 0 for r in rows)


# --- TensorRT (not installable here: the fakes of test_tensorrt_adapter) --------------------------------------

def test_tensorrt_layer_times_are_means_per_layer_in_report_order():
    reports = [("/conv1/Conv + /relu1/Relu", 0.5), ("Reformatting CopyNode for Input Tensor 0 to /fc/Gemm", 0.01),
               ("/fc/Gemm", 0.2)] * 2 + [("/conv1/Conv + /relu1/Relu", 0.8)]  # a third report of one layer only
    assert trt_adapter.layer_times(reports) == [
        {"op_type": "Conv+Relu", "op_name": "/conv1/Conv + /relu1/Relu", "time_ns": 600_000.0},
        {"op_type": "Reformat", "op_name": "Reformatting CopyNode for Input Tensor 0 to /fc/Gemm", "time_ns": 20e3 / 3},
        {"op_type": "Gemm", "op_name": "/fc/Gemm", "time_ns": 400e3 / 3}]
    assert trt_adapter.layer_times([("/fc/Gemm", 1.0)], {"/fc/Gemm": "CaskGemm"})[0]["op_type"] == "CaskGemm"
    assert trt_adapter.layer_times([]) == []


@pytest.mark.parametrize("name, kind", [
    ("/backbone/conv1/Conv", "Conv"), ("Conv_0", "Conv"), ("/conv/Conv + /act/Relu", "Conv+Relu"),
    ("Reformatting CopyNode for Output Tensor 0 to y", "Reformat"),
    ("{ForeignNode[/a/MatMul.../b/Add]}", "ForeignNode"),
    ("PWN(/act/Sigmoid, /act/Mul)", "PointWise"), ("(Unnamed Layer* 3) [Convolution]", "Convolution"),
    ("/head/MatMul_output_0", "MatMul")])
def test_tensorrt_layer_types_are_guessed_from_their_names(name, kind):
    assert trt_adapter.layer_type(name) == kind


def test_tensorrt_inspector_types_need_a_detailed_engine():
    detailed = '{"Layers": [{"Name": "/conv/Conv + /relu/Relu", "LayerType": "CaskConvolution"}, {"Name": "x"}]}'
    assert trt_adapter.inspector_layer_types(detailed) == {"/conv/Conv + /relu/Relu": "CaskConvolution"}
    assert trt_adapter.inspector_layer_types('{"Layers": ["/conv/Conv + /relu/Relu"]}') == {}
    assert trt_adapter.inspector_layer_types("not json") == {}


@pytest.mark.parametrize("bindings", [False, True])
def test_tensorrt_profiles_on_a_second_context_and_leaves_the_timed_one_alone(monkeypatch, tmp_path, bindings):
    from tests.unit.test_tensorrt_adapter import FakeGpu, adapter, fake_trt, loaded, onnx_model

    gpu = FakeGpu()
    trt = fake_trt(gpu, bindings=bindings)

    class IProfiler:
        def __init__(self):
            pass

    trt.IProfiler = IProfiler
    model = tmp_path / "net.onnx"
    model.write_bytes(onnx_model([1, 3]))
    a = adapter(monkeypatch, trt, gpu)
    loaded(a, model)
    main = a.context
    layers = (("/conv/Conv + /relu/Relu", 0.25), ("/fc/Gemm", 0.05))
    made = []

    class Reporting(type(main)):  # a context that reports each layer's time to its profiler, as TensorRT's does
        profiler = None

        def _report(self, ok):
            if self.profiler is not None:
                for name, ms in layers:
                    self.profiler.report_layer_time(name, ms)
            return ok

        def execute_async_v3(self, stream):
            return self._report(super().execute_async_v3(stream))

        def execute_async_v2(self, bindings, stream_handle):
            return self._report(super().execute_async_v2(bindings, stream_handle))

    def create_execution_context():
        made.append(Reporting())
        return made[-1]

    monkeypatch.setattr(a.engine, "create_execution_context", create_execution_context, raising=False)
    rows = a.profile(4)
    assert rows == [{"op_type": "Conv+Relu", "op_name": "/conv/Conv + /relu/Relu", "time_ns": 250_000.0},
                    {"op_type": "Gemm", "op_name": "/fc/Gemm", "time_ns": 50_000.0}]
    assert a.context is main and getattr(main, "profiler", None) is None  # the timed context never had one
    assert len(made) == 1 and isinstance(made[0].profiler, IProfiler)
    if not bindings:  # the profiling context ran on the timed one's buffers
        assert made[0].addresses == main.addresses
    assert gpu.calls.count("execute_v2" if bindings else "execute_v3") == 5  # one warm-up, four profiled
    a.infer()
    np.testing.assert_array_equal(a.outputs()[0], 2 * a._inputs[0][1])
