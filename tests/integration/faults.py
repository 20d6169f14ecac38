"""Fault injection on the simulated fleet: a board's processes and connections seen from this host (the boards share
its PID and network namespaces), cut, paused or filled, and what a fault may leave behind on a board."""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import psutil
import yaml

from edgeorch import sim
from edgeorch.inventory import Inventory

from .conftest import INVENTORY, ROOT, invoke

RUN_TAG = re.compile(r"edgeorch-run-([0-9a-f]{8})-[0-9a-f]{8}")


def sim_board(fleet: Inventory, name: str = "x86") -> sim.SimBoard:
    return next(sb for sb in sim.sim_boards(fleet) if sb.board.name == name)


def write_inventory(tmp_path: Path, *boards: dict, name: str = "inventory.yaml") -> Path:
    """An inventory of `boards` (fields over x86's shipped entry), reusing the sim fleet's key and known_hosts."""
    raw = yaml.safe_load(INVENTORY.read_text())
    defaults = {**raw["defaults"], **{k: str(INVENTORY.parent / raw["defaults"][k])
                                      for k in ("identity_file", "known_hosts")}}
    x86 = next(b for b in raw["boards"] if b["name"] == "x86")
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"defaults": defaults, "boards": [{**x86, **b} for b in boards]}))
    return path


def flat(text: str) -> str:
    """Output with rich's line wrapping undone, so a message can be matched whole."""
    return " ".join(text.split())


class Orchestrator:
    """`invoke ARGS` running in the background as a user would start it in a terminal, its output kept in a file.
    Its SIGINT does what ^C does there even where this suite was started as a background job (as CI's script does),
    whose commands inherit an ignored SIGINT."""

    def __init__(self, tmp_path: Path, *args: str):
        self.args = args
        self.log = tmp_path / f"invoke-{secrets.token_hex(3)}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([str(Path(sys.executable).parent / "invoke"), *args], cwd=ROOT, env=env,
                                         stdout=out, stderr=subprocess.STDOUT,
                                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.pid = self.proc.pid

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float = 600) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"`invoke {' '.join(self.args)}` did not end within {timeout} s:\n"
                                 f"{self.output[-4000:]}") from None

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self) -> None:
        """End it if it still runs (a test that failed half way must not leave it holding a board)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def run_dir(self) -> Path:
        return Path(re.search(r"results go to (\S+)", self.output).group(1))


BUSY = "is being benchmarked by"  # another edgeorch holds the board: in this tree, another engineer's test


def holds_lock(sb: sim.SimBoard, pid: int) -> bool:
    """Orchestrator `pid` holds the board's lock (it names itself in its login's note once it has it)."""
    try:
        uid = sim._entries(sb.rootfs / "etc" / "passwd")[sb.board.user][2]
        holder = (sb.rootfs / "tmp" / f"edgeorch-{uid}" / "note").read_text()
    except OSError:
        return False
    return f" pid {pid} (" in holder and not lock_free(sb)


def start(sb: sim.SimBoard, tmp_path: Path, *args: str, before: Callable[[], None] | None = None) -> Orchestrator:
    """`invoke ARGS` started once it holds `sb`'s lock (`before()` just before each start): started again (after a
    wait) when another orchestrator held the board, which only happens where other tests share the fleet."""
    for _ in range(10):
        wait_for(lambda: lock_free(sb), "free lock", timeout=600, every=0.5)
        if before:
            before()
        o = Orchestrator(tmp_path, *args)
        wait_for(lambda o=o: holds_lock(sb, o.pid) or o.proc.poll() is not None, "lock taken", timeout=300,
                 every=0.02)
        if o.proc.poll() is None or BUSY not in o.output:
            return o
    raise AssertionError(f"the board was busy ten times over:\n{o.output[-3000:]}")


def invoke_free(sb: sim.SimBoard, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """`invoke ARGS`, run again (after a wait) if another orchestrator held the board and nothing ran."""
    for _ in range(10):
        wait_for(lambda: lock_free(sb), "free lock", timeout=600, every=0.5)
        r = invoke(*args, check=False)
        if BUSY not in r.stdout or " deployed: " in r.stdout:  # busy, or the runs went ahead after all
            break
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {r.returncode}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


def wait_for(condition: Callable, what: str, timeout: float = 180, every: float = 0.05,
             orchestrator: Orchestrator | None = None):
    """The first truthy value of `condition()`, polled; an AssertionError naming `what` past `timeout` s, or as soon
    as `orchestrator` has ended without it."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if orchestrator is not None and orchestrator.proc.poll() is not None:
            value = condition()  # what it did just before it ended counts
            if value:
                return value
            raise AssertionError(f"`invoke {' '.join(orchestrator.args)}` ended (exit {orchestrator.proc.returncode}) "
                                 f"before {what}:\n{orchestrator.output[-4000:]}")
        if time.monotonic() > deadline:
            tail = orchestrator.output[-3000:] if orchestrator else ""
            raise AssertionError(f"no {what} within {timeout} s\n{tail}")
        time.sleep(every)


