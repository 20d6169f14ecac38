"""Images on the orchestrator: base rootfs, wheelhouses, framework images, image tarballs.

The only user of the Docker SDK on the orchestrator side.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from . import bench
from .arch import Arch, wheel_platforms
from .cache import cache_dir, content_hash, held, write_atomic
from .console import REPORTER, Reporter, recording, run_local, shell, tail
from .errors import SetupError
from .plan import Target
from .recipes import INSTALL_SCRIPT, BaseRecipe, Build, Recipe, load_bases

LABEL = "org.edgeorch"  # on everything edgeorch makes in Docker, so clean-up by label is reliable


@dataclass(frozen=True, kw_only=True)
class ImageSpec:
    framework: str
    version: str
    arch: Arch
    tag: str
    image_id: str
    recipe_hash: str
    bench_sha256: str
    based_on: str            # what the image starts from: "Debian trixie", or the image a user named
    wheelhouse: Path         # the image's wheels (for its Python)
    native_wheelhouse: Path    # the bare-metal bundle's: the same unless the board's Python is another
    debian: tuple[str, ...] = ()  # the Debian packages it comes from (a board needs them for bare mode)


def engine(socket: str | None = None) -> docker.DockerClient:
    """A client of the Docker engine (the main one unless `socket` names another)."""
    try:
        client = docker.DockerClient(base_url=f"unix://{socket}") if socket else docker.from_env()
        client.ping()
        return client
    except docker.errors.DockerException as e:
        raise SetupError(f"no Docker engine answers{' at ' + socket if socket else ''}: {e}",
                         hint="run ./setup.sh (it installs and starts dockerd), "
                              "or start the engine yourself") from e


# --- base rootfs and base image --------------------------------------------------------

def _require_emulation(arch: Arch) -> None:
    if arch.info.qemu and os.uname().machine != arch.info.machine:
        if not Path(f"/proc/sys/fs/binfmt_misc/{arch.info.qemu}").exists():
            raise SetupError(f"{arch.value} code cannot run here: QEMU binfmt handler "
                             f"{arch.info.qemu} is not registered",
                             hint="run ./setup.sh (it registers QEMU 10's static binaries as binfmt handlers)")


def rootfs_tarball(arch: Arch, base: BaseRecipe, debian: tuple[str, ...] = ()) -> Path:
    """A tar of a minimal Debian rootfs for `arch` (with the Debian packages `debian`), made once by mmdebstrap and
    cached."""
    out = cache_dir() / "rootfs" / f"{base.suite}-{arch.value}-{base.key(arch, debian)}.tar"
    with held(f"rootfs-{out.stem}"):
        if not out.exists():
            _mmdebstrap(arch, base, debian, out)
    return out


def _mmdebstrap(arch: Arch, base: BaseRecipe, debian: tuple[str, ...], out: Path) -> None:
    """mmdebstrap, not debootstrap: apt resolves and downloads on this machine, at its own speed, and installs a
    dependency tree of any size (the frameworks' Debian packages of 32-bit trixie too), so that under QEMU only
    dpkg and the packages' scripts run. Trixie armhf here, alone: 2 min 25 s against debootstrap's 2 min 49 s;
    with ONNX Runtime and OpenCV 6 min 25 s, against 8 min 20 s for debootstrap then apt in a docker build: so a
    framework's Debian packages make a rootfs of their own (OpenCV's hundreds of MB are in no other image)."""
    _require_emulation(arch)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix="mmdebstrap-") as tmp:
        root = Path(tmp) / "root"
        packages = base.packages + tuple(p for p in debian if p not in base.packages)
        run_local(["mmdebstrap", "--quiet", "--mode=root", "--variant=minbase",
                   f"--architectures={arch.info.debian_arch}", f"--include={','.join(packages)}",
                   base.suite, root, base.mirror],
                  what=f"mmdebstrap of a {base.suite} rootfs for {arch.value}",
                  hint=f"run ./setup.sh (mmdebstrap, QEMU's binfmt handlers), and check that {base.mirror} is "
                       "reachable")
        _pack(root, out)


def _pack(root: Path, out: Path) -> None:
    """Tar a rootfs without the package caches and docs an image does not need."""
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
        for child in (root / junk).glob("*"):
            if child.is_symlink() or child.is_file():
                child.unlink()
            elif child.is_dir() and child.name != "partial":
                shutil.rmtree(child)
    # a name of its own (another edgeorch may pack the same rootfs), renamed only once tar has ended well: a cut
    # pack never stands under the name that is trusted by its existence
    fd, partial = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial")
    os.close(fd)
    try:
        run_local(["tar", "--numeric-owner", "-C", root, "-cf", partial, "."],
                  what=f"packing the rootfs {root}", hint="check free disk space")
        os.chmod(partial, 0o644)
        os.replace(partial, out)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def _build(client: docker.DockerClient, context: Path, *, tag: str, arch: Arch,
           labels: dict[str, str] | None = None, buildargs: dict[str, str] | None = None,
           network_mode: str = "none", out: Reporter = REPORTER) -> str:
    """docker build of `context` for `arch`; returns the image id. Shows the build's progress."""
    with held(f"image-{content_hash(tag)}"):  # another orchestrator on this host may be building it
        return _image_id(client, tag) or _build_once(client, context, tag=tag, arch=arch, labels=labels,
                                                     buildargs=buildargs, network_mode=network_mode, out=out)


