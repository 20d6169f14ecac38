"""edgeorch.transport, the parts without a network: the Connections connect() makes from a board's hops, which
host keys they trust, and the errors (and fixes) it gives for each way an SSH connection fails."""

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import paramiko
import pytest
from paramiko.ssh_exception import NoValidConnectionsError

from edgeorch.arch import Arch
from edgeorch.errors import BoardError, ConnectionLost, Unreachable
from edgeorch.inventory import load_inventory
from edgeorch.transport import connect, connection, explain, fan_out

CONFIG = """
Host myboard
    HostName 127.0.0.1
    Port 2203
    User root
    IdentityFile {key}
Host behind
    HostName 10.9.9.9
    User pi
    ProxyJump jump
Host jump
    HostName 127.0.0.1
    Port 2202
    User root
    IdentityFile {key}
Host viacommand
    ProxyCommand nc %h %p
"""


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def key(tmp_path):
    path = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
    return path


def board(tmp_path, key, fields, name="b"):
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(f"boards:\n  - {{name: {name}, arch: amd64, {fields}}}\n")
    config = paramiko.SSHConfig.from_text(CONFIG.format(key=key))
    return load_inventory(inventory, ssh_config=(config, "~/.ssh/config")).boards[0]


def host_key(tmp_path, name="hostkey"):
    """A fresh ed25519 host key: (the known_hosts line's key type and base64, its paramiko key)."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / name], check=True)
    kind, b64 = (tmp_path / f"{name}.pub").read_text().split()[:2]
    return kind, b64, paramiko.Ed25519Key.from_private_key_file(str(tmp_path / name))


def test_a_connection_has_exactly_the_hops_values_and_refuses_unknown_keys(tmp_path, key, home):
    b = board(tmp_path, key, "host: myboard")
    conn = connection(b.ssh)
    assert (conn.host, conn.port, conn.user) == ("127.0.0.1", 2203, "root")
    assert conn.connect_kwargs["key_filename"] == [str(key)]
    assert conn.connect_kwargs["look_for_keys"] is False  # like ssh: the IdentityFile, not ~/.ssh/id_* as well
    assert isinstance(conn.client._policy, paramiko.RejectPolicy)
    assert not conn.gateway


def test_without_a_key_anywhere_ssh_agent_and_default_keys_are_used(tmp_path, key, home):
    conn = connection(board(tmp_path, key, "host: 10.0.0.5, user: pi").ssh)
    assert conn.connect_kwargs["look_for_keys"] is True and "key_filename" not in conn.connect_kwargs


def test_fabric_does_not_apply_ssh_config_a_second_time(tmp_path, key, home):
    (home / ".ssh" / "config").write_text("Host 127.0.0.1\n  HostName 192.0.2.9\n  IdentityFile ~/.ssh/other\n")
    conn = connection(board(tmp_path, key, "host: myboard").ssh)
    assert (conn.host, conn.connect_kwargs["key_filename"]) == ("127.0.0.1", [str(key)])


def test_known_hosts_entries_plain_hashed_and_with_port_are_trusted(tmp_path, key, home):
    kind, b64, _ = host_key(tmp_path)
    hashed = paramiko.HostKeys.hash_host("[127.0.0.1]:2203")
    (home / ".ssh" / "known_hosts").write_text(f"{hashed} {kind} {b64}\n192.0.2.1 {kind} {b64}\n")
    keys = connection(board(tmp_path, key, "host: myboard").ssh).client.get_host_keys()
    assert keys.lookup("[127.0.0.1]:2203")[kind].get_base64() == b64  # what paramiko asks for on port 2203
    assert keys.lookup("192.0.2.1") is not None                        # and on port 22
    assert keys.lookup("127.0.0.1") is None                            # port 22 is another host


def test_the_inventorys_known_hosts_is_used_instead_of_the_users(tmp_path, key, home):
    kind, b64, _ = host_key(tmp_path)
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:2203 {kind} {b64}\n")
    (tmp_path / "fleet_hosts").write_text("")
    keys = connection(board(tmp_path, key, "host: myboard, known_hosts: fleet_hosts").ssh).client.get_host_keys()
    assert keys.lookup("[127.0.0.1]:2203") is None


def test_a_jump_hosts_connection_is_checked_the_same_way(tmp_path, key, home):
    kind, b64, _ = host_key(tmp_path)
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:2202 {kind} {b64}\n")
    b = board(tmp_path, key, "host: behind")
    gateway = connection(b.jump[0])
    conn = connection(b.ssh, gateway)
    assert conn.gateway is gateway and (conn.host, conn.user, conn.port) == ("10.9.9.9", "pi", 22)
    assert (gateway.host, gateway.port, gateway.user) == ("127.0.0.1", 2202, "root")
    assert isinstance(gateway.client._policy, paramiko.RejectPolicy)  # Fabric's own gateways would auto-add
    assert gateway.client.get_host_keys().lookup("[127.0.0.1]:2202") is not None


def test_a_proxy_command_is_kept(tmp_path, key, home):
    conn = connection(board(tmp_path, key, "host: viacommand, user: u").ssh)
    assert conn.gateway == "nc viacommand 22"


def test_a_missing_identity_file_names_it_and_where_it_came_from(tmp_path, key, home):
    for fields, source in (("host: 10.0.0.5, user: pi, identity_file: keys/gone", str(tmp_path / "inventory.yaml")),
                           ("host: myboard", "IdentityFile in ~/.ssh/config (Host myboard)")):
        b = board(tmp_path, tmp_path / "gone", fields)
        with pytest.raises(BoardError) as e, connect(b):
            pass
        assert "identity file" in e.value.message and "gone" in e.value.message and source in e.value.message
        assert "ssh-keygen" in e.value.hint and "ssh-copy-id" in e.value.hint


def test_a_missing_known_hosts_file_of_the_inventory_is_named(tmp_path, key, home):
    b = board(tmp_path, key, "host: myboard, known_hosts: nothere")
    with pytest.raises(BoardError, match="known_hosts file .*nothere does not exist"), connect(b):
        pass


def test_a_refused_connection_is_unreachable_and_names_where_the_address_came_from(tmp_path, key, home):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = board(tmp_path, key, f"host: 127.0.0.1, user: root, port: {port}, identity_file: {key}")
    with pytest.raises(Unreachable) as e, connect(b):
        pass
    assert f"board b (root@127.0.0.1:{port}) is unreachable" in e.value.message
    assert "refused" in e.value.message.lower()
    assert f"port {port} from the inventory" in e.value.hint


# explain(): each failure paramiko can raise while opening a hop, as the user sees it


def test_an_unknown_key_gives_the_exact_keyscan_line_and_file(tmp_path, key, home):
    b = board(tmp_path, key, "host: myboard")
    err = explain(paramiko.SSHException("Server '[127.0.0.1]:2203' not found in known_hosts"), b, b.ssh)
    known = home / ".ssh" / "known_hosts"
    assert err.message == f"board b (root@127.0.0.1:2203): its host key is not pinned in {known} (which does not exist)"
    assert f"ssh-keyscan -p 2203 127.0.0.1 >> {known}" in err.hint
    assert "ssh -p 2203 root@127.0.0.1" in err.hint and "fingerprint" in err.hint


def test_an_unknown_key_behind_a_jump_host_is_pinned_through_it(tmp_path, key, home):
    b = board(tmp_path, key, "host: behind")
    err = explain(paramiko.SSHException("Server '10.9.9.9' not found in known_hosts"), b, b.ssh)
    assert "board b (pi@10.9.9.9:22 via root@127.0.0.1:2202)" in err.message
    assert "ssh -J root@127.0.0.1:2202 -p 22 pi@10.9.9.9" in err.hint and "keyscan" not in err.hint


def test_an_unknown_key_of_the_jump_host_names_the_jump_host(tmp_path, key, home):
    b = board(tmp_path, key, "host: behind")
    err = explain(paramiko.SSHException("Server '[127.0.0.1]:2202' not found in known_hosts"), b, b.jump[0])
    assert err.message.startswith("jump host jump (root@127.0.0.1:2202) of board b: its host key is not pinned")
    assert "ssh-keyscan -p 2202 127.0.0.1 >>" in err.hint


def test_a_changed_key_names_the_file_that_holds_the_old_one(tmp_path, key, home):
    kind, b64, old = host_key(tmp_path)
    _, _, new = host_key(tmp_path, "other")
    (tmp_path / "pins").write_text(f"[127.0.0.1]:2203 {kind} {b64}\n")
    b = board(tmp_path, key, "host: myboard, known_hosts: pins")
    err = explain(paramiko.BadHostKeyException("[127.0.0.1]:2203", new, old), b, b.ssh)
    assert "different from the pinned one" in err.message and str(tmp_path / "pins") in err.message
    assert f"ssh-keygen -R '[127.0.0.1]:2203' -f {tmp_path / 'pins'}" in err.hint
    assert "do not connect" in err.hint
    # ssh would write to ~/.ssh/known_hosts, which edgeorch does not read for this board
    assert f"ssh -o UserKnownHostsFile={tmp_path / 'pins'} -p 2203 root@127.0.0.1" in err.hint


def test_a_rejected_key_says_which_key_and_how_to_authorize_it(tmp_path, key, home):
    b = board(tmp_path, key, "host: myboard")
    err = explain(paramiko.AuthenticationException("Authentication failed."), b, b.ssh)
    assert f"rejected the key {key} (from IdentityFile in ~/.ssh/config (Host myboard)) for user root" in err.message
    assert f"ssh-copy-id -i {key} -p 2203 root@127.0.0.1" in err.hint
    assert isinstance(err, BoardError) and not isinstance(err, (Unreachable, ConnectionLost))  # no retry helps


def test_the_jump_host_rejecting_the_key_names_the_jump_host(tmp_path, key, home):
    b = board(tmp_path, key, "host: behind")
    err = explain(paramiko.AuthenticationException("Authentication failed."), b, b.jump[0])
    assert err.message.startswith("jump host jump (root@127.0.0.1:2202) of board b rejected")


def test_a_jump_host_that_cannot_forward_is_named(tmp_path, key, home):
    b = board(tmp_path, key, "host: behind")
    err = explain(paramiko.ChannelException(2, "Connect failed"), b, b.ssh)
    assert err.message == "jump host jump (root@127.0.0.1:2202) of board b could not reach 10.9.9.9:22: Connect failed"
    assert "AllowTcpForwarding" in err.hint


def test_timeouts_and_unreachable_hosts_may_be_retried(tmp_path, key, home):
    b = board(tmp_path, key, "host: myboard")
    timeout = explain(TimeoutError("timed out"), b, b.ssh)
    assert isinstance(timeout, Unreachable) and "did not answer within 10 s" in timeout.message
    assert "HostName, Port, User, IdentityFile from ~/.ssh/config (Host myboard)" in timeout.hint
    refused = NoValidConnectionsError({("127.0.0.1", 2203): ConnectionRefusedError(111, "Connection refused")})
    err = explain(refused, b, b.ssh)
    assert isinstance(err, Unreachable) and err.message.endswith("is unreachable: Connection refused")
    dropped = explain(paramiko.SSHException("Error reading SSH protocol banner"), b, b.ssh)
    assert isinstance(dropped, ConnectionLost) and "protocol banner" in dropped.message


def test_a_name_that_does_not_resolve_is_not_retried(tmp_path, key, home):
    b = board(tmp_path, key, "host: pi.invalid, user: pi")
    err = explain(socket.gaierror(-2, "Name or service not known"), b, b.ssh)
    assert not isinstance(err, Unreachable) and "pi.invalid does not resolve" in err.message


def test_other_exceptions_are_not_dressed_up(tmp_path, key, home):
    b = board(tmp_path, key, "host: myboard")
    assert explain(ValueError("a bug"), b, b.ssh) is None


def test_boards_made_in_code_get_ssh_defaults(home):
    from edgeorch.inventory import Board
    b = Board(name="x", host="10.0.0.1", user="pi", arch=Arch.ARM64)
    assert b.address == "pi@10.0.0.1:22" and b.ssh.known_hosts[0] == home / ".ssh" / "known_hosts"
    assert Path(b.ssh.known_hosts[0]).parent.is_dir()


def test_ctrl_c_ends_the_boards_work_where_a_library_swallows_keyboardinterrupt(home):
    from edgeorch.inventory import Board

    def work(board):  # as invoke's runner waits on a remote command: a ^C is passed on, then swallowed
        for _ in range(200):
            try:
                time.sleep(0.05)
            except KeyboardInterrupt:
                pass
        return "went on to the end"

    board = Board(name="x", host="10.0.0.1", user="pi", arch=Arch.ARM64)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (CI's shell ignores it)
    try:
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
        clock = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            fan_out([board], work)
        assert time.monotonic() - clock < 5
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler goes with the sweep
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a job started with &: ^C stays ignored
        assert fan_out([board], lambda b: signal.getsignal(signal.SIGINT)).succeeded == {"x": signal.SIG_IGN}
    finally:
        signal.signal(signal.SIGINT, before)