def _tcp(proc: psutil.Process) -> list:
    try:
        return proc.net_connections("tcp")
    except psutil.Error:
        return []


def connections(sb: sim.SimBoard, client_pid: int) -> list[psutil.Process]:
    """The board's per-connection sshd processes serving the SSH connections of process `client_pid`: for a login
    other than root, the privileged monitor and the login's own sshd under it, which holds the connection too."""
    try:
        ports = {c.laddr.port for c in _tcp(psutil.Process(client_pid))
                 if c.raddr and c.raddr.port == sb.board.port}
    except psutil.NoSuchProcess:
        return []
    listener = sim._sshd(sb)
    if listener is None or not ports:
        return []
    return [child for child in listener.children(recursive=True)
            if any(c.raddr and c.raddr.port in ports for c in _tcp(child))]


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return []
        return proc.cmdline()
    except psutil.Error:
        return []


def watchers(sb: sim.SimBoard, client_pid: int, deadline: float | None = None) -> list[psutil.Process]:
    """The sensor watchers (one per run) that `client_pid` has running on the board now; with `deadline`, only
    runs started with that --timeout (not a deploy's probes)."""
    found = []
    for conn in connections(sb, client_pid):
        try:
            procs = conn.children(recursive=True)
        except psutil.Error:
            continue
        for proc in procs:
            cmd = _cmdline(proc)
            if "edgeorch_bench.watch" not in cmd or "--tag" not in cmd or "-c" in cmd[:3]:
                continue  # not a watcher, or the shell that is about to exec it (its command line is about to change)
            if deadline is not None and float(cmd[cmd.index("--deadline") + 1]) != deadline:
                continue
            if proc not in found:  # a login's connection is two sshd processes, one under the other
                found.append(proc)
    # a watcher's child between fork and exec still carries the watcher's command line (seen on a loaded machine)
    pids = {proc.pid for proc in found}
    return [proc for proc in found if _ppid(proc) not in pids]


def _ppid(proc: psutil.Process) -> int | None:
    try:
        return proc.ppid()
    except psutil.Error:
        return None


def session_of(proc: psutil.Process) -> str:
    """The orchestrator session that started the run of watcher `proc`."""
    return RUN_TAG.search(" ".join(_cmdline(proc))).group(1)


def runs_left(sb: sim.SimBoard, session: str, run_id: str | None = None) -> list[str]:
    """What runs of orchestrator session `session` (or of run directory `run_id`, whichever session started them)
    left on the board: live processes (a watcher, or a bare run that outlived it) and containers."""
    marks = [f"edgeorch-run-{session}-", *([run_id] if run_id else [])]
    left = [f"pid {p.pid}: {' '.join(cmd)[:200]}" for p in sim._board_processes(sb)
            for cmd in [_cmdline(p)] if any(mark in word for word in cmd for mark in marks)]
    ps = subprocess.run(["docker", "-H", f"unix://{sb.socket}", "ps", "-a", "--filter", f"name={marks[0]}",
                         "--format", "{{.Names}} {{.Status}}"], capture_output=True, text=True, check=True)
    return left + [f"container {line}" for line in ps.stdout.splitlines()]


def sessions_in(output: str) -> set[str]:
    """Every orchestrator session whose runs an output shows."""
    return set(RUN_TAG.findall(output))


