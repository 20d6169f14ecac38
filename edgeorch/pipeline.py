"""The flows behind the tasks: inventory -> plan -> build -> deploy -> run -> collect -> normalize -> report."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import images, report, results, zoo
from .cache import cache_dir, file_sha256
from .console import console
from .deploy import Deployment, board_facts, deploy, push_file
from .errors import BoardError, ConfigError, RunError
from .images import ImageSpec
from .inventory import Board, Inventory
from .models import EAGER, INT8, ModelSpec, resolve
from .plan import RunSpec, bench_runs, images_needed, parse_modes
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


def bench(inventory: Inventory, host: str, *, framework: str, model: str, mode: str = "both",
          iterations: int = 50, warmup: int = 5, repeat: int = 3, threads: int = 0, batch: int = 1,
          options: tuple[str, ...] = (),
          parallel: bool = False, dry_run: bool = False, timeout: float = 3600,
          base_image: str | None = None) -> Path | None:
    """Benchmark `model` with each framework of `framework` (a comma list) on the boards; returns results/<run-id>/.

    A zoo network gets its reference input, and every run's output is compared with PyTorch's.
    """
    boards = inventory.select(host)
    recipes = _recipes(framework)
    modes = parse_modes(mode)
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
    plans = {b.name: [run for r in recipes for run in bench_runs(
        b, framework=r.framework, model=specs[r.framework].name, modes=modes, repeat=repeat, iterations=iterations,
        warmup=warmup, threads=threads, options=options)] for b in boards}
    if dry_run:
        for name, runs in plans.items():
            console.print(f"{name}: " + ", ".join(f"{r.framework} {r.mode}#{r.pair}" for r in runs))
        return None
    ref = reference(model, batch)
    built = build([r.framework for r in recipes], boards, base_image)
    run_dir = results.new_run_dir()
    planned = [r for runs in plans.values() for r in runs]
    results.write_manifest(run_dir, complete=False, frameworks=[r.framework for r in recipes], model=model,
                           models={f: {"name": s.name, "sha256": s.sha256} for f, s in specs.items()},
                           batch=batch, options=list(options), boards=[b.name for b in boards],
                           planned=[r.key for r in planned])
    console.print(f"results go to {run_dir}")
    records: list[tuple[RunSpec, dict]] = []
    lock = threading.Lock()

    def one(board: Board) -> int:
        failed = {}
        with connect(board) as conn:
            task = progress.add_task(f"{board.name}: runs", total=len(plans[board.name]), unit="runs")
            for recipe in recipes:
                try:
                    image, export = built[(recipe.framework, board.arch.value)]
                    deployment = deploy(conn, board, image, export, progress, modes)
                    spec = specs[recipe.framework]
                    files = {"--model": push_file(conn, board, deployment.workdir, spec.path, spec.sha256, progress)}
                    if ref:
                        files["--input"] = push_file(conn, board, deployment.workdir, ref.input_path,
                                                     ref.input_sha256, progress)
                    runners = deployment.runners(conn, timeout=timeout)
                    for run in (r for r in plans[board.name] if r.framework == recipe.framework):
                        doc = _run(runners[run.mode], run, spec, files, run_dir)
                        with lock:
                            records.append((run, doc))
                        progress.advance(task)
                except (BoardError, RunError) as e:  # the board's other frameworks still run
                    failed[recipe.framework] = e
        if failed:
            raise BoardError("; ".join(f"{f}: {e.message}" for f, e in failed.items()),
                             hint="; ".join(sorted({e.hint for e in failed.values() if e.hint})))
        return len(plans[board.name])

    with _progress() as progress:
        group = fan_out(boards, one, parallel=parallel)
    return collect(run_dir, records, planned, group, boards, ref)


def _run(runner, run: RunSpec, model: ModelSpec, files: dict[str, str], run_dir: Path) -> dict:
    """One run: execute, keep the raw answer, validate it."""
    args = entrypoint_args(run, model_sha256=model.sha256, run_id=run_dir.name)
    answer = runner.execute(args + (["--outputs"] if "--input" in files else []), files)
    results.save_raw(run_dir, run, answer)
    return results.parse_answer(answer, board=run.board, what=f"{run.framework} {run.mode} run #{run.pair}")


def collect(run_dir: Path, records: list[tuple[RunSpec, dict]], planned: list[RunSpec],
            group: GroupResult, boards: list[Board], ref: Reference | None = None) -> Path:
    """Normalize what came back, show the comparison, and say plainly what is missing."""
    records.sort(key=lambda rec: planned.index(rec[0]))
    done = {r.key for r, _ in records}
    missing = [r.key for r in planned if r.key not in done]
    if records:
        runs, samples = results.normalize(records, run_id=run_dir.name,
                                          arch_of={b.name: b.arch.value for b in boards},
                                          reference=None if ref is None else ref.output)
        results.write_tables(run_dir, runs, samples)
        console.print(report.mode_table(report.compare_modes(runs, samples)))
        if ref or runs["framework"].nunique() > 1:
            console.print(report.framework_table(runs))
        for r in runs[runs["throttled"].fillna(False)].itertuples():
            console.print(f"[bold red]warning:[/] {r.board} {r.mode} run #{r.pair} was throttled "
                          f"({r.throttle_evidence}); its latencies include throttling")
        for r in runs[runs["agrees"].eq(False).fillna(False)].itertuples():
            console.print(f"[bold red]warning:[/] {r.board} {r.framework} {r.mode} does not reproduce PyTorch's "
                          f"{ref.network}: max |diff| {r.max_abs_diff:.3g}, top-1 {r.top1} (PyTorch {r.top1_ref})")
    _report_failures(group, "benchmark")
    results.write_manifest(run_dir, complete=not missing, missing=missing,
                           failures={k: str(v) for k, v in group.failed.items()})
    console.print(f"results: {run_dir}/results.parquet (load with pandas.read_parquet)")
    if missing:
        raise RunError(f"INCOMPLETE: {len(missing)} of {len(planned)} runs did not finish "
                       f"({', '.join(group.failed) or 'see above'}); the {len(done)} that did are in "
                       f"{run_dir}", hint="fix the failing boards and rerun the bench")
    if records and runs["agrees"].eq(False).any():
        raise RunError(f"a framework does not reproduce PyTorch's {ref.network} (see the warnings above); "
                       f"the timings are in {run_dir}", hint="the conversion or the runtime changed the function")
    return run_dir


def show_results(run_dir: Path) -> None:
    """Print the comparison table of a finished run and whether it is complete."""
    run_dir = Path(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    if not (run_dir / "results.parquet").exists():
        raise RunError(f"{run_dir} has no results table (no run finished)", hint="rerun the bench")
    runs = pd.read_parquet(run_dir / "results.parquet")
    samples = pd.read_parquet(run_dir / "samples.parquet")
    console.print(report.mode_table(report.compare_modes(runs, samples)))
    if not manifest.get("complete"):
        console.print(f"[bold red]INCOMPLETE[/]: missing runs {manifest.get('missing')}")


def agree(inventory: Inventory, host: str, *, framework: str, model: str) -> Path:
    """Feed a zoo network's reference input through the frameworks on each board, in both modes, and compare
    the output with PyTorch's: a bench of one inference, whose agreement columns are the point."""
    if reference(model) is None:
        raise ConfigError(f"the agreement check needs a zoo network, not {model!r}",
                          hint=f"use one of {', '.join(zoo.NETWORKS)} (PyTorch gives the reference)")
    return bench(inventory, host, framework=framework, model=model, iterations=1, warmup=0, repeat=1)
