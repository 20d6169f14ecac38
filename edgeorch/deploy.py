"""Put what a framework needs onto a board: its image (docker mode) and the same wheels and
entrypoint in a directory of their own (bare mode); skip what the board already has."""

from __future__ import annotations

import dataclasses
import io
import json
import posixpath
import shlex
from dataclasses import dataclass
from pathlib import Path

import fabric
from rich.progress import Progress

from . import bench, results
from .arch import Arch
from .cache import file_sha256
from .errors import BoardError
from .images import ImageSpec
from .inventory import Board
from .plan import MODES, Arm, deploy_steps
from .recipes import INSTALL_SCRIPT
from .runners import BareRunner, DockerRunner, Runner, probe_args
from .transport import remote

PROBE_TIMEOUT = 600  # s: importing a big framework under QEMU is slow, but a hang must end


@dataclass(frozen=True, kw_only=True)
class Deployment:
    """A framework ready on a board in both modes, with the versions each mode reported."""
    board: Board
    image: ImageSpec
    workdir: str
    bundle_dir: str
    transferred: tuple[str, ...]
    framework_version: str
    notes: tuple[str, ...] = ()
    modes: tuple[str, ...] = MODES

    def runner(self, conn: fabric.Connection, arm: Arm, timeout: float | None = None) -> Runner:
        """The runner of one arm: bare, or Docker with the board's options and the arm's."""
        where = {"python": self.board.python, "host_dir": host_dir(self.workdir)}
        if arm.mode == "bare":
            return BareRunner(conn, self.board.name, self.bundle_dir, timeout, **where)
        return DockerRunner(conn, self.board.name, self.image.image_id, timeout,
                            (*self.board.docker_args, *arm.docker_args), bind_files=arm.bind_files, **where)


def host_dir(workdir: str) -> str:
    """Where the board's host keeps the sensor watcher (the board-side package, run with the board's Python)."""
    return posixpath.join(workdir, "host")


def _copy_watcher(conn: fabric.Connection, board: Board, workdir: str) -> None:
    """The board-side package for the sensor watcher on the host, unless this very copy is there."""
    stamp = posixpath.join(host_dir(workdir), bench.BOARD_PACKAGE, "DIGEST")
    have = remote(conn, shlex.join(["cat", stamp]), board=board.name, warn=True)
    if have.ok and have.stdout.strip() == bench.bundle_digest():
        return
    _copy_entrypoint(conn, board, host_dir(workdir))
    conn.sftp().putfo(io.BytesIO(bench.bundle_digest().encode()), stamp)


def prepare_workdir(conn: fabric.Connection, board: Board) -> str:
    """Create the board's working directory and return its absolute path."""
    return remote(conn, f"mkdir -p {shlex.quote(board.workdir)} && cd {shlex.quote(board.workdir)} && pwd",
                  board=board.name).stdout.strip()


def docker_version(conn: fabric.Connection, board: Board) -> str:
    """The board's Docker engine version; BoardError if it has none that answers."""
    r = remote(conn, "docker version --format '{{.Server.Version}}'", board=board.name, warn=True)
    if r.failed or not r.stdout.strip():
        raise BoardError(f"board {board.name} has no working Docker engine: "
                         f"{(r.stderr or r.stdout).strip().splitlines()[-1:] or 'no answer'}",
                         hint=f"install Docker on the board (e.g. apt-get install docker.io), start it, "
                              f"and add {board.user} to the docker group")
    return r.stdout.strip()


def bundle_manifest(image: ImageSpec) -> dict:
    """What a complete, checked bare-metal bundle holds; compared with the board's copy to skip work."""
    return {"framework": image.framework, "version": image.version, "arch": image.arch.value,
            "bench_sha256": image.bench_sha256, "install_sha256": file_sha256(INSTALL_SCRIPT),
            "wheels": {p.name: file_sha256(p) for p in sorted(image.wheelhouse.iterdir())}}


def _put(conn: fabric.Connection, local: Path, dest: str, progress: Progress | None, label: str) -> None:
    """SFTP `local` to `dest` atomically (a partial file never has the final name)."""
    mb = 2**20
    task = progress.add_task(label, total=local.stat().st_size / mb, unit="MB") if progress else None
    sftp = conn.sftp()
    sftp.put(str(local), dest + ".partial",
             callback=(lambda done, total: progress.update(task, completed=done / mb)) if progress else None)
    sftp.posix_rename(dest + ".partial", dest)


