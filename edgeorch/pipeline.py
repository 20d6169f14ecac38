"""The flows behind the tasks: inventory -> plan -> build -> deploy -> run -> collect -> normalize -> report."""

from __future__ import annotations

import json
import threading
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
from .models import ModelSpec, resolve
from .plan import RunSpec, bench_runs, images_needed, parse_modes
from .recipes import Recipe, get_recipe
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


def build(frameworks: list[str], boards: list[Board]) -> dict[tuple[str, str], tuple[ImageSpec, Path]]:
    """Every image the boards need, built (or found) and exported for transfer."""
    client = images.engine()
    out = {}
    needed = images_needed(boards, frameworks)
    images.ensure_base_images(client, sorted({arch for _, arch in needed}, key=lambda a: a.value))
    for framework, arch in needed:
        spec = images.ensure_framework_image(client, get_recipe(framework), arch)
        out[(framework, arch.value)] = (spec, images.export_image(client, spec))
    return out


def deploy_boards(inventory: Inventory, host: str, frameworks: list[str] | None = None,
                  parallel: bool = True) -> GroupResult[list[Deployment]]:
    """Deploy frameworks (default: each board's own list) to the boards; errors per board."""
    boards = inventory.select(host)
    wanted = {b.name: list(frameworks or b.frameworks) for b in boards}
    for names in wanted.values():
        for name in names:
            get_recipe(name)  # unknown framework: fail before any work
    built = build(sorted({f for names in wanted.values() for f in names}), boards)

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


def bench(inventory: Inventory, host: str, *, framework: str, model: str, mode: str = "both",
          iterations: int = 50, warmup: int = 5, repeat: int = 3, threads: int = 0,
          parallel: bool = False, dry_run: bool = False, timeout: float = 3600) -> Path | None:
    """Benchmark `model` with `framework` on the boards; returns results/<run-id>/."""
    boards = inventory.select(host)
    recipe = get_recipe(framework)
    modes = parse_modes(mode)
    _require_support(recipe, boards)
    spec = resolve(model, recipe.model_format, cache_dir=cache_dir(), log=console.print)
    plans = {b.name: bench_runs(b, framework=framework, model=spec.name, modes=modes, repeat=repeat,
                                iterations=iterations, warmup=warmup, threads=threads) for b in boards}
    if dry_run:
        for name, runs in plans.items():
            console.print(f"{name}: " + ", ".join(f"{r.mode}#{r.pair}" for r in runs))
        return None
    built = build([framework], boards)
    run_dir = results.new_run_dir()
    planned = [r for runs in plans.values() for r in runs]
    results.write_manifest(run_dir, complete=False, framework=framework, model=spec.name,
                           model_sha256=spec.sha256, boards=[b.name for b in boards],
                           planned=[r.key for r in planned])
    console.print(f"results go to {run_dir}")
    records: list[tuple[RunSpec, dict]] = []
    lock = threading.Lock()

    def one(board: Board) -> int:
        image, export = built[(framework, board.arch.value)]
        with connect(board) as conn:
            deployment = deploy(conn, board, image, export, progress)
            remote_model = push_file(conn, board, deployment.workdir, spec.path, spec.sha256, progress)
            runners = deployment.runners(conn, timeout=timeout)
            task = progress.add_task(f"{board.name}: runs", total=len(plans[board.name]), unit="runs")
            for run in plans[board.name]:
                doc = _run(runners[run.mode], run, spec, remote_model, run_dir)
                with lock:
                    records.append((run, doc))
                progress.advance(task)
        return len(plans[board.name])

    with _progress() as progress:
        group = fan_out(boards, one, parallel=parallel)
    return collect(run_dir, records, planned, group, boards)


def _run(runner, run: RunSpec, model: ModelSpec, remote_model: str, run_dir: Path) -> dict:
    """One run: execute, keep the raw answer, validate it."""
    answer = runner.execute(entrypoint_args(run, model_sha256=model.sha256, run_id=run_dir.name),
                            {"--model": remote_model})
    results.save_raw(run_dir, run, answer)
    return results.parse_answer(answer, board=run.board, what=f"{run.mode} run #{run.pair}")


