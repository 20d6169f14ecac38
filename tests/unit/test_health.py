"""A bench of a group skips the boards the last `invoke check` found unhealthy; a board named outright still runs."""

import json
import textwrap

import pytest

from edgeorch import health
from edgeorch.console import REPORTER
from edgeorch.errors import ConfigError
from edgeorch.inventory import load_inventory

from .test_safe_writes import _python


def write_inventory(tmp_path, monkeypatch, boards: str):
    """An inventory of `boards` (YAML lines), its health kept in a cache of the test's own."""
    monkeypatch.setenv("EDGEORCH_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "inventory.yaml"
    path.write_text("boards:\n" + boards)
    return path


@pytest.fixture
def inventory(tmp_path, monkeypatch):
    return load_inventory(write_inventory(tmp_path, monkeypatch, textwrap.dedent("""\
          - {name: pi3, host: 10.0.0.1, port: 22, user: pi, arch: armv7, groups: [lab]}
          - {name: pi4, host: 10.0.0.2, port: 22, user: pi, arch: arm64, groups: [lab]}
    """)))


@pytest.fixture
def eight(tmp_path, monkeypatch):
    return write_inventory(tmp_path, monkeypatch, "".join(
        f"  - {{name: b{i}, host: 10.0.0.{i}, port: 22, user: pi, arch: arm64}}\n" for i in range(8)))


def test_a_group_skips_an_unhealthy_board_and_says_why(inventory, capsys):
    health.record(inventory, {"pi3": ["no working Docker engine"], "pi4": []})
    assert [b.name for b in health.healthy_boards(inventory, "lab", REPORTER)] == ["pi4"]
    out = capsys.readouterr().out
    assert "skipping pi3" in out and "no working Docker engine" in out and "--host pi3" in out


def test_a_board_named_outright_runs_whatever_its_last_check_said(inventory):
    health.record(inventory, {"pi3": ["no working Docker engine"]})
    assert [b.name for b in health.healthy_boards(inventory, "pi3,pi4", REPORTER)] == ["pi3", "pi4"]


def test_a_board_that_was_never_checked_or_is_fixed_runs(inventory):
    assert len(health.healthy_boards(inventory, "lab", REPORTER)) == 2
    health.record(inventory, {"pi3": ["unreachable"]})
    health.record(inventory, {"pi3": []})  # fixed, checked again
    assert len(health.healthy_boards(inventory, "lab", REPORTER)) == 2


def test_a_group_of_only_unhealthy_boards_is_refused(inventory):
    health.record(inventory, {"pi3": ["x"], "pi4": ["y"]})
    with pytest.raises(ConfigError, match="unhealthy"):
        health.healthy_boards(inventory, "lab", REPORTER)


def test_another_inventory_with_a_board_of_the_same_name_is_not_affected(inventory, tmp_path):
    health.record(inventory, {"pi3": ["x"]})
    other = tmp_path / "other.yaml"
    other.write_text("boards:\n  - {name: pi3, host: 10.0.0.9, port: 22, user: pi, arch: armv7, groups: [lab]}\n")
    assert len(health.healthy_boards(load_inventory(other), "lab", REPORTER)) == 1


def test_two_checks_at_once_keep_each_others_boards(eight, tmp_path):
    code = ("from edgeorch import health; from edgeorch.inventory import load_inventory\n"
            "inv = load_inventory(sys.argv[1])\n"
            "for _ in range(20):\n"
            "    health.record(inv, {sys.argv[2]: ['broken ' + sys.argv[2]]})\n")
    procs = [_python(code, str(eight), f"b{i}") for i in range(8)]
    for p in procs:
        assert p.wait(60) == 0, p.stderr.read()
    inv = load_inventory(eight)
    assert [health.problems(inv, b)[0] for b in inv.boards] == [[f"broken b{i}"] for i in range(8)]
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["health.json", "locks"]


@pytest.mark.parametrize("content", ["{\"half", "[1, 2]", json.dumps({"x::b0": {"problems": "no list"}})])
def test_a_health_file_that_is_not_one_a_check_wrote_is_not_trusted(eight, tmp_path, content):
    inv = load_inventory(eight)
    (tmp_path / "cache").mkdir(exist_ok=True)
    (tmp_path / "cache" / "health.json").write_text(content.replace("x", str(inv.path)))
    assert health.problems(inv, inv.boards[0]) is None  # as if never checked: the board runs
    health.record(inv, {"b1": ["no Docker"]})  # and the next check writes it anew
    assert health.problems(inv, inv.boards[1])[0] == ["no Docker"]
