"""The flows behind the tasks: inventory -> plan -> build -> deploy -> run -> collect -> normalize -> report."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import images, report, results, stats, zoo
from .cache import cache_dir, file_sha256
from .console import console
from .deploy import Deployment, board_facts, deploy, push_file
from .errors import BoardError, ConfigError, RunError
from .images import ImageSpec
from .inventory import Board, Inventory
from .models import EAGER, INT8, ModelSpec, resolve
from .plan import MODES, Arm, Cell, RunSpec, StopRule, bench_cell, describe, images_needed, mode_arms, parse_modes
from .recipes import IMAGES, Recipe, get_recipe, load_base, load_recipes
from .runners import entrypoint_args
from .transport import GroupResult, connect, fan_out


def _progress() -> Progress:
    # Tasks carry their unit: transfers count MB, run tasks count runs.
    return Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed:.1f}/{task.total:.1f} {task.fields[unit]}"),
                    TimeElapsedColumn(), console=console)


def _report_failures(group: GroupResult, what: str) -> None:
    for name, err in group.failed.items():
        console.print(f"[bold red]{name}: {what} failed[/]\n{err}")


def inventory_table(inventory: Inventory) -> Table:
    """The boards of the inventory, one row each."""
    t = Table(title=f"Boards in {inventory.path}")
    for col in ("name", "address", "arch", "groups", "frameworks", "workdir", "sim"):
        t.add_column(col)
    for b in inventory.boards:
        t.add_row(b.name, b.address, b.arch.value, ", ".join(b.groups), ", ".join(b.frameworks),
                  b.workdir, "yes" if b.sim else "")
    return t


def check(inventory: Inventory, host: str) -> bool:
    """Report for each board: SSH, arch, Docker, Python, disk, sensors. True if all are fine."""
    boards = inventory.select(host)

    def one(board: Board) -> dict:
        with connect(board) as conn:
            return board_facts(conn, board)

    group = fan_out(boards, one)
    t = Table(title="Board check")
    for col in ("board", "ssh", "arch", "docker", "python", "numpy", "free disk", "sensors", "problems"):
        t.add_column(col)
    for b in boards:
        if b.name in group.failed:
            t.add_row(b.name, "[red]no[/]", b.arch.value, "", "", "", "", "", str(group.failed[b.name]))
            continue
        r = group.succeeded[b.name]
        t.add_row(b.name, "ok", b.arch.value if r["arch_ok"] else f"[red]{r['arch_found']}[/]",
                  r["docker"] or "[red]none[/]", r["python"] or "[red]none[/]", r["numpy"] or "-",
                  f"{r['disk_free_gb']} GB" if r["disk_free_gb"] is not None else "?", r["sensors"],
                  "; ".join(r["problems"]) or "[green]none[/]")
    console.print(t)
    return not group.failed and not any(r["problems"] for r in group.succeeded.values())


def build(frameworks: list[str], boards: list[Board],
          base_image: str | None = None) -> dict[tuple[str, str], tuple[ImageSpec, Path]]:
    """Every image the boards need, built (or found) and exported for transfer."""
    client = images.engine()
    out = {}
    needed = images_needed(boards, frameworks)
    recipes = {f: get_recipe(f) for f in frameworks}
    for base in sorted({r.base for r in recipes.values() if not r.base_image_from_user}):
        # every arch's base first: their debootstraps run side by side
        arches = sorted({arch for f, arch in needed if recipes[f].base == base}, key=lambda a: a.value)
        images.ensure_base_images(client, arches, load_base(IMAGES / base))
    for framework, arch in needed:
        spec = images.ensure_framework_image(client, recipes[framework], arch, base_image)
        out[(framework, arch.value)] = (spec, images.export_image(client, spec))
    return out


def deploy_boards(inventory: Inventory, host: str, frameworks: list[str] | None = None,
                  parallel: bool = True, base_image: str | None = None) -> GroupResult[list[Deployment]]:
    """Deploy frameworks (default: each board's own list) to the boards; errors per board."""
    boards = inventory.select(host)
    wanted = {b.name: list(frameworks or b.frameworks) for b in boards}
    for names in wanted.values():
        for name in names:
            get_recipe(name)  # unknown framework: fail before any work
    built = build(sorted({f for names in wanted.values() for f in names}), boards, base_image)

    def one(board: Board) -> list[Deployment]:
        with connect(board) as conn:
            return [deploy(conn, board, *built[(f, board.arch.value)], progress) for f in wanted[board.name]]

    with _progress() as progress:
        group = fan_out(boards, one, parallel=parallel)
    for name, deps in group.succeeded.items():
        for d in deps:
            sent = ", ".join(d.transferred) or "nothing (already there)"
            console.print(f"[green]{name}[/]: {d.image.framework} {d.framework_version} ready in both "
                          f"modes; sent {sent}" + "".join(f"\n  note: {n}" for n in d.notes))
    _report_failures(group, "deploy")
    if group.failed:
        raise BoardError(f"deploy failed on {len(group.failed)} of {len(boards)} boards: "
                         f"{', '.join(group.failed)}", hint="fix what is reported above and rerun; "
                         "boards that succeeded are ready")
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
    np.save(path, zoo.reference_input(network, batch=batch))
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


@dataclass(frozen=True, kw_only=True)
class Sweep:
    """A planned sweep: per board its cells, the stopping rule, the frameworks and their model files."""
    cells: dict[str, list[Cell]]
    rule: StopRule
    recipes: list[Recipe]
    specs: dict[str, ModelSpec]
    model: str
    batch: int
    options: tuple[str, ...]


def plan_sweep(boards: list[Board], *, framework: str, model: str, arms: list[tuple[Arm, ...]], rule: StopRule,
               iterations: int, warmup: int, threads: int, min_time: float, batch: int = 1,
               options: tuple[str, ...] = (), names: tuple[str, ...] = (), base_image: str | None = None) -> Sweep:
    """The cells of a sweep: every framework of `framework` x model x board, each compared across `arms`
    (one cell per tuple of arms; `names` tell the cells of one board apart)."""
    recipes = _recipes(framework)
    if framework == "all":  # the frameworks that run on every board given (TensorRT only with its base image)
        recipes = [r for r in recipes if not any(r.why_not(b.arch) for b in boards)
                   and (base_image or not r.base_image_from_user)]
    if not recipes:
        raise ConfigError(f"no framework to run: --framework {framework!r} names none that runs on every board given",
                          hint="pass --framework NAME or a comma list; `invoke matrix` shows what runs where")
    for recipe in recipes:
        _require_support(recipe, boards)
    specs = {r.framework: resolve(model, r.model_format, cache_dir=cache_dir(), log=console.print, batch=batch)
             for r in recipes}
    cells = {b.name: [bench_cell(b, framework=r.framework, model=specs[r.framework].name, arms=cell_arms,
                                 iterations=iterations, warmup=warmup, threads=threads, min_time=min_time,
                                 options=options, name=name)
                      for r in recipes for cell_arms, name in zip(arms, names or ("",) * len(arms))] for b in boards}
    return Sweep(cells=cells, rule=rule, recipes=recipes, specs=specs, model=model, batch=batch, options=options)


def bench(inventory: Inventory, host: str, *, framework: str, model: str, mode: str = "both",
          iterations: int = 50, warmup: int = 5, rule: StopRule = DEFAULT_RULE, min_time: float = 0.0,
          judgement: Judgement = DEFAULTS, threads: int = 0, batch: int = 1, options: tuple[str, ...] = (),
          parallel: bool = False, dry_run: bool = False, timeout: float = 3600,
          base_image: str | None = None) -> Path | None:
    """Benchmark `model` with each framework of `framework` (a comma list) on the boards, Docker against bare
    metal pair after pair until the stopping rule is met; returns results/<run-id>/.

    A zoo network gets its reference input, and every run's output is compared with PyTorch's.
    """
    boards = inventory.select(host)
    sweep = plan_sweep(boards, framework=framework, model=model, arms=[mode_arms(parse_modes(mode))], rule=rule,
                       iterations=iterations, warmup=warmup, threads=threads, min_time=min_time, batch=batch,
                       options=options, base_image=base_image)
    return run_sweep(sweep, boards, judgement=judgement, parallel=parallel, dry_run=dry_run, timeout=timeout,
                     base_image=base_image)


def calibrate(inventory: Inventory, host: str, *, framework: str, model: str, mode: str = "both",
              iterations: int = 50, warmup: int = 5, rule: StopRule = DEFAULT_RULE, min_time: float = 0.0,
              judgement: Judgement = DEFAULTS, threads: int = 0, timeout: float = 3600,
              dry_run: bool = False) -> Path | None:
    """The A/A test: each mode against itself, interleaved exactly like a real comparison. Its verdict must be
    equivalent or inconclusive; its spread is the board's noise floor."""
    modes = parse_modes(mode)
    arms = [(Arm(label=f"{m}-A", mode=m), Arm(label=f"{m}-B", mode=m)) for m in modes]
    boards = inventory.select(host)
    sweep = plan_sweep(boards, framework=framework, model=model, arms=arms, rule=rule, iterations=iterations,
                       warmup=warmup, threads=threads, min_time=min_time, names=modes)
    run_dir = run_sweep(sweep, boards, judgement=judgement, dry_run=dry_run, timeout=timeout)
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
            dry_run: bool = False) -> Path | None:
    """Why Docker differs: the Docker side rerun with one knob changed at a time, every arm in every round, each
    knob's ratio to bare metal with its own interval, next to Docker's defaults."""
    arms = (Arm(label="docker", mode="docker"), Arm(label="bare", mode="bare"),
            *(Arm(label=f"docker+{name}", mode="docker", docker_args=args) for name, args in KNOBS.items()),
            Arm(label="docker+model-on-bind-mount", mode="docker", bind_files=True))
    boards = inventory.select(host)
    sweep = plan_sweep(boards, framework=framework, model=model, arms=[arms], rule=rule, iterations=iterations,
                       warmup=warmup, threads=threads, min_time=min_time)
    run_dir = run_sweep(sweep, boards, judgement=judgement, dry_run=dry_run, timeout=timeout)
    if run_dir:
        console.print(report.explain_table(comparison(run_dir, judgement)))
    return run_dir


