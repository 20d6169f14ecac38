"""The measurements of the research on the x86 sim board, in both modes: perf's counters per inference (software
events here: this VM has no PMU), memory at each stage, energy from a rail the test controls, per-operator profiles
of two frameworks, and a threads x batch sweep, all from one bench."""

import json
import subprocess

import numpy as np
import pandas as pd
import pytest

from . import faults as F
from .conftest import invoke
from .test_pipeline import run_dir_of

RAIL_W = 3.25  # what the controlled rail reads, in watts
FRAMEWORKS = ("onnxruntime", "opencv")


def _meter(home, rail):
    """A meter program on the board that reads the rail: a program alone (a command with arguments is refused,
    its words would show in the board's `ps`)."""
    meter = home / "rail-meter"
    meter.write_text(f"#!/bin/sh\nexec cat {rail}\n")
    meter.chmod(0o755)
    return meter


@pytest.fixture(scope="module")
def swept(fleet, tmp_path_factory):
    """One bench: ONNX Runtime and OpenCV x threads 1,2 x batch 1,2, both modes, a profiling pass per cell, energy
    from a meter command that reads the rail file of the x86 board."""
    tmp = tmp_path_factory.mktemp("measures")
    x86 = F.sim_board(fleet)
    rail = x86.home / "rail-watts"  # the board's home has the same path inside it
    rail.write_text(f"{RAIL_W}\n")
    inventory = F.write_inventory(tmp, {"name": "x86", "power_meter": [str(_meter(x86.home, rail))]})
    F.wait_for(lambda: F.lock_free(x86), "free lock on the x86 board", timeout=600, every=0.5)
    r = invoke("bench", "--inventory", str(inventory), "--host", "x86", "--framework", ",".join(FRAMEWORKS),
               "--model", "squeezenet1_1", "--threads", "1,2", "--batch", "1,2", "--repeat", "1", "--iterations", "3",
               "--warmup", "1", "--min-time", "1", "--profile", "3")
    run_dir = run_dir_of(r.stdout)
    return F.flat(r.stdout), run_dir, pd.read_parquet(run_dir / "results.parquet")


def test_each_threads_and_batch_value_is_a_cell_with_latency_and_throughput(swept):
    out, run_dir, df = swept
    assert len(df) == 2 * 2 * 2 * 2  # frameworks x threads x batch x modes, one pair each
    assert sorted(set(zip(df["framework"], df["threads"], df["batch"]))) == [
        (f, t, b) for f in FRAMEWORKS for t in (1, 2) for b in (1, 2)]
    assert set(df["cell"]) == {f"x86/{f}-squeezenet1_1-t{t}" + ("-b2" if b == 2 else "")
                               for f in FRAMEWORKS for t in (1, 2) for b in (1, 2)}
    assert df["agrees"].all()  # each batch checked against PyTorch's output for that batch
    assert (df["throughput_ips"] > 0).all() and df["p50_ms"].notna().all()
    assert "Sweep: latency against throughput" in out
    manifest = F.manifest(run_dir)
    assert manifest["complete"] and len(manifest["cells"]) == 8


def test_software_counters_per_inference_in_both_modes_and_no_fake_zeros(swept):
    _, _, df = swept
    for r in df.itertuples():
        # one thread busy through an inference: its CPU time is at most about its latency, and in ms (not s or µs);
        # on this machine's two cores shared with the fleet and the other part's tests, a run may get a quarter of one
        if r.threads == 1:
            assert 0.1 < r.cpu_ms_per_inf / r.mean_ms < 3, (r.mode, r.framework, r.cpu_ms_per_inf, r.mean_ms)
        assert r.page_faults_per_inf >= 0
        unavailable = json.loads(r.counters_unavailable)
        for event, column in (("cycles", "cycles_per_inf"), ("instructions", "instructions_per_inf"),
                              ("context-switches", "context_switches_per_inf")):
            # this VM has no hardware PMU, and the board's login `pi` counts user space only (perf_event_paranoid
            # 2, where a kernel-side event reads 0): each says so, and the column is empty, never 0
            assert (event in unavailable and pd.isna(getattr(r, column))) or getattr(r, column) > 0
    assert set(df["mode"]) == {"docker", "bare"} and df["cpu_ms_per_inf"].notna().all()


