"""The farm (edgeorch/farm.py) against a real labgrid coordinator on loopback: reserve, queue, lock, lease and
release; a killed holder's place taken back; a lock taken between reserve and lock; bad input. No board is needed:
a place is held whatever it reaches."""

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from edgeorch import farm
from edgeorch.console import Reporter
from edgeorch.errors import BoardBusy, ConfigError, SetupError
from edgeorch.farm import Farm, farm_boards
from edgeorch.inventory import load_inventory
from edgeorch.report.boards import places_table

pytest.importorskip("labgrid")
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def coordinator(tmp_path):
    """A labgrid coordinator of its own, with the places a and b (tagged as farm.export tags boards)."""
    address = f"127.0.0.1:{_free_port()}"
    proc = subprocess.Popen([BIN / "labgrid-coordinator", "--listen", address], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                with Farm(address, timeout=2) as lab:
                    for name, arch in (("a", "arm64"), ("b", "armv7")):
                        lab.add_place(name, {"board": name, "arch": arch, "healthy": "yes"})
                break
            except SetupError:
                time.sleep(0.1)
        yield address
    finally:
        proc.terminate()
        proc.wait(10)


def as_user(monkeypatch, name: str, address: str) -> Farm:
    """A session with the coordinator as another person (labgrid's LG_USERNAME)."""
    monkeypatch.setenv("LG_USERNAME", name)
    return Farm(address)


def reporter() -> tuple[Reporter, Console]:
    console = Console(record=True, width=200)
    return Reporter(console), console


def test_a_held_place_is_locked_leased_and_left_as_found(coordinator, monkeypatch):
    out, _ = reporter()
    with as_user(monkeypatch, "alice", coordinator) as lab:
        with lab.hold("a", wait_timeout=5, out=out) as held:
            place = lab.place("a")
            assert place.holder == held.holder and held.holder.endswith("/alice")
            assert place.reservation == held.reservation and place.lease > time.time()
        after = lab.place("a")
        assert (after.holder, after.reservation, after.lease) == (None, None, None)


def test_a_second_user_waits_in_the_queue_then_gets_the_board(coordinator, monkeypatch):
    alice, bob = as_user(monkeypatch, "alice", coordinator), as_user(monkeypatch, "bob", coordinator)
    out, console = reporter()
    got = threading.Event()
    with alice:
        hold = alice.hold("a", wait_timeout=30, out=Reporter(Console(file=None, quiet=True)))
        hold.__enter__()
        threading.Timer(2.0, lambda: hold.__exit__(None, None, None)).start()
        with bob, bob.hold("a", wait_timeout=30, out=out) as held:
            got.set()
            assert bob.place("a").holder.endswith("/bob") and held.waited_s >= 1.5
    said = console.export_text()
    assert "a: waiting for the farm: held by" in said and "/alice since" in said


def test_a_wait_past_its_timeout_names_the_holder_and_leaves_no_reservation(coordinator, monkeypatch):
    alice, bob = as_user(monkeypatch, "alice", coordinator), as_user(monkeypatch, "bob", coordinator)
    out, _ = reporter()
    with alice, bob, alice.hold("a", wait_timeout=5, out=out) as held:
        with pytest.raises(BoardBusy, match=r"a is still held by \S+/alice after 1 s") as err:
            with bob.hold("a", wait_timeout=1, out=out):
                pass
        assert "--wait-timeout" in err.value.hint and err.value.exit_code == 5
        assert bob.place("a").reservation == held.reservation  # bob's own is gone, alice's stays


HOLDER = """
import sys, time
from rich.console import Console
from edgeorch import farm
from edgeorch.console import Reporter
farm.LEASE_S = 3
lab = farm.Farm(sys.argv[1])
with lab.hold("a", wait_timeout=5, out=Reporter(Console())):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_killed_orchestrators_board_is_taken_back_once_its_lease_lapses(coordinator, monkeypatch):
    monkeypatch.setenv("LG_USERNAME", "carol")
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, coordinator], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parents[2])
    assert proc.stdout.readline().strip() == "held"
    proc.send_signal(signal.SIGKILL)  # no release, no clean-up: only the lease tells
    proc.wait()
    out, console = reporter()
    start = time.monotonic()
    with as_user(monkeypatch, "bob", coordinator) as bob:
        assert bob.place("a").holder.endswith("/carol")
        with bob.hold("a", wait_timeout=30, out=out):
            assert bob.place("a").holder.endswith("/bob")
    assert time.monotonic() - start < 3 + 5  # the lease, and a few polls
    said = console.export_text()
    assert "a: released from" in said and "/carol" in said


def test_a_place_locked_by_hand_is_never_taken_back(coordinator, monkeypatch):
    by_hand = subprocess.run([BIN / "labgrid-client", "-x", coordinator, "-p", "a", "acquire", "--allow-unmatched"],
                             env={"LG_USERNAME": "dave", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert by_hand.returncode == 0, by_hand.stderr
    with as_user(monkeypatch, "bob", coordinator) as bob:
        with pytest.raises(BoardBusy, match=r"held by \S+/dave"):
            with bob.hold("a", wait_timeout=2, out=reporter()[0]):
                pass
        assert bob.place("a").holder.endswith("/dave") and bob.place("a").reservation is None


def test_a_lock_taken_between_reserve_and_lock_is_an_error_and_nothing_stays(coordinator, monkeypatch):
    me = as_user(monkeypatch, "erin", coordinator)
    same_login = Farm(coordinator)  # the lab's shared account, from another shell on this host
    allocated = Farm._allocated

    def then_someone_locks(self, *args):
        allocated(self, *args)
        same_login._rpc("AcquirePlace", placename="a")

    monkeypatch.setattr(Farm, "_allocated", then_someone_locks)
    with me, same_login:
        with pytest.raises(BoardBusy, match="a was locked by .*/erin between its reservation and edgeorch's lock"):
            with me.hold("a", wait_timeout=5, out=reporter()[0]):
                pass
        place = me.place("a")
        assert place.reservation is None and place.lease is None  # ours cancelled; their lock is theirs


def test_bad_farm_input_names_the_thing_and_the_fix(coordinator, tmp_path):
    with pytest.raises(ConfigError, match="is not HOST:PORT") as err:
        Farm("farm.lab:http")
    assert "--coordinator 127.0.0.1:20408" in err.value.hint
    with pytest.raises(SetupError, match=f"127.0.0.1:{_free_port()} does not answer|does not answer") as err:
        Farm(f"127.0.0.1:{_free_port()}", timeout=2)
    assert "invoke farm.up" in err.value.hint and err.value.exit_code == 3
    with Farm(coordinator) as lab, pytest.raises(ConfigError, match="has no place 'rpi9'") as err:
        with lab.hold("rpi9", wait_timeout=1, out=reporter()[0]):
            pass
    assert "farm.export" in err.value.hint


def test_sweeps_select_places_by_name_group_or_tag_and_skip_unhealthy_ones(coordinator, tmp_path):
    (tmp_path / "inventory.yaml").write_text(
        "boards:\n"
        "  - {name: a, host: 10.0.0.1, user: pi, arch: arm64, groups: [pis]}\n"
        "  - {name: b, host: 10.0.0.2, user: pi, arch: armv7, groups: [pis]}\n"
        "  - {name: c, host: 10.0.0.3, user: pi, arch: arm64}\n")
    inventory = load_inventory(tmp_path / "inventory.yaml")
    out, console = reporter()
    with Farm(coordinator) as lab:
        with pytest.raises(ConfigError, match="place of the farm"):
            farm_boards(inventory, "c", lab, out)  # c is not a place: no address to reach it by
        with pytest.raises(ConfigError, match="has no NetworkService"):
            farm_boards(inventory, "tag:arch=arm64", lab, out)  # nobody exports a's address yet
        lab.tag("b", {"healthy": "no"})
        lab.places = lambda real=lab.places: {n: farm.dataclasses.replace(p, service={
            "address": "127.0.0.9", "port": 2299, "username": "lab"}) for n, p in real().items()}
        assert [b.name for b in farm_boards(inventory, "pis", lab, out)] == ["a"]
        assert "skipping b" in console.export_text()
        assert [b.name for b in farm_boards(inventory, "b", lab, out)] == ["b"]  # named: tried anyway
        [a] = farm_boards(inventory, "tag:arch=arm64", lab, out)
        assert (a.ssh.hostname, a.ssh.port, a.ssh.user) == ("127.0.0.9", 2299, "lab")
        with pytest.raises(ConfigError, match="no place of the farm .* has the tag arch=x86"):
            farm_boards(inventory, "tag:arch=x86", lab, out)


def test_the_status_table_shows_who_holds_what(coordinator, monkeypatch):
    out, _ = reporter()
    with as_user(monkeypatch, "alice", coordinator) as lab, lab.hold("a", wait_timeout=5, out=out):
        console = Console(record=True, width=200)
        console.print(places_table(lab.address, lab.places(), time.time()))
    text = console.export_text()
    row = next(line for line in text.splitlines() if line.startswith("│ a "))
    assert "/alice" in row and "s left" in row
    assert next(line for line in text.splitlines() if line.startswith("│ b ")).count("-") >= 1


def test_a_board_lost_to_a_sweep_is_marked_unhealthy_in_the_farm_and_released(coordinator, tmp_path):
    from edgeorch import execute, results
    from edgeorch.arch import Arch
    from edgeorch.errors import Unreachable
    from edgeorch.inventory import Board
    from edgeorch.plan import Arm, Cell, StopRule
    from edgeorch.runners import Measures
    from edgeorch.sweep import Sweep

    closed = _free_port()  # nothing listens there: the board is off
    (tmp_path / "known_hosts").write_text("")
    board = Board(name="a", host="127.0.0.1", port=closed, user="pi", arch=Arch.ARM64,
                  known_hosts=tmp_path / "known_hosts")
    cell = Cell(board="a", framework="tflite", model="tiny", arms=(Arm(label="docker", mode="docker"),),
                iterations=3, warmup=0, threads=0)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    results.write_manifest(run_dir, complete=False)
    ex = execute.Execution(run_dir=run_dir, earlier={cell.key: []})
    out, console = reporter()
    with Farm(coordinator) as lab:
        job = execute.Job(sweep=Sweep(cells={"a": [cell]}, rule=StopRule(), recipes=[], named={}, model="tiny",
                                      batches=(1,), options=()), built={}, modes={}, refs={}, timeout=10,
                          measures=Measures(), farm=lab, wait_timeout=5)
        with pytest.raises(Unreachable):
            execute._board(job, board, None, ex, None, out)
        place = lab.place("a")
        assert place.tags["healthy"] == "no" and (place.holder, place.reservation) == (None, None)
    assert "a: marked unhealthy in the farm" in console.export_text()
    assert results.read_manifest(run_dir)["farm"][0]["place"] == "a"  # held, then lost: the manifest says so


def test_export_writes_an_exporter_configuration_labgrid_publishes_as_the_boards_places(coordinator, tmp_path):
    from edgeorch.farm_sim import export

    (tmp_path / "inventory.yaml").write_text(
        "boards:\n"
        "  - {name: pi4-lab, host: 198.51.100.40, port: 2222, user: ada, arch: arm64, groups: [shelf1, pis]}\n"
        "  - {name: jetson, host: 198.51.100.41, user: nv, arch: arm64, groups: [shelf1]}\n")
    inventory = load_inventory(tmp_path / "inventory.yaml")
    config = tmp_path / "shelf1.yaml"
    out, console = reporter()
    with Farm(coordinator) as lab:
        export(lab, inventory, inventory.select("shelf1"), config, out)
        exporter = subprocess.Popen([BIN / "labgrid-exporter", "--coordinator", coordinator, "--name", "shelf1",
                                     str(config)], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(100):
                places = lab.places("pi4-lab", "jetson")
                if all(p.service for p in places.values()):
                    break
                time.sleep(0.1)
        finally:
            exporter.terminate()
            exporter.wait(10)
    reached = {n: (p.service["address"], p.service["port"], p.service["username"]) for n, p in places.items()}
    assert reached == {"pi4-lab": ("198.51.100.40", 2222, "ada"), "jetson": ("198.51.100.41", 22, "nv")}
    assert places["pi4-lab"].tags == {"board": "pi4-lab", "arch": "arm64", "healthy": "yes", "group_shelf1": "yes",
                                      "group_pis": "yes"}
    assert f"exporter configuration: {config}" in console.export_text()