def run_sweep(sweep: Sweep, boards: list[Board], *, judgement: Judgement = DEFAULTS, parallel: bool = False,
              dry_run: bool = False, timeout: float = 3600, base_image: str | None = None) -> Path | None:
    """Execute a planned sweep: build, deploy, run every cell pair after pair until its stopping rule says
    enough, then normalize and judge what came back."""
    cells = [cell for board_cells in sweep.cells.values() for cell in board_cells]
    if dry_run:
        for line in describe(cells, sweep.rule):
            console.print(line)
        return None
    ref = reference(sweep.model, sweep.batch)
    built = build([r.framework for r in sweep.recipes], boards, base_image)
    run_dir = results.new_run_dir()
    results.write_manifest(run_dir, complete=False, frameworks=[r.framework for r in sweep.recipes],
                           model=sweep.model, batch=sweep.batch, options=list(sweep.options),
                           models={f: {"name": s.name, "sha256": s.sha256} for f, s in sweep.specs.items()},
                           boards=[b.name for b in boards], rule=dataclasses.asdict(sweep.rule),
                           cells={c.key: {"arms": [a.label for a in c.arms], "stop": None, "pairs": 0}
                                  for c in cells})
    console.print(f"results go to {run_dir}")
    records: list[tuple[RunSpec, dict]] = []
    stops: dict[str, dict] = {}
    lock = threading.Lock()

    def done(run: RunSpec, doc: dict) -> None:
        with lock:
            records.append((run, doc))

    def one(board: Board) -> int:
        failed = {}
        with connect(board) as conn:
            task = progress.add_task(f"{board.name}: pairs", total=sum(
                sweep.rule.max_pairs for _ in sweep.cells[board.name]), unit="pairs")
            for recipe in sweep.recipes:
                try:
                    image, export = built[(recipe.framework, board.arch.value)]
                    modes = tuple(m for m in MODES if any(
                        a.mode == m for c in sweep.cells[board.name] for a in c.arms))
                    deployment = deploy(conn, board, image, export, progress, modes)
                    spec = sweep.specs[recipe.framework]
                    files = {"--model": push_file(conn, board, deployment.workdir, spec.path, spec.sha256, progress)}
                    if ref:
                        files["--input"] = push_file(conn, board, deployment.workdir, ref.input_path,
                                                     ref.input_sha256, progress)
                    for cell in (c for c in sweep.cells[board.name] if c.framework == recipe.framework):
                        runners = {a.label: deployment.runner(conn, a, timeout) for a in cell.arms}
                        stop = _run_cell(cell, sweep.rule, runners, spec, files, run_dir, done,
                                         lambda: progress.advance(task))
                        with lock:
                            stops[cell.key] = stop
                except (BoardError, RunError) as e:  # the board's other frameworks still run
                    failed[recipe.framework] = e
        if failed:
            raise BoardError("; ".join(f"{f}: {e.message}" for f, e in failed.items()),
                             hint="; ".join(sorted({e.hint for e in failed.values() if e.hint})))
        return len(stops)

    with _progress() as progress:
        group = fan_out(boards, one, parallel=parallel)
    return collect(run_dir, records, cells, stops, group, boards, ref, judgement)