def test_memory_at_each_stage_and_the_containers_cgroup_peak(swept):
    _, _, df = swept
    assert (df["rss_before_load_mb"] < df["rss_after_load_mb"]).all()
    assert (df["rss_after_load_mb"] <= df["rss_after_first_mb"] * 1.05).all()
    assert df["peak_rss_timed_mb"].notna().all() and (df["peak_rss_timed_mb"] <= df["peak_rss_mb"] + 1).all()
    docker, bare = df[df["mode"] == "docker"], df[df["mode"] == "bare"]
    # the cgroup is charged for the pages its processes brought in: libraries an earlier run left in the page cache
    # are in the RSS but not in it, so it may be the smaller of the two
    assert docker["cgroup_peak_mb"].notna().all() and (docker["cgroup_peak_mb"] > 20).all()
    assert bare["cgroup_peak_mb"].isna().all()
    assert df["model_size_mb"].between(4, 6).all()  # SqueezeNet 1.1 is 1.2 M parameters of 4 bytes


def test_energy_per_inference_from_the_controlled_rail(swept):
    _, run_dir, df = swept
    [source] = set(df["power_source"])
    assert source.startswith("meter:rail-meter#")  # its program and a hash, never its words
    # power is sampled in the on-windows (2 s on, 2 s off) alone: a 1 s loop may fall wholly in an off-window, and
    # says so; a loop of the default --min-time (5 s) always overlaps an on-window
    short = df[df["energy_unavailable"].notna()]
    said = short["energy_unavailable"]
    assert said.str.contains("[01] sample.* inside the timed phase of 1(?:\\.0\\d)? s .*a longer --min-time").all(), \
        said.tolist()
    df = df[df["energy_unavailable"].isna()]
    assert len(df) >= 8 and set(df["framework"]) == set(FRAMEWORKS)
    assert df["avg_power_w"].tolist() == pytest.approx([RAIL_W] * len(df))
    assert df["idle_power_w"].tolist() == pytest.approx([RAIL_W] * len(df))
    assert df["energy_above_idle_mj"].abs().max() < 1e-6
    for r in df.itertuples():
        doc = json.loads((run_dir / "raw" / f"{r.cell}-{r.mode}-00.json").read_text())
        sub = doc["timing"]["subsample"]  # the first and the last inference among them
        timed_s = (sub["starts_ns"][-1] + sub["latencies_ns"][-1] - sub["starts_ns"][0]) / 1e9
        assert r.energy_mj == pytest.approx(RAIL_W * timed_s / doc["timing"]["count"] * 1000, rel=1e-6)
        assert doc["energy"]["samples"] >= 2 and r.power_rate_hz > 0


def test_the_cost_of_sampling_power_is_measured_in_the_run_itself(fleet, tmp_path):
    """Latency in the windows that sample (temperature and power) against the windows beside them that do not: a run
    long enough for an on-window between two off-windows."""
    x86 = F.sim_board(fleet)
    rail = x86.home / "rail-watts"
    rail.write_text(f"{RAIL_W}\n")
    inventory = F.write_inventory(tmp_path, {"name": "x86", "power_meter": [str(_meter(x86.home, rail))]})
    F.wait_for(lambda: F.lock_free(x86), "free lock on the x86 board", timeout=600, every=0.5)
    r = invoke("bench", "--inventory", str(inventory), "--host", "x86", "--framework", "onnxruntime", "--model",
               "squeezenet1_1", "--mode", "bare", "--repeat", "1", "--iterations", "3", "--min-time", "7",
               "--no-counters")
    df = pd.read_parquet(run_dir_of(r.stdout) / "results.parquet")
    assert df["sampler_cost"].notna().all() and df["avg_power_w"].tolist() == pytest.approx([RAIL_W])
    assert df["counters_unavailable"].tolist() == ['{"*": "not measured (--no-counters)"}']
    assert "sensor sampler cost: median" in F.flat(r.stdout)


