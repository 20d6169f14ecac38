"""edgeorch.report.figures: each figure shows what synthetic results with a known truth say, or is None."""

import base64
import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer, ErrorbarContainer
from PIL import Image

from edgeorch import results
from edgeorch.report import figures

CELL = "x86/tflite-mobilenet_v2"
START = pd.Timestamp("2026-12-03T14:01:02.123456+00:00")
HOT = ("docker", 3)  # the throttled run


def _runs_and_samples(rng, *, pairs=8, iterations=50, t_s=True):
    runs, samples = [], []
    for pair in range(pairs):
        for position, (arm, centre) in enumerate((("docker", 11.0), ("bare", 10.0))):
            i = 2 * pair + position
            ms = centre * np.exp(0.01 * rng.standard_normal(iterations))
            starts = np.cumsum(ms) / 1e3 - ms / 1e3
            runs.append({"cell": CELL, "board": "x86", "framework": "tflite", "framework_version": "2.14.0",
                         "model": "mobilenet_v2", "mode": arm, "arm": arm, "pair": pair, "position": position,
                         "threads": 0, "batch": 1, "p50_ms": float(np.median(ms)), "p99_ms": float(ms.max()),
                         "throughput_ips": 1e3 / ms.mean(), "cpu_percent": 380.0 + position * 10,
                         "started_at": (START + pd.Timedelta(seconds=2 * i)).isoformat(),
                         "throttled": (arm, pair) == HOT, "max_temp_c": 60.0, "agrees": True, "max_abs_diff": 1e-6,
                         "energy_mj": 50.0 + position, "energy_above_idle_mj": 30.0, "avg_power_w": 4.5,
                         "idle_power_w": 2.0, "rss_before_load_mb": 40.0, "rss_after_load_mb": 120.0,
                         "rss_after_first_mb": 140.0, "peak_rss_timed_mb": 145.0,
                         "cgroup_peak_mb": 180.0 if arm == "docker" else np.nan, "ipc": 1.3 + 0.1 * position,
                         "cycles_per_inf": 9e7, "instructions_per_inf": 1.2e8, "cache_misses_per_inf": 1.5e6,
                         "cpu_ms_per_inf": 40.0})
            samples.append(pd.DataFrame({
                "cell": CELL, "board": "x86", "framework": "tflite", "model": "mobilenet_v2", "mode": arm,
                "arm": arm, "pair": pair, "iteration": np.arange(iterations),
                "latency_ns": np.round(ms * 1e6).astype(np.int64), "t_s": starts if t_s else np.nan}))
    runs = pd.DataFrame(runs)
    for col in ("throttled", "agrees"):
        runs[col] = runs[col].astype("boolean")
    return runs, pd.concat(samples, ignore_index=True)


def _sensors(runs):
    rows = []
    for r in runs.itertuples():
        for t in np.arange(-0.2, 0.6, 0.1):
            rows.append({"cell": r.cell, "board": r.board, "framework": r.framework, "model": r.model,
                         "mode": r.mode, "arm": r.arm, "pair": r.pair, "t_s": t, "temp_c": 55.0 + t,
                         "freq_mhz": 1800.0, "throttled": (r.arm, r.pair) == HOT})
    table = pd.DataFrame(rows)
    table["throttled"] = table["throttled"].astype("boolean")
    return table


EMPTY_SENSORS = pd.DataFrame(columns=["cell", "board", "framework", "model", "mode", "arm", "pair", "t_s", "temp_c",
                                      "freq_mhz", "throttled"])


@pytest.fixture
def frames():
    runs, samples = _runs_and_samples(np.random.default_rng(1))
    return runs, samples, _sensors(runs)


def _ops(runs):
    rows = []
    for mode in ("docker", "bare"):
        times = np.array([4.0, 2.0, 1.0] + [0.1] * 12)
        for rank, t in enumerate(times, 1):
            rows.append({"run_id": "r", "cell": CELL, "board": "x86", "framework": "tflite",
                         "model": "mobilenet_v2", "mode": mode, "threads": 0, "batch": 1,
                         "op_type": "CONV_2D", "op_name": f"block_{rank}/" + "x" * 60, "time_ms": t,
                         "share": t / times.sum(), "rank": rank})
    return pd.DataFrame(rows)


def _sweep_runs(runs):
    out = []
    for threads in (1, 2):
        for batch in (1, 2, 4):
            for arm in ("docker", "bare"):
                r = runs[runs["arm"] == arm].iloc[:2].copy()
                r["threads"], r["batch"] = threads, batch
                r["cell"] = f"{CELL}-t{threads}-b{batch}"
                r["throughput_ips"] = 100.0 * threads * batch ** 0.5
                r["p50_ms"] = 10.0 * batch / threads
                out.append(r)
    return pd.concat(out, ignore_index=True)


