"""Tables of boards: the inventory, what `check` found, the modes each board runs, what `clean` freed, and a deploy's
transfers in a line."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from ..deploy import Deployment
from ..errors import ConfigError
from ..facts import BoardFacts
from ..health import age
from ..inventory import Board, Inventory
from ..plan import MODES, plan_target
from ..recipes import Recipe
from ..releases import Platform
from ..transport import GroupResult
from . import FitTable


def mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def sent(d: Deployment) -> str:
    """What a deploy sent, in bytes, or that the board had it all."""
    if not d.sent:
        return "sent nothing (already there)"
    return "sent " + ", ".join(f"{t.label} {mb(t.sent)}" + (f" of {mb(t.lacked)} lacking" if t.lacked != t.sent
                                                            else "")
                               + (f" ({mb(t.unpacked)} unpacked, {t.seconds:.1f} s)" if t.unpacked else "")
                               for t in d.sent)


def inventory_table(inventory: Inventory) -> Table:
    """The boards of the inventory, one row each."""
    t = Table(title=f"Boards in {escape(str(inventory.path))}")
    for col in ("name", "address", "arch", "groups", "frameworks", "workdir", "sim"):
        t.add_column(col)
    for b in inventory.boards:
        t.add_row(*map(escape, (b.name, b.address, b.arch.value, ", ".join(b.groups), ", ".join(b.frameworks),
                                b.workdir)), "yes" if b.sim else "")
    return t


def check_table(boards: list[Board], group: GroupResult[BoardFacts]) -> FitTable:
    """The check task's table: a row per board, its problems (the board's verdict) never cut."""
    t = FitTable(title="Board check", caption_justify="left",
                 drop=("sensors", "numpy", "os", "frameworks", "docker", "python", "ssh", "arch", "free disk"))
    for col in ("board", "ssh", "arch", "os", "docker", "python", "numpy", "free disk", "sensors", "frameworks",
                "problems"):
        t.add_column(col)
    for b in boards:
        if b.name in group.failed:  # its error, whole, under the table
            t.add_row(escape(b.name), "[red]no[/]", b.arch.value, *[""] * 7, "[red]not reached: see below[/]")
            continue
        f = group.succeeded[b.name]
        t.add_row(escape(b.name), "ok", b.arch.value if f.arch_ok else f"[red]{escape(f.arch_found)}[/]",
                  escape(f.os or "?"), escape(f.docker) if f.docker else "[red]none[/]",
                  escape(f.python) if f.python else "[red]none[/]", escape(f.numpy or "-"), _disk(f),
                  escape(f.sensors), escape(", ".join(f.frameworks)),
                  f"[red]{len(f.problems)}: see below[/]" if f.problems else "[green]none[/]")
    return t


def _disk(facts: BoardFacts) -> str:
    """The board's free disk, and what a deploy of its frameworks would take of it (the layers it lacks, twice:
    their archive, then the layers loaded), in decimal GB; `?` where an image is not built here yet."""
    free = "?" if facts.disk_free_mb is None else f"{facts.disk_free_mb / 1000:.1f} GB"
    return f"{free} (needs {'?' if facts.needs_mb is None else f'{facts.needs_mb / 1000:.2f} GB'})"


def modes_table(boards: list[Board], found: GroupResult[Platform], recipes: dict[str, Recipe], bases: dict) -> Table:
    """Per board (its arch, release and Python, as `found` over SSH) and framework: the modes it runs in, each with
    the version it gets, or why not."""
    t = Table(title="Modes per board: the version each mode runs, or why not", caption_justify="left")
    for col in ("board", "framework", *MODES):
        t.add_column(col)
    reasons: list[str] = []
    for board in boards:
        if board.name not in found.succeeded:
            t.add_row(escape(board.name), "-", *[f"[red]unreachable: {escape(str(found.failed[board.name]))}[/]"]
                      + [""] * (len(MODES) - 1))
            continue
        for i, recipe in enumerate(recipes.values()):
            cells = []
            for mode in MODES:
                try:
                    target = plan_target(recipe, board, found.succeeded[board.name], bases, (mode,))
                    cells.append(f"[green]{target.build.version}[/]"
                                 + (f" ({target.suite} image)" if mode != "native" else ""))
                except ConfigError as e:
                    why = e.message.split(": ", 1)[-1]
                    if why not in reasons:
                        reasons.append(why)
                    cells.append(f"[red]✗[/] ({reasons.index(why) + 1})")
            t.add_row(escape(board.name) if not i else "", recipe.framework, *cells)
    t.caption = "\n".join(f"({n}) {escape(why)}" for n, why in enumerate(reasons, 1))
    return t


def cleaned_table(group: GroupResult[dict]) -> Table:
    """What `clean` removed from each board, and what that freed."""
    t = Table(title="Cleaned")
    for col in ("board", "images", "bundles", "models", "freed"):
        t.add_column(col)
    for name, done in group.succeeded.items():
        gone = done["removed"]
        t.add_row(escape(name), escape(", ".join(gone["images"])) or "-", escape(", ".join(gone["bundles"])) or "-",
                  str(len(gone["models"])) if gone["models"] else "-", mb(done["freed_bytes"]))
    return t


def places_table(address: str, places: dict, now: float) -> FitTable:
    """The farm's places: tags, who holds each and since when, its edgeorch lease, how it is reached."""
    t = FitTable(title=f"Places of the farm at {escape(address)}", drop=("tags", "reservation", "reached at"))
    for col in ("place", "healthy", "held by", "since", "lease", "reservation", "reached at", "tags"):
        t.add_column(col)
    for p in sorted(places.values(), key=lambda p: p.name):
        lease = "" if p.lease is None else (f"{p.lease - now:.0f} s left" if p.lease > now else "[red]lapsed[/]")
        service = (escape(f"{p.service['username']}@{p.service['address']}:{p.service['port']}") if p.service
                   else "[red]none[/]")
        healthy = {"yes": "yes", "no": "[red]no[/]"}.get(p.tags.get("healthy", ""), "?")
        tags = ", ".join(f"{k}={v}" for k, v in sorted(p.tags.items()) if k not in ("healthy", "edgeorch_lease"))
        t.add_row(escape(p.name), healthy, escape(p.holder or "-"),
                  f"{age(now - p.since)} ago" if p.holder else "", lease, escape(p.reservation or ""),
                  service, escape(tags))
    return t

