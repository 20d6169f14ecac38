"""Docker and bare-metal runs behind one protocol: the benchmark never asks where it runs."""

from __future__ import annotations

import csv
import io
import json
import posixpath
import secrets
from dataclasses import dataclass
from typing import Protocol

import fabric

from .bench import BOARD_PACKAGE, signature
from .errors import BoardError, RunTimeout
from .plan import RunSpec
from .transport import COMMAND_TIMEOUT, remote, sh

CONTAINER_DIR = "/opt/edgeorch"  # where the framework image keeps venv, bundle and models


def start_dir(root: str) -> str:
    """CONTAINER_DIR in the bare-metal copy of an image's userland at the board path `root`: where a bare run starts
    (its PYTHONPATH is relative to it), and where its entrypoint goes."""
    return posixpath.join(root, CONTAINER_DIR.lstrip("/"))


@dataclass(frozen=True)
class Answer:
    """What the entrypoint answered: its stdout (the JSON document), stderr and exit code."""
    stdout: str
    stderr: str
    exit_code: int


class Runner(Protocol):
    mode: str

    def execute(self, args: list[str], files: list[tuple[str, str]]) -> Answer:
        """Run the entrypoint with `args` and `files`: (option, path on the board) pairs such as ("--model", path),
        where an --input value may be NAME=path, and ("", path) a file the model reads beside it (same stem)."""


def file_args(files) -> list[tuple[str, str, str]]:
    """(option, prefix, path on the board) of each file option: the prefix is an --input value's NAME= (the path
    after it may hold '=' too). `files` is a list of (option, value) pairs, or a dict of them."""
    out = []
    for option, value in files.items() if isinstance(files, dict) else files:
        name, path = signature.parse_input(value) if option == "--input" else ("", value)
        out.append((option, f"{name}=" if name else "", path))
    return out


def entrypoint_args(spec: RunSpec, *, model_sha256: str, run_id: str) -> list[str]:
    """The entrypoint's arguments for one run, the same in both modes; its sensors are read by the watcher, which
    gets every sample (--raw-samples)."""
    return ["--framework", spec.framework, "--iterations", str(spec.iterations), "--min-time", str(spec.min_time),
            "--sample-interval", "0", "--raw-samples",
            "--warmup", str(spec.warmup), "--threads", str(spec.threads),
            "--model-sha256", model_sha256, "--run-id", run_id,
            *[arg for option in spec.options for arg in ("--option", option)],
            *[arg for shape in spec.input_shapes for arg in ("--input-shape", shape)],
            *(["--profile", str(spec.profile)] if spec.profile else [])]


@dataclass(frozen=True, kw_only=True)
class Measures:
    """What the watcher measures beside latency, from outside the measured process, the same way in both modes:
    hardware counters (perf, attached to the run's process) and energy (the board's power sensor, or the meter
    command of its inventory entry), with idle power sampled for `idle_s` seconds before each run; and with
    `keep_samples`, every inference's start and latency passed on."""
    counters: bool = True
    energy: bool = True
    idle_s: float = 2.0
    keep_samples: bool = False

    def watch_args(self, board) -> tuple[str, ...]:
        """The watcher's options for a run on `board`."""
        meter = ("--power-meter", json.dumps(list(board.power_meter))) if self.energy and board.power_meter else ()
        return (*(["--counters"] if self.counters else []),
                *(["--energy", "--idle", str(self.idle_s), *meter] if self.energy else []),
                *(["--keep-samples"] if self.keep_samples else []))


def probe_args(framework: str) -> list[str]:
    return ["--framework", framework, "--probe"]


def watched(python: str, host_dir: str, argv: list[str], *, tag: str, deadline: float | None = None,
            cwd: str | None = None, container: bool = False, watch: tuple[str, ...] = ()) -> list[str]:
    """The argv that runs `argv` (in `cwd`) under the sensor watcher, which samples from outside the measured process,
    on the board's host, the same way in both modes, and kills the run on the board itself past `deadline` seconds
    (so a run whose link died does not live on to disturb the next ones). `tag` names the run in the board's process
    list, and is the container's name in Docker mode."""
    options = ["--tag", tag, *(["--deadline", str(deadline)] if deadline else []), *(["--cwd", cwd] if cwd else []),
               *(["--container"] if container else []), *watch]
    return sh('cd -- "$1" && shift && exec "$@"', host_dir, python, "-m", f"{BOARD_PACKAGE}.watch", *options, "--",
              *argv)


SESSION = secrets.token_hex(4)  # this orchestrator's mark on every run it starts


def run_tag() -> str:
    """A name for one run on a board, unique across orchestrators: its container's name, its watcher's mark."""
    return f"edgeorch-run-{SESSION}-{secrets.token_hex(4)}"


