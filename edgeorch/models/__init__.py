"""The models a benchmark runs: the zoo in each framework's format, two tiny builtin TFLite nets for fast tests,
or a user's file.

The zoo (zoo.py) is defined once in PyTorch; one exporter per format (export_*.py, each an exporter.Exporter)
converts it, and EXPORTERS maps the recipes' model_format to it: every Exporter of an export_*.py module that is
not a variant of another, found by reading the package (a new format is one new module).
"""

from __future__ import annotations

import hashlib
import importlib
import os
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from edgeorch.cache import file_sha256
from edgeorch.errors import ModelError

from . import zoo
from .export_tf import INT8
from .export_torchscript import EAGER
from .exporter import BATCH_HINT, Exporter, Log
from .tflite import BUILTIN_MODELS, builtin, cached_path, validate_tflite
from .zoo import NETWORKS

__all__ = ["BUILTIN_MODELS", "EAGER", "EXPORTERS", "INT8", "NETWORKS", "Exporter", "ModelSpec", "cached_path",
           "model_name", "one_image", "resolve", "resolve_model", "validate", "validate_tflite", "zoo", "zoo_models"]


class _Exporters(MutableMapping):
    """Each model format (a recipe's model_format) -> the exporter that converts the zoo into it: the modules are
    read at the first lookup (an exporter may import its framework's board-side reader, and numpy with it)."""

    def __init__(self) -> None:
        self._found: dict[str, Exporter] | None = None

    def _all(self) -> dict[str, Exporter]:
        if self._found is None:
            found = {}
            for name in sorted(os.listdir(os.path.dirname(__file__))):
                if name.startswith("export_") and name.endswith(".py"):
                    module = importlib.import_module(f"{__name__}.{name[:-3]}")
                    found.update((e.format, e) for e in (cls() for cls in vars(module).values()
                                 if isinstance(cls, type) and issubclass(cls, Exporter)
                                 and cls.__module__ == module.__name__ and not cls.variant))
            self._found = found
        return self._found

    def __getitem__(self, model_format: str) -> Exporter:
        return self._all()[model_format]

    def __setitem__(self, model_format: str, exporter: Exporter) -> None:  # a test's own format
        self._all()[model_format] = exporter

    def __delitem__(self, model_format: str) -> None:
        del self._all()[model_format]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


# TensorRT takes the ONNX file: its engine is built on the board.
EXPORTERS: MutableMapping[str, Exporter] = _Exporters()


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    name: str  # builtin name, or the file stem for a user file
    path: Path  # absolute path of the model file on this host
    sha256: str  # hex digest of the file bytes: what the board checks
    builtin: bool
    companions: tuple[tuple[Path, str], ...] = ()  # the files it reads beside it (same stem), each with its sha256

    @property
    def digest(self) -> str:
        """sha256 of the model with its companions: it tells models apart and names their files on the board."""
        if not self.companions:
            return self.sha256
        return hashlib.sha256(" ".join((self.sha256, *(d for _, d in self.companions))).encode()).hexdigest()


def resolve_model(arg: str, *, cache_dir: Path, log: Log | None = None) -> ModelSpec:
    """Return the model named by `arg`: a builtin name (built on first use, then cached) or a .tflite path."""
    if arg in BUILTIN_MODELS:  # a builtin wins over a same-named file; write ./tiny to mean the file
        path, digest = builtin(arg, cache_dir, log or (lambda _msg: None))
        return ModelSpec(name=arg, path=path, sha256=digest, builtin=True)
    path = Path(arg).expanduser()
    if not path.exists() and not (path.suffix or "/" in arg or os.sep in arg):
        raise ModelError(f"unknown model {arg!r}",
                         hint=f"use a builtin model ({', '.join(BUILTIN_MODELS)}) or the path of a .tflite file")
    validate_tflite(path)
    return ModelSpec(name=path.stem, path=path.resolve(), sha256=file_sha256(path), builtin=False)


def zoo_models(model_format: str) -> list[str]:
    """The zoo names a format offers (TFLite also its int8 variants and the builtins)."""
    builtins = list(BUILTIN_MODELS) if model_format == "tflite" else []
    return [*builtins, *_zoo_exports(model_format)]


def resolve(arg: str, model_format: str, *, cache_dir: Path, log: Log | None = None, batch: int = 1) -> ModelSpec:
    """The model `arg` in a framework's format, as `model_name` checked it: a zoo network (taking `batch` images per
    inference), a builtin, or the path of a user's file."""
    if model_format == "tflite" and arg in BUILTIN_MODELS:
        return resolve_model(arg, cache_dir=cache_dir, log=log)
    exports = _zoo_exports(model_format)
    if arg in exports:
        network, exporter = exports[arg]
        return _spec(arg, exporter.export(network, batch, Path(cache_dir) / "models", log), exporter, builtin=True)
    path = Path(arg).expanduser()
    return _spec(path.stem, path, EXPORTERS[model_format], builtin=False)


def _spec(name: str, path: Path, exporter: Exporter, builtin: bool) -> ModelSpec:
    """The spec of a model file and the companions found beside it, as named (a link's target may lie elsewhere)."""
    return ModelSpec(name=name, path=path.resolve(), sha256=file_sha256(path), builtin=builtin,
                     companions=tuple((p.resolve(), file_sha256(p)) for p in exporter.companions(path)))


def one_image(model_format: str, batch: int) -> str:
    """Why the format's files cannot take `batch` images per inference ("" where they can)."""
    return EXPORTERS[model_format].one_image if batch != 1 else ""


def model_name(arg: str, model_format: str, batch: int = 1) -> str:
    """What the results will call the model `arg` in a framework's format, checked but not converted: a zoo
    network's or builtin's name, or a user file's stem (the file validated)."""
    if model_format not in EXPORTERS:
        raise ModelError(f"no model source for the format {model_format!r}", hint="fix the framework's recipe")
    if why := one_image(model_format, batch):
        raise ModelError(f"--batch {batch}: {why}", hint=BATCH_HINT.format(format=model_format))
    exports = _zoo_exports(model_format)
    if batch != 1 and arg not in exports:
        raise ModelError(f"--batch {batch} applies to the zoo's networks; {arg} takes the batch it was made with",
                         hint="drop --batch, or use a zoo network (invoke matrix lists them)")
    if arg in exports or (model_format == "tflite" and arg in BUILTIN_MODELS):
        return arg
    path = Path(arg).expanduser()
    if not path.exists() and not (path.suffix or "/" in arg or os.sep in arg):
        raise ModelError(f"unknown model {arg!r}", hint=f"use a zoo network ({', '.join(zoo_models(model_format))}) "
                                                        f"or the path of a {EXPORTERS[model_format].suffix} file")
    validate(path, model_format)
    return path.stem


def validate(path: Path, model_format: str) -> None:
    """Raise ModelError unless `path` is a file of the format (checked as deeply as cheaply possible)."""
    EXPORTERS[model_format].validate(path)


def _zoo_exports(model_format: str) -> dict[str, tuple[str, Exporter]]:
    """The zoo's models in a format, each name -> (its network, the exporter that makes it); variants after."""
    if model_format not in EXPORTERS:
        return {}
    exporter = EXPORTERS[model_format]
    return {name + e.variant: (name, e) for e in (exporter, *exporter.variants) for name in NETWORKS}
