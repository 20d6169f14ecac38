"""The zoo for PyTorch on the board: traced TorchScript (.pt) and, as `<network>_eager`, a torch.export program (.pt2).

Either carries its input and output shapes inside, in an extra file "edgeorch.json" the board-side adapter reads.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from edgeorch.errors import ModelError

from . import zoo
from .exporter import Exporter

EAGER = "_eager"  # zoo network + this: its ExportedProgram, which PyTorch runs eagerly


class ProgramExporter(Exporter):
    """torch.export's ExportedProgram, which PyTorch on the board runs eagerly, op by op."""

    format, suffix, doing, variant = "torchscript", ".pt2", "exporting {name} with torch.export", EAGER

    def toolchain(self, network: str) -> str:
        return f"torch={zoo.import_torch(f'export {network} with torch.export').__version__}"

    def convert(self, network: zoo.Network) -> bytes:
        return _save(network, program=True)


class TorchScriptExporter(Exporter):
    """torch.jit.trace; its eager variant is a ProgramExporter's."""

    format, suffix, doing = "torchscript", ".pt", "tracing {name} to TorchScript"
    variants = (ProgramExporter(),)

    def toolchain(self, network: str) -> str:
        return f"torch={zoo.import_torch(f'export {network} to TorchScript').__version__}"

    def convert(self, network: zoo.Network) -> bytes:
        return _save(network, program=False)

    def validate(self, path: Path) -> None:
        super().validate(path)  # a .pt or a .pt2
        if not zipfile.is_zipfile(path):
            raise ModelError(f"{path} is not a TorchScript or torch.export archive (not a zip file)",
                             hint="save the model with torch.jit.save (.pt) or torch.export.save (.pt2)")


def _save(network: zoo.Network, program: bool) -> bytes:
    """TorchScript (traced) or, with `program`, an ExportedProgram; either with its input shape inside."""
    import io
    import json

    import torch

    model, example = zoo.build(network.name), torch.zeros(network.input_shape)
    signature = {"inputs": [{"name": "input", "shape": list(network.input_shape), "dtype": "float32"}],
                 "outputs": [{"name": "output", "shape": [network.input_shape[0], 1000], "dtype": "float32"}]}
    extra = {"edgeorch.json": json.dumps(signature)}  # the board-side adapter reads the input shapes here
    buffer = io.BytesIO()
    with torch.no_grad():
        if program:
            torch.export.save(torch.export.export(model, (example,)), buffer, extra_files=extra)
        else:
            torch.jit.save(torch.jit.trace(model, example), buffer, _extra_files=extra)
    return buffer.getvalue()