def kill_runs(conn: fabric.Connection, board: str, session: str = SESSION) -> None:
    """End every run of `session` on the board (all edgeorch runs with ""): after a dropped link the lost attempt
    may live on, and a killed orchestrator leaves its last run behind."""
    prefix = f"edgeorch-run-{session}-" if session else "edgeorch-run-"
    _cleanup(conn, board, end_own(f"[e]{prefix[1:]}"))  # a pattern no pkill shell matches
    _cleanup(conn, board, sh('docker ps -aq --filter "name=$1" --filter "label=$2" | xargs -r docker rm -f', prefix,
                             "org.edgeorch"))


def end_own(pattern: str) -> list[str]:
    """The argv that ends (SIGTERM) the processes of this login whose command line matches `pattern`: never another
    login's, whatever its command line says (edgeorch often logs in as root)."""
    return sh('exec pkill -TERM -U "$(id -u)" -f -- "$1"', pattern)


# Seconds the orchestrator waits past a run's deadline before it gives up on the board's own kill
GRACE_S = 60


def _cleanup(conn: fabric.Connection, board: str, argv: list[str]) -> None:
    """Best effort: what a run left on the board goes, unless the board cannot be reached at all."""
    try:
        remote(conn, argv, board=board, warn=True, timeout=30)
    except BoardError:
        pass


class _BoardRunner:
    """A run straight on the board, under the sensor watcher: `argv` in `cwd`."""

    mode = ""

    def __init__(self, conn: fabric.Connection, board: str, timeout: float, *, python: str = "python3",
                 host_dir: str = "", cache_dir: str | None = None, watch: tuple[str, ...] = ()):
        self.conn, self.board, self.timeout = conn, board, timeout
        self.python, self.host_dir, self.watch = python, host_dir, watch
        self.cache_dir = cache_dir  # where the framework keeps what it compiles (TensorRT engines), across runs

    def command(self) -> tuple[list[str], str]:
        """The entrypoint's argv before its arguments, and the directory it runs in."""
        raise NotImplementedError

    def execute(self, args: list[str], files: list[tuple[str, str]]) -> Answer:
        entrypoint, cwd = self.command()
        argv = [*entrypoint, "-m", BOARD_PACKAGE, *args, "--mode", self.mode]
        for option, prefix, path in file_args(files):
            argv += [option, prefix + path] if option else []  # a companion lies beside its model already
        argv += ["--cache-dir", self.cache_dir] if self.cache_dir else []
        tag = run_tag()
        try:
            r = remote(self.conn, watched(self.python, self.host_dir, argv, tag=tag, deadline=self.timeout, cwd=cwd,
                                          watch=self.watch),
                       board=self.board, warn=True, timeout=self.timeout + GRACE_S)
        except RunTimeout:
            # the watcher ends its run; the pattern matches no shell that runs pkill
            _cleanup(self.conn, self.board, end_own(f"[{tag[0]}]{tag[1:]}"))
            raise
        return Answer(r.stdout, r.stderr, r.exited)


class BareRunner(_BoardRunner):
    """Runs the entrypoint in the framework image's own userland, copied out of the image onto the board, without a
    container: its interpreter (started by the userland's loader), libraries and venv, with an environment of
    nothing but what relocates them."""

    mode = "bare"

    def __init__(self, conn: fabric.Connection, board: str, root: str, interpreter: str,
                 environment: dict[str, str], timeout: float, **where):
        super().__init__(conn, board, timeout, **where)
        self.root, self.interpreter, self.environment = root, interpreter, environment

    def command(self) -> tuple[list[str], str]:
        return (["env", "-i", *(f"{k}={v}" for k, v in self.environment.items()),
                 posixpath.join(self.root, self.interpreter)], start_dir(self.root))


class NativeRunner(_BoardRunner):
    """Runs the entrypoint with the board's own Python, in a venv of the framework's wheels (the native bundle)."""

    mode = "native"

    def __init__(self, conn: fabric.Connection, board: str, bundle_dir: str, timeout: float, **where):
        super().__init__(conn, board, timeout, **where)
        self.dir = bundle_dir

    def command(self) -> tuple[list[str], str]:
        return ["venv/bin/python"], self.dir


def mount_arg(source: str, target: str, readonly: bool = True) -> str:
    """`--mount`'s value for a bind (read-only unless not `readonly`); docker parses it as CSV, so a path with a comma
    or quote is quoted."""
    line = io.StringIO()
    csv.writer(line, lineterminator="").writerow(["type=bind", f"source={source}", f"target={target}",
                                                  *(["readonly"] if readonly else [])])
    return line.getvalue()


# The device nodes through which an external TFLite delegate reaches its accelerator, where a board has them: the
# Edge TPU on PCIe (/dev/apex_0, Coral's gasket driver) and on USB (its bus: the stick enumerates anew once its
# firmware is loaded).
ACCELERATOR_DEVICES = ("/dev/apex_0", "/dev/bus/usb")

