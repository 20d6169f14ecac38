"""SSH to boards with Fabric, as OpenSSH would: ssh_config, ProxyJump, pinned host keys only; recorded commands,
fan-out with per-board results."""

from __future__ import annotations

import getpass
import logging
import os
import shlex
import signal
import socket
import textwrap
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import fabric
import invoke
import paramiko

from .console import REPORTER, Reporter, recording
from .errors import BoardBusy, BoardError, ConnectionLost, EdgeorchError, RunTimeout, Unreachable
from .inventory import USER_KNOWN_HOSTS, Board, Hop

T = TypeVar("T")


CONNECT_TIMEOUT = 10  # seconds for the TCP connection to each hop, as ssh's ConnectTimeout
# Every wait on a board is bounded. A command gets COMMAND_TIMEOUT unless its caller gives it its own (a run: its
# --timeout; an install: an hour); a transfer, and a command that reads or loads what was sent, transfer_timeout().
COMMAND_TIMEOUT = 300  # s: generous for any command that neither moves nor runs much (docker image rm, sync)
SLOW_LINK_BPS = 1_000_000  # bytes/s: a transfer slower than this is reported, not waited on
TRANSFER_FLOOR_S = 60  # s on top of the bytes: a busy board, latency, small files
# s a board has to answer a keepalive once a command or transfer ran out of time: a lost link, or a slow board? The
# answer queues behind what is in flight (an SFTP window of 2 MB: 2 s at SLOW_LINK_BPS, 15 s at 140 KB/s)
ANSWER_WAIT_S = 15
# paramiko logs what it then raises (e.g. "Secsh channel 0 open FAILED"); edgeorch reports each failure itself
logging.getLogger("paramiko").addHandler(logging.NullHandler())


@contextmanager
def connect(board: Board) -> Iterator[fabric.Connection]:
    """An open connection to `board`, made as OpenSSH would make it (~/.ssh/config, ProxyJump), that trusts only
    host keys already pinned in its known_hosts files, the jump hosts' included."""
    opened: list[fabric.Connection] = []
    try:
        for hop in (*board.jump, board.ssh):
            opened.append(_open(board, hop, gateway=opened[-1] if opened else None))
        yield opened[-1]
    finally:
        for conn in reversed(opened):  # Fabric does not close a gateway with the connection through it
            _close_quietly(conn.close)


def _close_quietly(close: Callable[[], None]) -> None:
    """Close a channel or connection whose link may be gone already (paramiko then raises on the goodbye it cannot
    send): closed either way, and the error that ended the link is the one to report."""
    try:
        close()
    except (OSError, EOFError, paramiko.SSHException):
        pass


def transfer_timeout(size: int) -> float:
    """Seconds that moving `size` bytes may take (sending them, or reading or loading them on the board): the floor
    plus the bytes at SLOW_LINK_BPS."""
    return TRANSFER_FLOOR_S + size / SLOW_LINK_BPS


_lost: weakref.WeakKeyDictionary[paramiko.Transport, str] = weakref.WeakKeyDictionary()  # why keepalive closed one


def answers(transport: paramiko.Transport, within: float) -> bool:
    """Whether the far end of `transport` answers an SSH keepalive (the request ssh's ServerAliveInterval sends)
    within `within` seconds; any answer counts, a refusal included."""
    answered = threading.Event()

    def ask() -> None:
        try:
            transport.global_request("keepalive@openssh.com", wait=True)  # returns early if the transport closes
        except (OSError, EOFError, paramiko.SSHException):
            return
        answered.set()

    threading.Thread(target=ask, name="edgeorch-keepalive-ask", daemon=True).start()
    return answered.wait(within) and transport.is_active()


def keep_alive(transport: paramiko.Transport, hop: Hop, who: str) -> None:
    """As ssh's ServerAliveInterval and ServerAliveCountMax: ask every `hop.alive_interval` s whether the far end is
    there, and close the connection once it has not answered for alive_count_max intervals, so that whatever waits
    on it ends as a lost connection within about a minute (TCP alone would wait some 15 minutes). paramiko's own
    keepalive wants no answer, so it never notices a board that is gone."""
    interval, count = hop.alive_interval, max(hop.alive_count_max, 1)
    if interval <= 0:  # ServerAliveInterval 0: none, as with ssh (commands and transfers keep their deadlines)
        return

    def watch() -> None:
        while _idle(transport, interval):
            if not answers(transport, interval * count):
                if transport.is_active():
                    _lost[transport] = (f"{who} did not answer SSH keepalives for {interval * count} s "
                                        f"(ServerAliveInterval {interval} x ServerAliveCountMax {count})")
                    _close_quietly(transport.close)
                return

    threading.Thread(target=watch, name=f"edgeorch-keepalive {who}", daemon=True).start()


