"""TFLite files: the structural check every .tflite gets, and the two tiny builtin nets for fast tests (built once
with TensorFlow and cached)."""

from __future__ import annotations

import hashlib
import inspect
import mmap
import os
import struct
from collections.abc import Callable
from pathlib import Path

from edgeorch.cache import cached_file
from edgeorch.errors import ModelError

from .exporter import quiet
from .zoo import SEED

BUILTIN_MODELS: dict[str, str] = {
    "tiny": "tiny float32 conv net (2 conv + dense), 1x32x32x3 in, 10 classes out; well under 1 ms natively",
    "tiny_int8": "the tiny net fully integer-quantized: int8 weights, int8 input and output",
}


def cached_path(name: str, cache_dir: Path) -> Path:
    """Where builtin `name` is cached: its key changes whenever its build recipe or the seed does."""
    arch, int8 = _RECIPES[name]
    recipe = "".join(inspect.getsource(f) for f in (arch, _recipe, _convert)) + f"{name} int8={int8} seed={SEED}"
    key = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    return Path(cache_dir).resolve() / "models" / f"{name}-{key}.tflite"


def validate_tflite(path: Path) -> None:
    """Raise ModelError unless `path` is a readable, structurally complete TFLite flatbuffer."""
    path = Path(path)
    refetch = "copy or export the model again"
    if not path.exists():
        raise ModelError(
            f"model file {path} does not exist", hint=f"check the path, or use a builtin model ({_builtin_list()})"
        )
    if not path.is_file():
        raise ModelError(f"model path {path} is not a file", hint="pass the path of the .tflite file itself")
    try:
        with path.open("rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                raise ModelError(f"model file {path} is empty", hint=refetch)
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                if data[4:8] != b"TFL3":
                    head = data[:64].translate(None, b"\t\n\r")
                    looks = " (it looks like a text file)" if head.isascii() and head.decode().isprintable() else ""
                    raise ModelError(
                        f"{path} is not a TFLite model{looks}: bytes 4-8 are {data[4:8]!r}, not the b'TFL3' identifier",
                        hint="pass a .tflite file; convert SavedModel, Keras or ONNX models to TFLite first",
                    )
                try:
                    _check_model_table(data)
                except _Corrupt as exc:
                    raise ModelError(f"model file {path} is truncated or corrupt: {exc}", hint=refetch) from None
    except OSError as exc:
        raise ModelError(f"cannot read model file {path}: {exc.strerror}", hint="check the file's permissions") from exc


class _Corrupt(Exception):
    pass


def _check_model_table(b: mmap.mmap | bytes) -> None:
    """Walk the model's tables and vectors down to the weight buffers, checking that each lies inside the file."""
    # The flatbuffers Python package has no verifier, and a cut-off copy keeps a valid-looking header.
    end = len(b)

    def read(fmt: str, at: int) -> int:
        if not 0 <= at <= end - struct.calcsize(fmt):
            raise _Corrupt(f"an offset points to byte {at}, outside its {end} bytes")
        return struct.unpack_from(fmt, b, at)[0]

    def table(at: int) -> int:
        if at + read("<H", at - read("<i", at) + 2) > end:  # the vtable's second entry is the table's size
            raise _Corrupt(f"a table at byte {at} runs past its {end} bytes")
        return at

    def field(tbl: int, i: int) -> int | None:
        vtable = tbl - read("<i", tbl)
        if 4 + 2 * i >= read("<H", vtable):
            return None
        return tbl + off if (off := read("<H", vtable + 4 + 2 * i)) else None

    def vector(tbl: int, i: int, item: int = 1) -> tuple[int, int]:
        if (at := field(tbl, i)) is None:
            return 0, 0
        start = at + read("<I", at)
        if start + 4 + (n := read("<I", start)) * item > end:
            raise _Corrupt(f"a {n}-item vector at byte {start} runs past its {end} bytes")
        return start + 4, n

    def tables(tbl: int, i: int) -> list[int]:
        start, n = vector(tbl, i, 4)
        return [table(at + read("<I", at)) for at in range(start, start + 4 * n, 4)]

    # Field numbers are those of tensorflow/compiler/mlir/lite/schema/schema.fbs.
    model = table(read("<I", 0))
    tables(model, 1)  # operator_codes
    vector(model, 3)  # description
    for md in tables(model, 6):  # metadata
        vector(md, 0)  # name
    for sig in tables(model, 7):  # signature_defs
        tables(sig, 0), tables(sig, 1), vector(sig, 2)  # inputs, outputs, signature_key
    if not (subgraphs := tables(model, 2)):
        raise _Corrupt("it has no subgraphs")
    for sg in subgraphs:
        vector(sg, 1, 4), vector(sg, 2, 4), vector(sg, 4)  # inputs, outputs, name
        for tensor in tables(sg, 0):
            vector(tensor, 0, 4), vector(tensor, 3)  # shape, name
        for op in tables(sg, 3):
            vector(op, 1, 4), vector(op, 2, 4)  # inputs, outputs
    for buf in tables(model, 4):  # buffers
        vector(buf, 0)  # data
        at, size = field(buf, 1), field(buf, 2)  # weights stored after the flatbuffer (models over 2 GB)
        if at is not None and size is not None and read("<Q", at) > 1 and read("<Q", at) + read("<Q", size) > end:
            raise _Corrupt(f"a weight buffer ends past its {end} bytes")


def builtin(name: str, cache_dir: Path, log: Callable[[str], None]) -> tuple[Path, str]:
    """The path and sha256 of builtin `name`: built on first use, then cached."""
    path = cached_path(name, cache_dir)
    digest = cached_file(path, lambda: _build(name), validate_tflite, log,
                         f"building {name} with TensorFlow, up to ~30 s")
    return path, digest


def _build(name: str) -> bytes:
    """Build builtin `name` from its architecture with seeded random weights; return the .tflite bytes."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # read at TF's first import; 2 still shows ERROR lines
    with quiet(name, "TensorFlow"):
        try:
            import tensorflow  # noqa: F401  # keras 3 comes with it; importing keras alone might pick another backend
        except ImportError as exc:
            raise ModelError(
                f"cannot build builtin model {name}: TensorFlow is not installed ({exc})",
                hint="install the models extra (pip install -e '.[models]') or pass the path of a .tflite file",
            ) from exc
        return _recipe(name)


def _recipe(name: str) -> bytes:
    import keras

    arch, int8 = _RECIPES[name]
    keras.utils.clear_session()  # auto layer names ("conv2d_3") end up in the file; restart their counters
    keras.utils.set_random_seed(SEED)
    return _convert(arch(), int8=int8)


def _tiny():  # -> keras.Model
    import keras

    inputs = keras.Input((32, 32, 3), batch_size=1)  # a fixed batch keeps every tensor shape static
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x), name="tiny")


def _convert(model, *, int8: bool) -> bytes:
    import numpy as np
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        rng = np.random.default_rng(SEED)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([rng.random(model.input_shape, np.float32)] for _ in range(64))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.int8
    return converter.convert()


_RECIPES: dict[str, tuple[Callable, bool]] = {
    "tiny": (_tiny, False),
    "tiny_int8": (_tiny, True),
}




def _builtin_list() -> str:
    return ", ".join(BUILTIN_MODELS)
