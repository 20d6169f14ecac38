"""The flows behind the tasks: inventory -> plan -> build -> deploy -> run -> collect -> normalize -> report."""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.markup import escape
from rich.table import Table

from . import health, images, report, results, runners, stats, userland
from .bench.signature import InputError, check_inputs
from .cache import cache_dir, file_sha256
from .console import commands, console, progress, step
from .deploy import (
    Deployment,
    board_facts,
    board_layers,
    board_platform,
    clean,
    deploy,
    first_to_send,
    image_on_board,
    push_file,
)
from .errors import (
    BareUnavailable,
    BoardError,
    ConfigError,
    ConnectionLost,
    EdgeorchError,
    RunError,
    SetupError,
    Unreachable,
)
from .images import ImageSpec
from .inventory import Board, Inventory
from .models import EAGER, INT8, ModelSpec, resolve, zoo
from .plan import (
    MODE_SETS,
    MODES,
    Arm,
    Cell,
    RunSpec,
    StopRule,
    Target,
    bench_cell,
    describe,
    mode_arms,
    parse_input_shapes,
    parse_inputs,
    parse_modes,
    plan_target,
    split_models,
    variant,
)
from .recipes import Recipe, get_recipe, load_bases, load_recipes
from .releases import Platform
from .runners import SESSION, Measures, entrypoint_args, kill_runs
from .transport import GroupResult, Link, connect, fan_out
from .userland import Userland


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def _sent(d: Deployment) -> str:
    """What a deploy sent, in bytes, or that the board had it all."""
    if not d.sent:
        return "sent nothing (already there)"
    return "sent " + ", ".join(f"{t.label} {_mb(t.sent)}" + (f" of {_mb(t.lacked)} lacking" if t.lacked != t.sent
                                                            else "")
                               + (f" ({_mb(t.unpacked)} unpacked, {t.seconds:.1f} s)" if t.unpacked else "")
                               for t in d.sent)


def _report_failures(group: GroupResult, what: str) -> None:
    for name, err in group.failed.items():
        console.print(f"[bold red]{escape(name)}: {what} failed[/]\n{escape(str(err))}")


def inventory_table(inventory: Inventory) -> Table:
    """The boards of the inventory, one row each."""
    t = Table(title=f"Boards in {escape(str(inventory.path))}")
    for col in ("name", "address", "arch", "groups", "frameworks", "workdir", "sim"):
        t.add_column(col)
    for b in inventory.boards:
        t.add_row(*map(escape, (b.name, b.address, b.arch.value, ", ".join(b.groups), ", ".join(b.frameworks),
                                b.workdir)), "yes" if b.sim else "")
    return t


def check(inventory: Inventory, host: str) -> bool:
    """Report for each board: SSH, arch, Docker, Python, disk, sensors. True if all are fine."""
    boards = inventory.select(host)

    bases, recipes = load_bases(), load_recipes()

    try:
        client = images.engine()
    except SetupError:  # no engine here: what a deploy would send is not known, the rest is
        client = None

    def one(board: Board) -> dict:
        with connect(board) as conn:
            row = board_facts(conn, board)
            row["frameworks"], row["needs"], held = [], 0, None
            for name in board.frameworks if row["platform"] and row["arch_ok"] else ():
                try:  # what `deploy` would give the board, or why it cannot
                    target = plan_target(recipes[name], board, row["platform"], bases,
                                         MODE_SETS["both"]) if name in recipes else None
                    row["frameworks"].append(f"{name} {target.build.version}" if target else f"{name}: no recipe")
                except ConfigError as e:
                    row["problems"].append(e.message.split(": ", 1)[-1])
                    continue
                layers = images.built_layers(client, target) if client and target and row["docker"] else None
                if layers is None or row["needs"] is None:
                    row["needs"] = None  # not built here yet
                elif image_on_board(conn, board, layers.image_id) is None:  # the archive, then the layers loaded
                    held = held or board_layers(conn, board)  # asked once per board
                    row["needs"] += 2 * layers.bytes_from(first_to_send(held, layers))
        free = (row["disk_free_gb"] or 0) * 2**30
        if row["needs"] and row["disk_free_gb"] is not None and row["needs"] > free:
            row["problems"].append(f"{row['disk_free_gb']} GB free, a deploy of its frameworks needs "
                                   f"{row['needs'] / 2**30:.1f} GB: free space (invoke clean --host {board.name})")
        return row

    group = fan_out(boards, one)
    console.print(check_table(boards, group))
    for b in boards:  # whole, not cut to a narrow terminal's column: each problem says its fix
        for problem in group.succeeded.get(b.name, {}).get("problems", ()):
            console.print(f"[red]{escape(b.name)}[/]: {escape(problem)}", soft_wrap=True)
    _report_failures(group, "check")
    health.record(inventory, {**{name: [str(e).splitlines()[0]] for name, e in group.failed.items()},
                              **{name: r["problems"] for name, r in group.succeeded.items()}})
    return not group.failed and not any(r["problems"] for r in group.succeeded.values())


def check_table(boards: list[Board], group: GroupResult[dict]) -> report.FitTable:
    """The check task's table: a row per board, its problems (the board's verdict) never cut."""
    t = report.FitTable(title="Board check", caption_justify="left",
                        drop=("sensors", "numpy", "os", "frameworks", "docker", "python", "ssh", "arch", "free disk"))
    for col in ("board", "ssh", "arch", "os", "docker", "python", "numpy", "free disk", "sensors", "frameworks",
                "problems"):
        t.add_column(col)
    for b in boards:
        if b.name in group.failed:  # its error, whole, under the table
            t.add_row(escape(b.name), "[red]no[/]", b.arch.value, *[""] * 7, "[red]not reached: see below[/]")
            continue
        r = {k: escape(v) if isinstance(v, str) else v for k, v in group.succeeded[b.name].items()}  # the board's
        t.add_row(escape(b.name), "ok", b.arch.value if r["arch_ok"] else f"[red]{r['arch_found']}[/]", r["os"] or "?",
                  r["docker"] or "[red]none[/]", r["python"] or "[red]none[/]", r["numpy"] or "-",
                  _disk(r), r["sensors"],
                  escape(", ".join(group.succeeded[b.name]["frameworks"])),
                  f"[red]{len(r['problems'])}: see below[/]" if r["problems"] else "[green]none[/]")
    return t


def _disk(row: dict) -> str:
    """The board's free disk, and what a deploy of its frameworks would take of it (the layers it lacks, twice:
    their archive, then the layers loaded); `?` where an image is not built here yet."""
    free = f"{row['disk_free_gb']} GB" if row["disk_free_gb"] is not None else "?"
    needs = "?" if row["needs"] is None else f"{row['needs'] / 2**30:.2f} GB"
    return f"{free} (needs {needs})"


