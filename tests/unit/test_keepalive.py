"""Nothing waits forever on a board: SSH keepalive, the deadline of every command and transfer, and what each ends
as. Against a real SSH server (paramiko's, in this process, its commands run here by sh) behind a relay that can
go silent the way a board that loses power does: no reset, no answer, nothing."""

import io
import os
import socket
import subprocess
import threading
import time

import paramiko
import pytest

from edgeorch import transport
from edgeorch.errors import ConnectionLost, RunTimeout
from edgeorch.inventory import load_inventory
from edgeorch.transport import bounded_sftp, connect, remote, transfer_timeout


class _Board(paramiko.ServerInterface):
    """Takes any public key; runs each command here with sh."""

    def get_allowed_auths(self, username):
        return "publickey"

    def check_auth_publickey(self, username, key):
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel, command):
        threading.Thread(target=self._run, args=(channel, command.decode()), daemon=True).start()
        return True

    def _run(self, channel, command):
        proc = subprocess.Popen(["sh", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = proc.communicate()
        try:
            channel.sendall(out)
            channel.sendall_stderr(err)
            channel.send_exit_status(proc.returncode)
            channel.close()
        except (OSError, EOFError):
            pass


class _Handle(paramiko.SFTPHandle):
    def __init__(self, f):
        super().__init__()
        self.readfile = self.writefile = f


class _Files(paramiko.SFTPServerInterface):
    """Just enough SFTP for a put: open, stat."""

    def open(self, path, flags, attr):
        return _Handle(open(path, "r+b" if os.path.exists(path) and not flags & os.O_TRUNC else "wb"))

    def stat(self, path):
        try:
            return paramiko.SFTPAttributes.from_stat(os.stat(path))
        except OSError as e:
            return paramiko.SFTPServer.convert_errno(e.errno)

    lstat = stat


class Relay:
    """A TCP relay to `port` that can freeze (nothing passes either way, nothing is closed) or slow down."""

    def __init__(self, port):
        self.target, self.frozen, self.delay = port, threading.Event(), 0.0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.sockets = [self.server]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                near, _ = self.server.accept()
            except OSError:
                return
            far = socket.create_connection(("127.0.0.1", self.target))
            self.sockets += [near, far]
            for a, b in ((near, far), (far, near)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while data := src.recv(1 << 14):
                while self.frozen.is_set():
                    time.sleep(0.05)
                time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass

    def close(self):
        self.frozen.clear()
        for s in self.sockets:
            s.close()


@pytest.fixture
def sshd(tmp_path):
    """A board at 127.0.0.1 behind a Relay: (relay, its host key's known_hosts line)."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / "hostkey"], check=True)
    host_key = paramiko.Ed25519Key.from_private_key_file(str(tmp_path / "hostkey"))
    listener = socket.create_server(("127.0.0.1", 0))
    transports = []

    def serve():
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            t = paramiko.Transport(sock)
            t.add_server_key(host_key)
            t.set_subsystem_handler("sftp", paramiko.SFTPServer, _Files)
            t.start_server(server=_Board())
            transports.append(t)

    threading.Thread(target=serve, daemon=True).start()
    relay = Relay(listener.getsockname()[1])
    kind, b64 = (tmp_path / "hostkey.pub").read_text().split()[:2]
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{relay.port} {kind} {b64}\n")
    yield relay
    relay.close()
    listener.close()
    for t in transports:
        t.close()


def board(tmp_path, relay, ssh_config=""):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / "id"], check=True)
    (tmp_path / "inventory.yaml").write_text(
        f"boards:\n  - {{name: pi, arch: arm64, host: lab, port: {relay.port}, user: pi, identity_file: id, "
        "known_hosts: known_hosts}\n")
    config = paramiko.SSHConfig.from_text(f"Host lab\n  HostName 127.0.0.1\n{ssh_config}")
    return load_inventory(tmp_path / "inventory.yaml", ssh_config=(config, "~/.ssh/config")).boards[0]


def test_a_board_that_goes_silent_mid_command_is_lost_after_its_keepalives(tmp_path, sshd):
    b = board(tmp_path, sshd, "  ServerAliveInterval 1\n  ServerAliveCountMax 2\n")
    with connect(b) as conn:
        assert remote(conn, ["echo", "up"], board=b.name).stdout == "up\n"
        threading.Timer(1, sshd.frozen.set).start()  # the board loses power under `docker load`
        clock = time.monotonic()
        with pytest.raises(ConnectionLost) as e:  # what Link.retrying reconnects after
            remote(conn, ["sleep", "600"], board=b.name, timeout=30)
        assert time.monotonic() - clock < 8  # 1 s, then two keepalives unanswered: not its 30 s, nor TCP's 15 min
    assert "board pi: the SSH connection was lost during `sleep 600`" in e.value.message
    assert "did not answer SSH keepalives for 2 s (ServerAliveInterval 1 x ServerAliveCountMax 2)" in e.value.message
    assert "powered" in e.value.hint


def test_a_command_past_its_time_on_a_board_that_answers_is_a_timeout_not_a_lost_link(tmp_path, sshd):
    b = board(tmp_path, sshd)
    with connect(b) as conn:
        clock = time.monotonic()
        with pytest.raises(RunTimeout) as e:
            remote(conn, ["sleep", "600"], board=b.name, timeout=1)
        assert time.monotonic() - clock < 5
        assert remote(conn, ["echo", "still", "here"], board=b.name).stdout == "still here\n"  # the link stays
    assert not isinstance(e.value, ConnectionLost)  # no reconnect and retry: the board is there, and slow
    assert e.value.message == "board pi: `sleep 600` did not finish within 1 s"
    assert "overloaded or hung" in e.value.hint


def test_without_keepalive_a_command_past_its_time_on_a_silent_board_is_a_lost_link(tmp_path, sshd, monkeypatch):
    monkeypatch.setattr(transport, "ANSWER_WAIT_S", 1)
    b = board(tmp_path, sshd, "  ServerAliveInterval 0\n")
    with connect(b) as conn:
        threading.Timer(0.5, sshd.frozen.set).start()
        clock = time.monotonic()
        with pytest.raises(ConnectionLost) as e:
            remote(conn, ["sleep", "600"], board=b.name, timeout=2)
        assert time.monotonic() - clock < 6
    assert "lost during `sleep 600` (no answer for 2 s, nor to a keepalive after it)" in e.value.message


def test_a_transfer_to_a_board_that_goes_silent_ends_as_a_lost_link(tmp_path, sshd):
    from edgeorch.deploy import _put
    b = board(tmp_path, sshd, "  ServerAliveInterval 1\n  ServerAliveCountMax 2\n")
    image = tmp_path / "image.tar"
    image.write_bytes(os.urandom(20 << 20))
    (tmp_path / "board").mkdir()
    with connect(b) as conn:
        sshd.delay = 0.01  # some 1.6 MB/s: the transfer is under way when the board goes
        threading.Timer(1, sshd.frozen.set).start()
        clock = time.monotonic()
        with pytest.raises(ConnectionLost) as e:  # what Link.retrying reconnects after, to resume the transfer
            _put(conn, b, image, str(tmp_path / "board" / "image.tar"), None, "image", resume=True)
        assert time.monotonic() - clock < 10  # not the transfer's 80 s, nor TCP's 15 minutes
    assert e.value.message.startswith("board pi: the connection was lost while sending image.tar")
    assert "from where it stopped" in e.value.hint


def test_a_transfer_slower_than_the_slowest_link_is_a_timeout_naming_what_was_sent(tmp_path, sshd, monkeypatch):
    monkeypatch.setattr(transport, "TRANSFER_FLOOR_S", 1)
    b = board(tmp_path, sshd)
    with connect(b) as conn:
        sshd.delay = 0.04  # a link of some 400 KB/s
        clock = time.monotonic()
        with pytest.raises(RunTimeout) as e:
            with bounded_sftp(conn, b.name, 100_000, "model.onnx") as (client, check):
                client.putfo(io.BytesIO(bytes(8 << 20)), str(tmp_path / "model.onnx"), callback=check)
        assert time.monotonic() - clock < 15  # 1.1 s, then the keepalive's answer behind what is in flight
        sshd.delay = 0
        assert remote(conn, ["echo", "ok"], board=b.name).stdout == "ok\n"
    assert e.value.message == "board pi: sending model.onnx (0.1 MB) did not finish within 1 s"
    assert "less than 1 MB/s" in e.value.hint


def test_a_transfer_may_take_a_minute_plus_a_second_per_megabyte():
    assert transfer_timeout(0) == 60
    assert transfer_timeout(500_000_000) == 560  # a 500 MB image: under 10 minutes, at 1 MB/s
