"""Boards as they are today: the trixie boards of the simulated fleet (Raspberry Pi OS trixie: Python 3.13, numpy 2),
each framework in both modes on the board's own release and Python, checked against PyTorch's output.

The default tier runs ONNX Runtime there, and TFLite on the 32-bit one (the mission's command); LiteRT, OpenCV,
PyTorch, TensorFlow and TFLite's image on the arm64 trixie board, and every framework of the 32-bit one, take many
minutes more under QEMU (their installs and imports): they are in the exhaustive tier (./test.sh --all)."""

import os
import re
from pathlib import Path

import pytest

from edgeorch.arch import Arch
from edgeorch.deploy import _require_debian
from edgeorch.errors import BoardError
from edgeorch.images import ImageSpec
from edgeorch.transport import connect

from .conftest import invoke
from .test_frameworks import ONE, table


def test_check_reads_each_boards_release_python_and_what_it_would_get(trixie_fleet):
    r = invoke("check", "--host", "trixie", env={**os.environ, "COLUMNS": "300"})  # a table row on one line
    assert r.stdout.count("Debian GNU/Linux 13 (trixie)") == 2 and r.stdout.count("3.13.") == 2
    assert "litert 2.3.0" in r.stdout and "onnxruntime 1.21.0" in r.stdout  # rpi5's wheels, rpi3's Debian


def on_python_313(frameworks: dict[str, str]) -> None:
    """Each of `frameworks` at its version, in both modes on rpi5, on the board's release, interpreter and numpy."""
    df = table(invoke("bench", "--host", "rpi5", "--framework", ",".join(frameworks), "--model", "squeezenet1_1",
                      *ONE))
    assert sorted(set(zip(df["framework"], df["mode"]))) == [(f, m) for f in sorted(frameworks)
                                                             for m in ("bare", "docker")]
    assert dict(zip(df["framework"], df["framework_version"])) == frameworks
    # both modes run the board's release, interpreter and numpy: the image is trixie too
    assert set(df["os"]) == {"Debian GNU/Linux 13 (trixie)"} and set(df["machine"]) == {"aarch64"}
    assert {v.rsplit(".", 1)[0] for v in df["python"]} == {"3.13"} and df["python"].nunique() == 1
    assert {v.split(".")[0] for v in df["numpy"]} == {"2"}
    assert df["agrees"].all() and (df["max_abs_diff"] < 1e-3).all()


def test_onnxruntime_at_its_current_version_on_python_313(trixie_fleet):
    on_python_313({"onnxruntime": "1.32.0"})


@pytest.mark.exhaustive  # two more images installed under QEMU
def test_litert_and_opencv_at_their_current_versions_on_python_313(trixie_fleet):
    on_python_313({"litert": "2.3.0", "opencv": "5.1.0.95"})


def test_the_mission_command_benchmarks_tflite_on_todays_32_bit_pi(trixie_fleet):
    """`invoke deploy --host rpi3 bench --framework tflite`, verbatim but for a quicker run: TFLite has no wheel for
    the board's Python 3.13, so both modes run the image's own userland (bookworm's Python 3.11), one in its
    container, one without; the chained deploy sends TFLite alone, not the board's listed frameworks."""
    r = invoke("deploy", "--host", "rpi3", "bench", "--framework", "tflite", "--model", "tiny", "--iterations", "20",
               "--warmup", "2", "--min-time", "0", "--repeat", "3", "--min-pairs", "3")
    out = " ".join(r.stdout.split())
    assert "rpi3: tflite 2.14.0 (image on Debian bookworm) ready in docker, bare" in out
    assert "onnxruntime" not in out and "opencv" not in out
    df = table(r)
    assert sorted(set(df["mode"])) == ["bare", "docker"] and set(df["machine"]) == {"armv7l"}
    assert set(df["python"]) == {"3.11.2"}  # the image's, in both
    # /etc/os-release: the image's in its container, the board's own outside it
    assert dict(zip(df["mode"], df["os"])) == {"docker": "Debian GNU/Linux 12 (bookworm)",
                                               "bare": "Debian GNU/Linux 13 (trixie)"}
    # a verdict, or INVALID with why (QEMU on a shared 2-core machine is noisy): never no row
    verdict = " ".join(r.stdout.split("Docker vs bare metal", 1)[1].split())
    assert re.search(r"rpi3 tflite tiny .* (equivalent|slower|faster|inconclusive|INVALID)", verdict), r.stdout[-3000:]
    # the matrix says which modes each framework has there, and why not native
    shown = invoke("matrix", "--host", "rpi3", env={**os.environ, "COLUMNS": "250"}).stdout
    modes = shown.split("Modes per board", 1)[1]
    row = next(line for line in modes.splitlines() if " tflite " in line)
    assert row.count("2.14.0 (bookworm image)") == 2 and "✗" in row
    assert "tflite-runtime's last wheels (2.14.0) stop at cp311" in " ".join(shown.split())


