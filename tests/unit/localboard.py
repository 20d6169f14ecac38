"""A stand-in for a board's SSH connection that runs each command on this machine, with sh as sshd would, so that
the board-side scripts are tested for real (optionally as another login, through setpriv)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from types import SimpleNamespace

AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def can_switch_user() -> bool:
    """Whether tests may run commands as `nobody` (root, with setpriv)."""
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


class LocalChannel:
    """An SSH session channel (paramiko's) whose command runs here."""

    def __init__(self, prefix: list[str], env: dict | None):
        self.prefix, self.env, self.proc = prefix, env, None

    def settimeout(self, seconds):
        pass

    def exec_command(self, command: str) -> None:
        self.proc = subprocess.Popen([*self.prefix, "sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=self.env)

    def sendall(self, data: bytes) -> None:
        self.proc.stdin.write(data.decode())
        self.proc.stdin.flush()

    def makefile(self, mode="r"):
        return self.proc.stdout

    def makefile_stderr(self, mode="r"):
        return self.proc.stderr

    def recv_exit_status(self) -> int:
        return self.proc.wait(timeout=60)

    def close(self) -> None:  # the orchestrator hangs up: the board side sees the end of its stdin
        if self.proc and not self.proc.stdin.closed:
            self.proc.stdin.close()

    def drop(self) -> None:
        """A dropped link whose sshd has not noticed yet: the channel is forgotten, its command lives on."""
        self.proc = None


class LocalBoard:
    """A fabric.Connection stand-in: `run` and sessions execute here, as this login or (as_nobody) as `nobody`."""

    def __init__(self, *, as_nobody: bool = False, env: dict | None = None):
        self.prefix, self.env, self.is_connected = (AS_NOBODY if as_nobody else []), env, True
        self.channels: list[LocalChannel] = []
        transport = SimpleNamespace(is_active=lambda: True, open_session=self._session)
        self.client = SimpleNamespace(get_transport=lambda: transport)

    def _session(self) -> LocalChannel:
        self.channels.append(LocalChannel(self.prefix, self.env))
        return self.channels[-1]

    def run(self, command: str, *, hide=True, warn=True, in_stream=False, timeout=None):
        p = subprocess.run([*self.prefix, "sh", "-c", command], capture_output=True, text=True, env=self.env,
                           timeout=timeout or 60)
        return SimpleNamespace(stdout=p.stdout, stderr=p.stderr, exited=p.returncode, ok=p.returncode == 0,
                               failed=p.returncode != 0)


@contextmanager
def shared_tmp():
    """A directory every login can use, as /tmp is (1777)."""
    path = tempfile.mkdtemp(prefix="edgeorch-test-", dir="/tmp")
    os.chmod(path, 0o1777)
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", "--", path], check=False)
