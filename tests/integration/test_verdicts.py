"""Verdicts on the simulated fleet: the A/A calibration, the stopping rule, the counterbalanced order, explain."""

import datetime
import json
import re
from pathlib import Path

import pandas as pd

from edgeorch.analysis import comparison

from .conftest import invoke

# The x86 board runs natively: the tiny model takes microseconds, so each run is bounded by --min-time.
SMALL = ["--host", "x86", "--framework", "tflite", "--model", "tiny", "--iterations", "20", "--warmup", "2",
         "--min-time", "0.3"]


def run_dir_of(output: str) -> Path:
    return Path(re.search(r"results go to (\S+)", output).group(1))


def started(run_dir: Path, key: str) -> datetime.datetime:
    doc = json.loads((run_dir / "raw" / f"{key}.json").read_text())
    return datetime.datetime.fromisoformat(doc["started_at"])


def test_calibrate_says_equivalent_or_inconclusive_and_reports_the_noise_floor(fleet):
    r = invoke("calibrate", *SMALL, "--mode", "docker", "--min-pairs", "5", "--max-pairs", "6")
    assert "Calibration: each mode against itself" in r.stdout
    run_dir = run_dir_of(r.stdout)
    cells = json.loads((run_dir / "manifest.json").read_text())["cells"]
    assert list(cells) == ["x86/tflite-tiny:docker"] and cells["x86/tflite-tiny:docker"]["arms"] == [
        "docker-A", "docker-B"]
    assert "noise floor" in r.stdout and "minutes to ±1%" in r.stdout
    found = comparison(run_dir).iloc[0]
    assert (found["a"], found["b"]) == ("docker-A", "docker-B") and found["noise"] > 0
    assert found["pairs"] == cells["x86/tflite-tiny:docker"]["pairs"] == 6
    # never "slower" or "faster" against itself
    assert found["kind"] in ("equivalent", "inconclusive") or not found["valid"], found["verdict"]
    df = pd.read_parquet(run_dir / "results.parquet")
    assert set(df["mode"]) == {"docker"} and sorted(set(df["arm"])) == ["docker-A", "docker-B"]
    # a run lasts at least --min-time: a model of microseconds gets far more than its 20 iterations
    assert (df["iterations"] > 1000).all() and (df["iterations"] / df["throughput_ips"] >= 0.3).all()


def test_the_stopping_rule_stops_and_says_why_and_the_order_is_counterbalanced(fleet):
    # no precision can stop it before 40 pairs: the time bound does, and the results say so
    r = invoke("bench", *SMALL, "--min-pairs", "40", "--max-pairs", "40", "--max-time", "1")
    cell = json.loads((run_dir_of(r.stdout) / "manifest.json").read_text())["cells"]["x86/tflite-tiny"]
    assert cell["stop"] == "max-time" and 1 <= cell["pairs"] < 40
    assert "max-time" in r.stdout
    # a precision that is easy to reach stops the cell at the first whole ABBA block after the minimum of pairs
    r = invoke("bench", *SMALL, "--min-pairs", "5", "--max-pairs", "8", "--precision", "0.9")
    run_dir = run_dir_of(r.stdout)
    cell = json.loads((run_dir / "manifest.json").read_text())["cells"]["x86/tflite-tiny"]
    assert (cell["arms"], cell["stop"], cell["pairs"]) == (["docker", "bare"], "precision", 6)
    assert comparison(run_dir).iloc[0]["kind"] in ("slower", "faster", "equivalent", "inconclusive")
    # ABBA, as the raw files' start times show: docker first in even pairs, bare first in odd ones
    for pair in range(6):
        first, second = ("docker", "bare") if pair % 2 == 0 else ("bare", "docker")
        assert (started(run_dir, f"x86/tflite-tiny-{first}-{pair:02d}")
                < started(run_dir, f"x86/tflite-tiny-{second}-{pair:02d}"))
    # the sensors are read from outside the measured process, on the board's host, alike in both modes
    for mode, seccomp in (("docker", 2), ("bare", 0)):
        doc = json.loads((run_dir / "raw" / "x86" / f"tflite-tiny-{mode}-00.json").read_text())
        assert doc["sensors"]["where"] == "host" and "sampler_cost" in doc["sensors"] and doc["sensors"]["samples"]
        # bare metal on a simulated board is bare: no seccomp filter, where Docker's default profile has one
        assert doc["facts"]["seccomp"] == seccomp and doc["facts"]["in_container"] is (mode == "docker")


def test_explain_reruns_docker_with_one_knob_at_a_time(fleet):
    r = invoke("explain", *SMALL, "--repeat", "2")
    assert "Why Docker differs" in r.stdout
    for knob in ("seccomp=unconfined", "network=host", "ipc=host", "no-cpu-limits", "model-on-bind-mount"):
        assert f"docker+{knob}" in r.stdout
    df = pd.read_parquet(run_dir_of(r.stdout) / "results.parquet")
    # docker, bare, five knobs, and native: the board's own Python runs tflite on the bookworm x86 board
    assert len(df) == 2 * 8 and df.groupby("arm").size().eq(2).all() and "native" in set(df["arm"])
    assert "native (the board's own Python) against bare, the userland's part" in " ".join(r.stdout.split())
    raw = json.loads((run_dir_of(r.stdout) / "raw" / "x86" / "tflite-tiny-docker+seccomp=unconfined-00.json")
                     .read_text())
    assert raw["status"] == "ok" and raw["facts"]["seccomp"] == 0  # the knob took effect in the container