def test_a_32bit_trixie_pi_runs_debians_onnxruntime_in_both_modes(trixie_fleet):
    df = table(invoke("bench", "--host", "rpi3", "--framework", "onnxruntime", "--model", "squeezenet1_1", *ONE))
    assert sorted(df["mode"]) == ["bare", "docker"] and set(df["machine"]) == {"armv7l"}
    assert set(df["os"]) == {"Debian GNU/Linux 13 (trixie)"} and set(df["framework_version"]) == {"1.21"}
    assert df["agrees"].all()


@pytest.mark.exhaustive  # every framework of the board, under QEMU
def test_a_32bit_trixie_pi_runs_every_framework_in_both_modes(trixie_fleet):
    # ONNX Runtime and OpenCV from trixie's own packages, ncnn from its armv7l wheel; TFLite (no cp313 wheels) and
    # Caffe (bullseye only) in their
    # images' userlands, bare mode too: the same Python in both modes, the board's os-release outside the container
    df = table(invoke("compare", "--host", "rpi3", "--model", "squeezenet1_1", *ONE))
    assert sorted(set(zip(df["framework"], df["mode"]))) == [
        (f, m) for f in ("caffe", "ncnn", "onnxruntime", "opencv", "tflite") for m in ("bare", "docker")]
    assert set(df["machine"]) == {"armv7l"} and set(df[df["mode"] == "bare"]["os"]) == {"Debian GNU/Linux 13 (trixie)"}
    assert df.groupby("framework")["python"].nunique().eq(1).all()
    assert dict(zip(df["framework"], df["python"])) == {"caffe": "3.9.2", "ncnn": "3.13.5", "onnxruntime": "3.13.5",
                                                        "opencv": "3.13.5", "tflite": "3.11.2"}
    assert dict(zip(df["framework"], df["framework_version"].str[:6])) == {
        "caffe": "1.0.0+", "ncnn": "1.0.20", "onnxruntime": "1.21", "opencv": "4.10.0", "tflite": "2.14.0"}
    assert df["agrees"].all()


def test_tflite_on_python_313_is_refused_natively_before_anything_is_built(trixie_fleet):
    r = invoke("bench", "--host", "rpi5", "--framework", "tflite", "--model", "squeezenet1_1", "--mode", "native",
               *ONE, check=False)
    out = " ".join(r.stdout.split())
    assert r.returncode == 2 and "stop at cp311" in out and "litert" in out
    assert "--mode both" in out and "results go to" not in out and "built edgeorch/" not in out


@pytest.mark.exhaustive  # TFLite's arm64 image made under QEMU: the mission's test runs its armv7 one on trixie
def test_tflite_on_python_313_runs_in_its_image(trixie_fleet):
    # its image brings Debian bookworm's Python 3.11 (bare mode runs the same userland: the mission's test)
    df = table(invoke("bench", "--host", "rpi5", "--framework", "tflite", "--model", "squeezenet1_1", "--mode",
                      "docker", *ONE))
    assert set(df["os"]) == {"Debian GNU/Linux 12 (bookworm)"} and df["agrees"].all()


@pytest.mark.exhaustive  # PyTorch and TensorFlow installed and imported under QEMU: many minutes
def test_pytorch_and_tensorflow_on_python_313(trixie_fleet):
    df = table(invoke("bench", "--host", "rpi5", "--framework", "pytorch,tensorflow", "--model", "squeezenet1_1",
                      *ONE))
    assert sorted(set(zip(df["framework"], df["mode"]))) == [
        (f, m) for f in ("pytorch", "tensorflow") for m in ("bare", "docker")]
    assert {v.rsplit(".", 1)[0] for v in df["python"]} == {"3.13"} and df["agrees"].all()


def test_native_mode_of_a_debian_framework_names_the_package_a_board_lacks(trixie_fleet):
    image = ImageSpec(framework="onnxruntime", version="1.21.0", arch=Arch.ARMV7, tag="t", image_id="i",
                      recipe_hash="h", bench_sha256="b", based_on="Debian trixie", wheelhouse=Path("."),
                      native_wheelhouse=Path("."), debian=("python3-onnxruntime",))
    rpi3, rpi5 = (trixie_fleet.select(name)[0] for name in ("rpi3", "rpi5"))
    with connect(rpi3) as conn:
        _require_debian(conn, rpi3, image)  # its owner installed it
    with connect(rpi5) as conn, pytest.raises(BoardError, match="lacks python3-onnxruntime") as e:
        _require_debian(conn, rpi5, image)
    assert "sudo apt install python3-onnxruntime" in e.value.hint
