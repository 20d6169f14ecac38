"""The farm's cost, from one place to as many as fit: a labgrid coordinator on loopback with N places, each board
held through the farm (reserve, lock, lease, release) for a known time, all side by side as a parallel sweep holds
them. For each N it prints the farm's cost per board (reserve and lock, then release: median and worst), the sweep's
wall time against its slowest board's, and the farm's overhead (their difference). Then two sweeps of the same
boards at once: the second waits in labgrid's queue, so together they take two boards' times, not one.

    .venv/bin/python benchmarks/farm.py [--sizes 1,4,16,64,256] [--work 2.0]
    .venv/bin/python benchmarks/farm.py --boards 127.0.0.1:20408 [--inventory inventory.yaml]

With --boards, the sim boards of the inventory that are places of that farm (`invoke sim.up`, then `invoke farm.up`)
are held for real, one after the other, ten times each: the farm's hold, then the board's SSH connection and
edgeorch's own lock on it, one command there, and the release; beside it the same without the farm. It prints the
farm's cost per board against what holding a board costs anyway.

A board's work here is a sleep of its time (the slowest: --work seconds; the others up to 10% less). A real sweep's
runs use the boards' own CPUs, not this host's; on the simulated fleet, whose boards share this host's two cores,
real runs side by side would measure the host, not the farm. What is measured is labgrid's queue and edgeorch's
holds, on loopback: a lab adds its network's round trips to each of the few calls a hold makes.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402

from edgeorch.console import Reporter  # noqa: E402
from edgeorch.errors import SetupError  # noqa: E402
from edgeorch.farm import Farm  # noqa: E402

QUIET = Reporter(Console(quiet=True))


def coordinator(where: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    proc = subprocess.Popen([Path(sys.executable).parent / "labgrid-coordinator", "--listen", address], cwd=where,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            Farm(address, timeout=2).close()
            return proc, address
        except SetupError:
            time.sleep(0.1)
    raise SystemExit(f"labgrid-coordinator did not start on {address}")


def sweep(lab: Farm, names: list[str], work: float) -> tuple[float, list[float]]:
    """Every board held side by side for its time; the wall time and each board's farm cost (hold and release)."""
    times = {name: work * (0.9 + 0.1 * (i + 1) / len(names)) for i, name in enumerate(names)}

    def one(name: str) -> float:
        start = time.monotonic()
        with lab.hold(name, wait_timeout=600, out=QUIET):
            held = time.monotonic()
            time.sleep(times[name])
            done = time.monotonic()
        return (held - start) + (time.monotonic() - done)

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        costs = list(pool.map(one, names))
    return time.monotonic() - start, costs


def boards(coordinator: str, inventory: Path, times: int = 10) -> None:
    """Each sim board held through the farm and directly, `times` times each, side by side."""
    from edgeorch.farm import farm_boards, held_link
    from edgeorch.inventory import load_inventory
    from edgeorch.transport import remote

    def hold(board, lab) -> float:
        start = time.monotonic()
        with held_link(board, lab, token="benchmark", purpose="benchmark", wait_timeout=60, out=QUIET) as link:
            remote(link.conn, ["true"], board=board.name)
        return time.monotonic() - start

    with Farm(coordinator) as lab:
        found = [b for b in farm_boards(load_inventory(inventory), "all", lab, QUIET) if b.sim]
        print(f"{'board':<14}  {'through the farm s':>18}  {'directly s':>10}  {'the farm adds s':>15}  (medians of "
              f"{times})")
        for board in found:
            farmed = statistics.median(hold(board, lab) for _ in range(times))
            alone = statistics.median(hold(board, None) for _ in range(times))
            print(f"{board.name:<14}  {farmed:>18.3f}  {alone:>10.3f}  {farmed - alone:>15.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,4,16,64,256", help="numbers of places, comma separated")
    parser.add_argument("--work", type=float, default=2.0, help="the slowest board's time, seconds")
    parser.add_argument("--boards", metavar="COORDINATOR", help="hold the inventory's sim boards through this farm")
    parser.add_argument("--inventory", type=Path, default=ROOT / "inventory.yaml")
    args = parser.parse_args()
    if args.boards:
        return boards(args.boards, args.inventory)
    sizes = [int(n) for n in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as where:
        proc, address = coordinator(Path(where))
        try:
            with Farm(address) as lab:
                names = [f"p{i:03d}" for i in range(max(sizes))]
                for name in names:
                    lab.add_place(name, {"board": name})
                print(f"labgrid coordinator {address}; each board's work up to {args.work:g} s (a sleep)")
                print(f"{'places':>6}  {'farm s/board (median, worst)':>28}  {'sweep s':>8}  {'/ slowest':>9}  "
                      f"{'overhead s':>10}")
                for n in sizes:
                    wall, costs = sweep(lab, names[:n], args.work)
                    print(f"{n:>6}  {statistics.median(costs):>13.3f}, {max(costs):>12.3f}  {wall:>8.2f}  "
                          f"{wall / args.work:>9.3f}  {wall - args.work:>10.3f}")
                n = min(4, max(sizes))
                with ThreadPoolExecutor(max_workers=2) as pool:
                    start = time.monotonic()
                    list(pool.map(lambda _: sweep(lab, names[:n], args.work), range(2)))
                    both = time.monotonic() - start
                print(f"two sweeps of the same {n} boards at once: {both:.2f} s = {both / args.work:.2f} x the "
                      "slowest board (queued one after the other: about 2; never 1, which would mean they overlapped)")
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
