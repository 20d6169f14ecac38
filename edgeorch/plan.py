"""Pure planning: which images a sweep needs, which runs in which order, what a board lacks."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

from . import stats
from .arch import Arch
from .bench import adapters, signature
from .bench.adapters import base
from .errors import ConfigError
from .inventory import Board
from .recipes import BaseRecipe, Build, Recipe
from .releases import Platform, nearest_base, version_key

# docker: in a container of the framework image; bare: that image's userland run straight on the board, no container
# (only the container differs from docker); native: the board's own Python with the framework's wheels (what a user
# who pip-installs on the board gets)
MODES = ("docker", "bare", "native")
MODE_SETS = {"both": ("docker", "bare"), "all": MODES}


@dataclass(frozen=True, kw_only=True)
class RunSpec:
    """One benchmark run of one model on one board in one arm of a comparison."""
    board: str
    framework: str
    model: str
    mode: str
    pair: int            # the runs of one pair ran back to back
    iterations: int
    warmup: int
    threads: int
    options: tuple[str, ...] = ()  # KEY=VALUE framework options, e.g. xnnpack=off
    arm: str = ""        # the side of the comparison: the mode, or docker-A/docker-B (calibrate), a knob (explain)
    position: int = 0    # 0: ran first in its pair, 1: second
    min_time: float = 0.0  # the run lasts at least this many seconds as well as `iterations`
    docker_args: tuple[str, ...] = ()  # added to the board's own for this arm (explain's knobs)
    input_shapes: tuple[str, ...] = ()  # NAME=DIMS, e.g. input=1x3x224x224: what a dynamic input is fed
    batch: int = 1       # images per inference (a zoo network exported for it)
    cell: str = ""       # the key of the cell it belongs to
    profile: int = 0     # > 0: a profiling pass of that many inferences (per-operator times), not a timed run

    @property
    def key(self) -> str:
        kind = "profile" if self.profile else f"{self.pair:02d}"
        where = f"{self.board}/{self.framework}-{self.model}{variant(self.threads, self.batch)}"
        return f"{where}-{self.arm or self.mode}-{kind}"


def variant(threads: int, batch: int) -> str:
    """What tells apart the cells of one model in a threads x batch sweep: '-t2-b4'; '' for the defaults."""
    return "".join(([f"-t{threads}"] if threads else []) + ([f"-b{batch}"] if batch != 1 else []))


@dataclass(frozen=True, kw_only=True)
class Arm:
    """One side of a comparison: a mode, and Docker options beyond the board's own."""
    label: str
    mode: str
    docker_args: tuple[str, ...] = ()
    bind_files: bool = False  # Docker: the model on a read-only bind mount rather than copied into the container


@dataclass(frozen=True, kw_only=True)
class StopRule:
    """When a cell has enough pairs: the interval is narrow enough, or the pairs or the time are spent."""
    min_pairs: int = stats.MIN_PAIRS
    max_pairs: int = stats.MAX_PAIRS
    precision: float = stats.PRECISION
    max_time_s: float | None = 1800.0
    cooldown_s: float = 0.0  # idle seconds before each run but a cell's first, so heat from the last one fades

    def __post_init__(self):
        if not 1 <= self.min_pairs <= self.max_pairs:
            raise ConfigError(f"--min-pairs {self.min_pairs} and --max-pairs {self.max_pairs}: need "
                              "1 <= min-pairs <= max-pairs", hint=f"e.g. --min-pairs {stats.MIN_PAIRS} "
                              f"--max-pairs {stats.MAX_PAIRS}, or --repeat K for exactly K pairs")
        if not 0 < self.precision < 1 or (self.max_time_s is not None and self.max_time_s <= 0) or self.cooldown_s < 0:
            raise ConfigError(f"--precision {self.precision} must be in (0, 1), --max-time above 0 and --cooldown "
                              "at least 0", hint="e.g. --precision 0.01 (a CI half-width of 1%) --max-time 1800")

    def reason(self, log_ratios: list[float], elapsed_s: float) -> str | None:
        """Why the cell stops after these pairs, or None to add one more."""
        return stats.stop_reason(log_ratios, precision=self.precision, min_pairs=self.min_pairs,
                                 max_pairs=self.max_pairs, elapsed_s=elapsed_s, max_time_s=self.max_time_s)


