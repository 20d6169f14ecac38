"""The HTML report of a run: one self-contained file (figures inline as PNG, no script, nothing fetched), so that it
opens offline in any browser, on a lab machine as on a laptop."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pandas as pd

from ..plan import label
from . import figures

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; } h3 { margin-top: 1.5em; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; vertical-align: top; }
th { white-space: nowrap; } .h { word-break: break-all; font-family: monospace; font-size: 12px; }
th { background: #f4f4f4; } tr.invalid td { background: #fde8e8; }
img { max-width: 100%; display: block; margin: .5em 0; border: 1px solid #eee; }
.note { color: #666; } code { background: #f4f4f4; padding: 0 3px; }
"""

VERDICT_COLUMNS = {"board": "board", "framework": "framework", "model": "model", "a": "A", "b": "B",
                   "a_p50_ms": "A p50 (ms)", "b_p50_ms": "B p50 (ms)", "ratio": "A/B", "ci": "95% CI", "pairs": "pairs",
                   "stop": "stopped by", "max_temp_c": "max temp (°C)", "verdict": "verdict"}
CHANGE_COLUMNS = {"board": "board", "framework": "framework", "model": "model", "arm": "arm",
                  "before_p50_ms": "before p50 (ms)", "after_p50_ms": "after p50 (ms)", "ratio": "after/before",
                  "ci": "95% CI", "runs": "runs", "verdict": "verdict", "session_sd": "a run's own shift (sd)",
                  "session_from": "shift from", "differs": "what differs"}
MEASURE_COLUMNS = {"p50_ms": "p50 (ms)", "throughput_ips": "images/s", "cpu_percent": "CPU %",
                   "cpu_ms_per_inf": "CPU ms/inf", "ipc": "IPC", "cache_misses_per_inf": "cache misses/inf",
                   "peak_rss_timed_mb": "peak RSS (MB)", "cgroup_peak_mb": "cgroup peak (MB)",
                   "energy_mj": "mJ/inf", "avg_power_w": "W", "idle_power_w": "idle W"}
PROVENANCE = ["framework_version", "runtime", "image_id", "model_sha256", "bench_sha256", "cpu_model", "cores",
              "kernel", "os", "python", "numpy", "governor"]


def _e(value) -> str:
    return html.escape(str(value))


