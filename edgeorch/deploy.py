"""Put what a framework needs onto a board: its image (docker mode), the image's userland out of its container (bare
mode), the same wheels for the board's own Python (native mode); skip what the board already has."""

from __future__ import annotations

import dataclasses
import io
import json
import posixpath
import re
import time
from dataclasses import dataclass
from pathlib import Path

import fabric
import paramiko

from . import bench, images, results, userland
from .arch import Arch
from .cache import file_sha256
from .console import REPORTER, Bars, recording, shell
from .errors import BareUnavailable, BoardError, ConnectionLost
from .images import ImageLayers, ImageSpec
from .inventory import Board
from .plan import MODES, Arm, deploy_steps, first_missing, images_to_keep
from .recipes import INSTALL_SCRIPT
from .runners import BareRunner, DockerRunner, NativeRunner, Runner, probe_args, start_dir
from .transport import bounded_sftp, remote, sftp, sh, transfer_timeout
from .userland import Userland

CODEC = "gzip"  # what the image archive is compressed with: benchmarks/deploy_bytes.py measures the choice
PROBE_TIMEOUT = 600  # s: importing a big framework under QEMU is slow, but a hang must end
INSTALL_TIMEOUT = 3600  # s: the native bundle's install


@dataclass(frozen=True, kw_only=True)
class Transfer:
    """One thing a deploy sent: `sent` bytes over the link (compressed, less what a resumed transfer already had)
    for `lacked` bytes the board did not have."""
    what: str
    sent: int
    lacked: int
    layers: tuple[int, int] | None = None  # an image's: how many of its layers went, of how many
    unpacked: int = 0                      # the bare bundle's: its bytes once unpacked on the board
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.what} ({self.layers[0]} of {self.layers[1]} layers)" if self.layers else self.what


@dataclass(frozen=True, kw_only=True)
class Deployment:
    """A framework ready on a board in its modes, with the versions each mode reported."""
    board: Board
    image: ImageSpec
    workdir: str
    bundle_dir: str                  # native mode's: a venv of the framework's wheels for the board's Python
    framework_version: str
    userland: Userland | None = None  # bare mode's: the image's userland, out of its container
    notes: tuple[str, ...] = ()
    modes: tuple[str, ...] = MODES
    sent: tuple[Transfer, ...] = ()  # what went over the link, with the bytes the board lacked of it
    image_bytes: int = 0             # the image's whole size (its layers' tars and config)
    seconds: float = 0.0             # the deploy's time, sending and checking

    def summary(self) -> dict:
        """What this deploy sent, as deploy.json keeps it."""
        return {"board": self.board.name, "framework": self.image.framework, "version": self.framework_version,
                "modes": list(self.modes), "image": self.image.tag, "image_bytes": self.image_bytes,
                **({"bare_bundle_bytes": self.userland.bytes, "bare_bundle_unpacked_bytes": self.userland.unpacked}
                   if self.userland and "bare" in self.modes else {}),
                "sent_bytes": sum(t.sent for t in self.sent), "lacked_bytes": sum(t.lacked for t in self.sent),
                "seconds": self.seconds, "items": [dataclasses.asdict(t) for t in self.sent]}

    def runner(self, conn: fabric.Connection, arm: Arm, timeout: float, watch: tuple[str, ...] = ()) -> Runner:
        """The runner of one arm, whose runs may take `timeout` s: bare, native, or Docker with the board's options
        and the arm's; `watch`: what the watcher measures beside latency (runners.Measures)."""
        where = {"python": self.board.python, "host_dir": host_dir(self.workdir), "cache_dir": self.cache_dir,
                 "watch": watch}
        if arm.mode == "bare":
            return BareRunner(conn, self.board.name, self.root, self.userland.python, self.userland.environment(),
                              timeout, **where)
        if arm.mode == "native":
            return NativeRunner(conn, self.board.name, self.bundle_dir, timeout, **where)
        return DockerRunner(conn, self.board.name, self.image.image_id, timeout,
                            (*self.board.docker_args, *arm.docker_args), bind_files=arm.bind_files, **where)


    @property
    def userland_dir(self) -> str:
        """Bare mode's bundle on the board: the userland under root/, with edgeorch's mark and manifest beside it."""
        return f"{self.bundle_dir}-bare"

    @property
    def root(self) -> str:
        return posixpath.join(self.userland_dir, "root")

    @property
    def cache_dir(self) -> str | None:
        """Where the framework keeps what it compiles on the board, at the same path in both modes (a bind mount
        in Docker), so that both reuse it alike; only TensorRT compiles (its engines)."""
        return posixpath.join(self.workdir, "cache", self.image.framework) if self.image.framework in COMPILES else None


COMPILES = ("tensorrt",)


def host_dir(workdir: str) -> str:
    """Where the board's host keeps the sensor watcher (the board-side package, run with the board's Python)."""
    return posixpath.join(workdir, "host")


def _copy_watcher(conn: fabric.Connection, board: Board, workdir: str) -> list[Transfer]:
    """The board-side package for the sensor watcher on the host, unless this very copy is there."""
    stamp = posixpath.join(host_dir(workdir), bench.BOARD_PACKAGE, "DIGEST")
    have = remote(conn, ["cat", stamp], board=board.name, warn=True)
    if have.ok and have.stdout.strip() == bench.bundle_digest():
        return []
    sent = _copy_entrypoint(conn, board, host_dir(workdir))
    with recording(_sftp("-", stamp, len(bench.bundle_digest())), board.name) as rec, \
            bounded_sftp(conn, board.name, len(bench.bundle_digest()), stamp) as (client, check):
        client.putfo(io.BytesIO(bench.bundle_digest().encode()), stamp, callback=check)
        rec.exit_code = 0
    return [dataclasses.replace(sent, what="watcher")]