def healthy_boards(inventory: Inventory, host: str) -> list[Board]:
    """The boards of `host`, less those the last `invoke check` found unhealthy, unless they are named in `host`
    themselves (a group skips a broken board; asking for the board by name means: try it anyway)."""
    named = {w.strip() for w in host.split(",")}
    boards = []
    for board in inventory.select(host):
        found = None if board.name in named else health.problems(inventory, board)
        if found and found[0]:
            name = escape(board.name)
            console.print(f"[yellow]skipping {name}[/]: unhealthy at its last check "
                          f"{health.age(time.time() - found[1])} ago ({escape('; '.join(found[0]))}); fix it and run "
                          f"`invoke check --host {name}`, or name it to try anyway: --host {name}", soft_wrap=True)
            continue
        boards.append(board)
    if not boards:
        raise ConfigError(f"every board of --host {host} was unhealthy at its last check",
                          hint="fix them and rerun `invoke check`, or name a board explicitly")
    return boards


def platforms(boards: list[Board], timeout: float = 3600) -> GroupResult[Platform]:
    """Each board's OS release, Python and glibc, asked under its lock (with the reconnects of a sweep); its Python
    has a minute to answer, less when the runs have less."""
    def one(board: Board) -> Platform:
        with Link(board, token=SESSION, purpose="reading its OS release") as link:
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


