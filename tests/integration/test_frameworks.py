"""Every framework that can run here, on the simulated fleet, each checked against PyTorch's output.

The cases stay small (SqueezeNet 1.1, a few iterations): the ARM boards run under QEMU.
"""

import json

import pandas as pd
import pytest

from edgeorch.models import zoo

from .conftest import invoke, networks
from .test_pipeline import run_dir_of

ONE = ["--iterations", "2", "--warmup", "0", "--repeat", "1", "--min-time", "0"]


def table(r) -> pd.DataFrame:
    return pd.read_parquet(run_dir_of(r.stdout) / "results.parquet")


def side_by_side(hosts: list[str]) -> pd.DataFrame:
    r = invoke("compare", "--host", ",".join(hosts), "--framework", "pytorch,opencv,onnxruntime",
               "--model", "squeezenet1_1", *ONE)
    df = table(r)
    assert sorted(set(zip(df["board"], df["framework"], df["mode"]))) == [
        (b, f, m) for b in sorted(hosts) for f in ("onnxruntime", "opencv", "pytorch") for m in ("bare", "docker")]
    assert df["agrees"].all() and (df["max_abs_diff"] < 1e-3).all()  # the same function everywhere
    assert "Frameworks side by side" in r.stdout
    return df


def test_pytorch_opencv_and_onnxruntime_side_by_side_on_x86(fleet):
    df = side_by_side(["x86"])
    versions = dict(zip(df["framework"], df["framework_version"]))
    assert versions["pytorch"].startswith("2.13.0") and versions["opencv"] == "4.11.0.86"


@pytest.mark.exhaustive  # PyTorch installed and imported under QEMU: ten minutes
def test_pytorch_opencv_and_onnxruntime_side_by_side_on_arm64_and_x86(rpi4_fleet):
    df = side_by_side(["rpi4", "x86"])
    versions = dict(zip(zip(df["board"], df["framework"]), df["framework_version"]))
    assert versions[("rpi4", "pytorch")].startswith("2.10.0") and versions[("x86", "pytorch")].startswith("2.13.0")
    assert versions[("rpi4", "opencv")] == versions[("x86", "opencv")] == "4.11.0.86"
    assert set(df.loc[df["board"] == "rpi4", "machine"]) == {"aarch64"}


def test_tflite_runs_the_zoo_converted_from_pytorch_on_the_armv7_board(pi_fleet):
    df = table(invoke("bench", "--host", "rpi3-bookworm", "--framework", "tflite", "--model", "squeezenet1_1", *ONE))
    assert set(df["machine"]) == {"armv7l"} and df["agrees"].all()
    assert df["model"].tolist() == ["squeezenet1_1"] * 2 and set(df["precision"]) == {"fp32"}
    # QEMU's user-mode emulation has no perf_event_open, so this board has no perf; nor a power sensor: each says so
    for text in df["counters_unavailable"]:
        assert json.loads(text)["*"].startswith("perf is not installed on the board"), text
    assert df["energy_unavailable"].str.contains("rapl: no /sys/class/powercap/intel-rapl").all()
    assert df["rss_after_load_mb"].notna().all() and df["peak_rss_timed_mb"].notna().all()


def test_litert_and_tflite_with_and_without_xnnpack(fleet):
    df = table(invoke("bench", "--host", "x86", "--framework", "litert,tflite", "--model", "squeezenet1_1",
                      "--option", "xnnpack=off", *ONE))
    assert set(df["runtime"]) == {"ai_edge_litert", "tflite_runtime"} and df["agrees"].all()
    assert df["framework_options"].str.contains('"xnnpack": "off"').all()


def test_an_int8_variant_is_its_own_model_with_its_own_tolerance(fleet):
    df = table(invoke("bench", "--host", "x86", "--framework", "tflite", "--model", "squeezenet1_1_int8", *ONE))
    assert set(df["precision"]) == {"int8"} and df["agrees"].all()
    assert (df["correlation"] > 0.5).all()


def test_tensorflow_runs_the_frozen_graph(fleet):
    df = table(invoke("bench", "--host", "x86", "--framework", "tensorflow", "--model", "squeezenet1_1", *ONE))
    assert set(df["framework_version"]) == {"2.21.0"} and df["agrees"].all()


def test_caffe_runs_in_docker_and_bare_and_says_what_native_mode_needs(fleet):
    df = table(invoke("bench", "--host", "x86", "--framework", "caffe", "--model", "squeezenet1_1", *ONE))
    assert sorted(df["mode"]) == ["bare", "docker"] and df["agrees"].all()
    # Debian bullseye's Python, where Caffe is packaged, in both: bare mode is the image's userland, not the board's
    assert df["python"].tolist() == ["3.9.2", "3.9.2"]
    # native mode needs a bullseye board: refused before anything is built, with the way out
    r = invoke("bench", "--host", "x86", "--framework", "caffe", "--model", "squeezenet1_1", "--mode", "native",
               *ONE, check=False)
    out = " ".join(r.stdout.split())
    assert r.returncode == 2 and "Debian bullseye's python3-caffe" in out and "--mode both" in out
    assert "results go to" not in out