def _texts(fig):
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def _pixels(uri):
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))


def test_ecdf_one_line_per_arm_and_medians_where_the_data_are(frames):
    _, samples, _ = frames
    ax = figures.latency_ecdf(results.histograms_of(samples), CELL).axes[0]
    curves = [line for line in ax.lines if not line.get_label().startswith("_")]
    assert sorted(line.get_label().split(":")[0] for line in curves) == ["bare", "docker"]
    medians = {line.get_label().removeprefix("_median "): line.get_xdata()[0]
               for line in ax.lines if line.get_label().startswith("_median")}
    assert medians == pytest.approx({"docker": 11.0, "bare": 10.0}, rel=0.01)
    assert "n=400" in curves[0].get_label()
    assert figures.latency_ecdf(results.histograms_of(samples), "nowhere/x-y") is None


def test_throttled_run_is_shaded_over_its_own_time_span(frames):
    runs, samples, sensors = frames
    fig = figures.latency_over_time(runs, samples, sensors, CELL)
    top = fig.axes[0]
    spans = [p for ax in fig.axes for p in ax.patches if p.get_gid() == "throttled"]
    assert len(spans) == 3  # one per axes, for the one throttled run
    hot = samples[(samples["arm"] == HOT[0]) & (samples["pair"] == HOT[1])]
    start = 2 * (2 * HOT[1])  # started_at is 2 s apart run after run; docker runs first in its pair
    end = start + (hot["t_s"].iloc[-1] + hot["latency_ns"].iloc[-1] / 1e9)
    assert (spans[0].get_x(), spans[0].get_x() + spans[0].get_width()) == pytest.approx((start, end))
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"docker", "bare", "throttled run", "throttled sample"} <= set(legend)
    # the last run (bare, pair 7) started 30 s after the first: its last inference is 30 s later on the axis
    xs = np.concatenate([line.get_xdata() for line in top.lines])
    assert xs.max() == pytest.approx(30 + samples.loc[samples["pair"] == 7, "t_s"].max(), abs=0.05)
    assert not _texts(fig)


def test_no_sensors_says_so_instead_of_an_empty_axis(frames):
    runs, samples, _ = frames
    fig = figures.latency_over_time(runs, samples, EMPTY_SENSORS, CELL)
    assert "no thermal sensor on this board" in _texts(fig)
    assert "no cpufreq on this board" in _texts(fig)


def test_old_results_without_start_times_still_draw_end_to_end():
    runs, samples = _runs_and_samples(np.random.default_rng(2), pairs=2, t_s=False)
    runs = runs.drop(columns="started_at")
    fig = figures.latency_over_time(runs, samples, EMPTY_SENSORS, CELL)
    xs = np.sort(np.concatenate([line.get_xdata() for line in fig.axes[0].lines]))
    assert len(xs) == len(samples) and np.all(np.diff(xs) > 0)  # four runs, one after the other, no overlap
    assert figures.png(fig)


def test_long_runs_are_thinned_but_keep_their_spikes():
    t = np.arange(100_000, dtype=float)
    y = np.ones_like(t)
    y[54_321] = 50.0
    x, kept = figures._thin(t, y)
    assert len(kept) <= figures.MAX_POINTS and kept.max() == 50.0 and 54_321 in x


def test_frameworks_side_by_side_with_intervals_and_agreement(frames):
    runs, _, _ = frames
    other = runs.assign(framework="onnxruntime", framework_version="1.20.1", agrees=False,
                        p50_ms=runs["p50_ms"] * 2)
    both = pd.concat([runs, other], ignore_index=True)
    fig = figures.frameworks(both, "x86", "mobilenet_v2")
    ax = fig.axes[0]
    heights = {(c.get_label(), round(b.get_x() + b.get_width() / 2)): b.get_height()
               for c in ax.containers if isinstance(c, BarContainer) for b in c}
    docker = runs[runs["mode"] == "docker"]["p50_ms"].median()
    assert heights[("docker", 1)] == pytest.approx(docker)  # tflite sorts after onnxruntime
    assert heights[("docker", 0)] == pytest.approx(2 * docker)
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)][0]  # docker's, both frameworks
    (_, low), (_, high) = bars.lines[2][0].get_segments()[1]
    assert low < docker < high and high - low < 0.05 * docker  # 8 runs 1% apart: a narrow interval around it
    assert any(t.startswith("✓ agrees") for t in _texts(fig)) and any(t.startswith("✗ differs") for t in _texts(fig))
    assert [t.get_text() for t in ax.get_xticklabels()] == ["onnxruntime\n1.20.1", "tflite\n2.14.0"]
    assert figures.frameworks(runs, "x86", "mobilenet_v2") is None


