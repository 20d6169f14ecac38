"""Faults injected into the simulated fleet, the way Mender tests updates: cut, pause or stop a board at the worst
moment, then check what a user would notice. The exit code and a message naming the cause and the way on; no
finished result lost (raw answers counted, and compared byte for byte, before and after); nothing half-done left
behind (no `.partial` file, no image tagged from a cut transfer, no run or container living on, on the board); and
the next deploy, bench or `--resume` completes.

Every fault hits the x86 board (native, fast). Two inventory entries naming that one board stand for a two-board
sweep: a sweep visits its boards one after the other, each with the board's lock, so they never meet. Every wait is
for a condition (a raw file, a process on the board), bounded generously; no assertion depends on a timing."""

import hashlib
import json
import os
import re
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from edgeorch import deploy, sim, transport
from edgeorch.cache import cache_dir
from edgeorch.errors import BoardError
from edgeorch.models import resolve_model

from . import faults as F
from .conftest import invoke

QUICK = ["--framework", "tflite", "--model", "tiny", "--iterations", "3", "--warmup", "0"]
TIMEOUT = 300  # --timeout of runs that must not time out; a run that the test finds on the board has this deadline


@pytest.fixture
def x86(fleet):
    """The x86 sim board, up and free: another test's orchestrator that was just killed may still hold its lock for
    a moment, and a board stopped by a failed test is started again."""
    sb = F.sim_board(fleet)
    if sim._sshd(sb) is None:
        sim.up(fleet, "x86")
    F.wait_for(lambda: F.lock_free(sb), "free lock on the x86 board", timeout=600, every=0.5)
    return sb


def raw_count(run_dir: Path, board: str) -> int:
    return len(list((run_dir / "raw" / board).glob("*.json")))


def assert_nothing_left(sb, run_dir: Path, *sessions: str) -> None:
    """No run of these orchestrator sessions, nor of the run directory, lives on on the board; no half-sent file."""
    for session in sessions:
        assert F.runs_left(sb, session, run_dir.name) == [], f"runs of session {session} live on on the board"
    assert F.partials(F.workdir(sb)) == []


# --- transfers, in process: the test is the orchestrator ----------------------------------------------------------

class CorruptingSftp:
    """An SFTP client whose next upload arrives damaged, as a bad link or SD card would deliver it: one byte
    flipped, or only its first half written."""

    def __init__(self, sftp, damage: str):
        self._sftp, self._damage, self.damaged = sftp, damage, []

    def put(self, local, remotepath, callback=None, confirm=True):
        with open(local, "rb") as src, self.open(remotepath, "wb") as out:
            out.write(src.read())

    def open(self, path, mode="r", bufsize=-1):
        f = self._sftp.open(path, mode, bufsize)
        if "w" not in mode and "+" not in mode:
            return f
        self.damaged.append(path)
        return DamagingFile(f, self._damage)

    def __getattr__(self, name):
        return getattr(self._sftp, name)


class DamagingFile:
    HALF = 3 * 2**20 // 2  # of the test's 3 MB files

    def __init__(self, f, damage: str):
        self._f, self._damage, self._at = f, damage, 0

    def write(self, data: bytes) -> None:
        start, self._at = self._at, self._at + len(data)
        if self._damage == "truncated":
            data = data[:max(0, self.HALF - start)]
        elif start <= 100 < self._at:
            data = data[:100 - start] + bytes([data[100 - start] ^ 0xFF]) + data[101 - start:]
        if data:
            self._f.write(data)

    def seek(self, offset: int) -> None:
        self._at = offset
        self._f.seek(offset)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def __getattr__(self, name):
        return getattr(self._f, name)


@pytest.fixture
def link(x86):
    with transport.Link(x86.board, token="fault-test", purpose="fault test") as link:
        yield link


