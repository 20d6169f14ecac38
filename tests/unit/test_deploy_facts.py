"""edgeorch.facts.parse_board_facts: the `check` task's verdict on a board from its facts script output."""

import pytest

from edgeorch.arch import Arch
from edgeorch.facts import parse_board_facts
from edgeorch.inventory import Board

HEALTHY = """\
python=3.11.2 aarch64 64
venv=yes
numpy=1.24.2
docker=20.10.24
disk_free_kb=10485760
thermal_zones=1
cpufreq_cpus=4
vcgencmd=/usr/bin/vcgencmd
"""


def facts(text=HEALTHY, arch=Arch.ARM64, **lines):
    """parse_board_facts on HEALTHY with some `key=value` lines replaced."""
    for key, value in lines.items():
        text = "\n".join(f"{key}={value}" if line.startswith(f"{key}=") else line for line in text.splitlines())
    return parse_board_facts(text, Board(name="rpi4", host="10.0.0.4", user="pi", arch=arch))


def test_healthy_board():
    row = facts()
    assert row.problems == ()
    assert (row.board, row.arch_ok, row.arch_found) == ("rpi4", True, "arm64")
    assert (row.python, row.numpy, row.docker, row.venv) == ("3.11.2", "1.24.2", "20.10.24", True)
    assert row.disk_free_mb == 10737  # 10485760 KiB: 10 GiB, in decimal MB as every deploy figure
    assert row.sensors == "thermal x1, cpufreq x4, vcgencmd"


def test_32_bit_userland_on_a_64_bit_kernel():
    row = facts(python="3.11.2 aarch64 32")
    assert (row.arch_ok, row.arch_found) == (False, "armv7")
    assert row.problems == ("inventory says arm64, board runs armv7: fix its `arch:`",)
    assert facts(python="3.11.2 aarch64 32", arch=Arch.ARMV7).problems == ()


def test_unknown_userland_is_shown_as_found():
    row = facts(python="3.11.2 riscv64 64")
    assert row.arch_found == "riscv64/64-bit"
    assert "board runs riscv64/64-bit" in row.problems[0]


def test_no_docker():
    row = facts(docker="")
    assert row.docker is None
    assert row.problems == ("no working Docker engine",)


def test_no_python():
    row = facts(python="", venv="", numpy="")
    assert (row.python, row.arch_ok, row.arch_found) == (None, False, "no python3")
    assert len(row.problems) == 2
    assert "python3-venv python3-numpy" in row.problems[1]


@pytest.mark.parametrize("lines", [dict(venv=""), dict(numpy="")])
def test_missing_venv_or_numpy(lines):
    assert facts(**lines).problems == (
        "python3 lacks venv/ensurepip or numpy (apt-get install python3-venv python3-numpy)",)


def test_a_board_without_sensors():
    assert facts(thermal_zones="0", cpufreq_cpus="      0", vcgencmd="").sensors == "none"
    assert facts(thermal_zones="       3", vcgencmd="").sensors == "thermal x3, cpufreq x4"


def test_unreadable_disk_and_empty_output():
    assert facts(disk_free_kb="").disk_free_mb is None
    row = parse_board_facts("", Board(name="b", host="h", user="u", arch=Arch.AMD64))
    assert row.sensors == "none" and len(row.problems) == 3
