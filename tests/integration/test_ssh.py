"""SSH as OpenSSH users set it up, against the real sim boards: host keys pinned in ~/.ssh/known_hosts (plain or
hashed), a Host alias of ~/.ssh/config, a board behind a ProxyJump; unknown and changed keys refused with the fix.

Each test runs `invoke check` as a user would, with HOME a directory of its own holding .ssh/known_hosts and
.ssh/config, and an inventory that names no known_hosts file. The target is the x86 board (port 2203, native);
the jump host is rpi3-bookworm (port 2201), which reaches x86 over the loopback both share."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from edgeorch.cache import cache_dir

from .conftest import ROOT, invoke

SIM = ROOT / ".sim"


@pytest.fixture
def home(pi_fleet, tmp_path):
    """A user's HOME: ~/.ssh with the sim client key (a copy), no known_hosts and no config yet."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    shutil.copyfile(SIM / "id_ed25519", home / ".ssh" / "id_sim")
    os.chmod(home / ".ssh" / "id_sim", 0o600)
    return home


def pinned(port: int) -> str:
    """The sim's known_hosts line for the board on `port`, as `ssh-keyscan -p PORT 127.0.0.1` would write it."""
    return next(line for line in (SIM / "known_hosts").read_text().splitlines()
                if line.startswith(f"[127.0.0.1]:{port} ")) + "\n"


def write_config(home: Path) -> None:
    (home / ".ssh" / "config").write_text("""\
Host myboard
    HostName 127.0.0.1
    Port 2203
    User pi
    IdentityFile ~/.ssh/id_sim
Host behind
    HostName 127.0.0.1
    Port 2203
    User pi
    IdentityFile ~/.ssh/id_sim
    ProxyJump jump
Host jump
    HostName 127.0.0.1
    Port 2201
    User pi
    IdentityFile ~/.ssh/id_sim
""")


def inventory(tmp_path: Path, fields: str) -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text(f"boards:\n  - {{name: x86, arch: amd64, {fields}}}\n")
    return path


def as_user(home: Path, *args: str) -> subprocess.CompletedProcess:
    """`invoke ARGS` run by a user whose HOME is `home` (edgeorch's build cache stays the real one)."""
    env = {**os.environ, "HOME": str(home), "EDGEORCH_CACHE": str(cache_dir()), "COLUMNS": "300"}  # no folded paths
    return invoke(*args, check=False, env=env)


def check(home: Path, inv: Path) -> tuple[int, str]:
    """`invoke check` of the x86 board: its exit code, and its report with the wrapping undone (an unreached
    board's error and the problems of a reached one are printed under the table)."""
    r = as_user(home, "check", "--host", "x86", "--inventory", str(inv))
    cells = [line.split("│")[-2].strip() for line in r.stdout.splitlines() if line.count("│") > 2]
    below = [line for line in r.stdout.splitlines() if "│" not in line and not line.startswith("+")]
    return r.returncode, " ".join(" ".join(cells + below).split()) + "\n" + r.stdout + r.stderr


def test_a_board_pinned_in_the_users_known_hosts_connects(home, tmp_path):
    (home / ".ssh" / "known_hosts").write_text(pinned(2203))
    inv = inventory(tmp_path, f"host: 127.0.0.1, port: 2203, user: pi, identity_file: {home}/.ssh/id_sim")
    code, out = check(home, inv)
    assert code == 0, out


def test_a_hashed_known_hosts_entry_is_matched(home, tmp_path):
    known = home / ".ssh" / "known_hosts"
    known.write_text(pinned(2201) + pinned(2203))
    subprocess.run(["ssh-keygen", "-H", "-f", known], check=True, capture_output=True)
    assert all(line.startswith("|1|") for line in known.read_text().splitlines())
    code, out = check(home, inventory(tmp_path, f"host: 127.0.0.1, port: 2203, user: pi, "
                                                f"identity_file: {home}/.ssh/id_sim"))
    assert code == 0, out


def test_an_alias_of_ssh_config_needs_no_port_nor_user_in_the_inventory(home, tmp_path):
    (home / ".ssh" / "known_hosts").write_text(pinned(2203))
    write_config(home)
    inv = inventory(tmp_path, "host: myboard")
    code, out = check(home, inv)
    assert code == 0, out
    listed = as_user(home, "inventory", "--inventory", str(inv))
    assert "pi@127.0.0.1:2203" in listed.stdout, listed.stdout + listed.stderr


def test_a_board_behind_a_jump_host(home, tmp_path):
    (home / ".ssh" / "known_hosts").write_text(pinned(2201) + pinned(2203))
    write_config(home)
    inv = inventory(tmp_path, "host: behind")
    code, out = check(home, inv)
    assert code == 0, out
    listed = as_user(home, "inventory", "--inventory", str(inv))
    assert "pi@127.0.0.1:2203 via pi@127.0.0.1:2201" in " ".join(listed.stdout.split()), listed.stdout