# `docker create` with what an external delegate ($1) needs in the container, as the bare run has it on the board:
# the library read-only at its path and, where that is a link (libedgetpu.so.1 -> libedgetpu.so.1.0), at the path
# it leads to; each device node of $2 (a space list) that the board has; and the login's groups, which own those
# nodes (plugdev, apex). The library's path was checked to hold nothing but [A-Za-z0-9._+/-]; the link's target is
# left out unless it does too, as it is written into --mount's comma-separated value.
_CREATE_WITH_DELEGATE = r"""
lib=$1 devices=$2; shift 2
for dev in $devices; do [ -e "$dev" ] && set -- --device "$dev" "$@"; done
for group in $(id -G); do set -- --group-add "$group" "$@"; done
real=$(realpath -e -- "$lib" 2>/dev/null) || real=
case $real in "$lib"|*[!A-Za-z0-9._+/-]*) real= ;; esac
[ -z "$real" ] || set -- --mount "type=bind,source=$real,target=$real,readonly" "$@"
[ ! -e "$lib" ] || set -- --mount "type=bind,source=$lib,target=$lib,readonly" "$@"
exec docker create --user "$(id -u):$(id -g)" "$@"
"""


def delegate_of(args: list[str]) -> str | None:
    """The library of an external delegate (--option delegate=PATH) among the entrypoint's arguments, if any."""
    return next((a[len("delegate="):] for flag, a in zip(args, args[1:])
                 if flag == "--option" and a.startswith("delegate=")), None)


def create_argv(args: list[str], delegate: str | None, devices: tuple[str, ...] = ACCELERATOR_DEVICES) -> list[str]:
    """The argv on the board that creates the run's container with `args` (docker create's, then the image and the
    entrypoint's), as the login, as the bare run is: the same files readable and writable in both modes (a compiled
    cache), and the container's process one the login's perf may count; with an external `delegate`, its library,
    the accelerators and the login's groups too."""
    if delegate is None:
        return sh('exec docker create --user "$(id -u):$(id -g)" "$@"', *args)
    return sh(_CREATE_WITH_DELEGATE, delegate, " ".join(devices), *args)


class DockerRunner:
    """Runs the entrypoint in a fresh container of the framework image, with no network."""

    mode = "docker"

    def __init__(self, conn: fabric.Connection, board: str, image_id: str, timeout: float,
                 docker_args: tuple[str, ...] = (), *, python: str = "python3", host_dir: str = "",
                 bind_files: bool = False, cache_dir: str | None = None, watch: tuple[str, ...] = ()):
        self.conn, self.board, self.image_id, self.timeout = conn, board, image_id, timeout
        self.docker_args, self.python, self.host_dir, self.watch = docker_args, python, host_dir, watch
        self.bind_files = bind_files  # the model on a read-only bind mount instead of in the container layer
        # A board directory at the same path inside: what the framework compiles (TensorRT engines) outlives the
        # container, as it does in bare mode.
        self.cache_dir = cache_dir

    def execute(self, args: list[str], files: list[tuple[str, str]]) -> Answer:
        argv = [*args, "--mode", "docker", "--image-id", self.image_id]
        # board path -> its path in the container (files of the same content share one)
        inner = {path: f"{CONTAINER_DIR}/models/{posixpath.basename(path)}" for _, _, path in file_args(files)}
        for option, prefix, path in file_args(files):
            argv += [option, prefix + inner[path]] if option else []  # a companion: beside its model, by its name
        network = [] if "--network" in self.docker_args else ["--network", "none"]  # explain's knob replaces it
        mounts = [arg for path, target in inner.items() for arg in ("--mount", mount_arg(path, target))
                  ] if self.bind_files else []
        if self.cache_dir:
            mounts += ["--mount", mount_arg(self.cache_dir, self.cache_dir, readonly=False)]
            argv += ["--cache-dir", self.cache_dir]
        tag = run_tag()
        remote(self.conn, create_argv(["--name", tag, *network, *mounts, "--label", "org.edgeorch=1",
                                       *self.docker_args, self.image_id, *argv], delegate_of(args)), board=self.board)
        try:
            for path, target in inner.items() if not self.bind_files else ():
                remote(self.conn, ["docker", "cp", path, f"{tag}:{target}"], board=self.board,
                       timeout=max(self.timeout, COMMAND_TIMEOUT))  # a model of any size: the run's own time
            r = remote(self.conn, watched(self.python, self.host_dir, ["docker", "start", "-a", tag], tag=tag,
                                          deadline=self.timeout, container=True, watch=self.watch),
                       board=self.board, warn=True, timeout=self.timeout + GRACE_S)
            return Answer(r.stdout, r.stderr, r.exited)
        finally:
            _cleanup(self.conn, self.board, ["docker", "rm", "-f", tag])
