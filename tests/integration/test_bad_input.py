"""The catalogue of bad input, the part that needs the `invoke` CLI or the simulated fleet: task arguments as a
user types them, and boards that answer oddly (text before the JSON, no interpreter, the wrong arch, a hang).
Each is refused with a message that names the thing and the fix and the exit code of its kind; what is refused
up front leaves no run directory behind. The pure kinds are in tests/unit/test_bad_input.py."""

import json
import re
import shutil
import time
import uuid
from pathlib import Path

import psutil
import pytest
import yaml

from edgeorch import pipeline, results, runners, sim
from edgeorch.console import REPORTER
from edgeorch.errors import RunError
from edgeorch.inventory import load_inventory
from edgeorch.plan import StopRule
from edgeorch.request import Request

from .conftest import INVENTORY, invoke, runs_started

QUICK = ("--framework", "tflite", "--model", "tiny", "--iterations", "3", "--warmup", "0", "--min-time", "0",
         "--repeat", "1")


@pytest.fixture(scope="module")
def x86(fleet):
    return next(sb for sb in sim.sim_boards(fleet) if sb.board.name == "x86")


def _inventory(tmp_path: Path, **board) -> Path:
    """The shipped inventory's x86 board with fields replaced, its key and known_hosts by absolute path."""
    raw = yaml.safe_load(INVENTORY.read_text())
    for key in ("identity_file", "known_hosts"):
        raw["defaults"][key] = str(INVENTORY.parent / raw["defaults"][key])
    raw["boards"] = [{**next(b for b in raw["boards"] if b["name"] == "x86"), **board}]
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def inv(tmp_path) -> Path:
    return _inventory(tmp_path)


def _refused(code: int, inventory: Path, *args: str, parts: tuple[str, ...]) -> str:
    """Run `invoke ARGS --inventory INVENTORY`; it exits `code` with each of `parts` (and a fix), and no traceback;
    while another test's bench holds the board's lock, wait (bounded)."""
    before = set(results.root().glob("*/"))
    for _ in range(30):
        r = invoke(*args, "--inventory", str(inventory), check=False)
        if "is being benchmarked by" not in r.stdout:
            break
        time.sleep(5)
    out = " ".join(re.sub("[│┃]", " ", r.stdout).split())  # a table cell's lines, joined again
    assert r.returncode == code, out[-3000:] + r.stderr[-3000:]
    assert "Traceback" not in r.stdout + r.stderr and "fix:" in out
    for part in parts:
        assert part in out, (part, out[-3000:])
    if code in (2, 4):  # refused before anything ran (a bad argument, a bad model file)
        assert runs_started(before, inventory) == []
    return out


@pytest.mark.parametrize("task, option, value, what", [
    ("bench", "iterations", "many", "an integer"),
    ("bench", "warmup", "2.5", "an integer"),
    ("bench", "timeout", "soon", "a number"),
    ("compare", "batch", "four", "a whole number or a comma list of them"),
    ("calibrate", "threads", "all", "a whole number or a comma list of them"),
    ("bench", "threads", "1,two", "a whole number or a comma list of them"),
    ("explain", "iterations", "1e3", "an integer"),
])
def test_a_count_that_is_not_a_number_is_refused_not_a_traceback(fleet, inv, task, option, value, what):
    args = (task, "--host", "x86", "--model", "tiny", f"--{option}", value)
    fix = f"--{option} 1,2,4" if option in ("batch", "threads") else f"shows --{option}"  # a sweep's list
    _refused(2, inv, *args, *(("--framework", "tflite") if task != "compare" else ()),
             parts=(f"--{option} {value!r} is not {what}", fix))


def test_a_timeout_of_zero_is_refused(fleet, inv):
    _refused(2, inv, "bench", "--host", "x86", *QUICK, "--timeout", "0", parts=("--timeout 0 must be above 0",))


def test_an_unknown_option_key_is_refused_before_anything_runs(fleet, inv):
    _refused(2, inv, "bench", "--host", "x86", *QUICK, "--option", "threads=4",
             parts=("--option 'threads=4': tflite has no option 'threads'", "tflite takes xnnpack=on|off"))


