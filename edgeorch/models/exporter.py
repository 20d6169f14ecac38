"""The one interface every model format's exporter implements, and the cached export they share."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

from edgeorch.cache import cached_file, content_hash, write_atomic
from edgeorch.errors import ModelError

from . import zoo

Log = Callable[[str], None]
BATCH_HINT = "drop --batch for {format}, or run batches with pytorch or onnxruntime"


class Exporter(ABC):
    """Converts the zoo's networks into one model format; each file is cached under a key of all that made it."""

    format: str  # the recipes' model_format: "onnx", "tflite", ...
    suffix: str  # of its files: ".onnx"
    doing: str  # what the log says while it converts, with {name} for the network
    variant: str = ""  # a model of its own, named network + this ("_int8"), not mixed with the network's
    variants: tuple[Exporter, ...] = ()  # the format's models of their own, each with its own exporter
    sources: tuple[ModuleType, ...] = ()  # other modules whose code shapes its files
    one_image: str = ""  # why its files take one image per inference whatever --batch says, where they do

    def export(self, network: str, batch: int, dest: Path, log: Log | None = None) -> Path:
        """The file of `network` (`batch` images per inference) in this format, and its companions beside it: made
        on first use, then cached in `dest`."""
        path = self.path(network, batch, dest)
        net = zoo.lookup(network, batch)

        def make() -> bytes:
            made = self.convert(net)
            if isinstance(made, bytes):
                return made
            path.parent.mkdir(parents=True, exist_ok=True)
            for suffix, data in made.items():  # the companions first: the main file's checksum says all are there
                if suffix != self.suffix:
                    write_atomic(path.with_suffix(suffix), data)
            return made[self.suffix]

        if not all(p.is_file() for p in self.companions(path)):
            path.with_name(path.name + ".sha256").unlink(missing_ok=True)
        cached_file(path, make, lambda p: self.check(p, net), log or (lambda _msg: None),
                    self.doing.format(name=network))
        return path

    def path(self, network: str, batch: int, dest: Path) -> Path:
        """Where export() caches the file: its key changes with every source file, version or seed that shapes it."""
        zoo.lookup(network, batch)
        stem = zoo.file_stem(network, batch) + self.variant
        key = content_hash(*self.files(), f"{stem}{self.suffix} seed={zoo.SEED} {self.toolchain(network)}")
        return Path(dest).resolve() / f"{stem}-{key}{self.suffix}"

    def files(self) -> tuple[Path, ...]:
        """The source files that shape this format's files: the zoo's, this interface's, the module of the convert()
        that makes them and its other sources (a format that reads another's files, OpenVINO's and OpenCV-DNN's the
        ONNX exporter's, shares its cache file)."""
        modules = zoo, sys.modules[__name__], sys.modules[type(self).convert.__module__], *self.sources
        return tuple(Path(m.__file__) for m in modules)

    @abstractmethod
    def toolchain(self, network: str) -> str:
        """The versions of the libraries that convert `network`, for the cache key; a ModelError if one is missing."""

    @abstractmethod
    def convert(self, network: zoo.Network) -> bytes | dict[str, bytes]:
        """The file's bytes for `network` (its input_shape says the batch), converted from zoo.build's module; for a
        format of several files, {suffix: bytes} of the model and each of its companions."""

    def companions(self, path: Path) -> tuple[Path, ...]:
        """The files a model at `path` reads beside it (the same stem, another suffix): ncnn's and OpenVINO's .bin."""
        return ()

    def check(self, path: Path, network: zoo.Network) -> None:  # noqa: B027  # a traced TorchScript needs none
        """Raise ModelError, and remove `path`, unless the file just made is what a board runs."""

    def validate(self, path: Path) -> None:
        """Raise ModelError unless `path`, a user's file, is a model of this format (as deeply as cheaply checked)."""
        if not path.is_file():
            raise ModelError(f"model file {path} does not exist", hint="check the path given to --model")
        if path.suffix not in {self.suffix, *(v.suffix for v in self.variants)}:
            raise ModelError(f"{path} is not a {self.format} model: its name does not end in {self.suffix}",
                             hint=f"pass a {self.suffix} file of this framework")
        if path.stat().st_size == 0:
            raise ModelError(f"model file {path} is empty", hint="copy or export the model again")
        self.check_companions(path)

    def check_companions(self, path: Path) -> None:
        """Raise ModelError unless each file the model reads beside it is there."""
        for other in self.companions(path):
            if not other.is_file():
                raise ModelError(f"{path.name} needs {other.name} beside it, and {other} does not exist",
                                 hint=f"copy {other.name} next to {path.name}: the model is read from both, by "
                                      "the same name")


@contextlib.contextmanager
def quiet(name: str, tool: str) -> Iterator[None]:
    """Swallow a converter's chatter (`tool`'s: TensorFlow, ExecuTorch) while it builds model `name`; if the build
    fails, put the tail of it in the ModelError."""
    # Some of it comes from C++ straight to file descriptors 1 and 2, which only a dup2 can catch.
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        saved = os.dup(1), os.dup(2)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        except ModelError:
            raise
        except Exception as exc:
            sink.seek(0)
            said = "\n".join(sink.read().decode(errors="replace").splitlines()[-15:])
            raise ModelError(
                f"building model {name} failed: {type(exc).__name__}: {exc}"
                + (f"\n{tool} said:\n{said}" if said else ""),
                hint=f"check the {tool} install (pip install -e '.[models]'), or pass the path of your own file",
            ) from exc
        finally:
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)
