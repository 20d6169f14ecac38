"""A sweep planned before anything is built or sent: its frameworks, models and cells per board, each cell's arms,
and the stopping rule. Models are converted only once the plan is to be run (a dry run converts nothing)."""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bench.signature import InputError, check_inputs
from .cache import cache_dir, file_sha256, write_atomic
from .console import Reporter
from .errors import ConfigError
from .inventory import Board
from .models import EAGER, INT8, ModelSpec, model_name, one_image, resolve, zoo
from .plan import (
    Arm,
    Cell,
    StopRule,
    bench_cell,
    mode_arms,
    parse_input_shapes,
    parse_inputs,
    parse_modes,
    split_models,
)
from .recipes import Recipe, get_recipe, load_recipes
from .releases import Platform
from .request import Request
from .targets import plan_targets
from .transport import GroupResult


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
    write_atomic(path, buf.getvalue())
    return Reference(network=network, input_path=path, input_sha256=file_sha256(path),
                     output=zoo.reference_output(network, batch))


@dataclass(frozen=True, kw_only=True)
class Sweep:
    """A planned sweep: per board its cells, the stopping rule, the frameworks and their model files."""
    cells: dict[str, list[Cell]]
    rule: StopRule
    recipes: list[Recipe]
    named: dict[tuple[str, str, int], str]  # (framework, model name, batch) -> the --model that names it
    model: str           # --model as given (a comma list sweeps several)
    batches: tuple[int, ...]
    options: tuple[str, ...]
    inputs: tuple[tuple[str, Path], ...] = ()  # --input: (input name, or '' for the first, local .npy file)
    every: bool = False  # --framework all: those a board's release or Python cannot run are left out, not refused
    profile: int = 0     # > 0: after its pairs, each cell's profiling pass of that many inferences per mode
    shapes: tuple[str, ...] = ()  # --input-shape
    specs: dict[tuple[str, str, int], ModelSpec] = dataclasses.field(default_factory=dict)  # the files, once made
    left_out: dict[tuple[str, int], str] = dataclasses.field(default_factory=dict)  # (framework, batch) -> why

    def every_cell(self) -> list[Cell]:
        """The cells of all its boards, board after board."""
        return [cell for board_cells in self.cells.values() for cell in board_cells]

    def spec(self, cell: Cell) -> ModelSpec:
        return self.specs[(cell.framework, cell.model, cell.batch)]

    def references(self) -> dict[tuple[str, int], Reference]:
        """(model, batch) -> the agreement reference of each zoo network swept; none for the user's own --input."""
        if self.inputs:
            return {}
        found = {(m, b): reference(m, b) for _, m, b in self.named}
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


def _names(recipes: list[Recipe], models: tuple[str, ...], batches: tuple[int, ...],
           skip: dict[tuple[str, int], str]) -> dict[tuple[str, str, int], str]:
    """(framework, model name, batch) -> the --model of each model at each batch but the (framework, batch) `skip`
    names, nothing converted; ConfigError when two models of a sweep share a name."""
    named: dict[tuple[str, str, int], str] = {}
    for recipe in recipes:
        seen: dict[str, str] = {}
        for model in models:
            for batch in (b for b in batches if (recipe.framework, b) not in skip):
                name = model_name(model, recipe.model_format, batch)
                if seen.setdefault(name, model) != model:
                    raise ConfigError(f"--model: {seen[name]} and {model} are both named {name}",
                                      hint="rename one of the files: results name each model by its file's stem")
                named[(recipe.framework, name, batch)] = model
    return named


def resolve_models(sweep: Sweep, out: Reporter) -> Sweep:
    """The sweep with each framework's file of each model at each batch (the zoo's converted now), each refused,
    before anything is built or sent, if the boards would refuse its inputs (with their message)."""
    specs = {(framework, name, batch): resolve(model, get_recipe(framework).model_format, cache_dir=cache_dir(),
                                               log=out.step, batch=batch)
             for (framework, name, batch), model in sweep.named.items()}
    _check_inputs(specs, parse_input_shapes(sweep.shapes), sweep.inputs)
    return dataclasses.replace(sweep, specs=specs)


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
    parse_input_shapes(input_shapes)
    # --framework all leaves out the batches a framework cannot take; a framework named is refused for them
    left_out = {(r.framework, n): why for r in recipes for n in batches
                if framework == "all" and (why := one_image(r.model_format, n))}
    named = _names(recipes, split_models(model, lambda m: Path(m).expanduser().exists()), batches, left_out)
    cells = {b.name: [bench_cell(b, framework=f, model=m, arms=cell_arms, iterations=iterations, warmup=warmup,
                                 threads=t, min_time=min_time, options=options, name=name, input_shapes=input_shapes,
                                 batch=n)
                      for f, m, n in named for t in threads
                      for cell_arms, name in zip(arms, names or ("",) * len(arms))] for b in boards}
    return Sweep(cells=cells, rule=rule, recipes=recipes, named=named, model=model, batches=batches, options=options,
                 inputs=_input_files(inputs), every=framework == "all", profile=profile, shapes=input_shapes,
                 left_out=left_out)


