"""Full TensorFlow running a frozen GraphDef (.pb), without Keras."""

import importlib
import os

from ..signature import Declared
from .base import Adapter, FrameworkMissing, ModelLoadError, check_options, one_line


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


def _dims(shape):
    """A TensorShapeProto's dimensions, None for each -1 (set at run time); None when even the rank is unknown."""
    if shape.unknown_rank:
        return None
    return tuple(None if d.size < 0 else int(d.size) for d in shape.dim)