def test_an_unknown_mode(fleet, inv):
    _refused(2, inv, "bench", "--host", "x86", *QUICK, "--mode", "vm", parts=("--mode 'vm' is not a mode",
                                                                             "native (the board's own Python)"))


def test_iterations_zero(fleet, inv):
    _refused(2, inv, "bench", "--host", "x86", "--framework", "tflite", "--model", "tiny", "--iterations", "0",
             parts=("--iterations must be >= 1", "--iterations 50"))


def test_resume_of_a_directory_that_is_not_a_run(fleet, inv, tmp_path):
    _refused(2, inv, "bench", "--resume", str(tmp_path), parts=(f"--resume {tmp_path}: no run directory",
                                                                "a directory under results/"))


def test_a_framework_the_boards_arch_cannot_run(fleet, tmp_path):
    inventory = _inventory(tmp_path, arch="armv7")  # what the Pi 3s are: no PyTorch wheel for 32-bit ARM
    _refused(2, inventory, "bench", "--host", "x86", "--framework", "pytorch", "--model", "resnet18",
             parts=("pytorch cannot run on x86 (armv7: ", "invoke matrix"))


def test_a_missing_model_file(fleet, inv, tmp_path):
    _refused(4, inv, "bench", "--host", "x86", "--framework", "tflite", "--model", str(tmp_path / "gone.tflite"),
             parts=(f"model file {tmp_path / 'gone.tflite'} does not exist", "check the path"))


def test_an_identity_file_that_is_not_there(fleet, tmp_path):
    inventory = _inventory(tmp_path, identity_file=str(tmp_path / "no_key"))
    _refused(5, inventory, "check", "--host", "x86",
             parts=(f"identity file {tmp_path / 'no_key'} does not exist (from the inventory {inventory})",
                    f"ssh-keygen -t ed25519 -f {tmp_path / 'no_key'}"))


def test_a_known_hosts_file_that_is_not_there(fleet, tmp_path):
    inventory = _inventory(tmp_path, known_hosts=str(tmp_path / "no_known_hosts"))
    _refused(5, inventory, "check", "--host", "x86",
             parts=(f"known_hosts file {tmp_path / 'no_known_hosts'} does not exist", "remove `known_hosts:`"))


def test_a_board_whose_arch_is_not_the_inventorys(fleet, tmp_path):
    inventory = _inventory(tmp_path, arch="arm64")
    r = invoke("check", "--host", "x86", "--inventory", str(inventory), check=False)
    out = " ".join(re.sub("[│┃]", " ", r.stdout).split())
    assert r.returncode == 5 and "Traceback" not in r.stderr
    assert "inventory says arm64, board runs amd64: fix its `arch:`" in out


@pytest.fixture(scope="module")
def workdir(x86, tmp_path_factory):
    """A working directory of this module's own on x86, deployed with the board's real python3 first: the odd
    `python:` of a test then meets no deploy step (and never touches the bundle other tests use)."""
    name = f"edgeorch-odd-{uuid.uuid4().hex[:8]}"
    inventory = _inventory(tmp_path_factory.mktemp("deploy"), workdir=name)
    for _ in range(30):  # another test's bench may hold the board's lock: wait (bounded)
        r = invoke("deploy", "--host", "x86", "--framework", "tflite", "--inventory", str(inventory), check=False)
        if "is being benchmarked by" not in r.stdout:
            break
        time.sleep(5)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    yield name
    shutil.rmtree(x86.home / name, ignore_errors=True)


@pytest.fixture
def board_tmp(x86):
    """A fresh directory in the board's /tmp: (its path on this host, its path on the board)."""
    name = f"edgeorch-test-{uuid.uuid4().hex[:8]}"
    here = x86.rootfs / "tmp" / name
    here.mkdir()
    yield here, f"/tmp/{name}"
    for f in here.iterdir():
        f.unlink()
    here.rmdir()


def _python(board_tmp, script: str) -> str:
    """A `python:` for the board: a shell script in its /tmp; its path there."""
    here, there = board_tmp
    (here / "python3").write_text("#!/bin/sh\n" + script)
    (here / "python3").chmod(0o755)
    return f"{there}/python3"


