"""What a model takes: its declared inputs, read from the file without the framework (ONNX, TFLite, Darknet .cfg,
edgeorch's PyTorch archives), and the shapes and files a user gives for them, resolved the same way on the host
(before anything runs) and on the board (by the entrypoint).

Standard library only (a .npy header is read without numpy), Python 3.8+: the host imports it as
edgeorch.bench.signature, boards as edgeorch_bench.signature.
"""

import ast
import json
import mmap
import os
import re
import struct
import zipfile
from collections import namedtuple

from .protowire import fields


class InputError(ValueError):
    """A model input that cannot be fed as asked; the message names the input and the fix."""


# dims: a tuple whose entries are ints (fixed), or None or a name (dynamic: set at run time), or None as a whole
# when the file does not record the rank. dtype: a numpy dtype name, or None where the file does not say
# (fed as float32). quantized: a float input may be fed to it (the adapter quantizes it). resizable: fixed dims
# may be changed by --input-shape (Caffe reshapes its input blobs).
Declared = namedtuple("Declared", "name dims dtype quantized resizable", defaults=(False, False))

EXAMPLE = "input=1x3x224x224"


def dynamic(dim):
    """True for a dimension the model leaves to run time."""
    return not isinstance(dim, int) or dim < 0


def format_shape(shape):
    """1x3x224x224 (what --input-shape takes); `scalar` for the shape ()."""
    return "x".join(str(d) for d in shape) if len(shape) else "scalar"


def _declared_text(dims):
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _template(decl):
    return "x".join(f"<{d}>" if isinstance(d, str) else "<?>" if dynamic(d) else str(d) for d in decl.dims) \
        or "scalar"


# --- what the user gives: --input-shape NAME=DIMS, --input [NAME=]FILE --------------------------------------

def parse_shape(text):
    """NAME=DIMS (DIMS: 1x3x224x224, or `scalar`) -> (name, shape); InputError naming the option and the fix."""
    name, sep, dims = str(text).partition("=")
    fix = f"write it as NAME=DIMS, the dimensions joined by x, e.g. --input-shape {EXAMPLE}"
    if not sep or not name.strip():
        raise InputError(f"--input-shape {text!r} is not NAME=DIMS: {fix}")
    if dims.strip() == "scalar":
        return name, ()
    parts = dims.split("x")
    if not all(p.strip().isdigit() and int(p) >= 1 for p in parts):
        raise InputError(f"--input-shape {text!r}: {dims!r} is not dimensions of at least 1 joined by x: {fix}")
    return name, tuple(int(p) for p in parts)


def parse_shapes(values):
    """The --input-shape values -> {name: shape}; InputError for a bad or repeated one."""
    shapes = {}
    for value in values or ():
        name, shape = parse_shape(value)
        if name in shapes and shapes[name] != shape:
            raise InputError(f"--input-shape gives {name} twice ({format_shape(shapes[name])} and "
                             f"{format_shape(shape)}): give each input once")
        shapes[name] = shape
    return shapes


def parse_input(text):
    """--input NAME=FILE -> (NAME, FILE); a bare FILE -> ('', FILE), the model's first input.

    Split at the first '=' when what comes before it is not a path (has no '/'): a file whose own name holds
    a '=' is given as NAME=FILE.
    """
    name, sep, path = str(text).partition("=")
    if sep and name and "/" not in name:
        if not path:
            raise InputError(f"--input {text!r} names no file: write NAME=FILE.npy, e.g. --input input=x.npy")
        return name, path
    return "", str(text)


def parse_inputs(values):
    """The --input values -> {name or '' (the first input): file}; InputError when one input gets two files."""
    files = {}
    for value in values or ():
        name, path = parse_input(value)
        if name in files:
            raise InputError(f"--input gives {'the first input' if not name else name} two files "
                             f"({files[name]} and {path}): give each input one file")
        files[name] = path
    return files


_NPY_KINDS = {"f": "float", "i": "int", "u": "uint"}