def _build_once(client: docker.DockerClient, context: Path, *, tag: str, arch: Arch,
                labels: dict[str, str] | None, buildargs: dict[str, str] | None, network_mode: str,
                out: Reporter) -> str:
    labels = {LABEL: "1", **(labels or {})}
    image_id = None
    command = shell(["docker", "build", "--platform", arch.info.docker_platform, "--network", network_mode,
                     *(f"--build-arg={k}={v}" for k, v in (buildargs or {}).items()), "-t", tag, context])
    with recording(command) as rec, out.status(f"building {tag}") as status:
        for chunk in client.api.build(path=str(context), tag=tag, platform=arch.info.docker_platform,
                                      labels=labels, buildargs=buildargs, network_mode=network_mode,
                                      rm=True, forcerm=True, decode=True):
            if "error" in chunk:
                rec.exit_code, rec.output = 1, rec.output + chunk["error"]
                raise SetupError(f"building image {tag} failed (`{command}`):\n{tail(rec.output)}",
                                 hint=f"see the recipe under {context.name}; rerun with the same "
                                      "command once fixed (finished steps are cached)")
            line = chunk.get("stream") or ""
            rec.output = (rec.output + line)[-20000:]
            if line.strip():
                status.update(f"building {tag}: {line.strip()[:100]}")
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
        rec.exit_code = 0
    out.step(f"built {tag} in {rec.seconds:.0f} s")
    return image_id or client.images.get(tag).id


def _image_id(client: docker.DockerClient, tag: str) -> str | None:
    try:
        return client.images.get(tag).id
    except docker.errors.ImageNotFound:
        return None


def base_tag(arch: Arch, base: BaseRecipe, debian: tuple[str, ...] = ()) -> str:
    return f"edgeorch/base:{base.suite}-{arch.value}-{base.key(arch, debian)}"


BaseKind = tuple[Arch, tuple[str, ...]]  # an arch, and the Debian packages its rootfs has beyond the release's own


def ensure_base_images(client: docker.DockerClient, base: BaseRecipe, kinds: list[BaseKind], *,
                       out: Reporter = REPORTER) -> dict[BaseKind, str]:
    """The base image tag per kind, building what is missing (mmdebstraps run side by side, tarballs are cached)."""
    tags = {kind: base_tag(kind[0], base, kind[1]) for kind in kinds}
    missing = [kind for kind in kinds if _image_id(client, tags[kind]) is None]
    with ThreadPoolExecutor(max_workers=max(1, len(missing))) as pool:
        tarballs = dict(zip(missing, pool.map(lambda kind: rootfs_tarball(kind[0], base, kind[1]), missing)))
    for (arch, debian), tarball in tarballs.items():
        with tempfile.TemporaryDirectory(prefix="edgeorch-base-") as tmp:
            ctx = Path(tmp)
            shutil.copy(base.dockerfile, ctx / "Dockerfile")
            os.link(tarball, ctx / "rootfs.tar")
            _build(client, ctx, tag=tags[arch, debian], arch=arch,
                   labels={f"{LABEL}.arch": arch.value, f"{LABEL}.role": "base"}, out=out)
    return tags


