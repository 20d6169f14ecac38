"""edgeorch.inventory: loading and validating inventory.yaml, selecting boards by name and group."""

import getpass
import textwrap
from pathlib import Path

import paramiko
import pytest

from edgeorch.arch import Arch
from edgeorch.errors import ConfigError
from edgeorch.inventory import GLOBAL_KNOWN_HOSTS, Board, load_inventory, parse_jump

SHIPPED = Path(__file__).resolve().parents[2] / "inventory.yaml"

THREE_BOARDS = """
    boards:
      - {name: pi5, host: 10.0.0.1, user: pi, arch: arm64, groups: [lab]}
      - {name: jetson, host: 10.0.0.2, user: pi, arch: armv7, groups: [lab, old]}
      - {name: box, host: 10.0.0.3, user: root, arch: amd64}
"""


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """A HOME of its own: the tests never read the ~/.ssh of whoever runs them."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    return home


def write_inventory(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def load_error(tmp_path: Path, text: str) -> ConfigError:
    path = write_inventory(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_inventory(path)
    assert str(path) in e.value.message, "every inventory error names the file"
    return e.value


def one_board(fields: str) -> str:
    return f"boards:\n  - {{name: rpi, host: h, user: u, arch: arm64, {fields}}}\n"


def test_shipped_inventory_is_the_simulated_fleet():
    inv = load_inventory(SHIPPED)
    assert [(b.name, b.arch, b.port, b.sim_release) for b in inv.boards] == [
        ("rpi3-bookworm", Arch.ARMV7, 2201, "bookworm"), ("rpi4", Arch.ARM64, 2202, "bookworm"),
        ("x86", Arch.AMD64, 2203, "bookworm"), ("rpi5", Arch.ARM64, 2204, "trixie"),
        ("rpi3", Arch.ARMV7, 2205, "trixie")]
    assert [b.name for b in inv.select("sim")] == ["rpi3-bookworm", "rpi4", "x86"]
    assert [b.name for b in inv.select("pi")] == ["rpi3-bookworm", "rpi4"]
    assert [b.name for b in inv.select("trixie")] == ["rpi5", "rpi3"]
    for b in inv.boards:
        assert (b.user, b.host, b.sim) == ("pi", "127.0.0.1", True)
        # Relative to the inventory file, not to the working directory of whoever runs a task.
        assert b.identity_file == SHIPPED.parent / ".sim" / "id_ed25519"
        assert b.known_hosts == SHIPPED.parent / ".sim" / "known_hosts"


def test_relative_paths_resolve_against_the_inventory_file(tmp_path, monkeypatch):
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "boards.yaml"
    path.write_text(one_board("identity_file: keys/id, known_hosts: /etc/ssh/known"))
    monkeypatch.chdir(tmp_path)
    board = load_inventory("conf/boards.yaml").boards[0]
    assert board.identity_file == tmp_path / "conf" / "keys" / "id"
    assert board.known_hosts == Path("/etc/ssh/known")


def test_missing_field_names_file_board_and_field(tmp_path):
    err = load_error(tmp_path, "boards:\n  - {name: rpi5, user: pi, arch: arm64}\n")
    assert "board 'rpi5'" in err.message
    assert "`host`" in err.message and "missing" in err.message
    assert "host:" in err.hint


def test_board_without_name_is_named_by_position(tmp_path):
    err = load_error(tmp_path, THREE_BOARDS + "      - {host: h, user: u, arch: arm64}\n")
    assert "boards[3]" in err.message and "`name`" in err.message


def test_unknown_arch_lists_the_valid_ones(tmp_path):
    err = load_error(tmp_path, "boards:\n  - {name: rpi, host: h, user: u, arch: riscv64}\n")
    assert "'riscv64'" in err.message and "`arch`" in err.message
    for arch in ("arm64", "armv7", "amd64"):
        assert arch in err.hint


def test_arch_aliases_are_accepted(tmp_path):
    inv = load_inventory(write_inventory(tmp_path, """
        boards:
          - {name: a, host: h, user: u, arch: aarch64}
          - {name: b, host: h, user: u, arch: armhf}
          - {name: c, host: h, user: u, arch: x86_64}
    """))
    assert [b.arch for b in inv.boards] == [Arch.ARM64, Arch.ARMV7, Arch.AMD64]


def test_duplicate_board_name(tmp_path):
    err = load_error(tmp_path, THREE_BOARDS + "      - {name: jetson, host: h, user: u, arch: arm64}\n")
    assert "'jetson'" in err.message and "twice" in err.message


@pytest.mark.parametrize("port", ["0", "70000", '"22a"', "true", "22.5"])
def test_bad_port(tmp_path, port):
    err = load_error(tmp_path, one_board(f"port: {port}"))
    assert "board 'rpi'" in err.message and "`port`" in err.message
    assert "1 to 65535" in err.hint


def test_port_bounds_are_inclusive(tmp_path):
    inv = load_inventory(write_inventory(tmp_path, """
        boards:
          - {name: low, host: h, user: u, arch: arm64, port: 1}
          - {name: high, host: h, user: u, arch: arm64, port: 65535}
    """))
    assert [b.port for b in inv.boards] == [1, 65535]


def test_yaml_syntax_error(tmp_path):
    err = load_error(tmp_path, "boards:\n  - name: rpi\n   host: [unclosed\n")
    assert "not valid YAML" in err.message
    assert "line" in err.message


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist") as e:
        load_inventory(tmp_path / "nowhere.yaml")
    assert str(tmp_path / "nowhere.yaml") in e.value.message
    assert "--inventory" in e.value.hint


@pytest.mark.parametrize("text", ["", "boards: rpi3\n", "- name: rpi3\n", "board:\n  - {name: a}\n"])
def test_no_boards_list(tmp_path, text):
    err = load_error(tmp_path, text)
    assert "no `boards:` list" in err.message


def test_unknown_field_is_named(tmp_path):
    err = load_error(tmp_path, one_board("prot: 22"))
    assert "`prot`" in err.message and "not a known field" in err.message
    assert "port" in err.hint


def test_all_is_a_reserved_group(tmp_path):
    err = load_error(tmp_path, one_board("groups: [lab, all]"))
    assert "`groups`" in err.message and "reserved" in err.message


def test_groups_must_be_a_list_of_names(tmp_path):
    err = load_error(tmp_path, one_board("groups: lab"))
    assert "`groups`" in err.message


def test_defaults_fill_in_and_boards_override(tmp_path):
    inv = load_inventory(write_inventory(tmp_path, """
        defaults: {user: root, host: 127.0.0.1, port: 2200, frameworks: [tflite, onnx]}
        boards:
          - {name: a, arch: arm64}
          - {name: b, arch: amd64, port: 2222, user: pi}
    """))
    a, b = inv.boards
    assert (a.user, a.host, a.port, a.frameworks) == ("root", "127.0.0.1", 2200, ("tflite", "onnx"))
    assert (b.user, b.host, b.port) == ("pi", "127.0.0.1", 2222)


def test_a_bad_default_is_reported_against_a_board(tmp_path):
    err = load_error(tmp_path, "defaults: {port: 0}\nboards:\n  - {name: a, host: h, user: u, arch: arm64}\n")
    assert "board 'a'" in err.message and "`port`" in err.message


@pytest.fixture
def inventory(tmp_path):
    return load_inventory(write_inventory(tmp_path, THREE_BOARDS))


@pytest.mark.parametrize("spec, names", [
    ("jetson", ["jetson"]),
    ("lab", ["pi5", "jetson"]),
    ("old", ["jetson"]),
    ("all", ["pi5", "jetson", "box"]),
    ("box,pi5", ["pi5", "box"]),                 # inventory order, not the order asked nor sorted
    ("box, old", ["jetson", "box"]),
    ("lab,jetson,all", ["pi5", "jetson", "box"]),  # overlaps appear once
])
def test_select(inventory, spec, names):
    assert [b.name for b in inventory.select(spec)] == names


def test_select_unknown_lists_boards_and_groups(inventory):
    with pytest.raises(ConfigError) as e:
        inventory.select("pi5,nano")
    assert "'nano'" in e.value.message and str(inventory.path) in e.value.message
    for name in ("pi5", "jetson", "box", "lab", "old", "all"):
        assert f"'{name}'" in e.value.hint


# --- SSH settings: the inventory first, then ~/.ssh/config, then ssh's defaults ---------------------------------

SSH_CONFIG = """
Host myboard
    HostName 10.1.2.3
    Port 2203
    User pi
    IdentityFile ~/.ssh/lab_key