def npy_header(path):
    """(shape, numpy dtype name) of a .npy file, from its header; InputError if it is not one numpy can load."""
    try:
        with open(path, "rb") as f:
            head = f.read(10)
            if len(head) < 10 or head[:6] != b"\x93NUMPY":
                raise ValueError("it does not start with the .npy magic bytes (save it with numpy.save)")
            # version 1 has a 2-byte header length, versions 2 and 3 a 4-byte one
            size = struct.unpack("<H", head[8:10])[0] if head[6] == 1 else \
                struct.unpack("<I", head[8:10] + f.read(2))[0]
            header = ast.literal_eval(f.read(size).decode("latin1"))
        descr, shape = header["descr"], tuple(int(d) for d in header["shape"])
    except (OSError, ValueError, SyntaxError, KeyError, TypeError, struct.error) as e:
        raise InputError(f"--input {path} is not a readable .npy file: {e}") from e
    if not isinstance(descr, str) or len(descr) < 3 or descr[0] not in "<|=":
        return shape, str(descr)  # big-endian or a record type: named as numpy writes it, fed to nothing
    kind, width = descr[1], descr[2:]
    if kind == "b" and width == "1":
        return shape, "bool"
    if kind in _NPY_KINDS and width.isdigit():
        return shape, f"{_NPY_KINDS[kind]}{8 * int(width)}"
    return shape, descr


# --- resolving them against the model ------------------------------------------------------------------------

def resolve(declared, shapes=None, files=None):
    """[{name, shape, dtype, source ('seeded' or 'file', then with its path)}] for every declared input: its shape
    from --input-shape, its --input file or the model, fed from that file or seeded data. InputError, naming the
    input and the option to pass, when an input is dynamic and no shape is given, or a given shape, file or name
    does not fit the model."""
    shapes, files = dict(shapes or {}), dict(files or {})
    names = [d.name for d in declared]
    listed = ", ".join(names) or "none"
    for option, given in (("--input-shape", shapes), ("--input", files)):
        unknown = [n for n in given if n and n not in names]
        if unknown:
            raise InputError(f"{option} names {unknown[0]!r}, which is not an input of the model; its inputs "
                             f"are: {listed}")
    if "" in files:
        if not declared:
            raise InputError(f"--input {files['']}: the model has no inputs to feed")
        if names[0] in files:
            raise InputError(f"--input gives {names[0]} (the first input) two files: {files['']} and "
                             f"{files[names[0]]}")
        files[names[0]] = files.pop("")
    resolved = []
    for decl in declared:
        shape, source, dtype = shapes.get(decl.name), "seeded", decl.dtype
        if decl.name in files:
            path = files[decl.name]
            file_shape, file_dtype = npy_header(path)
            if shape is not None and tuple(shape) != file_shape:
                raise InputError(f"--input {decl.name}={path} holds shape {format_shape(file_shape)}, but "
                                 f"--input-shape gives {decl.name}={format_shape(shape)}: drop one or make them agree")
            quantized_float = decl.quantized and file_dtype.startswith("float")
            if decl.dtype is not None and file_dtype != decl.dtype and not quantized_float:
                raise InputError(f"--input {decl.name}={path} holds {file_dtype}, but input {decl.name!r} of the "
                                 f"model takes {decl.dtype}: save it as {decl.dtype} (array.astype('{decl.dtype}'))")
            shape, source, dtype = file_shape, "file", dtype or file_dtype
            _fits(decl, shape, f"--input {decl.name}={path} (shape {format_shape(shape)})")
        elif shape is not None:
            _fits(decl, shape, f"--input-shape {decl.name}={format_shape(shape)}")
        elif decl.dims is None:
            raise InputError(f"input {decl.name!r} of the model has no declared shape (the file does not record "
                             f"it): pass --input-shape {decl.name}=DIMS, e.g. --input-shape {decl.name}=1x3x224x224")
        elif any(dynamic(d) for d in decl.dims):
            raise InputError(f"input {decl.name!r} of the model has dynamic dimensions {_declared_text(decl.dims)}, "
                             f"which edgeorch does not guess: pass --input-shape {decl.name}={_template(decl)} "
                             "with a number for each <...>")
        else:
            shape = tuple(decl.dims)
        item = {"name": decl.name, "shape": [int(d) for d in shape], "dtype": dtype or "float32", "source": source}
        resolved.append({**item, "path": files[decl.name]} if source == "file" else item)
    return resolved


def _fits(decl, shape, what):
    if decl.dims is None:
        return
    if len(shape) != len(decl.dims):
        raise InputError(f"{what}: input {decl.name!r} of the model has {len(decl.dims)} dimensions "
                         f"{_declared_text(decl.dims)}, not {len(shape)}")
    for k, (want, got) in enumerate(zip(decl.dims, shape)):
        if not dynamic(want) and want != got and not decl.resizable:
            raise InputError(f"{what}: dimension {k} of input {decl.name!r} is fixed at {want} in the model "
                             f"{_declared_text(decl.dims)}: give {_template(decl)}")


# --- reading the declared inputs from model files ------------------------------------------------------------

_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
                10: "float16", 11: "float64", 12: "uint32", 13: "uint64"}