def deploy(conn: fabric.Connection, board: Board, image: ImageSpec, export: Path,
           progress: Progress | None = None, modes: tuple[str, ...] = MODES) -> Deployment:
    """Make `image`'s framework ready on `board` in `modes` (both by default) and check their versions match."""
    docker_version(conn, board)
    workdir = prepare_workdir(conn, board)
    _copy_watcher(conn, board, workdir)
    bundle_dir = posixpath.join(workdir, f"{image.framework}-{image.version}")
    found = remote(conn, f"docker image inspect --format '{{{{.Id}}}}' {image.image_id}",
                   board=board.name, warn=True)
    remote_id = found.stdout.strip() if found.ok else None
    old = remote(conn, f"cat {bundle_dir}/manifest.json", board=board.name, warn=True)
    try:
        remote_manifest = json.loads(old.stdout) if old.ok else None
    except json.JSONDecodeError:
        remote_manifest = None
    manifest = bundle_manifest(image)
    steps = deploy_steps(remote_image_id=remote_id, image_id=image.image_id,
                         remote_manifest=remote_manifest, manifest=manifest, modes=modes)
    if "image" in steps:
        dest = posixpath.join(workdir, export.name)
        _put(conn, export, dest, progress, f"{board.name}: image {image.tag}")
        remote(conn, f"docker load -i {dest} && rm -f {dest}", board=board.name)
        got = remote(conn, f"docker image inspect --format '{{{{.Id}}}}' {image.image_id}",
                     board=board.name, warn=True).stdout.strip()
        if got != image.image_id:
            raise BoardError(f"board {board.name}: after docker load the image {image.tag} is missing",
                             hint="check free disk space on the board (docker system df)")
    if "bundle" in steps:
        _install_bundle(conn, board, image, bundle_dir)
    elif "entrypoint" in steps:  # the installed wheels stay: only the entrypoint's files change
        _copy_entrypoint(conn, board, bundle_dir)
    deployment = Deployment(board=board, image=image, workdir=workdir, bundle_dir=bundle_dir,
                            transferred=tuple(steps), framework_version=image.version, modes=modes)
    if not steps:  # this image and this bundle passed the check when they were deployed
        return deployment
    version, notes = check_versions(conn, deployment)
    # Written last, and only after both modes agreed: its presence means "installed and checked".
    if "bare" in modes:
        conn.sftp().putfo(io.BytesIO(json.dumps(manifest, indent=1).encode()), f"{bundle_dir}/manifest.json")
    return dataclasses.replace(deployment, framework_version=version, notes=notes)


def _install_bundle(conn: fabric.Connection, board: Board, image: ImageSpec, bundle_dir: str) -> None:
    q = shlex.quote(bundle_dir)
    remote(conn, f"rm -rf {q} && mkdir -p {q}/wheels {q}/{bench.BOARD_PACKAGE}", board=board.name)
    sftp = conn.sftp()
    for wheel in sorted(image.wheelhouse.iterdir()):
        sftp.put(str(wheel), f"{bundle_dir}/wheels/{wheel.name}")
    _copy_entrypoint(conn, board, bundle_dir)
    sftp.put(str(INSTALL_SCRIPT), f"{bundle_dir}/{INSTALL_SCRIPT.name}")
    r = remote(conn, f"sh {q}/{INSTALL_SCRIPT.name} {q} {shlex.quote(board.python)}",
               board=board.name, warn=True)
    if r.failed:
        raise BoardError(f"board {board.name}: installing {image.framework} {image.version} for bare "
                         f"metal failed: {(r.stderr or r.stdout).strip()[-400:]}",
                         hint=f"the board needs {board.python} with the venv module "
                              "(apt-get install python3-venv) and numpy (python3-numpy)")


def _copy_entrypoint(conn: fabric.Connection, board: Board, bundle_dir: str) -> None:
    package = shlex.quote(f"{bundle_dir}/{bench.BOARD_PACKAGE}")
    remote(conn, f"rm -rf {package} && mkdir -p {package}", board=board.name)  # no stale module stays behind
    sftp = conn.sftp()
    for path in bench.bundle_files():
        sftp.put(str(path), f"{bundle_dir}/{bench.BOARD_PACKAGE}/{path.name}")


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
    # A local label names the build, not another version: torch 2.13.0+cpu is the recipe's 2.13.0.
    if len(set(versions.values())) != 1 or str(next(iter(versions.values()))).split("+")[0] != image.version:
        found = ", ".join(f"{mode} mode has {v}" for mode, v in versions.items())
        raise BoardError(f"board {board.name}: {image.framework} versions differ: the image expects "
                         f"{image.version}, {found}", hint="redeploy: invoke deploy --host " + board.name)
    if set(digests.values()) != {image.bench_sha256}:
        raise BoardError(f"board {board.name}: the entrypoint differs between modes ({digests}) "
                         f"from the local one ({image.bench_sha256})",
                         hint="redeploy: invoke deploy --host " + board.name)
    facts = probes.get("bare", probes.get("docker"))["facts"]
    try:
        found = Arch.from_userland(facts["machine"], facts["bits"])
    except ValueError:
        found = None
    if found != board.arch:
        raise BoardError(f"board {board.name}: the inventory says {board.arch.value}, but the board runs "
                         f"{facts['machine']} ({facts['bits']}-bit)",
                         hint=f"fix `arch:` of {board.name} in the inventory")
    notes = []
    for key in ("python", "numpy") if len(probes) == 2 else ():
        vals = {m: p["facts"].get(key) for m, p in probes.items()}
        if vals["docker"] != vals["bare"]:
            notes.append(f"{key} differs: docker {vals['docker']}, bare {vals['bare']}")
    arch = {m: p["facts"]["machine"] for m, p in probes.items()}
    notes += [] if len(set(arch.values())) == 1 else [f"machine differs: {arch}"]
    return versions["docker"], tuple(notes)