def collect(run_dir: Path, records: list[tuple[RunSpec, dict]], planned: list[RunSpec],
            group: GroupResult, boards: list[Board]) -> Path:
    """Normalize what came back, show the comparison, and say plainly what is missing."""
    records.sort(key=lambda rec: planned.index(rec[0]))
    done = {r.key for r, _ in records}
    missing = [r.key for r in planned if r.key not in done]
    if records:
        runs, samples = results.normalize(records, run_id=run_dir.name,
                                          arch_of={b.name: b.arch.value for b in boards})
        results.write_tables(run_dir, runs, samples)
        console.print(report.mode_table(report.compare_modes(runs, samples)))
        for r in runs[runs["throttled"].fillna(False)].itertuples():
            console.print(f"[bold red]warning:[/] {r.board} {r.mode} run #{r.pair} was throttled "
                          f"({r.throttle_evidence}); its latencies include throttling")
    _report_failures(group, "benchmark")
    results.write_manifest(run_dir, complete=not missing, missing=missing,
                           failures={k: str(v) for k, v in group.failed.items()})
    console.print(f"results: {run_dir}/results.parquet (load with pandas.read_parquet)")
    if missing:
        raise RunError(f"INCOMPLETE: {len(missing)} of {len(planned)} runs did not finish "
                       f"({', '.join(group.failed) or 'see above'}); the {len(done)} that did are in "
                       f"{run_dir}", hint="fix the failing boards and rerun the bench")
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


def agree(inventory: Inventory, host: str, *, framework: str, model: str) -> None:
    """Feed a zoo network's reference input through the framework on each board, in both modes,
    and compare the output with PyTorch's; a conversion that changed the function fails loudly."""
    boards = inventory.select(host)
    recipe = get_recipe(framework)
    _require_support(recipe, boards)
    if recipe.model_format != "onnx":
        raise ConfigError(f"{framework} cannot be checked against PyTorch yet: the zoo is exported to ONNX "
                          f"only, and {framework} reads {recipe.model_format}",
                          hint="check an ONNX framework (see `invoke matrix`)")
    if model not in zoo.NETWORKS:
        raise ConfigError(f"the agreement check needs a zoo network, not {model!r}",
                          hint=f"use one of {', '.join(zoo.NETWORKS)} (PyTorch gives the reference)")
    spec = resolve(model, recipe.model_format, cache_dir=cache_dir(), log=console.print)
    reference = zoo.reference_output(model)
    inputs = cache_dir() / "models" / f"{model}-input-seed{zoo.SEED}.npy"
    np.save(inputs, zoo.reference_input(model))
    input_sha = file_sha256(inputs)
    built = build([framework], boards)

    def one(board: Board) -> list[dict]:
        rows = []
        with connect(board) as conn:
            deployment = deploy(conn, board, *built[(framework, board.arch.value)], progress)
            files = {"--model": push_file(conn, board, deployment.workdir, spec.path, spec.sha256, progress),
                     "--input": push_file(conn, board, deployment.workdir, inputs, input_sha, progress)}
            for mode, runner in deployment.runners(conn).items():
                answer = runner.execute(["--framework", framework, "--iterations", "1", "--warmup", "0",
                                         "--model-sha256", spec.sha256, "--outputs"], files)
                doc = results.parse_answer(answer, board=board.name, what=f"{mode} agreement run")
                out = doc["outputs"][0]
                output = np.asarray(out["values"], dtype=np.float64).reshape(out["shape"])
                rows.append({"board": board.name, "mode": mode, **report.agreement(reference, output)})
        return rows

    with _progress() as progress:
        group = fan_out(boards, one, parallel=False)
    rows = [r for b in boards for r in group.succeeded.get(b.name, [])]
    console.print(report.agreement_table(rows, f"{framework} vs PyTorch on {model} (reference input, seed "
                                               f"{zoo.SEED})"))
    _report_failures(group, "agreement check")
    bad = [f"{r['board']}/{r['mode']}" for r in rows if not r["agree"]]
    if bad or group.failed:
        raise RunError(f"{framework} does not reproduce PyTorch's {model} on {', '.join(bad + list(group.failed))}",
                       hint="the conversion or the runtime changed the function; see the table above")
