"""The simulated fleet: per board, a userland of the board's arch (QEMU runs it on x86) unpacked as a directory and
run as a chroot with a real sshd on loopback, and a private dockerd on the host as the board's Docker engine.

A chroot, not a container: bare-metal runs on a simulated board get no seccomp filter and no container cgroup,
only the mount, hostname and PID namespaces that a chroot and a process table of its own need, so a Docker-vs-bare
comparison there compares a container with a process that is not in one.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import docker.errors
import psutil
from rich.table import Table

from . import images
from .arch import Arch
from .cache import content_hash, locked
from .console import REPORTER, Reporter, recording, run_local, shell
from .errors import SetupError
from .inventory import Board, Inventory
from .recipes import IMAGES, load_bases

LOGINS = ("root", "pi", "lab")  # the sim board image's logins: the inventory's `user:` is one (pi by default)
RUN_DIR = Path("/run/edgeorch-sim")  # sockets: short paths (unix sockets are limited to 108 bytes)
SIM_LABEL = f"{images.LABEL}.sim"


@dataclass(frozen=True, kw_only=True)
class SimBoard:
    """Where one simulated board keeps its things on this host."""
    board: Board
    state: Path    # keys and the private Docker store
    run: Path      # dockerd socket, pidfile, exec-root

    @property
    def rootfs(self) -> Path:
        return self.state / "rootfs"

    @property
    def homes(self) -> Path:
        """The board's logins' homes (root's, pi's, lab's), at the same path inside the board as on this host, where the
        board's Docker engine runs: a bind mount of a file in a workdir then names the same file for both, as on a
        real board."""
        return self.state / "home"

    @property
    def home(self) -> Path:
        """The home of the login the inventory names."""
        return self.homes / self.board.user

    @property
    def socket(self) -> Path:
        return self.run / "sock" / "docker.sock"

    @property
    def pidfile(self) -> Path:
        return self.run / "dockerd.pid"


def _fleet_state(inventory: Inventory) -> Path:
    """Where the inventory's simulated fleet keeps its state: .sim beside the inventory file."""
    return inventory.path.parent / ".sim"


def sim_boards(inventory: Inventory) -> list[SimBoard]:
    """The inventory's boards marked `sim: true`, with their state locations."""
    state = _fleet_state(inventory)
    # the run directory names the fleet too: two inventories (the test suite's two parts) may each have an `x86`
    return [SimBoard(board=b, state=state / b.name, run=RUN_DIR / f"{b.name}-{content_hash(str(state), length=8)}")
            for b in inventory.boards if b.sim]


def _docker0() -> str:
    # its IPv4 address: the IPv6 link-local one comes and goes as the main engine's containers attach to it
    argv = ["ip", "-o", "-4", "addr", "show", "dev", "docker0"]
    with recording(shell(argv)) as rec:
        out = subprocess.run(argv, capture_output=True, text=True)
        rec.exit_code, rec.output = out.returncode, out.stderr
    return out.stdout.strip()


def _dockerd(sb: SimBoard) -> psutil.Process | None:
    """The running dockerd of this board's store, if any, whatever run directory it was started with (an older
    edgeorch's); a zombie counts as gone."""
    store = str(sb.state / "docker")
    for proc in psutil.process_iter(["name", "cmdline"]):
        try:
            if proc.info["name"] == "dockerd" and store in (proc.info["cmdline"] or []):
                if proc.status() != psutil.STATUS_ZOMBIE:
                    return proc
                proc.wait(0)  # our own child that exited: reap it
        except psutil.Error:
            continue
    return None


def _dockerd_alive(sb: SimBoard, sshd: psutil.Process) -> bool:
    """This board's private engine runs among the board's processes (sshd's PID namespace), on this board's socket."""
    proc = _dockerd(sb)
    try:
        return (proc is not None and sb.socket.exists() and f"unix://{sb.socket}" in proc.cmdline()
                and os.readlink(f"/proc/{proc.pid}/ns/pid") == os.readlink(f"/proc/{sshd.pid}/ns/pid"))
    except (OSError, psutil.Error):
        return False


def _stop_dockerd(sb: SimBoard, why: str = "") -> None:
    proc = _dockerd(sb)
    if proc is None:
        return
    with recording(f"kill {proc.pid}  # dockerd of {sb.board.name} {why}") as rec:
        try:
            proc.terminate()
            proc.wait(30)
        except psutil.NoSuchProcess:
            pass
        except psutil.TimeoutExpired:
            proc.kill()
        rec.exit_code = 0


def _start_dockerd(sb: SimBoard) -> None:
    """The board's engine, started in the board's PID namespace (its sshd's), as a real board's engine runs among its
    processes: the pid of a container's process that `docker inspect` gives is one the board sees, as perf needs.
    It ends with the board."""
    sshd = _sshd(sb)
    if sshd is None:
        raise SetupError(f"sim board {sb.board.name}: its sshd is not running", hint=f"read {sb.state / 'sshd.log'}")
    if _dockerd_alive(sb, sshd):
        return
    _stop_dockerd(sb, "not among the board's processes")  # an older edgeorch's, on a socket elsewhere
    # Leftovers of an engine that died; the sock/ directory itself stays, since the board
    # userland has it mounted and would not see a new one.
    shutil.rmtree(sb.run / "exec", ignore_errors=True)
    for stale in (sb.socket, sb.pidfile):
        stale.unlink(missing_ok=True)
    for d in (sb.run / "sock", sb.run / "exec", sb.state / "docker"):
        d.mkdir(parents=True, exist_ok=True)
    ns = f"edgeorch-sim-{sb.board.name}"
    # its socket belongs to the board's group docker, as a board's own engine's does: its logins in that group use it
    gid = _entries(sb.rootfs / "etc" / "group")["docker"][2]
    # The private engine runs in a network namespace of its own: with --bridge none, dockerd
    # deletes any interface named docker0 it can see, which would cut off the main engine.
    # Its containers run with --network none anyway; the API is a unix socket.
    # (and a /proc of that PID namespace, in a mount namespace of its own: containerd reads its children's there)
    cmd = ["nsenter", "--target", str(sshd.pid), "--pid", "--", "unshare", "--net", "--mount-proc", "--",
           "dockerd", "--data-root", sb.state / "docker", "--exec-root", sb.run / "exec",
           "--host", f"unix://{sb.socket}", "--group", gid, "--pidfile", sb.pidfile, "--bridge", "none",
           "--iptables=false", "--ip6tables=false", "--ip-masq=false",
           "--containerd-namespace", ns, "--containerd-plugins-namespace", f"{ns}-plugins"]
    with recording(shell(cmd)) as rec:
        try:
            with open(sb.state / "dockerd.log", "ab") as log:  # the engine keeps its own copy of the fd
                proc = subprocess.Popen([str(c) for c in cmd], stdout=log, stderr=log, start_new_session=True)
        except FileNotFoundError as e:
            rec.exit_code = 127
            raise SetupError("dockerd is not installed", hint="apt-get install docker.io, or ./setup.sh") from e
        rec.note = f"started in the background, pid {proc.pid} (log: {sb.state / 'dockerd.log'})"
    for _ in range(120):
        if sb.socket.exists():
            try:
                images.engine(str(sb.socket))
                return
            except SetupError:
                pass
        time.sleep(0.5)
    raise SetupError(f"the private dockerd of sim board {sb.board.name} did not start",
                     hint=f"read {sb.state / 'dockerd.log'}")


def _ensure_keys(sb: SimBoard) -> str:
    """Client key (shared path from the inventory), this board's host key; returns the host key line."""
    b = sb.board
    if b.identity_file is None or b.known_hosts is None:
        raise SetupError(f"sim board {b.name} needs identity_file and known_hosts in the inventory",
                         hint="see the shipped inventory.yaml")
    keys = sb.state / "ssh"
    keys.mkdir(parents=True, exist_ok=True)
    if not b.identity_file.exists():
        b.identity_file.parent.mkdir(parents=True, exist_ok=True)
        run_local(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgeorch-sim", "-f", b.identity_file],
                  what="making the simulated fleet's SSH key", hint="apt-get install openssh-client")
    hostkey = keys / "ssh_host_ed25519_key"
    if not hostkey.exists():
        run_local(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", b.name, "-f", hostkey],
                  what=f"making the host key of sim board {b.name}", hint="apt-get install openssh-client")
    shutil.copyfile(b.identity_file.with_suffix(".pub"), keys / "authorized_keys")
    os.chmod(keys / "authorized_keys", 0o644)  # sshd reads it as the login, root or not
    kind, key = hostkey.with_suffix(".pub").read_text().split()[:2]
    return f"[{b.host}]:{b.port} {kind} {key}"


def _pin_host_key(known_hosts: Path, line: str) -> None:
    """Replace this host:port's line in known_hosts, keep every other line."""
    host = line.split()[0]
    old = known_hosts.read_text().splitlines() if known_hosts.exists() else []
    known_hosts.write_text("\n".join([l for l in old if l.split(" ", 1)[0] != host] + [line]) + "\n")


def board_image(client, arch: Arch, release: str = "bookworm", packages: tuple[str, ...] = (), *,
                out: Reporter = REPORTER) -> str:
    """The tag of the sim board image for `arch` on Debian `release` (base + sshd + docker client), built once. Its
    rootfs has the Debian `packages` its owner installed (the inventory's sim_packages: a framework's, for native
    mode); a framework image of those same packages shares that rootfs."""
    bases = load_bases()
    if release not in bases:
        raise SetupError(f"sim_release {release!r}: edgeorch has no base for it",
                         hint=f"use one of {', '.join(sorted(bases))} (each is an images/base*/recipe.toml)")
    base = images.ensure_base_images(client, bases[release], [(arch, packages)], out=out)[arch, packages]
    recipe = IMAGES / "sim-board"
    tag = f"edgeorch/sim-board:{arch.value}-{release}-{content_hash(*sorted(recipe.iterdir()), base)}"
    # The only build with a network: apt fetches sshd and the Docker client from the mirror.
    images.ensure_image(client, recipe, tag=tag, arch=arch, buildargs={"BASE": base},
                        labels={SIM_LABEL: "board-image"}, network_mode="host", out=out)
    return tag  # what the board's userland is made of (a rebuild of it, after another fleet's `down`, is the same)


def _unpack(client, sb: SimBoard, image: str) -> None:
    """The board image's filesystem as sb.rootfs, unless this image is there already."""
    stamp = sb.state / "rootfs.image"
    if sb.rootfs.is_dir() and stamp.exists() and stamp.read_text() == image:
        return
    _stop_board(sb, "its userland changes")
    shutil.rmtree(sb.rootfs, ignore_errors=True)
    sb.rootfs.mkdir(parents=True)
    container = client.containers.create(image, "true", platform=sb.board.arch.info.docker_platform,
                                         labels={images.LABEL: "1"})
    untar = ["tar", "-x", "--numeric-owner", "-C", str(sb.rootfs)]
    try:
        with recording(f"docker export {container.id[:12]} | {shell(untar)}  # docker create {image}") as rec:
            tar = subprocess.Popen(untar, stdin=subprocess.PIPE)
            for chunk in container.export():
                tar.stdin.write(chunk)
            tar.stdin.close()
            rec.exit_code = tar.wait()
        if rec.exit_code:
            raise SetupError(f"unpacking the userland of sim board {sb.board.name} failed (`{rec.text}`, exit "
                             f"{rec.exit_code})", hint=f"check free disk space under {sb.state}")
    finally:
        container.remove(force=True)
    (sb.rootfs / ".dockerenv").unlink(missing_ok=True)  # what `docker create` adds: this userland is no container
    passwd = sb.rootfs / "etc" / "passwd"
    passwd.write_text("".join(
        ":".join([*fields[:5], str(sb.homes / fields[0]), *fields[6:]]) if fields[0] in LOGINS else line
        for line in passwd.read_text().splitlines(keepends=True) for fields in [line.split(":")]))
    users = _entries(passwd)
    for name in LOGINS:
        uid, gid = map(int, users[name][2:4])
        home = sb.homes / name
        home.mkdir(parents=True, exist_ok=True, mode=0o700 if uid == 0 else 0o755)
        os.chown(home, uid, gid)
    stamp.write_text(image)


def _entries(path: Path) -> dict[str, list[str]]:
    """The lines of a passwd or group file by name, as their fields."""
    return {fields[0]: fields for line in path.read_text().splitlines() for fields in [line.split(":")]}


def _board_processes(sb: SimBoard) -> list[psutil.Process]:
    """Every process whose root is this board's userland: its sshd and whatever runs in its sessions."""
    found = []
    for proc in psutil.process_iter():
        try:
            if os.readlink(f"/proc/{proc.pid}/root") == str(sb.rootfs):
                found.append(proc)
        except OSError:
            continue
    return found


def _sshd(sb: SimBoard) -> psutil.Process | None:
    """The board's sshd: the child of the `unshare` in sshd.pid, once it runs in the board's userland (the first
    process of the board's PID namespace)."""
    try:
        board, unshare = _board_processes(sb), psutil.Process(int((sb.state / "sshd.pid").read_text()))
        if unshare in board:  # an sshd an older edgeorch started without a PID namespace: started again
            return None
        for proc in unshare.children():
            if proc.status() != psutil.STATUS_ZOMBIE and proc in board:
                return proc
    except (OSError, ValueError, psutil.Error):
        pass
    return None


def _stop_board(sb: SimBoard, why: str = "") -> None:
    procs = _board_processes(sb) if sb.rootfs.is_dir() else []
    if not procs:
        return
    with recording(f"kill -KILL {' '.join(str(p.pid) for p in procs)}  # sim board {sb.board.name} {why}") as rec:
        for proc in procs:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=10)
        rec.exit_code = 0


