"""What each board gets: its platform asked over SSH, the build of each framework that serves it (plan_targets),
and those builds made here, ready to deploy (their images, exported layers and bare-metal bundles)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from . import images, runners, userland
from .console import Reporter
from .errors import ConfigError
from .facts import board_platform
from .images import ImageSpec
from .inventory import Board
from .plan import MODE_SETS, MODES, Target, plan_target
from .recipes import Recipe, get_recipe, load_bases
from .releases import Platform
from .runners import SESSION
from .transport import GroupResult, Link, fan_out
from .userland import Userland


def platforms(boards: list[Board], timeout: float = 3600, *, lock: bool = True) -> GroupResult[Platform]:
    """Each board's OS release, Python and glibc, asked under its lock (unless `lock` is False: a farm's boards are
    read while their holder runs, and queued for later) with the reconnects of a sweep; its Python has a minute to
    answer, less when the runs have less."""
    def one(board: Board) -> Platform:
        with Link(board, token=SESSION, purpose="reading its OS release", lock=lock) as link:
            return link.retrying(functools.partial(board_platform, board=board,
                                                   limit=min(60.0, timeout + runners.GRACE_S)))[0]

    return fan_out(boards, one)


def plan_targets(recipes: list[Recipe], boards: list[Board], found: dict[str, Platform],
                 modes: dict[str, tuple[str, ...]] | None = None) -> dict[tuple[str, str], Target]:
    """(framework, board) -> what the board gets, for every board whose platform is known; ConfigError, before
    anything is built, for a framework no build of which serves a board."""
    bases = load_bases()
    return {(r.framework, b.name): plan_target(r, b, found[b.name], bases, (modes or {}).get(r.framework, MODES))
            for r in recipes for b in boards if b.name in found}


@dataclass(frozen=True, kw_only=True)
class Built:
    """What a target's framework is on this host, ready to deploy: its image, the image's layers as they are sent,
    and the image's userland as bare mode's bundle (None when bare mode is not asked for)."""
    image: ImageSpec
    layers: images.ImageLayers
    bare: Userland | None = None


def build(targets: dict[tuple[str, str], Target], out: Reporter, base_image: str | None = None,
          bare: tuple[str, ...] = ()) -> dict[tuple[str, str], Built]:
    """Every image the targets need, built (or found) once each and exported for transfer, with its userland's
    bundle for the frameworks of `bare`."""
    client = images.engine()
    recipes = {f: get_recipe(f) for f, _ in targets}
    bases = load_bases()
    for suite in sorted({t.suite for t in targets.values()}):  # every base first: mmdebstraps side by side
        kinds = sorted({(t.arch, t.build.debian) for t in targets.values() if t.suite == suite
                        and not recipes[t.framework].base_image_from_user}, key=lambda k: (k[0].value, k[1]))
        if kinds:
            images.ensure_base_images(client, bases[suite], kinds, out=out)
    had = {image["Id"] for image in images.listed(client, f"{images.LABEL}.framework")}
    made: dict[Target, Built] = {}
    cached: dict[str, list[str]] = {}  # a framework build -> the arches whose image was built before
    for target in sorted(set(targets.values()), key=lambda t: (t.framework, t.arch.value, t.suite, t.native_python)):
        spec = images.ensure_framework_image(client, recipes[target.framework], target, base_image, out=out)
        bundle = userland.userland(client, spec.image_id, spec.tag, out=out) if spec.framework in bare else None
        made[target] = Built(image=spec, layers=images.export_image(client, spec, out=out), bare=bundle)
        if spec.image_id in had:
            cached.setdefault(f"{spec.framework} {spec.version} ({spec.based_on})", []).append(target.arch.value)
    for build_of, arches in cached.items():
        out.step(f"{build_of} image for {', '.join(sorted(set(arches)))}: built before (cached)")
    return {key: made[target] for key, target in targets.items()}



def in_use(recipes, board: Board, platform: Platform, bases: dict) -> list[Target]:
    """What each recipe would give the board now: what `clean` keeps there (a framework no build of which serves the
    board has none of its images in use)."""
    found = []
    for recipe in recipes:
        for modes in (MODES, MODE_SETS["both"]):  # all three, or (the board's Python aside) the image's release
            try:
                found.append(plan_target(recipe, board, platform, bases, modes))
                break
            except ConfigError:
                pass
    return found
