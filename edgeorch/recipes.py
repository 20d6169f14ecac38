"""Image recipes under images/: the base rootfs recipes (one per Debian release) and one recipe per framework, with
the builds of each framework by arch, Python and release."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from .arch import Arch
from .cache import ROOT, content_hash
from .errors import ConfigError

IMAGES = ROOT / "images"
INSTALL_SCRIPT = IMAGES / "install-framework.sh"
DEFAULT_DOCKERFILE = IMAGES / "framework.Dockerfile"
PYTHONS = ("3.9", "3.10", "3.11", "3.12", "3.13")  # the Python versions of the boards the matrix shows


@dataclass(frozen=True, kw_only=True)
class BaseRecipe:
    """A minimal Debian rootfs made with mmdebstrap: the base of every image of one release."""
    suite: str
    mirror: str
    packages: tuple[str, ...]
    python: str  # its Python, major.minor
    glibc: tuple[int, int]
    directory: Path

    @property
    def dockerfile(self) -> Path:
        """Its own Dockerfile, else images/base's (a rootfs imported FROM scratch)."""
        own = self.directory / "Dockerfile"
        return own if own.exists() else IMAGES / "base" / "Dockerfile"

    def key(self, arch: Arch, debian: tuple[str, ...] = ()) -> str:
        """What its rootfs and image are made from: the tool, release, mirror, packages, Dockerfile; `debian`: the
        Debian packages of a framework of this release (ONNX Runtime's on 32-bit trixie), or those a sim board's
        owner installed, in a rootfs of their own."""
        return content_hash("mmdebstrap", self.suite, self.mirror, *self.packages, *debian, self.dockerfile,
                            arch.value)


@dataclass(frozen=True, kw_only=True)
class Build:
    """One build of a framework: its version and where it comes from, for some arches, Pythons and releases."""
    version: str
    packages: tuple[str, ...]  # pip requirements, every one pinned: the same wheels in the image and the bundle
    debian: tuple[str, ...] = ()  # Debian packages it comes from instead (apt in the image; the board has them)
    arches: tuple[Arch, ...]
    pythons: tuple[str, ...] = ()  # the Python versions it has wheels for; () is any
    releases: tuple[str, ...] = ()  # the Debian releases that package it; () is any

    def serves(self, arch: Arch, python: str, release: str) -> bool:
        return (arch in self.arches and (not self.pythons or python in self.pythons)
                and (not self.releases or release in self.releases))


@dataclass(frozen=True, kw_only=True)
class Recipe:
    framework: str
    builds: tuple[Build, ...]  # the current release first; older ones where a board needs them
    renames: dict[Arch, dict[str, str]]  # where an arch takes another package of the same version
    model_format: str
    arches: tuple[Arch, ...]
    unsupported: dict[Arch, str]  # arch -> why the framework cannot run there
    python_unsupported: dict[str, str]  # Python version -> why no build serves it
    directory: Path
    base_image_from_user: bool = False  # starts from an image the user names (--base-image) instead
    layer: tuple[str, ...] = ()  # packages installed in an image layer of their own, that other recipes share

    @property
    def version(self) -> str:
        """The current release: what a board gets unless its Python or release needs an older build."""
        return self.builds[0].version

    @property
    def dockerfile(self) -> Path:
        own = self.directory / "Dockerfile"
        return own if own.exists() else DEFAULT_DOCKERFILE

    def files(self) -> list[Path]:
        return sorted(p for p in self.directory.iterdir() if p.is_file()) + [self.dockerfile, INSTALL_SCRIPT]

    def build_for(self, arch: Arch, pythons: tuple[str, ...], release: str) -> Build | None:
        """The first build serving `arch` and each of `pythons` (both modes') on `release`, or None."""
        return next((b for b in self.builds if all(b.serves(arch, py, release) for py in pythons)), None)

    def packages_for(self, build: Build, arch: Arch) -> tuple[str, ...]:
        renames = self.renames.get(arch, {})
        pins = (p.format(version=build.version).split("==", 1) for p in build.packages)
        return tuple(f"{renames.get(name, name)}=={version}" for name, version in pins)

    def why_not(self, arch: Arch, python: str | None = None, release: str | None = None) -> str | None:
        """None if a build serves `arch` (and `python` on `release`, when given), else the reason none does."""
        if arch not in self.arches:
            return self.unsupported.get(arch, f"no {self.framework} build for {arch.value} in its recipe")
        if python is None:
            return None
        mine = [b for b in self.builds if arch in b.arches]
        if any(b.serves(arch, python, release or "") for b in mine) or (release is None and any(
                not b.pythons or python in b.pythons for b in mine)):
            return None
        debian = [b for b in mine if b.releases]
        if debian and len(debian) == len(mine):  # only a Debian release packages it for this arch
            b = debian[0]
            where = f" on {arch.value}" if any(not other.releases for other in self.builds) else ""
            return (f"{self.framework}{where} comes only from Debian {'/'.join(b.releases)}'s "
                    f"{', '.join(b.debian)} (Python {'/'.join(b.pythons) or 'of that release'})"
                    + (f"; this board runs {release} with Python {python}" if release else ""))
        if python in self.python_unsupported:
            return self.python_unsupported[python]
        offered = sorted({py for b in mine for py in b.pythons}, key=lambda v: tuple(map(int, v.split("."))))
        return f"no {self.framework} build for Python {python} on {arch.value} (builds exist for {', '.join(offered)})"


