"""The simulated fleet: real sshd with pinned keys, own-arch userlands, private Docker stores."""

import os
import subprocess

import pytest
import yaml

from edgeorch import sim
from edgeorch.errors import BoardError
from edgeorch.images import engine
from edgeorch.inventory import load_inventory
from edgeorch.transport import connect, remote, sh

from .conftest import BOOKWORM

MACHINE = {"rpi3-bookworm": "armv7l", "x86": "x86_64"}


def test_every_board_runs_its_own_arch_over_ssh(pi_fleet):
    for board in pi_fleet.select(BOOKWORM):
        with connect(board) as conn:
            out = remote(conn, sh("uname -m; python3 -c 'import platform; print(platform.machine())'"),
                         board=board.name)
        assert out.stdout.split() == [MACHINE[board.name]] * 2


def test_each_board_has_a_private_docker_store(pi_fleet):
    for board in pi_fleet.select(BOOKWORM):
        with connect(board) as conn:
            root = remote(conn, ["docker", "info", "--format", "{{.DockerRootDir}}"], board=board.name).stdout.strip()
        assert root == str(pi_fleet.path.parent / ".sim" / board.name / "docker")
    assert engine().info()["DockerRootDir"] != root


def _with_known_hosts(fleet, tmp_path, text):
    raw = yaml.safe_load(fleet.path.read_text())
    raw["defaults"]["identity_file"] = str(fleet.boards[0].identity_file)
    raw["defaults"]["known_hosts"] = str(tmp_path / "known_hosts")
    (tmp_path / "known_hosts").write_text(text)
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump(raw))
    return load_inventory(tmp_path / "inventory.yaml").select("x86")[0]


def test_an_unpinned_host_key_is_refused(fleet, tmp_path):
    board = _with_known_hosts(fleet, tmp_path, "")
    with pytest.raises(BoardError, match="host key is not pinned"), connect(board):
        pass


def test_a_changed_host_key_is_refused(fleet, tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / "other"], check=True)
    kind, key = (tmp_path / "other.pub").read_text().split()[:2]
    board = _with_known_hosts(fleet, tmp_path, f"[127.0.0.1]:2203 {kind} {key}\n")
    with pytest.raises(BoardError, match="different from the pinned one"), connect(board):
        pass


def test_sim_up_again_changes_nothing(pi_fleet):
    boards = [sb for sb in sim.sim_boards(pi_fleet) if sb.board in pi_fleet.select(BOOKWORM)]
    pids = [sim._sshd(sb).pid for sb in boards]
    docker0 = sim._docker0()
    sim.up(pi_fleet, BOOKWORM)
    assert "docker0" in docker0  # the main engine's bridge survived the private engines
    assert [sim._sshd(sb).pid for sb in boards] == pids
    assert sim._docker0() == docker0


def test_a_board_is_a_chroot_not_a_container(pi_fleet):
    for board in pi_fleet.select(BOOKWORM):
        with connect(board) as conn:
            out = remote(conn, sh("grep Seccomp: /proc/self/status; test -e /.dockerenv || echo no-dockerenv"),
                         board=board.name).stdout.split()
        assert out == ["Seccomp:", "0", "no-dockerenv"]  # no seccomp filter, no container marker
    assert not engine().containers.list(filters={"label": sim.SIM_LABEL})


def test_sim_down_removes_what_up_made(fleet, tmp_path):
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump({
        "defaults": {"user": "pi", "host": "127.0.0.1", "identity_file": ".sim/id_ed25519",
                     "known_hosts": ".sim/known_hosts"},
        "boards": [{"name": "simdown", "port": 2299, "arch": "amd64", "sim": True}]}))
    inventory = load_inventory(tmp_path / "inventory.yaml")
    docker0 = sim._docker0()
    [sb] = sim.up(inventory)
    pids = [sim._dockerd(sb).pid, sim._sshd(sb).pid]
    with connect(inventory.boards[0]) as conn:
        assert remote(conn, ["hostname"], board="simdown").stdout.strip() == "simdown"
    sim.down(inventory)
    for pid in pids:  # the private engine and the board's sshd
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not sb.state.exists() and not sb.run.exists()
    assert not (tmp_path / ".sim" / "id_ed25519").exists()
    assert not (tmp_path / ".sim" / "known_hosts").exists()
    assert not (tmp_path / ".sim" / "up.lock").exists()
    assert sim._docker0() == docker0
    # the shipped x86 board, which shares the board image, is untouched
    assert [r["sshd"] for r in sim.status(fleet) if r["board"] == "x86"] == [True]
