"""deploy._first_start: when the bare bundle's interpreter cannot start on a board, the deploy says why and the fix."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from edgeorch import deploy
from edgeorch.arch import Arch
from edgeorch.errors import BoardError
from edgeorch.inventory import Board
from edgeorch.userland import Userland

BOARD = Board(name="rpi3", host="127.0.0.1", user="pi", arch=Arch.ARMV7)
BUNDLE = Userland(archive=Path("/nowhere.tar.gz"), sha256="0" * 64, unpacked=1, python="usr/bin/python3.11",
                  loader="/lib/ld-linux-armhf.so.3", library_path=("usr/lib/arm-linux-gnueabihf",),
                  site_packages="opt/edgeorch/venv/lib/python3.11/site-packages")


def started(monkeypatch, exited: int, stderr: str):
    """_first_start against a board whose shell answers `exited` and `stderr`; the BoardError it raises."""
    sent = []
    monkeypatch.setattr(deploy, "remote", lambda conn, argv, **kw: sent.append(argv) or SimpleNamespace(
        ok=exited == 0, exited=exited, stdout="", stderr=stderr))
    with pytest.raises(BoardError) as e:
        deploy._first_start(None, BOARD, BUNDLE, "/home/pi/edgeorch/tflite-2.14.0-bare/root")
    assert "/home/pi/edgeorch/tflite-2.14.0-bare/root/usr/bin/python3.11" in sent[0]
    return e.value


@pytest.mark.parametrize("exited, stderr, why, fix", [
    (126, "env: '/home/pi/edgeorch/tflite-2.14.0-bare/root/usr/bin/python3.11': Permission denied",
     "its workdir does not let programs run (a noexec mount?)", "findmnt -T /home/pi/edgeorch/tflite-2.14.0-bare/root"),
    (127, "FATAL: kernel too old", "the board's kernel is older than the bundle's C library needs",
     "update the board's kernel"),
    (126, "env: '/home/pi/x/python3.11': Exec format error", "its architecture is not the bundle's (whose loader is "
     "ld-linux-armhf.so.3)", "fix `arch:`"),
    (1, "Segmentation fault", "it did not start", "invoke check"),
])
def test_each_cause_is_named_with_its_fix(monkeypatch, exited, stderr, why, fix):
    err = started(monkeypatch, exited, stderr)
    assert "board rpi3: the bare-metal bundle's Python cannot run there: " + why in err.message
    assert stderr[-40:] in err.message and fix in err.hint


def test_a_bundle_that_starts_passes(monkeypatch):
    monkeypatch.setattr(deploy, "remote", lambda conn, argv, **kw: SimpleNamespace(ok=True, exited=0, stdout="3.11.2",
                                                                                  stderr=""))
    deploy._first_start(None, BOARD, BUNDLE, "/home/pi/edgeorch/tflite-2.14.0-bare/root")