Host lab-*
    User labuser
    ProxyJump bastion
Host bastion
    HostName bastion.example.org
    User jumper
    Port 2222
    IdentityFile ~/.ssh/bastion_key
Host behind-two
    ProxyJump ops@first:2022,second
Host first
    ProxyJump zero
Host looping
    ProxyJump looping
Host badport
    Port twenty
Host badjump
    ProxyJump user@host:port
Host pinned-elsewhere
    UserKnownHostsFile ~/.ssh/lab_hosts /etc/lab_hosts
"""


def with_ssh_config(tmp_path: Path, boards: str, config: str = SSH_CONFIG):
    """The boards of an inventory, loaded against an ssh_config text."""
    return load_inventory(write_inventory(tmp_path, boards),
                          ssh_config=(paramiko.SSHConfig.from_text(config), "~/.ssh/config")).boards


def board_at(tmp_path: Path, fields: str, config: str = SSH_CONFIG) -> Board:
    return with_ssh_config(tmp_path, f"boards:\n  - {{name: b, arch: arm64, {fields}}}\n", config)[0]


def test_user_and_port_are_optional_as_with_ssh(tmp_path, home):
    board = board_at(tmp_path, "host: 10.0.0.9", config="")
    assert (board.user, board.port) == (getpass.getuser(), 22)
    assert board.address == f"{getpass.getuser()}@10.0.0.9:22"
    assert board.ssh.identity_files == ()  # ssh-agent and ~/.ssh/id_*, like ssh
    assert board.ssh.known_hosts == (home / ".ssh" / "known_hosts", Path(GLOBAL_KNOWN_HOSTS))
    assert board.jump == ()


def test_an_alias_of_ssh_config_gives_address_port_user_and_key(tmp_path, home):
    board = board_at(tmp_path, "host: myboard")
    assert board.host == "myboard"  # as written; what is connected to:
    assert (board.ssh.hostname, board.port, board.user) == ("10.1.2.3", 2203, "pi")
    assert board.address == "pi@10.1.2.3:2203"
    assert board.ssh.identity_files == (home / ".ssh" / "lab_key",)
    assert "IdentityFile" in board.ssh.identity_from and "Host myboard" in board.ssh.identity_from
    assert board.ssh.origin() == "HostName, Port, User, IdentityFile from ~/.ssh/config (Host myboard)"


def test_inventory_fields_win_over_ssh_config(tmp_path):
    (tmp_path / "k").write_text("")
    board = board_at(tmp_path, "host: myboard, port: 22, user: root, identity_file: k")
    assert board.address == "root@10.1.2.3:22"  # HostName still from ssh_config, like `ssh -p 22 root@myboard`
    assert board.ssh.identity_files == (tmp_path / "k",)
    assert str(tmp_path / "inventory.yaml") in board.ssh.identity_from
    assert board.ssh.from_config == ("HostName",)


def test_defaults_in_the_inventory_also_win_over_ssh_config(tmp_path):
    (board,) = with_ssh_config(tmp_path, "defaults: {user: admin}\n"
                                         "boards:\n  - {name: b, host: myboard, arch: amd64}\n")
    assert (board.user, board.port) == ("admin", 2203)


def test_a_board_behind_a_jump_host(tmp_path, home):
    board = board_at(tmp_path, "host: lab-pi")
    assert board.address == "labuser@lab-pi:22 via jumper@bastion.example.org:2222"
    (jump,) = board.jump
    assert (jump.host, jump.hostname, jump.port, jump.user) == ("bastion", "bastion.example.org", 2222, "jumper")
    assert jump.identity_files == (home / ".ssh" / "bastion_key",)
    # the jump host's key is checked like the board's: never trusted because it is a jump host
    assert jump.known_hosts == board.ssh.known_hosts


def test_a_jump_host_is_checked_against_the_inventorys_known_hosts_too(tmp_path):
    board = board_at(tmp_path, "host: lab-pi, known_hosts: pinned")
    assert board.ssh.known_hosts == board.jump[0].known_hosts == (tmp_path / "pinned",)
    assert str(tmp_path / "inventory.yaml") in board.jump[0].known_hosts_from


def test_jump_chains_follow_ssh(tmp_path):
    # `ProxyJump ops@first:2022,second`: first's own ProxyJump (zero) comes before it; user and port of the entry win
    board = board_at(tmp_path, "host: behind-two, user: u")
    assert [(h.host, h.user, h.port) for h in board.jump] == [
        ("zero", getpass.getuser(), 22), ("first", "ops", 2022), ("second", getpass.getuser(), 22)]


def test_a_host_that_jumps_through_itself_connects_directly(tmp_path):
    assert board_at(tmp_path, "host: looping, user: u").jump == ()


@pytest.mark.parametrize("spec, parsed", [
    ("bastion", (None, "bastion", None)),
    ("ops@bastion:2222", ("ops", "bastion", 2222)),
    ("ssh://ops@bastion:2222", ("ops", "bastion", 2222)),
    ("[fe80::1]:22", (None, "fe80::1", 22)),
])
def test_parse_jump(spec, parsed):
    assert parse_jump(spec) == parsed


def test_bad_ssh_config_values_name_the_file_host_and_board(tmp_path):
    for host, word in (("badport", "Port"), ("badjump", "ProxyJump")):
        err = load_error_with_config(tmp_path, host)
        assert "board 'b'" in err.message and "~/.ssh/config" in err.message and f"Host {host}" in err.message
        assert word in err.message


def load_error_with_config(tmp_path: Path, host: str) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        board_at(tmp_path, f"host: {host}, user: u")
    return e.value


def test_known_hosts_files(tmp_path, home):
    """~/.ssh/known_hosts by default, ssh_config's UserKnownHostsFile where set, the inventory's file instead."""
    default = board_at(tmp_path, "host: myboard")
    assert default.ssh.known_hosts == (home / ".ssh" / "known_hosts", Path(GLOBAL_KNOWN_HOSTS))
    assert default.ssh.known_hosts_from == "ssh's default"
    configured = board_at(tmp_path, "host: pinned-elsewhere, user: u")
    assert configured.ssh.known_hosts == (home / ".ssh" / "lab_hosts", Path("/etc/lab_hosts"), Path(GLOBAL_KNOWN_HOSTS))
    given = board_at(tmp_path, "host: pinned-elsewhere, user: u, known_hosts: ~/mine")
    assert given.ssh.known_hosts == (home / "mine",)  # instead of the others, as the sim fleet's file is


def test_ssh_config_is_read_from_home(tmp_path, home):
    (home / ".ssh" / "config").write_text("Host alias\n  HostName 192.0.2.7\n  User ubuntu\n  Port 2022\n")
    board = load_inventory(write_inventory(tmp_path, "boards:\n  - {name: b, host: alias, arch: arm64}\n")).boards[0]
    assert board.address == "ubuntu@192.0.2.7:2022"


def test_an_unreadable_ssh_config_is_a_config_error(tmp_path, home):
    (home / ".ssh" / "config").write_text("Host a\n  ProxyCommand\n")
    with pytest.raises(ConfigError) as e:
        load_inventory(write_inventory(tmp_path, THREE_BOARDS))
    assert str(home / ".ssh" / "config") in e.value.message


@pytest.mark.parametrize("fields, field", [("host: h, user: 'a b'", "`user`"), ("host: ''", "`host`"),
                                           ("host: [x]", "`host`"), ("host: 'pi 4'", "`host`")])
def test_bad_host_or_user(tmp_path, fields, field):
    err = load_error(tmp_path, f"boards:\n  - {{name: rpi, arch: arm64, {fields}}}\n")
    assert "board 'rpi'" in err.message and field in err.message


# --- names ssh refuses, and ProxyCommand's %-tokens as ssh substitutes them ------------------------------------------

@pytest.mark.parametrize("field, value, shown", [
    ("host", "x;touch${IFS}/tmp/p;", "`;`"),        # the finding: a shell-wrapped ProxyCommand would run touch
    ("host", "a$(id)", "`$`"),
    ("host", "a`id`", "`` ` ``"),
    ("host", "-oProxyCommand=x", "a leading `-`"),
    ("host", "a|b", "`|`"),
    ("host", "a,b", "`,`"),
    ("user", "pi;reboot", "`;`"),
    ("user", "pi$(id)", "`(`"),
    ("user", "-l", "a leading `-`"),
    ("user", "pi\\", "a `\\` at the end"),
])
def test_a_name_ssh_refuses_names_board_field_and_character(tmp_path, field, value, shown):
    fields = {"host": "h", "user": "u", field: value}
    quoted = ", ".join(f"{k}: '{v}'" for k, v in fields.items())
    err = load_error(tmp_path, f"boards:\n  - {{name: rpi, arch: arm64, {quoted}}}\n")
    assert f"board 'rpi', field `{field}`" in err.message
    assert f"contains {shown.replace('`` ` ``', '`' * 3)}" in err.message and "ssh refuses" in err.message
    assert "ProxyCommand" in err.message
    assert ("Host alias" if field == "host" else "login name") in err.hint


@pytest.mark.parametrize("fields", ["host: 'fe80::1%eth0', user: pi", "host: pi4.lab_x, user: 'host$'",
                                    "host: 192.0.2.1, user: first.last@corp"])
def test_names_ssh_takes_are_taken(tmp_path, fields):
    path = write_inventory(tmp_path, f"boards:\n  - {{name: rpi, arch: arm64, {fields}}}\n")
    assert load_inventory(path).boards[0].name == "rpi"


PROXIED = """
Host relay
    HostName real.example
    User cfguser
    Port 2222
    ProxyCommand sh -c "echo %h %p %r %n %%h %%%n 100%% > {out}"