WORKDIR_MARK = ".edgeorch-workdir"      # in a workdir edgeorch made, holding WORKDIR_SCHEMA: only there it works
WORKDIR_SCHEMA = "edgeorch-workdir/1"
BUNDLE_MARK = ".edgeorch-bundle"         # in a bare or native bundle from its first byte, holding BUNDLE_SCHEMA
BUNDLE_SCHEMA = "edgeorch-bundle/1"
MODELS_LIST = ".edgeorch-models"         # the files edgeorch sent into <workdir>/models, one name a line
_SENT_NAME = re.compile(r"[0-9a-f]{16}(\.[A-Za-z0-9.]*)?")  # push_file's names: no user's file is ever one
_BUNDLE_NAME = re.compile(r"[a-z0-9_]+-[A-Za-z0-9][A-Za-z0-9.+_~-]*")  # <framework>-<version>

# The workdir ($1), made with its mark ($2 holding $3) when it is absent and $4 is `create`; its absolute path. A
# directory that is there already is used only when it bears the mark, is empty (it gets the mark), or is what an
# edgeorch before marks made ($5: its watcher's stamp there, and nothing edgeorch does not make): else `unmarked`.
# Without `create`, `absent` when there is none.
_WORKDIR_SCRIPT = r"""
w=$1
if [ "$4" = create ] && [ ! -e "$w" ] && [ ! -L "$w" ]; then
  mkdir -p -- "$(dirname -- "$w")" && mkdir -- "$w" && printf '%s\n' "$3" >"$w/$2" || exit 1
fi
cd -- "$w" 2>/dev/null || { [ "$4" = create ] && exit 1; echo absent; exit 0; }
[ -O . ] || { echo "not-owned $(ls -ld . 2>&1)"; exit 3; }
old_edgeorch() {
  [ -f "$5" ] && [ ! -L "$5" ] || return 1
  for e in * .[!.]* ..?*; do
    [ -e "$e" ] || [ -L "$e" ] || continue
    case $e in host|models|cache|*.partial) continue ;; esac
    case $e in *-*) [ -d "$e" ] && [ ! -L "$e" ] && { [ -f "$e/manifest.json" ] || [ -d "$e/wheels" ]; } &&
      continue ;; esac
    return 1
  done
}
if [ -L "$2" ] || [ ! -f "$2" ] || [ "$(head -c 100 -- "$2")" != "$3" ]; then
  [ "$4" = create ] && { [ -z "$(ls -A)" ] || old_edgeorch "$@"; } || { echo unmarked; exit 3; }
  [ -d models ] && for f in models/*; do
    [ -f "$f" ] && [ ! -L "$f" ] && printf '%s\n' "${f#models/}"
  done | grep -E '^[0-9a-f]{16}(\.[A-Za-z0-9.]*)?$' >>"$6"
  printf '%s\n' "$3" >"$2" || exit 1
fi
pwd -P
"""


def prepare_workdir(conn: fabric.Connection, board: Board, create: bool = True) -> str | None:
    """The board's working directory, made (with edgeorch's mark) when absent: its absolute path; None when it is
    absent and not `create`. A BoardError when it is another login's, or a directory edgeorch did not make."""
    r = remote(conn, sh(_WORKDIR_SCRIPT, board.workdir, WORKDIR_MARK, WORKDIR_SCHEMA, "create" if create else "",
                        posixpath.join("host", bench.BOARD_PACKAGE, "DIGEST"), MODELS_LIST), board=board.name,
               warn=True)
    said = r.stdout.strip()
    if r.ok and said == "absent":
        return None
    if said.startswith("not-owned"):
        raise BoardError(f"board {board.name}: its workdir {board.workdir} belongs to another login "
                         f"({said.removeprefix('not-owned ')})",
                         hint=f"set `workdir:` of {board.name} in the inventory to a folder of {board.user}'s own, "
                              "e.g. ~/edgeorch")
    if said == "unmarked":
        raise BoardError(f"board {board.name}: its workdir {board.workdir} holds files edgeorch did not make (it has "
                         f"no {WORKDIR_MARK}), so edgeorch neither works nor cleans there",
                         hint=f"set `workdir:` of {board.name} in the inventory to a new folder, e.g. ~/edgeorch "
                              "(edgeorch makes it and marks it as its own)")
    if r.failed or not said.startswith("/"):
        raise BoardError(f"board {board.name}: its workdir {board.workdir} cannot be made or used (exit {r.exited}): "
                         f"{(r.stderr or r.stdout).strip()[-400:]}",
                         hint=f"check that {board.user} may write there (ls -ld on the board)")
    return said.splitlines()[-1]


def docker_version(conn: fabric.Connection, board: Board) -> str:
    """The board's Docker engine version; BoardError if it has none that answers."""
    r = remote(conn, ["docker", "version", "--format", "{{.Server.Version}}"], board=board.name, warn=True)
    if r.failed or not r.stdout.strip():
        raise BoardError(f"board {board.name} has no working Docker engine: "
                         f"{(r.stderr or r.stdout).strip().splitlines()[-1:] or 'no answer'}",
                         hint=f"install Docker on the board (e.g. apt-get install docker.io), start it, "
                              f"and add {board.user} to the docker group")
    return r.stdout.strip()


def image_on_board(conn: fabric.Connection, board: Board, image_id: str) -> str | None:
    """The id of `image_id` in the board's engine, None if it has no such image."""
    found = remote(conn, ["docker", "image", "inspect", "--format", "{{.Id}}", image_id], board=board.name, warn=True)
    return found.stdout.strip() if found.ok else None


def bundle_manifest(image: ImageSpec) -> dict:
    """What a complete, checked native bundle holds; compared with the board's copy to skip work."""
    return {"framework": image.framework, "version": image.version, "arch": image.arch.value,
            "bench_sha256": image.bench_sha256, "install_sha256": file_sha256(INSTALL_SCRIPT),
            "wheels": {p.name: file_sha256(p) for p in sorted(image.native_wheelhouse.iterdir())}}