@pytest.mark.parametrize("damage, what", [("flipped", "archive"), ("truncated", "model")])
def test_a_transfer_that_arrives_corrupted_is_caught_by_its_checksum(x86, link, tmp_path, monkeypatch, damage,
                                                                    what):
    local = tmp_path / ("image.tar.gz" if what == "archive" else "net.tflite")
    local.write_bytes(os.urandom(3 * 2**20))
    sha = hashlib.sha256(local.read_bytes()).hexdigest()
    workdir = deploy.prepare_workdir(link.conn, x86.board)
    real = link.conn.sftp()
    corrupting = CorruptingSftp(real, damage)
    monkeypatch.setattr(link.conn, "sftp", lambda: corrupting)
    if what == "archive":
        dest = f"{workdir}/{local.name}"
        send = lambda: deploy._put(link.conn, x86.board, local, dest, None, "test")  # noqa: E731
    else:
        dest = f"{workdir}/models/{sha[:16]}.tflite"
        send = lambda: deploy.push_file(link.conn, x86.board, workdir, local, sha)  # noqa: E731
    Path(dest).unlink(missing_ok=True)
    with pytest.raises(BoardError) as caught:
        send()
    assert corrupting.damaged == [dest + ".partial"]
    assert f"{local.name} arrived corrupted" in caught.value.message and "deploy again" in caught.value.hint
    assert not Path(dest).exists() and not Path(dest + ".partial").exists()  # no file under either name
    monkeypatch.setattr(link.conn, "sftp", lambda: real)
    send()  # the next transfer, undamaged, completes
    assert hashlib.sha256(Path(dest).read_bytes()).hexdigest() == sha
    Path(dest).unlink()


def test_the_boards_sftp_server_dying_mid_transfer_is_retried_and_leaves_nothing(x86, link, tmp_path):
    local = tmp_path / "big.tar.gz"
    with open(local, "wb") as f:
        f.truncate(128 * 2**20)  # long enough to be hit mid-way (sparse here, 128 MB of zeros on the wire)
    workdir = deploy.prepare_workdir(link.conn, x86.board)
    dest = Path(workdir, local.name)
    partial = dest.with_name(dest.name + ".partial")
    killed = []

    def sftp_servers():
        return [p for c in F.connections(x86, os.getpid()) for p in F.descendants(c)
                if "sftp-server" in " ".join(F._cmdline(p))]

    def kill_when_half_sent():
        server = F.wait_for(lambda: partial.exists() and partial.stat().st_size > 0 and sftp_servers(),
                            "transfer under way", timeout=120)
        F.kill(server)
        killed.append(partial.stat().st_size)

    killer = threading.Thread(target=kill_when_half_sent)
    killer.start()
    try:
        _, attempts = link.retrying(lambda conn: deploy._put(conn, x86.board, local, str(dest), None, "test"))
    finally:
        killer.join()
    assert killed and killed[0] < local.stat().st_size  # it was cut half way
    assert attempts == 2  # the board's SFTP server ended: a new connection, a new one, and the file again
    assert dest.stat().st_size == local.stat().st_size and not partial.exists()
    dest.unlink()


# --- sweeps, driven through `invoke` as a user would ---------------------------------------------------------------

