"""Results, caches and health files are written whole or not at all, never through a link, and two edgeorch
processes writing one file at once neither mix their bytes nor lose each other's entries."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeorch import cache, images

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, *args: str) -> subprocess.Popen:
    """Another edgeorch process running `code` (sys.argv[1:] are `args`)."""
    return subprocess.Popen([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT)!r})\n" + code, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_link_at_the_name_is_replaced_never_written_through(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("someone else's file")
    (tmp_path / "manifest.json").symlink_to(victim)
    cache.write_atomic(tmp_path / "manifest.json", '{"complete": true}')
    assert victim.read_text() == "someone else's file"
    assert not (tmp_path / "manifest.json").is_symlink()
    assert json.loads((tmp_path / "manifest.json").read_text()) == {"complete": True}


def test_a_link_left_at_the_old_predictable_temporary_name_is_never_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("someone else's file")
    (tmp_path / f".manifest.json.{os.getpid()}.tmp").symlink_to(victim)  # where the old write_atomic wrote
    cache.write_atomic(tmp_path / "manifest.json", "new")
    assert victim.read_text() == "someone else's file"
    assert (tmp_path / "manifest.json").read_text() == "new"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "results.csv"
    target.write_text("old")

    def full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        cache.write_atomic(target, "new" * 1000)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


def test_processes_writing_one_file_at_once_leave_one_of_them_whole(tmp_path):
    target = tmp_path / "manifest.json"
    code = ("from pathlib import Path; from edgeorch import cache\n"
            "for _ in range(30):\n"
            "    cache.write_atomic(Path(sys.argv[1]), sys.argv[2] * 200_000)\n")
    procs = [_python(code, str(target), letter) for letter in "abcd"]
    for p in procs:
        assert p.wait(60) == 0, p.stderr.read()
    text = target.read_text()
    assert len(text) == 200_000 and len(set(text)) == 1  # one writer's bytes, all of them
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]  # no temporary left behind


def test_a_rootfs_pack_never_writes_through_the_old_fixed_partial_name(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "os-release").write_text("ID=debian\n")
    out = tmp_path / "rootfs" / "trixie-arm64-x.tar"
    out.parent.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("someone else's file")
    out.with_suffix(".tar.partial").symlink_to(victim)
    images._pack(root, out)
    assert victim.read_text() == "someone else's file"
    listed = subprocess.run(["tar", "-tf", out], capture_output=True, text=True, check=True).stdout
    assert "./etc/os-release" in listed.split()
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name, out.with_suffix(".tar.partial").name]


def test_a_failed_rootfs_pack_leaves_neither_the_tarball_nor_a_temporary(tmp_path):
    out = tmp_path / "rootfs" / "trixie-arm64-x.tar"
    out.parent.mkdir()
    with pytest.raises(Exception, match="packing the rootfs"):
        images._pack(tmp_path / "no-such-root", out)
    assert list(out.parent.iterdir()) == []
