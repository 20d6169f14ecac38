"""A deploy sends a board only what it lacks, on the x86 board: a second framework gets no second copy of the base,
the figures of a bench's deploys go to deploy.json, and `invoke clean` removes what no current recipe uses and
nothing that one does."""

import json
import re
import subprocess

import pytest

from edgeorch import sim

from . import faults as F
from .conftest import invoke
from .test_pipeline import run_dir_of


@pytest.fixture(scope="module")
def x86(fleet):
    [sb] = [s for s in sim.sim_boards(fleet) if s.board.name == "x86"]
    return sb


def engine(sb, *args: str) -> str:
    """The board's own Docker engine, asked directly."""
    return subprocess.run(["docker", "-H", f"unix://{sb.socket}", *args], capture_output=True, text=True,
                          check=True).stdout


def image_sent(out: str) -> tuple[int, int, float, float]:
    """(layers sent, layers of the image, MB sent, MB lacking) from a deploy's line about an image."""
    m = re.search(r"sent image \((\d+) of (\d+) layers\) ([\d.]+) ([MG])B of ([\d.]+) ([MG])B lacking", out)
    assert m, out[-3000:]
    mb = {"M": 1, "G": 1000}
    return int(m[1]), int(m[2]), float(m[3]) * mb[m[4]], float(m[5]) * mb[m[6]]


def test_a_second_framework_on_the_arch_gets_only_the_layers_above_the_base(x86):
    F.invoke_free(x86, "deploy", "--host", "x86", "--framework", "tflite")
    F.remove_images(x86, "edgeorch/onnxruntime")
    r = F.invoke_free(x86, "deploy", "--host", "x86", "--framework", "onnxruntime")
    out = F.flat(r.stdout)
    sent, of, mb, lacking = image_sent(out)
    assert 0 < sent < of, out[-3000:]  # the base and its packages were on the board already
    assert mb <= 1.05 * lacking
    assert any(t.startswith("edgeorch/onnxruntime:") for t in F.image_tags(x86))  # loaded, tagged, and probed
    again = F.invoke_free(x86, "deploy", "--host", "x86", "--framework", "onnxruntime")
    assert "sent nothing (already there)" in again.stdout


def test_executorch_after_pytorch_is_sent_without_a_second_torch(x86):
    """Both recipes pin the same torch and install it in an image layer of its own: a board that has PyTorch's image
    is sent ExecuTorch's without torch (on amd64, 54 MB on the wire where PyTorch's took 562 MB)."""
    for framework in ("pytorch", "executorch"):
        F.remove_images(x86, f"edgeorch/{framework}")
    deploy = ("deploy", "--host", "x86", "--mode", "docker", "--framework")
    _, _, pytorch_mb, _ = image_sent(F.flat(F.invoke_free(x86, *deploy, "pytorch").stdout))
    out = F.flat(F.invoke_free(x86, *deploy, "executorch").stdout)
    sent, of, mb, lacking = image_sent(out)
    assert mb < pytorch_mb / 3 and mb <= 1.05 * lacking, out[-3000:]
    layers = {}
    for framework in ("pytorch", "executorch"):
        [tag] = [t for t in F.image_tags(x86) if t.startswith(f"edgeorch/{framework}:")]
        layers[framework] = json.loads(engine(x86, "image", "inspect", "--format", "{{json .RootFS.Layers}}", tag))
    shared = next(i for i, (a, b) in enumerate(zip(*layers.values())) if a != b)
    assert of - sent == shared  # ExecuTorch's image was sent from the first layer PyTorch's does not have


def test_a_bench_writes_what_each_deploy_sent_to_deploy_json(x86):
    F.remove_images(x86, "edgeorch/tflite")
    r = F.invoke_free(x86, "bench", "--host", "x86", "--framework", "tflite", "--model", "tiny", "--mode", "docker",
                      "--repeat", "1", "--iterations", "5", "--warmup", "1", "--min-time", "0")
    [shipped] = json.loads((run_dir_of(r.stdout) / "deploy.json").read_text())
    assert (shipped["board"], shipped["framework"]) == ("x86", "tflite")
    [image] = [i for i in shipped["items"] if i["what"] == "image"]
    assert 0 < image["layers"][0] <= image["layers"][1] and 0 < image["sent"] <= 1.05 * image["lacked"]
    assert shipped["sent_bytes"] == sum(i["sent"] for i in shipped["items"]) and shipped["image_bytes"] >= \
        image["lacked"] and shipped["seconds"] > 0
    assert "x86: tflite 2.14.0 deployed: sent image (" in F.flat(r.stdout)