# --- wheelhouse and framework image ------------------------------------------------------

def ensure_wheelhouse(recipe: Recipe, build: Build, arch: Arch, python: str, glibc: tuple[int, int]) -> Path:
    """The build's wheels for `arch` and `python`, downloaded once on this host (boards need no network)."""
    platforms = wheel_platforms(arch, glibc)
    packages = recipe.packages_for(build, arch)
    key = content_hash(*packages, *platforms, python)
    out = cache_dir() / "wheels" / f"{recipe.framework}-{build.version}-{arch.value}-cp{python.replace('.', '')}-{key}"
    with held(f"wheels-{out.name}"):
        if not (out / "requirements.txt").exists():
            _download_wheels(recipe, packages, platforms, arch, python, glibc, out)
    return out


def _download_wheels(recipe: Recipe, packages: tuple[str, ...], platforms: list[str], arch: Arch, python: str,
                     glibc: tuple[int, int], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    # a directory of its own, renamed to `out` once whole: requirements.txt in `out` is what marks a wheelhouse done
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".partial"))
    try:
        tmp.chmod(0o755)
        _fill_wheelhouse(recipe, packages, platforms, arch, python, glibc, tmp)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fill_wheelhouse(recipe: Recipe, packages: tuple[str, ...], platforms: list[str], arch: Arch, python: str,
                     glibc: tuple[int, int], tmp: Path) -> None:
    abi = f"cp{python.replace('.', '')}"
    # --no-deps: the recipe pins every package (numpy comes from the base image's Debian package).
    # A framework that comes from Debian (Caffe, ONNX Runtime on armv7: in the base image) or the vendor's image
    # has no wheels.
    if packages:
        run_local([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                   "--python-version", python, "--implementation", "cp", "--abi", abi,
                   *[f"--platform={p}" for p in platforms], "-d", tmp, *packages],
                  what=f"downloading {' '.join(packages)} wheels for {arch.value} ({abi})",
                  hint=f"check that PyPI has a {abi} {arch.info.wheel_machine} wheel of {', '.join(packages)} for "
                       f"glibc {glibc[0]}.{glibc[1]}, or change the builds in {recipe.directory}/recipe.toml")
    (tmp / "requirements.txt").write_text("".join(f"{p}\n" for p in packages))  # in a directory only this one writes


def framework_tag(recipe: Recipe, target: Target, wheelhouse: Path, base: str) -> tuple[str, str]:
    """(tag, recipe hash): the hash covers the recipe, base image, wheels, Debian packages and the bench bundle."""
    wheels = sorted(wheelhouse.iterdir())
    key = content_hash(*recipe.files(), base, *wheels, *target.build.debian, bench.bundle_digest())
    return f"edgeorch/{recipe.framework}:{target.build.version}-{target.arch.value}-{target.suite}-{key}", key


def _user_base(client: docker.DockerClient, recipe: Recipe, image: str | None) -> str:
    """The id of the base image a user supplies for `recipe` (e.g. NVIDIA's TensorRT image)."""
    hint = ("pass --base-image IMAGE, an image with the framework that this machine's Docker engine has "
            "(docker pull or docker load it first), e.g. nvcr.io/nvidia/l4t-tensorrt:r8.5.2-runtime on a Jetson")
    if not image:
        raise SetupError(f"{recipe.framework} is built FROM an image of the board vendor's, which edgeorch "
                         "cannot make", hint=hint)
    image_id = _image_id(client, image)
    if image_id is None:
        raise SetupError(f"the base image {image} is not in this machine's Docker engine", hint=hint)
    return image_id