def _run_cell(cell: Cell, rule: StopRule, runners: dict, model: ModelSpec, files: dict[str, str], run_dir: Path,
              done, advance) -> dict:
    """Pairs of runs until the stopping rule is met; returns why the cell stopped and after how many pairs."""
    log_ratios: list[float] = []
    started = time.monotonic()
    for pair in range(rule.max_pairs):
        latencies = {}
        for run in cell.runs(pair):
            if rule.cooldown_s and (pair or run.position):
                time.sleep(rule.cooldown_s)
            doc = _run(runners[run.arm], run, model, files, run_dir)
            done(run, doc)
            latencies[run.arm] = np.asarray(doc["timing"]["latencies_ns"], dtype=np.float64)
        advance()
        if len(cell.arms) < 2:  # one mode alone: no comparison, the minimum number of runs
            if pair + 1 >= rule.min_pairs:
                return {"stop": "runs", "pairs": pair + 1}
            continue
        log_ratios.append(stats.pair_log_ratio(latencies[cell.arms[0].label], latencies[cell.arms[1].label]))
        reason = rule.reason(log_ratios, time.monotonic() - started)
        if reason:
            return {"stop": reason, "pairs": pair + 1}
    return {"stop": "max-pairs", "pairs": rule.max_pairs}


def _run(runner, run: RunSpec, model: ModelSpec, files: dict[str, str], run_dir: Path) -> dict:
    """One run: execute, keep the raw answer, validate it."""
    args = entrypoint_args(run, model_sha256=model.sha256, run_id=run_dir.name)
    answer = runner.execute(args + (["--outputs"] if "--input" in files else []), files)
    results.save_raw(run_dir, run, answer)
    return results.parse_answer(answer, board=run.board, what=f"{run.framework} {run.arm} run #{run.pair}")