def push_file(conn: fabric.Connection, board: Board, workdir: str, path: Path, sha256: str,
              progress: Progress | None = None) -> str:
    """Copy a model or input file to the board unless an identical copy is there; its path there."""
    dest = posixpath.join(workdir, "models", f"{sha256[:16]}-{path.name}")
    have = remote(conn, f"sha256sum {dest}", board=board.name, warn=True)
    if not (have.ok and have.stdout.split()[0] == sha256):
        remote(conn, f"mkdir -p {posixpath.dirname(dest)}", board=board.name)
        _put(conn, path, dest, progress, f"{board.name}: {path.name}")
    return dest


_FACTS_SCRIPT = r"""
py={python}
probe='import platform as p, struct as s; print(p.python_version(), p.machine(), s.calcsize("P") * 8)'
echo "python=$($py -c "$probe" 2>/dev/null)"
echo "venv=$($py -c 'import venv, ensurepip' 2>/dev/null && echo yes)"
echo "numpy=$($py -c 'import numpy;print(numpy.__version__)' 2>/dev/null)"
echo "docker=$(docker version --format '{{{{.Server.Version}}}}' 2>/dev/null)"
echo "disk_free_kb=$(df -Pk . | awk 'NR==2{{print $4}}')"
echo "thermal_zones=$(ls -d /sys/class/thermal/thermal_zone* 2>/dev/null | wc -l)"
echo "cpufreq_cpus=$(ls -d /sys/devices/system/cpu/cpu[0-9]*/cpufreq 2>/dev/null | wc -l)"
echo "vcgencmd=$(command -v vcgencmd)"
"""


def parse_board_facts(text: str, board: Board) -> dict:
    """The check task's row for a board, from the facts script's key=value lines."""
    raw = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    row = {"board": board.name, "reachable": True, "arch": board.arch.value}
    py = raw.get("python", "").split()
    if len(py) == 3:
        row["python"] = py[0]
        try:
            found = Arch.from_userland(py[1], int(py[2])).value
        except ValueError:
            found = f"{py[1]}/{py[2]}-bit"
        row["arch_ok"] = found == board.arch.value
        row["arch_found"] = found
    else:
        row.update(python=None, arch_ok=False, arch_found=f"no {board.python}")
    row["docker"] = raw.get("docker") or None
    row["venv"] = raw.get("venv") == "yes"
    row["numpy"] = raw.get("numpy") or None
    disk = raw.get("disk_free_kb", "")
    row["disk_free_gb"] = round(int(disk) / 2**20, 1) if disk.isdigit() else None
    sensors = []
    if raw.get("thermal_zones", "0").strip() not in ("", "0"):
        sensors.append(f"thermal x{raw['thermal_zones'].strip()}")
    if raw.get("cpufreq_cpus", "0").strip() not in ("", "0"):
        sensors.append(f"cpufreq x{raw['cpufreq_cpus'].strip()}")
    if raw.get("vcgencmd"):
        sensors.append("vcgencmd")
    row["sensors"] = ", ".join(sensors) or "none"
    problems = []
    if not row["arch_ok"]:
        problems.append(f"inventory says {board.arch.value}, board runs {row['arch_found']}")
    if not row["docker"]:
        problems.append("no working Docker engine")
    if not row["venv"] or not row["numpy"]:
        problems.append(f"{board.python} lacks venv/ensurepip or numpy (apt-get install python3-venv python3-numpy)")
    row["problems"] = problems
    return row


def board_facts(conn: fabric.Connection, board: Board) -> dict:
    """What the check task reports for one board."""
    workdir = prepare_workdir(conn, board)
    script = _FACTS_SCRIPT.format(python=shlex.quote(board.python))
    r = remote(conn, f"cd {shlex.quote(workdir)} && sh -c {shlex.quote(script)}", board=board.name, warn=True)
    return parse_board_facts(r.stdout, board)