def ensure_framework_image(client: docker.DockerClient, recipe: Recipe, target: Target,
                           base_image: str | None = None, *, out: Reporter = REPORTER) -> ImageSpec:
    """The framework image of `target`, built from the cached base and wheelhouse when missing, and the wheels of
    the bare-metal bundle."""
    rootfs = load_bases()[target.suite]
    if recipe.base_image_from_user:
        base = _user_base(client, recipe, base_image)
    else:
        kind = (target.arch, target.build.debian)
        base = ensure_base_images(client, rootfs, [kind], out=out)[kind]
    wheelhouse = ensure_wheelhouse(recipe, target.build, target.arch, target.image_python, rootfs.glibc)
    bare = wheelhouse if target.native_python == target.image_python and target.native_glibc >= rootfs.glibc else \
        ensure_wheelhouse(recipe, target.build, target.arch, target.native_python, target.native_glibc)
    tag, key = framework_tag(recipe, target, wheelhouse, base)
    image_id = _image_id(client, tag)
    if image_id is None:
        with tempfile.TemporaryDirectory(prefix=f"edgeorch-{recipe.framework}-") as tmp:
            ctx = Path(tmp)
            shutil.copy(recipe.dockerfile, ctx / "Dockerfile")
            shutil.copy(INSTALL_SCRIPT, ctx / INSTALL_SCRIPT.name)
            _context_wheels(wheelhouse, ctx, recipe.layer)
            copy_bundle(ctx / bench.BOARD_PACKAGE)
            image_id = _build(client, ctx, tag=tag, arch=target.arch, buildargs={"BASE": base}, labels={
                f"{LABEL}.framework": recipe.framework,
                f"{LABEL}.framework-version": target.build.version,
                f"{LABEL}.arch": target.arch.value,
                f"{LABEL}.suite": target.suite,
                f"{LABEL}.recipe-hash": key,
                f"{LABEL}.bench-sha256": bench.bundle_digest(),
            }, out=out)
    return ImageSpec(framework=recipe.framework, version=target.build.version, arch=target.arch, tag=tag,
                     image_id=image_id, recipe_hash=key, bench_sha256=bench.bundle_digest(),
                     based_on=base_image if recipe.base_image_from_user else f"Debian {target.suite}",
                     wheelhouse=wheelhouse, native_wheelhouse=bare, debian=target.build.debian)


def _context_wheels(wheelhouse: Path, ctx: Path, layer: tuple[str, ...]) -> None:
    """The wheelhouse in a build context: the wheels of the packages `layer` names in layer/, installed first in a
    layer of their own (its bytes, and so the build's cache, the same for every recipe pinning them alike), the rest
    in wheels/; each with the requirements.txt of its wheels."""
    def shared(name: str) -> bool:  # names compared as PyPI does: typing_extensions is typing-extensions
        return re.sub(r"[-_.]+", "-", name).lower() in {re.sub(r"[-_.]+", "-", n).lower() for n in layer}

    pins = (wheelhouse / "requirements.txt").read_text().split()
    for part, wanted in (("layer", True), ("wheels", False)):
        (ctx / part).mkdir()
        for wheel in sorted(wheelhouse.glob("*.whl")):
            if shared(wheel.name.split("-")[0]) == wanted:
                shutil.copyfile(wheel, ctx / part / wheel.name)
        (ctx / part / "requirements.txt").write_text(
            "".join(f"{pin}\n" for pin in pins if shared(pin.split("==")[0]) == wanted))


def copy_bundle(dest: Path) -> None:
    """Copy the board-side benchmark package to `dest`, byte for byte."""
    for path in bench.bundle_files():  # relative paths, subpackages included
        (dest / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(bench.__file__).parent / path, dest / path)


@dataclass(frozen=True, kw_only=True)
class ImageLayers:
    """An image as `docker load` takes it, kept on this host by content: its config and its layers' tars, each a
    blob named by its sha256 (a layer's is its diff id), so that a base shared by several images is kept once."""
    image_id: str
    tag: str
    config: str                  # the config blob's sha256 (the image id without "sha256:")
    diff_ids: tuple[str, ...]    # "sha256:<hex>", bottom layer first
    sizes: tuple[int, ...]       # each layer's tar, in bytes

    @property
    def size(self) -> int:
        """The image's bytes as `docker save` has them: every layer's tar and its config."""
        return self.bytes_from(0)

    def bytes_from(self, start: int) -> int:
        """The bytes of the layers from `start` on, and of the config: what a board holding those below lacks."""
        return sum(self.sizes[start:]) + blob(self.config).stat().st_size