def _idle(transport: paramiko.Transport, seconds: float) -> bool:
    """Wait `seconds`, or less if `transport` closes; whether it is still open."""
    ends = time.monotonic() + seconds
    while transport.is_active() and time.monotonic() < ends:
        time.sleep(min(1.0, ends - time.monotonic()))
    return transport.is_active()


def _why_lost(conn: fabric.Connection) -> str:
    """What keepalive found about `conn`'s link or a jump host's on its way, as `: ...`; '' when nothing."""
    while isinstance(conn, fabric.Connection):
        transport = conn.client.get_transport()
        if transport is not None and transport in _lost:
            return f": {_lost[transport]}"
        conn = conn.gateway
    return ""


def timed_out(conn: fabric.Connection, board: str, what: str, seconds: float, hint: str) -> BoardError:
    """The error for `what` on `board` past its `seconds`: a ConnectionLost when the board no longer answers over
    SSH (the link is gone: reconnecting may help), else a RunTimeout with `hint` (the board is there but slow)."""
    transport = conn.client.get_transport()
    if transport is None or not answers(transport, ANSWER_WAIT_S):
        return ConnectionLost(f"board {board}: the SSH connection was lost during {what} (no answer for "
                              f"{seconds:.0f} s, nor to a keepalive after it){_why_lost(conn)}",
                              hint="check that the board is powered and on the network; finished runs are kept")
    return RunTimeout(f"board {board}: {what} did not finish within {seconds:.0f} s", hint=hint)


@contextmanager
def bounded_sftp(conn: fabric.Connection, board: str, size: int, what: str
                 ) -> Iterator[tuple[paramiko.SFTPClient, Callable[..., None]]]:
    """The board's SFTP session for moving `size` bytes of `what`, with transfer_timeout(size) for all of it: no
    wait on the link outlasts that, and `check` (call it between blocks; it takes put's callback arguments) ends the
    transfer once it has passed, as a RunTimeout, or a ConnectionLost when the board no longer answers."""
    client = sftp(conn)
    channel = client.get_channel()
    seconds = transfer_timeout(size)
    ends = time.monotonic() + seconds

    def check(*_) -> None:
        left = ends - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"past {seconds:.0f} s")
        channel.settimeout(left)  # each read or write on the link waits at most until the deadline

    try:
        check()
        yield client, check
    except TimeoutError as e:  # socket.timeout too
        _close_quietly(client.close)  # its requests and answers are out of step now: nothing more goes through it
        raise timed_out(conn, board, f"sending {what} ({size / 1e6:.1f} MB)", seconds,
                        hint=f"the link moved less than {SLOW_LINK_BPS / 1e6:g} MB/s: check the board's network (a "
                             "weak Wi-Fi?) and its load, then deploy again") from e
    finally:
        channel.settimeout(COMMAND_TIMEOUT)


def sftp(conn: fabric.Connection) -> paramiko.SFTPClient:
    """`conn`'s SFTP session (Fabric keeps one), none of whose waits on the link outlasts COMMAND_TIMEOUT."""
    client = conn.sftp()
    if client.get_channel().gettimeout() is None:
        client.get_channel().settimeout(COMMAND_TIMEOUT)
    return client


def _who(board: Board, hop: Hop) -> str:
    """How messages name a hop: the board itself, or one of its jump hosts."""
    if hop is board.ssh:
        return f"board {board.name} ({board.address})"
    return f"jump host {hop.host} ({hop.address}) of board {board.name}"


def connection(hop: Hop, gateway: fabric.Connection | None = None) -> fabric.Connection:
    """An unopened Connection for `hop` with exactly its values, refusing every host key not in its known_hosts."""
    keys = [str(p) for p in hop.identity_files if p.is_file()]
    kwargs = {"look_for_keys": not hop.identity_files}  # like ssh: ~/.ssh/id_* only when no IdentityFile is set
    if keys:
        kwargs["key_filename"] = keys
    # ssh_config was applied when the inventory was loaded (jump hosts included): Fabric must not apply it again,
    # nor open a ProxyJump itself, since its gateway connections accept any host key.
    conn = fabric.Connection(hop.hostname, user=hop.user, port=hop.port, connect_timeout=CONNECT_TIMEOUT,
                             connect_kwargs=kwargs, gateway=gateway or hop.proxy_command or False,
                             config=fabric.Config(ssh_config=paramiko.SSHConfig()))
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())  # Fabric's default adds unknown keys
    for path in hop.known_hosts:
        if path.is_file():
            conn.client.load_host_keys(str(path))  # hashed and [host]:port entries included; never written
    return conn


