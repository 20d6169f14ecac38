"""Board side of edgeorch: the benchmark entrypoint that runs on boards, in Docker and on bare metal.

Standard library, numpy and the framework only: these files are copied byte for byte into
every image and every bare-metal bundle (as the package `edgeorch_bench`, its subpackages
included), and their digest is recorded in every result so the two modes provably ran the same code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

# /2: model batch, --option, outputs; /3: --min-time, iterations may exceed; /4: memory, counters, energy, profile;
# /6: the timed inferences summarised on the board (samples.summarize) instead of listed
RESULT_SCHEMA = "edgeorch.result/6"
PROBE_SCHEMA = "edgeorch.probe/1"
SAMPLES_MARK = "edgeorch-samples "  # the watcher's line of --keep-samples: the mark, then base64 of every sample
BOARD_PACKAGE = "edgeorch_bench"  # the name this directory has on a board

# Exit codes of the entrypoint; the orchestrator maps them to errors.
EXIT_OK, EXIT_ARGS, EXIT_MODEL, EXIT_FRAMEWORK, EXIT_RUNTIME = 0, 2, 3, 4, 5
EXIT_TIMEOUT = 124  # the watcher killed the run at its deadline, as timeout(1) would

CHUNK = 1 << 20  # hashing reads this much at a time: a model never has to fit in memory as a whole


def bundle_files(directory: Path | None = None) -> list[Path]:
    """The files of the board-side bundle, relative to `directory` (POSIX paths, subpackages included), sorted."""
    directory = Path(directory or Path(__file__).parent)
    return sorted((p.relative_to(directory) for p in directory.rglob("*.py") if "__pycache__" not in p.parts),
                  key=lambda p: p.as_posix())


def bundle_digest(directory: Path | None = None) -> str:
    """sha256 over the bundle's relative paths and bytes: equal digests mean identical code."""
    directory = Path(directory or Path(__file__).parent)
    h = hashlib.sha256()
    for path in bundle_files(directory):
        h.update(path.as_posix().encode() + b"\0" + (directory / path).read_bytes() + b"\0")
    return h.hexdigest()


def file_sha256(path, chunk: int = CHUNK) -> str:
    """sha256 of a file, read `chunk` bytes at a time."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