@dataclass(frozen=True, kw_only=True)
class Cell:
    """One model of one framework on one board, compared across its arms pair after pair."""
    board: str
    framework: str
    model: str
    arms: tuple[Arm, ...]
    iterations: int
    warmup: int
    threads: int
    min_time: float = 0.0
    options: tuple[str, ...] = ()
    input_shapes: tuple[str, ...] = ()
    name: str = ""       # tells apart cells of one board and model (calibrate's docker and bare)
    batch: int = 1

    @property
    def key(self) -> str:
        return f"{self.board}/{self.framework}-{self.model}{variant(self.threads, self.batch)}" + \
            (f":{self.name}" if self.name else "")

    def profile_runs(self, inferences: int) -> list[RunSpec]:
        """The profiling pass of each arm's mode (after the timed pairs, never among them)."""
        modes = dict.fromkeys(arm.mode for arm in self.arms)
        return [dataclasses.replace(self.runs(0)[0], mode=mode, arm=mode, position=0, profile=inferences)
                for mode in modes]

    def runs(self, pair: int) -> list[RunSpec]:
        """The runs of pair `pair`, counterbalanced: arms in order on even pairs, reversed on odd ones (ABBA),
        so drift over time (heat, a neighbour's load) falls on both arms alike."""
        arms = self.arms if pair % 2 == 0 else self.arms[::-1]
        return [RunSpec(board=self.board, framework=self.framework, model=self.model, mode=arm.mode, pair=pair,
                        iterations=self.iterations, warmup=self.warmup, threads=self.threads, options=self.options,
                        arm=arm.label, position=position, min_time=self.min_time, docker_args=arm.docker_args,
                        input_shapes=self.input_shapes, batch=self.batch, cell=self.key)
                for position, arm in enumerate(arms)]


def parse_modes(mode: str) -> tuple[str, ...]:
    """`docker`, `bare`, `native`, a comma list of them, `both` (docker,bare) or `all` -> the modes to run."""
    if mode in MODE_SETS:
        return MODE_SETS[mode]
    modes = tuple(dict.fromkeys(m.strip() for m in mode.split(",")))
    if not modes or any(m not in MODES for m in modes):
        raise ConfigError(f"--mode {mode!r} is not a mode",
                          hint="use docker, bare (the image's userland without a container), native (the board's "
                               "own Python), a comma list of them, both (docker,bare) or all")
    return tuple(m for m in MODES if m in modes)


def bench_cell(board: Board, *, framework: str, model: str, arms: tuple[Arm, ...], iterations: int, warmup: int,
               threads: int, min_time: float = 0.0, options: tuple[str, ...] = (), name: str = "",
               input_shapes: tuple[str, ...] = (), batch: int = 1) -> Cell:
    """A validated cell of a sweep."""
    if iterations < 1 or warmup < 0 or threads < 0 or min_time < 0 or batch < 1:
        raise ConfigError("--iterations must be >= 1 (--batch too), --warmup, --threads and --min-time >= 0",
                          hint="e.g. --iterations 50 --warmup 5 --min-time 5")
    bad = [o for o in options if "=" not in o or not o.split("=", 1)[0]]
    if bad:
        raise ConfigError(f"--option {bad[0]!r} is not KEY=VALUE", hint="e.g. --option xnnpack=off")
    check_options(framework, options)
    return Cell(board=board.name, framework=framework, model=model, arms=arms, iterations=iterations,
                warmup=warmup, threads=threads, min_time=min_time, options=tuple(options), name=name, batch=batch,
                input_shapes=tuple(f"{n}={signature.format_shape(s)}"
                                   for n, s in parse_input_shapes(input_shapes).items()))


def check_options(framework: str, options: tuple[str, ...]) -> None:
    """ConfigError unless every KEY=VALUE is one the framework's adapter takes: refused here, not after a run
    started on a board."""
    if framework not in adapters.ADAPTERS:
        return
    allowed = adapters.get(framework).OPTIONS
    takes = ", ".join(f"{k}={base.takes(v)}" for k, v in allowed.items()) or "no --option"
    for option in options:
        key, value = option.split("=", 1)
        if key not in allowed:
            raise ConfigError(f"--option {option!r}: {framework} has no option {key!r}",
                              hint=f"{framework} takes {takes}; `invoke --help bench` lists every framework's")
        why = base.refusal(key, value, allowed[key])
        if why:
            raise ConfigError(f"{framework}: --{why}", hint=f"{framework} takes {takes}")


