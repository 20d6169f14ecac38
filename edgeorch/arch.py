"""Board architectures and the one table mapping them to Docker, Debian, wheel and kernel names."""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class ArchInfo:
    docker_platform: str
    debian_arch: str
    wheel_machine: str   # the machine part of manylinux wheel tags
    machine: str         # what platform.machine() prints in a native userland
    qemu: str | None     # qemu-user binary needed on an x86 host, None when native there
    bits: int


class Arch(enum.Enum):
    ARM64 = "arm64"
    ARMV7 = "armv7"
    AMD64 = "amd64"

    @property
    def info(self) -> ArchInfo:
        return _TABLE[self]

    @classmethod
    def parse(cls, text: str) -> Arch:
        """The Arch named `text` (arm64, armv7, amd64 or an alias); ValueError if none."""
        key = text.strip().lower()
        for arch in cls:
            if key == arch.value or key in _ALIASES[arch]:
                return arch
        raise ValueError(text)

    @classmethod
    def from_userland(cls, machine: str, bits: int) -> Arch:
        """The Arch of a running userland, from platform.machine() and its pointer size."""
        # A Raspberry Pi OS 32-bit install often runs a 64-bit kernel: machine says aarch64,
        # but the userland (and so every wheel and image) is armv7.
        if machine in ("aarch64", "arm64", "armv8l") and bits == 32:
            return cls.ARMV7
        return cls.parse(machine)


_TABLE = {
    Arch.ARM64: ArchInfo(docker_platform="linux/arm64", debian_arch="arm64", wheel_machine="aarch64",
                         machine="aarch64", qemu="qemu-aarch64", bits=64),
    Arch.ARMV7: ArchInfo(docker_platform="linux/arm/v7", debian_arch="armhf", wheel_machine="armv7l",
                         machine="armv7l", qemu="qemu-arm", bits=32),
    Arch.AMD64: ArchInfo(docker_platform="linux/amd64", debian_arch="amd64", wheel_machine="x86_64",
                         machine="x86_64", qemu=None, bits=64),
}

_ALIASES = {
    Arch.ARM64: ("aarch64", "arm64v8", "linux/arm64"),
    Arch.ARMV7: ("armv7l", "armhf", "arm", "arm32v7", "linux/arm/v7"),
    Arch.AMD64: ("x86_64", "x86-64", "linux/amd64"),
}

# glibc of the Debian release our images use (bookworm); wheels tagged for any older
# manylinux level run on it. pip's --platform does not expand these itself.
GLIBC = (2, 36)  # Debian bookworm's


def wheel_platforms(arch: Arch, glibc: tuple[int, int] = GLIBC) -> list[str]:
    """Every manylinux platform tag a wheel may carry to install on `arch`, newest first."""
    m = arch.info.wheel_machine
    tags = [f"manylinux_{glibc[0]}_{minor}_{m}" for minor in range(glibc[1], 16, -1)]
    return tags + [f"manylinux2014_{m}"]