def test_clean_removes_what_no_recipe_uses_and_keeps_what_one_does(x86):
    F.remove_images(x86, "edgeorch/tflite")  # an image of older board-side code is not the current one either
    F.invoke_free(x86, "deploy", "--host", "x86", "--framework", "tflite", "--mode", "all")
    current = {t for t in F.image_tags(x86) if t.startswith("edgeorch/tflite:")}
    # an image of a build no recipe has now, as an old edgeorch left it; a bundle and a model of the same kind
    [tag] = sorted(current)[:1]
    box = engine(x86, "create", tag).strip()
    try:
        engine(x86, "commit", "--change", "LABEL org.edgeorch.framework-version=2.0.0", box, "edgeorch/tflite:old")
    finally:
        engine(x86, "rm", box)
    old_bundle = F.workdir(x86) / "tflite-2.0.0"
    (old_bundle / "wheels").mkdir(parents=True, exist_ok=True)
    (old_bundle / "wheels" / "tflite_runtime-2.0.0.whl").write_bytes(b"\0" * 3_000_000)
    current_manifest = json.loads((F.workdir(x86) / "tflite-2.14.0" / "manifest.json").read_text())
    (old_bundle / "manifest.json").write_text(json.dumps({**current_manifest, "version": "2.0.0"}))
    old_model = F.workdir(x86) / "models" / "0123456789abcdef.tflite"
    old_model.parent.mkdir(exist_ok=True)
    old_model.write_bytes(b"an old model")
    with open(F.workdir(x86) / ".edgeorch-models", "a") as sent:  # as push_file records what it sent
        sent.write("0123456789abcdef.tflite\n")
    users = F.workdir(x86) / "My Project" / "wheels" / "mine.whl"  # the user's own, in edgeorch's folder
    users.parent.mkdir(parents=True, exist_ok=True)
    users.write_bytes(b"mine")
    # and the login's home beside the workdir, with what looks like edgeorch's: a manifest, wheels, models
    home = {x86.home / "webapp" / "manifest.json": b"{}", x86.home / "My Project" / "wheels" / "a.whl": b"a",
            x86.home / "models" / "my-own.onnx": b"onnx", x86.home / "tflite-2.0.0" / "manifest.json": b"{}"}
    for path, data in home.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    F.own(x86, old_bundle, old_model, F.workdir(x86) / ".edgeorch-models", F.workdir(x86) / "My Project",
          *{x86.home / path.relative_to(x86.home).parts[0] for path in home})
    r = F.invoke_free(x86, "clean", "--host", "x86")
    out = F.flat(r.stdout)
    assert "edgeorch/tflite:old" not in F.image_tags(x86) and not old_bundle.exists() and not old_model.exists()
    assert users.read_bytes() == b"mine" and all(path.read_bytes() == data for path, data in home.items())
    assert current <= set(F.image_tags(x86))
    assert all((F.workdir(x86) / name / "manifest.json").exists() for name in ("tflite-2.14.0", "tflite-2.14.0-bare"))
    assert re.search(r"x86 .*tflite-2\.0\.0 .*\d+\.\d\d [MG]B", out), out[-2000:]
    assert "sent nothing (already there)" in F.invoke_free(x86, "deploy", "--host", "x86", "--framework",
                                                           "tflite", "--mode", "all").stdout


def test_check_shows_the_free_disk_against_what_a_deploy_needs(x86):
    F.remove_images(x86, "edgeorch/tflite")
    r = invoke("check", "--host", "x86")
    needs = re.search(r"GB \(needs ([\d.]+) GB\)", F.flat(re.sub("[│┃]", " ", r.stdout)))
    assert needs and float(needs[1]) > 0, r.stdout[-2000:]
    F.invoke_free(x86, "deploy", "--host", "x86", "--framework", "tflite")
    assert "(needs 0.00 GB)" in F.flat(re.sub("[│┃]", " ", invoke("check", "--host", "x86").stdout))
