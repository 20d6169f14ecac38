"""What a board runs (its OS release, Python and glibc) and the Debian base its images are built on."""

from __future__ import annotations

from dataclasses import dataclass

from .recipes import BaseRecipe

# The Debian release each Ubuntu LTS was made from: its nearest Debian base.
UBUNTU = {"focal": "bullseye", "jammy": "bookworm", "noble": "trixie"}


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version.split(".") if x.isdigit())


@dataclass(frozen=True, kw_only=True)
class Platform:
    """A board's userland: /etc/os-release, and the Python (major.minor) and glibc that run edgeorch there."""
    os_id: str       # ID: debian, raspbian (Raspberry Pi OS 32-bit), ubuntu, ...
    codename: str    # VERSION_CODENAME: bookworm, trixie, noble, ...
    pretty: str      # PRETTY_NAME, as the results show it
    python: str
    glibc: tuple[int, int]


def parse_os_release(text: str) -> dict[str, str]:
    """KEY=value lines of /etc/os-release, quotes removed."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip().isidentifier():
            out[key.strip()] = value.strip().strip("'\"")
    return out


def nearest_base(platform: Platform, bases: dict[str, BaseRecipe]) -> tuple[str, str | None]:
    """The Debian release (a key of `bases`) whose image suits the board, and a note when it is not the board's own
    release: Raspberry Pi OS and Debian map to their own release, Ubuntu to the one it was made from, anything else
    to the base whose Python is nearest the board's."""
    if platform.codename in bases and platform.os_id in ("debian", "raspbian"):
        return platform.codename, None
    suite = UBUNTU.get(platform.codename) if platform.os_id == "ubuntu" else None
    if suite not in bases:
        want = version_key(platform.python)
        suite = min(bases, key=lambda s: (abs(version_key(bases[s].python)[1] - want[1]) if len(want) > 1 else 0,
                                          -version_key(bases[s].python)[1]))
    return suite, (f"{platform.pretty} has no Debian base of its own: the images use Debian {suite}, the nearest "
                   f"(Python {bases[suite].python} in Docker, {platform.python} on the board)")