def test_sweep_annotates_every_threads_and_batch(frames):
    runs, _, _ = frames
    fig = figures.sweep(_sweep_runs(runs))
    assert {f"t{t} b{b}" for t in (1, 2) for b in (1, 2, 4)} <= set(_texts(fig))
    lines = fig.axes[0].lines
    assert len(lines) == 4  # one per threads value and mode
    assert figures.sweep(runs) is None


def test_energy_memory_counters(frames):
    runs, _, _ = frames
    fig = figures.energy(runs)
    bars = [b for b in fig.axes[0].patches]
    assert sorted(round(b.get_width(), 6) for b in bars) == [20.0, 21.0, 30.0, 30.0]  # idle and above idle
    assert figures.energy(runs.assign(energy_mj=np.nan)) is None
    fig = figures.memory(runs)
    assert "cgroup peak" in [t.get_text() for t in fig.legends[0].get_texts()]
    assert figures.memory(runs.assign(**{c: np.nan for c in figures.MEMORY})) is None
    fig = figures.counters(runs.assign(cache_misses_per_inf=np.nan))
    assert [ax.get_xlabel() for ax in fig.axes] == ["instructions per cycle", "CPU time per inference (ms)"]
    assert figures.counters(runs.assign(**{c: np.nan for c in figures.COUNTERS})) is None


def test_operators_top_n_with_shares(frames):
    runs, _, _ = frames
    fig = figures.operators(_ops(runs), top=5)
    assert len(fig.axes) == 2
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == 5 and all(len(s) <= 40 for s in labels) and labels[0].startswith("CONV_2D: block_1/")
    assert "48.8%" in _texts(fig)  # 4 ms of the pass's 8.2
    assert figures.operators(_ops(runs)[:0]) is None


def test_throughput_vs_cpu_one_point_per_run(frames):
    runs, _, _ = frames
    fig = figures.throughput_vs_cpu(runs)
    assert sum(len(c.get_offsets()) for c in fig.axes[0].collections) == len(runs)
    assert figures.throughput_vs_cpu(runs[:0]) is None


def test_macs_fit_recovers_a_known_line(frames):
    runs, _, _ = frames
    macs = {"a": 1_000_000_000, "b": 2_000_000_000, "c": 4_000_000_000}
    rows = [runs.iloc[:4].assign(model=m, p50_ms=2.0 * g / 1e9 + 1.0, energy_mj=np.nan) for m, g in macs.items()]
    fig = figures.macs_fit(pd.concat(rows, ignore_index=True), macs)
    fits = [line for line in fig.axes[0].lines if "ms/GMAC" in line.get_label()]
    assert len(fits) == 2  # docker and bare
    for line in fits:
        (x0, x1), (y0, y1) = line.get_xdata(), line.get_ydata()
        assert (y1 - y0) / (x1 - x0) == pytest.approx(2.0, rel=0.01) and y0 == pytest.approx(1.0, rel=0.01)
        assert "r²=1.00" in line.get_label()
    assert "no energy measured" in _texts(fig)
    assert figures.macs_fit(runs, macs) is None


def test_png_is_a_decodable_picture_with_content(frames):
    _, samples, _ = frames
    pixels = _pixels(figures.png(figures.latency_ecdf(results.histograms_of(samples), CELL)))
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 2


def test_all_figures_of_a_cell_draw(frames):
    runs, samples, sensors = frames
    for fig in (figures.latency_ecdf(results.histograms_of(samples), CELL),
                figures.latency_over_time(runs, samples, sensors, CELL),
                figures.energy(runs), figures.memory(runs), figures.counters(runs), figures.operators(_ops(runs)),
                figures.throughput_vs_cpu(runs), figures.sweep(_sweep_runs(runs)),
                figures.frameworks(pd.concat([runs, runs.assign(framework="onnxruntime")]), "x86", "mobilenet_v2"),
                figures.macs_fit(pd.concat([runs, runs.assign(model="resnet18")]),
                                 {"mobilenet_v2": 300_000_000, "resnet18": 1_800_000_000})):
        assert _pixels(figures.png(fig)).shape[0] > 100
