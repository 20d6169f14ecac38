"""The board's lock (transport._LOCK_SCRIPT, Link._take_lock): its scripts run for real here, as two logins of one
board (this one and `nobody`), against a /tmp of their own."""

import getpass
import os
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from edgeorch import transport
from edgeorch.arch import Arch
from edgeorch.errors import BoardBusy, BoardError
from edgeorch.inventory import Board
from edgeorch.transport import _LOCK_SCRIPT, _RECLAIM_SCRIPT, Link

from .localboard import LocalBoard, can_switch_user, shared_tmp

BOARD = Board(name="pi", host="h", user="u", arch=Arch.ARM64)
as_nobody = pytest.mark.skipif(not can_switch_user(), reason="needs root and setpriv to act as a second login")


@pytest.fixture
def tmp(monkeypatch):
    """The board's /tmp: sticky and open to every login."""
    with shared_tmp() as path:
        monkeypatch.setattr(transport, "LOCK_DIR", path)
        yield Path(path)


def locked(conn: LocalBoard, token: str = "t0ken", purpose: str = "run r1") -> Link:
    """A Link on `conn` that has taken the board's lock."""
    link = Link(BOARD, token=token, purpose=purpose)
    link.conn = conn
    link._take_lock()
    return link


def release(link: Link) -> None:
    link._lock.close()
    link._lock.proc.wait(timeout=10)


@as_nobody
def test_another_login_is_refused_with_who_holds_it_and_never_sees_the_token(tmp):
    first = locked(LocalBoard())
    mine = tmp / f"edgeorch-{os.getuid()}"
    assert stat.S_IMODE((mine / "holder").stat().st_mode) == 0o600 and "t0ken" in (mine / "holder").read_text()
    assert "t0ken" not in (mine / "note").read_text() and "(run r1, since" in (mine / "note").read_text()
    started = time.monotonic()
    with pytest.raises(BoardBusy) as busy:
        locked(LocalBoard(as_nobody=True), token="other")
    assert time.monotonic() - started < transport.LOCK_WAIT_S + 5
    assert busy.value.message.startswith(f"board pi is being benchmarked by {getpass.getuser()}@"
                                         f"{socket.gethostname()} pid {os.getpid()} (run r1, since ")
    assert "logged in there as root" in busy.value.message
    assert "t0ken" not in busy.value.message
    peek = LocalBoard(as_nobody=True).run(f"cat {mine}/holder")
    assert peek.failed and "t0ken" not in peek.stdout  # 0600: the holder's token is its login's alone
    assert b"t0ken" not in Path(f"/proc/{first._lock.proc.pid}/cmdline").read_bytes()  # nor in the process list
    release(first)
    assert not mine.exists()  # its notes go with the lock
    release(locked(LocalBoard(as_nobody=True), token="other"))  # and the other login gets it


@as_nobody
@pytest.mark.parametrize("kind", ["fifo", "symlink", "directory"])
def test_a_lock_file_another_login_replaced_is_refused_at_once_with_the_fix(tmp, kind):
    lock, target = tmp / "edgeorch.lock", tmp / "target"
    target.write_text("kept")
    made = {"fifo": f"mkfifo {lock}", "symlink": f"ln -s {target} {lock}", "directory": f"mkdir {lock}"}[kind]
    assert not LocalBoard(as_nobody=True).run(made).failed
    started = time.monotonic()
    with pytest.raises(BoardError) as refused:
        locked(LocalBoard())
    assert time.monotonic() - started < 5  # no open of a FIFO waiting for a writer that never comes
    assert "is not a regular file" in refused.value.message and f"sudo rm -r {lock}" in refused.value.hint
    assert target.read_text() == "kept" and not list(tmp.glob("edgeorch-[0-9]*"))


@as_nobody
def test_a_holder_directory_another_login_made_is_refused(tmp):
    assert not LocalBoard(as_nobody=True).run(f"mkdir -m 0777 {tmp}/edgeorch-{os.getuid()}").failed
    with pytest.raises(BoardError) as refused:
        locked(LocalBoard())
    assert "is not this login's directory" in refused.value.message and "remove it" in refused.value.hint


@as_nobody
def test_another_login_cannot_make_edgeorch_kill_a_process_of_its_choosing(tmp):
    """Before, a holder file in /tmp with the session's token named the pid edgeorch killed, as root."""
    victim = subprocess.Popen(["sleep", "60"])
    try:
        nobody = LocalBoard(as_nobody=True)
        holder = nobody._session()  # the other login holds the lock, and writes notes naming the victim
        holder.exec_command(f"touch {tmp}/edgeorch.lock; exec 9<{tmp}/edgeorch.lock; flock 9; echo locked; exec cat")
        assert holder.proc.stdout.readline().strip() == "locked"
        start = Path(f"/proc/{victim.pid}/stat").read_text().rsplit(") ", 1)[1].split()[19]
        forged = f"{victim.pid} {start} t0ken\n"
        nobody.run(f"mkdir -m 0711 {tmp}/edgeorch-65534; printf '%s' '{forged}' > {tmp}/edgeorch-65534/holder; "
                   f"printf '{victim.pid} root@x pid 1 t0ken\\n' > {tmp}/edgeorch-holder-{os.getuid()}")
        with pytest.raises(BoardBusy) as busy:
            locked(LocalBoard())
        assert victim.poll() is None  # alive
        assert "an older edgeorch, logged in there as nobody" in busy.value.message  # named by its owner only
        holder.close()
        holder.proc.wait(timeout=10)
    finally:
        victim.kill()
        victim.wait()


def test_our_own_lock_left_by_a_dropped_connection_is_taken_back_and_another_sessions_is_not(tmp):
    conn = LocalBoard()
    old = locked(conn)
    stale = old._lock.proc
    old._lock.drop()  # its sshd has not noticed the drop yet: the holder lives on
    again = locked(conn)  # the same orchestrator reconnecting, same token
    assert stale.wait(timeout=10) in (-signal.SIGTERM, 128 + signal.SIGTERM)  # ended by edgeorch
    with pytest.raises(BoardBusy):
        locked(LocalBoard(), token="another-session")  # same login, another orchestrator: waits its turn
    assert again._lock.proc.poll() is None
    release(again)
    stale.stdin.close()


@as_nobody
def test_the_reclaim_ends_only_a_verified_lock_holder_of_this_login(tmp):
    mine = tmp / f"edgeorch-{os.getuid()}"
    mine.mkdir(mode=0o711)

    def reclaim(proc):
        start = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(") ", 1)[1].split()[19]
        (mine / "holder").write_text(f"{proc.pid} {start} t0ken\n")
        return subprocess.run(["sh", "-c", _RECLAIM_SCRIPT, "sh", str(proc.pid), start, str(tmp)]).returncode

    plain = subprocess.Popen(["sh", "-c", "sleep 60", "sh"])  # ours, but not the lock script
    waits = _LOCK_SCRIPT.replace("IFS= read -r token", "sleep 60; read -r token")
    other = subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "sh", "-c", waits,
                              "sh", "1", "/nonexistent"])
    try:
        time.sleep(0.2)
        assert reclaim(plain) == 3 and reclaim(other) == 3
        assert plain.poll() is None and other.poll() is None
    finally:
        for p in (plain, other):
            p.kill()
            p.wait()