# Inside mount and PID namespaces of its own (nothing shows on the host): the kernel's file systems and the three
# directories the board shares with the host, then the board's sshd as its root.
_CHROOT = r"""set -e
root=$1 keys=$2 sock=$3 name=$4 home=$5; shift 5
mkdir -p "$root/etc/ssh/edgeorch" "$root/run/edgeorch-docker" "$root/dev" "$root/proc" "$root/sys" "$root$home" "$home"
mount --bind "$home" "$root$home"
mount --rbind /dev "$root/dev"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --bind "$keys" "$root/etc/ssh/edgeorch"
mount --bind "$sock" "$root/run/edgeorch-docker"
hostname "$name"
exec chroot "$root" "$@"
"""


def _start_board(client, sb: SimBoard) -> None:
    b = sb.board
    if _sshd(sb):
        return
    _stop_board(sb, "restarted")
    (sb.run / "sock").mkdir(parents=True, exist_ok=True)  # where its engine's socket will be, mounted in the board
    # the same board started from another checkout holds the port: a sim sshd is told apart by its key directory
    # (an x86 sshd rewrites its command line into one string; an ARM one runs under QEMU's interpreter)
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if (f"/usr/sbin/sshd -D -e -p {b.port} " in cmdline
                and "HostKey=/etc/ssh/edgeorch/ssh_host_ed25519_key" in cmdline):
            with recording(f"kill -KILL {proc.pid}  # sshd of sim board {b.name} started from another checkout") as rec:
                proc.kill()
                rec.exit_code = 0
    try:  # the container an edgeorch before chroot boards ran this board in holds its port
        old = client.containers.get(f"edgeorch-sim-{b.name}")
        with recording(f"docker rm -f edgeorch-sim-{b.name}  # a board container of an older edgeorch") as rec:
            old.remove(force=True)
            rec.exit_code = 0
    except docker.errors.NotFound:
        pass
    cmd = ["/usr/sbin/sshd", "-D", "-e", "-p", str(b.port), "-o", f"ListenAddress={b.host}",
           "-o", "HostKey=/etc/ssh/edgeorch/ssh_host_ed25519_key",
           "-o", "AuthorizedKeysFile=/etc/ssh/edgeorch/authorized_keys",
           "-o", "PasswordAuthentication=no", "-o", "PermitRootLogin=prohibit-password",
           "-o", "UsePAM=no"]
    # A PID namespace of its own, as a real board has: its `pkill` and `ps` see its processes, not another board's
    argv = ["unshare", "--mount", "--uts", "--pid", "--fork", "--propagation", "private", "--", "sh", "-c", _CHROOT,
            "sh", str(sb.rootfs), str(sb.state / "ssh"), str(sb.socket.parent), b.name, str(sb.homes), *cmd]
    with recording(shell(argv)) as rec, open(sb.state / "sshd.log", "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        rec.note = f"started in the background, pid {proc.pid} (log: {sb.state / 'sshd.log'})"
    (sb.state / "sshd.pid").write_text(str(proc.pid))  # unshare: its child (sh, chroot exec) becomes sshd


def _wait_for_ssh(b: Board, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((b.host, b.port), timeout=2) as s:
                if s.recv(64).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.5)
    raise SetupError(f"sim board {b.name}: sshd does not answer on {b.host}:{b.port}",
                     hint=f"read .sim/{b.name}/sshd.log; is port {b.port} taken by something else?")


def up(inventory: Inventory, host: str | None = None, out: Reporter = REPORTER) -> list[SimBoard]:
    """Start every simulated board (or those of `host`); boards already up are left as they are."""
    wanted = {b.name for b in inventory.select(host)} if host else None
    boards = [sb for sb in sim_boards(inventory) if wanted is None or sb.board.name in wanted]
    if not boards:
        raise SetupError(f"{inventory.path} has no board with `sim: true`" + (f" in --host {host}" if host else ""),
                         hint="use the shipped inventory.yaml, which defines rpi3-bookworm, rpi4, x86, rpi5 and rpi3")
    client = images.engine()
    before = _docker0()
    # Every board image is built side by side, its release's mmdebstrap included: most of that time is spent
    # waiting on the mirror, or in one dpkg under QEMU.
    kinds = sorted({(sb.board.arch, sb.board.sim_release, sb.board.sim_packages) for sb in boards},
                   key=lambda k: (k[0].value, *k[1:]))

    with ThreadPoolExecutor(max_workers=len(kinds)) as pool:
        built = dict(zip(kinds, pool.map(lambda kind: board_image(images.engine(), *kind, out=out), kinds)))
    # two `sim.up`s of one inventory at once start each board once; the fleet's key and known_hosts are shared
    with locked(_fleet_state(inventory) / "up.lock"):
        for sb in boards:
            _start(client, sb, built[sb.board.arch, sb.board.sim_release, sb.board.sim_packages], out)
    if _docker0() != before:
        raise SetupError("starting the simulated fleet changed the main engine's docker0",
                         hint=f"before: {before!r}; after: {_docker0()!r}; run `invoke sim.down`")
    return boards


def _start(client, sb: SimBoard, image: str, out: Reporter) -> None:
    clock, was = time.monotonic(), _sshd(sb)
    with out.status(f"starting sim board {sb.board.name}"):
        line = _ensure_keys(sb)
        _pin_host_key(sb.board.known_hosts, line)
        _unpack(client, sb, image)
        _start_board(client, sb)
        _wait_for_ssh(sb.board)
        _start_dockerd(sb)
    now = _sshd(sb)
    how = "up already" if was and now and was.pid == now.pid else f"up in {time.monotonic() - clock:.0f} s"
    out.step(f"{how}: {sb.board.arch.value} Debian {sb.board.sim_release}, sshd on {sb.board.address}, a dockerd "
             "of its own", sb.board.name)


def status(inventory: Inventory) -> list[dict]:
    """Per sim board: its userland's sshd process, private dockerd alive, sshd answering."""
    rows = []
    for sb in sim_boards(inventory):
        sshd = _sshd(sb)
        state = f"chroot, sshd pid {sshd.pid}" if sshd else "down"
        try:
            _wait_for_ssh(sb.board, timeout=1)
            ssh = True
        except SetupError:
            ssh = False
        rows.append({"board": sb.board.name, "arch": sb.board.arch.value,
                     "address": sb.board.address, "userland": state,
                     "dockerd": sshd is not None and _dockerd_alive(sb, sshd), "sshd": ssh})
    return rows


def status_table(inventory: Inventory) -> Table:
    """sim.status as a table."""
    t = Table(title="Simulated fleet")
    for col in ("board", "arch", "address", "userland", "dockerd", "sshd"):
        t.add_column(col)
    for r in status(inventory):
        t.add_row(r["board"], r["arch"], r["address"], r["userland"],
                  *("[green]up[/]" if r[k] else "[red]down[/]" for k in ("dockerd", "sshd")))
    return t


def down(inventory: Inventory, out: Reporter = REPORTER) -> None:
    """Remove everything `up` made: board processes and userlands, private dockerds and their stores, keys, the
    fleet's lock file, board images."""
    client = images.engine()
    for sb in sim_boards(inventory):
        _stop_board(sb, "going down")
        _stop_dockerd(sb)
        shutil.rmtree(sb.run, ignore_errors=True)
        shutil.rmtree(sb.state, ignore_errors=True)
        for path in (sb.board.identity_file, sb.board.known_hosts):
            if path and path.parent.name == ".sim":  # only what up made, never a user's own keys
                path.unlink(missing_ok=True)
        if sb.board.identity_file and sb.board.identity_file.parent.name == ".sim":
            sb.board.identity_file.with_suffix(".pub").unlink(missing_ok=True)
    (_fleet_state(inventory) / "up.lock").unlink(missing_ok=True)
    arches = {sb.board.arch.value for sb in sim_boards(inventory)}
    for image in images.listed(client, f"{SIM_LABEL}=board-image"):
        for tag in image.get("RepoTags") or ():
            if tag.split(":")[-1].split("-")[0] not in arches:
                continue
            try:
                with recording(shell(["docker", "rmi", tag])) as rec:
                    client.images.remove(tag)
                    rec.exit_code = 0
            except docker.errors.APIError as e:  # still used by another inventory's sim board
                out.note(f"kept {tag}", str(e.explanation))
