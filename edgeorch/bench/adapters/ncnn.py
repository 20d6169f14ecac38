"""Tencent's ncnn (its Python module, CPU) on a text .param model with its .bin weights beside it.

An ncnn blob has no batch axis (a Mat is c x h x w, or fewer dims): edgeorch shapes every input and output as
PyTorch would, batch first, and ncnn runs one image per inference, so that axis is always 1. Board side: the
standard library, numpy and ncnn only; Python 3.9+.
"""

import importlib
import os

import numpy as np

from ..signature import Declared, InputError
from .base import Adapter, FrameworkMissing, ModelLoadError, NotProfiled, check_options, distribution_version

MAGIC = "7767517"  # the first line of every text .param ncnn reads
BINARY_MAGIC = (7767517).to_bytes(4, "little")  # the first bytes of a binary one (ncnn2mem's .param.bin)
PARAM_MAX_BYTES = 16 << 20  # a .param is the graph alone, in text: SqueezeNet's is 4 KB, a large LLM's under 1 MB

# What ncnn computes in on the CPU: fp32 agrees with PyTorch; fp16 is ncnn's own default where the CPU has fp16
# arithmetic (ARMv8.2 asimdhp, e.g. a Pi 5's Cortex-A76), storage-only or nothing on other CPUs.
_PRECISIONS = {"fp32": False, "fp16": True}


class Layer:
    """One layer line of a .param: type, name, its input and output blobs, and its k=v params as written."""

    __slots__ = ("type", "name", "bottoms", "tops", "params")

    def __init__(self, type_, name, bottoms, tops, params):
        self.type, self.name, self.bottoms, self.tops, self.params = type_, name, bottoms, tops, params


def parse_param(text):
    """The [Layer] of a text .param; ValueError saying what is wrong for anything else."""
    lines = [line.split() for line in text.splitlines()]
    lines = [words for words in lines if words]
    if not lines or lines[0] != [MAGIC]:
        first = " ".join(lines[0])[:40] if lines else ""
        raise ValueError(f"its first line is {first!r}, not ncnn's magic number {MAGIC}")
    if len(lines) < 2 or len(lines[1]) != 2 or not all(w.isdigit() for w in lines[1]):
        raise ValueError("its second line is not the layer and blob counts")
    count = int(lines[1][0])
    layers = []
    for number, words in enumerate(lines[2:], 3):
        if len(words) < 4 or not words[2].isdigit() or not words[3].isdigit():
            raise ValueError(f"line {number} is not a layer (TYPE NAME INPUTS OUTPUTS BLOBS... K=V...)")
        inputs, outputs = int(words[2]), int(words[3])
        blobs = words[4:4 + inputs + outputs]
        if len(blobs) < inputs + outputs or any("=" in b for b in blobs):
            raise ValueError(f"line {number} names fewer blobs than its layer {words[1]} takes and gives")
        params = {}
        for item in words[4 + inputs + outputs:]:
            key, sep, value = item.partition("=")
            if not sep or not key.lstrip("-").isdigit():
                raise ValueError(f"line {number}: {item!r} of layer {words[1]} is not a KEY=VALUE param")
            params[int(key)] = value
        layers.append(Layer(words[0], words[1], blobs[:inputs], blobs[inputs:], params))
    if len(layers) != count:
        raise ValueError(f"its header says {count} layers, and it has {len(layers)}")
    return layers


def input_dims(layer):
    """The dims an Input layer declares, batch first (1), or None where it declares none.

    Its params 0=w 1=h 11=d 2=c are all optional: the rank is that of the outermost key present (w; h, w; c, h, w;
    c, d, h, w), and a dimension given as 0, or left out inside that rank, is left to --input-shape (None)."""
    params = layer.params
    keys = (2, 11, 1, 0) if 11 in params else (2, 1, 0) if 2 in params else (1, 0) if 1 in params else \
        (0,) if 0 in params else ()
    if not keys:
        return None
    dims = []
    for key in keys:  # outermost first, as numpy and PyTorch order them
        try:
            value = int(params.get(key, "0"))
        except ValueError:
            raise ValueError(f"Input layer {layer.name} has {key}={params[key]!r}, not a whole number") from None
        dims.append(value if value > 0 else None)
    return (1, *dims)


def declared_inputs(layers):
    """[Declared] of the Input layers among `layers`, in order: float32, batch first; dims None where undeclared."""
    return [Declared(layer.tops[0] if layer.tops else layer.name, input_dims(layer), "float32")
            for layer in layers if layer.type == "Input"]


def param_inputs(text):
    """[Declared] of a .param's inputs (see declared_inputs)."""
    return declared_inputs(parse_param(text))


def read_param(path):
    """The text of a .param file; ValueError naming what it is instead (empty, binary, not text)."""
    with open(path, "rb") as f:
        data = f.read(PARAM_MAX_BYTES + 1)
    if len(data) > PARAM_MAX_BYTES:
        raise ValueError(f"it is over {PARAM_MAX_BYTES >> 20} MB: a .param is the graph in text, the weights are in "
                         "the .bin")
    if not data:
        raise ValueError("the file is empty")
    if data[:4] == BINARY_MAGIC:
        raise ValueError("it is a binary .param (ncnn2mem's .param.bin), whose blobs are named only in the C header "
                         "ncnn2mem wrote beside it; edgeorch feeds inputs by name: use the text .param")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("it is not text (a text .param starts with the line 7767517)") from None


def companion(path):
    """The .bin ncnn reads beside a .param: the same name, its own suffix (x.param -> x.bin)."""
    root, _ = os.path.splitext(str(path))
    return root + ".bin"


