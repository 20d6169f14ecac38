"""The zoo for ncnn: traced TorchScript converted by pnnx (ncnn's PyTorch converter) into a text .param, whose one
Input layer declares the network's shape, and its fp32 weights in a .bin of the same name beside it."""

from __future__ import annotations

import importlib
import subprocess
import tempfile
import warnings
from importlib import metadata
from pathlib import Path

from edgeorch.bench.adapters import ncnn as ncnn_format
from edgeorch.console import recording, shell
from edgeorch.errors import ModelError

from . import zoo
from .exporter import BATCH_HINT, Exporter

BIN = ".bin"
OPTLEVEL = 2  # pnnx's default: its graph rewrites (fusions, BatchNorm folded into convolutions) all on
TIMEOUT_S = 1800  # VGG-16 takes minutes on a slow host; past this pnnx is taken as hung
# The shape an Input layer declares, batch left out (ncnn has none): its dims outermost first -> ncnn's keys.
_INPUT_KEYS = {1: (0,), 2: (1, 0), 3: (2, 1, 0), 4: (2, 11, 1, 0)}
_INSTEAD = "run it with pytorch or onnxruntime instead (they take the zoo's TorchScript and ONNX exports)"


class NcnnExporter(Exporter):
    """pnnx on a TorchScript trace, fp16=0: input blob in0, output out0, weights fp32 as PyTorch's."""

    format, suffix, doing = "ncnn", ".param", "converting {name} to ncnn with pnnx"
    sources = (ncnn_format,)  # its parser reads what convert writes: the Input layer's shape, the layer types
    one_image = "ncnn runs one image at a time (its blobs have no batch axis)"

    def toolchain(self, network: str) -> str:
        torch = zoo.import_torch(f"convert {network} to ncnn")
        for package in ("pnnx", "ncnn"):  # ncnn checks the result: the board's adapter runs it once here
            try:
                importlib.import_module(package)
            except ImportError as exc:
                raise ModelError(f"cannot convert {network} to ncnn: the {package} package is not installed ({exc})",
                                 hint="install the models extra (pip install -e '.[models]')") from exc
        return f"torch={torch.__version__} pnnx={metadata.version('pnnx')} fp16=0 optlevel={OPTLEVEL}"

    def convert(self, network: zoo.Network) -> dict[str, bytes]:
        if network.input_shape[0] != 1:
            raise ModelError(f"cannot convert {network.name} for {network.input_shape[0]} images per inference to "
                             f"ncnn: {self.one_image}", hint=BATCH_HINT.format(format=self.format))
        import ncnn
        import pnnx
        import torch

        model = zoo.build(network.name)
        with tempfile.TemporaryDirectory(prefix="edgeorch-pnnx-") as tmp:
            work = Path(tmp)
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated; pnnx reads it
                torch.jit.trace(model, torch.zeros(network.input_shape)).save(str(work / "model.pt"))
            shape = ",".join(str(d) for d in network.input_shape)
            # pnnx writes every file it makes (its own .param, .bin, .onnx, two .py) beside model.pt, here
            argv = [pnnx.EXEC_PATH, "model.pt", f"inputshape=[{shape}]f32", "fp16=0", "device=cpu",
                    f"optlevel={OPTLEVEL}"]
            with recording(shell(argv)) as rec:  # in the commands.log of the run that converts it
                try:
                    done = subprocess.run(argv, cwd=work, capture_output=True, text=True, errors="replace",
                                          timeout=TIMEOUT_S, check=False)
                except (OSError, subprocess.TimeoutExpired) as exc:
                    raise ModelError(f"pnnx could not convert {network.name} to ncnn: {exc}",
                                     hint=f"check the pnnx install (pip install -e '.[models]'), or {_INSTEAD}") from exc
                output = done.stdout + done.stderr
                rec.exit_code, rec.output = done.returncode, output
            param, weights = work / "model.ncnn.param", work / "model.ncnn.bin"
            if done.returncode != 0 or not param.is_file() or not weights.is_file():
                raise ModelError(f"pnnx could not convert {network.name} to ncnn (exit status {done.returncode}): "
                                 f"{last_lines(output)}", hint=f"{_INSTEAD}; or report it to pnnx with the torch "
                                                               f"version, {torch.__version__}")
            text = param.read_text()
            unknown = unconverted(text, lambda kind: ncnn.layer_to_index(kind) >= 0)
            if unknown:
                raise ModelError(f"pnnx cannot convert {network.name} to ncnn: ncnn has no layer for "
                                 f"{'; '.join(f'{kind} ({names})' for kind, names in unknown.items())}"
                                 f"{ignored(output, unknown)}", hint=f"{_INSTEAD}, or leave it out of the ncnn runs")
            return {self.suffix: declare_input(text, network.input_shape).encode(), BIN: weights.read_bytes()}

    def companions(self, path: Path) -> tuple[Path, ...]:
        return (path.with_suffix(BIN),)

    def check(self, path: Path, network: zoo.Network) -> None:
        """Raise ModelError, and remove the files, unless the board's adapter runs them: the network's input shape
        declared, one inference of zeros giving 1x1000 finite scores."""
        import numpy as np

        try:
            adapter = ncnn_format.Ncnn()
            adapter.load(str(path), 1)
            declared = [d.dims for d in adapter.inputs()]
            adapter.prepare()
            adapter.infer()
            outputs = adapter.outputs()
            problem = (f"it declares the inputs {declared}" if declared != [network.input_shape] else
                       f"its outputs are {[o.shape for o in outputs]}" if [o.shape for o in outputs] != [(1, 1000)]
                       else "its scores are not finite" if not all(np.isfinite(o).all() for o in outputs) else None)
        except Exception as exc:  # ncnn's own failures are RuntimeErrors; the adapter's, its own types
            problem = f"{type(exc).__name__}: {exc}"
        if problem:
            for made in (path, *self.companions(path)):
                made.unlink(missing_ok=True)
            raise ModelError(f"the converted {path.name} does not run in ncnn as {network.input_shape} -> (1, 1000): "
                             f"{problem}", hint="this is a bug in edgeorch.models.export_ncnn or pnnx; report it "
                                                "with the torch and pnnx versions")

    def validate(self, path: Path) -> None:
        """Raise ModelError unless `path` is a text ncnn .param with an Input layer, of layers this host's ncnn knows
        (where it has one), and its .bin beside it."""
        if path.is_file() and path.name.endswith(".param.bin"):
            raise ModelError(f"{path} is a binary ncnn param (ncnn2mem's .param.bin), whose blobs are named only in "
                             "the C header ncnn2mem wrote: edgeorch feeds a model's inputs by name",
                             hint="pass the text .param that ncnn2mem read, with its .bin beside it")
        if not path.is_file() or path.suffix != self.suffix or path.stat().st_size == 0:
            super().validate(path)  # says which: missing, misnamed or empty
        fix = "pass the text .param written by pnnx (or onnx2ncnn), with its .bin of the same name beside it"
        try:
            layers = ncnn_format.parse_param(ncnn_format.read_param(path))
            inputs = ncnn_format.declared_inputs(layers)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path} is not an ncnn .param file: {exc}", hint=fix) from exc
        if not inputs:
            raise ModelError(f"{path} has no Input layer, so nothing can be fed to it", hint=fix)
        try:
            import ncnn
        except ImportError:
            ncnn = None  # the board's ncnn says so at load
        if ncnn is not None:
            unknown = unconverted(layers, lambda kind: ncnn.layer_to_index(kind) >= 0)
            if unknown:
                raise ModelError(f"{path} has layers of types ncnn {ncnn.__version__} does not know: "
                                 f"{'; '.join(f'{kind} ({names})' for kind, names in unknown.items())}",
                                 hint=f"these are operators its converter left unconverted: {_INSTEAD}")
        self.check_companions(path)


