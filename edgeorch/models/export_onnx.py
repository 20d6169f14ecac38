"""The zoo in ONNX (ONNX Runtime, OpenCV-DNN, and TensorRT, which builds its engine from it on the board)."""

from __future__ import annotations

import warnings
from pathlib import Path

from edgeorch.errors import ModelError

from . import zoo
from .exporter import Exporter

# Opset 13 is the newest that the ONNX parser of TensorRT 8.2 (JetPack 4.6, the last for the Jetson Nano) reads,
# and these networks need nothing newer.
OPSET = 13


class OnnxExporter(Exporter):
    """torch.onnx.export, static shapes: input "input", output "output"."""

    format, suffix, doing = "onnx", ".onnx", "exporting {name} to ONNX"

    def toolchain(self, network: str) -> str:
        torch = zoo.import_torch(f"export {network} to ONNX")
        try:
            import onnx  # noqa: F401  # the exporter needs it; say so before building
        except ImportError as exc:
            raise ModelError(
                f"cannot export {network} to ONNX: the onnx package is not installed ({exc})",
                hint="install the models extra (pip install -e '.[models]')",
            ) from exc
        return f"opset={OPSET} torch={torch.__version__}"

    def convert(self, network: zoo.Network) -> bytes:
        import io

        import torch

        model, buffer = zoo.build(network.name), io.BytesIO()
        with warnings.catch_warnings():
            # The TorchScript exporter is "legacy" but writes opset 13 directly and needs only the onnx package; the
            # dynamo one needs onnxscript too and writes opset 18, converting down only "if successful".
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(
                    model,
                    (torch.zeros(network.input_shape),),
                    buffer,
                    dynamo=False,
                    opset_version=OPSET,
                    input_names=["input"],
                    output_names=["output"],
                )
            except Exception as exc:
                raise ModelError(f"exporting {network.name} to ONNX failed: {type(exc).__name__}: {exc}",
                                 hint="check the torch and onnx installs (pip install -e '.[models]'); "
                                      f"torch is {torch.__version__}") from exc
        return buffer.getvalue()

    def check(self, path: Path, network: zoo.Network) -> None:
        """Raise ModelError unless `path` is a valid ONNX model with the network's static input and 1000 outputs."""
        import onnx

        try:
            model = onnx.load(str(path))
            onnx.checker.check_model(model)
        except Exception as exc:
            path.unlink(missing_ok=True)
            raise ModelError(f"the exported {path.name} is not a valid ONNX model: {exc}",
                             hint="export it again") from exc

        def dims(value) -> tuple[int | str, ...]:
            shape = value.type.tensor_type.shape
            return tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in shape.dim)

        got = [dims(v) for v in (*model.graph.input, *model.graph.output)]
        if got != [network.input_shape, (network.input_shape[0], 1000)]:
            path.unlink(missing_ok=True)
            raise ModelError(
                f"the exported {path.name} has input and output shapes {got}, "
                f"not the static {network.input_shape} -> {(network.input_shape[0], 1000)}",
                hint="this is a bug in edgeorch.models.export_onnx or the exporter; report it with the torch version",
            )

    def validate(self, path: Path) -> None:
        """Raise ModelError unless path is an ONNX model the onnx checker accepts (whatever its name)."""
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist", hint="check the path given to --model")
        try:
            import onnx
        except ImportError as exc:
            raise ModelError(f"cannot check {path}: the onnx package is not installed",
                             hint="install the models extra (pip install -e '.[models]')") from exc
        try:
            onnx.checker.check_model(str(path))
        except Exception as exc:  # the checker raises protobuf and its own errors alike
            raise ModelError(f"{path} is not a valid ONNX model: {' '.join(str(exc).split())[:300]}",
                             hint="pass an .onnx file exported by a framework (e.g. torch.onnx.export)") from exc
