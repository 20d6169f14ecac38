"""What the paired verdict promises, measured on synthetic cells: A/A false positives and power at +3%; the same for
a change across runs (results.compare), with and without a shift between the two sessions; and on the x86 simulated
board, the seconds of benchmarking a Docker-vs-bare cell needs to reach a ±1% interval.

    .venv/bin/python benchmarks/verdicts.py [--cells N] [--seed S] [--no-fleet] [--model M] [--host H]
        [--sessions K [--session-pairs N]]
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
from edgeorch.analysis import comparison

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


def across_runs_section(args) -> None:
    """results.compare: two runs (sessions) of one cell, each run's median a lognormal draw, each session shifted as a
    whole (another boot, another room temperature), which no spread inside either shows: the shift is assumed
    (stats.SESSION_SD), or estimated from the cell's history of six runs."""
    print(f"\nacross runs (results.compare): {args.cells} comparisons per setting, {stats.CONFIDENCE:.0%} interval on "
          f"run medians, equivalence ±{stats.EQUIVALENCE:.0%}; shift assumed ±{stats.SESSION_SD:.1%} or estimated "
          "from 6 runs of the cell")
    header = (f"{'runs':>4} {'offset':>6} {'shift':>5} | {'A/A FP assumed':>14} {'estimated':>9} | "
              f"{'+5% found assumed':>17} {'estimated':>9}")
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(args.seed + 1)
    history = 6
    for runs in (5, 8, 20):
        for offset in (0.01, 0.03):
            for shift in (0.0, 0.005, 0.01, 0.03):
                rates = {}
                for ratio in (1.0, 1.05):
                    level = np.exp(shift * rng.standard_normal((args.cells, history)))
                    noise = np.exp(offset * rng.standard_normal((args.cells, history, runs)))
                    medians = 20.0 * level[..., None] * noise
                    medians[:, -1] *= ratio  # the newest run changed by `ratio`
                    for how in ("assumed", "estimated"):
                        kinds = [stats.change(m[-2], m[-1], **({} if how == "assumed" else {
                            "session": stats.session_sd(m[:-1]) or (stats.SESSION_SD, float("inf"))}))[1].kind
                            for m in medians]
                        wanted = ("slower", "faster") if ratio == 1.0 else ("slower",)
                        rates[ratio, how] = 100 * sum(k in wanted for k in kinds) / args.cells
                print(f"{runs:>4} {offset:>6.0%} {shift:>5.1%} | {rates[1.0, 'assumed']:>13.1f}% "
                      f"{rates[1.0, 'estimated']:>8.1f}% | {rates[1.05, 'assumed']:>16.1f}% "
                      f"{rates[1.05, 'estimated']:>8.1f}%")


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


def fleet_sessions_section(args) -> None:
    """Back-to-back benches of one cell on a board (the fleet must be up): a whole run's own shift as the history
    estimates it, and results.compare of every two of them, an A/A test across runs on a real engine and sshd."""
    from itertools import combinations

    import pandas as pd

    from edgeorch import analysis

    invoke = Path(sys.executable).parent / "invoke"
    cmd = [str(invoke), "bench", "--inventory", args.inventory, "--host", args.host, "--framework", "onnxruntime",
           "--model", "squeezenet1_1", "--repeat", str(args.session_pairs), "--iterations", "20", "--min-time", "1",
           "--no-counters", "--no-energy"]
    print(f"\n+ {' '.join(cmd[1:])}   x {args.sessions}")
    tables = []
    for _ in range(args.sessions):
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        found = re.search(r"results go to (\S+)", r.stdout)
        if r.returncode != 0 or not found:
            print(f"the bench failed (exit {r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
            return
        tables.append(pd.read_parquet(Path(found.group(1)) / "results.parquet"))
    history = pd.concat(tables)
    for mode, grp in history.groupby("mode"):
        sd, df = stats.session_sd([g["p50_ms"] for _, g in grp.groupby("run_id")])
        spread = np.median([stats.spread(g["p50_ms"]) for _, g in grp.groupby("run_id")])
        print(f"{args.host} {mode}: a run's own shift ±{sd:.2%} (sd, {df + 1} runs); runs inside one: ±{spread:.2%}")
    pairs = [analysis.compare_runs(a, b, history=history) for a, b in combinations(tables, 2)]
    kinds = pd.concat(pairs)["kind"].value_counts()
    print(f"results.compare of every two ({len(pairs)} comparisons x 2 modes): "
          + ", ".join(f"{k} {v}" for k, v in kinds.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1000, help="synthetic cells per setting (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-fleet", action="store_true", help="synthetic cells only")
    parser.add_argument("--model", default="mobilenet_v2", help="the model of the fleet cell (default mobilenet_v2)")
    parser.add_argument("--max-time", type=float, default=900, help="bound of the fleet cell in seconds")
    parser.add_argument("--host", default="x86", help="the board of the fleet cell (default: the x86 sim board)")
    parser.add_argument("--inventory", default="inventory.yaml")
    parser.add_argument("--sessions", type=int, default=0, help="back-to-back benches of one cell, compared across "
                        "runs (default 0: none)")
    parser.add_argument("--session-pairs", type=int, default=6, help="pairs of each of those benches")
    args = parser.parse_args()
    started = time.perf_counter()
    synthetic_section(args)
    across_runs_section(args)
    print(f"{time.perf_counter() - started:.1f} s")
    if not args.no_fleet:
        fleet_section(args)
    if args.sessions:
        fleet_sessions_section(args)


if __name__ == "__main__":
    main()
