"""edgeorch.inventory: loading and validating inventory.yaml, selecting boards by name and group."""

import textwrap
from pathlib import Path

import pytest

from edgeorch.arch import Arch
from edgeorch.errors import ConfigError
from edgeorch.inventory import load_inventory

SHIPPED = Path(__file__).resolve().parents[2] / "inventory.yaml"

THREE_BOARDS = """
    boards:
      - {name: pi5, host: 10.0.0.1, user: pi, arch: arm64, groups: [lab]}
      - {name: jetson, host: 10.0.0.2, user: pi, arch: armv7, groups: [lab, old]}
      - {name: box, host: 10.0.0.3, user: root, arch: amd64}
"""


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
    assert [(b.name, b.arch, b.port) for b in inv.boards] == [
        ("rpi3", Arch.ARMV7, 2201), ("rpi4", Arch.ARM64, 2202), ("x86", Arch.AMD64, 2203)]
    assert [b.name for b in inv.select("sim")] == ["rpi3", "rpi4", "x86"]
    assert [b.name for b in inv.select("pi")] == ["rpi3", "rpi4"]
    for b in inv.boards:
        assert (b.user, b.host, b.sim) == ("root", "127.0.0.1", True)
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
