"""The zoo for OpenVINO: the ONNX file of export_onnx, which OpenVINO reads itself (no IR conversion on the host);
a user's model is an .onnx or an OpenVINO IR .xml with its .bin weights beside it."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

from edgeorch.errors import ModelError

from .export_onnx import OnnxExporter

IR_SUFFIX, WEIGHTS_SUFFIX = ".xml", ".bin"
TAKES = "an .onnx file, or an OpenVINO IR .xml with its .bin beside it (openvino.save_model or ovc writes both)"


class OpenVinoExporter(OnnxExporter):
    """The ONNX exporter's very file (its convert, so its cache key): one export serves every ONNX framework."""

    format = "openvino"

    def companions(self, path: Path) -> tuple[Path, ...]:
        """An IR .xml reads its weights from the .bin of the same stem (OpenVINO's read_model looks there)."""
        return (path.with_suffix(WEIGHTS_SUFFIX),) if path.suffix == IR_SUFFIX else ()

    def validate(self, path: Path) -> None:
        """Raise ModelError unless `path` is an ONNX model the onnx checker accepts or an OpenVINO IR .xml (root
        <net>) with its .bin beside it."""
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist", hint="check the path given to --model")
        if path.suffix == ".onnx":
            super().validate(path)
        elif path.suffix == IR_SUFFIX:
            root = ir_root(path)
            if root != "net":
                raise ModelError(f"{path} is not an OpenVINO IR model: its root element is <{root}>, not <net>",
                                 hint=f"pass {TAKES}")
            self.check_companions(path)
        else:
            raise ModelError(f"{path} is not a model OpenVINO reads here: its name ends in "
                             f"{path.suffix or 'no suffix'}, not .onnx or {IR_SUFFIX}", hint=f"pass {TAKES}")


def ir_root(path: Path) -> str:
    """The name of the root element of the XML file `path` (read up to its first tag); ModelError if not XML."""
    try:
        for _event, element in ElementTree.iterparse(path, events=("start",)):
            return element.tag
    except (ElementTree.ParseError, OSError) as exc:
        raise ModelError(f"{path} is not an OpenVINO IR model: it is not readable XML ({exc})",
                         hint=f"pass {TAKES}") from exc
    raise ModelError(f"{path} is not an OpenVINO IR model: it holds no XML element", hint=f"pass {TAKES}")