def _open(board: Board, hop: Hop, gateway: fabric.Connection | None) -> fabric.Connection:
    missing = [p for p in hop.identity_files if not p.is_file()]
    if hop.identity_files and len(missing) == len(hop.identity_files):
        raise BoardError(f"{_who(board, hop)}: identity file {', '.join(map(str, missing))} does not exist "
                         f"(from {hop.identity_from})",
                         hint=f"fix the path there, or make a key and authorize it: ssh-keygen -t ed25519 -f "
                              f"{missing[0]} && ssh-copy-id -i {missing[0]} -p {hop.port} {hop.user}@{hop.hostname}"
                              + (" (for the sim fleet: invoke sim.up)" if board.sim else ""))
    given = hop.known_hosts_from.startswith("the inventory")
    if given and not hop.known_hosts[0].is_file():
        raise BoardError(f"{_who(board, hop)}: known_hosts file {hop.known_hosts[0]} does not exist "
                         f"(from {hop.known_hosts_from})",
                         hint="fix the path, or remove `known_hosts:` to use ~/.ssh/known_hosts"
                              + (" (for the sim fleet: invoke sim.up)" if board.sim else ""))
    conn = connection(hop, gateway)
    try:
        conn.open()
    except Exception as e:
        conn.client.close()  # a refused host key leaves paramiko's transport thread running
        error = explain(e, board, hop)
        if error is None:
            raise
        raise error from e
    keep_alive(conn.client.get_transport(), hop, _who(board, hop))
    return conn


def _chain(board: Board, hop: Hop) -> tuple[Hop, ...]:
    """The hops before `hop` on the way to `board` (identity, not equality: a board may jump through itself)."""
    hops = (*board.jump, board.ssh)
    return hops[:next(i for i, h in enumerate(hops) if h is hop)]


def _key_name(hop: Hop) -> str:
    """The name its key is pinned under, as ssh writes it: `host`, or `[host]:port` off port 22."""
    return hop.hostname if hop.port == 22 else f"[{hop.hostname}]:{hop.port}"


def pin_hint(board: Board, hop: Hop) -> str:
    """The exact command that pins `hop`'s host key in the file edgeorch reads, after checking its fingerprint."""
    file = hop.known_hosts[0] if hop.known_hosts else Path(USER_KNOWN_HOSTS).expanduser()
    # ssh itself writes to ~/.ssh/known_hosts (or ssh_config's file): point it at the inventory's where that is read
    option = f" -o UserKnownHostsFile={file}" if hop.known_hosts_from.startswith("the inventory") else ""
    board_side = "the fingerprint that `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` shows on the board itself"
    before = _chain(board, hop)
    if before:  # ssh-keyscan from here cannot reach it: go through the jump hosts
        via = ",".join(f"{j.user}@{j.hostname}:{j.port}" for j in before)
        return (f"connect once with `ssh{option} -J {via} -p {hop.port} {hop.user}@{hop.hostname}`, and accept the "
                f"key if the fingerprint it shows is {board_side} (ssh adds it to {file})")
    return (f"ssh-keyscan -p {hop.port} {hop.hostname} >> {file}, then check that `ssh-keygen -lf {file}` lists "
            f"{board_side}; or connect once with `ssh{option} -p {hop.port} {hop.user}@{hop.hostname}` and accept the "
            "key if its fingerprint is that one")


