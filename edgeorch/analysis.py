"""Reading and judging finished runs: the run tables of a run directory, each cell's arms compared (the verdicts),
and one run against another (run to run)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import results, stats
from .errors import RunError
from .models import zoo
from .plan import label

GROUP = ["board", "framework", "model"]


@dataclass(frozen=True, kw_only=True)
class Judgement:
    """How the analysis judges a comparison: the equivalence band and the largest run-to-run spread allowed."""
    equivalence: float = stats.EQUIVALENCE
    max_spread: float = 0.10
    min_pairs: int = stats.MIN_PAIRS


DEFAULTS = Judgement()


def judgement_of(manifest: dict) -> Judgement:
    """How the run was judged: its own --equivalence, --max-spread and --min-pairs (the defaults before they were
    kept)."""
    request = manifest.get("request") or {}
    return Judgement(**{k: type(getattr(DEFAULTS, k))(request[k]) for k in ("equivalence", "max_spread", "min_pairs")
                        if request.get(k) is not None})


def older(table: pd.DataFrame) -> pd.DataFrame:
    """What a table of an older edgeorch lacked: arms (each run's mode) and cells (board/framework-model)."""
    if "arm" not in table:
        table["arm"] = table["mode"]
    if "cell" not in table or table["cell"].isna().all():
        table["cell"] = table["board"] + "/" + table["framework"] + "-" + table["model"]
    return table


def runs_of(run_dir: Path, manifest: dict) -> pd.DataFrame:
    """The runs table of a run directory, as this edgeorch reads it (what judging needs, and no more)."""
    if not (run_dir / "results.parquet").exists():
        raise RunError(f"{run_dir} has no results table (no run finished)", hint="rerun the bench")
    runs = results.current_modes(older(pd.read_parquet(run_dir / "results.parquet")), manifest)
    for col in set(results.COLUMNS) - set(runs):
        runs[col] = {"threads": 0, "batch": 1, "framework_options": "{}", "input_shapes": "{}"}.get(col, np.nan)
    return runs


def tables_of(run_dir: Path, manifest: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame,
                                                     pd.DataFrame | None]:
    """runs, samples, latency histograms, sensors and operators of a run directory (the last two empty or None where
    it has none)."""
    runs = runs_of(run_dir, manifest)
    samples = older(pd.read_parquet(run_dir / "samples.parquet"))
    # before summaries, samples.parquet held every inference: their histograms are made here
    histograms = (pd.read_parquet(run_dir / "histograms.parquet") if (run_dir / "histograms.parquet").exists()
                  else results.histograms_of(samples))
    sensors = (pd.read_parquet(run_dir / "sensors.parquet") if (run_dir / "sensors.parquet").exists()
               else pd.DataFrame(columns=results.SENSOR_COLUMNS))
    ops = pd.read_parquet(run_dir / "ops.parquet") if (run_dir / "ops.parquet").exists() else None
    for table in (samples, histograms, sensors, *([ops] if ops is not None else [])):
        results.current_modes(table, manifest)
    if "t_s" not in samples:
        samples["t_s"] = np.nan
    return runs, samples, histograms, sensors, ops


def judged(runs: pd.DataFrame, manifest: dict, judgement: Judgement | None = None) -> pd.DataFrame:
    """The judged comparisons of a run's table: each cell's first arm against its second (and its other arms against
    the second too), with why the cell stopped; judged as the run asked unless `judgement` says otherwise."""
    judgement = judgement or judgement_of(manifest)
    return compare_arms(runs, results.current_cells(manifest), equivalence=judgement.equivalence,
                        max_spread=judgement.max_spread, min_pairs=judgement.min_pairs)


def comparison(run_dir: Path, judgement: Judgement | None = None) -> pd.DataFrame:
    """The judged comparisons of a run directory (see `judged`)."""
    manifest = results.read_manifest(run_dir)
    return judged(runs_of(run_dir, manifest), manifest, judgement)


def changes(before: Path, after: Path) -> pd.DataFrame:
    """Each matched cell's change from `before` to `after`, judged with `after`'s own band and spread limit."""
    judgement = judgement_of(results.read_manifest(after))
    before_runs, after_runs = (runs_of(d, results.read_manifest(d)) for d in (before, after))
    return compare_runs(before_runs, after_runs, history=results.history(),
                        equivalence=judgement.equivalence, max_spread=judgement.max_spread)


def macs(models) -> tuple[dict[str, int], str]:
    """MACs per image of the zoo's networks among `models` (as built here), and why there are none to plot."""
    known = [m for m in sorted(set(models)) if m in zoo.NETWORKS]
    if len(known) < 2:
        return {}, (f"This run measured {len(known)} network of the zoo at batch 1: the fit needs two or more "
                    "(e.g. --model squeezenet1_1,mobilenet_v2,resnet18).")
    try:
        return {m: zoo.count_macs(zoo.build(m), zoo.NETWORKS[m].input_shape) for m in known}, ""
    except ImportError as e:  # the zoo is built with PyTorch, an optional dependency of the host
        return {}, f"MACs are counted with PyTorch, which is not installed here ({e})."


def _cells_of(runs: pd.DataFrame, cells: dict) -> dict:
    """The cells a manifest names; older results without them: docker against the other mode per board and model."""
    if cells:
        return cells
    keys = runs[GROUP].drop_duplicates().itertuples(index=False)
    other = "native" if (runs["arm"] == "native").any() else "bare"
    return {f"{b}/{f}-{m}": {"arms": ["docker", other], "stop": None, "pairs": None} for b, f, m in keys}


def compare_arms(runs: pd.DataFrame, cells: dict, *, equivalence: float = stats.EQUIVALENCE,
                 max_spread: float = 0.10, min_pairs: int = stats.MIN_PAIRS) -> pd.DataFrame:
    """One row per comparison: a cell's first arm against its second (docker against bare; docker-A against
    docker-B in calibrate; each of explain's knobs against bare too). The pair is the unit: each pair gives one
    log ratio of median latencies, and the interval comes from their spread. A throttled run or a run-to-run
    spread above `max_spread` makes the comparison INVALID: kept, shown, and given no verdict."""
    older(runs)
    medians = runs.groupby(["cell", "arm", "pair"])["p50_ms"].median()  # each run's median, from all its inferences
    rows = []
    for key, cell in _cells_of(runs, cells).items():
        arms = cell["arms"]
        in_cell = runs[runs["cell"].isin([key, key.split(":")[0]]) & runs["arm"].isin(arms)]
        if in_cell.empty:
            continue
        name = in_cell["cell"].iloc[0]
        per_arm = {arm: medians.get((name, arm), pd.Series(dtype=float)) for arm in arms}
        for a in [arms[0], *arms[2:]] if len(arms) > 1 else [arms[0]]:
            b = arms[1] if len(arms) > 1 else None
            rows.append(_judge(key, cell, in_cell, per_arm, a, b, equivalence, max_spread, min_pairs))
    return pd.DataFrame(rows)


def _judge(key, cell, in_cell, per_arm, a, b, equivalence, max_spread, min_pairs) -> dict:
    board, framework, model = in_cell.iloc[0][GROUP]
    sides = in_cell[in_cell["arm"].isin([a, b])]
    threads, batch = (int(in_cell.iloc[0][k]) if k in in_cell else d for k, d in (("threads", 0), ("batch", 1)))
    row = {"cell": key, "board": board, "framework": framework, "model": label(model, threads, batch), "a": a,
           "b": b or "",
           "a_p50_ms": float(per_arm[a].median()) if len(per_arm[a]) else None,
           "b_p50_ms": float(per_arm[b].median()) if b and len(per_arm[b]) else None,
           "stop": cell.get("stop") or "-", "pairs": 0, "ratio": None, "ci_low": None, "ci_high": None,
           "half_width": None, "noise": None, "spread_a": stats.spread(per_arm[a]) if len(per_arm[a]) > 1 else None,
           "spread_b": stats.spread(per_arm[b]) if b and len(per_arm[b]) > 1 else None,
           "timed_s": float(sides["iterations"].mul(sides["mean_ms"]).sum() / 1e3),
           "max_temp_c": sides["max_temp_c"].max(), "throttled": bool(sides["throttled"].fillna(False).any()),
           "throttle_known": bool(sides["throttled"].notna().any()), "kind": None, "verdict": "one mode only",
           "valid": True, "why_invalid": ""}
    if b is None:
        return row
    both = pd.concat([per_arm[a].rename("a"), per_arm[b].rename("b")], axis=1).dropna()
    log_ratios = np.log(both["a"] / both["b"]).to_numpy()
    row["pairs"] = len(log_ratios)
    found = stats.verdict(log_ratios, equivalence=equivalence, min_pairs=min_pairs, a=a, b=b)
    if len(log_ratios) >= 2:
        ci = stats.interval(log_ratios, first_stage=min(min_pairs, len(log_ratios)))
        row.update(ratio=ci.ratio, ci_low=ci.low, ci_high=ci.high, half_width=ci.half_width, noise=ci.sd)
    why = []
    if row["throttled"]:
        hit = sides[sides["throttled"].fillna(False)]
        why.append("throttled: " + ", ".join(f"{r.arm} #{r.pair}" for r in hit.itertuples()))
    for arm, value in ((a, row["spread_a"]), (b, row["spread_b"])):
        if value is not None and value > max_spread:
            why.append(f"{arm} runs spread {value:.1%} > --max-spread {max_spread:.0%}")
    if found.kind == "too few pairs":
        why.append(f"too few pairs ({len(log_ratios)} < {min_pairs})")
    row.update(kind=found.kind, verdict=found.text, valid=not why, why_invalid="; ".join(why))
    if why:
        row["verdict"] = "INVALID: " + "; ".join(why)
    return row


def _same(table: pd.DataFrame, key: tuple) -> pd.DataFrame:
    return table[(table[MATCH] == pd.Series(key, index=MATCH)).all(axis=1)]


def compare_runs(before: pd.DataFrame, after: pd.DataFrame, *, history: pd.DataFrame | None = None,
                 equivalence: float = stats.EQUIVALENCE, max_spread: float = 0.10,
                 min_runs: int = stats.MIN_RUNS) -> pd.DataFrame:
    """Each cell and arm that both runs measured, matched by board, framework, model, threads, batch, options and
    input shapes: the change of its run medians from `before` to `after` with its interval and a verdict (slower is a
    regression). A session's own shift comes from three or more runs of the cell in `history` (results.history()),
    else it is assumed (stats.SESSION_SD). A throttled run or a spread above `max_spread` on either side makes the
    change INVALID; what else differs between the two (versions, the model's bytes, the kernel) is named beside it."""
    rows = []
    pool = pd.concat([t for t in (history, before, after) if t is not None]).drop_duplicates(["run_id", *MATCH,
                                                                                             "pair"])
    for key, now in after.groupby(MATCH, sort=True, dropna=False):
        was = _same(before, key)
        if was.empty:
            continue
        board, framework, model, threads, batch, arm = key[:6]
        sessions = [g["p50_ms"] for _, g in _same(pool, key).groupby("run_id")]
        found_sd = stats.session_sd(sessions)
        session = found_sd or (stats.SESSION_SD, math.inf)
        iv, found = stats.change(was["p50_ms"], now["p50_ms"], session=session, equivalence=equivalence,
                                 min_runs=min_runs)
        why = [f"{side} throttled: {', '.join(f'#{p}' for p in runs.loc[runs['throttled'].fillna(False), 'pair'])}"
               for side, runs in (("before", was), ("after", now)) if runs["throttled"].fillna(False).any()]
        for side, runs in (("before", was), ("after", now)):
            spread = stats.spread(runs["p50_ms"])
            if spread > max_spread:
                why.append(f"{side} runs spread {spread:.1%} > --max-spread {max_spread:.0%}")
        rows.append({"board": board, "framework": framework, "model": label(model, threads, batch), "arm": arm,
                     "before_p50_ms": float(was["p50_ms"].median()), "after_p50_ms": float(now["p50_ms"].median()),
                     "runs_before": len(was), "runs_after": len(now), "ratio": iv.ratio if iv else None,
                     "ci_low": iv.low if iv else None, "ci_high": iv.high if iv else None, "kind": found.kind,
                     "verdict": "INVALID: " + "; ".join(why) if why else found.text, "valid": not why,
                     "why_invalid": "; ".join(why), "session_sd": session[0],
                     "session_from": f"estimated over {session[1] + 1} runs of the cell" if found_sd else "assumed",
                     "differs": "; ".join(f"{col} {_one(was[col])} -> {_one(now[col])}" for col in PROVENANCE
                                          if _one(was[col]) != _one(now[col]))})
    return pd.DataFrame(rows, columns=CHANGE_COLUMNS)


MATCH = ["board", "framework", "model", "threads", "batch", "arm", "framework_options", "input_shapes"]


PROVENANCE = ["framework_version", "model_sha256", "bench_sha256", "image_id", "kernel", "os", "python", "numpy"]


CHANGE_COLUMNS = ["board", "framework", "model", "arm", "before_p50_ms", "after_p50_ms", "runs_before", "runs_after",
                  "ratio", "ci_low", "ci_high", "kind", "verdict", "valid", "why_invalid", "session_sd", "session_from",
                  "differs"]


def _one(values: pd.Series) -> str:
    """A provenance column of one side: its value, or every value it took (short hashes)."""
    found = sorted({str(v)[:19] if len(str(v)) > 40 else str(v) for v in values.dropna()})
    return ",".join(found) or "-"
