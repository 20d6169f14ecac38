"""The whole pipeline on the simulated fleet, driven through `invoke` as a user would."""

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from edgeorch import bench
from edgeorch.analysis import comparison
from edgeorch.cache import cache_dir
from edgeorch.models import resolve_model

from .conftest import invoke

FAST = ["--iterations", "10", "--warmup", "2", "--min-time", "0"]


def run_dir_of(output: str) -> Path:
    return Path(re.search(r"results go to (\S+)", output).group(1))


def test_deploy_then_bench_on_the_armv7_board(pi_fleet):
    r = invoke("deploy", "--host", "rpi3-bookworm", "bench", "--framework", "tflite", "--model", "tiny",
               *FAST, "--repeat", "2")
    run_dir = run_dir_of(r.stdout)
    df = pd.read_parquet(run_dir / "results.parquet")
    assert list(df["mode"]) == ["docker", "bare", "bare", "docker"]  # counterbalanced pairs (ABBA)
    assert list(df["pair"]) == [0, 0, 1, 1] and list(df["position"]) == [0, 1, 0, 1]
    assert set(df["board"]) == {"rpi3-bookworm"} and set(df["arch"]) == {"armv7"} and set(df["machine"]) == {"armv7l"}
    # the fairness guarantees: same framework version and the same entrypoint bytes in both modes
    assert set(df["framework_version"]) == {"2.14.0"}
    assert set(df["bench_sha256"]) == {bench.bundle_digest()}
    assert df.loc[df["mode"] == "docker", "image_id"].str.startswith("sha256:").all()
    assert (df["p50_ms"] > 0).all() and (df["p50_ms"] <= df["max_ms"]).all()
    assert df["p99_ms"].isna().all()  # 10 samples cannot bound a p99
    assert (df["iterations"] == 10).all() and (df["peak_rss_mb"] > 1).all()
    assert pd.read_csv(run_dir / "results.csv").shape == df.shape
    samples = pd.read_parquet(run_dir / "samples.parquet")
    assert len(samples) == 4 * 10
    raws = sorted((run_dir / "raw" / "rpi3-bookworm").glob("*.json"))
    assert [p.name for p in raws] == ["tflite-tiny-bare-00.json", "tflite-tiny-bare-01.json",
                                      "tflite-tiny-docker-00.json", "tflite-tiny-docker-01.json"]
    doc = json.loads(raws[0].read_text())
    assert doc["schema"] == bench.RESULT_SCHEMA and doc["timing"]["count"] == 10
    assert len(doc["timing"]["subsample"]["latencies_ns"]) == 10 and sum(doc["timing"]["histogram"]["counts"]) == 10
    assert len(doc["timing"]["warmup_ns"]) == 2 and doc["sensors"]["samples"]
    assert json.loads((run_dir / "manifest.json").read_text())["complete"] is True
    assert "Docker vs bare metal" in r.stdout and "rpi3-bookworm" in r.stdout
    judged = comparison(run_dir).iloc[0]  # two pairs: numbers, but no verdict
    assert judged["pairs"] == 2 and judged["kind"] == "too few pairs" and "too few pairs (2 < 5)" in judged["verdict"]
    shown = invoke("results.show", "--run", str(run_dir))
    assert "rpi3-bookworm" in shown.stdout and "tiny" in shown.stdout and "INCOMPLETE" not in shown.stdout


def test_a_second_deploy_transfers_nothing(pi_fleet):
    invoke("deploy", "--host", "rpi3-bookworm")
    r = invoke("deploy", "--host", "rpi3-bookworm", "--verbose")  # every command it ran, shown
    assert "sent nothing (already there)" in r.stdout and "+ [rpi3-bookworm] docker version" in r.stdout
    assert "docker load" not in r.stdout and "tar -xzf" not in r.stdout
    assert "--probe" not in r.stdout  # checked when installed, not again


@pytest.mark.exhaustive  # another TFLite install under QEMU: int8 on x86 is test_an_int8_variant_...'s
def test_quantized_model_on_arm64_and_x86(rpi4_fleet):
    r = invoke("bench", "--host", "rpi4,x86", "--framework", "tflite", "--model", "tiny_int8",
               *FAST, "--repeat", "1")
    run_dir = run_dir_of(r.stdout)
    df = pd.read_parquet(run_dir / "results.parquet")
    assert sorted(set(zip(df["board"], df["machine"]))) == [("rpi4", "aarch64"), ("x86", "x86_64")]
    doc = json.loads((run_dir / "raw" / "rpi4" / "tflite-tiny_int8-bare-00.json").read_text())
    assert doc["model"]["inputs"][0]["dtype"] in ("int8", "uint8")


def test_a_user_model_file(fleet, tmp_path):
    mine = tmp_path / "my_net.tflite"
    shutil.copy(resolve_model("tiny", cache_dir=cache_dir()).path, mine)
    r = invoke("bench", "--host", "x86", "--framework", "tflite", "--model", str(mine), *FAST,
               "--repeat", "1", "--mode", "bare")
    df = pd.read_parquet(run_dir_of(r.stdout) / "results.parquet")
    assert list(df["model"]) == ["my_net"] and list(df["mode"]) == ["bare"]


def test_native_mode_is_refused_where_the_boards_python_cannot_run_the_framework(pi_fleet):
    r = invoke("bench", "--host", "rpi3-bookworm", "--framework", "onnxruntime", "--mode", "docker,native",
               check=False)
    out = " ".join(r.stdout.split())  # the message as one line, however the console wrapped it
    assert r.returncode == 2 and "Debian trixie's python3-onnxruntime" in out and "invoke matrix" in out
    assert "--mode both" in out and "results go to" not in out  # refused before anything was built


# ONNX Runtime's arm64 wheels under QEMU are test_onnxruntime_at_its_current_version_on_python_313's (rpi5)
@pytest.mark.parametrize("hosts", ["x86", pytest.param("rpi4,x86", marks=pytest.mark.exhaustive)])
def test_onnxruntime_reproduces_pytorch_on_both_modes(fleet, request, hosts):
    if "rpi4" in hosts:
        request.getfixturevalue("rpi4_fleet")
    r = invoke("agree", "--host", hosts, "--framework", "onnxruntime", "--model", "squeezenet1_1")
    df = pd.read_parquet(run_dir_of(r.stdout) / "results.parquet")
    assert sorted(zip(df["board"], df["mode"])) == sorted((b, m) for b in hosts.split(",") for m in ("bare", "docker"))
    assert set(df["framework_version"]) == {"1.32.0"} and set(df["runtime"]) == {"onnxruntime"}
    assert df["agrees"].all() and (df["top1"] == df["top1_ref"]).all()
    assert "top-1 = PyTorch" in r.stdout


def test_agreement_is_refused_where_there_is_no_reference(fleet):
    r = invoke("agree", "--host", "x86", "--framework", "tflite", "--model", "tiny", check=False)
    assert r.returncode == 2 and "needs a zoo network" in r.stdout