def _check_space(conn: fabric.Connection, board: Board, where: str, size: int, what: str) -> None:
    """A BoardError saying so when `where` on the board has no room for `size` bytes of `what`."""
    free = remote(conn, sh('df -Pk -- "$1" | awk \'NR==2{print $4}\'', where), board=board.name, warn=True)
    if free.stdout.strip().isdigit() and int(free.stdout) * 1024 < size * 1.05:
        raise BoardError(f"board {board.name}: {where} has {int(free.stdout) * 1024 / 1e6:.0f} MB free, {what} "
                         f"needs {size / 1e6:.0f} MB", hint=f"free space on the board (df -h {where}; "
                         "docker system prune removes unused images), then deploy again")


def _sftp(local: Path | str, dest: str, size: int, offset: int = 0) -> str:
    """How commands.log names an SFTP transfer."""
    return shell(["sftp-put", local, dest]) + f"  # {size} bytes" + (f" from byte {offset}" if offset else "")


def _put(conn: fabric.Connection, board: Board, local: Path, dest: str, progress: Bars | None,
         label: str, resume: bool = False) -> int:
    """SFTP `local` to `dest`, checked and atomic: a file only gets its final name once its sha256 on the board is
    the local one, and a failed transfer leaves nothing behind. With `resume`, the bytes a cut transfer of these
    same bytes left in `dest`.partial are kept and the rest appended (the sha256 check decides). The bytes sent."""
    mb, size = 1e6, local.stat().st_size
    where = posixpath.dirname(dest)
    partial = dest + ".partial"
    session = sftp(conn)
    try:
        offset = session.stat(partial).st_size if resume else 0
    except OSError:
        offset = 0
    offset = offset if offset <= size else 0  # longer than the file: not a cut copy of it
    if offset:
        (progress.out if progress else REPORTER).step(
            f"resuming {local.name} at {offset / 1e6:.1f} of {size / 1e6:.1f} MB (what a cut transfer left)",
            board.name)
    _check_space(conn, board, where, size - offset, local.name)
    task = progress.add_task(label, total=size / mb, completed=offset / mb, unit="MB") if progress else None
    try:
        with recording(_sftp(local, partial, size - offset, offset), board.name) as rec, open(local, "rb") as src, \
                bounded_sftp(conn, board.name, size - offset, local.name) as (client, check), \
                client.open(partial, "r+b" if offset else "wb") as out:
            out.set_pipelined(True)
            src.seek(offset)
            out.seek(offset)
            for block in iter(lambda: src.read(1 << 15), b""):
                check()
                out.write(block)
                if progress:
                    progress.advance(task, len(block) / mb)
            rec.exit_code = 0
    except (OSError, EOFError, paramiko.SSHException) as e:
        if not conn.is_connected or not conn.client.get_transport().is_active():
            raise ConnectionLost(f"board {board.name}: the connection was lost while sending {local.name}: {e}",
                                 hint="check the board and its link; the next deploy sends it again"
                                      + (", from where it stopped" if resume else "")) from e
        remote(conn, ["rm", "-f", "--", partial], board=board.name, warn=True)
        if session.get_channel().closed:  # the board's SFTP server ended, not its disk: a new connection gets a new one
            raise ConnectionLost(f"board {board.name}: its SFTP server ended while receiving {local.name}: {e}",
                                 hint="check the board's sshd (its sftp subsystem) and its memory; the next "
                                      "deploy sends it again") from e
        raise BoardError(f"board {board.name}: sending {local.name} to {where} failed: {e}",
                         hint=f"check the free disk on the board (df -h {where}) and that it is writable") from e
    got = remote(conn, ["sha256sum", "--", partial], board=board.name, warn=True,
                 timeout=transfer_timeout(size)).stdout.split()[:1]
    if got != [file_sha256(local)]:
        remote(conn, ["rm", "-f", "--", partial], board=board.name, warn=True)
        raise BoardError(f"board {board.name}: {local.name} arrived corrupted (its sha256 there is "
                         f"{got[0] if got else 'unreadable'}, not {file_sha256(local)})",
                         hint="deploy again; if it recurs, check the board's storage (SD card) and its link")
    session.posix_rename(partial, dest)
    return size - offset


# The board's engine: its image store, then the layers of every image it holds, one JSON list per line
_LAYERS_SCRIPT = r"""
docker info --format 'store={{.Driver}} {{json .DriverStatus}}' || exit 1
ids=$(docker image ls -aq --no-trunc | sort -u)
[ -z "$ids" ] || docker image inspect --format '{{json .RootFS.Layers}}' $ids
"""


def board_layers(conn: fabric.Connection, board: Board) -> tuple[str, list[list[str]]]:
    """The board engine's image store (`overlay2`..., or `containerd` for containerd's) and the layers of each
    image it holds."""
    r = remote(conn, sh(_LAYERS_SCRIPT), board=board.name)
    lines = r.stdout.splitlines()
    store = "containerd" if "io.containerd.snapshotter" in lines[0] else lines[0].removeprefix("store=").split()[0]
    return store, [json.loads(line) for line in lines[1:] if line.startswith("[")]


def first_to_send(held: tuple[str, list[list[str]]], layers: ImageLayers) -> int:
    """The index of the image's first layer the board lacks; 0 on containerd's image store, whose `docker load` of
    an archive without the layers it holds is not checked here: every layer goes there, as with docker save | load."""
    store, images_held = held  # what board_layers read
    return 0 if store == "containerd" else first_missing(layers.diff_ids, images_held)


def _drop_partials(conn: fabric.Connection, board: Board, workdir: str, keep: str = "") -> None:
    """With the board's lock held, a *.partial in the workdir is what a cut transfer left: that of `keep` (the
    archive being sent now) is resumed, the others go."""
    remote(conn, sh('for f in "$1"/*.partial; do [ "$f" = "$2" ] || rm -f -- "$f"; done', workdir, keep + ".partial"),
           board=board.name)


