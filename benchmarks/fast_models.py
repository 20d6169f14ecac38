"""Fast models, bounded cost: what a bench of a 4 µs model and of MobileNet-v2 costs edgeorch, by this checkout's code
and (--before DIR) by another checkout's, e.g. a worktree of an older commit, on a board of the simulated fleet.

    .venv/bin/python benchmarks/fast_models.py [--host x86] [--pairs 20] [--min-time 2] [--before DIR]

Each model is benched docker against bare for exactly --pairs pairs (`invoke bench --repeat`), TFLite, as a user
would run it, after a deploy; the same runs again with --keep-samples give every inference beside the summaries.
It prints, per model and code: the raw document per run (MB), the seconds a pair takes beyond its runs' timed
loops, the orchestrator's peak RSS over the sweep (wait4), and the harness's part of the run's peak RSS while
timed; the orchestrator's peak over 2 pairs against it over --pairs (its growth per run); then, from the kept
samples, the verdicts, medians, ECDF quantiles and the sampler's cost computed from every
sample against those the summaries gave.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgeorch import analysis, results  # noqa: E402
from edgeorch.bench import samples, watch  # noqa: E402
from edgeorch.console import console  # noqa: E402

MODELS = ("tiny", "mobilenet_v2")


def invoke(checkout: Path, out: Path, *args: str) -> tuple[str, float, int]:
    """`invoke ARGS` by `checkout`'s code, its results under `out`: (stdout, seconds, peak RSS in MB). The peak is
    GNU time's (apt `time`): a child of this process would inherit this process's own peak as its start."""
    env = {**os.environ, "PYTHONPATH": str(checkout), "EDGEORCH_RESULTS": str(out), "COLUMNS": "200"}
    peak = out / "maxrss-kb"
    t = time.monotonic()
    r = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(peak), str(Path(sys.executable).parent / "invoke"),
                        "-r", str(checkout), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True)
    if r.returncode:
        raise SystemExit(f"invoke {' '.join(args)} failed:\n{r.stdout[-3000:]}")
    return r.stdout, time.monotonic() - t, int(peak.read_text().split()[-1]) // 1024


def _stamp(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def measure(checkout: Path, host: str, model: str, pairs: int, min_time: str, keep: bool = False) -> dict:
    """One bench's costs, and its run directory."""
    out = Path(tempfile.mkdtemp(prefix="edgeorch-fast-"))
    invoke(checkout, out, "deploy", "--host", host, "--framework", "tflite")
    text, seconds, rss_mb = invoke(checkout, out, "bench", "--host", host, "--framework", "tflite", "--model", model,
                                   "--repeat", str(pairs), "--min-time", min_time,
                                   *(["--keep-samples"] if keep else []))
    run_dir = Path(re.search(r"results go to (\S+)", text).group(1))
    docs = [json.loads(p.read_text()) for p in sorted((run_dir / "raw").rglob("*.json"))]
    timed_s = sum(d["timing"]["wall_ns"] for d in docs) / 1e9
    span_s = max(_stamp(d["finished_at"]) for d in docs) - min(_stamp(d["started_at"]) for d in docs)
    memory = [d["memory"] for d in docs]
    peak = np.array([m["peak_rss_timed_bytes"] for m in memory], float)
    first = np.array([m["rss_after_first_bytes"] for m in memory], float)
    kept = np.array([m.get("samples_bytes", 0) for m in memory], float)
    # before summaries, the whole growth while timed was the list of samples (a tiny model grows by nothing)
    harness = kept if kept.any() else peak - first
    return {"run_dir": run_dir, "raw_mb": np.mean([p.stat().st_size for p in (run_dir / "raw").rglob("*.json")
                                                   if not p.name.endswith(".stderr.txt")]) / 1e6,
            "beyond_s": (span_s - timed_s) / pairs, "outside_s": seconds - span_s, "orchestrator_mb": rss_mb,
            "harness_share": float(np.median(harness / peak)),
            "constant_mb": float(np.median(peak - kept - first)) / 2**20,
            "inferences": int(np.median([d["timing"].get("count") or len(d["timing"]["latencies_ns"])
                                         for d in docs])),
            "run_dir_mb": sum(p.stat().st_size for p in run_dir.rglob("*") if p.is_file()) / 1e6}