def build(targets: dict[tuple[str, str], Target], base_image: str | None = None,
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
            images.ensure_base_images(client, bases[suite], kinds)
    had = {i.id for i in client.images.list(filters={"label": f"{images.LABEL}.framework"})}
    made: dict[Target, Built] = {}
    cached: dict[str, list[str]] = {}  # a framework build -> the arches whose image was built before
    for target in sorted(set(targets.values()), key=lambda t: (t.framework, t.arch.value, t.suite, t.native_python)):
        spec = images.ensure_framework_image(client, recipes[target.framework], target, base_image)
        bundle = userland.userland(client, spec.image_id, spec.tag) if spec.framework in bare else None
        made[target] = Built(image=spec, layers=images.export_image(client, spec), bare=bundle)
        if spec.image_id in had:
            cached.setdefault(f"{spec.framework} {spec.version} ({spec.based_on})", []).append(target.arch.value)
    for build_of, arches in cached.items():
        step(f"{build_of} image for {', '.join(sorted(set(arches)))}: built before (cached)")
    return {key: made[target] for key, target in targets.items()}


def deploy_boards(inventory: Inventory, host: str, frameworks: list[str] | None = None,
                  parallel: bool = True, base_image: str | None = None,
                  modes: tuple[str, ...] = MODE_SETS["both"]) -> GroupResult[list[Deployment]]:
    """Deploy frameworks (default: each board's own list) to the boards, for `modes`; errors per board."""
    boards = inventory.select(host)
    wanted = {b.name: list(frameworks or b.frameworks) for b in boards}
    recipes = {name: get_recipe(name) for names in wanted.values() for name in names}  # unknown: fail before work
    found = platforms(boards)
    targets = {key: t for key, t in plan_targets(list(recipes.values()), boards, found.succeeded,
                                                 dict.fromkeys(recipes, modes)).items()
               if key[0] in wanted[key[1]]}
    built = build(targets, base_image, bare=tuple(recipes) if "bare" in modes else ())

    def one(board: Board) -> list[Deployment]:
        if board.name in found.failed:
            raise found.failed[board.name]
        with Link(board, token=SESSION, purpose="deploy") as link:  # a deploy spoils a neighbour's timings too
            return [link.retrying(functools.partial(deploy, board=board, image=built[(f, board.name)].image,
                                                    export=built[(f, board.name)].layers, progress=bars, modes=modes,
                                                    bare=built[(f, board.name)].bare))[0]
                    for f in wanted[board.name]]

    with progress() as bars:
        group = fan_out(boards, one, parallel=parallel)
    for name, deps in group.succeeded.items():
        for d in deps:
            note = targets[(d.image.framework, name)].note
            console.print(f"[green]{escape(name)}[/]: " + escape(
                f"{d.image.framework} {d.framework_version} (image on {d.image.based_on}) ready in "
                f"{', '.join(d.modes)}; {_sent(d)} in {d.seconds:.1f} s" + "".join(
                    f"\n  note: {n}" for n in (*d.notes, *([note] if note else [])))))
    _report_failures(group, "deploy")
    if group.failed:
        raise BoardError(f"deploy failed on {len(group.failed)} of {len(boards)} boards: "
                         f"{', '.join(group.failed)}", hint="fix what is reported above and rerun; "
                         "boards that succeeded are ready")
    return group


def clean_boards(inventory: Inventory, host: str) -> GroupResult[dict]:
    """Remove from the boards what no current recipe uses (deploy.clean), and say what went and what it freed."""
    boards = inventory.select(host)
    found = platforms(boards)
    bases, recipes = load_bases(), load_recipes()
    cached = {file_sha256(p) for p in (cache_dir() / "models").glob("*") if p.is_file()}

    def one(board: Board) -> dict:
        if board.name in found.failed:
            raise found.failed[board.name]
        targets = []
        for recipe in recipes.values():
            for modes in (MODES, MODE_SETS["both"]):  # all three, or (the board's Python aside) the image's release
                try:
                    targets.append(plan_target(recipe, board, found.succeeded[board.name], bases, modes))
                    break
                except ConfigError:  # no build of it serves this board: none of its images is in use there
                    pass
        with Link(board, token=SESSION, purpose="clean") as link:
            return link.retrying(functools.partial(clean, board=board, targets=targets, cached_models=cached))[0]

    group = fan_out(boards, one)
    t = Table(title="Cleaned")
    for col in ("board", "images", "bundles", "models", "freed"):
        t.add_column(col)
    for name, done in group.succeeded.items():
        gone = done["removed"]
        t.add_row(escape(name), escape(", ".join(gone["images"])) or "-", escape(", ".join(gone["bundles"])) or "-",
                  str(len(gone["models"])) if gone["models"] else "-", _mb(done["freed_bytes"]))
    console.print(t)
    _report_failures(group, "clean")
    if group.failed:
        raise BoardError(f"clean failed on {len(group.failed)} of {len(boards)} boards: {', '.join(group.failed)}",
                         hint="fix what is reported above and rerun")
    return group


def _require_support(recipe: Recipe, boards: list[Board]) -> None:
    unsupported = [f"{b.name} ({b.arch.value}: {recipe.why_not(b.arch)})" for b in boards if recipe.why_not(b.arch)]
    if unsupported:
        raise ConfigError(f"{recipe.framework} cannot run on {', '.join(unsupported)}",
                          hint="pick other boards or another framework; `invoke matrix` shows what runs where")


def _recipes(framework: str) -> list[Recipe]:
    """The recipes of a comma list of frameworks, or `all`."""
    if framework == "all":
        return list(load_recipes().values())
    return [get_recipe(name.strip()) for name in framework.split(",") if name.strip()]


@dataclass(frozen=True, kw_only=True)
class Reference:
    """A zoo network's reference input (pushed to the boards) and PyTorch's output for it."""
    network: str
    input_path: Path
    input_sha256: str
    output: np.ndarray


def reference(model: str, batch: int = 1) -> Reference | None:
    """The agreement reference of a zoo network (or its int8 variant); None for builtins and user files."""
    network = model.removesuffix(INT8).removesuffix(EAGER)
    if network not in zoo.NETWORKS:
        return None
    path = cache_dir() / "models" / f"{zoo.file_stem(network, batch)}-input-seed{zoo.SEED}.npy"
    buf = io.BytesIO()  # whole or absent: two edgeorchs may write it at once, and its hash is taken at once
    np.save(buf, zoo.reference_input(network, batch=batch))
    results.write_atomic(path, buf.getvalue())
    return Reference(network=network, input_path=path, input_sha256=file_sha256(path),
                     output=zoo.reference_output(network, batch))


@dataclass(frozen=True, kw_only=True)
class Judgement:
    """How the analysis judges a comparison: the equivalence band and the largest run-to-run spread allowed."""
    equivalence: float = stats.EQUIVALENCE
    max_spread: float = 0.10
    min_pairs: int = stats.MIN_PAIRS


DEFAULTS = Judgement()
DEFAULT_RULE = StopRule()
DEFAULT_MEASURES = Measures()


@dataclass(frozen=True, kw_only=True)
class Sweep:
    """A planned sweep: per board its cells, the stopping rule, the frameworks and their model files."""
    cells: dict[str, list[Cell]]
    rule: StopRule
    recipes: list[Recipe]
    specs: dict[tuple[str, str, int], ModelSpec]  # (framework, model name, batch) -> the file
    model: str           # --model as given (a comma list sweeps several)
    batches: tuple[int, ...]
    options: tuple[str, ...]
    inputs: tuple[tuple[str, Path], ...] = ()  # --input: (input name, or '' for the first, local .npy file)
    every: bool = False  # --framework all: those a board's release or Python cannot run are left out, not refused
    profile: int = 0     # > 0: after its pairs, each cell's profiling pass of that many inferences per mode

    def spec(self, cell: Cell) -> ModelSpec:
        return self.specs[(cell.framework, cell.model, cell.batch)]

    def references(self) -> dict[tuple[str, int], Reference]:
        """(model, batch) -> the agreement reference of each zoo network swept; none for the user's own --input."""
        if self.inputs:
            return {}
        found = {(m, b): reference(m, b) for _, m, b in self.specs}
        return {key: ref for key, ref in found.items() if ref is not None}


def _input_files(values: tuple[str, ...]) -> tuple[tuple[str, Path], ...]:
    """The --input files on this machine, each checked to exist."""
    files = []
    for name, path in parse_inputs(values).items():
        local = Path(path).expanduser().resolve()
        if not local.is_file():
            raise ConfigError(f"--input {path}: no such file", hint="pass a .npy file saved with numpy.save, as "
                                                                   "--input NAME=FILE.npy")
        files.append((name, local))
    return tuple(files)


def _check_inputs(specs: dict[tuple[str, str, int], ModelSpec], shapes: dict,
                  files: tuple[tuple[str, Path], ...]) -> None:
    """Refuse, before anything is built or sent, a model whose inputs the boards would refuse (with their message)."""
    for (framework, _, _), spec in specs.items():
        try:
            check_inputs(spec.path, shapes, {name: str(path) for name, path in files})
        except InputError as e:
            raise ConfigError(f"{framework} model {spec.name}: {e}",
                              hint="give each dynamic input its shape, --input-shape NAME=DIMS (repeatable), or "
                                   "feed it a file, --input NAME=FILE.npy") from e


def _specs(recipes: list[Recipe], models: tuple[str, ...], batches: tuple[int, ...]
           ) -> dict[tuple[str, str, int], ModelSpec]:
    """Each framework's file of each model at each batch; ConfigError when two models of a sweep share a name."""
    specs: dict[tuple[str, str, int], ModelSpec] = {}
    for recipe in recipes:
        named: dict[str, str] = {}
        for model in models:
            for batch in batches:
                spec = resolve(model, recipe.model_format, cache_dir=cache_dir(), log=step, batch=batch)
                if named.setdefault(spec.name, model) != model:
                    raise ConfigError(f"--model: {named[spec.name]} and {model} are both named {spec.name}",
                                      hint="rename one of the files: results name each model by its file's stem")
                specs[(recipe.framework, spec.name, batch)] = spec
    return specs


def plan_sweep(boards: list[Board], *, framework: str, model: str, arms: list[tuple[Arm, ...]], rule: StopRule,
               iterations: int, warmup: int, threads: int | tuple[int, ...], min_time: float,
               batch: int | tuple[int, ...] = 1, options: tuple[str, ...] = (), names: tuple[str, ...] = (),
               base_image: str | None = None, input_shapes: tuple[str, ...] = (), inputs: tuple[str, ...] = (),
               profile: int = 0) -> Sweep:
    """The cells of a sweep: every framework of `framework` x model of `model` (a comma list) x threads x batch x
    board, each compared across `arms` (one cell per tuple of arms; `names` tell the cells of one board apart)."""
    recipes = _recipes(framework)
    if framework == "all":  # the frameworks that run on every board given (TensorRT only with its base image)
        recipes = [r for r in recipes if not any(r.why_not(b.arch) for b in boards)
                   and (base_image or not r.base_image_from_user)]
    if not recipes:
        raise ConfigError(f"no framework to run: --framework {framework!r} names none that runs on every board given",
                          hint="pass --framework NAME or a comma list; `invoke matrix` shows what runs where")
    for recipe in recipes:
        _require_support(recipe, boards)
    threads = tuple(threads) if isinstance(threads, (tuple, list)) else (threads,)
    batches = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
    if profile < 0:
        raise ConfigError(f"--profile {profile} must be 0 (none) or a number of inferences",
                          hint="e.g. --profile 20")
    shapes, files = parse_input_shapes(input_shapes), _input_files(inputs)
    specs = _specs(recipes, split_models(model, lambda m: Path(m).expanduser().exists()), batches)
    _check_inputs(specs, shapes, files)
    cells = {b.name: [bench_cell(b, framework=f, model=m, arms=cell_arms, iterations=iterations, warmup=warmup,
                                 threads=t, min_time=min_time, options=options, name=name, input_shapes=input_shapes,
                                 batch=n)
                      for f, m, n in specs for t in threads
                      for cell_arms, name in zip(arms, names or ("",) * len(arms))] for b in boards}
    return Sweep(cells=cells, rule=rule, recipes=recipes, specs=specs, model=model, batches=batches, options=options,
                 inputs=files, every=framework == "all", profile=profile)


def bench(inventory: Inventory, host: str, *, framework: str, model: str, mode: str = "both",
          iterations: int = 50, warmup: int = 5, rule: StopRule = DEFAULT_RULE, min_time: float = 0.0,
          judgement: Judgement = DEFAULTS, threads: int | tuple[int, ...] = 0, batch: int | tuple[int, ...] = 1,
          options: tuple[str, ...] = (), parallel: bool = False, dry_run: bool = False, timeout: float = 3600,
          base_image: str | None = None, request: dict | None = None, resume: Path | None = None,
          input_shapes: tuple[str, ...] = (), inputs: tuple[str, ...] = (), profile: int = 0,
          measures: Measures = DEFAULT_MEASURES) -> Path | None:
    """Benchmark each model of `model` with each framework of `framework` (comma lists), at each of `threads` and
    `batch`, on the boards, Docker against bare metal pair after pair until the stopping rule is met; returns
    results/<run-id>/.

    A zoo network gets its reference input, and every run's output is compared with PyTorch's, unless `inputs`
    (--input) feed it the user's data instead.
    """
    boards = healthy_boards(inventory, host)
    sweep = plan_sweep(boards, framework=framework, model=model, arms=[mode_arms(parse_modes(mode))], rule=rule,
                       iterations=iterations, warmup=warmup, threads=threads, min_time=min_time, batch=batch,
                       options=options, base_image=base_image, input_shapes=input_shapes, inputs=inputs,
                       profile=profile)
    return run_sweep(sweep, boards, judgement=judgement, parallel=parallel, dry_run=dry_run, timeout=timeout,
                     base_image=base_image, request=request, resume=resume, measures=measures)


def calibrate(inventory: Inventory, host: str, *, framework: str, model: str, mode: str = "both",
              iterations: int = 50, warmup: int = 5, rule: StopRule = DEFAULT_RULE, min_time: float = 0.0,
              judgement: Judgement = DEFAULTS, threads: int = 0, timeout: float = 3600,
              dry_run: bool = False, request: dict | None = None, resume: Path | None = None) -> Path | None:
    """The A/A test: each mode against itself, interleaved exactly like a real comparison. Its verdict must be
    equivalent or inconclusive; its spread is the board's noise floor."""
    modes = parse_modes(mode)
    arms = [(Arm(label=f"{m}-A", mode=m), Arm(label=f"{m}-B", mode=m)) for m in modes]
    boards = healthy_boards(inventory, host)
    sweep = plan_sweep(boards, framework=framework, model=model, arms=arms, rule=rule, iterations=iterations,
                       warmup=warmup, threads=threads, min_time=min_time, names=modes)
    run_dir = run_sweep(sweep, boards, judgement=judgement, dry_run=dry_run, timeout=timeout, request=request,
                        resume=resume)
    if run_dir:
        console.print(report.calibration_table(comparison(run_dir, judgement)))
    return run_dir


# Docker's defaults changed one at a time, each a known source of overhead (measurement-facts.md)
KNOBS = {
    "seccomp=unconfined": ("--security-opt", "seccomp=unconfined"),
    "network=host": ("--network", "host"),
    "ipc=host": ("--ipc", "host"),
    "no-cpu-limits": ("--cpu-quota", "-1", "--cpu-shares", "1024"),
}


def explain(inventory: Inventory, host: str, *, framework: str, model: str, iterations: int = 50,
            warmup: int = 5, rule: StopRule = DEFAULT_RULE, min_time: float = 0.0,
            judgement: Judgement = DEFAULTS, threads: int = 0, timeout: float = 3600,
            dry_run: bool = False, request: dict | None = None, resume: Path | None = None) -> Path | None:
    """Why Docker differs: the Docker side rerun with one knob changed at a time, every arm in every round, each
    knob's ratio to bare metal with its own interval, next to Docker's defaults."""
    boards = healthy_boards(inventory, host)
    arms = (Arm(label="docker", mode="docker"), Arm(label="bare", mode="bare"),
            *(Arm(label=f"docker+{name}", mode="docker", docker_args=args) for name, args in KNOBS.items()),
            Arm(label="docker+model-on-bind-mount", mode="docker", bind_files=True),
            *([Arm(label="native", mode="native")] if dry_run or _native_runs(framework, boards) else []))
    sweep = plan_sweep(boards, framework=framework, model=model, arms=[arms], rule=rule, iterations=iterations,
                       warmup=warmup, threads=threads, min_time=min_time)
    run_dir = run_sweep(sweep, boards, judgement=judgement, dry_run=dry_run, timeout=timeout, request=request,
                        resume=resume)
    if run_dir:
        console.print(report.explain_table(comparison(run_dir, judgement)))
    return run_dir


def modes_table(inventory: Inventory, host: str) -> Table:
    """Per board (its arch, release and Python, asked over SSH) and framework: the modes it runs in, each with the
    version it gets, or why not."""
    boards = inventory.select(host)
    found = platforms(boards)
    bases = load_bases()
    t = Table(title="Modes per board: the version each mode runs, or why not", caption_justify="left")
    for col in ("board", "framework", *MODES):
        t.add_column(col)
    reasons: list[str] = []
    for board in boards:
        if board.name not in found.succeeded:
            t.add_row(escape(board.name), "-", *[f"[red]unreachable: {escape(str(found.failed[board.name]))}[/]"]
                      + [""] * (len(MODES) - 1))
            continue
        for i, recipe in enumerate(load_recipes().values()):
            cells = []
            for mode in MODES:
                try:
                    target = plan_target(recipe, board, found.succeeded[board.name], bases, (mode,))
                    cells.append(f"[green]{target.build.version}[/]"
                                 + (f" ({target.suite} image)" if mode != "native" else ""))
                except ConfigError as e:
                    why = e.message.split(": ", 1)[-1]
                    if why not in reasons:
                        reasons.append(why)
                    cells.append(f"[red]✗[/] ({reasons.index(why) + 1})")
            t.add_row(escape(board.name) if not i else "", recipe.framework, *cells)
    t.caption = "\n".join(f"({n}) {escape(why)}" for n, why in enumerate(reasons, 1))
    return t


def _native_runs(framework: str, boards: list[Board]) -> bool:
    """Whether every board's own Python can run `framework` (explain's userland arm); says why not if not."""
    found = platforms(boards)
    try:
        plan_targets(_recipes(framework), boards, found.succeeded, {f: ("native",) for f in framework.split(",")})
    except ConfigError as e:
        console.print(f"[yellow]no native arm[/] (the userland's part of Docker's cost): {escape(e.message)}")
        return False
    return not found.failed


def run_sweep(sweep: Sweep, boards: list[Board], *, judgement: Judgement = DEFAULTS, parallel: bool = False,
              dry_run: bool = False, timeout: float = 3600, base_image: str | None = None,
              request: dict | None = None, resume: Path | None = None, measures: Measures = DEFAULT_MEASURES
              ) -> Path | None:
    """Execute a planned sweep: build, deploy, run every cell pair after pair until its stopping rule says
    enough, then normalize and judge what came back. With `resume`, the cells that run did not finish are run into
    its directory, continuing after their last whole pair."""
    cells = [cell for board_cells in sweep.cells.values() for cell in board_cells]
    if dry_run:
        for line in describe(cells, sweep.rule):
            console.print(escape(line))  # a model named like [/x] is text, not markup
        return None
    refs = sweep.references()
    found = platforms(boards, timeout)  # a board that does not answer now fails below, with its cells: resumable
    modes = {r.framework: tuple(m for m in MODES if any(a.mode == m for c in cells if c.framework == r.framework
                                                        for a in c.arms)) for r in sweep.recipes}
    if sweep.every:
        sweep = _runnable(sweep, boards, found.succeeded, modes)
        cells = [cell for board_cells in sweep.cells.values() for cell in board_cells]
    targets = plan_targets(sweep.recipes, boards, found.succeeded, modes)
    built = build(targets, base_image, bare=tuple(f for f, m in modes.items() if "bare" in m))
    run_dir = results.new_run_dir() if resume is None else resume
    with results.locked_run(run_dir):  # a second --resume of this run is refused while this one writes it
        if resume is None:
            results.write_manifest(run_dir, complete=False, request=request, modes_version=results.MODES_VERSION,
                                   frameworks=[r.framework for r in sweep.recipes], model=sweep.model,
                                   batch=list(sweep.batches), options=list(sweep.options),
                                   models={f"{f}/{m}" + variant(0, n): {"name": s.name, "sha256": s.sha256}
                                           for (f, m, n), s in sweep.specs.items()},
                                   boards=[b.name for b in boards], rule=dataclasses.asdict(sweep.rule),
                                   images={f"{b}/{f}": {"tag": made.image.tag, "based_on": made.image.based_on,
                                                        "note": targets[(f, b)].note}
                                           for (f, b), made in built.items()},
                                   cells={c.key: {"arms": [a.label for a in c.arms], "stop": None, "pairs": 0}
                                          for c in cells})
            console.print(f"results go to {escape(str(run_dir))}", soft_wrap=True)
        else:
            results.write_manifest(run_dir, complete=False)
        commands.attach(run_dir / "commands.log")  # with what ran before (the platforms asked, the builds)
        manifest = results.read_manifest(run_dir)
        attempts: dict[str, int] = dict(manifest.get("attempts") or {})
        records: list[tuple[RunSpec, dict]] = []
        stops: dict[str, dict] = {}
        earlier: dict[str, list] = {}
        for cell in cells:  # what an earlier session of this run finished stays, and is not run again
            state = (manifest.get("cells") or {}).get(cell.key) or {}
            earlier[cell.key] = results.finished_pairs(run_dir, lambda p, c=cell: c.runs(p) if p < sweep.rule.max_pairs
                                                       else None)
            records += [rec for pair in earlier[cell.key] for rec in pair]
            if state.get("stop"):
                stops[cell.key] = {"stop": state["stop"], "pairs": state["pairs"]}
        if resume is not None:
            console.print(f"resuming {escape(str(run_dir))}: {len(stops)} of {len(cells)} cells were finished, "
                          f"{len(records)} runs are kept")
        lock = threading.Lock()
        shipped = run_dir / "deploy.json"  # an earlier session's deploys stay in it
        deploys: list[dict] = json.loads(shipped.read_text()) if shipped.exists() else []

        def done(run: RunSpec, doc: dict, tries: int) -> None:
            with lock:
                records.append((run, doc))
                if tries > 1:
                    attempts[run.key] = tries
                    results.write_manifest(run_dir, attempts=attempts)

        def one(board: Board) -> int:
            todo = [c for c in sweep.cells[board.name] if c.key not in stops]
            if not todo:
                return 0
            if board.name in found.failed:
                raise found.failed[board.name]
            failed: dict[str, EdgeorchError] = {}
            with Link(board, token=SESSION, purpose=f"run {run_dir.name}") as link:
                kill_runs(link.conn, board.name, session="")  # with the lock held, any edgeorch run there is an orphan
                task = bars.add_task(f"{board.name}: pairs", unit="pairs",
                                         total=sum(sweep.rule.max_pairs - len(earlier[c.key]) for c in todo))
                for recipe in sweep.recipes:
                    mine = [c for c in todo if c.framework == recipe.framework]
                    if not mine:
                        continue
                    try:
                        ready = built[(recipe.framework, board.name)]
                        ship = functools.partial(deploy, board=board, image=ready.image, export=ready.layers,
                                                 bare=ready.bare, progress=bars)
                        try:
                            deployment, _ = link.retrying(functools.partial(ship, modes=modes[recipe.framework]))
                        except BareUnavailable as e:  # the other modes run; the cells say bare is missing, and why
                            others = tuple(m for m in modes[recipe.framework] if m != "bare")
                            if not others:
                                raise
                            console.print(f"[yellow]{escape(board.name)}: {recipe.framework} without bare mode[/]: "
                                          f"{escape(str(e))}", soft_wrap=True)
                            deployment, _ = link.retrying(functools.partial(ship, modes=others))
                            mine = _without_bare(mine, run_dir, e.message)
                        step(f"{recipe.framework} {deployment.framework_version} deployed: {_sent(deployment)} in "
                             f"{deployment.seconds:.1f} s", board.name)
                        with lock:  # what each board was sent for this run, beside its results
                            deploys.append(deployment.summary())
                            results.write_atomic(shipped, json.dumps(deploys, indent=1))
                        pushed: dict[str, list] = {}  # a model's sha256 -> its files on the board
                        for cell in mine:
                            spec, ref = sweep.spec(cell), refs.get((cell.model, cell.batch))
                            if spec.sha256 not in pushed:
                                pushed[spec.sha256], _ = link.retrying(functools.partial(
                                    _push_files, board=board, workdir=deployment.workdir, spec=spec, ref=ref,
                                    progress=bars, inputs=sweep.inputs))
                            files = pushed[spec.sha256]
                            stop = _run_cell(cell, sweep.rule, link, deployment, timeout, spec, files, run_dir, done,
                                             lambda: bars.advance(task), earlier[cell.key], outputs=ref is not None,
                                             watch=measures.watch_args(board))
                            step(f"{cell.key.split('/', 1)[1]}: {stop['pairs']} pairs, stopped by {stop['stop']}",
                                 board.name)
                            if sweep.profile:
                                _profile_cell(cell, sweep.profile, link, deployment, timeout, spec, files, run_dir)
                            with lock:
                                stops[cell.key] = stop
                    except (BoardError, RunError) as e:  # the board's other frameworks still run, if it answers
                        failed[recipe.framework] = e
                        for cell in mine:
                            if cell.key not in stops:
                                results.update_cell(run_dir, cell.key, failure=e.message)
                        if isinstance(e, (ConnectionLost, Unreachable)):
                            break
            if failed:
                raise type(next(iter(failed.values())))(
                    "; ".join(f"{f}: {e.message}" for f, e in failed.items()),
                    hint="; ".join(sorted({e.hint for e in failed.values() if e.hint})))
            return len(todo)

        try:
            with progress() as bars:
                group = fan_out(boards, one, parallel=parallel)
        except KeyboardInterrupt:
            results.write_manifest(run_dir, interrupted=True)
            where = escape(str(run_dir))
            console.print(f"[bold red]interrupted[/]: every finished run is kept in {where}; go on with "
                          f"`invoke bench --resume {where}`")
            raise
        return collect(run_dir, records, cells, stops, group, boards, refs, judgement, attempts, sweep.profile)


def _runnable(sweep: Sweep, boards: list[Board], found: dict[str, Platform], modes: dict) -> Sweep:
    """`sweep` without the frameworks that some board's release or Python cannot run, each left out with why."""
    keep = []
    for recipe in sweep.recipes:
        try:
            plan_targets([recipe], boards, found, modes)
            keep.append(recipe)
        except ConfigError as e:
            console.print(f"[yellow]leaving out {recipe.framework}[/]: {escape(e.message)}")
    if not keep:
        raise ConfigError("no framework runs on every board given, with their releases and Pythons",
                          hint="`invoke check` shows what each board gets; pass --framework NAME")
    names = {r.framework for r in keep}
    return dataclasses.replace(sweep, recipes=keep, specs={k: s for k, s in sweep.specs.items() if k[0] in names},
                               cells={b: [c for c in cs if c.framework in names] for b, cs in sweep.cells.items()})


def _without_bare(cells: list[Cell], run_dir: Path, why: str) -> list[Cell]:
    """The cells with their other arms alone, as the manifest now records them (with why); a cell of bare arms only
    is left out, failed."""
    kept = []
    for cell in cells:
        arms = tuple(a for a in cell.arms if a.mode != "bare")
        if arms:
            kept.append(dataclasses.replace(cell, arms=arms))
            results.update_cell(run_dir, cell.key, arms=[a.label for a in arms], without_bare=why)
        else:
            results.update_cell(run_dir, cell.key, failure=why)
    return kept


def _push_files(conn, board: Board, workdir: str, spec: ModelSpec, ref: Reference | None, progress,
                inputs: tuple[tuple[str, Path], ...] = ()) -> list[tuple[str, str]]:
    """The model, and a zoo network's reference input or the user's --input files, on the board: (option, its path
    there, after NAME= for a named input)."""
    files = [("--model", push_file(conn, board, workdir, spec.path, spec.sha256, progress))]
    if ref:
        files.append(("--input", push_file(conn, board, workdir, ref.input_path, ref.input_sha256, progress)))
    for name, path in inputs:
        pushed = push_file(conn, board, workdir, path, file_sha256(path), progress)
        files.append(("--input", f"{name}={pushed}" if name else pushed))
    return files


def _run_cell(cell: Cell, rule: StopRule, link: Link, deployment: Deployment, timeout: float, model: ModelSpec,
              files: list[tuple[str, str]], run_dir: Path, done, advance, earlier: list, outputs: bool = False,
              watch: tuple[str, ...] = ()) -> dict:
    """Pairs of runs until the stopping rule is met, after the pairs an earlier session finished; returns why the
    cell stopped and after how many pairs. The manifest is updated after every run."""
    state = (results.read_manifest(run_dir).get("cells") or {}).get(cell.key) or {}
    started = time.monotonic() - float(state.get("elapsed_s") or 0.0)
    log_ratios = [stats.pair_log_ratio(*(results.timing(doc)["latency_ns"]["p50"]
                                         for arm in cell.arms[:2] for spec, doc in pair if spec.arm == arm.label))
                  for pair in earlier] if len(cell.arms) > 1 else []
    for pair in range(len(earlier), rule.max_pairs + 1):
        reason = _stop(cell, rule, pair, log_ratios, time.monotonic() - started)
        if reason:
            stop = {"stop": reason, "pairs": pair}
            results.update_cell(run_dir, cell.key, **stop, failure=None)
            return stop
        medians = {}
        for run in cell.runs(pair):
            if rule.cooldown_s and (pair or run.position):
                time.sleep(rule.cooldown_s)

            def attempt(conn, run=run):
                arm = next(a for a in cell.arms if a.label == run.arm)
                return _run(deployment.runner(conn, arm, timeout, watch), run, model, files, run_dir, outputs)
            doc, tries = link.retrying(attempt, before_retry=lambda conn: kill_runs(conn, cell.board))
            done(run, doc, tries)
            medians[run.arm] = results.timing(doc)["latency_ns"]["p50"]
            results.update_cell(run_dir, cell.key, pairs=pair, last_run=run.key,
                                elapsed_s=round(time.monotonic() - started, 1))
        advance()
        if len(cell.arms) > 1:
            log_ratios.append(stats.pair_log_ratio(medians[cell.arms[0].label], medians[cell.arms[1].label]))
    raise AssertionError("unreachable: max_pairs always stops a cell")


def _profile_cell(cell: Cell, inferences: int, link: Link, deployment: Deployment, timeout: float,
                  model: ModelSpec, files: list[tuple[str, str]], run_dir: Path) -> None:
    """The cell's profiling pass in each mode, after its timed pairs: per-operator times, kept in raw/ (and
    ops.parquet); never a timed run."""
    for run in cell.profile_runs(inferences):
        arm = next(a for a in cell.arms if a.mode == run.mode)
        link.retrying(lambda conn, run=run, arm=arm: _run(deployment.runner(conn, arm, timeout), run, model, files,
                                                          run_dir),
                      before_retry=lambda conn: kill_runs(conn, cell.board))


def _stop(cell: Cell, rule: StopRule, pairs: int, log_ratios: list[float], elapsed_s: float) -> str | None:
    """Why a cell with `pairs` whole pairs stops now, or None to run another."""
    if pairs >= rule.max_pairs:
        return "max-pairs"
    if len(cell.arms) < 2:  # one mode alone: no comparison, the minimum number of runs
        return "runs" if pairs >= rule.min_pairs else None
    return rule.reason(log_ratios, elapsed_s) if pairs else None


def _run(runner, run: RunSpec, model: ModelSpec, files: list[tuple[str, str]], run_dir: Path,
         outputs: bool = False) -> dict:
    """One run: execute, keep the raw answer, validate it; with `outputs`, the answer holds the last outputs (for the
    agreement check)."""
    args = entrypoint_args(run, model_sha256=model.sha256, run_id=run_dir.name)
    answer = results.save_raw(run_dir, run, runner.execute(args + (["--outputs"] if outputs else []), files))
    what = f"{run.framework} {run.arm} " + ("profiling pass" if run.profile else f"run #{run.pair}")
    return results.check_run(results.parse_answer(answer, board=run.board, what=what), board=run.board, what=what,
                             key=run.key, profile=bool(run.profile))


def collect(run_dir: Path, records: list[tuple[RunSpec, dict]], cells: list[Cell], stops: dict[str, dict],
            group: GroupResult, boards: list[Board], refs: dict[tuple[str, int], Reference] | None = None,
            judgement: Judgement = DEFAULTS, attempts: dict[str, int] | None = None, profile: int = 0) -> Path:
    """Normalize what came back, judge each comparison, and say plainly what is missing and how to go on."""
    records.sort(key=lambda rec: (rec[0].board, rec[0].framework, rec[0].pair, rec[0].position))
    missing = [c.key for c in cells if c.key not in stops]
    for cell in cells:  # each cell of a board that failed as a whole (unreachable, busy) says why
        if cell.key in missing and cell.board in group.failed:
            state = (results.read_manifest(run_dir).get("cells") or {}).get(cell.key) or {}
            if not state.get("failure"):
                results.update_cell(run_dir, cell.key, failure=group.failed[cell.board].message)
    if records:
        runs, samples = results.normalize(records, run_id=run_dir.name,
                                          arch_of={b.name: b.arch.value for b in boards},
                                          references={k: r.output for k, r in (refs or {}).items()},
                                          attempts=attempts)
        results.write_tables(run_dir, runs, samples, results.sensor_table(records), results.histogram_table(records))
        console.print(report.mode_table(comparison(run_dir, judgement)))
        console.print(report.measures_table(runs))
        for note in report.unavailable_notes(runs):
            console.print(f"  {escape(note)}", soft_wrap=True)  # one line to grep, however wide
        if runs.groupby(["board", "framework", "model"])[["threads", "batch"]].nunique().max(axis=None) > 1:
            console.print(report.sweep_table(runs))
        if refs or runs["framework"].nunique() > 1:
            console.print(report.framework_table(runs))
        cost = runs["sampler_cost"].dropna()
        if len(cost):  # the watcher's price, measured in the runs themselves: on-windows against off-windows
            console.print(f"sensor sampler cost: median {cost.median():+.2%} of latency over {len(cost)} runs"
                          + (" [bold red](above 0.5%)[/]" if cost.median() > 0.005 else ""))
        for r in runs[runs["attempts"] > 1].itertuples():
            console.print(escape(f"note: {r.board} {r.arm} run #{r.pair} took {r.attempts} attempts (the connection "
                                 "dropped)"), soft_wrap=True)
        for r in runs[runs["throttled"].fillna(False)].itertuples():
            console.print("[bold red]warning:[/] " + escape(f"{r.board} {r.arm} run #{r.pair} was throttled "
                                                            f"({r.throttle_evidence}); its cell is invalid"),
                          soft_wrap=True)
        for r in runs[runs["agrees"].eq(False).fillna(False)].itertuples():
            console.print("[bold red]warning:[/] " + escape(
                f"{r.board} {r.framework} {r.mode} does not reproduce PyTorch's {r.model}: max |diff| "
                f"{r.max_abs_diff:.3g}, top-1 {r.top1} (PyTorch {r.top1_ref})"), soft_wrap=True)
    if profile:
        _collect_profiles(run_dir, cells, profile)
    _report_failures(group, "benchmark")
    results.write_manifest(run_dir, complete=not missing, missing=missing, interrupted=False,
                           failures={k: str(v) for k, v in group.failed.items()})
    if records:
        console.print(f"results: {escape(str(run_dir))}/results.parquet (load with pandas.read_parquet)",
                      soft_wrap=True)
        try:
            write_report(run_dir)
        except Exception as e:  # noqa: BLE001 - the results are kept whatever the figures do
            console.print(f"[bold red]warning:[/] the report could not be written ({escape(repr(e))}); the results "
                          f"are whole: `invoke report --run {escape(str(run_dir))}` tries again")
    if missing:
        raise RunError(f"INCOMPLETE: {len(missing)} of {len(cells)} cells did not finish "
                       f"({', '.join(group.failed) or 'see above'}); the {len(records)} runs that did are in "
                       f"{run_dir}", hint=f"fix the failing boards, then run only what is missing: "
                                          f"invoke bench --resume {run_dir}")
    if records and runs["agrees"].eq(False).any():
        raise RunError(f"a framework does not reproduce PyTorch's output (see the warnings above); "
                       f"the timings are in {run_dir}", hint="the conversion or the runtime changed the function")
    return run_dir


def _collect_profiles(run_dir: Path, cells: list[Cell], inferences: int) -> None:
    """ops.parquet from every profiling pass that came back, its top operators shown, and why a runtime has none."""
    found = results.profiles(run_dir, [run for cell in cells for run in cell.profile_runs(inferences)])
    ops = results.ops_table(found, run_id=run_dir.name)
    results.write_atomic(run_dir / "ops.parquet", ops.to_parquet(index=False))
    if len(ops):
        console.print(report.ops_top(ops))
    for reason in sorted({f"{spec.framework}: {doc['profile'].get('reason')}" for spec, doc in found
                          if doc["profile"].get("reason")}):
        console.print(f"  no operator profile from {escape(reason)}")


def comparison(run_dir: Path, judgement: Judgement = DEFAULTS) -> pd.DataFrame:
    """The judged comparisons of a run directory: each cell's first arm against its second (and its other
    arms against the second too), with why the cell stopped."""
    manifest = results.read_manifest(run_dir)
    return report.compare_arms(_runs(run_dir, manifest), results.current_cells(manifest),
                               equivalence=judgement.equivalence, max_spread=judgement.max_spread,
                               min_pairs=judgement.min_pairs)


def _judgement(manifest: dict) -> Judgement:
    """How the run was judged: its own --equivalence, --max-spread and --min-pairs (the defaults before they were
    kept)."""
    request = manifest.get("request") or {}
    return Judgement(**{k: type(getattr(DEFAULTS, k))(request[k]) for k in ("equivalence", "max_spread", "min_pairs")
                        if request.get(k) is not None})


def _older(table: pd.DataFrame) -> pd.DataFrame:
    """What a table of an older edgeorch lacked: arms (each run's mode) and cells (board/framework-model)."""
    if "arm" not in table:
        table["arm"] = table["mode"]
    if "cell" not in table or table["cell"].isna().all():
        table["cell"] = table["board"] + "/" + table["framework"] + "-" + table["model"]
    return table


def _runs(run_dir: Path, manifest: dict) -> pd.DataFrame:
    """The runs table of a run directory, as this edgeorch reads it (what judging needs, and no more)."""
    if not (run_dir / "results.parquet").exists():
        raise RunError(f"{run_dir} has no results table (no run finished)", hint="rerun the bench")
    runs = results.current_modes(_older(pd.read_parquet(run_dir / "results.parquet")), manifest)
    for col in set(results.COLUMNS) - set(runs):
        runs[col] = {"threads": 0, "batch": 1, "framework_options": "{}", "input_shapes": "{}"}.get(col, np.nan)
    return runs


def _tables(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """runs, samples, latency histograms, sensors and operators of a run directory (the last two empty or None where
    it has none)."""
    manifest = results.read_manifest(run_dir)
    runs = _runs(run_dir, manifest)
    samples = _older(pd.read_parquet(run_dir / "samples.parquet"))
    # before summaries, samples.parquet held every inference: their histograms are made here
    histograms = (pd.read_parquet(run_dir / "histograms.parquet") if (run_dir / "histograms.parquet").exists()
                  else results.histograms_of(samples))
    sensors = (pd.read_parquet(run_dir / "sensors.parquet") if (run_dir / "sensors.parquet").exists()
               else pd.DataFrame(columns=results.SENSOR_COLUMNS))
    ops = pd.read_parquet(run_dir / "ops.parquet") if (run_dir / "ops.parquet").exists() else None
    for table in (samples, histograms, sensors, *([ops] if ops is not None else [])):
        results.current_modes(table, manifest)
    if "t_s" not in samples:
        samples["t_s"] = np.nan
    return runs, samples, histograms, sensors, ops


def _macs(models) -> tuple[dict[str, int], str]:
    """MACs per image of the zoo's networks among `models` (as built here), and why there are none to plot."""
    known = [m for m in sorted(set(models)) if m in zoo.NETWORKS]
    if len(known) < 2:
        return {}, (f"This run measured {len(known)} network of the zoo at batch 1: the fit needs two or more "
                    "(e.g. --model squeezenet1_1,mobilenet_v2,resnet18).")
    try:
        return {m: zoo.count_macs(zoo.build(m), zoo.NETWORKS[m].input_shape) for m in known}, ""
    except ImportError as e:  # the zoo is built with PyTorch, an optional dependency of the host
        return {}, f"MACs are counted with PyTorch, which is not installed here ({e})."


def _changes(before: Path, after: Path) -> pd.DataFrame:
    """Each matched cell's change from `before` to `after`, judged with `after`'s own band and spread limit."""
    judgement = _judgement(results.read_manifest(after))
    before_runs, after_runs = (_runs(d, results.read_manifest(d)) for d in (before, after))
    return report.compare_runs(before_runs, after_runs, history=results.history(),
                               equivalence=judgement.equivalence, max_spread=judgement.max_spread)


def write_report(run_dir: Path, against: Path | None = None, changes: pd.DataFrame | None = None) -> Path:
    """results/<run-id>/report.html: the run's verdicts, figures and provenance in one offline file (and its
    change from the run `against`, given as `changes` where already judged)."""
    manifest = results.read_manifest(run_dir)
    runs, samples, histograms, sensors, ops = _tables(run_dir)
    if against is not None and changes is None:
        changes = _changes(against, run_dir)
    macs, why = _macs(runs.loc[runs["batch"] == 1, "model"])
    from .report import page  # matplotlib, imported by the one task step that draws: a refusal answers at once
    text = page.render(run_dir, manifest=manifest, runs=runs, samples=samples, histograms=histograms,
                       sensors=sensors, ops=ops,
                       comparison=comparison(run_dir, _judgement(manifest)), notes=report.unavailable_notes(runs),
                       macs=macs, why_no_macs=why, changes=changes, against=against.name if against else None)
    path = run_dir / "report.html"
    results.write_atomic(path, text)
    console.print(f"report: {escape(str(path))} (opens offline in any browser)", soft_wrap=True)
    return path


def compare_runs(before: Path, after: Path) -> pd.DataFrame:
    """Print each matched cell's change from run `before` to run `after`, and write it into the report of `after`."""
    changes = _changes(before, after)
    if changes.empty:
        raise RunError(f"no cell of {after.name} was measured by {before.name} too (same board, framework, model, "
                       "threads, batch, options, input shapes)", hint="compare two runs of the same bench")
    console.print(report.change_table(changes, before.name, after.name))
    write_report(after, before, changes)
    return changes


def show_results(run_dir: Path) -> None:
    """Print the comparison table of a finished run and whether it is complete."""
    manifest = results.read_manifest(run_dir)
    console.print(report.mode_table(comparison(run_dir, _judgement(manifest))))
    if not manifest.get("complete"):
        console.print(f"[bold red]INCOMPLETE[/]: missing cells {escape(str(manifest.get('missing')))}")


def agree(inventory: Inventory, host: str, *, framework: str, model: str) -> Path:
    """Feed a zoo network's reference input through the frameworks on each board, in both modes, and compare
    the output with PyTorch's: a bench of one inference, whose agreement columns are the point."""
    if reference(model) is None:
        raise ConfigError(f"the agreement check needs a zoo network, not {model!r}",
                          hint=f"use one of {', '.join(zoo.NETWORKS)} (PyTorch gives the reference)")
    return bench(inventory, host, framework=framework, model=model, iterations=1, warmup=0,
                 rule=StopRule(min_pairs=1, max_pairs=1))