def _send_image(conn: fabric.Connection, board: Board, layers: ImageLayers, workdir: str,
                progress: Bars | None) -> Transfer:
    """Load the image on the board from an archive of the layers it lacks, checked before it is loaded."""
    start = first_to_send(board_layers(conn, board), layers)
    archive = images.layer_archive(layers, start, CODEC)
    dest = posixpath.join(workdir, archive.name)
    _drop_partials(conn, board, workdir, dest)
    sent = _put(conn, board, archive, dest, progress,
                f"{board.name}: {layers.tag.split(':')[0]} {len(layers.diff_ids) - start}/{len(layers.diff_ids)} "
                "layers", resume=True)
    # the archive goes whether or not it loaded: a failed load tags nothing, and the next deploy sends it again
    remote(conn, sh('docker load -i "$1"; status=$?; rm -f -- "$1"; exit $status', dest), board=board.name,
           timeout=transfer_timeout(layers.bytes_from(start)))  # it writes the layers out: their bytes, unpacked
    return Transfer(what="image", sent=sent, lacked=layers.bytes_from(start),
                    layers=(len(layers.diff_ids) - start, len(layers.diff_ids)))


def deploy(conn: fabric.Connection, board: Board, image: ImageSpec, export: ImageLayers,
           progress: Bars | None = None, modes: tuple[str, ...] = MODES,
           bare: Userland | None = None) -> Deployment:
    """Make `image`'s framework ready on `board` in `modes` (bare mode from `bare`, the image's userland) and check
    that their versions and entrypoints match; only what the board lacks is sent."""
    if "bare" in modes and bare is None:
        raise ValueError("bare mode needs the image's userland: pipeline.build(..., bare=[framework])")
    started = time.monotonic()
    if "docker" in modes:
        docker_version(conn, board)
    workdir = prepare_workdir(conn, board)
    # the board's lock is held: a model's *.partial there is what a cut transfer left (the link was gone, so it stayed)
    remote(conn, sh('rm -f -- "$1"/models/*.partial', workdir), board=board.name)
    watcher = _copy_watcher(conn, board, workdir)
    deployment = Deployment(board=board, image=image, workdir=workdir, userland=bare, modes=modes,
                            bundle_dir=posixpath.join(workdir, f"{image.framework}-{image.version}"),
                            framework_version=image.version, image_bytes=export.size)
    manifests = {"native": bundle_manifest(image)}
    if bare is not None:
        manifests["bare"] = userland_manifest(image, bare, deployment.root)
    where = {"bare": deployment.userland_dir, "native": deployment.bundle_dir}
    remote_id = image_on_board(conn, board, image.image_id) if "docker" in modes else None
    steps = deploy_steps(remote_image_id=remote_id, image_id=image.image_id, modes=modes,
                         bundles={m: (_read_manifest(conn, board, where[m]), manifests[m]) for m in manifests
                                  if m in modes})
    if not {("docker", "image"), ("bare", "bundle")} & set(steps):  # no archive is sent: what a cut transfer left goes
        _drop_partials(conn, board, workdir)
    sent: list[Transfer] = []
    for mode, step in steps:
        if step == "image":
            sent.append(_send_image(conn, board, export, workdir, progress))
            if image_on_board(conn, board, image.image_id) != image.image_id:
                raise BoardError(f"board {board.name}: after docker load the image {image.tag} is missing",
                                 hint="check free disk space on the board (docker system df)")
        elif mode == "bare":
            sent.append(_install_userland(conn, board, bare, deployment, progress) if step == "bundle" else
                        _copy_entrypoint(conn, board, start_dir(deployment.root)))
        elif step == "bundle":
            _require_debian(conn, board, image)
            sent.append(_install_bundle(conn, board, image, deployment.bundle_dir))
        else:  # the installed wheels stay: only the entrypoint's changed files go
            sent.append(_copy_entrypoint(conn, board, deployment.bundle_dir))
    deployment = dataclasses.replace(deployment, sent=(*sent, *watcher))
    if deployment.cache_dir:
        remote(conn, ["mkdir", "-p", "--", deployment.cache_dir], board=board.name)
    if not steps:  # this image and these bundles passed the check when they were deployed
        return dataclasses.replace(deployment, seconds=round(time.monotonic() - started, 2))
    version, notes = check_versions(conn, deployment)
    # Written last, and only after the modes agreed: its presence means "installed and checked".
    for mode in dict.fromkeys(m for m, _ in steps if m in manifests):
        text = json.dumps(manifests[mode], indent=1).encode()
        dest = posixpath.join(where[mode], "manifest.json")
        with recording(_sftp("-", dest, len(text)), board.name) as rec, \
                bounded_sftp(conn, board.name, len(text), "manifest.json") as (client, check):
            client.putfo(io.BytesIO(text), dest, callback=check)
            rec.exit_code = 0
    return dataclasses.replace(deployment, framework_version=version, notes=notes,
                               seconds=round(time.monotonic() - started, 2))


def _read_manifest(conn: fabric.Connection, board: Board, bundle_dir: str) -> dict | None:
    """The manifest of the board's bundle in `bundle_dir`: None if it has none (or not a whole one)."""
    old = remote(conn, ["cat", posixpath.join(bundle_dir, "manifest.json")], board=board.name, warn=True)
    try:
        return json.loads(old.stdout) if old.ok else None
    except json.JSONDecodeError:
        return None


def userland_manifest(image: ImageSpec, bare: Userland, root: str) -> dict:
    """What a complete, checked bare bundle holds: the userland's bytes, relocated to `root`, and the entrypoint."""
    return {"framework": image.framework, "version": image.version, "arch": image.arch.value,
            "userland_sha256": bare.sha256, "root": root, "bench_sha256": image.bench_sha256}


# Ends what this login runs from directory $1 (its path as a regex, from _running_from), then waits (5 s at most)
# until it has; another login's processes are never touched
_END_LEFTOVERS = 'u=$(id -u); pkill -KILL -U "$u" -f -- "$1"; i=0; ' \
                 'while pgrep -U "$u" -f -- "$1" >/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; exit 0'