Host relay-bad
    ProxyCommand nc %x %p
Host relay-lone
    ProxyCommand nc %h %
"""


def test_proxy_command_tokens_are_substituted_as_ssh_does(tmp_path):
    out = tmp_path / "proxy-said"
    config = PROXIED.format(out=out)
    from_config = board_at(tmp_path, "host: relay", config)
    # %h the HostName, %n the host as given, %% one % that is not read again (paramiko gives `%real.example`, then
    # substitutes its %r too)
    assert from_config.ssh.proxy_command == f'sh -c "echo real.example 2222 cfguser relay %h %relay 100% > {out}"'
    given = board_at(tmp_path, "host: relay, user: bob, port: 2022", config)  # like ssh -p 2022 bob@relay
    assert given.ssh.proxy_command.startswith('sh -c "echo real.example 2022 bob relay %h')
    # what a connection runs: paramiko's ProxyCommand, with a shell
    paramiko.ProxyCommand(given.ssh.proxy_command).process.wait(timeout=10)
    assert out.read_text() == "real.example 2022 bob relay %h %relay 100%\n"


def test_a_proxy_command_with_a_token_ssh_lacks_is_a_config_error(tmp_path):
    for host, said in (("relay-bad", "'%x' is not a token"), ("relay-lone", "lone %")):
        with pytest.raises(ConfigError) as e:
            board_at(tmp_path, f"host: {host}, user: u", PROXIED)
        assert f"Host {host}: ProxyCommand" in e.value.message and said in e.value.message
        assert "%%" in e.value.hint


def test_percent_expand_is_one_pass_from_the_left():
    from edgeorch.inventory import percent_expand
    tokens = {"h": "%r", "r": "root"}
    assert percent_expand("%h %r %%h %%%h %%%%", tokens) == "%r root %h %%r %%"
    assert percent_expand("no tokens", tokens) == "no tokens"


def test_keepalive_comes_from_ssh_config_else_15_s_three_times(tmp_path):
    config = ("Host quick\n  ServerAliveInterval 5\n  ServerAliveCountMax 2\nHost slow\n  ServerAliveInterval 1m30s\n"
              "Host silent\n  ServerAliveInterval 0\nHost bad\n  ServerAliveInterval soon\n")
    assert (board_at(tmp_path, "host: plain, user: u", config).ssh.alive_interval,
            board_at(tmp_path, "host: plain, user: u", config).ssh.alive_count_max) == (15, 3)
    quick = board_at(tmp_path, "host: quick, user: u", config).ssh
    assert (quick.alive_interval, quick.alive_count_max) == (5, 2)
    assert board_at(tmp_path, "host: slow, user: u", config).ssh.alive_interval == 90
    assert board_at(tmp_path, "host: silent, user: u", config).ssh.alive_interval == 0  # as ssh: none sent
    with pytest.raises(ConfigError) as e:
        board_at(tmp_path, "host: bad, user: u", config)
    assert "Host bad: ServerAliveInterval 'soon' is not a whole number of seconds" in e.value.message
    assert Board(name="x", host="10.0.0.1", user="pi", arch=Arch.ARM64).ssh.alive_interval == 15