@pytest.mark.exhaustive  # Caffe's bullseye images for arm64 and armv7, made under QEMU
def test_caffe_runs_in_docker_and_bare_on_every_arch(rpi4_fleet):
    df = table(invoke("bench", "--host", "rpi3-bookworm,rpi4", "--framework", "caffe", "--model", "squeezenet1_1",
                      *ONE))
    assert sorted(set(zip(df["board"], df["mode"], df["machine"]))) == [
        (board, mode, machine) for board, machine in (("rpi3-bookworm", "armv7l"), ("rpi4", "aarch64"))
        for mode in ("bare", "docker")]
    assert set(df["python"]) == {"3.9.2"} and df["agrees"].all()


TODAYS = ("executorch", "ncnn", "openvino", "tvm")  # the runtimes of 2026, and TVM, a system of the research


def todays_runtimes(hosts: list[str], frameworks: tuple[str, ...] = TODAYS) -> pd.DataFrame:
    """`frameworks` on `hosts` in both modes: each agrees with PyTorch and says what it was built with."""
    df = table(invoke("compare", "--host", ",".join(hosts), "--framework", ",".join(frameworks),
                      "--model", "squeezenet1_1", *ONE))
    assert sorted(set(zip(df["board"], df["framework"], df["mode"]))) == [
        (b, f, m) for b in sorted(hosts) for f in sorted(frameworks) for m in ("bare", "docker")]
    assert df["agrees"].all(), df[["board", "framework", "mode", "max_abs_diff", "top1", "top1_ref"]]
    assert (df.groupby(["board", "framework"])["framework_version"].nunique() == 1).all()  # one build, both modes
    options = dict(zip(df["framework"], df["framework_options"].map(json.loads)))
    assert options.get("ncnn", {}).get("use_fp16_arithmetic") in (None, False)  # fp32, as PyTorch computes
    assert options.get("openvino", {}).get("inference_precision") in (None, "f32")
    return df


def test_the_runtimes_of_today_run_in_both_modes_and_agree_with_pytorch_on_x86(fleet):
    df = todays_runtimes(["x86"])
    assert dict(zip(df["framework"], df["framework_version"])) == {
        "executorch": "1.5.1", "ncnn": "1.0.20261020", "openvino": "2026.4.1", "tvm": "0.27.0.post1"}


@pytest.mark.exhaustive  # four images and bundles installed under QEMU
def test_the_runtimes_of_today_on_the_arm_pis(rpi4_fleet):
    df = todays_runtimes(["rpi4"], ("executorch", "ncnn", "tvm"))
    assert set(df["machine"]) == {"aarch64"}
    assert dict(zip(df["framework"], df["framework_version"]))["executorch"] == "1.1.0"  # the one of torch 2.10
    # OpenVINO on MobileNet-v2: on SqueezeNet its ACL path answers wrongly under the emulator's default CPU, whose
    # SME no Pi has (right as a Cortex-A72 or A76: docs/reference/frameworks-and-boards.md)
    df = table(invoke("compare", "--host", "rpi4", "--framework", "openvino", "--model", "mobilenet_v2", *ONE))
    assert sorted(df["mode"]) == ["bare", "docker"] and df["agrees"].all()
    df = todays_runtimes(["rpi3-bookworm"], ("ncnn",))  # the one with armv7l wheels
    assert set(df["machine"]) == {"armv7l"}


@pytest.mark.parametrize("network", networks(zoo.NETWORKS))
def test_every_zoo_network_agrees_with_pytorch_in_two_frameworks(fleet, network):
    r = invoke("agree", "--host", "x86", "--framework", "onnxruntime,pytorch", "--model", network)
    df = table(r)
    assert len(df) == 4 and df["agrees"].all(), df[["framework", "mode", "max_abs_diff", "top1", "top1_ref"]]


def test_tensorrt_has_no_bare_mode_and_asks_for_the_vendor_base_image(fleet):
    r = invoke("bench", "--host", "x86", "--framework", "tensorrt", "--model", "squeezenet1_1", check=False)
    out = " ".join(r.stdout.split())
    assert r.returncode == 2 and "tensorrt has no bare mode: its image is the board vendor's" in out
    assert "--mode docker,native" in out
    r = invoke("bench", "--host", "x86", "--framework", "tensorrt", "--model", "squeezenet1_1", "--mode", "docker",
               check=False)
    assert r.returncode == 3 and "--base-image" in r.stdout


def test_an_option_the_framework_does_not_know_is_refused_before_anything_runs(fleet):
    r = invoke("bench", "--host", "x86", "--framework", "onnxruntime", "--model", "squeezenet1_1", "--mode", "bare",
               "--option", "xnnpack=off", *ONE, check=False)
    assert r.returncode == 2 and "no option 'xnnpack'" in r.stdout and "results go to" not in r.stdout


def test_a_batch_of_images_per_inference(fleet):
    df = table(invoke("bench", "--host", "x86", "--framework", "onnxruntime,tflite", "--model", "squeezenet1_1",
                      "--batch", "2", "--mode", "bare", *ONE))
    assert set(df["batch"]) == {2} and df["agrees"].all()
    # throughput counts images: two per inference
    per_inference = df["iterations"] / (df["p50_ms"] * df["iterations"] / 1e3)
    assert (df["throughput_ips"] > 1.2 * per_inference).all()


def test_pytorch_runs_an_exported_program_eagerly(fleet):
    df = table(invoke("bench", "--host", "x86", "--framework", "pytorch", "--model", "squeezenet1_1_eager", *ONE))
    assert df["agrees"].all() and df["framework_options"].str.contains('"executor": "eager"').all()
