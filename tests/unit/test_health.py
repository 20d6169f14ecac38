"""A bench of a group skips the boards the last `invoke check` found unhealthy; a board named outright still runs."""

import textwrap

import pytest

from edgeorch import health, pipeline
from edgeorch.errors import ConfigError
from edgeorch.inventory import load_inventory


@pytest.fixture
def inventory(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEORCH_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "inventory.yaml"
    path.write_text(textwrap.dedent("""
        boards:
          - {name: pi3, host: 10.0.0.1, port: 22, user: pi, arch: armv7, groups: [lab]}
          - {name: pi4, host: 10.0.0.2, port: 22, user: pi, arch: arm64, groups: [lab]}
    """))
    return load_inventory(path)


def test_a_group_skips_an_unhealthy_board_and_says_why(inventory, capsys):
    health.record(inventory, {"pi3": ["no working Docker engine"], "pi4": []})
    assert [b.name for b in pipeline.healthy_boards(inventory, "lab")] == ["pi4"]
    out = capsys.readouterr().out
    assert "skipping pi3" in out and "no working Docker engine" in out and "--host pi3" in out


def test_a_board_named_outright_runs_whatever_its_last_check_said(inventory):
    health.record(inventory, {"pi3": ["no working Docker engine"]})
    assert [b.name for b in pipeline.healthy_boards(inventory, "pi3,pi4")] == ["pi3", "pi4"]


def test_a_board_that_was_never_checked_or_is_fixed_runs(inventory):
    assert len(pipeline.healthy_boards(inventory, "lab")) == 2
    health.record(inventory, {"pi3": ["unreachable"]})
    health.record(inventory, {"pi3": []})  # fixed, checked again
    assert len(pipeline.healthy_boards(inventory, "lab")) == 2


def test_a_group_of_only_unhealthy_boards_is_refused(inventory):
    health.record(inventory, {"pi3": ["x"], "pi4": ["y"]})
    with pytest.raises(ConfigError, match="unhealthy"):
        pipeline.healthy_boards(inventory, "lab")


def test_another_inventory_with_a_board_of_the_same_name_is_not_affected(inventory, tmp_path):
    health.record(inventory, {"pi3": ["x"]})
    other = tmp_path / "other.yaml"
    other.write_text("boards:\n  - {name: pi3, host: 10.0.0.9, port: 22, user: pi, arch: armv7, groups: [lab]}\n")
    assert len(pipeline.healthy_boards(load_inventory(other), "lab")) == 1
