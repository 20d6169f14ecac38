"""The boards: load inventory.yaml, validate every field, select boards by name or group."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .arch import Arch
from .errors import ConfigError

_REQUIRED = ("name", "host", "user", "arch")
_KNOWN = {"name", "host", "port", "user", "arch", "identity_file", "known_hosts", "workdir",
          "groups", "frameworks", "python", "docker_args", "sim"}


@dataclass(frozen=True, kw_only=True)
class Board:
    name: str
    host: str
    port: int = 22
    user: str
    arch: Arch
    identity_file: Path | None = None
    known_hosts: Path | None = None  # None: the user's ~/.ssh/known_hosts
    workdir: str = "edgeorch"        # relative to the user's home unless absolute
    groups: tuple[str, ...] = ()
    frameworks: tuple[str, ...] = ("tflite",)
    python: str = "python3"
    docker_args: tuple[str, ...] = ()  # added to `docker create`, e.g. --runtime nvidia on a Jetson
    sim: bool = False

    @property
    def address(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


@dataclass(frozen=True)
class Inventory:
    path: Path
    boards: tuple[Board, ...] = field(default=())

    def groups(self) -> dict[str, list[str]]:
        """Group name -> board names, including the implicit group `all`."""
        out: dict[str, list[str]] = {"all": [b.name for b in self.boards]}
        for b in self.boards:
            for g in b.groups:
                out.setdefault(g, []).append(b.name)
        return out

    def select(self, spec: str) -> list[Board]:
        """Boards named by `spec`: a board, a group, or a comma list of either, in inventory order."""
        by_name = {b.name: b for b in self.boards}
        groups = self.groups()
        wanted: set[str] = set()
        for word in (w.strip() for w in spec.split(",")):
            if word in by_name:
                wanted.add(word)
            elif word in groups:
                wanted.update(groups[word])
            else:
                raise ConfigError(
                    f"--host {word!r} is neither a board nor a group in {self.path}",
                    hint=f"use one of the boards {sorted(by_name)} or groups {sorted(groups)}, "
                         "or add the board to the inventory",
                )
        return [b for b in self.boards if b.name in wanted]


def load_inventory(path: str | Path) -> Inventory:
    """Read and validate an inventory file; any problem is a ConfigError naming file, board, field."""
    path = Path(path).resolve()
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"inventory {path} does not exist",
                          hint="create it (see README: Adding a real board) or pass --inventory") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"inventory {path} is not valid YAML: {e}",
                          hint="fix the syntax at the line shown") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("boards"), list):
        raise ConfigError(f"inventory {path} has no `boards:` list",
                          hint="write `boards:` followed by one `- name: ...` entry per board")
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigError(f"inventory {path}: `defaults` must be a mapping of board fields")
    boards: list[Board] = []
    for i, entry in enumerate(doc["boards"]):
        if not isinstance(entry, dict):
            raise ConfigError(f"inventory {path}: boards[{i}] is not a mapping",
                              hint="each board is a `- name: ...` block of fields")
        board = _board({**defaults, **entry}, path, i)
        if any(b.name == board.name for b in boards):
            raise ConfigError(f"inventory {path}: board {board.name!r} is defined twice",
                              hint="give every board a unique name")
        boards.append(board)
    return Inventory(path, tuple(boards))


def _board(raw: dict, path: Path, index: int) -> Board:
    name = raw.get("name")
    where = f"inventory {path}, board {name!r}" if name else f"inventory {path}, boards[{index}]"

    def bad(field: str, problem: str, hint: str) -> ConfigError:
        return ConfigError(f"{where}, field `{field}`: {problem}", hint=hint)

    for key in _REQUIRED:
        if raw.get(key) in (None, ""):
            raise bad(key, "is missing", f"add `{key}:` to the board")
    unknown = set(raw) - _KNOWN
    if unknown:
        raise bad(sorted(unknown)[0], "is not a known field", f"known fields: {sorted(_KNOWN)}")
    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        raise bad("name", f"{name!r} is not a plain name", "use letters, digits, - and _")
    try:
        arch = Arch.parse(str(raw["arch"]))
    except ValueError:
        raise bad("arch", f"{raw['arch']!r} is not a known architecture",
                  f"use one of {[a.value for a in Arch]}") from None
    port = raw.get("port", 22)
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise bad("port", f"{port!r} is not a TCP port", "use a number from 1 to 65535")
    groups = raw.get("groups", [])
    frameworks = raw.get("frameworks", ["tflite"])
    docker_args = raw.get("docker_args", [])
    for key, value in (("groups", groups), ("frameworks", frameworks), ("docker_args", docker_args)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad(key, f"{value!r} is not a list of names", f"write `{key}: [a, b]`")
    if "all" in groups:
        raise bad("groups", "`all` is reserved for every board", "pick another group name")

    def local_path(key: str) -> Path | None:
        value = raw.get(key)
        if value is None:
            return None
        p = Path(str(value)).expanduser()
        return p if p.is_absolute() else (path.parent / p).resolve()

    return Board(
        name=name, host=str(raw["host"]), port=port, user=str(raw["user"]), arch=arch,
        identity_file=local_path("identity_file"), known_hosts=local_path("known_hosts"),
        workdir=str(raw.get("workdir", "edgeorch")), groups=tuple(groups),
        frameworks=tuple(frameworks), python=str(raw.get("python", "python3")),
        docker_args=tuple(docker_args), sim=bool(raw.get("sim", False)),
    )
