"""A labgrid farm on this machine, for the simulated fleet: a coordinator and one exporter on loopback, and the
exporter configuration and places of any inventory (which a lab's own coordinator takes as well)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

from .cache import write_atomic
from .console import Reporter, recording, shell
from .errors import ConfigError, SetupError
from .farm import Farm, board_tags, exporter_config
from .inventory import Inventory

EXPORTER = "edgeorch-sim"  # the exporter's name: its resources are EXPORTER/<board>/NetworkService


def export(farm: Farm, inventory: Inventory, boards: list, config: Path, out: Reporter) -> None:
    """Write the exporter configuration of `boards` to `config` and make each a place of the farm, with its tags."""
    write_atomic(config, yaml.safe_dump(exporter_config(boards), sort_keys=False))
    for board in boards:
        farm.add_place(board.name, board_tags(board))
        out.step(f"place with tags {', '.join(f'{k}={v}' for k, v in board_tags(board).items())}", board.name)
    out.show(f"exporter configuration: {config} (run `labgrid-exporter -c {farm.address} --name SHELF {config}` on "
             "the host that reaches these boards)")


def _dir(inventory: Inventory) -> Path:
    """Where the farm keeps its pids, logs and the coordinator's saved places: beside the sim fleet's state."""
    return inventory.path.parent / ".sim" / "farm"


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def _pidfile(inventory: Inventory, what: str) -> Path:
    return _dir(inventory) / f"{what}.pid"


def _running(inventory: Inventory, what: str) -> psutil.Process | None:
    """The `what` (coordinator, exporter) this farm started, if it still runs (and is that program)."""
    try:
        proc = psutil.Process(int(_pidfile(inventory, what).read_text()))
        return proc if any(f"labgrid-{what}" in word for word in proc.cmdline()) else None
    except (OSError, ValueError, psutil.Error):
        return None


def _start(inventory: Inventory, what: str, argv: list[str]) -> None:
    """`argv` in the background, its output in .sim/farm/WHAT.log, its pid in WHAT.pid; in the command log."""
    where = _dir(inventory)
    where.mkdir(parents=True, exist_ok=True)
    with recording(shell(argv)) as rec, open(where / f"{what}.log", "ab") as log:
        proc = subprocess.Popen(argv, cwd=where, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        rec.note = f"started in the background, pid {proc.pid} (log: {where / f'{what}.log'})"
    write_atomic(_pidfile(inventory, what), str(proc.pid))


def up(inventory: Inventory, port: int, out: Reporter) -> str:
    """A coordinator on 127.0.0.1:`port` and an exporter of the inventory's sim boards, their places made (idempotent);
    returns the coordinator's address."""
    boards = [b for b in inventory.boards if b.sim]
    if not boards:
        raise ConfigError(f"inventory {inventory.path} has no simulated board (`sim: true`)",
                          hint="farm.up serves the simulated fleet; a lab runs labgrid-coordinator itself and "
                               "`invoke farm.export --coordinator HOST:PORT` makes its places")
    address = f"127.0.0.1:{port}"
    if not _running(inventory, "coordinator"):
        _start(inventory, "coordinator", [_bin("labgrid-coordinator"), "--listen", address])
    farm = _connect(address, inventory)
    with farm:
        config = _dir(inventory) / "exporter.yaml"
        export(farm, inventory, boards, config, out)
        if not _running(inventory, "exporter"):
            _start(inventory, "exporter", [_bin("labgrid-exporter"), "--coordinator", address, "--name", EXPORTER,
                                           str(config)])
        _published(farm, [b.name for b in boards], inventory)
    out.show(f"farm up: coordinator {address}, {len(boards)} places; use it with --coordinator {address} or "
             f"export EDGEORCH_COORDINATOR={address}")
    return address


def _connect(address: str, inventory: Inventory, within: float = 30) -> Farm:
    """The coordinator just started, once it answers."""
    deadline = time.monotonic() + within
    while True:
        try:
            return Farm(address, timeout=5)
        except SetupError:
            if time.monotonic() > deadline or not _running(inventory, "coordinator"):
                raise SetupError(f"the labgrid coordinator did not start on {address}",
                                 hint=f"read {_dir(inventory) / 'coordinator.log'}; is port "
                                      f"{address.rsplit(':', 1)[1]} taken?") from None
            time.sleep(0.5)


def _published(farm: Farm, names: list[str], inventory: Inventory, within: float = 30) -> None:
    """Wait until the exporter publishes every board's NetworkService."""
    deadline = time.monotonic() + within
    while not all(farm.places()[n].service for n in names):
        if time.monotonic() > deadline or not _running(inventory, "exporter"):
            raise SetupError("the labgrid exporter did not publish the boards",
                             hint=f"read {_dir(inventory) / 'exporter.log'}")
        time.sleep(0.5)


def down(inventory: Inventory, out: Reporter) -> None:
    """Stop the exporter and the coordinator farm.up started (the places are forgotten with it)."""
    for what in ("exporter", "coordinator"):
        proc = _running(inventory, what)
        if proc:
            with recording(f"kill {proc.pid}  # labgrid-{what} of the sim fleet's farm") as rec:
                proc.terminate()
                try:
                    proc.wait(5)
                except psutil.TimeoutExpired:
                    proc.kill()
                    rec.note = "killed: it did not end within 5 s of SIGTERM"
            out.step(f"labgrid-{what} (pid {proc.pid}) stopped")
        _pidfile(inventory, what).unlink(missing_ok=True)
    for leftover in ("places.yaml", "resources.yaml", "exporter.yaml"):  # what the coordinator saved, and ours
        (_dir(inventory) / leftover).unlink(missing_ok=True)

