"""What a board is, asked over SSH: its OS release, Python, glibc and arch (what its images and wheels are chosen
by), and the facts `invoke check` reports (Docker, numpy, free disk, sensors) with the problems they show."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import fabric

from . import images
from .arch import Arch
from .deploy import board_layers, first_to_send, image_on_board, prepare_workdir
from .errors import BoardError, ConfigError, RunTimeout
from .inventory import Board
from .plan import MODE_SETS, plan_target
from .releases import Platform, parse_os_release
from .transport import remote, sh

# What the images and wheels are chosen by: the interpreter ($1), its arch and glibc, and the OS release. The
# interpreter is bounded on the board ($3 s: killed there, not left behind) and its answer marked, so that a
# banner it prints is not taken for its version.
_PLATFORM_SCRIPT = r"""
probe='import platform as p, struct as s
print("edgeorch:", p.python_version(), p.machine(), s.calcsize("P") * 8, p.libc_ver()[1])'
out=$(timeout -s KILL "${3:-60}" "$1" -c "$probe" 2>&1)
echo "python_exit=$?"
echo "python=$(printf '%s\n' "$out" | sed -n 's/^edgeorch: //p' | head -n 1)"
echo "python_said=$(printf '%s' "$out" | grep -v '^edgeorch: ' | tail -n 1)"
sed -n 's/^\(ID\|VERSION_CODENAME\|PRETTY_NAME\)=/os_&/p' /etc/os-release 2>/dev/null
"""


_FACTS_SCRIPT = _PLATFORM_SCRIPT + r"""
cd -- "$2" || exit 1
py=$1
echo "venv=$("$py" -c 'import venv, ensurepip' 2>/dev/null && echo yes)"
echo "numpy=$("$py" -c 'import numpy;print(numpy.__version__)' 2>/dev/null)"
echo "docker=$(docker version --format '{{.Server.Version}}' 2>/dev/null)"
echo "disk_free_kb=$(df -Pk . | awk 'NR==2{print $4}')"
echo "thermal_zones=$(ls -d /sys/class/thermal/thermal_zone* 2>/dev/null | wc -l)"
echo "cpufreq_cpus=$(ls -d /sys/devices/system/cpu/cpu[0-9]*/cpufreq 2>/dev/null | wc -l)"
echo "vcgencmd=$(command -v vcgencmd)"
"""


@dataclass(frozen=True, kw_only=True)
class BoardFacts:
    """What a board is, as `invoke check` reports it: each fact None where the board did not say."""
    board: str
    arch_ok: bool
    arch_found: str          # the arch of its Python's userland, or why none was found
    python: str | None
    python_exit: str         # its Python's exit status when asked, as the shell gave it
    python_said: str         # the last line it printed besides its version
    os: str | None
    platform: Platform | None  # what its images and wheels are chosen by
    docker: str | None
    venv: bool
    numpy: str | None
    disk_free_mb: int | None  # decimal MB, as every deploy figure
    sensors: str
    frameworks: tuple[str, ...] = ()  # each of its `frameworks:` with the version it would get, or why none
    needs_mb: int | None = 0  # what a deploy of them takes of its disk; None where an image is not built here yet
    problems: tuple[str, ...] = ()


def _userland(py: list[str], board: Board) -> tuple[bool, str]:
    """Whether the Python's arch is the inventory's, and what it is (or why none was found)."""
    if len(py) < 3:
        return False, f"no {board.python}"
    try:
        found = Arch.from_userland(py[1], int(py[2])).value
    except ValueError:
        found = f"{py[1]}/{py[2]}-bit"
    return found == board.arch.value, found


def _sensors(raw: dict[str, str]) -> str:
    """The thermal, frequency and firmware sensors a board has, or `none`."""
    found = [f"{label} x{raw.get(key, '').strip()}" for key, label in (("thermal_zones", "thermal"),
                                                                    ("cpufreq_cpus", "cpufreq"))
             if raw.get(key, "0").strip() not in ("", "0")]
    return ", ".join(found + (["vcgencmd"] if raw.get("vcgencmd") else [])) or "none"


def parse_board_facts(text: str, board: Board) -> BoardFacts:
    """A board's facts, from the facts script's key=value lines, with the problems they show."""
    raw = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    py = raw.get("python", "").split()
    arch_ok, arch_found = _userland(py, board)
    python = py[0] if len(py) >= 3 else None
    release = parse_os_release("\n".join(f"{k[3:]}={v}" for k, v in raw.items() if k.startswith("os_")))
    glibc = tuple(int(x) for x in py[3].split(".")[:2]) if len(py) == 4 and py[3][:1].isdigit() else None
    platform = Platform(os_id=release.get("ID", ""), codename=release.get("VERSION_CODENAME", ""),
                        pretty=release.get("PRETTY_NAME") or "an unknown OS",
                        python=".".join(python.split(".")[:2]), glibc=glibc) if python and glibc else None
    disk = raw.get("disk_free_kb", "")
    facts = BoardFacts(board=board.name, arch_ok=arch_ok, arch_found=arch_found, python=python,
                       python_exit=raw.get("python_exit", "?"), python_said=raw.get("python_said", "").strip(),
                       os=release.get("PRETTY_NAME") or None, platform=platform, docker=raw.get("docker") or None,
                       venv=raw.get("venv") == "yes", numpy=raw.get("numpy") or None,
                       disk_free_mb=int(disk) * 1024 // 10**6 if disk.isdigit() else None, sensors=_sensors(raw))
    problems = []
    if not facts.arch_ok:
        problems.append(f"inventory says {board.arch.value}, board runs {facts.arch_found}: fix its `arch:`")
    if not facts.docker:
        problems.append("no working Docker engine")
    if not facts.venv or not facts.numpy:
        problems.append(f"{board.python} lacks venv/ensurepip or numpy (apt-get install python3-venv python3-numpy)")
    return dataclasses.replace(facts, problems=tuple(problems))


def board_facts(conn: fabric.Connection, board: Board) -> BoardFacts:
    """What the check task reports for one board."""
    workdir = prepare_workdir(conn, board)
    r = remote(conn, sh(_FACTS_SCRIPT, board.python, workdir), board=board.name, warn=True)
    return parse_board_facts(r.stdout, board)


def board_platform(conn: fabric.Connection, board: Board, limit: float = 60) -> Platform:
    """The board's OS release, Python and glibc: what its images and wheels are chosen for. Its Python has `limit`
    seconds to answer."""
    r = remote(conn, sh(_PLATFORM_SCRIPT, board.python, "", str(round(limit))), board=board.name, warn=True,
               timeout=limit + 30)
    facts = parse_board_facts(r.stdout, board)
    code, said = facts.python_exit, facts.python_said
    if code in ("124", "137"):
        raise RunTimeout(f"board {board.name}: its Python `{board.python}` did not finish within {round(limit)} s "
                         "when asked its version", hint="the board may be overloaded, or `python:` hung; check it "
                                                         f"with `invoke check --host {board.name}`")
    if facts.platform is None:
        raise BoardError(f"board {board.name}: its Python `{board.python}` could not start (exit {code})"
                         + (f": {said}" if said else ""),
                         hint="check `python:` of the board in the inventory (`invoke check --host "
                              f"{board.name}` shows what the board has), or install Python 3 there")
    return facts.platform


def check_board(conn: fabric.Connection, board: Board, client, recipes: dict, bases: dict) -> BoardFacts:
    """The board's facts, with the version of each of its frameworks it would get (or why none) and what a deploy
    of them would take of its disk (None where an image is not built here yet)."""
    facts = board_facts(conn, board)
    frameworks, problems, needs, held = [], list(facts.problems), 0, None
    for name in board.frameworks if facts.platform and facts.arch_ok else ():
        try:  # what `deploy` would give the board, or why it cannot
            target = plan_target(recipes[name], board, facts.platform, bases,
                                 MODE_SETS["both"]) if name in recipes else None
            frameworks.append(f"{name} {target.build.version}" if target else f"{name}: no recipe")
        except ConfigError as e:
            problems.append(e.message.split(": ", 1)[-1])
            continue
        layers = images.built_layers(client, target) if client and target and facts.docker else None
        if layers is None or needs is None:
            needs = None  # not built here yet
        elif image_on_board(conn, board, layers.image_id) is None:  # the archive, then the layers loaded
            held = held or board_layers(conn, board)  # asked once per board
            needs += 2 * layers.bytes_from(first_to_send(held, layers))
    needs_mb = None if needs is None else -(-needs // 10**6)
    if needs_mb and facts.disk_free_mb is not None and needs_mb > facts.disk_free_mb:
        problems.append(f"{facts.disk_free_mb} MB free, a deploy of its frameworks needs {needs_mb} MB: free space "
                        f"(invoke clean --host {board.name})")
    return dataclasses.replace(facts, frameworks=tuple(frameworks), needs_mb=needs_mb, problems=tuple(problems))
