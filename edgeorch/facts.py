"""What a board is, asked over SSH: its OS release, Python, glibc and arch (what its images and wheels are chosen
by), and the facts `invoke check` reports (Docker, numpy, free disk, sensors) with the problems they show."""

from __future__ import annotations

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


def parse_board_facts(text: str, board: Board) -> dict:
    """The check task's row for a board, from the facts script's key=value lines."""
    raw = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    row = {"board": board.name, "reachable": True, "arch": board.arch.value}
    py = raw.get("python", "").split()
    if len(py) >= 3:
        row["python"] = py[0]
        try:
            found = Arch.from_userland(py[1], int(py[2])).value
        except ValueError:
            found = f"{py[1]}/{py[2]}-bit"
        row["arch_ok"] = found == board.arch.value
        row["arch_found"] = found
    else:
        row.update(python=None, arch_ok=False, arch_found=f"no {board.python}")
    release = parse_os_release("\n".join(f"{k[3:]}={v}" for k, v in raw.items() if k.startswith("os_")))
    glibc = tuple(int(x) for x in py[3].split(".")[:2]) if len(py) == 4 and py[3][:1].isdigit() else None
    row["os"] = release.get("PRETTY_NAME") or None
    row["platform"] = Platform(os_id=release.get("ID", ""), codename=release.get("VERSION_CODENAME", ""),
                               pretty=release.get("PRETTY_NAME") or "an unknown OS",
                               python=".".join(py[0].split(".")[:2]), glibc=glibc) if row["python"] and glibc else None
    row["python_exit"], row["python_said"] = raw.get("python_exit", "?"), raw.get("python_said", "").strip()
    row["docker"] = raw.get("docker") or None
    row["venv"] = raw.get("venv") == "yes"
    row["numpy"] = raw.get("numpy") or None
    disk = raw.get("disk_free_kb", "")
    row["disk_free_gb"] = round(int(disk) / 2**20, 1) if disk.isdigit() else None
    sensors = []
    if raw.get("thermal_zones", "0").strip() not in ("", "0"):
        sensors.append(f"thermal x{raw['thermal_zones'].strip()}")
    if raw.get("cpufreq_cpus", "0").strip() not in ("", "0"):
        sensors.append(f"cpufreq x{raw['cpufreq_cpus'].strip()}")
    if raw.get("vcgencmd"):
        sensors.append("vcgencmd")
    row["sensors"] = ", ".join(sensors) or "none"
    problems = []
    if not row["arch_ok"]:
        problems.append(f"inventory says {board.arch.value}, board runs {row['arch_found']}: fix its `arch:`")
    if not row["docker"]:
        problems.append("no working Docker engine")
    if not row["venv"] or not row["numpy"]:
        problems.append(f"{board.python} lacks venv/ensurepip or numpy (apt-get install python3-venv python3-numpy)")
    row["problems"] = problems
    return row


def board_facts(conn: fabric.Connection, board: Board) -> dict:
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
    code, said = facts["python_exit"], facts["python_said"]
    if code in ("124", "137"):
        raise RunTimeout(f"board {board.name}: its Python `{board.python}` did not finish within {round(limit)} s "
                         "when asked its version", hint="the board may be overloaded, or `python:` hung; check it "
                                                         f"with `invoke check --host {board.name}`")
    if facts["platform"] is None:
        raise BoardError(f"board {board.name}: its Python `{board.python}` could not start (exit {code})"
                         + (f": {said}" if said else ""),
                         hint="check `python:` of the board in the inventory (`invoke check --host "
                              f"{board.name}` shows what the board has), or install Python 3 there")
    return facts["platform"]


def check_board(conn: fabric.Connection, board: Board, client, recipes: dict, bases: dict) -> dict:
    """The check task's row for a board: its facts, the version of each of its frameworks it would get (or why
    none), and what a deploy of them would take of its disk (None where an image is not built here yet)."""
    row = board_facts(conn, board)
    row["frameworks"], row["needs"], held = [], 0, None
    for name in board.frameworks if row["platform"] and row["arch_ok"] else ():
        try:  # what `deploy` would give the board, or why it cannot
            target = plan_target(recipes[name], board, row["platform"], bases,
                                 MODE_SETS["both"]) if name in recipes else None
            row["frameworks"].append(f"{name} {target.build.version}" if target else f"{name}: no recipe")
        except ConfigError as e:
            row["problems"].append(e.message.split(": ", 1)[-1])
            continue
        layers = images.built_layers(client, target) if client and target and row["docker"] else None
        if layers is None or row["needs"] is None:
            row["needs"] = None  # not built here yet
        elif image_on_board(conn, board, layers.image_id) is None:  # the archive, then the layers loaded
            held = held or board_layers(conn, board)  # asked once per board
            row["needs"] += 2 * layers.bytes_from(first_to_send(held, layers))
    free = (row["disk_free_gb"] or 0) * 2**30
    if row["needs"] and row["disk_free_gb"] is not None and row["needs"] > free:
        row["problems"].append(f"{row['disk_free_gb']} GB free, a deploy of its frameworks needs "
                               f"{row['needs'] / 2**30:.1f} GB: free space (invoke clean --host {board.name})")
    return row
