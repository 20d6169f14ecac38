"""edgeorch.runners: what reaches the board's shell and Docker's parsers."""

import csv
import json
import shlex
import subprocess
import sys
import time

import pytest

from edgeorch.runners import mount_arg, watched
from edgeorch.transport import sh

from .localboard import can_switch_user


def test_a_bind_mount_of_a_file_with_commas_and_quotes_parses_back_to_its_path():
    path = '/root/edgeorch/models/0123-my net, "v2".tflite'
    fields = next(csv.reader([mount_arg(path, "/opt/edgeorch/models/m.tflite")]))
    assert fields == ["type=bind", f"source={path}", "target=/opt/edgeorch/models/m.tflite", "readonly"]


HOSTILE = ["a b", "it's", 'say "hi"', "x;touch pwned", "$(touch pwned)", "`touch pwned`", "new\nline", "ünï",
           "*", "~", "-rf"]


def test_the_watched_command_reaches_the_watcher_word_for_word_through_a_login_shell(tmp_path):
    """sshd hands the command line to the user's shell: every word must arrive as it left, and nothing may run."""
    host_dir = tmp_path / "host dir $(touch pwned)"
    (host_dir / "edgeorch_bench").mkdir(parents=True)
    (host_dir / "edgeorch_bench" / "__init__.py").write_text("")
    (host_dir / "edgeorch_bench" / "watch.py").write_text("import json, os, sys\n"
                                                          "print(json.dumps([os.getcwd(), sys.argv[1:]]))\n")
    cwd = tmp_path / "bundle; touch pwned"
    argv = watched(sys.executable, str(host_dir), ["venv/bin/python", *HOSTILE], tag="edgeorch-run-x", deadline=5,
                   cwd=str(cwd))
    out = subprocess.run(["bash", "-c", shlex.join(argv)], cwd=tmp_path, capture_output=True, text=True, check=True)
    where, args = json.loads(out.stdout)
    assert where == str(host_dir)
    assert args == ["--tag", "edgeorch-run-x", "--deadline", "5", "--cwd", str(cwd), "--", "venv/bin/python",
                    *HOSTILE]
    assert not list(tmp_path.rglob("pwned"))


def test_named_inputs_and_the_cache_dir_reach_the_entrypoint_in_every_mode(monkeypatch):
    from types import SimpleNamespace

    from edgeorch import runners

    sent = []
    monkeypatch.setattr(runners, "remote", lambda conn, argv, **kw: sent.append(argv) or SimpleNamespace(
        stdout="", stderr="", exited=0))
    files = [("--model", "/w/models/ab-m=1.onnx"), ("--input", "ids=/w/models/cd-ids=x.npy")]
    runners.NativeRunner(None, "b", "/w/onnxruntime", 60, cache_dir="/w/cache").execute(
        ["--framework", "onnxruntime"], files)
    runners.BareRunner(None, "b", "/w/onnxruntime-bare/root", "usr/bin/python3.11", {"PYTHONHOME": "/w/x/usr"}, 60,
                       cache_dir="/w/cache").execute(["--framework", "onnxruntime"], files)
    for argv, mode in ((sent[0], "native"), (sent[1], "bare")):
        assert argv[argv.index("--model") + 1] == "/w/models/ab-m=1.onnx"
        assert argv[argv.index("--input") + 1] == "ids=/w/models/cd-ids=x.npy"  # NAME= stays, the path is the board's
        assert argv[argv.index("--cache-dir") + 1] == "/w/cache"
        assert argv[argv.index("--mode") + 1] == mode
    # bare: the userland's interpreter, in an environment of nothing but what relocates it, in the image's directory
    run = sent[1][sent[1].index("--") + 1:]
    assert run[:4] == ["env", "-i", "PYTHONHOME=/w/x/usr", "/w/onnxruntime-bare/root/usr/bin/python3.11"]
    assert sent[1][sent[1].index("--cwd") + 1] == "/w/onnxruntime-bare/root/opt/edgeorch"
    sent.clear()
    runners.DockerRunner(None, "b", "sha256:1", 60, cache_dir="/w/cache").execute(["--framework", "onnxruntime"], files)
    create = next(argv for argv in sent if "docker create" in " ".join(argv[:3]))
    assert '--user "$(id -u):$(id -g)"' in create[2]  # as the login, as the bare run is
    assert create[create.index("--input") + 1] == "ids=/opt/edgeorch/models/cd-ids=x.npy"
    assert create[create.index("--cache-dir") + 1] == "/w/cache"
    # the engine cache is the board's directory, writable, at the same path in the container
    assert "type=bind,source=/w/cache,target=/w/cache" in create
    copied = [argv[2:] for argv in sent if argv[:2] == ["docker", "cp"]]
    assert [path for path, _ in copied] == ["/w/models/ab-m=1.onnx", "/w/models/cd-ids=x.npy"]