def _running_from(directory: str) -> str:
    """A pkill pattern for processes whose command line names a path under `directory`, matching no shell that
    runs pkill with it (its first character in brackets)."""
    escaped = "".join(f"\\{c}" if c in ".[]()*+?{}|^$\\" else c for c in directory.rstrip("/") + "/")
    return f"[{escaped[0]}]{escaped[1:]}" if escaped[0] != "\\" else f"[{escaped[1]}]{escaped[2:]}"


def _require_debian(conn: fabric.Connection, board: Board, image: ImageSpec) -> None:
    """BoardError naming what to install when the framework comes from Debian packages the board lacks."""
    if not image.debian:
        return
    r = remote(conn, ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\\n", *image.debian],
               board=board.name, warn=True)
    have = {line.split()[0] for line in r.stdout.splitlines() if line.endswith(" installed")}
    missing = [p for p in image.debian if p not in have]
    if missing:
        raise BoardError(f"board {board.name}: {image.framework} {image.version} comes from Debian's "
                         f"{', '.join(image.debian)} in native mode, and the board lacks {', '.join(missing)}",
                         hint=f"on the board: sudo apt install {' '.join(missing)} (or leave native out: --mode both)")


def _install_bundle(conn: fabric.Connection, board: Board, image: ImageSpec, bundle_dir: str) -> Transfer:
    wheels = posixpath.join(bundle_dir, "wheels")
    # with the board's lock held, anything still running from the bundle is a lost attempt's install (pip is quiet, so
    # it never notices that its link went): it would write into the new bundle while it is made
    remote(conn, sh(_END_LEFTOVERS, _running_from(bundle_dir)), board=board.name)
    remote(conn, sh('rm -rf -- "$1" && mkdir -p -- "$2" && printf "%s\\n" "$3" >"$1/$4"', bundle_dir, wheels,
                    BUNDLE_SCHEMA, BUNDLE_MARK), board=board.name)
    try:  # the wheels go straight to their names (no manifest yet: nothing half-sent passes for installed)
        _check_space(conn, board, bundle_dir, sum(p.stat().st_size for p in image.native_wheelhouse.iterdir()),
                     f"the native bundle of {image.framework}")
    except BoardError:
        remote(conn, ["rm", "-rf", "--", bundle_dir], board=board.name, warn=True)
        raise
    size = 0
    for wheel in (*sorted(image.native_wheelhouse.iterdir()), INSTALL_SCRIPT):
        dest = posixpath.join(wheels if wheel != INSTALL_SCRIPT else bundle_dir, wheel.name)
        with recording(_sftp(wheel, dest, wheel.stat().st_size), board.name) as rec, \
                bounded_sftp(conn, board.name, wheel.stat().st_size, wheel.name) as (client, check):
            client.put(str(wheel), dest, callback=check)
            rec.exit_code = 0
        size += wheel.stat().st_size
    entrypoint = _copy_entrypoint(conn, board, bundle_dir)
    script = posixpath.join(bundle_dir, INSTALL_SCRIPT.name)
    # bounded: a `python:` that hangs must not hang the deploy (pip under QEMU takes minutes, never an hour)
    install = ["sh", script, bundle_dir, board.python]
    r = remote(conn, install, board=board.name, warn=True, timeout=INSTALL_TIMEOUT)
    if r.failed:
        raise BoardError(f"board {board.name}: installing {image.framework} {image.version} for native "
                         f"metal failed (`{shell(install)}`, exit {r.exited}): {(r.stderr or r.stdout).strip()[-400:]}",
                         hint=f"the board needs {board.python} with the venv module "
                              "(apt-get install python3-venv) and numpy (python3-numpy)")
    return Transfer(what="bundle", sent=size + entrypoint.sent,
                    lacked=size + entrypoint.lacked)


# The bare bundle's userland (archive $2) unpacked into $1/root with its mark ($3 holding $4), the archive removed
# whether or not it unpacked (the next deploy sends it again)
_UNPACK = r"""
rm -rf -- "$1" && mkdir -p -- "$1/root" && printf '%s\n' "$4" >"$1/$3" || exit 1
tar -xzf "$2" -C "$1/root" --no-same-owner; status=$?
rm -f -- "$2"
exit $status
"""

# The bundle's interpreter ($1) started as a run starts it (in $2, the environment after them), asked what it is
_FIRST_START = 'py=$1; cd -- "$2" || exit 1; shift 2; exec env -i "$@" "$py" -c "import sys, numpy; print(sys.version)"'


def _install_userland(conn: fabric.Connection, board: Board, bare: Userland, deployment: Deployment,
                      progress: Bars | None) -> Transfer:
    """The image's userland unpacked on the board, its interpreter relocated, the entrypoint beside it; a BoardError
    naming the cause and its fix when the board cannot start it."""
    started = time.monotonic()
    workdir, bundle_dir, root = deployment.workdir, deployment.userland_dir, deployment.root
    # with the board's lock held, anything still running from the bundle is a lost attempt's (its tar, a run)
    remote(conn, sh(_END_LEFTOVERS, _running_from(bundle_dir)), board=board.name)
    try:
        _check_space(conn, board, workdir, bare.bytes + bare.unpacked, "the bare-metal bundle (its archive, then "
                     f"unpacked) of {deployment.image.framework}")
    except BoardError as e:
        raise BareUnavailable(e.message, hint=e.hint) from e
    archive = posixpath.join(workdir, bare.archive.name)
    _drop_partials(conn, board, workdir, archive)
    sent = _put(conn, board, bare.archive, archive, progress, f"{board.name}: {deployment.image.framework} bare "
                "bundle", resume=True)
    r = remote(conn, sh(_UNPACK, bundle_dir, archive, BUNDLE_MARK, BUNDLE_SCHEMA), board=board.name, warn=True,
               timeout=transfer_timeout(bare.unpacked))
    if r.failed:
        remote(conn, ["rm", "-rf", "--", bundle_dir], board=board.name, warn=True)
        raise BoardError(f"board {board.name}: unpacking the bare-metal bundle into {bundle_dir} failed (exit "
                         f"{r.exited}): {(r.stderr or r.stdout).strip()[-400:]}",
                         hint=f"check the free disk there (df -h {workdir}), then deploy again")
    interpreter = userland.patched(bare, root)
    dest = posixpath.join(root, bare.python)
    with recording(_sftp(interpreter, dest, interpreter.stat().st_size), board.name) as rec, \
            bounded_sftp(conn, board.name, interpreter.stat().st_size, interpreter.name) as (client, check):
        client.put(str(interpreter), dest, callback=check)
        client.chmod(dest, 0o755)
        rec.exit_code = 0
    try:
        _first_start(conn, board, bare, root)
    except BareUnavailable:  # nothing of it stays on the board
        remote(conn, ["rm", "-rf", "--", bundle_dir], board=board.name, warn=True)
        raise
    entrypoint = _copy_entrypoint(conn, board, start_dir(root))
    size = sent + interpreter.stat().st_size + entrypoint.sent
    return Transfer(what="bare bundle", sent=size, lacked=bare.bytes + interpreter.stat().st_size + entrypoint.lacked,
                    unpacked=bare.unpacked, seconds=round(time.monotonic() - started, 2))