def parse_input_shapes(values) -> dict[str, tuple[int, ...]]:
    """--input-shape NAME=DIMS values -> {name: shape}; ConfigError naming the option and the fix."""
    try:
        return signature.parse_shapes(values)
    except signature.InputError as e:
        raise ConfigError(str(e), hint="e.g. --input-shape input=1x3x224x224 (repeat it for each input)") from e


def parse_inputs(values) -> dict[str, str]:
    """--input [NAME=]FILE values -> {name, or '' for the model's first input: file}; ConfigError if malformed."""
    try:
        return signature.parse_inputs(values)
    except signature.InputError as e:
        raise ConfigError(str(e), hint="e.g. --input ids=ids.npy (repeat it for each input)") from e


def mode_arms(modes: tuple[str, ...]) -> tuple[Arm, ...]:
    """The arms of a Docker-vs-bare comparison (or of one mode alone)."""
    return tuple(Arm(label=mode, mode=mode) for mode in modes)


def describe(cells: list[Cell], rule: StopRule) -> list[str]:
    """The plan as a dry run prints it: each cell, its arms' order, and the stopping rule."""
    lines = [f"stopping rule: at least {rule.min_pairs} pairs, then until the 95% CI half-width is under "
             f"{rule.precision:.1%}, at most {rule.max_pairs} pairs"
             + (f" or {rule.max_time_s:g} s per cell" if rule.max_time_s else "")
             + (f"; {rule.cooldown_s:g} s of cool-down before each run" if rule.cooldown_s else "")]
    for cell in cells:
        order = " | ".join(" ".join(r.arm for r in cell.runs(p)) for p in range(min(2, rule.max_pairs)))
        lines.append(f"{cell.key}: {order} | ... ({cell.iterations} iterations, at least {cell.min_time:g} s a run)")
    return lines


def deploy_steps(*, remote_image_id: str | None, image_id: str, bundles: dict[str, tuple[dict | None, dict]],
                 modes: tuple[str, ...] = MODES) -> list[tuple[str, str]]:
    """What a board lacks for a framework in `modes`: ("docker", "image"), and for the bundle of bare or native mode
    (`bundles`: mode -> the board's manifest of it, the one it should have) (mode, "bundle"), or (mode,
    "entrypoint") when nothing else of it changed."""
    steps = []
    if "docker" in modes and remote_image_id != image_id:
        steps.append(("docker", "image"))
    for mode, (remote, manifest) in bundles.items():
        if mode in modes and remote != manifest:
            installed = {**(remote or {}), "bench_sha256": manifest.get("bench_sha256")}
            steps.append((mode, "entrypoint" if installed == manifest else "bundle"))
    return steps


def chain_ids(diff_ids: list[str] | tuple[str, ...]) -> list[str]:
    """The chain id of each layer of an image, as Docker names a layer together with all below it: the first is its
    diff id, each next sha256("<chain below> <diff id>")."""
    chains: list[str] = []
    for diff_id in diff_ids:
        chains.append(diff_id if not chains else
                      "sha256:" + hashlib.sha256(f"{chains[-1]} {diff_id}".encode()).hexdigest())
    return chains


def first_missing(diff_ids: list[str] | tuple[str, ...], board_images: list[list[str]]) -> int:
    """The index of the image's first layer the board lacks (its length if it lacks none): the layers from there on
    are to be sent. A layer counts as present only with the same layers below it, as `docker load` sees it."""
    held = {chain for layers in board_images for chain in chain_ids(layers)}
    for i, chain in enumerate(chain_ids(diff_ids)):
        if chain not in held:
            return i
    return len(diff_ids)


def images_to_keep(found: list[dict], targets: list[Target], label: str) -> set[str]:
    """Of edgeorch's images on a board (`id`, `created`, `labels`), those the current recipes use: per framework,
    the newest image of the build its target names (framework, version, arch and Debian release, as labelled)."""
    newest: dict[str, dict] = {}
    for image in found:
        tags = image["labels"] or {}
        for t in targets:
            if (tags.get(f"{label}.framework"), tags.get(f"{label}.framework-version"), tags.get(f"{label}.arch"),
                    tags.get(f"{label}.suite")) == (t.framework, t.build.version, t.arch.value, t.suite):
                if t.framework not in newest or image["created"] > newest[t.framework]["created"]:
                    newest[t.framework] = image
    return {image["id"] for image in newest.values()}