def partials(*directories: Path) -> list[Path]:
    """Half-sent files (`*.partial`) under the board directories given (paths on this host)."""
    return sorted(p for d in directories if d.exists() for p in d.rglob("*.partial"))


def partial_sizes(directory: Path) -> dict[Path, int]:
    """The half-sent files under `directory` and their sizes now (a file may go while it is looked at)."""
    sizes = {}
    for path in partials(directory):
        try:
            sizes[path] = path.stat().st_size
        except FileNotFoundError:
            pass
    return sizes


def workdir(sb: sim.SimBoard, name: str = "edgeorch") -> Path:
    """A board's relative workdir as this host sees it: the board's home has the same path on both sides."""
    return sb.home / name


def own(sb: sim.SimBoard, *paths: Path) -> None:
    """Files this host wrote into the board made the board login's, as if that login had written them (recursively)."""
    uid, gid = map(int, sim._entries(sb.rootfs / "etc" / "passwd")[sb.board.user][2:4])
    for path in paths:
        for p in (path, *(path.rglob("*") if path.is_dir() else ())):
            os.chown(p, uid, gid)


def lock_free(sb: sim.SimBoard) -> bool:
    """Nobody holds the board's lock: the board's /tmp is its userland's, so this host can try it too."""
    path = sb.rootfs / "tmp" / "edgeorch.lock"
    if not path.exists():
        return True
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


def image_tags(sb: sim.SimBoard) -> list[str]:
    r = subprocess.run(["docker", "-H", f"unix://{sb.socket}", "images", "--format", "{{.Repository}}:{{.Tag}}"],
                       capture_output=True, text=True, check=True)
    return r.stdout.split()


def remove_images(sb: sim.SimBoard, repository: str) -> None:
    """Remove a framework's images from the board's engine (by id: a tag alone may go while the image stays), so
    that the next deploy sends one again."""
    docker = ["docker", "-H", f"unix://{sb.socket}"]
    ids = subprocess.run([*docker, "images", "-q", repository], capture_output=True, text=True, check=True).stdout
    if ids.split():
        subprocess.run([*docker, "rmi", "-f", *sorted(set(ids.split()))], capture_output=True, check=True)
    left = subprocess.run([*docker, "images", "-q", repository], capture_output=True, text=True, check=True).stdout
    assert not left.split(), f"{repository} is still in the engine of {sb.board.name}: {left}"


def descendants(proc: psutil.Process) -> list[psutil.Process]:
    """The processes under `proc`, none if it has ended meanwhile (a connection just killed)."""
    try:
        return proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def kill(procs: list[psutil.Process], signum: int = signal.SIGKILL) -> None:
    for proc in procs:
        try:
            proc.send_signal(signum)
        except psutil.NoSuchProcess:
            pass


@contextmanager
def full_disk(sb: sim.SimBoard, size: str, options: str = ""):
    """A directory of the board (its path there) on a tmpfs of `size` (and mount `options`), mounted in the board's
    own mount namespace only; unmounted after."""
    listener = sim._sshd(sb)
    assert listener is not None, f"sim board {sb.board.name} is down"
    inside = f"/tmp/edgeorch-full-{secrets.token_hex(3)}"
    here = sb.rootfs / inside.lstrip("/")
    here.mkdir()
    mount = ["nsenter", "-t", str(listener.pid), "-m", "--"]
    subprocess.run([*mount, "mount", "-t", "tmpfs", "-o", f"size={size}" + (f",{options}" if options else ""),
                    "tmpfs", str(here)], check=True)
    try:
        yield inside
    finally:
        subprocess.run([*mount, "umount", "-l", str(here)], check=True)
        subprocess.run(["rm", "-rf", "--", str(here)], check=True)


def raw_files(run_dir: Path) -> dict[str, bytes]:
    """The raw answers of a run directory (superseded ones apart): relative path -> bytes."""
    raw = run_dir / "raw"
    return {str(p.relative_to(raw)): p.read_bytes() for p in sorted(raw.rglob("*.json"))
            if "superseded" not in p.relative_to(raw).parts}


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())
