"""SSH to boards with Fabric: pinned host keys, echoed commands, fan-out with per-board results."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import fabric
import invoke
import paramiko

from .console import echo
from .errors import BoardError, EdgeorchError
from .inventory import Board

T = TypeVar("T")


@contextmanager
def connect(board: Board) -> Iterator[fabric.Connection]:
    """An open connection to `board` that trusts only the host key pinned in its known_hosts."""
    kwargs = {"look_for_keys": board.identity_file is None}
    if board.identity_file:
        if not board.identity_file.exists():
            raise BoardError(f"board {board.name}: identity file {board.identity_file} does not exist",
                             hint="fix identity_file in the inventory (for the sim fleet: invoke sim.up)")
        kwargs["key_filename"] = str(board.identity_file)
    conn = fabric.Connection(board.host, user=board.user, port=board.port, connect_timeout=10,
                             connect_kwargs=kwargs)
    # Fabric trusts unknown host keys by default; a benchmark fleet must not.
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    known = board.known_hosts
    if known is not None:
        if not known.exists():
            raise BoardError(f"board {board.name}: known_hosts file {known} does not exist",
                             hint="pin the board's key: ssh-keyscan -p PORT HOST >> that file, after "
                                  "checking the fingerprint (for the sim fleet: invoke sim.up)")
        conn.client.load_host_keys(str(known))
    try:
        conn.open()
    except paramiko.BadHostKeyException as e:
        raise BoardError(f"board {board.name} ({board.address}) presented a host key different from "
                         f"the pinned one", hint="if the board was reinstalled, replace its line in "
                         f"{known or '~/.ssh/known_hosts'}; otherwise do not connect") from e
    except paramiko.AuthenticationException as e:
        raise BoardError(f"board {board.name} ({board.address}) rejected the SSH key",
                         hint=f"add the public key of {board.identity_file or 'your key'} to "
                              f"~{board.user}/.ssh/authorized_keys on the board") from e
    except paramiko.SSHException as e:
        if "not found in known_hosts" in str(e):
            raise BoardError(f"board {board.name} ({board.address}): its host key is not pinned in "
                             f"{known or '~/.ssh/known_hosts'}",
                             hint=f"check the fingerprint and add it: ssh-keyscan -p {board.port} "
                                  f"{board.host} >> {known or '~/.ssh/known_hosts'}") from e
        raise BoardError(f"board {board.name} ({board.address}): SSH failed: {e}",
                         hint="check that sshd runs on the board") from e
    except (TimeoutError, OSError) as e:
        raise BoardError(f"board {board.name} ({board.address}) is unreachable: {e}",
                         hint="check that it is powered and on the network, and the host/port in "
                              "the inventory (for the sim fleet: invoke sim.up)") from e
    try:
        yield conn
    finally:
        conn.close()


def remote(conn: fabric.Connection, command: str, *, board: str, warn: bool = False,
           timeout: float | None = None) -> invoke.Result:
    """Run `command` on the board, echoed; a failure is a BoardError unless `warn`."""
    lines = command.strip().splitlines()
    echo(f"[{board}] {lines[0]}" + (f" ... ({len(lines)} lines)" if len(lines) > 1 else ""))
    try:
        result = conn.run(command, hide=True, warn=True, in_stream=False, timeout=timeout)
    except invoke.CommandTimedOut as e:
        raise BoardError(f"board {board}: `{command}` did not finish within {timeout} s",
                         hint="the board may be overloaded or hung; check it and retry") from e
    except (OSError, paramiko.SSHException, EOFError) as e:
        raise BoardError(f"board {board}: the connection dropped during `{command}`: {e}",
                         hint="check the board; finished runs are kept, rerun for the rest") from e
    if result.failed and not warn:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-6:])
        raise BoardError(f"board {board}: `{command}` failed (exit {result.exited}):\n{tail}",
                         hint="see the error above; fix the board or the inventory and retry")
    return result


@dataclass
class GroupResult(Generic[T]):
    """Per-board outcomes of a fan-out: one dead board never hides the others' results."""
    succeeded: dict[str, T] = field(default_factory=dict)
    failed: dict[str, EdgeorchError] = field(default_factory=dict)


def fan_out(boards: list[Board], work: Callable[[Board], T], *, parallel: bool = True) -> GroupResult[T]:
    """Run `work` for every board (side by side if `parallel`), collecting results and errors per board."""
    out: GroupResult[T] = GroupResult()

    def one(board: Board) -> None:
        try:
            out.succeeded[board.name] = work(board)
        except EdgeorchError as e:
            out.failed[board.name] = e
        except Exception as e:  # an unexpected crash on one board must not lose the others
            out.failed[board.name] = BoardError(f"board {board.name}: {type(e).__name__}: {e}",
                                                hint="this is a bug in edgeorch; please report it")

    if parallel and len(boards) > 1:
        with ThreadPoolExecutor(max_workers=len(boards)) as pool:
            list(pool.map(one, boards))
    else:
        for board in boards:
            one(board)
    return out
