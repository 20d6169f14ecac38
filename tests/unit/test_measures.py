"""The figures beside latency in the result table: memory, perf's counters, energy, operator profiles."""

import json

import pandas as pd
import pytest

from edgeorch import report, results
from edgeorch.arch import Arch
from edgeorch.inventory import Board
from edgeorch.plan import bench_cell, mode_arms


def pair():
    return bench_cell(Board(name="x86", host="h", user="u", arch=Arch.AMD64), framework="onnxruntime", model="tiny",
                      arms=mode_arms(("docker", "bare")), iterations=5, warmup=1, threads=0).runs(0)


def test_memory_counters_and_energy_land_in_their_columns(make_doc):
    docker, bare = pair()
    runs, _ = results.normalize([(docker, make_doc([5.0] * 10)), (bare, make_doc([5.0] * 10, mode="bare"))],
                                run_id="r", arch_of={})
    d, b = runs.iloc[0], runs.iloc[1]
    assert (d["rss_before_load_mb"], d["rss_after_load_mb"], d["rss_after_first_mb"], d["peak_rss_timed_mb"]) == (
        40, 120, 140, 145)
    assert d["cgroup_peak_mb"] == 180 and pd.isna(b["cgroup_peak_mb"])  # bare metal has no cgroup of its own
    assert d["model_size_mb"] == pytest.approx(14_000_000 / 2**20)
    assert d["cycles_per_inf"] == 9.0e7 and d["cpu_ms_per_inf"] == 48.0 and d["ipc"] == pytest.approx(1.2 / 0.9)
    assert json.loads(d["counters_unavailable"]) == {}
    assert (d["energy_mj"], d["energy_above_idle_mj"], d["avg_power_w"], d["idle_power_w"]) == (275, 150, 5.5, 2.5)
    assert d["power_source"] == "meter:ina260" and d["power_rate_hz"] == 10 and d["energy_unavailable"] is None


def test_an_event_the_board_lacks_is_missing_with_its_reason_never_zero(make_doc):
    doc = make_doc([5.0] * 10)
    doc["counters"]["per_inference"] = {"task-clock": 4.9, "page-faults": 0.0}  # a real zero is kept
    doc["counters"]["unavailable"] = {"cycles": "<not supported>", "instructions": "<not supported>"}
    doc["counters"]["ipc"] = None
    doc["energy"] = {"source": None, "avg_power_w": None, "idle_power_w": None, "energy_mj": None,
                     "energy_above_idle_mj": None, "rate_hz": None, "samples": 0,
                     "reason": "rapl: no /sys/class/powercap/intel-rapl:*; ina3221: no hwmon named ina3221"}
    runs, _ = results.normalize([(pair()[0], doc)], run_id="r", arch_of={})
    r = runs.iloc[0]
    assert r["cpu_ms_per_inf"] == 4.9 and r["page_faults_per_inf"] == 0.0
    assert pd.isna(r["cycles_per_inf"]) and pd.isna(r["instructions_per_inf"]) and pd.isna(r["ipc"])
    assert json.loads(r["counters_unavailable"]) == {"cycles": "<not supported>", "instructions": "<not supported>"}
    assert pd.isna(r["energy_mj"]) and "intel-rapl" in r["energy_unavailable"]
    notes = report.unavailable_notes(runs)
    assert notes == ["x86: counters unavailable (cycles, instructions): <not supported>",
                     "x86: energy unavailable: rapl: no /sys/class/powercap/intel-rapl:*; ina3221: no hwmon "
                     "named ina3221"]


def test_a_run_without_perf_says_so_for_every_event(make_doc):
    doc = make_doc([5.0] * 10)
    doc["counters"] = {"reason": "perf is not installed on the board (sudo apt install linux-perf)",
                       "per_inference": {}, "unavailable": {"cycles": "perf is not installed"}}
    del doc["energy"]
    runs, _ = results.normalize([(pair()[0], doc)], run_id="r", arch_of={})
    assert json.loads(runs["counters_unavailable"].iloc[0]) == {
        "*": "perf is not installed on the board (sudo apt install linux-perf)"}
    assert runs["energy_unavailable"].iloc[0] == "not measured (--no-energy)"
    assert report.unavailable_notes(runs)[0] == ("x86: counters unavailable (all events): perf is not "
                                                 "installed on the board (sudo apt install linux-perf)")


def test_the_ops_table_ranks_each_pass_and_gives_shares():
    docker = pair()[0]
    ops = [{"op_type": "Conv", "op_name": "conv1", "time_ns": 3e6}, {"op_type": "Relu", "op_name": "relu1",
                                                                      "time_ns": 1e6},
           {"op_type": "Gemm", "op_name": "fc", "time_ns": 4e6}]
    table = results.ops_table([(docker, {"profile": {"ops": ops, "reason": None}})], run_id="r")
    assert list(table.columns) == results.OPS_COLUMNS
    assert table[["op_type", "time_ms", "share", "rank"]].values.tolist() == [
        ["Conv", 3.0, 0.375, 2], ["Relu", 1.0, 0.125, 3], ["Gemm", 4.0, 0.5, 1]]
    top = report.ops_top(table, top=2)
    assert top.row_count == 2 and list(top.columns[4]._cells) == ["Gemm", "Conv"]


def test_profiles_are_read_back_from_raw_whole_or_not_at_all(tmp_path):
    docker, bare = (r for r in bench_cell(Board(name="x86", host="h", user="u", arch=Arch.AMD64),
                                          framework="onnxruntime", model="tiny", arms=mode_arms(("docker", "bare")),
                                          iterations=5, warmup=1, threads=0).profile_runs(10))
    ok = {"status": "ok", "profile": {"ops": [], "reason": "none here"}}
    path = results.raw_path(tmp_path, docker)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(ok))
    results.raw_path(tmp_path, bare).write_text('{"status": "ok", "prof')  # cut off mid-write
    assert results.profiles(tmp_path, [docker, bare]) == [(docker, ok)]


def test_a_reason_is_said_once_per_board_and_names_the_mode_only_where_modes_differ(make_doc):
    docker, bare = pair()
    a, b = make_doc([5.0] * 10), make_doc([5.0] * 10, mode="bare")
    for doc in (a, b):
        doc["counters"]["unavailable"] = {"cycles": "<not supported>"}
    a["energy"] = {"reason": "no sensor"}
    runs, _ = results.normalize([(docker, a), (bare, b)], run_id="r", arch_of={})
    assert report.unavailable_notes(runs) == ["x86: counters unavailable (cycles): <not supported>",
                                              "x86 docker: energy unavailable: no sensor"]
