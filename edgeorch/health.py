"""Each board's health as `invoke check` last found it, so a sweep of a group skips a board known to be broken."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .cache import cache_dir
from .inventory import Board, Inventory


def _path() -> Path:
    return cache_dir() / "health.json"


def _key(inventory: Inventory, board: Board) -> str:
    # per inventory file and address: a test's inventory never marks the user's boards, nor the other way round
    return f"{inventory.path}::{board.name}::{board.address}"


def record(inventory: Inventory, found: dict[str, list[str]]) -> None:
    """Store what a check found: board name -> its problems (none: healthy)."""
    path = _path()
    doc = json.loads(path.read_text()) if path.exists() else {}
    now = time.time()
    for board in inventory.boards:
        if board.name in found:
            doc[_key(inventory, board)] = {"problems": found[board.name], "checked_at": now}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(path)


def problems(inventory: Inventory, board: Board) -> tuple[list[str], float] | None:
    """The problems the last check found on `board` and when (epoch seconds), or None if it was never checked."""
    path = _path()
    try:
        entry = json.loads(path.read_text()).get(_key(inventory, board))
    except (OSError, json.JSONDecodeError):
        return None
    return (entry["problems"], entry["checked_at"]) if entry else None


def age(seconds: float) -> str:
    """A duration as a person says it: 40 s, 12 min, 3 h, 2 days."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size if unit == "days" else seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"