def mapped(path, read, kind):
    """read(view) of the file's bytes, mapped rather than read: only the pages parsed become resident, so a
    500 MB model does not add 500 MB to the process (a Pi 3 has 1 GB). A file that does not parse is a ValueError
    saying it is not a `kind` file; an InputError (a model edgeorch cannot feed) passes as it is."""
    not_one = f"not a{'n' if kind[0] in 'AEIOU' else ''} {kind} file"
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise ValueError(f"{not_one}: the file is empty")
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        return read(memoryview(data))
    except InputError:
        raise
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{not_one}: {e}") from e
    finally:
        try:
            data.close()
        except BufferError:  # a view is still referenced (by a traceback): the mapping goes with it
            pass


def onnx_inputs(path):
    """[Declared] of an ONNX model's graph inputs (its weights left out), read without the onnx package.

    A dimension is its dim_value, or its dim_param name, or None when neither is set; dims is None for an
    input without a shape.
    """
    def sub(message, number):  # the length-delimited fields `number` of a message
        return [v for n, w, v, _, _ in fields(message) if n == number and w == 2]

    def ints(message, number):
        return [v for n, w, v, _, _ in fields(message) if n == number and w == 0]

    def read(view):
        graph = sub(view, 7)  # ModelProto.graph
        if not graph:
            raise ValueError("it has no graph")
        # TensorProto.name of the initializers: old exports list the weights among the inputs
        weights = {bytes(name) for tensor in sub(graph[0], 5) for name in sub(tensor, 8)}
        inputs = []
        for info in sub(graph[0], 11):  # GraphProto.input: ValueInfoProto name=1, type=2
            name = b"".join(bytes(v) for v in sub(info, 1))
            if name in weights:
                continue
            tensor = [t for kind in sub(info, 2) for t in sub(kind, 1)]  # TypeProto.tensor_type
            elem = next((v for t in tensor for v in ints(t, 1)), None)  # elem_type
            shapes = [s for t in tensor for s in sub(t, 2)]  # TensorShapeProto
            dims = None
            if shapes:
                dims = []
                for dim in sub(shapes[0], 1):  # Dimension: dim_value=1, dim_param=2
                    value, param = ints(dim, 1), sub(dim, 2)
                    dims.append(value[0] if value and 0 < value[0] < 1 << 63 else
                                bytes(param[0]).decode() if param and len(param[0]) else None)
                dims = tuple(dims)
            if elem not in _ONNX_DTYPES:
                raise InputError(f"input {name.decode()!r} of the model has ONNX type {elem}, which edgeorch "
                                 "cannot feed (it feeds float, integer and bool tensors)")
            inputs.append(Declared(name.decode(), dims, _ONNX_DTYPES[elem]))
        return inputs

    return mapped(path, read, "ONNX")


# TensorType of tensorflow/compiler/mlir/lite/schema/schema.fbs -> numpy; STRING (5), COMPLEX, RESOURCE,
# VARIANT and INT4 have no input edgeorch can feed.
_TFLITE_DTYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 9: "int8",
                  10: "float64", 12: "uint64", 15: "uint32", 16: "uint16"}


def tflite_inputs(path):
    """[Declared] of a TFLite model's first subgraph's inputs: Tensor name, type, and shape_signature (-1:
    dynamic), else shape; read from the flatbuffer without the runtime."""
    return mapped(path, _tflite_read, "TFLite")


class Flatbuffer:
    """Tables, fields, strings and vectors of a flatbuffer's bytes (a TFLite model, an ExecuTorch program or its
    ETDump), the root at `base` (4 where the buffer is size-prefixed); an offset outside them is a ValueError."""

    def __init__(self, b, base=0):
        self.b, self.base, self.end = b, base, len(b)

    def unpack(self, fmt, at):
        """The number of struct format `fmt` at byte `at`."""
        if not 0 <= at <= self.end - struct.calcsize(fmt):
            raise ValueError(f"an offset points to byte {at}, outside its {self.end} bytes")
        return struct.unpack_from(fmt, self.b, at)[0]

    def root(self):
        return self.base + self.unpack("<I", self.base)

    def field(self, table, i):
        """The position of field i of a table, or None where it is absent (it then has its default)."""
        vtable = table - self.unpack("<i", table)
        if 4 + 2 * i >= self.unpack("<H", vtable):
            return None
        offset = self.unpack("<H", vtable + 4 + 2 * i)
        return table + offset if offset else None

    def scalar(self, table, i, fmt, default):
        at = self.field(table, i)
        return default if at is None else self.unpack(fmt, at)

    def table(self, table, i):
        """The position of the table (or vector, or string) field i refers to, or None where it is absent."""
        at = self.field(table, i)
        return None if at is None else at + self.unpack("<I", at)

    def vector(self, table, i, width):
        """(start, length) of a vector field of `width`-byte items, or None where it is absent."""
        start = self.table(table, i)
        if start is None:
            return None
        n = self.unpack("<I", start)
        if start + 4 + n * width > self.end:
            raise ValueError(f"a {n}-item vector at byte {start} runs past its {self.end} bytes")
        return start + 4, n

    def string(self, table, i):
        v = self.vector(table, i, 1)
        return None if v is None else bytes(self.b[v[0]:v[0] + v[1]]).decode("utf-8", "replace")

    def tables(self, table, i):
        """The positions of the tables of a vector field; none where it is absent."""
        v = self.vector(table, i, 4) or (0, 0)
        return [at + self.unpack("<I", at) for at in range(v[0], v[0] + 4 * v[1], 4)]

    def int32s(self, table, i):
        """The int32 vector field i, or None where it is absent."""
        v = self.vector(table, i, 4)
        return None if v is None else [self.unpack("<i", v[0] + 4 * k) for k in range(v[1])]