def every_sample_against_summaries(run_dir: Path) -> dict:
    """The largest differences between what the summaries gave and what every kept sample gives."""
    manifest = results.read_manifest(run_dir)
    runs = pd.read_parquet(run_dir / "results.parquet")
    median, quantile, cost = {}, 0.0, 0.0
    for path in sorted((run_dir / "raw").rglob("*.samples.npy")):
        starts, lat = np.load(path)
        doc = json.loads(path.with_name(path.name.replace(".samples.npy", ".json")).read_text())
        median[path.name] = float(np.median(lat))
        assert len(lat) == doc["timing"]["count"]
        values, counts = samples.bucket_values(doc["timing"]["histogram"])
        fraction = np.cumsum(counts) / counts.sum()
        for q in (0.01, 0.1, 0.5, 0.9, 0.99, 0.999):
            exact = np.quantile(lat, q, method="inverted_cdf")
            quantile = max(quantile, abs(values[np.searchsorted(fraction, q)] / exact - 1))
        sensors = doc["sensors"]
        again = watch.sampler_cost(lat.tolist(), starts.tolist(), sensors["t0_ns"], sensors["window_s"])
        if again is not None:
            cost = max(cost, abs(again - sensors["sampler_cost"]))
    # the verdicts again, each run's median from its samples instead of its summary
    key = runs["cell"].str.split("/").str[1] + "-" + runs["mode"] + "-" + runs["pair"].map("{:02d}".format)
    exact = runs.assign(p50_ms=[median[f"{k}.samples.npy"] / 1e6 for k in key])
    cells = results.current_cells(manifest)
    a, b = (analysis.compare_arms(r, cells) for r in (runs, exact))
    same = a[["verdict", "ratio", "ci_low", "ci_high"]].equals(b[["verdict", "ratio", "ci_low", "ci_high"]])
    return {"medians": float(np.max(np.abs(runs["p50_ms"].to_numpy() / exact["p50_ms"].to_numpy() - 1))),
            "quantiles": quantile, "sampler_cost": cost, "verdicts_equal": same, "verdict": a["verdict"].iloc[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="x86")
    p.add_argument("--pairs", type=int, default=20)
    p.add_argument("--min-time", default="2", help="seconds each run times (bench's default is 5)")
    p.add_argument("--before", help="a checkout of the code to compare with (e.g. git worktree add DIR COMMIT)")
    p.add_argument("--models", default=",".join(MODELS))
    args = p.parse_args()
    codes = {"after": ROOT, **({"before": Path(args.before).resolve()} if args.before else {})}
    found = {(model, name): measure(checkout, args.host, model, args.pairs, args.min_time)
             for model in args.models.split(",") for name, checkout in codes.items()}
    console.print(f"\n[bold]{args.pairs} pairs, docker against bare, TFLite on {args.host}, --min-time "
                  f"{args.min_time}[/]")
    for (model, name), f in found.items():
        console.print(f"{model:>13} {name:>6}: {f['inferences']:>9,} inferences a run; raw {f['raw_mb']:8.3f} MB a "
                      f"run "
                      f"(run directory {f['run_dir_mb']:8.1f} MB); {f['beyond_s']:6.2f} s a pair beyond its timed "
                      f"loops, {f['outside_s']:5.1f} s before and after them; orchestrator peak RSS "
                      f"{f['orchestrator_mb']:5d} "
                      f"MB; harness {f['harness_share']:6.1%} of the peak RSS while timed; the rest above RSS after "
                      f"the first inference {f['constant_mb']:+.2f} MB", soft_wrap=True)
        if name == "after" and "before" in codes:
            b = found[model, "before"]
            console.print(f"{'':>13} after/before: raw {f['raw_mb'] / b['raw_mb']:.4f}, beyond "
                          f"{f['beyond_s'] / b['beyond_s']:.3f}, orchestrator RSS "
                          f"{f['orchestrator_mb'] / b['orchestrator_mb']:.3f}", soft_wrap=True)
    console.print("\n[bold]The orchestrator's memory against the number of runs[/]")
    for model in args.models.split(","):
        few = measure(ROOT, args.host, model, 2, args.min_time)
        many = found[model, "after"]
        per_run = (many["orchestrator_mb"] - few["orchestrator_mb"]) / (2 * (args.pairs - 2))
        console.print(f"{model:>13}: peak RSS {few['orchestrator_mb']} MB over 2 pairs, {many['orchestrator_mb']} MB "
                      f"over {args.pairs}: {per_run:+.2f} MB a run, so {few['orchestrator_mb'] + per_run * 236:.0f} MB "
                      "for 40 pairs on three boards (240 runs)", soft_wrap=True)
    console.print("\n[bold]Every sample (--keep-samples) against the summaries[/]")
    for model in args.models.split(","):
        kept = measure(ROOT, args.host, model, args.pairs, args.min_time, keep=True)
        d = every_sample_against_summaries(kept["run_dir"])
        console.print(f"{model:>13}: run medians differ by at most {d['medians']:.2e}; ECDF quantiles (1% to 99.9%) "
                      f"from the histogram within {d['quantiles']:.2e} (stated {samples.HISTOGRAM_ERROR:.2e}); the "
                      f"sampler's cost within {d['sampler_cost']:.2e}; verdicts "
                      f"{'identical' if d['verdicts_equal'] else 'DIFFERENT'} ({d['verdict']}); raw "
                      f"{kept['raw_mb']:.3f} MB a run beside its samples", soft_wrap=True)


if __name__ == "__main__":
    main()
