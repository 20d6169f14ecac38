"""Where expensive build products live, keyed by the hash of what made them."""

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import ModelError

ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """The build cache: $EDGEORCH_CACHE or ~/.cache/edgeorch (outside the clone, so reruns reuse it)."""
    path = Path(os.environ.get("EDGEORCH_CACHE", "~/.cache/edgeorch")).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on the file `path` (made if missing), waited for."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)  # never through a link
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def held(name: str) -> contextlib.AbstractContextManager[None]:
    """The lock named `name` in the cache: two orchestrators on one host (two terminals, or the test suite's parts
    side by side) that need the same build product make it once, and never write one file both."""
    return locked(cache_dir() / "locks" / f"{name}.lock")


def content_hash(*parts: str | bytes | Path, length: int = 12) -> str:
    """A short sha256 over strings, bytes and files (a file counts by its name and bytes)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            part = part.name.encode() + b"\0" + part.read_bytes()
        elif isinstance(part, str):
            part = part.encode()
        h.update(part + b"\0")
    return h.hexdigest()[:length]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_atomic(path: Path, data: str | bytes, *, mode: int = 0o644) -> None:
    """Write `path` so that it is whole or absent whenever the writer is killed, and never through a link: the one
    way edgeorch writes a result, manifest, cache entry or health file.

    The bytes go to a temporary of a unique name beside it (mkstemp: O_EXCL, so a link or file someone left there is
    never written through), fsynced, renamed over `path` (which replaces a link there, never follows it), then the
    directory is fsynced so that the rename survives a power cut; a failure removes the temporary."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fchmod(f.fileno(), mode)  # mkstemp makes it 0600; containers running as another user must read it
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make the names in directory `path` (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def cached_file(path: Path, make: Callable[[], bytes], check: Callable[[Path], None],
                log: Callable[[str], None], what: str) -> str:
    """sha256 of `path`, made by `make` unless a copy that matches its `.sha256` sidecar is there.

    A made file is written atomically and passed to `check` before its sidecar is written, so
    a broken build is never taken for a cached good one.
    """
    sidecar = path.with_name(path.name + ".sha256")
    if path.is_file() and sidecar.is_file():
        digest = file_sha256(path)
        if sidecar.read_bytes().split()[:1] == [digest.encode()]:
            return digest
        log(f"cached {path.name} does not match its checksum; making it again")
    log(f"{what} (first time only)")
    data = make()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)
        check(path)
        digest = hashlib.sha256(data).hexdigest()
        write_atomic(sidecar, f"{digest}  {path.name}\n".encode())  # `sha256sum -c` format
    except OSError as exc:
        raise ModelError(f"cannot write {path.name} to {path.parent}: {exc.strerror}",
                         hint="make that directory writable or use another cache directory") from exc
    return digest