def blob(digest: str) -> Path:
    return cache_dir() / "blobs" / digest.removeprefix("sha256:")


def _store_blob(source, size: int) -> str:
    """Copy `size` bytes of `source` into the blob store under their sha256 (kept once); that sha256."""
    directory = cache_dir() / "blobs"
    directory.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".incoming-", delete=False) as tmp:
        for block in iter(lambda: source.read(1 << 20), b""):
            h.update(block)
            tmp.write(block)
    if Path(tmp.name).stat().st_size != size:
        Path(tmp.name).unlink()
        raise SetupError(f"docker save ended early ({size} bytes expected)", hint="check free disk space, rerun")
    os.replace(tmp.name, directory / h.hexdigest())
    return h.hexdigest()


def _index(image_id: str) -> Path:
    return cache_dir() / "exports" / f"{image_id.removeprefix('sha256:')}.json"


def _cached(image_id: str, tag: str) -> ImageLayers | None:
    """The image's layers as exported before, if its blobs are all still here."""
    if not _index(image_id).exists():
        return None
    doc = json.loads(_index(image_id).read_text())
    if not all(blob(d).exists() for d in (doc["config"], *doc["diff_ids"])):
        return None
    return ImageLayers(image_id=image_id, tag=tag, config=doc["config"], diff_ids=tuple(doc["diff_ids"]),
                       sizes=tuple(doc["sizes"]))


def listed(client: docker.DockerClient, *labels: str) -> list[dict]:
    """The images carrying each of `labels` (`key` or `key=value`), from one listing: their Id, Created, RepoTags. Not
    images.list(), which then inspects each image and fails if one is removed meanwhile (anyone's `docker rmi`)."""
    return client.api.images(filters={"label": list(labels)})


def built_layers(client: docker.DockerClient, target: Target) -> ImageLayers | None:
    """The layers of the newest image this host built and exported for `target` with this checkout's board side;
    None if there is none yet (an image another checkout built is not the one a deploy would send)."""
    labels = {"framework": target.framework, "framework-version": target.build.version, "arch": target.arch.value,
              "suite": target.suite, "bench-sha256": bench.bundle_digest()}
    found = listed(client, *(f"{LABEL}.{k}={v}" for k, v in labels.items()))
    newest = max(found, key=lambda i: i["Created"], default=None)
    if newest is None:
        return None
    tags = [t for t in newest.get("RepoTags") or () if t != "<none>:<none>"]
    return _cached(newest["Id"], (tags or [""])[0])


def export_image(client: docker.DockerClient, spec: ImageSpec, *, out: Reporter = REPORTER) -> ImageLayers:
    """The image's config and layers in the blob store, from one `docker save` (either of its layouts: Docker
    20.10's `<id>/layer.tar` or the OCI `blobs/sha256/` of Docker 25 and later), remembered by image id."""
    index = _index(spec.image_id)
    if (cached := _cached(spec.image_id, spec.tag)) is not None:
        return cached
    index.parent.mkdir(parents=True, exist_ok=True)
    digests, manifest = {}, None
    with out.status(f"exporting {spec.tag}"), tempfile.TemporaryFile(dir=index.parent) as saved:
        with recording(shell(["docker", "save", spec.tag])) as rec:
            for chunk in client.api.get_image(spec.image_id):
                saved.write(chunk)
            rec.exit_code = 0
        saved.seek(0)
        with tarfile.open(fileobj=saved, mode="r:") as tar:
            for member in tar:
                if member.isfile() and member.name == "manifest.json":
                    manifest = json.load(tar.extractfile(member))
                elif member.isfile() and member.size:
                    digests[member.name] = _store_blob(tar.extractfile(member), member.size)
    if not manifest:
        raise SetupError(f"docker save of {spec.tag} has no manifest.json", hint="check this machine's Docker engine")
    config = digests[manifest[0]["Config"]]
    diff_ids = tuple(json.loads(blob(config).read_bytes())["rootfs"]["diff_ids"])
    stored = [digests[path] for path in manifest[0]["Layers"]]
    if [f"sha256:{d}" for d in stored] != list(diff_ids):  # a store that saves compressed layers
        raise SetupError(f"docker save of {spec.tag} gave layers that are not their diff ids (compressed?)",
                         hint="use this machine's Docker engine with its classic image store (overlay2)")
    layers = ImageLayers(image_id=spec.image_id, tag=spec.tag, config=config, diff_ids=diff_ids,
                         sizes=tuple(blob(d).stat().st_size for d in diff_ids))
    write_atomic(index, json.dumps({"config": config, "diff_ids": diff_ids, "sizes": layers.sizes}).encode())
    return layers