def _first_start(conn: fabric.Connection, board: Board, bare: Userland, root: str) -> None:
    """A BoardError saying why when the bundle's interpreter does not start on the board: its workdir on a noexec
    mount, a kernel older than the bundle's C library needs, an architecture the board cannot run."""
    env = [f"{k}={v}" for k, v in bare.environment().items()]
    where = start_dir(root)
    r = remote(conn, sh(_FIRST_START, posixpath.join(root, bare.python), where, *env), board=board.name, warn=True,
               timeout=PROBE_TIMEOUT)
    if r.ok:
        return
    said = (r.stderr or r.stdout).strip()
    if "kernel too old" in said:
        why, fix = ("the board's kernel is older than the bundle's C library needs",
                    "update the board's kernel, or run --mode docker,native")
    elif "Exec format error" in said or "cannot execute binary" in said:
        why, fix = (f"its architecture is not the bundle's (whose loader is {posixpath.basename(bare.loader)})",
                    "fix `arch:` of the board in the inventory (`invoke check` says what it runs)")
    elif r.exited == 126 or "Permission denied" in said:
        why, fix = ("its workdir does not let programs run (a noexec mount?)",
                    f"set `workdir:` of {board.name} in the inventory to a folder on a filesystem mounted without "
                    f"noexec (findmnt -T {root} shows its options), or run --mode docker (native mode's C "
                    "extensions cannot load from there either)")
    else:
        why, fix = ("it did not start", "run `invoke check` on the board; see the message above")
    raise BareUnavailable(f"board {board.name}: the bare-metal bundle's Python cannot run there: {why} (exit "
                          f"{r.exited}: {said[-300:] or 'no message'})", hint=fix)


# Each file under $1 with its sha256, as `./path` (Python's bytecode caches aside)
_LIST_FILES = 'cd -- "$1" 2>/dev/null && find . -type f ! -path "*/__pycache__/*" -exec sha256sum -- {} + || true'


def _copy_entrypoint(conn: fabric.Connection, board: Board, bundle_dir: str) -> Transfer:
    """The board-side package into `bundle_dir`: the files that differ from the board's copy go, and a file the
    package no longer has is removed (no stale module stays behind)."""
    package = posixpath.join(bundle_dir, bench.BOARD_PACKAGE)
    local = Path(bench.__file__).parent
    files = {p.as_posix(): file_sha256(local / p) for p in bench.bundle_files()}  # subpackages (adapters/) too
    listed = remote(conn, sh(_LIST_FILES, package), board=board.name).stdout.splitlines()
    have = {line.split(None, 1)[1].strip().removeprefix("./"): line.split()[0] for line in listed if "  " in line}
    changed = [p for p, digest in files.items() if have.get(p) != digest]
    stale = [posixpath.join(package, p) for p in have if p not in files]
    subdirs = sorted({posixpath.join(package, posixpath.dirname(p)) for p in changed if "/" in p})
    remote(conn, sh('mkdir -p -- "$@"', package, *subdirs), board=board.name)
    if stale:
        remote(conn, ["rm", "-f", "--", *stale], board=board.name)
    for path in changed:
        with recording(_sftp(local / path, posixpath.join(package, path), (local / path).stat().st_size),
                       board.name) as rec, \
                bounded_sftp(conn, board.name, (local / path).stat().st_size, path) as (client, check):
            client.put(str(local / path), posixpath.join(package, path), callback=check)
            rec.exit_code = 0
    size = sum((local / p).stat().st_size for p in changed)
    return Transfer(what="entrypoint", sent=size, lacked=size)


VENDOR = "vendor"  # a recipe version meaning: whichever version the vendor's image or JetPack has (TensorRT)


def version_matches(expected: str, found: str) -> bool:
    """Whether a mode's framework version is the recipe's. A local label names the build, not another version
    (torch 2.13.0+cpu is the recipe's 2.13.0), nor do trailing zeros; a vendor's framework is whatever its image
    reports."""
    def release(v: str) -> list[str]:  # Debian's onnxruntime 1.21.0 calls itself 1.21
        parts = v.split("+")[0].split(".")
        while len(parts) > 1 and parts[-1] == "0":
            parts.pop()
        return parts

    return expected == VENDOR or release(str(found)) == release(expected)


