"""OpenCV-DNN's models: the zoo's ONNX files, the very files ONNX Runtime runs (one export, one cache key), and a
user's .onnx, or a Darknet .cfg with its .weights beside it, which cv2.dnn.readNetFromDarknet reads (OpenCV 4 only:
OpenCV 5 removed its Darknet importer, opencv/opencv#24785)."""

from __future__ import annotations

import struct
from pathlib import Path

from edgeorch.bench.signature import darknet_inputs
from edgeorch.errors import ModelError

from .export_onnx import OnnxExporter

CFG, WEIGHTS = ".cfg", ".weights"


class OpenCVExporter(OnnxExporter):
    """The zoo as OnnxExporter makes it, cached under its key; a user's file may also be a Darknet network."""

    format = "opencv-dnn"

    def companions(self, path: Path) -> tuple[Path, ...]:
        """A Darknet .cfg's .weights, read from beside it by the same stem."""
        return (path.with_suffix(WEIGHTS),) if path.suffix == CFG else ()

    def validate(self, path: Path) -> None:
        """Raise ModelError unless `path` is an ONNX model (checked as ONNX Runtime's are) or a Darknet .cfg that
        OpenCV's importer reads, with a .weights file of Darknet's layout beside it."""
        if path.suffix == WEIGHTS:
            raise ModelError(f"{path} is a Darknet weights file; --model takes the network's .cfg",
                             hint=f"pass {path.with_suffix(CFG).name}: its {path.name} is read from beside it")
        if path.suffix != CFG:
            try:
                super().validate(path)
            except ModelError as exc:
                raise ModelError(exc.message, hint=f"{exc.hint}; or a Darknet network's .cfg, its .weights beside "
                                                   "it") from exc
            return
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist", hint="check the path given to --model")
        try:
            darknet_inputs(path)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: {exc}", hint="pass a Darknet network's .cfg, whose first section is [net] "
                                                    "(its input: channels, height, width), or an .onnx file") from exc
        self.check_companions(path)
        check_weights(path.with_suffix(WEIGHTS))


def check_weights(path: Path) -> None:
    """Raise ModelError unless `path` is laid out as Darknet's .weights: major, minor, revision (int32), images seen
    (int64 from version 0.2 on, else int32), then float32 values; OpenCV refuses a transposed file (a version above
    1000)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(12)
    if len(head) < 12:
        raise ModelError(f"{path} is not Darknet weights: it has {size} bytes, fewer than its 16-byte header",
                         hint="copy the .weights file again (the download may have been cut short)")
    major, minor, _ = struct.unpack("<3i", head)
    header = 20 if major * 10 + minor >= 2 else 16
    if not (0 <= major <= 1000 and 0 <= minor <= 1000):
        raise ModelError(f"{path} is not Darknet weights OpenCV reads: its header says version {major}.{minor}",
                         hint="OpenCV reads weights of Darknet versions up to 1000.1000, not transposed; export "
                              "them again with Darknet")
    if size <= header or (size - header) % 4:
        raise ModelError(f"{path} is not Darknet weights: after its {header}-byte header, {size - header} bytes "
                         "are not a whole number of float32 values",
                         hint="copy the .weights file again (the download may have been cut short)")