def explain(e: Exception, board: Board, hop: Hop) -> BoardError | None:
    """The BoardError, with the right fix, for an exception raised while opening `hop`; None if it is not one.
    What may pass (no answer, a refused or dropped connection) is an Unreachable or ConnectionLost, to be retried."""
    who = _who(board, hop)
    sim = " (for the sim fleet: invoke sim.up)" if board.sim else ""
    existing = [p for p in hop.known_hosts if p.is_file()]
    files = ", ".join(map(str, existing)) or f"{hop.known_hosts[0]} (which does not exist)"
    if hop is board.ssh:
        origin = hop.origin() or f"host {hop.host} and port {hop.port} from the inventory"
    else:
        origin = hop.origin() or f"ProxyJump of Host {board.host} in {hop.config_file}"
    before = _chain(board, hop)
    if before and isinstance(e, paramiko.ChannelException):  # the jump host refused to forward to it
        jump = before[-1]
        return Unreachable(f"jump host {jump.host} ({jump.address}) of board {board.name} could not reach "
                          f"{hop.hostname}:{hop.port}: {e.text or e}",
                          hint=f"check that {hop.hostname}:{hop.port} is the board's address as the jump host sees "
                               f"it ({origin}) and that the jump host's sshd allows forwarding (AllowTcpForwarding)")
    if isinstance(e, paramiko.BadHostKeyException):
        name = _key_name(hop)
        held = next((p for p in existing if paramiko.HostKeys(str(p)).lookup(name)), existing[0] if existing else "")
        return BoardError(f"{who} presented a host key different from the pinned one in {held}",
                          hint=f"if it was reinstalled, drop the old key (ssh-keygen -R '{name}' -f {held}) and pin "
                               f"the new one: {pin_hint(board, hop)}; otherwise do not connect: someone may be in "
                               "between")
    if isinstance(e, paramiko.PasswordRequiredException):
        return BoardError(f"{who}: its identity file is protected by a passphrase",
                          hint=f"load it into your ssh-agent once: ssh-add {' '.join(map(str, hop.identity_files))}")
    if isinstance(e, paramiko.AuthenticationException):
        keys = [p for p in hop.identity_files if p.is_file()]
        offered = (f"the key {', '.join(map(str, keys))} (from {hop.identity_from})" if keys
                   else "the keys of your ssh-agent and ~/.ssh/id_*")
        return BoardError(f"{who} rejected {offered} for user {hop.user}",
                          hint=f"authorize it: ssh-copy-id{f' -i {keys[0]}' if keys else ''} -p {hop.port} "
                               f"{hop.user}@{hop.hostname}; or fix the user or key in the inventory or "
                               f"{hop.config_file}{sim}")
    if isinstance(e, paramiko.SSHException) and "not found in known_hosts" in str(e):
        return BoardError(f"{who}: its host key is not pinned in {files}", hint=pin_hint(board, hop))
    if isinstance(e, TimeoutError):
        return Unreachable(f"{who} did not answer within {CONNECT_TIMEOUT} s",
                          hint=f"check that it is powered and on the network, that no firewall drops port "
                               f"{hop.port}, and its address ({origin})")
    if isinstance(e, socket.gaierror):
        return BoardError(f"{who}: the host name {hop.hostname} does not resolve ({e.strerror})",
                          hint=f"fix the host name ({origin}), or use its IP address")
    if isinstance(e, OSError):
        if isinstance(e, paramiko.ssh_exception.NoValidConnectionsError):
            reason = "; ".join(sorted({x.strerror or str(x) for x in e.errors.values()}))
        else:
            reason = e.strerror or str(e) or type(e).__name__
        return Unreachable(f"{who} is unreachable: {reason}",
                          hint=f"check that it is powered and on the network, that sshd runs there, and its "
                               f"address ({origin}){sim}")
    if isinstance(e, (paramiko.SSHException, EOFError)):  # e.g. sshd dropped the handshake (MaxStartups, restart)
        return ConnectionLost(f"{who}: SSH failed: {e or type(e).__name__}",
                          hint=f"check that sshd runs on {hop.hostname}:{hop.port} ({origin}) and accepts this "
                               "machine")
    return None


def sh(script: str, *args: str) -> list[str]:
    """The argv that runs a fixed `script` with `args` as its "$1".. (never pasted into the script's text)."""
    return ["sh", "-c", script, "sh", *args]


def remote(conn: fabric.Connection, argv: list[str], *, board: str, warn: bool = False,
           timeout: float = COMMAND_TIMEOUT) -> invoke.Result:
    """Run `argv` on the board, each word quoted (the only way edgeorch runs anything there), recorded; a failure is
    a BoardError unless `warn`, a dropped link a ConnectionLost, a run past `timeout` a RunTimeout (a ConnectionLost
    if the board no longer answers then)."""
    command = shlex.join(argv)
    short = textwrap.shorten(command, 120)
    with recording(command, board) as rec:

        def ran_out() -> BoardError:
            error = timed_out(conn, board, f"`{short}`", timeout,
                              hint="the board may be overloaded or hung; check it, then resume")
            rec.note = "connection lost" if isinstance(error, ConnectionLost) else f"timed out after {timeout:g} s"
            return error

        started = time.monotonic()
        try:
            result = conn.run(command, hide=True, warn=True, in_stream=False, timeout=timeout)
        except invoke.CommandTimedOut as e:
            raise ran_out() from e
        except (OSError, paramiko.SSHException, EOFError) as e:
            rec.note = "connection lost"
            raise ConnectionLost(f"board {board}: the SSH connection was lost during `{short}`: "
                                 f"{e or type(e).__name__}{_why_lost(conn)}",
                                 hint="check that the board is powered and reachable; finished runs are kept") from e
        transport = conn.client.get_transport()
        rec.output = result.stderr or result.stdout
        if result.exited == -1 and not (transport and transport.is_active()):
            # a link that dies mid-command raises nothing here: its channel just closes without an exit status
            rec.note = "connection lost"
            raise ConnectionLost(f"board {board}: the SSH connection was lost during `{short}`{_why_lost(conn)}",
                                 hint="check that the board is powered and reachable; finished runs are kept")
        if result.exited == -1 and time.monotonic() - started >= timeout:
            # invoke's timer closed the channel, but invoke checked the timer before it was done: no CommandTimedOut
            raise ran_out()
        rec.exit_code = result.exited
    if result.failed and not warn:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-6:])
        raise BoardError(f"board {board}: `{short}` failed (exit {result.exited}):\n{tail}",
                         hint="see the error above; fix the board or the inventory and retry")
    return result