def runnable(sweep: Sweep, boards: list[Board], found: dict[str, Platform], modes: dict, out: Reporter) -> Sweep:
    """`sweep` without the frameworks that some board's release or Python cannot run, each left out with why."""
    keep = []
    for recipe in sweep.recipes:
        try:
            plan_targets([recipe], boards, found, modes)
            keep.append(recipe)
        except ConfigError as e:
            out.note(f"leaving out {recipe.framework}", e.message)
    if not keep:
        raise ConfigError("no framework runs on every board given, with their releases and Pythons",
                          hint="`invoke check` shows what each board gets; pass --framework NAME")
    names = {r.framework for r in keep}
    return dataclasses.replace(sweep, recipes=keep, named={k: m for k, m in sweep.named.items() if k[0] in names},
                               cells={b: [c for c in cs if c.framework in names] for b, cs in sweep.cells.items()})


# Docker's defaults changed one at a time, each a known source of overhead (measurement-facts.md)
KNOBS = {
    "seccomp=unconfined": ("--security-opt", "seccomp=unconfined"),
    "network=host": ("--network", "host"),
    "ipc=host": ("--ipc", "host"),
    "no-cpu-limits": ("--cpu-quota", "-1", "--cpu-shares", "1024"),
}


def _native_runs(framework: str, boards: list[Board], found: GroupResult[Platform], out: Reporter) -> bool:
    """Whether every board's own Python can run `framework` (explain's userland arm); says why not if not."""
    try:
        plan_targets(_recipes(framework), boards, found.succeeded, {f: ("native",) for f in framework.split(",")})
    except ConfigError as e:
        out.note("no native arm", f"(the userland's part of Docker's cost) {e.message}")
        return False
    return not found.failed


def arms(request: Request, boards: list[Board], found: GroupResult[Platform] | None,
         out: Reporter) -> tuple[list[tuple[Arm, ...]], tuple[str, ...]]:
    """The arms of each cell a task compares, and the names that tell a board's cells apart: bench (and compare,
    agree) its modes; calibrate each mode against itself; explain Docker with each knob against bare metal (and
    the board's own Python where `found`, the boards' platforms, says it runs the framework; a dry run asks none)."""
    if request.task == "calibrate":
        modes = parse_modes(request.mode)
        return [(Arm(label=f"{m}-A", mode=m), Arm(label=f"{m}-B", mode=m)) for m in modes], modes
    if request.task == "explain":
        native = found is None or _native_runs(request.framework, boards, found, out)
        return [(Arm(label="docker", mode="docker"), Arm(label="bare", mode="bare"),
                 *(Arm(label=f"docker+{name}", mode="docker", docker_args=args) for name, args in KNOBS.items()),
                 Arm(label="docker+model-on-bind-mount", mode="docker", bind_files=True),
                 *([Arm(label="native", mode="native")] if native else []))], ()
    return [mode_arms(parse_modes(request.mode))], ()


def plan(request: Request, boards: list[Board], found: GroupResult[Platform] | None, out: Reporter) -> Sweep:
    """The sweep a request asks for on `boards` (their platforms `found`), nothing converted yet."""
    cell_arms, names = arms(request, boards, found, out)
    sweep = plan_sweep(boards, framework=request.framework, model=request.model, arms=cell_arms, rule=request.rule,
                      iterations=request.iterations, warmup=request.warmup, threads=request.threads,
                      min_time=request.min_time, batch=request.batch, options=request.options, names=names,
                      base_image=request.base_image, input_shapes=request.input_shapes, inputs=request.inputs,
                      profile=request.profile)
    for (framework, batch), why in sweep.left_out.items():
        out.note(f"leaving out {framework} at --batch {batch}", why)
    return sweep
