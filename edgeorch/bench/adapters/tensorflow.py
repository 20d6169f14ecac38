"""Full TensorFlow running a frozen GraphDef (.pb), without Keras."""

import glob
import importlib
import os
import re
import shutil
import tempfile

from ..signature import Declared
from .base import (
    Adapter,
    FrameworkMissing,
    ModelLoadError,
    NotProfiled,
    check_options,
    mean_per_op,
    one_line,
    profile_runs,
)

# Where TensorFlow keeps the XSpace protobuf its profiler writes (tensorflow.tsl since 2.12; older layouts after)
_XPLANE_MODULES = ("tensorflow.tsl.profiler.protobuf.xplane_pb2", "tsl.profiler.protobuf.xplane_pb2",
                   "tensorflow.core.profiler.protobuf.xplane_pb2")
# The executor's trace of one op kernel: "node_name:OpType", sometimes with "#key=value,...#" after it
_OP_EVENT = re.compile(r"^([A-Za-z0-9.][A-Za-z0-9_.\-/>]*):([A-Za-z_][A-Za-z0-9_]*)$")


class TensorFlow(Adapter):
    """Full TensorFlow running a frozen GraphDef (.pb) as a graph function on the CPU, without Keras."""

    name = "tensorflow"

    def __init__(self, options=None):
        self.options = check_options(options)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # read at import: no page of C++ info lines
        try:
            self.tf = importlib.import_module("tensorflow")
        except ImportError as e:
            raise FrameworkMissing("tensorflow is not installed") from e

    def info(self, threads):
        tf = self.tf
        return {"name": self.name, "runtime": "tensorflow", "version": tf.__version__, "threads": threads,
                "options": {"device": "cpu", "graph": "frozen GraphDef", "intra_op_threads":
                            tf.config.threading.get_intra_op_parallelism_threads() or "default",
                            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default")}}

    def load(self, path, threads):
        tf = self.tf
        if threads:  # before the first op runs, or TensorFlow refuses
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        try:
            with open(path, "rb") as f:
                graph = tf.compat.v1.GraphDef.FromString(f.read())
        except Exception as e:  # protobuf's DecodeError
            raise ModelLoadError(f"not a TensorFlow GraphDef: {e}") from e
        consumed = {i.split(":")[0].lstrip("^") for node in graph.node for i in node.input}
        self.declared = [Declared(n.name, _dims(n.attr["shape"].shape) if "shape" in n.attr else None,
                                  tf.dtypes.as_dtype(n.attr["dtype"].type).name)
                         for n in graph.node if n.op == "Placeholder"]
        outputs = [n.name for n in graph.node
                   if n.name not in consumed and n.op not in ("Const", "NoOp", "Placeholder")]
        if not self.declared or not outputs:
            raise ModelLoadError(f"the graph has {len(self.declared)} placeholders and {len(outputs)} outputs")
        try:
            imported = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph, name=""), [])
            self.run = imported.prune([f"{d.name}:0" for d in self.declared], [f"{n}:0" for n in outputs])
        except (ValueError, tf.errors.OpError) as e:
            raise ModelLoadError(one_line(e)) from e
        self.output_names = outputs

    def inputs(self):
        return self.declared

    def describe(self):
        return {"outputs": [{"name": n} for n in self.output_names]}

    def feed(self, arrays):
        self.feeds = [self.tf.constant(a) for a in arrays]

    def infer(self):
        self.last = self.run(*self.feeds)

    def outputs(self):
        return [t.numpy() for t in (self.last if isinstance(self.last, (list, tuple)) else [self.last])]

    def profile(self, runs):
        """Per graph node, from TensorFlow's profiler (tf.profiler.experimental) tracing the very function the timed
        runs call, over `runs` inferences after one warm-up: the executor's trace of each op kernel, parsed from the
        XSpace it writes to a temporary directory. The op type is the kernel that ran (oneDNN builds run Conv2D as
        _MklNativeConv2D); the time is the kernel's self time. TensorFlow runs cheap kernels (Const, Identity,
        Reshape...) inline without tracing them: they are not listed, and the rows add up to less than a run,
        which also pays the Python call of the function."""
        runs = profile_runs(runs)
        tf = self.tf
        xplane_pb2 = None
        for name in _XPLANE_MODULES:
            try:
                xplane_pb2 = importlib.import_module(name)
                break
            except ImportError:
                continue
        if xplane_pb2 is None:
            raise NotProfiled(f"this TensorFlow ({tf.__version__}) has no XSpace protobuf module to read its "
                              "profiler's trace with; TensorBoard's profile plugin (xprof) shows it")
        self.infer()
        directory = tempfile.mkdtemp(prefix="edgeorch-tf-profile-")
        try:
            options = tf.profiler.experimental.ProfilerOptions(host_tracer_level=2, python_tracer_level=0,
                                                               device_tracer_level=0)
            tf.profiler.experimental.start(directory, options=options)
            try:
                for _ in range(runs):
                    self.infer()
            finally:
                tf.profiler.experimental.stop()
            paths = sorted(glob.glob(os.path.join(directory, "**", "*.xplane.pb"), recursive=True))
            if not paths:
                raise NotProfiled("TensorFlow's profiler wrote no trace (*.xplane.pb)")
            with open(paths[0], "rb") as f:
                space = xplane_pb2.XSpace.FromString(f.read())
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return mean_per_op(xspace_op_events(space), runs)


def _dims(shape):
    """A TensorShapeProto's dimensions, None for each -1 (set at run time); None when even the rank is unknown."""
    if shape.unknown_rank:
        return None
    return tuple(None if d.size < 0 else int(d.size) for d in shape.dim)


def xspace_op_events(space):
    """(op type, node name, self ns) of each op kernel the executor traced in an XSpace (TensorFlow's profiler
    output), in the order they started. An op traced inside another one on the same thread (a function call op
    and the ops of its body) is subtracted from it, so nothing is counted twice."""
    found = []  # [start ps, end ps, op type, node name, self ps]
    for plane in space.planes:
        if not plane.name.startswith("/host:"):
            continue
        for line in plane.lines:
            stack = []
            ops = []
            for event in line.events:
                match = _OP_EVENT.match(plane.event_metadata[event.metadata_id].name.split("#", 1)[0])
                if match:
                    start = int(line.timestamp_ns) * 1000 + int(event.offset_ps)
                    ops.append([start, start + int(event.duration_ps), match.group(2), match.group(1),
                                int(event.duration_ps)])
            for op in sorted(ops, key=lambda o: (o[0], -o[1])):
                while stack and stack[-1][1] <= op[0]:
                    stack.pop()
                if stack and op[1] <= stack[-1][1]:
                    stack[-1][4] -= op[4]
                stack.append(op)
            found.extend(ops)
    found.sort(key=lambda o: o[0])
    return [(op_type, name, max(self_ps, 0) / 1000.0) for _, _, op_type, name, self_ps in found]