@dataclass
class GroupResult(Generic[T]):
    """Per-board outcomes of a fan-out: one dead board never hides the others' results."""
    succeeded: dict[str, T] = field(default_factory=dict)
    failed: dict[str, EdgeorchError] = field(default_factory=dict)


class Interrupted(BaseException):
    """^C while boards work. Raised in KeyboardInterrupt's place: invoke's runner takes a KeyboardInterrupt that
    arrives while a remote command runs for a ^C to send to that command, and swallows it, so a sweep would go on."""


_stopping = threading.Event()  # set by ^C: no board thread starts another command or reconnects
_links: set[Link] = set()  # the open links, closed by ^C so that the commands under way end at once


def pause(seconds: float) -> None:
    """Sleep in a board's thread; Interrupted at once if ^C stops the boards' work meanwhile."""
    if _stopping.wait(seconds):
        raise Interrupted
_links_lock = threading.Lock()


def _stop_links() -> None:
    with _links_lock:
        links = list(_links)
    for link in links:
        link.abort()


@contextmanager
def _interruptible() -> Iterator[None]:
    """^C (SIGINT) in the block: every open link is closed and Interrupted raised in the main thread. Where SIGINT is
    ignored (a job a script started with &), it stays ignored."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
        return

    def interrupted(signum, frame):
        _stopping.set()
        threading.Thread(target=_stop_links, daemon=True).start()  # paramiko's locks: not from a signal handler
        raise Interrupted

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _stopping.clear()


def fan_out(boards: list[Board], work: Callable[[Board], T], *, parallel: bool = True) -> GroupResult[T]:
    """Run `work` for every board (side by side if `parallel`), collecting results and errors per board. ^C ends
    every board's work and raises KeyboardInterrupt, once the boards' threads have ended."""
    out: GroupResult[T] = GroupResult()

    def one(board: Board) -> None:
        try:
            out.succeeded[board.name] = work(board)
        except EdgeorchError as e:
            out.failed[board.name] = e
        except Exception as e:  # an unexpected crash on one board must not lose the others
            out.failed[board.name] = BoardError(f"board {board.name}: {type(e).__name__}: {e}",
                                                hint="this is a bug in edgeorch; please report it")

    try:
        with _interruptible():
            if parallel and len(boards) > 1:
                with ThreadPoolExecutor(max_workers=len(boards)) as pool:
                    list(pool.map(one, boards))
            else:
                for board in boards:
                    one(board)
    except Interrupted:
        raise KeyboardInterrupt from None
    return out


# The board's lock: one file in /tmp that every login of the board opens read-only and flocks (two benchmarks on one
# board spoil both), held by a process whose stdin is the SSH channel, so it is released when the orchestrator ends
# for any reason, SIGKILL included. Another login can create that file, or replace one it made: it is used only when
# it is a regular file (never a link or a FIFO, looked at before and after it is opened, the open bounded in time),
# and the wait for it is bounded. Who holds it is written into the holder's own directory, /tmp/edgeorch-UID (made
# by that login, 0711, never a link): `note` (0644) names it to the other logins, `holder` (0600) keeps its pid,
# start time and token, which alone can make edgeorch end a holder of its own (_RECLAIM_SCRIPT). Both go when it
# lets go. $1: seconds to wait; $2: the shared directory (/tmp); stdin: the token and the note, a line each, then
# nothing until the orchestrator ends (neither shows in `ps`: the token is a secret, and the note names the run,
# which the lock's holder is no part of).
_LOCK_SCRIPT = r"""# edgeorch board lock
IFS= read -r token && [ -n "$token" ] && IFS= read -r note || exit 64
uid=$(id -u) lock=$2/edgeorch.lock
mine=$2/edgeorch-$uid
if [ ! -e "$lock" ] && [ ! -L "$lock" ]; then  # made aside, then linked in: nothing is written through a link
  new=$(mktemp -- "$lock.XXXXXX") && chmod 0644 -- "$new" && ln -T -- "$new" "$lock" 2>/dev/null
  [ -z "$new" ] || rm -f -- "$new"