def _tflite_read(b):
    """[Declared] of the inputs of the TFLite model in bytes `b`."""
    fb = Flatbuffer(b)
    if bytes(b[4:8]) != b"TFL3":
        raise ValueError("bytes 4-8 are not the TFL3 identifier")
    model = fb.unpack("<I", 0)
    subgraphs = fb.tables(model, 2)  # Model: version=0, operator_codes=1, subgraphs=2
    if not subgraphs:
        raise ValueError("it has no subgraphs")
    tensors = fb.tables(subgraphs[0], 0)  # SubGraph: tensors=0, inputs=1, outputs=2
    return [_tflite_input(fb, tensors, index) for index in fb.int32s(subgraphs[0], 1) or []]


def _tflite_input(fb, tensors, index):
    """Declared of tensor `index` of the subgraph whose `tensors` these are."""
    if not 0 <= index < len(tensors):
        raise ValueError(f"input tensor {index} is not among its {len(tensors)} tensors")
    tensor = tensors[index]  # Tensor: shape=0, type=1, buffer=2, name=3, quantization=4, shape_signature=7
    at = fb.field(tensor, 1)
    kind = fb.unpack("<b", at) if at is not None else 0
    name = fb.string(tensor, 3)
    name = f"tensor{index}" if name is None else name
    signature = fb.int32s(tensor, 7)
    dims = tuple(None if d < 0 else d for d in (signature if signature is not None else
                                                fb.int32s(tensor, 0) or []))
    quantized, q_at = False, fb.field(tensor, 4)
    if q_at is not None:
        quant = q_at + fb.unpack("<I", q_at)  # QuantizationParameters: min=0, max=1, scale=2, zero_point=3
        scale = fb.vector(quant, 2, 4)
        quantized = bool(scale and scale[1] and fb.unpack("<f", scale[0]) != 0.0)
    if kind not in _TFLITE_DTYPES:
        raise InputError(f"input {name!r} of the model has TFLite type {kind}, which edgeorch cannot feed "
                         "(it feeds float, integer and bool tensors)")
    return Declared(name, dims, _TFLITE_DTYPES[kind], quantized)


EXTRA_FILE = "edgeorch.json"  # what edgeorch's PyTorch exports say about their inputs, inside the archive


def torch_inputs(path):
    """[Declared] from the edgeorch.json a zoo export (TorchScript or torch.export) carries, or None without it."""
    try:
        with zipfile.ZipFile(path) as archive:
            found = [n for n in archive.namelist() if n.endswith("/" + EXTRA_FILE)
                     and n.rsplit("/", 2)[-2] in ("extra", "extra_files")]
            if not found:
                return None
            signature = json.loads(archive.read(found[0]) or b"{}")
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise ValueError(f"not a PyTorch archive: {e}") from e
    return declared_from_json(signature.get("inputs") or [])


def declared_from_json(inputs):
    """[Declared] of edgeorch.json's [{name, shape (null or a name for a dynamic dim), dtype}]."""
    return [Declared(i["name"], None if i.get("shape") is None else tuple(i["shape"]), i.get("dtype"))
            for i in inputs]


DARKNET_INPUT = "data"  # the name OpenCV's Darknet importer gives the network's one input
DARKNET_MAX_BYTES = 1 << 20  # a Darknet .cfg is a few KB of text (YOLOv3's is 8 KB)


