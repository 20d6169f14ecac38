"""The zoo for ExecuTorch: torch.export's program, lowered to the XNNPACK delegate and serialized as a .pte, whose
one method, forward, the board's runtime loads with its shapes fixed."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

from edgeorch.bench.adapters import executorch as pte
from edgeorch.errors import ModelError

from . import zoo
from .exporter import Exporter, quiet

_INSTEAD = "run it with pytorch or onnxruntime instead (they take the zoo's TorchScript and ONNX exports)"
_INSTALL = "install the models extra (pip install -e '.[models]')"
# to_edge's verifier refuses an operator outside the Core ATen opset, whose kernels are what ExecuTorch has, with
# "Operator torch._ops.aten.median.dim is not in Core ATen opset"
_NOT_CORE = re.compile(r"Operator (?:torch\._ops\.)?([\w.:]+) is not in Core ATen opset")
# to_executorch's, for an operator without the out= variant that its kernels take: "Missing out variants: {...}"
_NO_OUT = re.compile(r"Missing out variants: \{?([^}\n]+)")


class ExecuTorchExporter(Exporter):
    """torch.export -> to_edge_transform_and_lower with the XnnpackPartitioner -> to_executorch: float32, static
    shapes, every operator XNNPACK takes in its delegate and any other on ExecuTorch's kernels."""

    format, suffix, doing = "pte", ".pte", "lowering {name} to ExecuTorch (XNNPACK)"
    sources = (pte,)  # its readers check what convert writes: the program's identifier, method, delegates

    def toolchain(self, network: str) -> str:
        torch = zoo.import_torch(f"lower {network} to ExecuTorch")
        try:
            version = metadata.version("executorch")  # not imported: executorch.exir takes seconds to import
        except metadata.PackageNotFoundError as exc:
            raise ModelError(f"cannot lower {network} to ExecuTorch: the executorch package is not installed",
                             hint=_INSTALL) from exc
        return f"torch={torch.__version__} executorch={version} partitioner=xnnpack"

    def convert(self, network: zoo.Network) -> bytes:
        with quiet(network.name, "ExecuTorch"):  # torchao's and torch.export's lines, at import and while lowering
            return self._lower(network)

    def _lower(self, network: zoo.Network) -> bytes:
        import torch

        try:
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
            from executorch.exir import to_edge_transform_and_lower
        except ImportError as exc:
            raise ModelError(f"cannot lower {network.name} to ExecuTorch: executorch does not import ({exc})",
                             hint=_INSTALL) from exc
        model = zoo.build(network.name)
        with torch.no_grad():
            try:
                program = torch.export.export(model, (torch.zeros(network.input_shape),))
            except Exception as exc:
                raise ModelError(f"torch.export cannot capture {network.name}: {one_line(exc)}",
                                 hint=f"{_INSTEAD}; torch is {torch.__version__}") from exc
            try:
                lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
                return lowered.to_executorch().buffer
            except Exception as exc:  # the verifier's SpecViolationError, passes' own errors
                raise conversion_error(network.name, exc) from exc

    def check(self, path: Path, network: zoo.Network) -> None:
        """Raise ModelError, and remove the file, unless the board's adapter runs it: the network's input shape
        declared, one inference of seeded data giving (batch, 1000) finite scores."""
        import numpy as np

        want = (network.input_shape[0], 1000)
        try:
            with quiet(network.name, "ExecuTorch"):  # cpuinfo's lines on what it cannot read of this CPU
                adapter = pte.ExecuTorch()
                adapter.load(str(path), 0)  # 0: this process's ExecuTorch threadpool is left as it is
                declared = [d.dims for d in adapter.inputs()]
                adapter.prepare()
                adapter.infer()
                outputs = adapter.outputs()
            problem = (f"it declares the inputs {declared}" if declared != [network.input_shape] else
                       f"its outputs are {[o.shape for o in outputs]}" if [o.shape for o in outputs] != [want]
                       else "its scores are not finite" if not all(np.isfinite(o).all() for o in outputs) else None)
        except Exception as exc:  # the runtime's RuntimeErrors; the adapter's own types
            problem = f"{type(exc).__name__}: {exc}"
        if problem:
            path.unlink(missing_ok=True)
            raise ModelError(f"the lowered {path.name} does not run in ExecuTorch as {network.input_shape} -> {want}: "
                             f"{problem}", hint="this is a bug in edgeorch.models.export_executorch or ExecuTorch; "
                                                "report it with the torch and executorch versions")

    def validate(self, path: Path) -> None:
        """Raise ModelError unless `path` is a .pte this runtime reads: its identifier, a forward method, and no
        delegate but XNNPACK (the only one the board's runtime has)."""
        super().validate(path)  # missing, misnamed or empty
        fix = "pass a .pte written by ExecuTorch's to_executorch() (lowered with the XnnpackPartitioner, or not at all)"
        try:
            facts = pte.program_facts(pte.read_program(path), pte.METHOD)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: {exc}", hint=fix) from exc
        other = [d for d in facts["delegates"] if d != pte.XNNPACK]
        if other:
            raise ModelError(f"{path} is lowered to {', '.join(other)}, which the board's ExecuTorch (PyPI's wheel) "
                             "does not run: it has XNNPACK and its own kernels", hint=f"{fix}; or {_INSTEAD}")


def unsupported_operator(message: str) -> str | None:
    """The operators an ExecuTorch lowering refused, from its error's message, or None where it names none."""
    found = _NOT_CORE.search(message) or _NO_OUT.search(message)
    if not found:
        return None
    return ", ".join(name.strip().strip("'\"") for name in found.group(1).split(",")) or None


def conversion_error(name: str, exc: Exception) -> ModelError:
    """The ModelError of a lowering of network `name` that raised `exc`: the operator it refused, where it says."""
    operator = unsupported_operator(str(exc))
    if operator:
        return ModelError(f"ExecuTorch cannot lower {name}: it uses {operator}, which ExecuTorch has no kernel for "
                          "(outside the Core ATen opset, or without an out= variant)", hint=_INSTEAD)
    return ModelError(f"lowering {name} to ExecuTorch failed: {type(exc).__name__}: {one_line(exc)}",
                      hint=f"{_INSTEAD}; or report it to ExecuTorch with the torch and executorch versions")


def one_line(exc: Exception, limit: int = 400) -> str:
    """An exception's message as one line of at most `limit` characters."""
    return " ".join(str(exc).split())[:limit] or repr(exc)