@pytest.mark.skipif(not can_switch_user(), reason="needs root and setpriv to act as a second login")
@pytest.mark.parametrize("how", ["kill_runs", "deploy's leftovers"])
def test_a_cleanup_ends_this_logins_runs_and_never_another_logins(how):
    """edgeorch often logs in as root: a process of another login that names itself like a run must live on."""
    from edgeorch import deploy, runners

    from .localboard import AS_NOBODY, LocalBoard

    words = ["--tag", "edgeorch-run-5e55-0001", "/w/edgeorch/tflite-2.14.0/venv/bin/python"]
    ours = subprocess.Popen(["sh", "-c", "sleep 60", *words])
    theirs = subprocess.Popen([*AS_NOBODY, "sh", "-c", "sleep 60", *words])
    try:
        time.sleep(0.2)
        if how == "kill_runs":
            runners.kill_runs(LocalBoard(env={"PATH": "/nonexistent-docker:/usr/bin:/bin"}), "b", session="5e55")
        else:
            LocalBoard().run(shlex.join(sh(deploy._END_LEFTOVERS, deploy._running_from("/w/edgeorch/tflite-2.14.0"))))
        assert ours.wait(timeout=10) != 0
        assert theirs.poll() is None
    finally:
        for p in (ours, theirs):
            p.kill()
            p.wait()


def test_a_deployment_gives_each_mode_its_runner():
    from pathlib import Path
    from types import SimpleNamespace

    from edgeorch.arch import Arch
    from edgeorch.deploy import Deployment
    from edgeorch.inventory import Board
    from edgeorch.plan import Arm
    from edgeorch.userland import Userland

    bare = Userland(archive=Path("/x.tar.gz"), sha256="0" * 64, unpacked=1, python="usr/bin/python3.11",
                    loader="/lib/ld-linux-armhf.so.3", library_path=("lib",), site_packages="opt/s")
    d = Deployment(board=Board(name="rpi3", host="h", user="pi", arch=Arch.ARMV7, python="/usr/bin/python3.13"),
                   image=SimpleNamespace(framework="tflite", image_id="sha256:1"), workdir="/home/pi/edgeorch",
                   bundle_dir="/home/pi/edgeorch/tflite-2.14.0", framework_version="2.14.0", userland=bare)
    runner = d.runner(None, Arm(label="bare", mode="bare"), 60)
    entrypoint, cwd = runner.command()
    assert entrypoint[-1] == "/home/pi/edgeorch/tflite-2.14.0-bare/root/usr/bin/python3.11"
    assert cwd == "/home/pi/edgeorch/tflite-2.14.0-bare/root/opt/edgeorch"
    assert runner.python == "/usr/bin/python3.13"  # the watcher's: the board's own
    native = d.runner(None, Arm(label="native", mode="native"), 60)
    assert native.command() == (["venv/bin/python"], "/home/pi/edgeorch/tflite-2.14.0")
    assert d.runner(None, Arm(label="docker", mode="docker"), 60).mode == "docker"
