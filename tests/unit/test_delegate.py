"""External delegates for TFLite and LiteRT (the Edge TPU's libedgetpu): --option delegate=PATH checked by a rule on
the orchestrator before anything runs, loaded by the adapter on the board (a stand-in runtime here), and in Docker
mode the library, the accelerators and the login's groups given to the container. What only a board with the
accelerator shows is in tests/integration/test_delegate.py's docstring."""

import os
import subprocess
import sys
from types import ModuleType, SimpleNamespace

import pytest

from edgeorch import plan, runners
from edgeorch.arch import Arch
from edgeorch.bench.adapters.base import OptionError
from edgeorch.errors import ConfigError
from edgeorch.inventory import Board

EDGETPU = "/usr/lib/aarch64-linux-gnu/libedgetpu.so.1"


def cell(framework="tflite", *options):
    board = Board(name="pi5", host="h", user="u", arch=Arch.ARM64)
    return plan.bench_cell(board, framework=framework, model="tiny", arms=plan.mode_arms(("docker", "bare")),
                           iterations=5, warmup=0, threads=0, options=options)


@pytest.mark.parametrize("framework", ["tflite", "litert"])
def test_a_delegate_library_is_an_option_of_both_tflite_runtimes(framework):
    assert cell(framework, f"delegate={EDGETPU}", "xnnpack=off").options == (f"delegate={EDGETPU}", "xnnpack=off")


@pytest.mark.parametrize("value, problem", [
    ("libedgetpu.so.1", "must be the absolute path of the library on the board"),
    ("./libedgetpu.so.1", "must be the absolute path"),
    ("/usr/lib/libedgetpu.so.1\n", "holds '\\n'"),
    ("/usr/lib/x.so;reboot", "holds ';'"),
    ("/usr/lib/$(id)/x.so", "holds '$', '(', ')'"),
    ("/opt/my lib/x.so", "holds ' '"),
    ("/usr/lib/a,b.so", "holds ','"),
    ("/usr/lib/", "names a directory"),
    ("/usr/lib/libhailort.so.4.20.0", "names HailoRT, which is no TFLite delegate"),
])
def test_a_delegate_that_is_no_plain_absolute_path_is_refused_before_anything_runs(value, problem):
    with pytest.raises(ConfigError) as e:
        cell("tflite", f"delegate={value}")
    assert problem in e.value.message and e.value.exit_code == 2
    assert e.value.message.startswith(f"tflite: --option delegate={value!r}: ")
    assert "delegate=<absolute path of an external delegate's library on the board>" in e.value.hint
    assert "xnnpack=on|off" in e.value.hint


def test_the_hailo_refusal_says_what_hailo_runs_instead():
    with pytest.raises(ConfigError) as e:
        cell("litert", "delegate=/usr/lib/libhailort.so")
    assert ".hef files" in e.value.message and "Developer Zone" in e.value.message


def test_other_frameworks_take_no_delegate():
    with pytest.raises(ConfigError, match="onnxruntime has no option 'delegate'"):
        cell("onnxruntime", f"delegate={EDGETPU}")


# --- the adapter, with a stand-in tflite_runtime ---------------------------------------------------------------

@pytest.fixture
def runtime(monkeypatch):
    """A tflite_runtime whose load_delegate and Interpreter record what they are given; `loads` says what
    load_delegate does with a library (returns a delegate by default)."""
    made = SimpleNamespace(delegates=[], interpreters=[], loads=lambda path: ("delegate", path))
    package, interp = ModuleType("tflite_runtime"), ModuleType("tflite_runtime.interpreter")
    package.__version__ = "2.14.0"

    def load_delegate(path):
        made.delegates.append(path)
        return made.loads(path)

    interp.load_delegate = load_delegate
    interp.Interpreter = lambda **kw: made.interpreters.append(kw) or SimpleNamespace()
    interp.OpResolverType = SimpleNamespace(BUILTIN_WITHOUT_DEFAULT_DELEGATES="no-xnnpack")
    monkeypatch.setitem(sys.modules, "tflite_runtime", package)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", interp)
    return made


def test_the_delegate_is_loaded_given_to_the_interpreter_and_recorded(runtime, tmp_path):
    from edgeorch.bench.adapters.tflite import TFLite

    real = tmp_path / "libedgetpu.so.1.0"
    real.write_bytes(b"\x7fELF")
    link = tmp_path / "libedgetpu.so.1"
    link.symlink_to(real.name)
    adapter = TFLite({"delegate": str(link), "xnnpack": "off"})
    adapter.load("/w/m.tflite", 2)
    assert runtime.delegates == [str(link)]
    assert runtime.interpreters == [{"model_path": "/w/m.tflite", "num_threads": 2, "experimental_delegates": [
        ("delegate", str(link))], "experimental_op_resolver_type": "no-xnnpack"}]
    assert adapter.info(2)["options"] == {"xnnpack": "off", "delegate": str(link), "delegate_file": str(real)}


def test_without_a_delegate_nothing_is_loaded_or_recorded(runtime):
    from edgeorch.bench.adapters.tflite import TFLite

    adapter = TFLite()
    adapter.load("/w/m.tflite", 0)
    assert runtime.delegates == [] and "experimental_delegates" not in runtime.interpreters[0]
    assert adapter.info(0)["options"] == {"xnnpack": "on"}