def test_text_printed_before_the_json(fleet, tmp_path, board_tmp, workdir):
    python = _python(board_tmp, 'echo "Welcome to the lab board, be nice"\nexec python3 "$@"\n')
    out = _refused(6, _inventory(tmp_path, python=python, workdir=workdir), "bench", "--host", "x86", *QUICK,
                   parts=("printed text before its edgeorch.",  # the probe's document, or a run's
                          "document: 'Welcome to the lab board, be nice'", "make it write to stderr", "INCOMPLETE"))
    assert "redeploy" not in out  # the old, wrong fix


def test_an_interpreter_that_is_not_there(fleet, tmp_path, workdir):
    inventory = _inventory(tmp_path, python="/nonexistent/python3", workdir=workdir)
    out = _refused(6, inventory, "bench", "--host", "x86", *QUICK,
                   parts=("could not start (exit 127)", "/nonexistent/python3", "check `python:` of the board"))
    assert "redeploy" not in out


def test_a_board_that_hangs_is_bounded_by_the_timeout(fleet, tmp_path, board_tmp, workdir, monkeypatch):
    # the runs' interpreter never starts: the board-side deadline cannot act, the orchestrator's own timeout must
    python = _python(board_tmp, "while :; do sleep 1; done\n")
    monkeypatch.setattr(runners, "GRACE_S", 2)  # past --timeout, how long the board's own kill is waited for
    inventory = load_inventory(_inventory(tmp_path, python=python, workdir=workdir))
    for _ in range(30):  # another test's bench may hold the board's lock: wait (bounded)
        started = time.monotonic()
        with pytest.raises(RunError) as e:
            pipeline.sweep(Request(task="bench", inventory=str(inventory.path), host="x86", framework="tflite",
                                   model="tiny", mode="bare", iterations=3, warmup=0,
                                   rule=StopRule(min_pairs=1, max_pairs=1), timeout=3), REPORTER)
        took = time.monotonic() - started
        run_dir = Path(re.search(r"are in (\S+)", e.value.message).group(1))
        failure = json.loads((run_dir / "manifest.json").read_text())["failures"]["x86"]
        if "is being benchmarked by" not in failure:
            break
        time.sleep(5)
    assert "INCOMPLETE" in e.value.message and e.value.exit_code == 6
    assert "did not finish within 5 s" in failure and "hung" in failure, failure  # --timeout 3 + the grace
    assert took < 60
    deadline = time.monotonic() + 10
    while _running(python) and time.monotonic() < deadline:  # the hung run is killed on the board too
        time.sleep(0.5)
    assert _running(python) == []


def _running(path: str) -> list[int]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if any(path in word for word in p.info["cmdline"] or ()):
            found.append(p.pid)
    return found


@pytest.mark.parametrize("framework, files, given, parts", [
    ("ncnn", {"net.param": "7767517\n1 1\nInput in0 0 1 in0 0=224 1=224 2=3\n"}, "net.param",
     ("net.param needs net.bin beside it", "copy net.bin next to net.param")),
    ("openvino", {"net.xml": '<?xml version="1.0"?>\n<net name="net" version="11"><layers/></net>\n'}, "net.xml",
     ("net.xml needs net.bin beside it", "copy net.bin next to net.xml")),
    ("opencv", {"yolo.cfg": "[net]\nwidth=32\nheight=32\nchannels=3\n\n[convolutional]\nfilters=4\nsize=3\n"
                            "stride=1\npad=1\nactivation=leaky\n"}, "yolo.cfg",
     ("yolo.cfg needs yolo.weights beside it",)),
    ("executorch", {"net.onnx": "not a model"}, "net.onnx", ("net.onnx", ".pte")),
    ("tvm", {"net.tflite": "not a model"}, "net.tflite", ("net.tflite", ".tvm")),
], ids=["ncnn-param-without-bin", "openvino-xml-without-bin", "darknet-cfg-without-weights",
        "executorch-given-onnx", "tvm-given-tflite"])
def test_a_model_of_another_format_or_without_its_weights_is_refused_before_anything_is_sent(
        fleet, inv, tmp_path, framework, files, given, parts):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    _refused(4, inv, "bench", "--host", "x86", "--framework", framework, "--model", str(tmp_path / given),
             "--iterations", "3", "--warmup", "0", "--min-time", "0", "--repeat", "1", parts=parts)
