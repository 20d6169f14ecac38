"""edgeorch.arch: names of an architecture, the userland a board really runs, wheel platform tags."""

import re

import pytest

from edgeorch.arch import GLIBC, Arch, wheel_platforms


@pytest.mark.parametrize("text, arch", [
    ("arm64", Arch.ARM64), ("aarch64", Arch.ARM64), ("arm64v8", Arch.ARM64), ("linux/arm64", Arch.ARM64),
    ("armv7", Arch.ARMV7), ("armv7l", Arch.ARMV7), ("armhf", Arch.ARMV7), ("arm", Arch.ARMV7),
    ("arm32v7", Arch.ARMV7), ("linux/arm/v7", Arch.ARMV7),
    ("amd64", Arch.AMD64), ("x86_64", Arch.AMD64), ("x86-64", Arch.AMD64), ("linux/amd64", Arch.AMD64),
    (" AArch64\n", Arch.ARM64),
])
def test_parse(text, arch):
    assert Arch.parse(text) is arch


@pytest.mark.parametrize("text", ["riscv64", "i386", "armv6l", "", "linux/arm"])
def test_parse_unknown(text):
    with pytest.raises(ValueError):
        Arch.parse(text)


def test_every_arch_round_trips_through_its_names():
    for arch in Arch:
        assert Arch.parse(arch.info.docker_platform) is arch
        assert Arch.from_userland(arch.info.machine, arch.info.bits) is arch


@pytest.mark.parametrize("machine, bits, arch", [
    # Raspberry Pi OS 32-bit on a 64-bit kernel: the kernel says aarch64, the userland is armv7.
    ("aarch64", 32, Arch.ARMV7),
    ("armv8l", 32, Arch.ARMV7),
    ("aarch64", 64, Arch.ARM64),
    ("arm64", 64, Arch.ARM64),
    ("armv7l", 32, Arch.ARMV7),
    ("x86_64", 64, Arch.AMD64),
])
def test_from_userland(machine, bits, arch):
    assert Arch.from_userland(machine, bits) is arch


@pytest.mark.parametrize("machine, bits", [("riscv64", 64), ("mips", 32), ("i686", 32)])
def test_from_userland_unknown(machine, bits):
    with pytest.raises(ValueError):
        Arch.from_userland(machine, bits)


def glibc_of(tag: str) -> tuple[int, int]:
    if tag.startswith("manylinux2014_"):
        return (2, 17)
    major, minor = re.match(r"manylinux_(\d+)_(\d+)_", tag).groups()
    return int(major), int(minor)


@pytest.mark.parametrize("arch", list(Arch))
def test_wheel_platforms_newest_first_and_not_newer_than_the_image(arch):
    tags = wheel_platforms(arch)
    assert all(t.endswith("_" + arch.info.wheel_machine) for t in tags)
    levels = [glibc_of(t) for t in tags]
    assert levels[0] == GLIBC == (2, 36)
    assert levels == sorted(levels, reverse=True)
    assert len(set(tags)) == len(tags)


def test_wheel_platforms_contain_the_tags_pip_needs():
    assert "manylinux_2_34_aarch64" in wheel_platforms(Arch.ARM64)
    assert "manylinux_2_17_aarch64" in wheel_platforms(Arch.ARM64)
    assert "manylinux2014_x86_64" in wheel_platforms(Arch.AMD64)
    assert "manylinux2014_armv7l" in wheel_platforms(Arch.ARMV7)
    assert "manylinux_2_37_aarch64" not in wheel_platforms(Arch.ARM64)


def test_wheel_platforms_for_an_older_glibc():
    tags = wheel_platforms(Arch.AMD64, glibc=(2, 28))
    assert tags[0] == "manylinux_2_28_x86_64"
    assert "manylinux_2_31_x86_64" not in tags
