"""Each board's health as `invoke check` last found it, so a sweep of a group skips a board known to be broken."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .cache import cache_dir, locked, write_atomic
from .console import Reporter
from .errors import ConfigError
from .inventory import Board, Inventory


def _path() -> Path:
    return cache_dir() / "health.json"


def _key(inventory: Inventory, board: Board) -> str:
    # per inventory file and address: a test's inventory never marks the user's boards, nor the other way round
    return f"{inventory.path}::{board.name}::{board.address}"


def _read(path: Path) -> dict:
    """health.json as a dict; one that is unreadable or not a JSON object (another program's, a broken disk) is
    treated as empty: the boards count as never checked, and the next check writes it anew."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def record(inventory: Inventory, found: dict[str, list[str]]) -> None:
    """Store what a check found: board name -> its problems (none: healthy)."""
    path = _path()
    # two checks at once (two terminals): each adds its boards to what the other wrote, none is lost
    with locked(cache_dir() / "locks" / "health.lock"):
        doc = _read(path)
        now = time.time()
        for board in inventory.boards:
            if board.name in found:
                doc[_key(inventory, board)] = {"problems": [str(p) for p in found[board.name]], "checked_at": now}
        write_atomic(path, json.dumps(doc, indent=1))


def problems(inventory: Inventory, board: Board) -> tuple[list[str], float] | None:
    """The problems the last check found on `board` and when (epoch seconds), or None if it was never checked (or
    its entry is not one a check writes)."""
    entry = _read(_path()).get(_key(inventory, board))
    if not isinstance(entry, dict):
        return None
    found, when = entry.get("problems"), entry.get("checked_at")
    if not isinstance(found, list) or not all(isinstance(p, str) for p in found) \
            or not isinstance(when, (int, float)) or isinstance(when, bool):
        return None
    return found, float(when)


def age(seconds: float) -> str:
    """A duration as a person says it: 40 s, 12 min, 3 h, 2 days."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size if unit == "days" else seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def healthy_boards(inventory: Inventory, host: str, out: Reporter) -> list[Board]:
    """The boards of `host`, less those the last `invoke check` found unhealthy, unless they are named in `host`
    themselves (a group skips a broken board; asking for the board by name means: try it anyway)."""
    named = {w.strip() for w in host.split(",")}
    boards = []
    for board in inventory.select(host):
        found = None if board.name in named else problems(inventory, board)
        if found and found[0]:
            out.note(f"skipping {board.name}", f"unhealthy at its last check {age(time.time() - found[1])} ago "
                     f"({'; '.join(found[0])}); fix it and run `invoke check --host {board.name}`, or name it to "
                     f"try anyway: --host {board.name}")
            continue
        boards.append(board)
    if not boards:
        raise ConfigError(f"every board of --host {host} was unhealthy at its last check",
                          hint="fix them and rerun `invoke check`, or name a board explicitly")
    return boards