def test_a_4us_model_answers_a_bounded_document_with_its_samples_beside_it_and_out_of_its_memory(fleet):
    """A run of a tiny model times hundreds of thousands of inferences: its document stays small (a summary), every
    sample comes back only when asked (--keep-samples), binary, and the samples' memory is not the model's."""
    r = invoke("bench", "--host", "x86", "--framework", "tflite", "--model", "tiny", "--repeat", "1", "--min-time",
               "1", "--keep-samples", "--no-counters", "--no-energy")
    run_dir = run_dir_of(r.stdout)
    runs = pd.read_parquet(run_dir / "results.parquet")
    assert (runs["iterations"] > 50_000).all() and set(runs["mode"]) == {"docker", "bare"}
    for run in runs.itertuples():
        raw = run_dir / "raw" / "x86" / f"tflite-tiny-{run.mode}-00.json"
        assert raw.stat().st_size < 1_000_000 and "latencies_ns" not in json.loads(raw.read_text())["timing"]
        starts, latencies = np.load(raw.with_name(f"{raw.stem}.samples.npy"))
        assert len(latencies) == run.iterations and np.all(np.diff(starts) > 0)
        assert np.median(latencies) / 1e6 == pytest.approx(run.p50_ms, rel=1e-12)  # the verdicts' median, exact
    assert (runs["samples_mb"] >= runs["iterations"] * 16 / 2**20).all()
    # the timed peak less the samples: what the model grew by (nothing, for this one) and a small constant
    assert ((runs["peak_rss_timed_mb"] - runs["rss_after_first_mb"]).abs() < 2).all(), runs[
        ["mode", "rss_after_first_mb", "peak_rss_timed_mb", "samples_mb"]]


def test_an_operator_profile_for_each_framework_and_mode(swept):
    out, run_dir, _ = swept
    ops = pd.read_parquet(run_dir / "ops.parquet")
    assert set(zip(ops["framework"], ops["mode"])) == {(f, m) for f in FRAMEWORKS for m in ("docker", "bare")}
    assert len(ops.groupby(["cell", "mode"])) == 16
    for (_, _), grp in ops.groupby(["cell", "mode"]):
        assert grp["share"].sum() == pytest.approx(1.0) and (grp["time_ms"] >= 0).all()
        assert sorted(grp["rank"]) == list(range(1, len(grp) + 1))
    assert {"Conv", "Concat"} <= set(ops.loc[ops["framework"] == "onnxruntime", "op_type"])  # Relu is fused in Conv
    assert "Convolution" in set(ops.loc[ops["framework"] == "opencv", "op_type"])
    assert "Where the time goes" in out
    # the profiling passes are not timed runs: none is in the result table
    assert not any(np.char.endswith(pd.read_parquet(run_dir / "results.parquet")["cell"].to_numpy(str), "profile"))


PERF_EVENT_OPEN = """
import ctypes, os, platform, struct
libc = ctypes.CDLL(None, use_errno=True)
number = {"aarch64": 241, "armv7l": 364, "x86_64": 298}[platform.machine()]
attr = ctypes.create_string_buffer(struct.pack("IIQ", 1, 112, 1) + bytes(96), 112)  # software task-clock
fd = libc.syscall(number, attr, 0, -1, -1, 0)
print(platform.machine(), "opened" if fd >= 0 else os.strerror(ctypes.get_errno()))
"""


@pytest.mark.parametrize("name, answer", [("rpi5", "aarch64 Function not implemented"),
                                          ("rpi3", "armv7l Function not implemented"), ("x86", "x86_64 opened")])
def test_qemu_user_mode_has_no_perf_event_open_so_arm_sim_boards_count_nothing(trixie_fleet, name, answer):
    """Why the ARM sim boards have no perf: the syscall itself is missing under QEMU's user-mode emulation. A real
    Raspberry Pi's kernel has it."""
    board = F.sim_board(trixie_fleet, name)
    r = subprocess.run(["chroot", str(board.rootfs), "python3", "-c", PERF_EVENT_OPEN], capture_output=True,
                       text=True, timeout=120)
    assert r.stdout.strip() == answer, r.stderr


def test_the_report_draws_the_sweep_frameworks_and_measures(swept):
    from . import browser

    _, run_dir, df = swept
    page = browser.load(run_dir / "report.html")
    assert page.console_errors == [] and page.requests == []
    alts = {img["alt"] for img in page.images}
    assert {"latency against throughput", "frameworks on x86 squeezenet1_1", "energy per inference", "memory",
            "hardware counters", "top operators", "throughput against CPU utilisation"} <= alts, alts
    assert all(f"latency over time of {cell}" in alts for cell in set(df["cell"]))
    for img, shot in zip(page.images, page.image_shots):
        assert img["complete"] and not browser.blank(shot), img["alt"]
    # one network only: the MACs fit says what it needs instead of drawing a line through one point
    assert "the fit needs two or more" in page.text
