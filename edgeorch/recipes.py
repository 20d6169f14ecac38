"""Image recipes under images/: the base rootfs recipe and one recipe per framework."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from .arch import Arch
from .cache import ROOT
from .errors import ConfigError

IMAGES = ROOT / "images"
INSTALL_SCRIPT = IMAGES / "install-framework.sh"
DEFAULT_DOCKERFILE = IMAGES / "framework.Dockerfile"


@dataclass(frozen=True, kw_only=True)
class BaseRecipe:
    suite: str
    mirror: str
    packages: tuple[str, ...]
    python: str
    directory: Path

    @property
    def dockerfile(self) -> Path:
        """Its own Dockerfile, else images/base's (a rootfs imported FROM scratch)."""
        own = self.directory / "Dockerfile"
        return own if own.exists() else IMAGES / "base" / "Dockerfile"

    def files(self) -> list[Path]:
        return sorted({*(p for p in self.directory.iterdir() if p.is_file()), self.dockerfile}, key=lambda p: p.name)


@dataclass(frozen=True, kw_only=True)
class Recipe:
    framework: str
    version: str
    packages: tuple[str, ...]  # pip requirements; "{version}" stands for the arch's framework version
    arch_versions: dict[Arch, str]  # where an arch needs another version than `version`
    renames: dict[Arch, dict[str, str]]  # where an arch takes another package of the same version
    model_format: str
    arches: tuple[Arch, ...]
    unsupported: dict[Arch, str]  # arch -> why the framework cannot run there
    directory: Path
    base: str = "base"  # the rootfs recipe under images/ its image starts from
    base_image_from_user: bool = False  # starts from an image the user names (--base-image) instead

    @property
    def dockerfile(self) -> Path:
        own = self.directory / "Dockerfile"
        return own if own.exists() else DEFAULT_DOCKERFILE

    def files(self) -> list[Path]:
        return sorted(p for p in self.directory.iterdir() if p.is_file()) + [self.dockerfile, INSTALL_SCRIPT]

    def version_for(self, arch: Arch) -> str:
        return self.arch_versions.get(arch, self.version)

    def packages_for(self, arch: Arch) -> tuple[str, ...]:
        renames = self.renames.get(arch, {})
        pins = (p.format(version=self.version_for(arch)).split("==", 1) for p in self.packages)
        return tuple(f"{renames.get(name, name)}=={version}" for name, version in pins)

    def why_not(self, arch: Arch) -> str | None:
        """None if the framework runs on `arch`, else the reason it does not."""
        if arch in self.arches:
            return None
        return self.unsupported.get(arch, f"no {self.framework} build for {arch.value} in its recipe")


def _read(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"recipe {path} cannot be read: {e}", hint="fix the file") from e


def load_base(directory: Path = IMAGES / "base") -> BaseRecipe:
    doc = _read(directory / "recipe.toml")
    return BaseRecipe(suite=doc["suite"], mirror=doc["mirror"], packages=tuple(doc["packages"]),
                      python=doc["python"], directory=directory)


def load_recipes(images: Path = IMAGES) -> dict[str, Recipe]:
    """Every framework recipe: images/<name>/recipe.toml, keyed by framework name."""
    recipes = {}
    for path in sorted(images.glob("*/recipe.toml")):
        if path.parent.name == "base" or path.parent.name.startswith("base-"):  # rootfs recipes
            continue
        doc = _read(path)
        try:
            recipes[doc["framework"]] = Recipe(
                framework=doc["framework"], version=doc["version"], packages=tuple(doc["packages"]),
                arch_versions={Arch.parse(a): v for a, v in doc.get("versions", {}).items()},
                renames={Arch.parse(a): dict(r) for a, r in doc.get("renames", {}).items()},
                model_format=doc["model_format"],
                arches=tuple(Arch.parse(a) for a in doc["arches"]),
                unsupported={Arch.parse(a): why for a, why in doc.get("unsupported", {}).items()},
                directory=path.parent, base=doc.get("base", "base"),
                base_image_from_user=doc.get("base_image_from_user", False))
        except (KeyError, ValueError) as e:
            raise ConfigError(f"recipe {path} has a missing or bad field: {e}",
                              hint="compare it with images/tflite/recipe.toml") from e
    return recipes


def get_recipe(framework: str) -> Recipe:
    """The recipe of `framework`, or a ConfigError listing the known ones."""
    recipes = load_recipes()
    if framework not in recipes:
        raise ConfigError(f"unknown framework {framework!r}",
                          hint=f"use one of {sorted(recipes)} (each has a recipe under images/)")
    return recipes[framework]