def check_versions(conn: fabric.Connection, deployment: Deployment) -> tuple[str, tuple[str, ...]]:
    """Probe the deployed modes; the framework version and entrypoint bytes must match, or BoardError."""
    board, image = deployment.board, deployment.image
    probes = {}
    for mode in deployment.modes:
        runner = deployment.runner(conn, Arm(label=mode, mode=mode), PROBE_TIMEOUT)
        answer = runner.execute(probe_args(image.framework), {})
        probes[mode] = results.parse_answer(answer, board=board.name, what=f"{mode} probe",
                                            schema=bench.PROBE_SCHEMA)
    versions = {m: p["framework"]["version"] for m, p in probes.items()}
    digests = {m: p["bench"]["sha256"] for m, p in probes.items()}
    if len(set(versions.values())) != 1 or not version_matches(image.version, next(iter(versions.values()))):
        found = ", ".join(f"{mode} mode has {v}" for mode, v in versions.items())
        raise BoardError(f"board {board.name}: {image.framework} versions differ: the image expects "
                         f"{image.version}, {found}", hint="redeploy: invoke deploy --host " + board.name)
    if set(digests.values()) != {image.bench_sha256}:
        raise BoardError(f"board {board.name}: the entrypoint differs between modes ({digests}) "
                         f"from the local one ({image.bench_sha256})",
                         hint="redeploy: invoke deploy --host " + board.name)
    facts = probes.get("native", probes.get("bare", probes.get("docker")))["facts"]
    try:
        found = Arch.from_userland(facts["machine"], facts["bits"])
    except ValueError:
        found = None
    if found != board.arch:
        raise BoardError(f"board {board.name}: the inventory says {board.arch.value}, but the board runs "
                         f"{facts['machine']} ({facts['bits']}-bit)",
                         hint=f"fix `arch:` of {board.name} in the inventory")
    if "bare" in probes:
        _check_bare(board, deployment.userland_dir, probes)
    notes = []
    for key in ("python", "numpy") if "native" in probes and len(probes) > 1 else ():
        vals = {m: p["facts"].get(key) for m, p in probes.items()}
        if len(set(vals.values())) > 1:
            notes.append(f"{key} differs: " + ", ".join(f"{m} {v}" for m, v in vals.items()))
    arch = {m: p["facts"]["machine"] for m, p in probes.items()}
    notes += [] if len(set(arch.values())) == 1 else [f"machine differs: {arch}"]
    return next(iter(versions.values())), tuple(notes)  # one mode alone (--mode native) has no docker version


def _check_bare(board: Board, bundle_dir: str, probes: dict[str, dict]) -> None:
    """BoardError unless the bare run is the image's userland: every library it loaded from the bundle, its Python
    and numpy those of the Docker run."""
    facts = probes["bare"]["facts"]
    outside = [lib for lib in facts.get("libraries") or [] if not lib.startswith(bundle_dir + "/")]
    if outside or not str(facts.get("executable") or "").startswith(bundle_dir + "/"):
        raise BoardError(f"board {board.name}: the bare run loaded files from outside its bundle {bundle_dir}: "
                         f"{', '.join((outside or [str(facts.get('executable'))])[:3])}",
                         hint="the image's userland lacks them; report it with `invoke deploy -v` output")
    if "docker" in probes:
        differ = [k for k in ("python", "numpy") if probes["docker"]["facts"].get(k) != facts.get(k)]
        if differ:
            raise BoardError(f"board {board.name}: the bare run's {' and '.join(differ)} differ from the Docker run's "
                             f"(" + ", ".join(f"{probes['docker']['facts'].get(k)} against {facts.get(k)}"
                                              for k in differ) + ")",
                             hint=f"redeploy: invoke deploy --host {board.name}")


def push_file(conn: fabric.Connection, board: Board, workdir: str, path: Path, sha256: str,
              progress: Bars | None = None, stem: str | None = None) -> str:
    """Copy a model or input file to the board unless an identical copy is there; its path there. `stem`: the name
    the files of one model share (hex: the digest of them all), else the file's own sha256's."""
    # named by content, not by the user's file name: any name works, and none reaches a command line on the board
    suffix = "".join(c for c in path.suffix if c.isascii() and (c.isalnum() or c == "."))
    dest = posixpath.join(workdir, "models", (stem or sha256[:16]) + suffix)
    have = remote(conn, ["sha256sum", "--", dest], board=board.name, warn=True,
                  timeout=transfer_timeout(path.stat().st_size))
    if not (have.ok and have.stdout.split()[:1] == [sha256]):
        remote(conn, ["mkdir", "-p", "--", posixpath.dirname(dest)], board=board.name)
        _put(conn, board, path, dest, progress, f"{board.name}: {path.name}")
        # what `clean` may remove from the models folder: the files edgeorch sent, and no other
        remote(conn, sh('grep -qxF -- "$2" "$1" 2>/dev/null || printf "%s\\n" "$2" >>"$1"',
                        posixpath.join(workdir, MODELS_LIST), posixpath.basename(dest)), board=board.name)
    return dest


# edgeorch's images on the board, one per line: id, creation time, labels
_EDGEORCH_IMAGES = r"""
ids=$(docker image ls -q --no-trunc --filter "label=$1" | sort -u)
[ -z "$ids" ] || docker image inspect --format '{{.Id}}	{{.Created}}	{{json .Config.Labels}}' $ids
"""

# The filesystems of edgeorch's directory ($1) and of the board engine's data, each with its KB free, after `sync`
_FREE_KB = 'sync; df -Pk -- "$1" "$(docker info --format "{{.DockerRootDir}}" 2>/dev/null || echo "$1")" | ' \
           "awk 'NR>1 {print $1, $4}'"


def _free_kb(conn: fabric.Connection, board: Board, workdir: str) -> dict[str, int]:
    r = remote(conn, sh(_FREE_KB, workdir), board=board.name, warn=True)
    return {fs: int(kb) for fs, kb in (line.rsplit(" ", 1) for line in r.stdout.splitlines() if " " in line)
            if kb.isdigit()}