def test_a_corrupted_model_on_the_board_is_sent_again(x86):
    spec = resolve_model("tiny", cache_dir=cache_dir())
    on_board = F.workdir(x86) / "models" / f"{spec.sha256[:16]}{spec.path.suffix}"
    on_board.parent.mkdir(parents=True, exist_ok=True)
    data = bytearray(spec.path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one bit rot on the SD card
    on_board.write_bytes(bytes(data))
    r = F.invoke_free(x86, "bench", "--host", "x86", *QUICK, "--min-time", "0", "--repeat", "1",
                      "--timeout", str(TIMEOUT))
    assert hashlib.sha256(on_board.read_bytes()).hexdigest() == spec.sha256
    run_dir = Path(r.stdout.split("results go to ")[1].split()[0])
    docs = [json.loads(b) for b in F.raw_files(run_dir).values()]
    assert len(docs) == 2 and {d["model"]["sha256"] for d in docs} == {spec.sha256}
    assert F.manifest(run_dir)["complete"] is True


def _unreachable_port() -> int:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_board_unreachable_from_the_start_loses_nothing_and_resumes_once_fixed(x86, tmp_path):
    port = _unreachable_port()
    inventory = F.write_inventory(tmp_path, {"name": "x86"}, {"name": "ghost", "port": port, "groups": []})
    r = F.invoke_free(x86, "bench", "--inventory", str(inventory), "--host", "x86,ghost", *QUICK, "--min-time", "0",
               "--repeat", "1", "--timeout", str(TIMEOUT), check=False)
    out = F.flat(r.stdout)
    assert r.returncode == 6, out[-3000:]
    assert f"board ghost (pi@127.0.0.1:{port}) is unreachable: Connection refused" in out
    assert "INCOMPLETE: 1 of 2 cells did not finish (ghost)" in out and "invoke bench --resume" in out
    run_dir = Path(out.split("results go to ")[1].split()[0])
    kept = F.raw_files(run_dir)
    assert sorted(kept) == ["x86/tflite-tiny-bare-00.json", "x86/tflite-tiny-docker-00.json"]
    assert F.manifest(run_dir)["missing"] == ["ghost/tflite-tiny"]
    # the user fixes the board's address (here: the same board under its other name) and goes on
    F.write_inventory(tmp_path, {"name": "x86"}, {"name": "ghost", "groups": []})
    r = F.invoke_free(x86, "bench", "--resume", str(run_dir))
    assert "1 of 2 cells were finished, 2 runs are kept" in F.flat(r.stdout)
    after = F.raw_files(run_dir)
    assert {k: after[k] for k in kept} == kept  # x86's answers untouched, not rerun
    assert sorted(after) == sorted([*kept, "ghost/tflite-tiny-bare-00.json", "ghost/tflite-tiny-docker-00.json"])
    m = F.manifest(run_dir)
    assert m["complete"] is True and m["missing"] == []
    assert sorted(pd.read_parquet(run_dir / "results.parquet")["board"]) == ["ghost", "ghost", "x86", "x86"]


def test_a_board_whose_sshd_drops_every_handshake_is_retried_then_reported(x86, tmp_path):
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def drop_every_connection():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                conn.close()  # as an sshd past MaxStartups, or restarting, does
            except TimeoutError:
                continue

    dropper = threading.Thread(target=drop_every_connection)
    dropper.start()
    try:
        inventory = F.write_inventory(tmp_path, {"name": "flaky", "port": port, "groups": []})
        r = invoke("bench", "--inventory", str(inventory), "--host", "flaky", *QUICK, "--min-time", "0",
                   "--repeat", "1", check=False)
    finally:
        stop.set()
        dropper.join()
        listener.close()
    out = F.flat(r.stdout)
    assert r.returncode == 6, out[-3000:]
    assert "retrying in 2 s" in out and "retrying in 4 s" in out  # backoff, then it gives up
    assert f"board flaky (pi@127.0.0.1:{port}): SSH failed" in out and "check that sshd runs" in out
    assert "invoke bench --resume" in out


def bench(sb, tmp_path, *args: str) -> F.Orchestrator:
    """`invoke bench` of the tiny net in the background, once it holds the board."""
    return F.start(sb, tmp_path, "bench", *QUICK, *args)


# Docker's side in the default tier (the container outlives the dropped session), both with --all
BOTH_MODES = ["docker", pytest.param("bare", marks=pytest.mark.exhaustive)]


@pytest.mark.parametrize("mode", BOTH_MODES)
def test_a_connection_dropped_during_a_run_is_retried_and_recorded(x86, tmp_path, mode):
    o = bench(x86, tmp_path, "--host", "x86", "--mode", mode, "--min-time", "2", "--repeat", "2",
              "--timeout", str(TIMEOUT))
    try:
        [watcher] = F.wait_for(lambda: F.watchers(x86, o.pid, TIMEOUT), "run on the board", orchestrator=o)
        session = F.session_of(watcher)
        F.kill(F.connections(x86, o.pid))  # sshd's side of the connection dies: the link drops mid-run
        rc = o.wait()
    finally:
        o.stop()
    out = F.flat(o.output)
    assert rc == 0, out[-3000:]
    assert "connection lost; reconnecting in 2 s (attempt 2 of 3)" in out
    run_dir = o.run_dir()
    runs = pd.read_parquet(run_dir / "results.parquet")
    assert len(runs) == 2 and sorted(runs["attempts"]) == [1, 2]  # the lost run, run again, is marked as such
    retried = runs[runs["attempts"] == 2].iloc[0]
    assert f"note: x86 {mode} run #{retried['pair']} took 2 attempts (the connection dropped)" in out
    m = F.manifest(run_dir)
    assert m["complete"] is True and list(m["attempts"].values()) == [2]
    assert len(F.raw_files(run_dir)) == 2
    assert_nothing_left(x86, run_dir, session)


@pytest.mark.parametrize("mode", ["docker", "bare"])
def test_a_paused_link_times_out_and_the_run_is_killed_on_the_board(x86, tmp_path, mode):
    deadline = 20
    o = bench(x86, tmp_path, "--host", "x86", "--mode", mode, "--min-time", "600", "--repeat", "1",
              "--timeout", str(deadline))
    stopped = []
    try:
        [watcher] = F.wait_for(lambda: F.watchers(x86, o.pid, deadline), "run on the board", orchestrator=o)
        session = F.session_of(watcher)
        stopped = F.connections(x86, o.pid)
        F.kill(stopped, signal.SIGSTOP)  # the link stalls: nothing moves between the orchestrator and the board
        # the board ends the run itself at its deadline, whether or not anyone listens
        F.wait_for(lambda: not F.runs_left(x86, session, o.run_dir().name), "end of the run on the board",
                   timeout=deadline + 240, every=0.5)
        F.kill(stopped, signal.SIGCONT)
        rc = o.wait()
    finally:
        F.kill(stopped, signal.SIGCONT)
        o.stop()
    out = F.flat(o.output)
    assert rc == 6, out[-3000:]
    assert f"the run was killed on the board after {deadline} s (the deadline of --timeout)" in out
    assert "INCOMPLETE: 1 of 1 cells did not finish (x86)" in out and "invoke bench --resume" in out
    run_dir = o.run_dir()
    assert json.loads(F.raw_files(run_dir)[f"x86/tflite-tiny-{mode}-00.json"])["error"]["kind"] == "timeout"
    assert "timeout" in F.manifest(run_dir)["cells"]["x86/tflite-tiny"]["failure"]
    assert_nothing_left(x86, run_dir, session)


def two_entries(tmp_path) -> Path:
    """An inventory of two boards, x86 and x86b, both the x86 sim board: a sweep visits them one after the other."""
    return F.write_inventory(tmp_path, {"name": "x86"}, {"name": "x86b", "groups": []})


@pytest.mark.parametrize("mode", BOTH_MODES)
def test_a_board_stopped_mid_run_keeps_every_finished_run_and_resumes(fleet, x86, tmp_path, mode):
    inventory = two_entries(tmp_path)
    o = bench(x86, tmp_path, "--inventory", str(inventory), "--host", "x86,x86b", "--mode", mode, "--min-time", "1",
              "--repeat", "2", "--timeout", str(TIMEOUT))
    try:
        run_dir = F.wait_for(lambda: "results go to" in o.output and o.run_dir(), "run directory", orchestrator=o)
        # x86's cell is done, and x86b's second run is under way
        [watcher] = F.wait_for(lambda: raw_count(run_dir, "x86b") == 1 and F.watchers(x86, o.pid, TIMEOUT),
                               "second run of x86b", orchestrator=o)
        session = F.session_of(watcher)
        sim._stop_board(x86, "(a fault test: its power is cut)")
        rc = o.wait()
    finally:
        o.stop()
        sim.up(fleet, "x86")
    out = F.flat(o.output)
    assert rc == 6, out[-3000:]
    assert "[x86b] connection lost; reconnecting in 2 s" in out
    assert "board x86b (pi@127.0.0.1:2203) is unreachable: Connection refused (gave up reconnecting" in out
    assert "INCOMPLETE: 1 of 2 cells did not finish (x86b); the 3 runs that did are in" in out
    assert f"invoke bench --resume {run_dir}" in out
    kept = F.raw_files(run_dir)
    assert sorted(kept) == [f"x86/tflite-tiny-{mode}-00.json", f"x86/tflite-tiny-{mode}-01.json",
                            f"x86b/tflite-tiny-{mode}-00.json"]
    m = F.manifest(run_dir)
    assert m["complete"] is False and m["missing"] == ["x86b/tflite-tiny"]
    assert "unreachable" in m["cells"]["x86b/tflite-tiny"]["failure"]
    assert len(pd.read_parquet(run_dir / "results.parquet")) == 3  # what finished is in the tables already

    r = F.invoke_free(x86, "bench", "--resume", str(run_dir))  # the board is back
    assert "1 of 2 cells were finished, 3 runs are kept" in F.flat(r.stdout)
    after = F.raw_files(run_dir)
    assert {k: after[k] for k in kept} == kept and len(after) == 4
    m = F.manifest(run_dir)
    assert m["complete"] is True and m["missing"] == [] and m["cells"]["x86b/tflite-tiny"]["failure"] is None
    assert sorted(pd.read_parquet(run_dir / "results.parquet")["board"]) == ["x86", "x86", "x86b", "x86b"]
    assert_nothing_left(x86, run_dir, session, *F.sessions_in(r.stdout))  # the run cut off with the board too


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_the_orchestrator_killed_mid_sweep_resumes_without_losing_or_mixing_runs(x86, tmp_path, signum):
    o = bench(x86, tmp_path, "--host", "x86", "--mode", "both", "--min-time", "1", "--repeat", "3",
              "--timeout", str(TIMEOUT))
    try:
        run_dir = F.wait_for(lambda: "results go to" in o.output and o.run_dir(), "run directory", orchestrator=o)
        # pair 0 whole, pair 1 half done: its second run is under way
        [watcher] = F.wait_for(lambda: raw_count(run_dir, "x86") == 3 and F.watchers(x86, o.pid, TIMEOUT),
                               "fourth run", orchestrator=o)
        session = F.session_of(watcher)
        o.signal(signum)
        rc = o.wait()
    finally:
        o.stop()
    out = F.flat(o.output)
    before = F.raw_files(run_dir)
    assert len(before) >= 3
    if signum == signal.SIGINT:
        assert rc == 1 and f"interrupted: every finished run is kept in {run_dir}" in out  # invoke's code for ^C
        assert f"invoke bench --resume {run_dir}" in out and F.manifest(run_dir)["interrupted"] is True
    else:
        assert rc == -signal.SIGKILL
    assert F.manifest(run_dir)["complete"] is False
    F.wait_for(lambda: F.lock_free(x86), "lock freed by the killed orchestrator's end", timeout=60)

    r = F.invoke_free(x86, "bench", "--resume", str(run_dir))
    after = F.raw_files(run_dir)
    whole = {p for p in range(3) if all(f"x86/tflite-tiny-{a}-{p:02d}.json" in before for a in ("docker", "bare"))}
    assert whole >= {0}
    for name, data in before.items():
        pair = int(name[-7:-5])
        if pair in whole:
            assert after[name] == data, f"{name} of a whole pair was rerun"
        else:  # a pair cut in half runs again whole, its half kept aside, never mixed in
            assert after[name] != data
            [aside] = (run_dir / "raw" / "superseded" / "x86").glob(Path(name).stem + ".*.json")
            assert aside.read_bytes() == data
    assert len(after) == 6
    runs = pd.read_parquet(run_dir / "results.parquet")
    assert sorted(zip(runs["pair"], runs["mode"])) == [(p, m) for p in range(3) for m in ("bare", "docker")]
    m = F.manifest(run_dir)
    assert m["complete"] is True and m["interrupted"] is False
    assert_nothing_left(x86, run_dir, session, *F.sessions_in(r.stdout))


def test_a_second_bench_or_deploy_on_a_busy_board_is_refused_and_the_first_is_untouched(x86, tmp_path):
    # runs of 4 s: the first holds the board well past the refusals, which take seconds each under load
    first = bench(x86, tmp_path, "--host", "x86", "--mode", "both", "--min-time", "4", "--repeat", "2",
                  "--timeout", str(TIMEOUT))
    try:
        run_dir = F.wait_for(lambda: "results go to" in first.output and first.run_dir(), "run directory",
                             orchestrator=first)
        F.wait_for(lambda: F.watchers(x86, first.pid, TIMEOUT), "run on the board", orchestrator=first)
        with ThreadPoolExecutor(2) as pool:  # a bench and a deploy, at once (-v: what they ran)
            second = pool.submit(invoke, "bench", "--host", "x86", *QUICK, "--min-time", "0", "--repeat", "1", "-v",
                                 check=False)
            deploy_ = pool.submit(invoke, "deploy", "--host", "x86", "--framework", "tflite", "-v", check=False)
        second, deploy_ = second.result(), deploy_.result()
        assert first.proc.poll() is None  # the refusals came while the first one ran
        rc = first.wait()
    finally:
        first.stop()
    holder = f"board x86 is being benchmarked by root@{socket.gethostname()} pid {first.pid} (run {run_dir.name}, since"
    for refused, code in ((second, 6), (deploy_, 5)):
        out = F.flat(refused.stdout)
        assert refused.returncode == code and holder in out, out[-3000:]
        assert "wait for that run to end" in out
        assert "edgeorch-run-" not in out and "docker load" not in out  # it ran nothing, sent nothing there
    out = F.flat(first.output)
    assert rc == 0, out[-3000:]
    runs = pd.read_parquet(run_dir / "results.parquet")
    assert len(runs) == 4 and set(runs["attempts"]) == {1}
    assert F.manifest(run_dir)["complete"] is True


def test_a_killed_orchestrator_frees_the_board_at_once(x86, tmp_path):
    killed = bench(x86, tmp_path, "--host", "x86", "--mode", "bare", "--min-time", "30", "--repeat", "1",
                   "--timeout", str(TIMEOUT))
    try:
        [watcher] = F.wait_for(lambda: F.watchers(x86, killed.pid, TIMEOUT), "run on the board", orchestrator=killed)
        session = F.session_of(watcher)
        killed.signal(signal.SIGKILL)
        killed.wait()
    finally:
        killed.stop()
    # its lock went with its connection; its run lives on, an orphan, until the next sweep ends it
    F.wait_for(lambda: F.lock_free(x86), "free lock after SIGKILL", timeout=30)
    assert F.runs_left(x86, session)
    r = invoke("bench", "--host", "x86", *QUICK, "--min-time", "0", "--mode", "bare", "--repeat", "1")
    assert F.BUSY not in r.stdout
    assert_nothing_left(x86, killed.run_dir(), session)


def deploy_(sb, tmp_path, before=None) -> F.Orchestrator:
    return F.start(sb, tmp_path, "deploy", "--host", "x86", "--framework", "tflite", before=before)


def image_gone(sb):
    """Before the deploy: no edgeorch image on the board, so that the deploy sends a whole one, base and all (a
    transfer long enough to be cut)."""
    return lambda: F.remove_images(sb, "edgeorch/*")


def test_sshd_killed_mid_transfer_of_the_image_is_retried_and_leaves_nothing(x86, tmp_path):
    o = deploy_(x86, tmp_path, before=image_gone(x86))
    try:
        [partial] = F.wait_for(lambda: [p for p, size in F.partial_sizes(F.workdir(x86)).items() if size],
                               "image transfer under way", orchestrator=o)
        F.kill(F.connections(x86, o.pid))
        rc = o.wait()
    finally:
        o.stop()
    out = F.flat(o.output)
    assert rc == 0, out[-3000:]
    assert "connection lost; reconnecting in 2 s" in out and "ready in docker, bare; sent image" in out
    # the retry goes on from where the cut left the archive, and the whole is checked before it is loaded
    assert re.search(r"x86: resuming edgeorch-\w+\.tar\.gz at [\d.]+ of [\d.]+ MB", out), out[-3000:]
    assert any(t.startswith("edgeorch/tflite:") for t in F.image_tags(x86))
    assert F.partials(F.workdir(x86)) == [] and not partial.with_suffix("").exists()  # loaded, then removed


def test_sshd_killed_at_every_transfer_fails_cleanly_and_the_next_deploy_completes(x86, tmp_path):
    # the image alone: the bare bundle's archive, sent after it, would be another transfer to cut
    o = F.start(x86, tmp_path, "deploy", "--host", "x86", "--framework", "tflite", "--mode", "docker",
                before=image_gone(x86))
    cuts, sizes = [], {}

    def sending():  # this attempt's archive grows on the board
        now = F.partial_sizes(F.workdir(x86))
        grown = [p for p, size in now.items() if size > sizes.get(p, size)]
        sizes.update(now)
        servers = [p for c in F.connections(x86, o.pid) for p in F.descendants(c)
                   if "sftp-server" in " ".join(F._cmdline(p))]
        return grown and servers

    try:
        while o.proc.poll() is None:  # every attempt is cut half way, until the deploy gives up
            servers = F.wait_for(lambda: o.proc.poll() is not None or sending(), "image transfer under way",
                                 timeout=300)
            if o.proc.poll() is None:
                F.kill(servers, signal.SIGSTOP)  # the transfer stops where it is, however busy this machine is
                F.kill(F.connections(x86, o.pid) + servers)
                cuts.append(1)
                sizes.clear()
        rc = o.wait()
    finally:
        o.stop()
    out = F.flat(o.output)
    assert rc == 5 and len(cuts) == 3, out[-3000:]
    # the cut lands while the archive is sent, or, on a fast link, just after it while the board checks it
    assert "the connection was lost while" in out or "connection lost" in out, out[-3000:]
    assert "(gave up after 3 attempts" in out and "deploy failed on 1 of 1 boards: x86" in out
    assert not any(t.startswith("edgeorch/tflite:") for t in F.image_tags(x86))  # nothing half loaded, nor tagged
    # the board is reachable again: the next sweep, even one that sends no image, clears what the cut left
    F.invoke_free(x86, "bench", "--host", "x86", *QUICK, "--mode", "bare", "--min-time", "0", "--repeat", "1")
    assert F.partials(F.workdir(x86)) == []
    r = F.invoke_free(x86, "deploy", "--host", "x86", "--framework", "tflite")
    assert "ready in docker, bare; sent image" in F.flat(r.stdout)
    assert any(t.startswith("edgeorch/tflite:") for t in F.image_tags(x86))


def test_sshd_killed_while_the_native_bundle_installs_is_retried_cleanly(x86, tmp_path):
    bundle = F.workdir(x86) / "tflite-2.14.0"
    (bundle / "manifest.json").unlink(missing_ok=True)  # so that the deploy installs the bundle again
    o = F.start(x86, tmp_path, "deploy", "--host", "x86", "--framework", "tflite", "--mode", "native")
    try:
        installing = F.wait_for(lambda: [p for c in F.connections(x86, o.pid) for p in F.descendants(c)
                                         if "install-framework.sh" in " ".join(F._cmdline(p))],
                                "bundle install under way", orchestrator=o)
        lost = F.connections(x86, o.pid)
        F.kill(lost)
        # the retry installs the bundle again: the lost attempt's install (pip, quiet, never notices the link went)
        # must not be writing into the same directory by then. The killed sshd processes may hold their socket a
        # moment longer (under load): their installs are not the retry's
        again = F.wait_for(lambda: [p for c in F.connections(x86, o.pid) if c not in lost for p in F.descendants(c)
                                    if "install-framework.sh" in " ".join(F._cmdline(p))],
                           "second install", orchestrator=o)
        overlap = [p.pid for p in installing if F._cmdline(p)]  # alive (a process gone or a zombie has none)
        assert {p.pid for p in again}.isdisjoint(p.pid for p in installing)
        rc = o.wait()
    finally:
        o.stop()
    out = F.flat(o.output)
    assert rc == 0, out[-3000:]
    assert "connection lost; reconnecting in 2 s" in out and "sent bundle" in out
    assert overlap == [], "the lost install still ran when the retry installed again"
    assert json.loads((bundle / "manifest.json").read_text())["framework"] == "tflite"
    F.invoke_free(x86, "bench", "--host", "x86", *QUICK, "--mode", "native", "--min-time", "0", "--repeat", "1")


def test_a_full_disk_stops_the_image_before_it_is_sent(x86, tmp_path):
    F.remove_images(x86, "edgeorch/*")
    with F.full_disk(x86, "2m") as full:
        inventory = F.write_inventory(tmp_path, {"name": "x86", "workdir": f"{full}/wd"})
        r = F.invoke_free(x86, "deploy", "--inventory", str(inventory), "--host", "x86", "--framework", "tflite",
                          check=False)
        out = F.flat(r.stdout)
        assert r.returncode == 5, out[-3000:]
        assert re.search(rf"board x86: {full}/wd has \d+ MB free, edgeorch-\w+\.tar\.gz needs \d+ MB", out)
        assert "free space on the board" in out and "then deploy again" in out
        assert F.partials(x86.rootfs / full.lstrip("/")) == []
        assert not any(t.startswith("edgeorch/tflite:") for t in F.image_tags(x86))
    r = F.invoke_free(x86, "deploy", "--inventory", str(inventory), "--host", "x86", "--framework", "tflite")
    assert "ready in docker, bare; sent image" in F.flat(r.stdout)  # space freed: the next deploy completes


def test_a_full_disk_stops_the_bare_and_native_bundles_before_they_are_sent(x86, tmp_path):
    with F.full_disk(x86, "2m") as full:
        inventory = F.write_inventory(tmp_path, {"name": "x86", "workdir": f"{full}/wd"})
        board_dir = x86.rootfs / full.lstrip("/")
        for mode, said in (("bare", rf"{full}/wd has \d+ MB free, the bare-metal bundle \(its archive, then "
                                    rf"unpacked\) of tflite needs \d+ MB"),
                           ("native", rf"{full}/wd/tflite-2.14.0 has \d+ MB free, the native bundle of tflite "
                                      rf"needs \d+ MB")):
            r = F.invoke_free(x86, "bench", "--inventory", str(inventory), "--host", "x86", *QUICK, "--mode", mode,
                              "--min-time", "0", "--repeat", "1", check=False)
            out = F.flat(r.stdout)
            assert r.returncode == 6, out[-3000:]
            assert re.search(f"board x86: {said}", out), out[-3000:]
            assert "INCOMPLETE: 1 of 1 cells did not finish (x86)" in out
            assert F.partials(board_dir) == [] and not list((board_dir / "wd").glob("tflite-2.14.0*"))


def test_a_workdir_on_a_noexec_mount_stops_bare_mode_with_its_fix_and_docker_still_runs(x86, tmp_path):
    with F.full_disk(x86, "400m", options="noexec") as mount:
        inventory = F.write_inventory(tmp_path, {"name": "x86", "workdir": f"{mount}/wd"})
        r = F.invoke_free(x86, "bench", "--inventory", str(inventory), "--host", "x86", *QUICK, "--min-time", "0",
                          "--repeat", "1")
        out = F.flat(r.stdout)
        assert "x86: tflite without bare mode: board x86: the bare-metal bundle's Python cannot run there: its " \
               "workdir does not let programs run (a noexec mount?)" in out, out[-3000:]
        assert f"findmnt -T {mount}/wd/tflite-2.14.0-bare/root" in out and "--mode docker" in out
        run_dir = Path(re.search(r"results go to (\S+)", r.stdout)[1])
        assert list(pd.read_parquet(run_dir / "results.parquet")["mode"]) == ["docker"]
        assert not (x86.rootfs / mount.lstrip("/") / "wd" / "tflite-2.14.0-bare").exists()  # nothing of it stays