def collect(run_dir: Path, records: list[tuple[RunSpec, dict]], cells: list[Cell], stops: dict[str, dict],
            group: GroupResult, boards: list[Board], ref: Reference | None = None,
            judgement: Judgement = DEFAULTS) -> Path:
    """Normalize what came back, judge each comparison, and say plainly what is missing."""
    records.sort(key=lambda rec: (rec[0].board, rec[0].framework, rec[0].pair, rec[0].position))
    missing = [c.key for c in cells if c.key not in stops]
    results.write_manifest(run_dir, cells={c.key: {"arms": [a.label for a in c.arms],
                                                   **stops.get(c.key, {"stop": None, "pairs": 0})} for c in cells})
    if records:
        runs, samples = results.normalize(records, run_id=run_dir.name,
                                          arch_of={b.name: b.arch.value for b in boards},
                                          reference=None if ref is None else ref.output)
        results.write_tables(run_dir, runs, samples)
        console.print(report.mode_table(comparison(run_dir, judgement)))
        if ref or runs["framework"].nunique() > 1:
            console.print(report.framework_table(runs))
        cost = runs["sampler_cost"].dropna()
        if len(cost):  # the watcher's price, measured in the runs themselves: on-windows against off-windows
            console.print(f"sensor sampler cost: median {cost.median():+.2%} of latency over {len(cost)} runs"
                          + (" [bold red](above 0.5%)[/]" if cost.median() > 0.005 else ""))
        for r in runs[runs["throttled"].fillna(False)].itertuples():
            console.print(f"[bold red]warning:[/] {r.board} {r.arm} run #{r.pair} was throttled "
                          f"({r.throttle_evidence}); its cell is invalid")
        for r in runs[runs["agrees"].eq(False).fillna(False)].itertuples():
            console.print(f"[bold red]warning:[/] {r.board} {r.framework} {r.mode} does not reproduce PyTorch's "
                          f"{ref.network}: max |diff| {r.max_abs_diff:.3g}, top-1 {r.top1} (PyTorch {r.top1_ref})")
    _report_failures(group, "benchmark")
    results.write_manifest(run_dir, complete=not missing, missing=missing,
                           failures={k: str(v) for k, v in group.failed.items()})
    console.print(f"results: {run_dir}/results.parquet (load with pandas.read_parquet)")
    if missing:
        raise RunError(f"INCOMPLETE: {len(missing)} of {len(cells)} cells did not finish "
                       f"({', '.join(group.failed) or 'see above'}); the {len(records)} runs that did are in "
                       f"{run_dir}", hint="fix the failing boards and rerun the bench")
    if records and runs["agrees"].eq(False).any():
        raise RunError(f"a framework does not reproduce PyTorch's {ref.network} (see the warnings above); "
                       f"the timings are in {run_dir}", hint="the conversion or the runtime changed the function")
    return run_dir


