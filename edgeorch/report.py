"""Tables from the normalized results: Docker vs bare metal per board and model, with a verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
from rich.table import Table

from . import stats
from .arch import Arch
from .models import zoo, zoo_models

GROUP = ["board", "framework", "model"]


def _cells_of(runs: pd.DataFrame, cells: dict) -> dict:
    """The cells a manifest names; older results without them: docker against bare per board and model."""
    if cells:
        return cells
    keys = runs[GROUP].drop_duplicates().itertuples(index=False)
    return {f"{b}/{f}-{m}": {"arms": ["docker", "bare"], "stop": None, "pairs": None} for b, f, m in keys}


def compare_arms(runs: pd.DataFrame, samples: pd.DataFrame, cells: dict, *, equivalence: float = stats.EQUIVALENCE,
                 max_spread: float = 0.10, min_pairs: int = stats.MIN_PAIRS) -> pd.DataFrame:
    """One row per comparison: a cell's first arm against its second (docker against bare; docker-A against
    docker-B in calibrate; each of explain's knobs against bare too). The pair is the unit: each pair gives one
    log ratio of median latencies, and the interval comes from their spread. A throttled run or a run-to-run
    spread above `max_spread` makes the comparison INVALID: kept, shown, and given no verdict."""
    medians = samples.groupby(["board", "framework", "model", "arm", "pair"])["latency_ns"].median() / 1e6
    rows = []
    for key, cell in _cells_of(runs, cells).items():
        arms = cell["arms"]
        in_cell = runs[(runs["board"] + "/" + runs["framework"] + "-" + runs["model"]).eq(key.split(":")[0])
                       & runs["arm"].isin(arms)]
        if in_cell.empty:
            continue
        board, framework, model = in_cell.iloc[0][GROUP]
        per_arm = {arm: medians.get((board, framework, model, arm), pd.Series(dtype=float)) for arm in arms}
        for a in [arms[0], *arms[2:]] if len(arms) > 1 else [arms[0]]:
            b = arms[1] if len(arms) > 1 else None
            rows.append(_judge(key, cell, in_cell, per_arm, a, b, equivalence, max_spread, min_pairs))
    return pd.DataFrame(rows)


def _judge(key, cell, in_cell, per_arm, a, b, equivalence, max_spread, min_pairs) -> dict:
    board, framework, model = in_cell.iloc[0][GROUP]
    sides = in_cell[in_cell["arm"].isin([a, b])]
    row = {"cell": key, "board": board, "framework": framework, "model": model, "a": a, "b": b or "",
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


def _ms(v) -> str:
    """Milliseconds, or microseconds below one: a sub-millisecond model does not print 0.00 ms."""
    if v is None or pd.isna(v):
        return "-"
    return f"{v * 1000:.0f} µs" if v < 1 else f"{v:.2f} ms"


def _ci(r) -> str:
    if r.ci_low is None or pd.isna(r.ci_low):
        return "-"
    return f"{(r.ci_low - 1) * 100:+.1f}% to {(r.ci_high - 1) * 100:+.1f}%"


def mode_table(comparison: pd.DataFrame, title: str = "Docker vs bare metal: the pair is the unit") -> Table:
    """The rich table the terminal shows after a sweep: one row per comparison, with its verdict."""
    t = Table(title=title)
    for col in ("board", "framework", "model", "A", "B", "A p50", "B p50", "A/B", "95% CI", "pairs", "stopped by",
                "verdict", "max temp"):
        t.add_column(col, justify="right" if col in ("A p50", "B p50", "A/B", "pairs", "max temp") else "left")
    for r in comparison.itertuples():
        ratio = "-" if r.ratio is None or pd.isna(r.ratio) else f"{r.ratio:.3f}"
        temp = "n/a" if pd.isna(r.max_temp_c) else f"{r.max_temp_c:.1f} C"
        text = f"[bold red]{r.verdict}[/]" if not r.valid else r.verdict
        t.add_row(r.board, r.framework, r.model, r.a, r.b or "-", _ms(r.a_p50_ms), _ms(r.b_p50_ms), ratio, _ci(r),
                  str(r.pairs), r.stop, text, temp)
    return t


def calibration_table(comparison: pd.DataFrame) -> Table:
    """The A/A test per board: noise floor, the interval reached and its width per minute, and the verdict,
    which must say equivalent or inconclusive (anything else is a false positive)."""
    t = Table(title="Calibration: each mode against itself (A/A)")
    for col in ("board", "framework", "model", "mode", "noise floor", "pairs", "CI half-width", "timed min",
                "half-width after 1 min", "minutes to ±1%", "verdict"):
        t.add_column(col)
    for r in comparison.itertuples():
        if r.ci_low is None or pd.isna(r.ci_low):
            t.add_row(r.board, r.framework, r.model, r.a, "-", str(r.pairs), "-", "-", "-", "-", r.verdict)
            continue
        half = r.half_width
        minutes = r.timed_s / 60
        per_minute = half * minutes ** 0.5  # the half-width shrinks as 1/sqrt(time)
        text = r.verdict if r.kind in ("equivalent", "inconclusive") or not r.valid else f"[bold red]{r.verdict}[/]"
        t.add_row(r.board, r.framework, r.model, r.a.removesuffix("-A"), f"{r.noise:.2%}", str(r.pairs),
                  f"±{half:.2%}", f"{minutes:.1f}", f"±{per_minute:.2%}", f"{(per_minute / 0.01) ** 2:.1f}", text)
    return t


def explain_table(comparison: pd.DataFrame) -> Table:
    """Each Docker knob's ratio to bare metal with its interval, and how much of the default gap it closes."""
    t = Table(title="Why Docker differs: one knob changed at a time, each against bare metal")
    for col in ("board", "docker run", "ratio to bare", "95% CI", "gap closed", "verdict"):
        t.add_column(col)
    for (board, _), grp in comparison.groupby(["board", "cell"], sort=False):
        default = grp[grp["a"] == "docker"]
        # a share of a gap only where there is one: Docker's defaults judged slower or faster than bare
        real = len(default) and default["valid"].iloc[0] and default["kind"].iloc[0] in ("slower", "faster")
        gap = float(np.log(default["ratio"].iloc[0])) if real else None
        for r in grp.itertuples():
            closed = "-"
            if r.a != "docker" and gap and r.ratio is not None and not pd.isna(r.ratio):
                closed = f"{1 - np.log(r.ratio) / gap:.0%}"
            ratio = "-" if r.ratio is None or pd.isna(r.ratio) else f"{r.ratio:.3f}"
            t.add_row(board, r.a, ratio, _ci(r), closed, r.verdict)
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
    for col in ("board", "model", "framework", "version", "precision", "docker p50", "bare p50",
                "max |diff|", "top-1 = PyTorch"):
        t.add_column(col, justify="right" if "p50" in col else "left")
    for (board, model, framework), grp in runs.groupby(["board", "model", "framework"], sort=True):
        p50 = grp.groupby("mode")["p50_ms"].median()
        checked = grp["agrees"].dropna()
        agree = "-" if checked.empty else ("[green]yes[/]" if checked.all() else "[bold red]NO[/]")
        diff = grp["max_abs_diff"].max()
        t.add_row(board, model, framework, str(grp["framework_version"].iloc[0]), str(grp["precision"].iloc[0]),
                  _ms(p50.get("docker")), _ms(p50.get("bare")), "-" if pd.isna(diff) else f"{diff:.2e}",
                  agree if checked.empty or checked.all() else f"{agree} ({', '.join(map(str, grp['top1']))})")
    return t
