"""What the paired verdict promises, measured on synthetic cells: A/A false positives and power at +3%.

    .venv/bin/python benchmarks/verdicts.py [--cells N] [--seed S]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from edgeorch import stats

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1000, help="synthetic cells per setting (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-fleet", action="store_true", default=True,
                        help="skip measurements on the fleet (the only behaviour for now)")
    args = parser.parse_args()
    started = time.perf_counter()
    synthetic_section(args)
    print(f"{time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