def comparison(run_dir: Path, judgement: Judgement = DEFAULTS) -> pd.DataFrame:
    """The judged comparisons of a run directory: each cell's first arm against its second (and its other
    arms against the second too), with why the cell stopped."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    runs = pd.read_parquet(run_dir / "results.parquet")
    samples = pd.read_parquet(run_dir / "samples.parquet")
    for table in (runs, samples):  # results of an edgeorch before arms: each mode was its own arm
        if "arm" not in table:
            table["arm"] = table["mode"]
    return report.compare_arms(runs, samples, manifest.get("cells") or {}, equivalence=judgement.equivalence,
                               max_spread=judgement.max_spread, min_pairs=judgement.min_pairs)


def show_results(run_dir: Path) -> None:
    """Print the comparison table of a finished run and whether it is complete."""
    run_dir = Path(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    if not (run_dir / "results.parquet").exists():
        raise RunError(f"{run_dir} has no results table (no run finished)", hint="rerun the bench")
    console.print(report.mode_table(comparison(run_dir)))
    if not manifest.get("complete"):
        console.print(f"[bold red]INCOMPLETE[/]: missing cells {manifest.get('missing')}")


def agree(inventory: Inventory, host: str, *, framework: str, model: str) -> Path:
    """Feed a zoo network's reference input through the frameworks on each board, in both modes, and compare
    the output with PyTorch's: a bench of one inference, whose agreement columns are the point."""
    if reference(model) is None:
        raise ConfigError(f"the agreement check needs a zoo network, not {model!r}",
                          hint=f"use one of {', '.join(zoo.NETWORKS)} (PyTorch gives the reference)")
    return bench(inventory, host, framework=framework, model=model, iterations=1, warmup=0,
                 rule=StopRule(min_pairs=1, max_pairs=1))