def _table(frame: pd.DataFrame, invalid: pd.Series | None = None) -> str:
    """A DataFrame as an HTML table, every value escaped (names are the user's); rows in `invalid` marked."""
    head = "".join(f"<th>{_e(c)}</th>" for c in frame.columns)
    rows = []
    for i, (_, row) in enumerate(frame.iterrows()):
        bad = invalid is not None and bool(invalid.iloc[i])
        cells = "".join(f"<td>{_cell(v)}</td>" for v in row)
        rows.append(f"<tr{' class=invalid' if bad else ''}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _cell(v) -> str:
    """A value as table text; a hash or an id (one long word) may break anywhere, so that it never widens a table."""
    text = _e(_fmt(v))
    return f"<span class=h>{text}</span>" if len(text) > 32 and " " not in text else text


def _fmt(v) -> str:
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _figure(fig, alt: str) -> str:
    return "" if fig is None else f'<img alt="{_e(alt)}" src="{figures.png(fig)}">'


def _ci(frame: pd.DataFrame) -> list[str]:
    return [f"{(lo - 1) * 100:+.1f}% to {(hi - 1) * 100:+.1f}%" if lo is not None and not pd.isna(lo) else "-"
            for lo, hi in zip(frame["ci_low"], frame["ci_high"])]


def verdicts(comparison: pd.DataFrame) -> str:
    """The verdict table: each comparison with its effect, interval, validity and why."""
    if comparison.empty:
        return "<p class=note>No comparison: no cell ran two arms.</p>"
    shown = comparison.assign(ci=_ci(comparison))[list(VERDICT_COLUMNS)].rename(columns=VERDICT_COLUMNS)
    return _table(shown, ~comparison["valid"])


def changes_section(changes: pd.DataFrame, before: str, after: str) -> str:
    """results.compare's table: each matched cell's change across runs, with its verdict."""
    head = f"<h2 id=change>Against run {_e(before)}</h2>"
    if changes.empty:
        return head + "<p class=note>No cell of this run was measured by that run too.</p>"
    shown = changes.assign(ci=_ci(changes), runs=[f"{a} / {b}" for a, b in zip(changes["runs_before"],
                                                                                 changes["runs_after"])])
    return (head + f"<p>Each side's unit is the run (its median latency): the 95% interval of the change of their "
            f"mean log from {_e(before)} to {_e(after)}, from the runs' spread on each side (Welch) and a whole run's "
            "own shift (estimated from three or more runs of the cell in the history, else assumed); slower is a "
            "regression.</p>"
            + _table(shown[list(CHANGE_COLUMNS)].rename(columns=CHANGE_COLUMNS), ~changes["valid"]))


def _cells(runs: pd.DataFrame, samples: pd.DataFrame, histograms: pd.DataFrame, sensors: pd.DataFrame) -> str:
    out = ["<h2 id=cells>Per cell: latency distribution, and latency, temperature and clock over time</h2>"]
    for cell, grp in runs.groupby("cell", sort=False):
        r = grp.iloc[0]
        name = f"{r.board} {r.framework} {label(r.model, r.threads, r.batch)}"
        out.append(f"<h3 id='{_e(cell)}'>{_e(name)} <span class=note>({_e(cell)})</span></h3>")
        out.append(_figure(figures.latency_ecdf(histograms, cell), f"latency ECDF of {cell}"))
        out.append(_figure(figures.latency_over_time(runs, samples, sensors, cell), f"latency over time of {cell}"))
        throttled = grp[grp["throttled"].fillna(False)]
        for t in throttled.itertuples():
            out.append(f"<p><b>throttled</b>: {_e(t.arm)} run #{t.pair}: {_e(t.throttle_evidence)}</p>")
    return "".join(out)


def _frameworks(runs: pd.DataFrame) -> str:
    out = []
    for (board, model), grp in runs.groupby(["board", "model"], sort=True):
        if grp["framework"].nunique() < 2:
            continue
        out.append(f"<h3>{_e(board)}: {_e(model)}</h3>"
                   + _figure(figures.frameworks(runs, board, model), f"frameworks on {board} {model}"))
        checked = grp.groupby(["framework", "framework_version", "mode"], dropna=False).agg(
            p50_ms=("p50_ms", "median"), runs=("p50_ms", "size"), max_abs_diff=("max_abs_diff", "max"),
            agrees=("agrees", lambda s: "-" if s.dropna().empty else ("yes" if s.dropna().all() else "NO")))
        out.append(_table(checked.reset_index()))
    if not out:
        return ""
    return ("<h2 id=frameworks>Frameworks side by side</h2><p>Median of the runs' p50 with the 95% interval of the "
            "runs; agreement with PyTorch's output where a reference exists.</p>" + "".join(out))


def _measures(runs: pd.DataFrame, notes: list[str]) -> str:
    cols = [c for c in MEASURE_COLUMNS if runs[c].notna().any()]
    keys = ["board", "framework", "model", "threads", "batch", "mode"]
    medians = runs.groupby(keys, sort=True)[cols].median().reset_index().rename(columns=MEASURE_COLUMNS)
    parts = [_figure(figures.energy(runs), "energy per inference"), _figure(figures.memory(runs), "memory"),
             _figure(figures.counters(runs), "hardware counters")]
    listed = "".join(f"<li>{_e(n)}</li>" for n in notes)
    return ("<h2 id=measures>Beside latency: throughput, counters, memory, energy</h2><p>Medians of the runs.</p>"
            + _table(medians) + (f"<p>Unavailable:</p><ul>{listed}</ul>" if listed else "") + "".join(parts))


def _operators(ops: pd.DataFrame | None) -> str:
    if ops is None or ops.empty:
        return ""
    top = ops[ops["rank"] <= 5].sort_values(["cell", "mode", "rank"])
    return ("<h2 id=operators>Where the time goes: operators of the profiling passes</h2>"
            + _figure(figures.operators(ops), "top operators")
            + _table(top[["board", "framework", "model", "mode", "rank", "op_type", "op_name", "time_ms", "share"]]))


def _seeds(runs: pd.DataFrame, macs: dict[str, int], why_no_macs: str) -> str:
    out = ["<h2 id=analyses>The studies' analyses</h2>",
           "<h3>Throughput against CPU utilisation per framework (Velasco-Montero et al.)</h3>",
           _figure(figures.throughput_vs_cpu(runs), "throughput against CPU utilisation"),
           "<h3>Latency and energy against MACs, with a linear fit (SyNERGY)</h3>"]
    fig = figures.macs_fit(runs[runs["batch"] == 1], macs)
    out.append(_figure(fig, "latency and energy against MACs") if fig is not None else
               f"<p class=note>{_e(why_no_macs)}</p>")
    return "".join(out)


def _provenance(runs: pd.DataFrame, manifest: dict) -> str:
    keys = ["board", "arch", "framework", "mode"]
    facts = runs.groupby(keys, sort=True)[PROVENANCE].agg(lambda s: ", ".join(sorted({str(v) for v in s.dropna()})))
    facts.index = [" ".join(map(str, k)) for k in facts.index]  # one column per board, framework and mode
    request = manifest.get("request") or {}
    shown = {k: v for k, v in request.items() if v not in (None, [], "", False)}
    return ("<h2 id=provenance>Provenance</h2><p>What ran, where: the same framework version and entrypoint bytes "
            "in both modes.</p>" + _table(facts.T.rename_axis("").reset_index())
            + f"<p>Started as <code>invoke {_e(request.get('task', ''))}</code> with</p>"
            + _table(pd.DataFrame({"argument": list(shown), "value": [
                v if isinstance(v, str) else json.dumps(v, default=str) for v in shown.values()]}))
            + "<p>Images:</p>" + _table(pd.DataFrame([{"board/framework": k, **v} for k, v in
                                                       (manifest.get("images") or {}).items()])))


def render(run_dir: Path, *, manifest: dict, runs: pd.DataFrame, samples: pd.DataFrame,
           histograms: pd.DataFrame, sensors: pd.DataFrame, ops: pd.DataFrame | None, comparison: pd.DataFrame,
           notes: list[str], macs: dict[str, int], why_no_macs: str, changes: pd.DataFrame | None = None,
           against: str | None = None) -> str:
    """The whole page, as text."""
    state = "complete" if manifest.get("complete") else (
        f"INCOMPLETE: missing {', '.join(manifest.get('missing') or [])}")
    sweep = figures.sweep(runs)
    body = [f"<h1>edgeorch run {_e(run_dir.name)}</h1>",
            f"<p>{_e(state)}; {len(runs)} runs of {runs['cell'].nunique()} cells on "
            f"{_e(', '.join(sorted(runs['board'].unique())))}; started {_e(runs['started_at'].min())}.</p>",
            "<h2 id=verdicts>Verdicts: the pair is the unit</h2>", verdicts(comparison),
            changes_section(changes, against, run_dir.name) if changes is not None else "",
            _cells(runs, samples, histograms, sensors), _frameworks(runs),
            ("<h2 id=sweep>Latency against throughput over batch and threads</h2>"
             + _figure(sweep, "latency against throughput")) if sweep is not None else "",
            _measures(runs, notes), _operators(ops), _seeds(runs, macs, why_no_macs), _provenance(runs, manifest)]
    # the policy makes the promise checkable: a browser refuses (and reports) any fetch beyond the page itself
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><meta http-equiv=Content-Security-Policy "
            f"content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
            f"<title>edgeorch {_e(run_dir.name)}</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>")
