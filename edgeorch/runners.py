"""Docker and bare-metal runs behind one protocol: the benchmark never asks where it runs."""

from __future__ import annotations

import csv
import io
import posixpath
import shlex
from dataclasses import dataclass
from typing import Protocol

import fabric

from .bench import BOARD_PACKAGE
from .plan import RunSpec
from .transport import remote

CONTAINER_DIR = "/opt/edgeorch"  # where the framework image keeps venv, bundle and models


@dataclass(frozen=True)
class Answer:
    """What the entrypoint answered: its stdout (the JSON document), stderr and exit code."""
    stdout: str
    stderr: str
    exit_code: int


class Runner(Protocol):
    mode: str

    def execute(self, args: list[str], files: dict[str, str]) -> Answer:
        """Run the entrypoint with `args` and `files` (option -> path on the board, e.g. --model)."""


def entrypoint_args(spec: RunSpec, *, model_sha256: str, run_id: str) -> list[str]:
    """The entrypoint's arguments for one run, the same in both modes; its sensors are read by the watcher."""
    return ["--framework", spec.framework, "--iterations", str(spec.iterations), "--min-time", str(spec.min_time),
            "--sample-interval", "0",
            "--warmup", str(spec.warmup), "--threads", str(spec.threads),
            "--model-sha256", model_sha256, "--run-id", run_id,
            *[arg for option in spec.options for arg in ("--option", option)]]


def probe_args(framework: str) -> list[str]:
    return ["--framework", framework, "--probe"]


def watched(python: str, host_dir: str, argv: list[str], cwd: str | None = None) -> str:
    """The shell command that runs `argv` (in `cwd`) under the sensor watcher, which samples from outside the
    measured process, on the board's host, the same way in both modes."""
    where = ["--cwd", cwd] if cwd else []
    return f"cd {shlex.quote(host_dir)} && " + shlex.join([python, "-m", f"{BOARD_PACKAGE}.watch", *where, "--",
                                                           *argv])


class BareRunner:
    """Runs the entrypoint with the bundle's venv directly on the board, under the sensor watcher."""

    mode = "bare"

    def __init__(self, conn: fabric.Connection, board: str, bundle_dir: str, timeout: float | None = None, *,
                 python: str = "python3", host_dir: str = ""):
        self.conn, self.board, self.dir, self.timeout = conn, board, bundle_dir, timeout
        self.python, self.host_dir = python, host_dir

    def execute(self, args: list[str], files: dict[str, str]) -> Answer:
        argv = ["venv/bin/python", "-m", BOARD_PACKAGE, *args, "--mode", "bare"]
        for option, path in files.items():
            argv += [option, path]
        r = remote(self.conn, watched(self.python, self.host_dir, argv, cwd=self.dir), board=self.board, warn=True,
                   timeout=self.timeout)
        return Answer(r.stdout, r.stderr, r.exited)


def mount_arg(source: str, target: str) -> str:
    """`--mount`'s value for a read-only bind; docker parses it as CSV, so a path with a comma or quote is quoted."""
    line = io.StringIO()
    csv.writer(line, lineterminator="").writerow(["type=bind", f"source={source}", f"target={target}", "readonly"])
    return line.getvalue()


class DockerRunner:
    """Runs the entrypoint in a fresh container of the framework image, with no network."""

    mode = "docker"

    def __init__(self, conn: fabric.Connection, board: str, image_id: str, timeout: float | None = None,
                 docker_args: tuple[str, ...] = (), *, python: str = "python3", host_dir: str = "",
                 bind_files: bool = False):
        self.conn, self.board, self.image_id, self.timeout = conn, board, image_id, timeout
        self.docker_args, self.python, self.host_dir = docker_args, python, host_dir
        self.bind_files = bind_files  # the model on a read-only bind mount instead of in the container layer

    def execute(self, args: list[str], files: dict[str, str]) -> Answer:
        argv = [*args, "--mode", "docker", "--image-id", self.image_id]
        inner = {option: f"{CONTAINER_DIR}/models/{posixpath.basename(path)}" for option, path in files.items()}
        for option, path in inner.items():
            argv += [option, path]
        network = [] if "--network" in self.docker_args else ["--network", "none"]  # explain's knob replaces it
        mounts = [arg for option, path in files.items() for arg in ("--mount", mount_arg(path, inner[option]))
                  ] if self.bind_files else []
        create = remote(self.conn, shlex.join(["docker", "create", *network, *mounts, "--label", "org.edgeorch=1",
                                               *self.docker_args, self.image_id, *argv]),
                        board=self.board)
        cid = create.stdout.strip()
        try:
            for option, path in files.items() if not self.bind_files else ():
                remote(self.conn, shlex.join(["docker", "cp", path, f"{cid}:{inner[option]}"]), board=self.board)
            r = remote(self.conn, watched(self.python, self.host_dir, ["docker", "start", "-a", cid]),
                       board=self.board, warn=True, timeout=self.timeout)
            return Answer(r.stdout, r.stderr, r.exited)
        finally:
            remote(self.conn, f"docker rm -f {cid}", board=self.board, warn=True)
