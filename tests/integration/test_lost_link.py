"""A board that goes silent (it lost power or network) mid-command or mid-transfer: SSH keepalive ends the wait within
about a minute, as a lost connection, whatever the command's own deadline."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from edgeorch import deploy, sim, transport
from edgeorch.errors import ConnectionLost

from . import faults as F


@pytest.fixture
def x86(fleet):
    sb = F.sim_board(fleet)
    if sim._sshd(sb) is None:
        sim.up(fleet, "x86")
    return sb


@pytest.mark.parametrize("during", ["command", "sftp"])
def test_a_link_that_stops_mid_command_or_transfer_is_lost_within_a_minute(x86, tmp_path, during):
    local = tmp_path / "big.tar.gz"
    with open(local, "wb") as f:
        f.truncate(512 * 2**20)  # sparse here; long enough on the wire to be stopped mid-way
    stopped: list[psutil.Process] = []
    with transport.Link(x86.board, token="fault-test", purpose="fault test") as link:
        workdir = deploy.prepare_workdir(link.conn, x86.board)
        dest = Path(workdir, local.name)
        partial = dest.with_name(dest.name + ".partial")

        def stop_when_under_way():  # the board's side of this link stops, as a board that lost power
            F.wait_for(lambda: partial.exists() and partial.stat().st_size > 0 if during == "sftp" else
                       any("sleep" in " ".join(c.cmdline()) for s in F.connections(x86, os.getpid())
                           for c in s.children(recursive=True)), "under way", timeout=60, every=0.2)
            stopped.extend(F.connections(x86, os.getpid()))
            stopped.extend(c for s in list(stopped) for c in s.children(recursive=True))
            F.kill(stopped, signal.SIGSTOP)

        stopper = threading.Thread(target=stop_when_under_way)
        stopper.start()
        clock = time.monotonic()
        try:
            with pytest.raises(ConnectionLost) as e:
                if during == "sftp":
                    deploy._put(link.conn, x86.board, local, str(dest), None, "test", resume=True)
                else:
                    transport.remote(link.conn, ["sleep", "600"], board=x86.board.name, timeout=600)
            took = time.monotonic() - clock
        finally:
            stopper.join()
            F.kill(stopped, signal.SIGCONT)
            F.kill(stopped)  # this link's sshd and what it ran: gone with the link
    partial.unlink(missing_ok=True)
    assert took < 90, took  # 15 s x 3 keepalives unanswered, not the command's 600 s nor TCP's 15 minutes
    assert e.value.message.startswith("board x86: the ")
    if during == "command":
        assert "lost during `sleep 600`" in e.value.message
        assert "did not answer SSH keepalives for 45 s" in e.value.message
    else:
        assert "lost while sending big.tar.gz" in e.value.message and "from where it stopped" in e.value.hint
