"""Images on the orchestrator: base rootfs, wheelhouses, framework images, image tarballs.

The only user of the Docker SDK on the orchestrator side.
"""

from __future__ import annotations

import gzip
import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from . import bench
from .arch import Arch, wheel_platforms
from .cache import cache_dir, content_hash
from .console import console, echo, run_local
from .errors import SetupError
from .recipes import IMAGES, INSTALL_SCRIPT, BaseRecipe, Recipe, load_base

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
    wheelhouse: Path


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
                             hint="apt-get install qemu-user-static binfmt-support "
                                  "(or run ./setup.sh)")


def rootfs_tarball(arch: Arch, base: BaseRecipe) -> Path:
    """A tar of a minimal Debian rootfs for `arch`, made once by debootstrap and cached."""
    out = cache_dir() / "rootfs" / f"{base.suite}-{arch.value}-{content_hash(*base.files(), arch.value)}.tar"
    if out.exists():
        return out
    _require_emulation(arch)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix="debootstrap-") as tmp:
        root = Path(tmp) / "root"
        run_local(["debootstrap", "--variant=minbase", f"--arch={arch.info.debian_arch}",
                   f"--include={','.join(base.packages)}", base.suite, root, base.mirror],
                  what=f"debootstrap of a {base.suite} rootfs for {arch.value}",
                  hint="apt-get install debootstrap qemu-user-static binfmt-support, "
                       f"and check that {base.mirror} is reachable")
        _pack(root, out)
    return out


def _pack(root: Path, out: Path) -> None:
    """Tar a rootfs without the package caches and docs an image does not need."""
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man"):
        for child in (root / junk).glob("*"):
            if child.is_symlink() or child.is_file():
                child.unlink()
            elif child.is_dir() and child.name != "partial":
                shutil.rmtree(child)
    partial = out.with_suffix(".tar.partial")
    run_local(["tar", "--numeric-owner", "-C", root, "-cf", partial, "."],
              what=f"packing the rootfs {root}", hint="check free disk space")
    partial.rename(out)


def _build(client: docker.DockerClient, context: Path, *, tag: str, arch: Arch,
           labels: dict[str, str] | None = None, buildargs: dict[str, str] | None = None,
           network_mode: str = "none") -> str:
    """docker build of `context` for `arch`; returns the image id. Shows the build's progress."""
    echo(f"docker build --platform {arch.info.docker_platform} --network {network_mode} -t {tag} {context}")
    labels = {LABEL: "1", **(labels or {})}
    image_id = None
    with console.status(f"building {tag}") as status:
        for chunk in client.api.build(path=str(context), tag=tag, platform=arch.info.docker_platform,
                                      labels=labels, buildargs=buildargs, network_mode=network_mode,
                                      rm=True, forcerm=True, decode=True):
            if "error" in chunk:
                raise SetupError(f"building image {tag} failed: {chunk['error'].strip()}",
                                 hint=f"see the recipe under {context.name}; rerun with the same "
                                      "command once fixed (finished steps are cached)")
            line = (chunk.get("stream") or "").strip()
            if line:
                status.update(f"building {tag}: {line[:100]}")
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
    return image_id or client.images.get(tag).id


def _image_id(client: docker.DockerClient, tag: str) -> str | None:
    try:
        return client.images.get(tag).id
    except docker.errors.ImageNotFound:
        return None


def base_tag(arch: Arch, base: BaseRecipe | None = None) -> str:
    base = base or load_base()
    return f"edgeorch/base:{base.suite}-{arch.value}-{content_hash(*base.files(), arch.value)}"


def ensure_base_images(client: docker.DockerClient, arches: list[Arch],
                       base: BaseRecipe | None = None) -> dict[Arch, str]:
    """The base image tag per arch, building what is missing (debootstraps run side by side)."""
    base = base or load_base()
    tags = {arch: base_tag(arch, base) for arch in arches}
    missing = [a for a in arches if _image_id(client, tags[a]) is None]
    if missing:
        with ThreadPoolExecutor(max_workers=len(missing)) as pool:
            tarballs = dict(zip(missing, pool.map(lambda a: rootfs_tarball(a, base), missing)))
        for arch in missing:
            with tempfile.TemporaryDirectory(prefix="edgeorch-base-") as tmp:
                ctx = Path(tmp)
                shutil.copy(base.dockerfile, ctx / "Dockerfile")
                os.link(tarballs[arch], ctx / "rootfs.tar")
                _build(client, ctx, tag=tags[arch], arch=arch,
                       labels={f"{LABEL}.arch": arch.value, f"{LABEL}.role": "base"})
    return tags


# --- wheelhouse and framework image ------------------------------------------------------

