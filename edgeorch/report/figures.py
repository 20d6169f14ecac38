"""The figures of the HTML report, drawn with matplotlib from the normalized frames; None where nothing to draw.

Figures are `matplotlib.figure.Figure` objects, never pyplot's: no global state, no backend to choose, and a report
may be drawn inside a program that already uses pyplot. Their text is never math text nor TeX: the names in them
(boards, models, arms, operators) are the user's and the boards', and a model named `net$\\x$` is a name, not a formula
to typeset (or to fail on)."""

from __future__ import annotations

import base64
import functools
import io
import math
import zlib

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.text import Text
from matplotlib.ticker import EngFormatter, MultipleLocator

from .. import stats

DPI = 90
MAX_POINTS = 4000  # latency points per run in latency_over_time: more only slows the figure down
MAX_PANELS = 8
THROTTLED = "#d62728"  # red is kept for throttling: no arm or framework gets it
_ARMS = {"docker": "#1f77b4", "bare": "#ff7f0e", "native": "#2ca02c", "docker-A": "#1f77b4", "docker-B": "#6baed6"}
_OTHERS = ["#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
_MARKERS = {"docker": "o", "bare": "^", "native": "s"}
MEMORY = {"rss_before_load_mb": "before load", "rss_after_load_mb": "after load",
          "rss_after_first_mb": "after first inference", "peak_rss_timed_mb": "peak while timed",
          "cgroup_peak_mb": "cgroup peak"}
COUNTERS = {"ipc": "instructions per cycle", "cache_misses_per_inf": "cache misses per inference",
            "cpu_ms_per_inf": "CPU time per inference (ms)"}


LITERAL = {"text.parse_math": False, "text.usetex": False}  # every text of a figure as it is written


def _literal(draw):
    """A figure function whose texts are all literal: made under LITERAL (tick labels made as it draws too), and
    each text of the figure it returns told so again, whatever rcParams the program around it has."""
    @functools.wraps(draw)
    def drawn(*args, **kwargs):
        with rc_context(LITERAL):
            fig = draw(*args, **kwargs)
        for text in fig.findobj(Text) if fig is not None else ():
            text.set_parse_math(False)
            text.set_usetex(False)
        return fig
    return drawn


def arm_colour(arm: str) -> str:
    """The colour of an arm in every figure: docker blue, bare orange, native green, any other arm a fixed colour of
    its own."""
    return _ARMS.get(arm) or _OTHERS[zlib.crc32(arm.encode()) % len(_OTHERS)]


def _arm_order(arms) -> list[str]:
    return sorted(set(arms), key=lambda a: (0 if a.startswith("docker") else 1 if a == "bare" else
                                            2 if a == "native" else 3, a))


def _colours(names) -> dict[str, str]:
    """Colours by sorted name: the same frameworks get the same colours in every figure drawn from one table."""
    return {n: _OTHERS[i % len(_OTHERS)] for i, n in enumerate(sorted(set(names)))}


def _cells(table: pd.DataFrame) -> pd.Series:
    """The cell of each row; results of an edgeorch before sweeps have none: board/framework-model."""
    fallback = table["board"].astype(str) + "/" + table["framework"].astype(str) + "-" + table["model"].astype(str)
    return table["cell"].fillna(fallback) if "cell" in table else fallback


def _arm(table: pd.DataFrame) -> pd.Series:
    return table["arm"].fillna(table["mode"]) if "arm" in table else table["mode"]


def _figure(width: float, height: float, nrows: int = 1, ncols: int = 1, **kw) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    for ax in axes.flat:
        ax.grid(True, color="0.9", lw=0.6)
        ax.set_axisbelow(True)
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(labelsize=8)
    return fig, axes


def _panels(n: int, *, ncols: int = 2, height: float = 3.6) -> tuple[Figure, np.ndarray]:
    """A grid of `n` small multiples, at most 9 in wide and tall: a report page, not a poster."""
    ncols = min(n, ncols if n <= 4 else 3)
    nrows = math.ceil(n / ncols)
    fig, axes = _figure(7 if ncols == 1 else min(9.0, 4.5 * ncols), min(9.0, height * nrows), nrows, ncols)
    for ax in axes.flat[n:]:
        fig.delaxes(ax)
    return fig, axes


def _legend(fig: Figure, axes, extra=(), **kw):
    """One legend for the whole figure, outside the axes: bars fill their axes and would hide under it."""
    handles = {}
    for ax in np.ravel(axes):
        for h, name in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(name, h)
    handles.update(extra)
    return fig.legend(list(handles.values()), list(handles), loc="outside right upper", fontsize=8, **kw)


def _note(ax, text: str) -> None:
    """A centred note in place of an empty plot: the reader learns why it is empty."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4", fontsize=9)
    if len(ax.get_shared_y_axes().get_siblings(ax)) == 1:  # shared ticks are a sibling's labels: the cells' names
        ax.set_yticks([])


def _numeric(runs: pd.DataFrame, columns) -> pd.DataFrame:
    present = [c for c in columns if c in runs]
    return runs[present].apply(pd.to_numeric, errors="coerce")


def _medians(runs: pd.DataFrame, columns) -> pd.DataFrame:
    """Medians of `columns` per (cell, arm), the cells in their order of appearance."""
    table = _numeric(runs, columns).assign(cell=_cells(runs), arm=_arm(runs))
    return table.groupby(["cell", "arm"], sort=False).median()


def _hbars(ax, med: pd.DataFrame, column: str, cells: list, arms: list, **kw) -> None:
    """One group of horizontal bars per cell (top to bottom), one bar per arm."""
    h = 0.8 / len(arms)
    for j, arm in enumerate(arms):
        values = [med[column].get((c, arm), np.nan) for c in cells]
        ax.barh(np.arange(len(cells)) + (j - (len(arms) - 1) / 2) * h, values, h, color=arm_colour(arm),
                label=arm, **kw)


def _cell_axes(ax, cells: list) -> None:
    ax.set_yticks(range(len(cells)), cells, fontsize=7)
    ax.set_ylim(len(cells) - 0.5, -0.5)


def _bars_height(rows: int, bars: int) -> float:
    return min(9.0, 1.3 + rows * (0.16 * bars + 0.12))


@_literal
def latency_ecdf(histograms: pd.DataFrame, cell: str) -> Figure | None:
    """ECDF of every timed inference's latency of each arm of `cell` (from the runs' histograms: each latency within
    samples.HISTOGRAM_ERROR), with each arm's median marked."""
    mine = histograms[_cells(histograms) == cell] if len(histograms) else histograms
    if mine.empty:
        return None
    fig, axes = _figure(7, 3.5)
    ax = axes[0, 0]
    arms = _arm(mine)
    tops = []
    for arm in _arm_order(arms):
        counts = mine[(arms == arm).to_numpy()].groupby("latency_ns")["count"].sum()  # every run of the arm
        ms, fraction = counts.index.to_numpy(dtype=float) / 1e6, counts.cumsum().to_numpy() / counts.sum()
        median = float(ms[np.searchsorted(fraction, 0.5)])
        tops.append((float(ms[np.searchsorted(fraction, 0.999)]), float(ms[-1])))
        ax.step(np.r_[ms[0], ms], np.r_[0.0, fraction], where="post", color=arm_colour(arm), lw=1.4,
                label=f"{arm}: n={int(counts.sum())}, median {median:.4g} ms")
        ax.axvline(median, color=arm_colour(arm), ls="--", lw=0.9, label=f"_median {arm}")
    top, largest = max(t for t, _ in tops), max(m for _, m in tops)
    if largest > 1.5 * top:  # a few stalls would squeeze the body of the distribution into one pixel column
        ax.set_xlim(right=top * 1.05)
        ax.set_xlabel("latency (ms), clipped at the 99.9th percentile")
    else:
        ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of inferences ≤ x")
    ax.set_title(f"{cell}: latency of every timed inference (dashed: medians)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def _thin(t: np.ndarray, y: np.ndarray, cap: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most `cap` points: the lowest and the highest of each stretch, so that spikes survive."""
    n = len(y)
    if n <= cap:
        return t, y
    k = -(-n // (cap // 2))
    blocks = np.full(-(-n // k) * k, np.nan)
    blocks[:n] = y
    blocks = blocks.reshape(-1, k)
    base = np.arange(len(blocks)) * k
    keep = np.unique(np.concatenate([base + np.nanargmin(blocks, axis=1), base + np.nanargmax(blocks, axis=1)]))
    return t[keep], y[keep]


def _offsets(cell_runs: pd.DataFrame, per_run: dict) -> dict:
    """Seconds from the cell's first run start to each run's start; end to end, in run order, without start times."""
    keys = list(per_run)
    stamps = pd.to_datetime(cell_runs["started_at"], utc=True, format="ISO8601", errors="coerce") \
        if "started_at" in cell_runs else pd.Series(pd.NaT, index=cell_runs.index)
    started = dict(zip(zip(cell_runs["arm"], cell_runs["pair"]), stamps))
    found = [started.get(k, pd.NaT) for k in keys]
    if not any(pd.isna(s) for s in found):
        first = min(found)
        return {k: (s - first).total_seconds() for k, s in zip(keys, found)}
    position = dict(zip(zip(cell_runs["arm"], cell_runs["pair"]), cell_runs["position"])) \
        if "position" in cell_runs else {}
    out, at = {}, 0.0
    for k in sorted(keys, key=lambda k: (k[1], position.get(k, 0))):
        out[k] = at
        t, lat = per_run[k]
        at += float(t[-1] + lat[-1]) + 1.0
    return out


@_literal
def latency_over_time(runs: pd.DataFrame, samples: pd.DataFrame, sensors: pd.DataFrame, cell: str) -> Figure | None:
    """Latency, temperature and CPU clock of a cell's runs on one time axis, throttled runs shaded (after
    Velasco-Montero et al., figure 1)."""
    mine = samples[_cells(samples) == cell] if len(samples) else samples
    if mine.empty:
        return None
    mine = mine.assign(arm=_arm(mine))
    per_run = {}
    for key, grp in mine.groupby(["arm", "pair"], sort=False):
        grp = grp.sort_values("iteration")
        lat = grp["latency_ns"].to_numpy(dtype=float) / 1e9
        t = grp["t_s"].to_numpy(dtype=float) if "t_s" in grp else np.full(len(grp), np.nan)
        if np.isnan(t).any():  # results from before edgeorch kept each inference's start: back to back
            t = np.cumsum(lat) - lat
        per_run[key] = (t, lat)
    cell_runs = runs[_cells(runs) == cell]
    cell_runs = cell_runs.assign(arm=_arm(cell_runs)).drop_duplicates(["arm", "pair"], keep="last")
    offsets = _offsets(cell_runs, per_run)

    fig, axes = _figure(9, 6, 3, 1, sharex=True, height_ratios=[2, 1, 1])
    top, temp_ax, freq_ax = axes[:, 0]
    seen = set()
    for (arm, pair), (t, lat) in per_run.items():
        x, y = _thin(offsets[(arm, pair)] + t, lat * 1e3)
        top.plot(x, y, ".", ms=2, color=arm_colour(arm), rasterized=len(x) > 500,
                 label=arm if arm not in seen else "_" + arm)
        seen.add(arm)
    hot_runs = cell_runs[cell_runs["throttled"].fillna(False).astype(bool)] if "throttled" in cell_runs \
        else cell_runs[:0]
    hot_keys = [k for k in zip(hot_runs["arm"], hot_runs["pair"]) if k in per_run]
    for i, key in enumerate(hot_keys):
        t, lat = per_run[key]
        for ax in axes[:, 0]:
            ax.axvspan(offsets[key], offsets[key] + float(t[-1] + lat[-1]), color=THROTTLED, alpha=0.15, lw=0,
                       gid="throttled", label="throttled run" if i == 0 and ax is top else "_throttled run")
    top.set_ylabel("latency (ms)")
    top.set_title(f"{cell}: each timed inference, the board's temperature and CPU clock", fontsize=10)

    sens = sensors[_cells(sensors) == cell] if len(sensors) else sensors
    if len(sens):
        sens = sens.assign(arm=_arm(sens))
        sens = sens[[k in offsets for k in zip(sens["arm"], sens["pair"])]]
    for ax, column, unit, missing in ((temp_ax, "temp_c", "temperature (°C)", "no thermal sensor on this board"),
                                      (freq_ax, "freq_mhz", "CPU clock (MHz)", "no cpufreq on this board")):
        values = pd.to_numeric(sens[column], errors="coerce") if len(sens) else pd.Series(dtype=float)
        if not values.notna().any():
            _note(ax, missing)
            continue
        ax.set_ylabel(unit, fontsize=9)
        hot = sens["throttled"].fillna(False).astype(bool).to_numpy() & values.notna().to_numpy()
        times = sens["t_s"].to_numpy(dtype=float) + np.array([offsets[k] for k in zip(sens["arm"], sens["pair"])])
        for (arm, _), idx in sens.groupby(["arm", "pair"], sort=False).indices.items():
            ax.plot(times[idx], values.to_numpy()[idx], color=arm_colour(arm), lw=1)
        if hot.any():
            ax.plot(times[hot], values.to_numpy()[hot], "x", color=THROTTLED, ms=4, label="throttled sample")
    freq_ax.set_xlabel("time since the cell's first run started (s)")
    _legend(fig, axes, markerscale=2)
    return fig


@_literal
def frameworks(runs: pd.DataFrame, board: str, model: str) -> Figure | None:
    """The frameworks side by side for one board and model: median latency per mode with its 95% interval across
    runs, and whether each framework's output agrees with PyTorch's; one panel per threads x batch."""
    from ..plan import label

    mine = runs[(runs["board"] == board) & (runs["model"] == model)]
    if mine["framework"].nunique() < 2:
        return None
    mine = mine.assign(threads=mine["threads"].astype(int), batch=mine["batch"].astype(int))
    counts = mine.groupby(["threads", "batch"])["framework"].nunique()
    variants = counts[counts >= 2].index.tolist()[:MAX_PANELS]  # a variant only one framework ran compares nothing
    if not variants:
        return None
    fig, axes = _panels(len(variants))
    for ax, (threads, batch) in zip(axes.flat, variants):
        v = mine[(mine["threads"] == threads) & (mine["batch"] == batch)]
        names = sorted(v["framework"].unique())
        modes = _arm_order(v["mode"])
        width = 0.8 / len(modes)
        highest = 0.0
        for j, mode in enumerate(modes):
            heights, errors = [], []
            for name in names:
                p50 = pd.to_numeric(v.loc[(v["framework"] == name) & (v["mode"] == mode), "p50_ms"],
                                    errors="coerce").dropna().to_numpy()
                median = float(np.median(p50)) if len(p50) else np.nan
                if len(p50) >= 2:
                    ci = stats.interval(np.log(p50), first_stage=len(p50))
                    errors.append((max(median - ci.low, 0.0), max(ci.high - median, 0.0)))
                else:
                    errors.append((np.nan, np.nan))
                heights.append(median)
                highest = np.nanmax([highest, median + np.nan_to_num(errors[-1][1])])
            ax.bar(np.arange(len(names)) + (j - (len(modes) - 1) / 2) * width, heights, width,
                   yerr=np.array(errors).T, capsize=3, color=arm_colour(mode), label=mode,
                   error_kw={"lw": 0.9})
        for x, name in enumerate(names):
            agrees = v.loc[v["framework"] == name, "agrees"].dropna() if "agrees" in v else pd.Series()
            if len(agrees):
                ok = bool(agrees.astype(bool).all())
                ax.text(x, 0.98, "✓ agrees\nwith PyTorch" if ok else "✗ differs\nfrom PyTorch",
                        transform=ax.get_xaxis_transform(), ha="center", va="top", fontsize=7.5,
                        fontfamily="DejaVu Sans", color="#2a7a2a" if ok else THROTTLED)
        versions = ["/".join(sorted(set(map(str, v.loc[v["framework"] == n, "framework_version"].dropna()))))
                    if "framework_version" in v else "" for n in names]
        ax.set_xticks(range(len(names)), [f"{n}\n{ver}".strip() for n, ver in zip(names, versions)], fontsize=8)
        ax.set_ylim(0, highest * 1.3 or 1)
        ax.set_ylabel("median of runs' p50 (ms)", fontsize=9)
        ax.set_title(label(model, threads, batch), fontsize=10)
    _legend(fig, axes)
    fig.suptitle(f"{board}: frameworks side by side (error bars: 95% interval across runs)", fontsize=9)
    return fig


def _variant(threads: int, batch: int) -> str:
    return f"t{threads or '-'} b{batch}"


@_literal
def sweep(runs: pd.DataFrame) -> Figure | None:
    """Latency against throughput over a threads x batch sweep, one line over batch per threads value (after
    Hanhirova et al.); 't-' is the framework's default threads."""
    if runs.empty:
        return None
    table = _numeric(runs, ["throughput_ips", "p50_ms", "threads", "batch"]).assign(
        board=runs["board"], framework=runs["framework"], model=runs["model"], mode=runs["mode"])
    med = table.groupby(["board", "framework", "model", "mode", "threads", "batch"]).median().reset_index()
    sizes = med.groupby(["board", "framework", "model", "mode"]).size()
    panels = sizes[sizes >= 2].reset_index()[["board", "model"]].drop_duplicates().to_numpy().tolist()[:MAX_PANELS]
    if not panels:
        return None
    colours = _colours(runs["framework"])
    fig, axes = _panels(len(panels))
    for ax, (board, model) in zip(axes.flat, panels):
        here = med[(med["board"] == board) & (med["model"] == model)]
        for (name, mode), grp in here.groupby(["framework", "mode"]):
            for k, (threads, line) in enumerate(grp.sort_values("batch").groupby("threads")):
                ax.plot(line["throughput_ips"], line["p50_ms"], marker=_MARKERS.get(mode, "s"), ms=4,
                        ls="-" if mode == "docker" else "--", lw=1, color=colours[name],
                        label=f"{name} {mode}" if k == 0 else "_")
                for r in line.itertuples():
                    ax.annotate(_variant(int(threads), int(r.batch)), (r.throughput_ips, r.p50_ms),
                                xytext=(3, 3), textcoords="offset points", fontsize=6.5, color="0.25")
        ax.set_xlabel("throughput (images/s)", fontsize=9)
        ax.set_ylabel("p50 latency (ms)", fontsize=9)
        ax.set_title(f"{board}: {model}", fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle("Latency against throughput over threads and batch (t- = default threads)", fontsize=9)
    return fig


@_literal
def energy(runs: pd.DataFrame) -> Figure | None:
    """Energy per inference per cell and arm, split into its idle and above-idle parts; average against idle power."""
    if "energy_mj" not in runs or not pd.to_numeric(runs["energy_mj"], errors="coerce").notna().any():
        return None
    med = _medians(runs, ["energy_mj", "energy_above_idle_mj", "avg_power_w", "idle_power_w"])
    med = med[med["energy_mj"].notna()]
    cells = list(dict.fromkeys(med.index.get_level_values("cell")))
    arms = _arm_order(med.index.get_level_values("arm"))
    fig, axes = _figure(9, _bars_height(len(cells), len(arms)), 1, 2, sharey=True, width_ratios=[3, 2])
    ax, power_ax = axes[0]
    h = 0.8 / len(arms)
    for j, arm in enumerate(arms):
        y = np.arange(len(cells)) + (j - (len(arms) - 1) / 2) * h
        total = np.array([med["energy_mj"].get((c, arm), np.nan) for c in cells])
        above = np.array([med["energy_above_idle_mj"].get((c, arm), np.nan) for c in cells]) \
            if "energy_above_idle_mj" in med else np.full(len(cells), np.nan)
        split = ~np.isnan(above)
        idle = np.where(split, total - above, 0.0)
        ax.barh(y, idle, h, color=arm_colour(arm), alpha=0.4, hatch="///", ec="white", lw=0)
        ax.barh(y, np.where(split, above, total), h, left=idle, color=arm_colour(arm), label=arm)
        if "avg_power_w" in med:
            power_ax.barh(y, [med["avg_power_w"].get((c, arm), np.nan) for c in cells], h, color=arm_colour(arm))
        if "idle_power_w" in med:
            power_ax.scatter([med["idle_power_w"].get((c, arm), np.nan) for c in cells], y, marker="|", s=150,
                             color="black", zorder=3, label="idle power" if j == 0 else "_")
    _legend(fig, axes, {"idle part": Patch(fc="0.7", hatch="///", ec="white")})
    _cell_axes(ax, cells)
    ax.set_xlabel("energy per inference (mJ)", fontsize=9)
    if "avg_power_w" in med and med["avg_power_w"].notna().any():
        power_ax.set_xlabel("average power while timed (W)", fontsize=9)
    else:
        _note(power_ax, "no power measured")
    fig.suptitle("Energy per inference and power, per cell", fontsize=10)
    return fig


@_literal
def memory(runs: pd.DataFrame) -> Figure | None:
    """Resident memory per cell and arm, at each stage of a run: before and after load, after the first inference,
    at its peak while timed, and the container's cgroup peak."""
    med = _medians(runs, MEMORY)
    columns = [c for c in MEMORY if c in med and med[c].notna().any()]
    if not columns:
        return None
    med = med[med[columns].notna().any(axis=1)]
    rows = [f"{c} · {a}" for c, a in med.index]
    fig, axes = _figure(8, _bars_height(len(rows), len(columns)))
    ax = axes[0, 0]
    h = 0.8 / len(columns)
    palette = ["#c6dbef", "#6baed6", "#2171b5", "#08306b", "#e6550d"]
    for j, column in enumerate(columns):
        ax.barh(np.arange(len(rows)) + (j - (len(columns) - 1) / 2) * h, med[column].to_numpy(), h,
                color=palette[list(MEMORY).index(column)], label=MEMORY[column])
    _cell_axes(ax, rows)
    ax.set_xlabel("resident memory (MB)", fontsize=9)
    _legend(fig, axes)
    ax.set_title("Memory per cell and arm, stage by stage", fontsize=10)
    return fig


@_literal
def counters(runs: pd.DataFrame) -> Figure | None:
    """Hardware counters per cell and arm: instructions per cycle, cache misses and CPU time per inference."""
    med = _medians(runs, COUNTERS)
    columns = [c for c in COUNTERS if c in med and med[c].notna().any()]
    if not columns:
        return None
    med = med[med[columns].notna().any(axis=1)]
    cells = list(dict.fromkeys(med.index.get_level_values("cell")))
    arms = _arm_order(med.index.get_level_values("arm"))
    fig, axes = _figure(min(9.0, 2.4 * len(columns) + 2), _bars_height(len(cells), len(arms)), 1, len(columns),
                        sharey=True)
    for ax, column in zip(axes[0], columns):
        _hbars(ax, med, column, cells, arms)
        ax.set_xlabel(COUNTERS[column], fontsize=9)
        if column == "cache_misses_per_inf":
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 1.5M, not an axis-wide "1e6"
    _cell_axes(axes[0, 0], cells)
    _legend(fig, axes)
    fig.suptitle("Hardware counters per cell (perf stat over the timed loop)", fontsize=10)
    return fig


def _shorten(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


@_literal
def operators(ops: pd.DataFrame, top: int = 10) -> Figure | None:
    """Where the time goes: each profiling pass's `top` operators by time per inference, with their share."""
    from ..plan import label

    if ops.empty:
        return None
    ops = ops.assign(cell=_cells(ops))
    passes = list(ops.groupby(["cell", "mode"], sort=False))[:MAX_PANELS]
    fig, axes = _panels(len(passes), height=0.7 + 0.2 * top)
    for ax, ((_, mode), grp) in zip(axes.flat, passes):
        # a pass profiled in several sessions: the median of each operator's time across them
        per_op = grp.groupby(["op_type", "op_name"], sort=False)[["time_ms", "share"]].median()
        per_op = per_op.sort_values("time_ms", ascending=False).head(top)
        names = [_shorten(f"{t}: {n}") for t, n in per_op.index]
        bars = ax.barh(range(len(per_op)), per_op["time_ms"], color=arm_colour(mode), height=0.7)
        ax.bar_label(bars, [f"{s:.1%}" for s in per_op["share"]], padding=2, fontsize=6.5)
        ax.set_yticks(range(len(per_op)), names, fontsize=6.5)
        ax.set_ylim(len(per_op) - 0.5, -0.5)
        ax.set_xlim(right=per_op["time_ms"].max() * 1.18)
        ax.set_xlabel("time per inference (ms)", fontsize=8)
        first = grp.iloc[0]
        ax.set_title(f"{first['board']} {first['framework']} {label(first['model'], first['threads'], first['batch'])}"
                     f" · {mode}", fontsize=8.5)
    fig.suptitle(f"The {top} slowest operators of each profiling pass (share of the pass's time)", fontsize=9)
    return fig


@_literal
def throughput_vs_cpu(runs: pd.DataFrame) -> Figure | None:
    """Throughput against CPU utilisation of every run, per board: who turns cores into images (after
    Velasco-Montero et al.)."""
    if not {"cpu_percent", "throughput_ips"} <= set(runs):
        return None
    table = _numeric(runs, ["cpu_percent", "throughput_ips"]).assign(
        board=runs["board"], framework=runs["framework"], mode=runs["mode"]).dropna()
    if table.empty:
        return None
    boards = sorted(table["board"].unique())[:MAX_PANELS]
    colours = _colours(runs["framework"])
    fig, axes = _panels(len(boards), ncols=3, height=3.4)
    for ax, board in zip(axes.flat, boards):
        here = table[table["board"] == board]
        for (name, mode), grp in here.groupby(["framework", "mode"]):
            ax.scatter(grp["cpu_percent"], grp["throughput_ips"], s=24, color=colours[name],
                       marker=_MARKERS.get(mode, "s"), alpha=0.8, lw=0)
        if 100 < here["cpu_percent"].max() <= 1600:
            ax.xaxis.set_major_locator(MultipleLocator(100))
        ax.set_xlim(0, here["cpu_percent"].max() * 1.08 or 1)
        ax.set_ylim(0, here["throughput_ips"].max() * 1.1 or 1)
        ax.set_xlabel("CPU utilisation % (100 = one core)", fontsize=9)
        ax.set_ylabel("throughput (images/s)", fontsize=9)
        ax.set_title(board, fontsize=10)
    shown = sorted(table["framework"].unique())
    modes = _arm_order(table["mode"])
    handles = [Line2D([], [], ls="", marker="o", color=colours[n]) for n in shown] + \
              [Line2D([], [], ls="", marker=_MARKERS.get(m, "s"), color="0.4") for m in modes]
    _legend(fig, [], dict(zip(shown + modes, handles)))
    return fig


@_literal
def macs_fit(runs: pd.DataFrame, macs: dict[str, int]) -> Figure | None:
    """Latency and energy per inference against the MACs an inference computes, with a least-squares line per
    board, framework and mode (after SyNERGY)."""
    mine = runs[runs["model"].isin(list(macs))]
    if mine["model"].nunique() < 2:
        return None
    table = _numeric(mine, ["p50_ms", "energy_mj", "threads", "batch"]).assign(
        board=mine["board"], framework=mine["framework"], mode=mine["mode"], model=mine["model"])
    # MACs are per image: a batch of b computes b times as many in one inference
    table["gmacs"] = table["model"].map(macs).astype(float) * table["batch"].fillna(1) / 1e9
    med = table.groupby(["board", "framework", "mode", "threads", "model", "batch"]).median(numeric_only=True)
    med = med.reset_index()
    fig, axes = _figure(9, 4, 1, 2)
    colours = _colours(f"{b} {f}" for b, f in zip(med["board"], med["framework"]))
    for ax, column, unit in ((axes[0, 0], "p50_ms", "p50 latency (ms)"),
                             (axes[0, 1], "energy_mj", "energy per inference (mJ)")):
        ax.set_xlabel("GMACs per inference", fontsize=9)
        ax.set_ylabel(unit, fontsize=9)
        drawn = med.dropna(subset=[column]) if column in med else med[:0]
        if drawn.empty:
            _note(ax, "no energy measured" if column == "energy_mj" else "no latency measured")
            continue
        for (board, name, mode, threads), grp in drawn.groupby(["board", "framework", "mode", "threads"]):
            colour = colours[f"{board} {name}"]
            ax.scatter(grp["gmacs"], grp[column], s=20, color=colour, marker=_MARKERS.get(mode, "s"), zorder=3)
            who = f"{board} {name} {mode}" + (f" t{int(threads)}" if threads else "")
            if grp["gmacs"].nunique() < 2:
                continue
            x, y = grp["gmacs"].to_numpy(), grp[column].to_numpy()
            slope, intercept = np.polyfit(x, y, 1)
            with np.errstate(invalid="ignore", divide="ignore"):  # equal latencies: r is undefined, shown as nan
                r = np.corrcoef(x, y)[0, 1]
            xs = np.array([0.0, x.max() * 1.05])
            per = "ms" if column == "p50_ms" else "mJ"
            ax.plot(xs, intercept + slope * xs, color=colour, lw=1, ls="-" if mode == "docker" else "--",
                    label=f"{who}: {slope:.3g} {per}/GMAC, r²={r ** 2:.2f}")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6.5, loc="upper left")
    fig.suptitle("Latency and energy against MACs: a least-squares line per board, framework and mode", fontsize=9)
    return fig


def png(fig: Figure, dpi: int = DPI) -> str:
    """The figure as a data: URI for an <img src> of an offline HTML page."""
    buf = io.BytesIO()
    with rc_context(LITERAL):  # the tick labels that drawing makes are literal too
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