CODECS = ("gzip", "zstd", "none")
SUFFIX = {"gzip": ".tar.gz", "zstd": ".tar.zst", "none": ".tar"}


def layer_archive(layers: ImageLayers, start: int, codec: str = "gzip", level: int | None = None) -> Path:
    """A `docker load` archive of the image whose layers from `start` on are in it and those below left out (the
    board has them), compressed with `codec`. Its bytes depend only on what is in it, so a transfer cut mid-way can
    be resumed by the next deploy; made once and cached."""
    level = {"gzip": 1, "zstd": 3, "none": 0}[codec] if level is None else level
    name = f"edgeorch-{content_hash(layers.image_id, str(start), codec, str(level), length=16)}{SUFFIX[codec]}"
    out = cache_dir() / "exports" / name
    with _ARCHIVES:  # boards deployed side by side that lack the same layers wait for one archive
        if not out.exists():
            _write_archive(layers, start, codec, level, out)
    return out


_ARCHIVES = threading.Lock()


def _write_archive(layers: ImageLayers, start: int, codec: str, level: int, out: Path) -> None:
    manifest = [{"Config": f"{layers.config}.json", "RepoTags": [layers.tag],
                 "Layers": [f"{d.removeprefix('sha256:')}/layer.tar" for d in layers.diff_ids]}]
    entries = [("manifest.json", None, json.dumps(manifest).encode()), (f"{layers.config}.json", layers.config, None),
               *[(f"{d.removeprefix('sha256:')}/layer.tar", d, None) for d in layers.diff_ids[start:]]]
    out.parent.mkdir(parents=True, exist_ok=True)
    # another orchestrator on this host may make the same archive: each writes its own file, the same bytes
    with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f".{out.name}.", delete=False) as raw:
        try:
            with _compressor(raw, codec, level) as f, \
                    tarfile.open(fileobj=f, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
                for path, digest, data in entries:
                    info = tarfile.TarInfo(path)
                    info.mode, info.mtime = 0o644, 0  # the same bytes whenever it is made
                    info.size = len(data) if data is not None else blob(digest).stat().st_size
                    with (io.BytesIO(data) if data is not None else open(blob(digest), "rb")) as src:
                        tar.addfile(info, src)
        except BaseException:
            Path(raw.name).unlink()
            raise
    os.replace(raw.name, out)


def _compressor(raw, codec: str, level: int):
    if codec == "gzip":
        return gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=level, mtime=0)
    if codec == "zstd":
        import zstandard
        return zstandard.ZstdCompressor(level=level).stream_writer(raw, closefd=False)
    return contextlib.nullcontext(raw)


def ensure_image(client: docker.DockerClient, context: Path, *, tag: str, arch: Arch,
                 buildargs: dict[str, str], labels: dict[str, str], network_mode: str = "none",
                 out: Reporter = REPORTER) -> str:
    """Build `context` into `tag` unless that tag exists (tags carry a content hash)."""
    return _image_id(client, tag) or _build(client, context, tag=tag, arch=arch, buildargs=buildargs,
                                            labels=labels, network_mode=network_mode, out=out)