def unconverted(param: str | list, known) -> dict[str, str]:
    """{layer type: its layers' names} of the layers of a .param (text, or parse_param's layers) whose type `known`
    refuses: the operators pnnx could not map to ncnn keep their PyTorch names (torch.fft.rfft, aten::sort,
    pnnx.Expression), which ncnn cannot load."""
    layers = ncnn_format.parse_param(param) if isinstance(param, str) else param
    found: dict[str, list[str]] = {}
    for layer in layers:
        if not known(layer.type):
            found.setdefault(layer.type, []).append(layer.name)
    return {kind: ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            for kind, names in sorted(found.items())}


def ignored(output: str, unknown: dict[str, str]) -> str:
    """pnnx's own word on the `unknown` operators, from its output: the arguments it could not carry over."""
    lines = [line.strip() for line in output.splitlines()
             if line.startswith("ignore ") and line.split()[1:2] and line.split()[1] in unknown]
    return f" (pnnx: {'; '.join(lines[:4])}{'; ...' if len(lines) > 4 else ''})" if lines else ""


def last_lines(output: str, count: int = 4) -> str:
    """The last `count` lines of pnnx's output that say something, joined: where its error is."""
    lines = [line.strip() for line in output.splitlines() if line.strip() and not line.startswith("#####")]
    return " | ".join(lines[-count:])[-800:] or "no output"


def declare_input(text: str, shape: tuple[int, ...]) -> str:
    """The .param `text` with its one Input layer declaring `shape` (batch first, a batch of 1): pnnx writes
    `Input in0 0 1 in0` without one, and ncnn's own model files declare theirs (0=w 1=h 2=c), which the board reads
    as the inputs' shapes without being told."""
    dims = shape[1:]  # ncnn's blobs have no batch axis
    if shape[:1] != (1,) or len(dims) not in _INPUT_KEYS:
        raise ModelError(f"ncnn cannot take an input of shape {shape}: one image of 1 to 4 dims",
                         hint="this is a bug in edgeorch.models.export_ncnn")
    lines = text.splitlines(keepends=True)
    where = [i for i, line in enumerate(lines) if line.split()[:1] == ["Input"]]
    if len(where) != 1 or len(lines[where[0]].split()) != 5:  # Input NAME 0 1 BLOB, nothing declared
        raise ModelError(f"pnnx wrote {len(where)} Input layers, not one without a shape",
                         hint="this is a bug in edgeorch.models.export_ncnn, or pnnx changed its output")
    line = lines[where[0]]
    declared = " ".join(f"{key}={dim}" for key, dim in reversed(list(zip(_INPUT_KEYS[len(dims)], dims))))  # w first
    lines[where[0]] = line.rstrip("\r\n") + " " + declared + line[len(line.rstrip("\r\n")):]
    return "".join(lines)
