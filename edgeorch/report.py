"""Tables from the normalized results: Docker vs bare metal per board and model, with a verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
from rich.table import Table

from . import zoo
from .arch import Arch
from .models import zoo_models

GROUP = ["board", "framework", "model"]


def _stratified_medians(runs: list[np.ndarray], rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """Bootstrap medians of the pooled samples, resampling within each run (runs stay whole)."""
    draws = [r[rng.integers(0, len(r), size=(n_boot, len(r)))] for r in runs]
    return np.median(np.concatenate(draws, axis=1), axis=1)


def ratio_ci(docker: list[np.ndarray], bare: list[np.ndarray], *, n_boot: int = 2000,
             seed: int = 0) -> tuple[float, float, float]:
    """Docker/bare ratio of median latency and its 95% bootstrap confidence interval."""
    rng = np.random.default_rng(seed)
    ratio = float(np.median(np.concatenate(docker)) / np.median(np.concatenate(bare)))
    boot = _stratified_medians(docker, rng, n_boot) / _stratified_medians(bare, rng, n_boot)
    low, high = np.percentile(boot, [2.5, 97.5])
    return ratio, float(low), float(high)


def verdict(low: float, high: float) -> str:
    """What the interval says: a real difference only when it excludes 1."""
    if low > 1:
        return f"docker slower (+{(low - 1) * 100:.1f}% at least)"
    if high < 1:
        return f"docker faster (-{(1 - high) * 100:.1f}% at least)"
    return "no significant difference"


def compare_modes(runs: pd.DataFrame, samples: pd.DataFrame) -> pd.DataFrame:
    """One row per board/framework/model: median latency per mode, ratio, CI, verdict, throttling."""
    rows = []
    by_mode = {key: grp for key, grp in samples.groupby([*GROUP, "mode"])}
    for key, grp in runs.groupby(GROUP, sort=True):
        row = dict(zip(GROUP, key))
        per_mode = {}
        for mode in ("docker", "bare"):
            s = by_mode.get((*key, mode), samples.iloc[0:0])
            per_mode[mode] = [g["latency_ns"].to_numpy() / 1e6 for _, g in s.groupby("pair")]
            row[f"{mode}_p50_ms"] = float(np.median(np.concatenate(per_mode[mode]))) if per_mode[mode] else None
            row[f"{mode}_runs"] = len(per_mode[mode])
        if per_mode["docker"] and per_mode["bare"]:
            row["ratio"], row["ci_low"], row["ci_high"] = ratio_ci(per_mode["docker"], per_mode["bare"])
            row["verdict"] = verdict(row["ci_low"], row["ci_high"])
        else:
            row.update(ratio=None, ci_low=None, ci_high=None, verdict="needs both modes")
        row["throttled"] = bool(grp["throttled"].fillna(False).any())
        row["throttle_known"] = bool(grp["throttled"].notna().any())
        row["max_temp_c"] = grp["max_temp_c"].max()
        rows.append(row)
    return pd.DataFrame(rows)


def _ms(v) -> str:
    return "-" if v is None or pd.isna(v) else f"{v:.2f}"


def mode_table(comparison: pd.DataFrame) -> Table:
    """The rich table the terminal shows after a sweep."""
    t = Table(title="Docker vs bare metal: median latency per board and model")
    for col in ("board", "framework", "model", "docker p50 ms", "bare p50 ms", "docker/bare",
                "95% CI", "verdict", "runs d/b", "max temp", "throttled"):
        t.add_column(col, justify="right" if "ms" in col or col in ("docker/bare", "max temp") else "left")
    for r in comparison.itertuples():
        ratio = "-" if r.ratio is None or pd.isna(r.ratio) else f"{r.ratio:.3f}"
        ci = "-" if r.ci_low is None or pd.isna(r.ci_low) else f"{r.ci_low:.3f}-{r.ci_high:.3f}"
        temp = "n/a" if pd.isna(r.max_temp_c) else f"{r.max_temp_c:.1f} C"
        throttled = ("[bold red]YES[/]" if r.throttled else "no") if r.throttle_known else "unknown"
        t.add_row(r.board, r.framework, r.model, _ms(r.docker_p50_ms), _ms(r.bare_p50_ms), ratio, ci,
                  r.verdict, f"{r.docker_runs}/{r.bare_runs}", temp, throttled)
    return t


def zoo_table() -> Table:
    """The network zoo: parameters and MACs as built here, against the published figures."""
    t = Table(title="Network zoo (one PyTorch definition per network, seeded weights)")
    for col in ("network", "input", "params", "published", "GMACs", "published", "description"):
        t.add_column(col, justify="left" if col in ("network", "input", "description") else "right")
    for net in zoo.NETWORKS.values():
        model = zoo.build(net.name)
        params, macs = zoo.count_params(model), zoo.count_macs(model, net.input_shape)
        t.add_row(net.name, "x".join(map(str, net.input_shape)), f"{params / 1e6:.2f} M",
                  f"{net.published_params / 1e6:.2f} M", f"{macs / 1e9:.2f}", f"{net.published_macs / 1e9:.2f}",
                  net.description)
    return t


def matrix_table(recipes: dict) -> Table:
    """Framework x arch: a check mark, or why the framework cannot run there; and its models."""
    t = Table(title="Support matrix (from the recipes under images/)")
    t.add_column("framework")
    t.add_column("version")
    for arch in Arch:
        t.add_column(arch.value)
    t.add_column("models (or a path to your own file)")
    for r in recipes.values():
        cells = ["[green]✓[/]" if not r.why_not(a) else f"[red]✗[/] {r.why_not(a)}" for a in Arch]
        versions = ", ".join(f"{v} ({a.value})" for a, v in r.arch_versions.items())
        t.add_row(r.framework, r.version + (f"; {versions}" if versions else ""), *cells,
                  f"{r.model_format}: " + ", ".join(zoo_models(r.model_format)))
    return t


# How far from PyTorch's output a float framework may be, as a share of the output's range. Reduced precision
# is a model of its own (an int8 TFLite file, an fp16 engine), judged by its own rule.
TOLERANCE = {"fp32": 1e-3, "fp16": 1e-2}
# Full-integer models of the zoo's random-weight networks keep the logits' shape but not top-1: measured
# correlations with PyTorch were 0.94 (squeezenet1_1), 0.97 (resnet18), 0.68 (mobilenet_v2), with top-1
# different on all three. Unrelated outputs correlate at about 0, so a broken conversion still fails.
INT8_MIN_CORRELATION = 0.5


def agreement(reference: np.ndarray, output: np.ndarray, *, precision: str = "fp32") -> dict:
    """How far a framework's output is from the reference: max |diff|, relative to the reference's range,
    correlation, and whether top-1 agrees. A float output agrees when top-1 is equal and the difference is
    within tolerance; an int8 one when it correlates with the reference."""
    if output.shape != reference.shape:
        return {"max_abs_diff": None, "relative": None, "correlation": None, "top1_ref": int(reference.argmax()),
                "top1": None, "agree": False,
                "why": f"output shape {list(output.shape)} != reference {list(reference.shape)}"}
    output = output.astype(np.float64)
    diff = float(np.abs(output - reference).max())
    relative = diff / float(np.ptp(reference) or 1.0)
    correlation = float(np.corrcoef(output.ravel(), reference.ravel())[0, 1]) if np.ptp(output) else 0.0
    # one top-1 per image of the batch; the first is reported
    top1_ref, top1 = (a.reshape(len(a), -1).argmax(1) for a in (reference, output))
    same_top1 = bool((top1 == top1_ref).all())
    if precision == "int8":
        ok = correlation >= INT8_MIN_CORRELATION
        why = "" if ok else f"correlation {correlation:.2f} below {INT8_MIN_CORRELATION}"
    else:
        ok = same_top1 and relative <= TOLERANCE[precision]
        why = "" if ok else ("top-1 differs" if not same_top1 else
                             f"difference above {TOLERANCE[precision]:g} of the range")
    return {"max_abs_diff": diff, "relative": relative, "correlation": correlation, "top1_ref": int(top1_ref[0]),
            "top1": int(top1[0]), "agree": ok, "why": why}


def framework_table(runs: pd.DataFrame) -> Table:
    """Frameworks side by side per board and model: median latency per mode, and agreement with PyTorch."""
    t = Table(title="Frameworks side by side: median of the runs' p50 latency, agreement with PyTorch")
    for col in ("board", "model", "framework", "version", "precision", "docker p50 ms", "bare p50 ms",
                "max |diff|", "top-1 = PyTorch"):
        t.add_column(col, justify="right" if "ms" in col else "left")
    for (board, model, framework), grp in runs.groupby(["board", "model", "framework"], sort=True):
        p50 = grp.groupby("mode")["p50_ms"].median()
        checked = grp["agrees"].dropna()
        agree = "-" if checked.empty else ("[green]yes[/]" if checked.all() else "[bold red]NO[/]")
        diff = grp["max_abs_diff"].max()
        t.add_row(board, model, framework, str(grp["framework_version"].iloc[0]), str(grp["precision"].iloc[0]),
                  _ms(p50.get("docker")), _ms(p50.get("bare")), "-" if pd.isna(diff) else f"{diff:.2e}",
                  agree if checked.empty or checked.all() else f"{agree} ({', '.join(map(str, grp['top1']))})")
    return t