def test_a_library_the_board_lacks_is_refused_with_its_fix(runtime):
    from edgeorch.bench.adapters.tflite import TFLite

    with pytest.raises(OptionError) as e:
        TFLite({"delegate": "/usr/lib/nowhere/libedgetpu.so.1"})
    assert str(e.value).startswith("no delegate library at /usr/lib/nowhere/libedgetpu.so.1 on this board: ")
    assert "libedgetpu1-std" in str(e.value) and "Coral's apt repository" in str(e.value)
    assert runtime.delegates == []


@pytest.mark.parametrize("error, problem", [
    (ValueError("Failed to load delegate from /l.so\n"), "does not load: Failed to load delegate from /l.so"),
    (OSError("libusb-1.0.so.0: cannot open shared object file"), "does not load: libusb-1.0.so.0: cannot open"),
    (AttributeError("/l.so: undefined symbol: tflite_plugin_create_delegate"), "is not an external TFLite delegate"),
])
def test_a_library_that_does_not_load_is_refused_with_its_message(runtime, tmp_path, error, problem):
    from edgeorch.bench.adapters.tflite import LiteRT, TFLite

    library = tmp_path / "libx.so"
    library.write_bytes(b"\x7fELF")

    def fail(path):
        raise error

    runtime.loads = fail
    with pytest.raises(OptionError, match=problem):
        TFLite({"delegate": str(library)})
    assert LiteRT.OPTIONS == TFLite.OPTIONS  # LiteRT's interpreter takes the same delegates


def test_the_entrypoint_answers_a_missing_library_as_a_bad_argument(runtime):
    from edgeorch.bench import EXIT_ARGS, __main__

    with pytest.raises(__main__.Failure) as e:
        __main__._adapter("tflite", ["delegate=/usr/lib/nowhere/libedgetpu.so.1"])
    assert (e.value.kind, e.value.code) == ("args", EXIT_ARGS)
    assert e.value.message.startswith("tflite: no delegate library at /usr/lib/nowhere/libedgetpu.so.1 on this board")


# --- Docker mode ------------------------------------------------------------------------------------------------

def test_the_delegate_is_read_from_the_entrypoints_arguments():
    assert runners.delegate_of(["--framework", "tflite", "--option", "xnnpack=off", "--option",
                                f"delegate={EDGETPU}"]) == EDGETPU
    assert runners.delegate_of(["--framework", "tflite", "--option", "xnnpack=off"]) is None


def test_a_container_gets_accelerators_only_with_a_delegate(monkeypatch):
    sent = []
    monkeypatch.setattr(runners, "remote", lambda conn, argv, **kw: sent.append(argv) or SimpleNamespace(
        stdout="", stderr="", exited=0))
    runners.DockerRunner(None, "b", "sha256:1", 60).execute(["--framework", "tflite"], [("--model", "/w/m.tflite")])
    plain = next(argv for argv in sent if "docker create" in argv[2])
    assert "--device" not in plain[2] and "--group-add" not in plain[2] and plain[4:6] == ["--name", plain[5]]
    sent.clear()
    runners.DockerRunner(None, "b", "sha256:1", 60).execute(
        ["--framework", "tflite", "--option", f"delegate={EDGETPU}"], [("--model", "/w/m.tflite")])
    create = next(argv for argv in sent if "docker create" in argv[2])
    assert create[4:6] == [EDGETPU, "/dev/apex_0 /dev/bus/usb"] and create[6] == "--name"
    assert create[create.index("--option") + 1] == f"delegate={EDGETPU}"  # the entrypoint still gets it


def test_the_create_script_mounts_the_library_and_its_target_and_passes_the_devices_the_board_has(tmp_path):
    """The script runs here, with a `docker` that prints its arguments: what the board's shell would run."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    (bin_dir / "docker").chmod(0o755)
    real = tmp_path / "lib" / "libedgetpu.so.1.0"
    real.parent.mkdir()
    real.write_bytes(b"\x7fELF")
    link = real.with_name("libedgetpu.so.1")
    link.symlink_to(real.name)
    present, absent = tmp_path / "apex_0", tmp_path / "hailo0"
    present.touch()
    argv = runners.create_argv(["--name", "t", "sha256:1", "--framework", "tflite"], str(link),
                               devices=(str(present), str(absent)))
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30,
                         env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}).stdout.splitlines()
    groups = subprocess.run(["id", "-G"], capture_output=True, text=True, check=True).stdout.split()
    assert out[:3] == ["create", "--user", f"{os.getuid()}:{os.getgid()}"]
    assert out[3:7] == ["--mount", f"type=bind,source={link},target={link},readonly",
                        "--mount", f"type=bind,source={real},target={real},readonly"]
    rest = out[7:]
    assert [rest[i + 1] for i, a in enumerate(rest) if a == "--group-add"] == groups[::-1]
    assert [rest[i + 1] for i, a in enumerate(rest) if a == "--device"] == [str(present)]
    assert rest[-5:] == ["--name", "t", "sha256:1", "--framework", "tflite"]


def test_a_library_the_board_lacks_gets_no_mount_and_the_adapter_says_so(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    (bin_dir / "docker").chmod(0o755)
    argv = runners.create_argv(["sha256:1"], str(tmp_path / "none.so"), devices=())
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30,
                         env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}).stdout.splitlines()
    assert "--mount" not in out and "--device" not in out and out[-1] == "sha256:1"
