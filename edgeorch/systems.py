"""The systems the research edgeorch grows from measured (images/systems.toml): each with the edgeorch frameworks that
run it, reach it or run its successor, or the reason none does; checked when loaded, printed by `invoke matrix`."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .recipes import IMAGES

SYSTEMS = IMAGES / "systems.toml"
STATUSES = ("runs", "via", "successor", "not run")
KINDS = ("framework", "runtime", "accelerator")


@dataclass(frozen=True, kw_only=True)
class System:
    """One framework, runtime or accelerator of the papers, and how edgeorch stands to it."""
    name: str
    kind: str
    papers: tuple[str, ...]  # keys of Systems.papers: the papers that measured it (none: asked for otherwise)
    status: str  # one of STATUSES
    frameworks: tuple[str, ...]  # the edgeorch frameworks that run it, reach it or run its successor
    how: str
    sources: tuple[str, ...] = ()  # where the facts of `how` are written


@dataclass(frozen=True, kw_only=True)
class Systems:
    papers: dict[str, str]  # key -> the paper, in words
    systems: tuple[System, ...]


def load_systems(path: Path = SYSTEMS) -> Systems:
    """The systems of `path`; ConfigError naming the file, the system and the field that is wrong."""
    try:
        doc = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"cannot read {path}: {e}", hint="fix the file (TOML)") from e
    papers = doc.get("papers") or {}
    systems = []
    for i, item in enumerate(doc.get("system") or [], 1):
        where = f"{path}: system #{i} ({item.get('name', 'no name')})"
        try:
            system = System(name=item["name"], kind=item["kind"], papers=tuple(item["papers"]), status=item["status"],
                            frameworks=tuple(item["frameworks"]), how=item["how"],
                            sources=tuple(item.get("sources", ())))
        except (KeyError, TypeError) as e:
            raise ConfigError(f"{where} lacks the field {e}", hint="give it name, kind, papers, status, frameworks "
                                                                   "and how (sources too unless it runs)") from e
        _check(system, papers, where)
        systems.append(system)
    if not systems:
        raise ConfigError(f"{path} lists no [[system]]", hint="list the systems of the papers")
    return Systems(papers=dict(papers), systems=tuple(systems))


def _check(s: System, papers: dict, where: str) -> None:
    if s.kind not in KINDS:
        raise ConfigError(f"{where}: kind {s.kind!r} is not one of {list(KINDS)}", hint="fix its kind")
    if s.status not in STATUSES:
        raise ConfigError(f"{where}: status {s.status!r} is not one of {list(STATUSES)}", hint="fix its status")
    unknown = [p for p in s.papers if p not in papers]
    if unknown:
        raise ConfigError(f"{where}: papers {unknown} are not under [papers]", hint="add them there, or fix the key")
    if (s.status == "not run") != (not s.frameworks):
        raise ConfigError(f"{where}: status {s.status!r} with frameworks {list(s.frameworks)}",
                          hint="a system edgeorch does not run names no framework; every other names the ones "
                               "that run it")
    if not s.how.strip():
        raise ConfigError(f"{where}: `how` is empty", hint="say how edgeorch runs it, or why not")
    if s.status != "runs" and not s.sources:
        raise ConfigError(f"{where}: status {s.status!r} cites no source", hint="add the URLs where its facts are "
                                                                               "written to `sources`")
    bad = [u for u in s.sources if not u.startswith("https://")]
    if bad:
        raise ConfigError(f"{where}: sources {bad} are not https:// addresses", hint="cite each source by its URL")
