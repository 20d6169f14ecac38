"""The catalogue of bad input, its pure part: each kind is refused with a message that names the thing and the
fix, and the exit code of its kind, before anything is done. (docs/reference/bad-input.md lists every kind with
the test that covers it; the kinds that need the fleet or the CLI are in tests/integration/test_bad_input.py.)"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import invoke
import pytest

import tasks
from edgeorch import pipeline, plan, request, sweep
from edgeorch.arch import Arch
from edgeorch.console import REPORTER
from edgeorch.errors import BoardError, ConfigError, ModelError
from edgeorch.inventory import Board, load_inventory
from edgeorch.models import model_name
from edgeorch.recipes import get_recipe
from edgeorch.request import Request
from edgeorch.results import parse_answer
from edgeorch.runners import Answer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """A HOME of its own: nothing here reads the ~/.ssh of whoever runs the tests."""
    (tmp_path / "home" / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def refused(kind, fn, *args, **kwargs):
    """The error `fn` raises, checked to be of `kind` and to carry a fix."""
    with pytest.raises(kind) as e:
        fn(*args, **kwargs)
    assert e.value.hint, f"{e.value.message!r} says no fix"
    return e.value


def inventory_error(tmp_path, text: str) -> ConfigError:
    path = tmp_path / "inventory.yaml"
    path.write_text(textwrap.dedent(text))
    err = refused(ConfigError, load_inventory, path)
    assert str(path) in err.message and err.exit_code == 2
    return err


def board_error(tmp_path, fields: str) -> ConfigError:
    return inventory_error(tmp_path, f"boards:\n  - {{name: rpi, host: h, user: u, arch: arm64, {fields}}}\n")


def test_an_inventory_that_is_a_directory(tmp_path, monkeypatch):
    err = refused(ConfigError, load_inventory, tmp_path)
    assert f"inventory {tmp_path} is a directory" in err.message and "--inventory inventory.yaml" in err.hint
    monkeypatch.setenv("EDGEORCH_INVENTORY", "")  # set but empty, as `EDGEORCH_INVENTORY= invoke ...` leaves it
    found = subprocess.run([sys.executable, "-c", "import tasks; print(tasks.INVENTORY)"], cwd=ROOT,
                           capture_output=True, text=True)
    assert found.stdout.strip() == "inventory.yaml", found.stderr


def test_a_board_that_is_not_a_mapping(tmp_path):
    err = inventory_error(tmp_path, "boards:\n  - rpi4\n")
    assert "boards[0] is not a mapping" in err.message and "- name:" in err.hint


def test_defaults_that_are_not_a_mapping(tmp_path):
    err = inventory_error(tmp_path, "defaults: root\nboards:\n  - {name: a, host: h, arch: arm64}\n")
    assert "`defaults` must be a mapping" in err.message and "user: pi" in err.hint


@pytest.mark.parametrize("name", ["rpi 4", "-rpi4", "模型", "rpi4;reboot", "rpi4\n", "../rpi4", "42.5"])
def test_a_board_name_that_is_not_plain(tmp_path, name):
    err = inventory_error(tmp_path, f"boards:\n  - {{name: {json.dumps(name)}, host: h, arch: arm64}}\n")
    assert "field `name`" in err.message and repr(name) in err.message
    assert "ASCII letters, digits, - and _" in err.hint


@pytest.mark.parametrize("field", ["frameworks", "docker_args"])
def test_list_fields_that_are_not_lists(tmp_path, field):
    err = board_error(tmp_path, f"{field}: tflite")
    assert f"field `{field}`" in err.message and "is not a list" in err.message and f"{field}: [a, b]" in err.hint


@pytest.mark.parametrize("fields, problem, fix", [
    ("sim: true, sim_packages: ['python3-opencv; reboot']", "is not a Debian package name", "python3-onnxruntime"),
    ("sim: true, sim_packages: [Python3]", "is not a Debian package name", "names apt knows"),
    ("sim_packages: [python3-onnxruntime]", "is for a simulated board", "sudo apt install")])
def test_sim_packages_that_are_not_package_names_or_not_for_a_sim_board(tmp_path, fields, problem, fix):
    err = board_error(tmp_path, fields)
    assert "field `sim_packages`" in err.message and problem in err.message and fix in err.hint


@pytest.mark.parametrize("workdir, problem", [('"a\\nb"', "control character"), ('"a\\tb"', "control character"),
                                              ("~pi/edgeorch", "another user's ~"), ('""', "is not a directory"),
                                              ("[x]", "is not a directory")])
def test_a_workdir_that_cannot_work(tmp_path, workdir, problem):
    err = board_error(tmp_path, f"workdir: {workdir}")
    assert "field `workdir`" in err.message and problem in err.message


@pytest.mark.parametrize("workdir, what, fix", [
    ("~", "the login's home", "~/edgeorch"), ("~/", "the login's home", "~/edgeorch"),
    (".", "the login's home", "~/edgeorch"), ("bench/..", "the login's home", "~/edgeorch"),
    ("../other", "outside the login's home", "~/edgeorch"), ("/home/pi", "a home directory", "~/edgeorch"),
    ("/home/pi/", "a home directory", "~/edgeorch"), ("/root", "a home directory", "~/edgeorch"),
    ("/", "the filesystem's root", "~/edgeorch"), ("/data", "a top-level directory", "/data/edgeorch"),
    ("/tmp", "a top-level directory", "/tmp/edgeorch"), ("/usr", "a top-level directory", "/usr/edgeorch"),
    ("/etc/edgeorch", "a system directory", "/etc/edgeorch/edgeorch"),
    ("/var/lib", "a system directory or a mount point", "/var/lib/edgeorch"),
    ("/mnt/usb", "a system directory or a mount point", "/mnt/usb/edgeorch")])
def test_a_workdir_that_holds_others_files_is_refused(tmp_path, workdir, what, fix):
    """`clean` removes what edgeorch made in its workdir: a home or a system directory is never one."""
    err = board_error(tmp_path, f"workdir: {json.dumps(workdir)}")
    assert "board 'rpi'" in err.message and "field `workdir`" in err.message and repr(workdir) in err.message
    assert what in err.message and f"workdir: {fix}" in err.hint


@pytest.mark.parametrize("workdir, on_board", [("~/bench", "bench"), ("/srv/edge orch", "/srv/edge orch"),
                                               ("/home/pi/edgeorch", "/home/pi/edgeorch"), ("/tmp/eo", "/tmp/eo"),
                                               ("/var/lib/edgeorch", "/var/lib/edgeorch")])
def test_a_workdir_under_the_home_is_relative_to_it(tmp_path, workdir, on_board):
    path = tmp_path / "inventory.yaml"
    path.write_text(f"boards:\n  - {{name: rpi, host: h, user: u, arch: arm64, workdir: {json.dumps(workdir)}}}\n")
    assert load_inventory(path).boards[0].workdir == on_board  # no shell on the board would expand the ~


BOARD = Board(name="pi3", host="h", user="u", arch=Arch.ARMV7)


def cell(**given):
    kwargs = dict(framework="tflite", model="tiny", arms=plan.mode_arms(("docker", "bare")), iterations=5, warmup=0,
                  threads=0)
    return plan.bench_cell(BOARD, **{**kwargs, **given})


def test_an_option_without_a_value():
    err = refused(ConfigError, cell, options=("xnnpack",))
    assert "--option 'xnnpack' is not KEY=VALUE" in err.message and "xnnpack=off" in err.hint


@pytest.mark.parametrize("framework, option, problem, takes", [
    ("tflite", "xnpack=off", "tflite has no option 'xnpack'", "xnnpack=on|off"),
    ("tflite", "xnnpack=no", "tflite: --option xnnpack='no' is not one of ['on', 'off']", "xnnpack=on|off"),
    ("onnxruntime", "xnnpack=off", "onnxruntime has no option 'xnnpack'", "no --option"),
    ("pytorch", "device=gpu", "pytorch: --option device='gpu' is not one of ['cpu', 'cuda']", "device=cpu|cuda"),
])
def test_an_option_the_framework_does_not_take(framework, option, problem, takes):
    err = refused(ConfigError, cell, framework=framework, options=(option,))
    assert problem in err.message and takes in err.hint


def test_an_unknown_mode():
    err = refused(ConfigError, plan.parse_modes, "container")
    assert "--mode 'container'" in err.message and "native (the board's own Python)" in err.hint


@pytest.mark.parametrize("option, value, what", [("iterations", "many", "an integer"), ("warmup", "2.5", "an integer"),
                                                 ("threads", "", "a whole number or a comma list of them"),
                                                 ("batch", "x", "a whole number or a comma list of them"),
                                                 ("batch", "1,two", "a whole number or a comma list of them"),
                                                 ("timeout", "soon", "a number")])
def test_a_count_that_is_not_a_number(option, value, what):
    err = refused(ConfigError, request.counts, {option: value})
    assert f"--{option} {value!r} is not {what}" in err.message and f"--{option}" in err.hint


@pytest.mark.parametrize("value", ["0", "-5"])
def test_a_timeout_that_is_no_limit(value):
    err = refused(ConfigError, request.counts, {"timeout": value})
    assert f"--timeout {value} must be above 0" in err.message and "--timeout 3600" in err.hint


def test_counts_given_as_text_are_numbers():
    assert request.counts({"iterations": "50", "timeout": "90.5", "model": "tiny"}) == \
        {"iterations": 50, "timeout": 90.5, "model": "tiny"}
    # a sweep's lists, as given and as a resumed run's manifest keeps them
    assert request.counts({"threads": "1,2,4", "batch": [1, 8]}) == {"threads": [1, 2, 4], "batch": [1, 8]}


def test_no_host_given():
    err = refused(ConfigError, tasks._hosts, invoke.Context(), None)
    assert "no boards given" in err.message and "--host" in err.hint


def test_resume_of_a_directory_that_is_not_a_run(tmp_path):
    err = refused(ConfigError, tasks._request, None, "bench", {"resume": str(tmp_path)})
    assert f"--resume {tmp_path}" in err.message and "results/" in err.hint


def test_resume_of_a_run_of_another_task(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"request": {"task": "calibrate"}}))
    err = refused(ConfigError, tasks._request, None, "bench", {"resume": str(tmp_path)})
    assert "not started by `invoke bench`" in err.message and "task that made it" in err.hint


def test_a_framework_the_boards_arch_cannot_run():
    err = refused(ConfigError, sweep._require_support, get_recipe("pytorch"), [BOARD])
    assert "pytorch cannot run on pi3 (armv7: " in err.message and "invoke matrix" in err.hint


def test_the_agreement_check_of_a_model_that_is_not_a_zoo_network(tmp_path):
    (tmp_path / "inventory.yaml").write_text("boards: []\n")
    err = refused(ConfigError, pipeline.sweep, Request(task="agree", inventory=str(tmp_path / "inventory.yaml"),
                                                       host="all", framework="tflite", model="tiny"), REPORTER)
    assert "needs a zoo network, not 'tiny'" in err.message and "mobilenet_v2" in err.hint


def test_a_batch_for_a_users_file(tmp_path):
    path = tmp_path / "mine.tflite"
    path.write_bytes(b"x")
    err = refused(ModelError, model_name, str(path), "tflite", batch=4)
    assert "--batch 4" in err.message and "drop --batch" in err.hint and err.exit_code == 4


@pytest.fixture
def onnx_file(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "net.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_a_truncated_onnx(tmp_path, onnx_file):
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(onnx_file.read_bytes()[:-7])
    err = refused(ModelError, model_name, str(cut), "onnx")
    assert f"{cut} is not a valid ONNX model" in err.message and ".onnx file" in err.hint


@pytest.mark.parametrize("model_format, problem, fix", [
    ("tflite", "is not a TFLite model", "pass a .tflite file"),
    ("torchscript", "is not a torchscript model: its name does not end in .pt", "pass a .pt file"),
    ("tf-graph", "is not a tf-graph model: its name does not end in .pb", "pass a .pb file"),
])
def test_a_model_of_another_framework(tmp_path, onnx_file, model_format, problem, fix):
    err = refused(ModelError, model_name, str(onnx_file), model_format)
    assert f"{onnx_file} {problem}" in err.message and fix in err.hint


DOC = json.dumps({"schema": "edgeorch.result/6", "status": "ok"})


def test_text_printed_before_the_json():
    err = refused(BoardError, parse_answer, Answer(f"Welcome to the lab!\nMOTD\n{DOC}\n", "", 0), board="x86",
                  what="bare run #0")
    assert "the bare run #0 printed text before its edgeorch.result/6 document: 'Welcome to the lab!\\nMOTD'" \
        in err.message
    assert "`python:`" in err.hint and "stderr" in err.hint and err.exit_code == 5


def test_an_interpreter_that_is_not_there():
    err = refused(BoardError, parse_answer, Answer("", "sh: 1: exec: /opt/py/bin/python3: not found\n", 127),
                  board="x86", what="docker run #0")
    assert "could not start (exit 127): sh: 1: exec: /opt/py/bin/python3: not found" in err.message
    assert "`python:`" in err.hint and "invoke check" in err.hint
