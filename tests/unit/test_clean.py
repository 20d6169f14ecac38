"""deploy.prepare_workdir and deploy.clean with their board-side scripts run for real here, against a home that
holds the user's own files beside what edgeorch made: only what carries edgeorch's marks may go."""

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgeorch import deploy
from edgeorch.arch import Arch
from edgeorch.errors import BoardError
from edgeorch.inventory import Board

from .localboard import LocalBoard, can_switch_user


@pytest.fixture
def conn(tmp_path):
    """This machine as the board, with a `docker` that has no images (no engine is touched)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "docker").chmod(0o755)
    return LocalBoard(env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})


def board(workdir: Path) -> Board:
    return Board(name="pi", host="h", user="u", arch=Arch.ARM64, workdir=str(workdir))


def write(path: Path, data: str | bytes = "mine") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def edgeorch_manifest(framework: str, version: str) -> str:
    return json.dumps({"framework": framework, "version": version, "arch": "arm64", "bench_sha256": "0" * 64,
                       "install_sha256": "1" * 64, "wheels": {}})


USERS = ["webapp/manifest.json", "My Project/wheels/x.whl", "models/my-own.onnx", "new\nline/manifest.json",
         "tflite-9.9/manifest.json", "$(touch pwned)/wheels/a", "notes.partial", "models/mine.onnx.partial"]


def users_files(root: Path) -> dict[Path, bytes]:
    """The user's own files, some shaped like edgeorch's (a manifest.json, a wheels/ folder, a model)."""
    files = {root / name: f"the user's {name}".encode() for name in USERS}
    files[root / "tflite-9.9/manifest.json"] = json.dumps({"framework": "tflite", "version": "9.9"}).encode()
    for path, data in files.items():
        write(path, data)
    return files


def test_clean_refuses_a_workdir_edgeorch_did_not_make_and_removes_nothing(tmp_path, conn):
    home = tmp_path / "home"
    files = users_files(home)
    with pytest.raises(BoardError) as refused:
        deploy.clean(conn, board(home), [], set())
    assert "holds files edgeorch did not make" in refused.value.message and "~/edgeorch" in refused.value.hint
    assert all(path.read_bytes() == data for path, data in files.items())
    with pytest.raises(BoardError):  # nor does a deploy work there
        deploy.prepare_workdir(conn, board(home))
    assert not (home / deploy.WORKDIR_MARK).exists()


def test_clean_removes_only_what_edgeorch_made_in_its_workdir(tmp_path, conn):
    workdir = tmp_path / "home" / "edge orch"
    assert deploy.prepare_workdir(conn, board(workdir)) == str(workdir)
    assert (workdir / deploy.WORKDIR_MARK).read_text() == deploy.WORKDIR_SCHEMA + "\n"
    files = users_files(workdir)  # the user put files into edgeorch's folder
    write(workdir / "tflite-2.0.0" / "manifest.json", edgeorch_manifest("tflite", "2.0.0"))
    write(workdir / "tflite-2.0.0" / "wheels" / "tflite_runtime-2.0.0.whl", b"\0" * 1000)
    write(workdir / "onnxruntime-1.0.0" / deploy.BUNDLE_MARK, deploy.BUNDLE_SCHEMA + "\n")  # a cut install
    write(workdir / "onnxruntime-1.0.0" / "wheels" / "a.whl")
    write(workdir / "tflite-2.14.0" / "manifest.json", edgeorch_manifest("tflite", "2.14.0"))  # the current one
    old, current = b"an old zoo model", b"a current zoo model"
    sent = {f"{hashlib.sha256(d).hexdigest()[:16]}.tflite": d for d in (old, current)}
    for name, data in sent.items():
        write(workdir / "models" / name, data)
    write(workdir / deploy.MODELS_LIST, "".join(f"{n}\n" for n in sent) + "../notes.partial\nmy-own.onnx\n")
    write(workdir / "edgeorch-0123456789abcdef.tar.gz.partial")
    write(workdir / "models" / f"{'ab' * 8}.onnx.partial")
    targets = [SimpleNamespace(framework="tflite", build=SimpleNamespace(version="2.14.0"))]

    result = deploy.clean(conn, board(workdir), targets, {hashlib.sha256(current).hexdigest()})

    assert all(path.read_bytes() == data for path, data in files.items())  # every file of the user's stays
    removed = result["removed"]
    assert removed["bundles"] == ["onnxruntime-1.0.0", "tflite-2.0.0"]
    assert not (workdir / "tflite-2.0.0").exists() and not (workdir / "onnxruntime-1.0.0").exists()
    assert (workdir / "tflite-2.14.0" / "manifest.json").exists()
    [old_name] = [n for n, d in sent.items() if d == old]
    assert removed["models"] == [old_name] and not (workdir / "models" / old_name).exists()
    assert (workdir / deploy.MODELS_LIST).read_text() == f"{next(n for n in sent if n != old_name)}\n"
    assert sorted(removed["partials"]) == ["edgeorch-0123456789abcdef.tar.gz.partial",
                                           f"models/{'ab' * 8}.onnx.partial"]
    assert not list(tmp_path.rglob("pwned"))


def test_a_workdir_is_made_and_marked_or_refused(tmp_path, conn):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert deploy.prepare_workdir(conn, board(empty)) == str(empty) and (empty / deploy.WORKDIR_MARK).is_file()
    assert deploy.prepare_workdir(conn, board(tmp_path / "absent"), create=False) is None
    assert not (tmp_path / "absent").exists()  # clean makes nothing
    fake = tmp_path / "fake"
    write(fake / deploy.WORKDIR_MARK, "something else\n")
    write(fake / "data.csv")
    with pytest.raises(BoardError, match="holds files edgeorch did not make"):
        deploy.prepare_workdir(conn, board(fake))


def test_an_older_edgeorchs_workdir_is_taken_over_with_the_models_it_sent(tmp_path, conn):
    old = tmp_path / "edgeorch"
    write(old / "host" / "edgeorch_bench" / "DIGEST", "d")
    write(old / "tflite-2.14.0" / "manifest.json", edgeorch_manifest("tflite", "2.14.0"))
    write(old / "models" / f"{'cd' * 8}.onnx")
    write(old / "models" / "my-own.onnx")
    assert deploy.prepare_workdir(conn, board(old)) == str(old)
    assert (old / deploy.MODELS_LIST).read_text() == f"{'cd' * 8}.onnx\n"
    write(tmp_path / "mixed" / "host" / "edgeorch_bench" / "DIGEST", "d")
    write(tmp_path / "mixed" / "thesis.tex")  # anything edgeorch never makes: not taken over
    with pytest.raises(BoardError, match="holds files edgeorch did not make"):
        deploy.prepare_workdir(conn, board(tmp_path / "mixed"))


@pytest.mark.skipif(not can_switch_user(), reason="needs root to make a directory of another login")
def test_a_workdir_of_another_login_is_refused(tmp_path, conn):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    with pytest.raises(BoardError, match="belongs to another login"):
        deploy.prepare_workdir(conn, board(theirs))