@dataclass(frozen=True, kw_only=True)
class Target:
    """What one framework becomes for one board: the build (version, wheels or Debian packages), the Debian release
    its image starts from, and the Python and glibc each mode's wheels are for."""
    framework: str
    arch: Arch
    build: Build
    suite: str                   # the image's Debian base
    image_python: str
    native_python: str
    native_glibc: tuple[int, int]
    note: str | None = None      # how the image's release relates to the board's


def plan_target(recipe: Recipe, board: Board, platform: Platform, bases: dict[str, BaseRecipe],
                modes: tuple[str, ...] = MODES) -> Target:
    """The build of `recipe` serving `board` in `modes`: with native mode one for the board's Python and release, the
    same in the image; without it, the image (and so bare mode, its userland) may bring the release that packages the
    framework. ConfigError with the reason and the alternatives when none does."""
    if "bare" in modes and (why := bare_why_not(recipe)):
        raise ConfigError(f"{recipe.framework} has no bare mode: {why}",
                          hint="run it with --mode docker,native (or one of them)")
    suite, note = nearest_base(platform, bases)
    image_python = bases[suite].python
    native = "native" in modes
    build = recipe.build_for(board.arch, tuple({image_python, platform.python} if native else {image_python}), suite)
    if build is None and not native:  # the image brings its own release: any that has a build
        for other in sorted(bases, key=lambda s: version_key(bases[s].python), reverse=True):
            build = recipe.build_for(board.arch, (bases[other].python,), other)
            if build:
                suite, image_python = other, bases[other].python
                note = f"the image's release: {recipe.framework} needs Debian {other}; the board runs " \
                       f"{platform.pretty}"
                break
    if build is None:
        why = (recipe.why_not(board.arch, platform.python, suite) or recipe.why_not(board.arch, image_python, suite)
               or f"no {recipe.framework} build serves Python {platform.python} and {image_python} alike")
        raise ConfigError(f"{recipe.framework} cannot run on {board.name} ({board.arch.value}, {platform.pretty}, "
                          f"Python {platform.python}) in native mode: {why}",
                          hint="leave native out (--mode both: Docker and bare metal run the image's own userland, "
                               f"which brings its release), point `python:` of {board.name} in the inventory at "
                               "another interpreter, or pick another framework; `invoke matrix` shows the builds "
                               "per Python")
    wheels = (platform.python, platform.glibc) if native else (image_python, bases[suite].glibc)  # no native bundle
    return Target(framework=recipe.framework, arch=board.arch, build=build, suite=suite, image_python=image_python,
                  native_python=wheels[0], native_glibc=wheels[1], note=note)


def bare_why_not(recipe: Recipe) -> str | None:
    """Why the image's userland cannot run out of its container, or None."""
    if recipe.base_image_from_user:
        return ("its image is the board vendor's, whose GPU libraries the vendor's container runtime mounts from the "
                "board at run time (they are not in the image)")
    return None


def parse_counts(option: str, value, *, least: int = 0) -> tuple[int, ...]:
    """A whole number or a comma list of them (a sweep: --threads 1,2,4), each at least `least`; ConfigError
    naming the option otherwise."""
    if isinstance(value, int):
        value = str(value)
    try:
        counts = tuple(dict.fromkeys(int(v) for v in str(value).split(",")))
    except ValueError as e:
        raise ConfigError(f"--{option} {value!r} is not a whole number or a comma list of them",
                          hint=f"e.g. --{option} {max(least, 1)} or --{option} 1,2,4") from e
    if any(c < least for c in counts):
        raise ConfigError(f"--{option} {value!r}: each must be at least {least}",
                          hint=f"e.g. --{option} {max(least, 1)} or --{option} 1,2,4")
    return counts


def split_models(value: str, exists=lambda name: False) -> tuple[str, ...]:
    """`--model a,b`: the models of a sweep; a file whose own name has a comma stays one model."""
    if "," not in value or exists(value):
        return (value,)
    return tuple(dict.fromkeys(v for v in value.split(",") if v))


def label(model: str, threads, batch) -> str:
    """A model as the tables show it, with its sweep's threads and batch: 'squeezenet1_1 t2 b4'."""
    return model + variant(int(threads), int(batch)).replace("-", " ")