def darknet_sections(text):
    """[(section, {key: value})] of a Darknet .cfg's text, read as OpenCV's importer reads it: every blank of a line
    dropped, lines starting with # or ; skipped, KEY=VALUE entries under each [section]. ValueError for a line that
    is none of these, or an entry before the first section."""
    sections = []
    for number, line in enumerate(text.splitlines(), 1):
        line = "".join(line.split())
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            if not line.endswith("]") or len(line) < 3:
                raise ValueError(f"line {number}, {line!r}, is not a [section]")
            sections.append((line[1:-1], {}))
        elif "=" not in line or line.startswith("="):
            raise ValueError(f"line {number}, {line!r}, is neither a [section], a comment nor KEY=VALUE")
        elif not sections:
            raise ValueError(f"line {number}, {line!r}, comes before the first [section]")
        else:
            key, _, value = line.partition("=")
            sections[-1][1][key] = value
    return sections


def darknet_inputs(path):
    """[Declared] of a Darknet .cfg: its one input, float32 NCHW, of 1 x channels x height x width from the [net]
    section (OpenCV's defaults 3, 416, 416 where a key is absent; its `batch` is the training batch, which neither
    Darknet's test mode nor OpenCV uses). Resizable: cv2.dnn runs it at the shape of the blob it is fed. ValueError
    where the file is not a .cfg OpenCV's importer reads: no [net] section (it reads no [network]) or no layer."""
    with open(path, "rb") as f:
        data = f.read(DARKNET_MAX_BYTES + 1)
    if len(data) > DARKNET_MAX_BYTES:
        raise ValueError(f"not a Darknet .cfg file: it is over {DARKNET_MAX_BYTES >> 20} MB, not a few KB of text")
    try:
        sections = darknet_sections(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"not a Darknet .cfg file: {e}") from e
    names = [name for name, _ in sections]
    if "net" not in names:
        found = f"its first section is [{names[0]}]" if names else "it has no [section] at all"
        raise ValueError(f"not a Darknet .cfg file OpenCV can read: it has no [net] section ({found}"
                         + ("; OpenCV's importer reads the section as [net] only" if "network" in names else "")
                         + ")")
    if names.index("net") == len(names) - 1:
        raise ValueError("not a Darknet network: its .cfg has no layer section after [net]")
    net = dict(sections[names.index("net")][1])
    dims = []
    for key, default in (("channels", 3), ("height", 416), ("width", 416)):
        value = net.get(key, str(default))
        number = re.match(r"\+?([0-9]+)", value)  # what C++'s `stream >> int` reads, as OpenCV does
        if not number or int(number.group(1)) < 1:
            raise ValueError(f"not a Darknet network OpenCV can read: its [net] {key}={value} is not a whole "
                             "number of at least 1")
        dims.append(int(number.group(1)))
    return [Declared(DARKNET_INPUT, (1, *dims), "float32", False, True)]


def model_inputs(path):
    """[Declared] of a model file whose format can be read here (ONNX, TFLite, Darknet .cfg, ncnn .param, ExecuTorch
    .pte, edgeorch's PyTorch and TVM archives), or None where only the framework can tell (TensorFlow graphs, Caffe,
    OpenVINO IR, other PyTorch files, TVM libraries)."""
    with open(path, "rb") as f:
        head = f.read(8)
    name = str(path)
    if head[4:8] == b"TFL3":
        return tflite_inputs(path)
    if name.endswith(".onnx"):
        return onnx_inputs(path)
    if name.endswith(".cfg"):
        return darknet_inputs(path)
    if head[:2] == b"PK" and name.endswith((".pt", ".pt2")):
        return torch_inputs(path)
    if name.endswith((".param", ".pte", ".tvm")):  # read by their adapters' own readers, the framework not imported
        from .adapters import executorch, ncnn, tvm
        if name.endswith(".param"):
            return ncnn.param_inputs(ncnn.read_param(path))
        if name.endswith(".pte"):
            return executorch.pte_inputs(path)
        try:
            with zipfile.ZipFile(path) as archive:
                return declared_from_json(tvm.read_manifest(archive)["inputs"])
        except (zipfile.BadZipFile, tvm.ModelLoadError) as e:
            raise ValueError(str(e)) from e
    return None


def check_inputs(path, shapes=None, files=None):
    """The inputs a model would be fed on the board ([{name, shape, dtype, source}]), checked here before anything
    runs: InputError with the board's own message, or None where the format cannot be read without the framework.

    `shapes`: {name: shape} of --input-shape; `files`: {name, or '' for the first input: .npy path} of --input.
    """
    try:
        declared = model_inputs(path)
    except InputError:
        raise
    except ValueError:
        return None  # not readable here: the framework on the board says why
    return None if declared is None else resolve(declared, shapes, files)