def ensure_wheelhouse(recipe: Recipe, arch: Arch, base: BaseRecipe | None = None) -> Path:
    """The framework's wheels for `arch`, downloaded once on this host (boards need no network)."""
    base = base or load_base()
    platforms = wheel_platforms(arch)
    packages = recipe.packages_for(arch)
    key = content_hash(*packages, *platforms, base.python)
    out = cache_dir() / "wheels" / f"{recipe.framework}-{recipe.version_for(arch)}-{arch.value}-{key}"
    if (out / "requirements.txt").exists():
        return out
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    py = base.python
    # --no-deps: the recipe pins every package (numpy comes from the base image's Debian package).
    # A framework that comes with the base (Debian's Caffe) or the vendor's image has no wheels.
    if packages:
        run_local([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                   "--python-version", py, "--implementation", "cp", "--abi", f"cp{py.replace('.', '')}",
                   *[f"--platform={p}" for p in platforms], "-d", tmp, *packages],
                  what=f"downloading {' '.join(packages)} wheels for {arch.value} (cp{py})",
                  hint=f"check that PyPI has a cp{py.replace('.', '')} {arch.info.wheel_machine} wheel "
                       f"of {', '.join(packages)}, or drop {arch.value} from {recipe.directory}/recipe.toml")
    (tmp / "requirements.txt").write_text("".join(f"{p}\n" for p in packages))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def framework_tag(recipe: Recipe, arch: Arch, wheelhouse: Path, base: str) -> tuple[str, str]:
    """(tag, recipe hash): the hash covers the recipe, base image, wheels and the bench bundle."""
    wheels = sorted(wheelhouse.iterdir())
    key = content_hash(*recipe.files(), base, *wheels, bench.bundle_digest())
    return f"edgeorch/{recipe.framework}:{recipe.version_for(arch)}-{arch.value}-{key}", key


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


def ensure_framework_image(client: docker.DockerClient, recipe: Recipe, arch: Arch,
                           base_image: str | None = None) -> ImageSpec:
    """The framework image for `arch`, built from the cached base and wheelhouse when missing."""
    if recipe.why_not(arch):
        raise SetupError(f"{recipe.framework} cannot run on {arch.value}: {recipe.why_not(arch)}",
                         hint="see `invoke matrix` for where each framework runs")
    rootfs = load_base(IMAGES / recipe.base)
    if recipe.base_image_from_user:
        base = _user_base(client, recipe, base_image)
    else:
        base = ensure_base_images(client, [arch], rootfs)[arch]
    wheelhouse = ensure_wheelhouse(recipe, arch, rootfs)
    tag, key = framework_tag(recipe, arch, wheelhouse, base)
    image_id = _image_id(client, tag)
    if image_id is None:
        with tempfile.TemporaryDirectory(prefix=f"edgeorch-{recipe.framework}-") as tmp:
            ctx = Path(tmp)
            shutil.copy(recipe.dockerfile, ctx / "Dockerfile")
            shutil.copy(INSTALL_SCRIPT, ctx / INSTALL_SCRIPT.name)
            shutil.copytree(wheelhouse, ctx / "wheels")
            copy_bundle(ctx / bench.BOARD_PACKAGE)
            image_id = _build(client, ctx, tag=tag, arch=arch, buildargs={"BASE": base}, labels={
                f"{LABEL}.framework": recipe.framework,
                f"{LABEL}.framework-version": recipe.version_for(arch),
                f"{LABEL}.arch": arch.value,
                f"{LABEL}.recipe-hash": key,
                f"{LABEL}.bench-sha256": bench.bundle_digest(),
            })
    return ImageSpec(framework=recipe.framework, version=recipe.version_for(arch), arch=arch, tag=tag,
                     image_id=image_id, recipe_hash=key, bench_sha256=bench.bundle_digest(),
                     wheelhouse=wheelhouse)


def copy_bundle(dest: Path) -> None:
    """Copy the board-side benchmark package to `dest`, byte for byte."""
    for path in bench.bundle_files():  # relative paths, subpackages included
        (dest / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(bench.__file__).parent / path, dest / path)


def export_image(client: docker.DockerClient, spec: ImageSpec) -> Path:
    """A gzipped `docker save` of the image, cached by image id (what `docker load` takes)."""
    out = cache_dir() / "exports" / f"{spec.image_id.removeprefix('sha256:')[:24]}.tar.gz"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial")
    echo(f"docker save {spec.tag} | gzip > {out}")
    with console.status(f"exporting {spec.tag}"), gzip.open(partial, "wb", compresslevel=3) as f:
        for chunk in client.api.get_image(spec.tag):
            f.write(chunk)
    partial.rename(out)
    return out


def ensure_image(client: docker.DockerClient, context: Path, *, tag: str, arch: Arch,
                 buildargs: dict[str, str], labels: dict[str, str], network_mode: str = "none") -> str:
    """Build `context` into `tag` unless that tag exists (tags carry a content hash)."""
    return _image_id(client, tag) or _build(client, context, tag=tag, arch=arch, buildargs=buildargs,
                                            labels=labels, network_mode=network_mode)
