"""Board side of edgeorch: the benchmark entrypoint that runs on boards, in Docker and on bare metal.

Standard library, numpy and the framework only: these files are copied byte for byte into
every image and every bare-metal bundle (as the package `edgeorch_bench`), and their digest
is recorded in every result so the two modes provably ran the same code.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

RESULT_SCHEMA = "edgeorch.result/3"  # /2: model batch, --option, outputs; /3: --min-time, iterations may exceed
PROBE_SCHEMA = "edgeorch.probe/1"
BOARD_PACKAGE = "edgeorch_bench"  # the name this directory has on a board

# Exit codes of the entrypoint; the orchestrator maps them to errors.
EXIT_OK, EXIT_ARGS, EXIT_MODEL, EXIT_FRAMEWORK, EXIT_RUNTIME = 0, 2, 3, 4, 5


def bundle_files(directory: Path | None = None) -> list[Path]:
    """The files that make up the board-side bundle, in a stable order."""
    directory = Path(directory or Path(__file__).parent)
    return sorted(directory.glob("*.py"))


def bundle_digest(directory: Path | None = None) -> str:
    """sha256 over the bundle's file names and bytes: equal digests mean identical code."""
    h = hashlib.sha256()
    for path in bundle_files(directory):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()