def _read(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"recipe {path} cannot be read: {e}", hint="fix the file") from e


def load_bases(images: Path = IMAGES) -> dict[str, BaseRecipe]:
    """The base rootfs recipes, images/base*/recipe.toml, keyed by Debian release (suite)."""
    bases = {}
    for path in sorted(images.glob("base*/recipe.toml")):
        doc = _read(path)
        try:
            bases[doc["suite"]] = BaseRecipe(
                suite=doc["suite"], mirror=doc["mirror"], packages=tuple(doc["packages"]), python=doc["python"],
                glibc=tuple(int(x) for x in doc["glibc"].split(".")), directory=path.parent)
        except (KeyError, ValueError) as e:
            raise ConfigError(f"base recipe {path} has a missing or bad field: {e}",
                              hint="compare it with images/base/recipe.toml") from e
    return bases


def load_recipes(images: Path = IMAGES) -> dict[str, Recipe]:
    """Every framework recipe: images/<name>/recipe.toml, keyed by framework name."""
    recipes = {}
    for path in sorted(images.glob("*/recipe.toml")):
        if path.parent.name.startswith("base"):  # rootfs recipes
            continue
        doc = _read(path)
        try:
            arches = tuple(Arch.parse(a) for a in doc["arches"])
            builds = tuple(Build(
                version=b["version"], packages=tuple(b.get("packages", doc.get("packages", []))),
                debian=tuple(b.get("debian", ())), arches=tuple(Arch.parse(a) for a in b.get("arches", doc["arches"])),
                pythons=tuple(b.get("python", ())), releases=tuple(b.get("releases", ()))) for b in doc["builds"])
            recipes[doc["framework"]] = Recipe(
                framework=doc["framework"], builds=builds,
                renames={Arch.parse(a): dict(r) for a, r in doc.get("renames", {}).items()},
                model_format=doc["model_format"], arches=arches,
                unsupported={Arch.parse(a): why for a, why in doc.get("unsupported", {}).items()},
                python_unsupported=dict(doc.get("python_unsupported", {})),
                directory=path.parent, base_image_from_user=doc.get("base_image_from_user", False),
                layer=tuple(doc.get("layer", ())))
        except (KeyError, ValueError, TypeError) as e:
            raise ConfigError(f"recipe {path} has a missing or bad field: {e}",
                              hint="compare it with images/onnxruntime/recipe.toml") from e
    return recipes


def get_recipe(framework: str) -> Recipe:
    """The recipe of `framework`, or a ConfigError listing the known ones."""
    recipes = load_recipes()
    if framework not in recipes:
        raise ConfigError(f"unknown framework {framework!r}",
                          hint=f"use one of {sorted(recipes)} (each has a recipe under images/)")
    return recipes[framework]
