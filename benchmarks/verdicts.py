"""What the paired verdict promises, measured on synthetic cells: A/A false positives and power at +3%; and on
the x86 simulated board, the seconds of benchmarking a Docker-vs-bare cell needs to reach a ±1% interval.

    .venv/bin/python benchmarks/verdicts.py [--cells N] [--seed S] [--no-fleet] [--model M] [--host H]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edgeorch import stats
from edgeorch.pipeline import comparison

OFFSETS = (0.01, 0.02, 0.03)
RHOS = (0.0, 0.5, 0.9)
SLOWDOWN = 1.03


def kinds(cells, *wanted):
    return 100 * sum(v.kind in wanted for v, _ in cells) / len(cells)


def mean_pairs(cells):
    return sum(n for _, n in cells) / len(cells)


def synthetic_section(args) -> None:
    print(f"{args.cells} cells per setting; defaults: min {stats.MIN_PAIRS} / max {stats.MAX_PAIRS} pairs, "
          f"precision {stats.PRECISION:.0%}, equivalence ±{stats.EQUIVALENCE:.0%}, {stats.CONFIDENCE:.0%} CI")
    header = (f"{'offset':>6} {'rho':>4} | {'A/A FP':>7} {'equiv':>6} {'pairs':>5} | "
              f"{'+3% slower':>10} {'pairs':>5}")
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(args.seed)
    for offset in OFFSETS:
        for rho in RHOS:
            aa = stats.simulate_cells(rng, args.cells, true_ratio=1.0, run_offset=offset, rho=rho)
            ab = stats.simulate_cells(rng, args.cells, true_ratio=SLOWDOWN, run_offset=offset, rho=rho)
            print(f"{offset:>6.0%} {rho:>4.1f} | {kinds(aa, 'slower', 'faster'):>6.1f}% "
                  f"{kinds(aa, 'equivalent'):>5.1f}% {mean_pairs(aa):>5.1f} | "
                  f"{kinds(ab, 'slower'):>9.1f}% {mean_pairs(ab):>5.1f}")


def fleet_section(args) -> None:
    """A real cell on the x86 board (the fleet must be up: invoke sim.up), default stopping rule."""
    invoke = Path(sys.executable).parent / "invoke"
    cmd = [str(invoke), "bench", "--inventory", args.inventory, "--host", args.host, "--framework", "tflite",
           "--model", args.model, "--max-time", str(args.max_time)]
    print("\n+ " + " ".join(cmd[1:]))
    started = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    wall = time.perf_counter() - started
    found = re.search(r"results go to (\S+)", r.stdout)
    if r.returncode != 0 or not found:
        print(f"the bench failed (exit {r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
        return
    run_dir = Path(found.group(1))
    cell = json.loads((run_dir / "manifest.json").read_text())["cells"][f"{args.host}/tflite-{args.model}"]
    row = comparison(run_dir).iloc[0]
    half = row["half_width"]
    to_one = wall * (half / 0.01) ** 2  # the half-width shrinks as 1/sqrt(pairs)
    print(f"{args.host} {args.model}: {cell['pairs']} pairs in {wall:.0f} s (timed inferences {row['timed_s']:.0f} s), "
          f"stopped by {cell['stop']}; CI half-width ±{half:.2%}, noise (sd of pair log ratios) {row['noise']:.2%}")
    print(f"seconds to ±1%: {to_one:.0f}" + (" (reached)" if half <= 0.01 else " (extrapolated as 1/sqrt(n))"))
    print(f"verdict: {row['verdict']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1000, help="synthetic cells per setting (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-fleet", action="store_true", help="synthetic cells only")
    parser.add_argument("--model", default="mobilenet_v2", help="the model of the fleet cell (default mobilenet_v2)")
    parser.add_argument("--max-time", type=float, default=900, help="bound of the fleet cell in seconds")
    parser.add_argument("--host", default="x86", help="the board of the fleet cell (default: the x86 sim board)")
    parser.add_argument("--inventory", default="inventory.yaml")
    args = parser.parse_args()
    started = time.perf_counter()
    synthetic_section(args)
    print(f"{time.perf_counter() - started:.1f} s")
    if not args.no_fleet:
        fleet_section(args)


if __name__ == "__main__":
    main()