fi
if [ -L "$lock" ] || [ ! -f "$lock" ]; then
  echo "$lock is not a regular file: $(ls -ld -- "$lock" 2>&1)"; exit 71
fi
(sleep 10 </dev/null >/dev/null 2>&1
 echo "$lock did not open within 10 s: $(ls -ld -- "$lock" 2>&1)"; kill -s KILL $$) &
dog=$!
command exec 9<"$lock"
opened=$?
kill "$dog" 2>/dev/null
[ "$opened" = 0 ] || { echo "$lock cannot be opened: $(ls -ld -- "$lock" 2>&1)"; exit 72; }
if [ ! -f "/proc/$$/fd/9" ] || [ "$(stat -L -c %d:%i -- "/proc/$$/fd/9")" != "$(stat -c %d:%i -- "$lock")" ]; then
  echo "$lock was replaced while it was opened: $(ls -ld -- "$lock" 2>&1)"; exit 71
fi
if ! flock -w "$1" 9; then
  if [ -d "$mine" ] && [ ! -L "$mine" ] && [ -O "$mine" ] && [ -f "$mine/holder" ] && [ ! -L "$mine/holder" ] &&
      read -r pid start held <"$mine/holder" && [ "$held" = "$token" ]; then
    echo "ours $pid $start"
  fi
  for d in "$2"/edgeorch-[0-9]*; do
    u=${d##*/edgeorch-}
    case $u in *[!0-9]*) continue ;; esac
    [ -d "$d" ] && [ ! -L "$d" ] && [ -f "$d/note" ] && [ ! -L "$d/note" ] || continue
    [ "$(stat -c %u -- "$d")" = "$u" ] && [ "$(stat -c %u -- "$d/note")" = "$u" ] || continue
    echo "held $u $(id -nu "$u" 2>/dev/null || echo "uid-$u") $(timeout 2 head -c 300 -- "$d/note" | head -n 1)"
  done
  for f in "$2"/edgeorch-holder-*; do  # an older edgeorch's: only its owner is to be believed
    [ -f "$f" ] && [ ! -L "$f" ] && echo "held $(stat -c '%u %U' -- "$f") an older edgeorch"
  done
  exit 75
fi
mkdir -m 0711 -- "$mine" 2>/dev/null
if [ -L "$mine" ] || [ ! -d "$mine" ] || [ ! -O "$mine" ]; then
  echo "$mine is not this login's directory: $(ls -ld -- "$mine" 2>&1)"; exit 73
fi
chmod 0711 -- "$mine"
start=$(sed 's/.*) //' "/proc/$$/stat" | cut -d ' ' -f 20)
umask 077
printf '%s %s %s\n' "$$" "$start" "$token" >"$mine/holder.new" && mv -f -- "$mine/holder.new" "$mine/holder" &&
  printf '%s\n' "$note" >"$mine/note.new" && chmod 0644 -- "$mine/note.new" && mv -f -- "$mine/note.new" "$mine/note" ||
  exit 74