# The bundles in the workdir ($1), NUL-separated: `mark NAME` for one whose mark ($2 holding $3) says edgeorch made it
# (an install may have stopped half-way), `manifest NAME TEXT` for one with a manifest. Never a link's.
_BUNDLES = r"""
cd -- "$1" || exit 1
for d in */; do
  d=${d%/}
  [ -d "$d" ] && [ ! -L "$d" ] || continue
  if [ -f "$d/$2" ] && [ ! -L "$d/$2" ] && [ "$(head -c 100 -- "$d/$2")" = "$3" ]; then
    printf 'mark\0%s\0\0' "$d"
  elif [ -f "$d/manifest.json" ] && [ ! -L "$d/manifest.json" ]; then
    printf 'manifest\0%s\0' "$d"; head -c 100000 -- "$d/manifest.json" | tr -d '\000'; printf '\0'
  fi
done
"""

# What cut transfers left in the workdir ($1): its archives' and its models' *.partial (edgeorch's names only),
# NUL-separated, relative to $1
_PARTIALS = r"""
cd -- "$1" || exit 1
find . -maxdepth 1 -type f -name 'edgeorch-*.partial' -print0
[ ! -d models ] || [ -L models ] || find models -maxdepth 1 -type f -name "$2" -print0
"""


def _is_bundle(kind: str, name: str, text: str) -> bool:
    """Whether a folder of the workdir is a bare-metal bundle edgeorch made: its mark, or a manifest of exactly
    bundle_manifest's fields whose framework and version are the folder's name."""
    if not _BUNDLE_NAME.fullmatch(name):
        return False
    if kind == "mark":
        return True
    try:
        manifest = json.loads(text)
    except ValueError:
        return False
    fields = {"framework", "version", "arch", "bench_sha256", "install_sha256", "wheels"}
    return (isinstance(manifest, dict) and set(manifest) == fields and isinstance(manifest["wheels"], dict)
            and name == f"{manifest['framework']}-{manifest['version']}")


def _records(text: str, width: int) -> list[list[str]]:
    """NUL-separated output as records of `width` fields."""
    fields = text.split("\0")[:-1]
    return [fields[i:i + width] for i in range(0, len(fields) - width + 1, width)]


def clean(conn: fabric.Connection, board: Board, targets: list, cached_models: set[str]) -> dict:
    """Remove from the board what edgeorch made that no current recipe uses: its images (they carry its label) and
    bare bundles (they carry its mark or manifest) not of `targets`' builds (of several images of one build, all but
    the newest), the models it sent whose bytes are not among `cached_models` (sha256s of this host's current zoo
    files; any other is sent again when a bench needs it), and what cut transfers left. Nothing else in the workdir,
    and nothing in a workdir without edgeorch's mark. What it removed, and the disk it freed."""
    workdir = prepare_workdir(conn, board, create=False)
    before = _free_kb(conn, board, workdir or ".")
    listed = remote(conn, sh(_EDGEORCH_IMAGES, images.LABEL), board=board.name).stdout.splitlines()
    found = [{"id": i, "created": c, "labels": json.loads(labels)}
             for i, c, labels in (line.split("\t", 2) for line in listed if line.count("\t") == 2)]
    keep = images_to_keep(found, targets, images.LABEL)
    removed = {"images": [], "bundles": [], "models": [], "partials": []}
    for image in found:
        if image["id"] not in keep and remote(conn, ["docker", "image", "rm", "--force", "--", image["id"]],
                                              board=board.name, warn=True).ok:
            removed["images"].append(f"{image['labels'].get(images.LABEL + '.framework', '?')} "
                                     f"{image['id'].removeprefix('sha256:')[:12]}")
    if workdir is not None:
        removed.update(_clean_workdir(conn, board, workdir, targets, cached_models))
    after = _free_kb(conn, board, workdir or ".")
    freed = sum(kb - before.get(fs, kb) for fs, kb in after.items()) * 1024  # the engine's disk may be edgeorch's
    return {"removed": removed, "freed_bytes": max(freed, 0)}


def _clean_workdir(conn: fabric.Connection, board: Board, workdir: str, targets: list,
                   cached_models: set[str]) -> dict:
    """clean's part in edgeorch's own (marked) workdir: old bundles, models it sent, cut transfers."""
    wanted = {f"{t.framework}-{t.build.version}{kind}" for t in targets for kind in ("", "-bare")}
    bundles = remote(conn, sh(_BUNDLES, workdir, BUNDLE_MARK, BUNDLE_SCHEMA), board=board.name).stdout
    old_bundles = sorted({name for kind, name, text in _records(bundles, 3)
                          if _is_bundle(kind, name, text) and name not in wanted})
    if old_bundles:
        remote(conn, ["rm", "-rf", "--", *(posixpath.join(workdir, d) for d in old_bundles)], board=board.name)
    listed = remote(conn, ["cat", "--", posixpath.join(workdir, MODELS_LIST)], board=board.name, warn=True)
    sent = sorted({m for m in listed.stdout.splitlines() if _SENT_NAME.fullmatch(m)}) if listed.ok else []
    hashes = remote(conn, sh('cd -- "$1"/models && shift && sha256sum -- "$@" 2>/dev/null; exit 0', workdir, *sent),
                    board=board.name).stdout.splitlines() if sent else []
    have = {name: digest for digest, name in (line.split("  ", 1) for line in hashes if "  " in line)}
    old_models = sorted(m for m, digest in have.items() if digest not in cached_models)
    if old_models:
        remote(conn, ["rm", "-f", "--", *(posixpath.join(workdir, "models", m) for m in old_models)],
               board=board.name)
    if listed.ok and (old_models or len(have) != len(sent)):  # the list keeps what is still there
        remote(conn, sh('f=$1; shift; printf "%s\\n" "$@" >"$f.new" && mv -f -- "$f.new" "$f"',
                        posixpath.join(workdir, MODELS_LIST), *(m for m in sent if m in have and m not in old_models)),
               board=board.name)
    cut = remote(conn, sh(_PARTIALS, workdir, "[0-9a-f]" * 16 + "*.partial"), board=board.name).stdout
    partials = [p.removeprefix("./") for [p] in _records(cut, 1)]
    if partials:
        remote(conn, ["rm", "-f", "--", *(posixpath.join(workdir, p) for p in partials)], board=board.name)
    return {"bundles": old_bundles, "models": old_models, "partials": partials}
