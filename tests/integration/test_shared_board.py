"""A board shared with other people: what another login leaves in the board's /tmp (the one directory every login
shares) neither hangs edgeorch, nor steers what it kills, nor is taken for its own. The other login is `lab`, a
second normal user of the sim board in group docker, logged in over SSH (OpenSSH's client) as a person would."""

from __future__ import annotations

import subprocess
import time

import pytest

from edgeorch import sim

from . import faults as F
from .conftest import invoke

QUICK = ["--framework", "tflite", "--model", "tiny", "--iterations", "3", "--warmup", "0", "--min-time", "0",
         "--repeat", "1"]


@pytest.fixture
def x86(fleet):
    sb = F.sim_board(fleet)
    if sim._sshd(sb) is None:
        sim.up(fleet, "x86")
    F.wait_for(lambda: F.lock_free(sb), "free lock on the x86 board", timeout=600, every=0.5)
    return sb


def as_lab(sb: sim.SimBoard, script: str) -> subprocess.CompletedProcess:
    """`script` run on the board by the other login, over SSH."""
    b = sb.board
    return subprocess.run(["ssh", "-i", str(b.identity_file), "-o", f"UserKnownHostsFile={b.known_hosts}",
                           "-o", "BatchMode=yes", "-p", str(b.port), f"lab@{b.host}", script],
                          capture_output=True, text=True, timeout=60, check=True)


@pytest.fixture
def board_tmp(x86):
    """The board's /tmp with no lock file in it (as on a board edgeorch never ran on); what a test leaves there goes."""
    tmp = x86.rootfs / "tmp"
    made = [tmp / "edgeorch.lock", tmp / f"edgeorch-{sim._entries(x86.rootfs / 'etc' / 'passwd')['pi'][2]}"]
    for path in made:
        subprocess.run(["rm", "-rf", "--", path], check=True)
    yield tmp
    for path in made:
        subprocess.run(["rm", "-rf", "--", path], check=True)


def test_a_fifo_another_login_put_where_the_lock_goes_is_refused_at_once(x86, board_tmp):
    as_lab(x86, "mkfifo /tmp/edgeorch.lock")
    started = time.monotonic()
    r = invoke("bench", "--host", "x86", *QUICK, check=False)
    out = F.flat(r.stdout + r.stderr)
    assert r.returncode != 0 and time.monotonic() - started < 120, out[-3000:]
    assert "/tmp/edgeorch.lock is not a regular file" in out and "remove it" in out, out[-3000:]
    assert "edgeorch-run-" not in out  # nothing ran


def test_another_logins_holder_files_neither_steer_a_kill_nor_pass_for_edgeorchs(x86, board_tmp):
    """`lab` makes the directory where edgeorch keeps who holds the lock, naming a process of its own as the holder
    with a token it guessed: edgeorch refuses that directory, and the process lives on."""
    pid = as_lab(x86, "nohup sleep 300 >/dev/null 2>&1 & echo $!").stdout.strip()
    try:
        as_lab(x86, f"mkdir -m 0777 /tmp/edgeorch-1000 && echo '{pid} 1 guessed' >/tmp/edgeorch-1000/holder")
        r = invoke("bench", "--host", "x86", *QUICK, check=False)
        out = F.flat(r.stdout + r.stderr)
        assert r.returncode != 0 and "/tmp/edgeorch-1000 is not this login's directory" in out, out[-3000:]
        assert as_lab(x86, f"kill -0 {pid} && echo alive").stdout.strip() == "alive"
    finally:
        as_lab(x86, f"kill {pid}; rm -rf /tmp/edgeorch-1000")