echo locked
cat >/dev/null 9<&-
rm -f -- "$mine/holder" "$mine/note"
rmdir -- "$mine" 2>/dev/null
exit 0
"""

# Ends this login's own earlier holder of the board's lock (one a dropped connection left, whose sshd has not
# noticed yet): $1 its pid and $2 its start time, as the lock script read them from the holder file its token is in.
# Only when that file still names them, the process runs as this login, started then, and is the lock script.
_RECLAIM_SCRIPT = r"""
mine=$3/edgeorch-$(id -u)
[ -d "$mine" ] && [ ! -L "$mine" ] && [ -O "$mine" ] && [ -f "$mine/holder" ] && [ ! -L "$mine/holder" ] || exit 3
read -r pid start token <"$mine/holder" && [ "$pid" = "$1" ] && [ "$start" = "$2" ] || exit 3
[ "$(stat -c %u -- "/proc/$1")" = "$(id -u)" ] || exit 3
[ "$(sed 's/.*) //' "/proc/$1/stat" | cut -d ' ' -f 20)" = "$2" ] || exit 3
tr '\0' '\n' <"/proc/$1/cmdline" | grep -qxF '# edgeorch board lock' || exit 3
kill -TERM "$1"
"""

LOCK_DIR = "/tmp"    # the one directory every login of a board shares
LOCK_WAIT_S = 3      # a lock attempt waits this long for its holder to let go (a lock just released passes)
LOCK_ANSWER_S = 60   # the board must answer a lock attempt within this, whatever its /tmp holds

RETRIES = 3           # attempts at a command whose connection dropped, and at reconnecting
BACKOFF_S = 2.0       # the first wait; each next one doubles
RETRY_DEADLINE_S = 120.0  # past this, no further attempt starts: the deadline wins over the count


def _next_wait(attempt: int, started: float) -> float | None:
    """Seconds to wait before the attempt after `attempt` (exponential backoff), or None when the attempts or the
    deadline are spent: no attempt starts past RETRY_DEADLINE_S."""
    wait = BACKOFF_S * 2 ** (attempt - 1)
    return None if attempt >= RETRIES or time.monotonic() - started + wait > RETRY_DEADLINE_S else wait


class Link:
    """A board's SSH connection for a whole sweep: holds the board's lock (unless `lock` is False: a question that
    only reads), and after a transient drop reconnects (with backoff, under a deadline) and retries, so that a blip
    of Wi-Fi does not cost a sweep."""

    def __init__(self, board: Board, *, token: str, purpose: str, out: Reporter = REPORTER, lock: bool = True):
        self.board, self.token, self.purpose, self.out, self.locks = board, token, purpose, out, lock
        self._context = self.conn = self._lock = None

    def __enter__(self) -> Link:
        try:
            self._reconnect(first=True)
        except BaseException:
            self._close()  # busy or refused: the connection goes too
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._close()

    def abort(self) -> None:
        """Close the connection under whatever runs on it (from another thread): that command ends, its board's
        processes with their session."""
        conn = self.conn  # read once: the board's own thread may be closing it
        transport = conn.client.get_transport() if conn is not None else None
        if transport is not None:
            _close_quietly(transport.close)

    def _close(self) -> None:
        with _links_lock:
            _links.discard(self)
        if self._lock is not None:
            _close_quietly(self._lock.close)
        if self._context is not None:
            self._context.__exit__(None, None, None)
        self._context = self.conn = self._lock = None

    def _open(self) -> None:
        if _stopping.is_set():
            raise Interrupted
        self._context = connect(self.board)
        self.conn = self._context.__enter__()
        with _links_lock:
            _links.add(self)
        try:
            if self.locks:
                self._take_lock()
        except (BoardError, OSError, EOFError, paramiko.SSHException) as e:
            transport = self.conn.client.get_transport()
            if isinstance(e, BoardError) and not isinstance(e, ConnectionLost) and transport and transport.is_active():
                raise  # busy, or no flock there: the board answered
            # the link dropped while the lock was being taken: one more connection to retry, not a crash
            raise ConnectionLost(f"board {self.board.name}: the SSH connection was lost while taking its lock: "
                                 f"{e or type(e).__name__}",
                                 hint="check that the board is powered and reachable") from e

    def _take_lock(self) -> None:
        note = f"{getpass.getuser()}@{socket.gethostname()} pid {os.getpid()} ({self.purpose}, since " \
               f"{time.strftime('%H:%M:%S')})".replace("\n", " ")  # one line of the lock script's stdin
        lock = f"{LOCK_DIR}/edgeorch.lock"
        for _ in range(3):
            status, lines = self._try_lock(note)
            if status is None:
                return
            if status != 75:
                said = "\n".join(lines) or "no output"
                raise BoardError(f"board {self.board.name}: taking its lock {lock} failed ("
                                 f"{f'exit {status}' if status >= 0 else 'ended by a signal'}): {said}",
                                 hint={71: f"another login replaced {lock} (a FIFO, a link, a directory): have it or "
                                           f"the board's admin remove it (sudo rm -r {lock}); edgeorch makes a new one",
                                       72: f"another login made {lock} unreadable: have it or the board's admin remove "
                                           f"it (sudo rm {lock}); edgeorch makes a new one",
                                       73: f"another login made {LOCK_DIR}/edgeorch-UID, edgeorch's holder directory "
                                           "for this login: have it or the board's admin remove it (sudo rm -r ...)"
                                       }.get(status, "the board needs flock (util-linux) and a writable /tmp"))
            ours = [line.split()[1:3] for line in lines if line.startswith("ours ") and len(line.split()) == 3]
            if not ours:
                break
            # our own lock from before a dropped connection, whose sshd has not noticed yet: end it (verified there)
            remote(self.conn, sh(_RECLAIM_SCRIPT, *ours[0], LOCK_DIR), board=self.board.name, warn=True, timeout=30)
            time.sleep(0.5)
        holders = [line.split(" ", 3)[1:] for line in lines if line.startswith("held ") and len(line.split()) >= 3]
        who = "; ".join(f"{rest[0] if rest else 'an edgeorch'}, logged in there as {login}"
                        for _uid, login, *rest in holders) or "another login (it left no note saying who)"
        raise BoardBusy(f"board {self.board.name} is being benchmarked by {who}",
                        hint="wait for that run to end (two benchmarks on one board spoil both sets of timings), "
                             "or pick another board")

    def _try_lock(self, note: str) -> tuple[int | None, list[str]]:
        """One attempt at the board's lock: (None, []) once it is held, else the script's exit status and lines."""
        with recording(shlex.join(sh(_LOCK_SCRIPT, str(LOCK_WAIT_S), LOCK_DIR)), self.board.name) as rec:
            chan = self.conn.client.get_transport().open_session()
            chan.settimeout(LOCK_ANSWER_S)
            try:
                chan.exec_command(rec.text)
                chan.sendall(f"{self.token}\n{note}\n".encode())
                first = chan.makefile("r").readline().strip()
                if first == "locked":
                    chan.settimeout(None)
                    self._lock, rec.note = chan, "started: holds the lock until edgeorch ends"
                    return None, []
                lines = [first, *chan.makefile("r").read().splitlines()] if first else []
                lines += chan.makefile_stderr("r").read().strip().splitlines()
            except TimeoutError as e:
                _close_quietly(chan.close)
                rec.note = f"no answer within {LOCK_ANSWER_S} s"
                raise BoardError(f"board {self.board.name}: taking its lock {LOCK_DIR}/edgeorch.lock did not "
                                 f"finish within {LOCK_ANSWER_S} s",
                                 hint="the board may be overloaded; check its /tmp (ls -l /tmp/edgeorch.lock) and "
                                      "retry") from e
            status = chan.recv_exit_status()
            rec.exit_code, rec.output = status, "\n".join(lines)
            chan.close()
        return status, lines

    def _reconnect(self, first: bool = False) -> None:
        self._close()
        attempt, started = 0, time.monotonic()
        while True:
            attempt += 1
            try:
                self._open()
                return
            except (Unreachable, ConnectionLost) as e:
                self._close()
                wait = _next_wait(attempt, started)
                if wait is None:
                    if first:
                        raise
                    raise type(e)(f"{e.message} (gave up reconnecting after {attempt} attempts in "
                                  f"{time.monotonic() - started:.0f} s)", hint=e.hint) from e
                self.out.note(f"[{self.board.name}] {e.message.splitlines()[0]}; retrying in {wait:g} s")
                time.sleep(wait)

    def retrying(self, work: Callable[[fabric.Connection], T], *, before_retry: Callable | None = None
                 ) -> tuple[T, int]:
        """`work(conn)` and the number of attempts it took: after a dropped connection, reconnect and try again
        (`before_retry(conn)` first, to clear what the lost attempt left), within RETRIES and RETRY_DEADLINE_S."""
        attempt, started = 0, time.monotonic()
        while True:
            attempt += 1
            try:
                return work(self.conn), attempt
            except (ConnectionLost, OSError, EOFError, paramiko.SSHException) as e:
                if _stopping.is_set():  # ^C closed the link
                    raise Interrupted from e
                if not isinstance(e, ConnectionLost):  # SFTP's own errors: a lost link, or the board refusing
                    if self.conn.is_connected and self.conn.client.get_transport().is_active():
                        raise BoardError(f"board {self.board.name}: a file transfer failed: {e}",
                                         hint="check the board's free disk and its permissions") from e
                    e = ConnectionLost(f"board {self.board.name}: the SSH connection was lost: {e}",
                                       hint="check that the board is powered and reachable")
                wait = _next_wait(attempt, started)
                if wait is None:
                    raise ConnectionLost(f"{e.message} (gave up after {attempt} attempts in "
                                         f"{time.monotonic() - started:.0f} s)", hint=e.hint) from e
                self.out.note(f"[{self.board.name}] connection lost; reconnecting in {wait:g} s "
                              f"(attempt {attempt + 1} of {RETRIES})")
                time.sleep(wait)
                self._reconnect()
                if before_retry:
                    before_retry(self.conn)