class Ncnn(Adapter):
    """ncnn on the CPU (Vulkan off), fp32 unless --option precision=fp16."""

    name = "ncnn"
    OPTIONS = {"precision": tuple(_PRECISIONS)}

    def __init__(self, options=None):
        self.options = check_options(options, **self.OPTIONS)
        try:
            self.ncnn = importlib.import_module("ncnn")
        except ImportError as e:
            raise FrameworkMissing(f"ncnn is not importable ({e}): install the ncnn wheel") from e
        self.precision = self.options.get("precision", "fp32")
        self.net = None

    def _option(self, option, threads):
        """ncnn's options as edgeorch runs it: ncnn's defaults but Vulkan off and the precision asked for."""
        if threads:
            option.num_threads = int(threads)  # else ncnn's own default, its count of big cores
        option.use_vulkan_compute = False
        fp16 = _PRECISIONS[self.precision]
        option.use_fp16_storage = option.use_fp16_packed = option.use_fp16_arithmetic = fp16
        option.use_bf16_storage = False
        return option

    def info(self, threads):
        option = self.net.opt if self.net is not None else self._option(self.ncnn.Option(), threads)
        flags = ("use_vulkan_compute", "use_fp16_storage", "use_fp16_packed", "use_fp16_arithmetic",
                 "use_bf16_storage", "use_packing_layout", "use_winograd_convolution", "use_sgemm_convolution",
                 "lightmode")
        # What ncnn found in this CPU: fp16 arithmetic, say, runs only where it has it (ARMv8.2 asimdhp)
        cpu = sorted(name[len("cpu_support_"):] for name in dir(self.ncnn)
                     if name.startswith("cpu_support_") and getattr(self.ncnn, name)())
        return {"name": self.name, "runtime": "ncnn", "version": distribution_version(("ncnn",), self.ncnn.__version__),
                "threads": threads,
                "options": {"precision": self.precision, "threads_used": int(option.num_threads),
                            **{flag: bool(getattr(option, flag)) for flag in flags if hasattr(option, flag)},
                            "cpu_features": cpu}}

    def load(self, path, threads):
        weights = companion(path)
        try:
            layers = parse_param(read_param(path))
            self.declared = declared_inputs(layers)
        except (OSError, ValueError) as e:
            raise ModelLoadError(f"{path} is not an ncnn .param file: {e}") from e
        if not self.declared:
            raise ModelLoadError(f"{path} has no Input layer: ncnn would not know what to feed")
        unknown = sorted({layer.type for layer in layers if self.ncnn.layer_to_index(layer.type) < 0})
        if unknown:
            raise ModelLoadError(f"{path} has layers of types this ncnn {self.ncnn.__version__} does not know: "
                                 f"{', '.join(unknown)} (operators its converter could not map to ncnn)")
        if not os.path.isfile(weights):
            raise ModelLoadError(f"{path} needs its weights {os.path.basename(weights)} beside it, and {weights} "
                                 "does not exist")
        net = self.ncnn.Net()
        self._option(net.opt, threads)
        if net.load_param(str(path)) != 0:
            raise ModelLoadError(f"ncnn could not read {path} (Net.load_param failed; ncnn's reason is on stderr)")
        if net.load_model(weights) != 0:
            raise ModelLoadError(f"ncnn could not read the weights {weights} for {path} (Net.load_model failed: "
                                 "a .bin of another model, or cut short)")
        self.net, self.names, self.output_names = net, [d.name for d in self.declared], list(net.output_names())

    def inputs(self):
        return self.declared

    def reshape(self, shapes):
        for name in self.names:
            check_shape(name, shapes[name])

    def describe(self):
        return {"outputs": [{"name": n, "dtype": "float32"} for n in self.output_names]}

    def feed(self, arrays):
        # Copies made once, outside the timed runs: the Mats wrap them, so they are kept as long as the Mats.
        self.fed, self.mats = [], []
        for name, array in zip(self.names, arrays):
            check_shape(name, array.shape)
            image = np.ascontiguousarray(array[0], dtype=np.float32)
            self.fed.append(image)
            self.mats.append(self.ncnn.Mat(image))

    def infer(self):
        ex = self.net.create_extractor()
        for name, mat in zip(self.names, self.mats):
            ex.input(name, mat)
        last = []
        for name in self.output_names:
            status, mat = ex.extract(name)
            if status != 0:
                raise RuntimeError(f"ncnn could not compute output {name} (Extractor.extract returned {status})")
            last.append(mat)
        self.last = last

    def outputs(self):
        # ncnn drops the batch axis; put it back, so each output is shaped as PyTorch's (1000 -> 1x1000).
        return [np.array(mat, dtype=np.float32)[np.newaxis] for mat in self.last]

    def profile(self, runs):
        raise NotProfiled("ncnn's Python module exposes no per-layer times: an ncnn built with NCNN_BENCHMARK=ON "
                          "prints each layer's time to stderr, and its benchncnn tool times whole models")


def check_shape(name, shape):
    """InputError unless `shape` is one image, batch first, of at most 4 more dims (what an ncnn Mat holds)."""
    shape = tuple(shape)
    if len(shape) < 2 or shape[0] != 1:
        raise InputError(f"input {name!r} of shape {'x'.join(map(str, shape)) or 'scalar'}: ncnn runs one image per "
                         f"inference and edgeorch puts the batch first, so give 1x... (e.g. --input-shape "
                         f"{name}=1x3x224x224)")
    if len(shape) > 5:
        raise InputError(f"input {name!r} has {len(shape) - 1} dims after the batch, and an ncnn Mat holds at most 4")