def test_a_proxy_command_of_ssh_config_is_used_and_the_key_still_checked(home, tmp_path):
    (home / ".ssh" / "known_hosts").write_text(pinned(2203))
    (home / ".ssh" / "config").write_text("Host viacommand\n  HostName 127.0.0.1\n  Port 2203\n  User pi\n"
                                          "  IdentityFile ~/.ssh/id_sim\n"
                                          "  ProxyCommand bash -c 'exec 3<>/dev/tcp/%h/%p; cat <&3 & exec cat >&3'\n")
    inv = inventory(tmp_path, "host: viacommand")
    code, out = check(home, inv)
    assert code == 0, out
    (home / ".ssh" / "known_hosts").write_text(pinned(2201))  # the command reaches x86, whose key is not pinned
    code, out = check(home, inv)
    assert code == 5 and "board x86 (pi@127.0.0.1:2203 via its ProxyCommand): its host key is not pinned" in out, out


def test_an_unknown_host_key_is_refused_and_the_fix_given_works(home, tmp_path):
    known = home / ".ssh" / "known_hosts"
    known.write_text(pinned(2201))  # another board's key only
    write_config(home)
    inv = inventory(tmp_path, "host: myboard")
    code, out = check(home, inv)
    assert code == 5, out
    assert f"board x86 (pi@127.0.0.1:2203): its host key is not pinned in {known}" in out
    fix = f"ssh-keyscan -p 2203 127.0.0.1 >> {known}"
    assert fix in out and "fingerprint" in out
    assert known.read_text() == pinned(2201), "an unknown key is never added"
    subprocess.run(fix, shell=True, check=True, capture_output=True)  # the fix, as the user would run it
    code, out = check(home, inv)
    assert code == 0, out


def test_no_known_hosts_file_at_all_is_refused_with_the_file_to_create(home, tmp_path):
    write_config(home)
    code, out = check(home, inventory(tmp_path, "host: myboard"))
    assert code == 5, out
    assert f"not pinned in {home}/.ssh/known_hosts (which does not exist)" in out
    assert not (home / ".ssh" / "known_hosts").exists()


@pytest.mark.parametrize("jump_pin", ["changed", "unknown"])
def test_the_jump_hosts_key_is_checked_like_the_boards(home, tmp_path, jump_pin):
    known = home / ".ssh" / "known_hosts"
    text = pinned(2203)
    if jump_pin == "changed":
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / "other"], check=True)
        kind, key = (tmp_path / "other.pub").read_text().split()[:2]
        text += f"[127.0.0.1]:2201 {kind} {key}\n"
    known.write_text(text)
    write_config(home)
    code, out = check(home, inventory(tmp_path, "host: behind"))
    assert code == 5, out
    jump = "jump host jump (pi@127.0.0.1:2201) of board x86"
    if jump_pin == "changed":
        assert f"{jump} presented a host key different from the pinned one in {known}" in out
        assert f"ssh-keygen -R '[127.0.0.1]:2201' -f {known}" in out
    else:
        assert f"{jump}: its host key is not pinned in {known}" in out
        assert f"ssh-keyscan -p 2201 127.0.0.1 >> {known}" in out
    assert known.read_text() == text, "the jump host's key is never added"


def test_the_inventory_wins_over_ssh_config(home, tmp_path):
    (home / ".ssh" / "known_hosts").write_text(pinned(2201) + pinned(2203))
    write_config(home)
    # like `ssh -p 2201 myboard`: the alias's HostName and User, the inventory's port
    inv = inventory(tmp_path, "host: myboard, port: 2201")
    listed = as_user(home, "inventory", "--inventory", str(inv))
    assert "pi@127.0.0.1:2201" in listed.stdout, listed.stdout + listed.stderr


def test_a_missing_identity_file_of_ssh_config_is_named(home, tmp_path):
    (home / ".ssh" / "known_hosts").write_text(pinned(2203))
    write_config(home)
    (home / ".ssh" / "id_sim").unlink()
    code, out = check(home, inventory(tmp_path, "host: myboard"))
    assert code == 5, out
    assert f"identity file {home}/.ssh/id_sim does not exist (from IdentityFile in ~/.ssh/config (Host myboard))" \
        in out


def test_a_key_the_board_does_not_accept_is_named_with_the_command_that_authorizes_it(home, tmp_path):
    (home / ".ssh" / "known_hosts").write_text(pinned(2203))
    write_config(home)
    (home / ".ssh" / "id_sim").unlink()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", home / ".ssh" / "id_sim"], check=True)
    code, out = check(home, inventory(tmp_path, "host: myboard"))
    assert code == 5, out
    assert f"board x86 (pi@127.0.0.1:2203) rejected the key {home}/.ssh/id_sim (from IdentityFile in " \
           "~/.ssh/config (Host myboard)) for user pi" in out
    assert f"ssh-copy-id -i {home}/.ssh/id_sim -p 2203 pi@127.0.0.1" in out


def test_a_jump_host_that_cannot_reach_the_board_is_named(home, tmp_path):
    (home / ".ssh" / "known_hosts").write_text(pinned(2201) + pinned(2203))
    write_config(home)
    inv = inventory(tmp_path, "host: behind, port: 2299")  # nothing listens there
    code, out = check(home, inv)
    assert code == 5, out
    assert "jump host jump (pi@127.0.0.1:2201) of board x86 could not reach 127.0.0.1:2299" in out
