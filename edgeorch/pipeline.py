"""The flows behind the tasks, each a short list of named steps: inventory -> plan -> build -> deploy -> run ->
collect -> analyse -> report. What a step does lives in its own module; what it tells the user goes through the
reporter the task hands in."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import pandas as pd
from rich.markup import escape

from . import analysis, health, images, report, results, targets
from .analysis import Judgement
from .cache import cache_dir, file_sha256
from .console import Reporter, commands
from .deploy import Deployment, clean, deploy
from .errors import BoardError, ConfigError, RunError, SetupError
from .execute import Execution, Job, run
from .facts import BoardFacts, check_board
from .farm import HEALTHY, Farm, farm_boards, held_link, open_farm
from .inventory import Board, Inventory, load_inventory
from .models import zoo
from .plan import MODE_SETS, MODES, Cell, describe, variant
from .recipes import get_recipe, load_bases, load_recipes
from .report.boards import check_table, cleaned_table, modes_table, sent
from .request import Request
from .runners import SESSION
from .sweep import Sweep, plan, reference, resolve_models, runnable
from .transport import GroupResult, connect, fan_out


def check(inventory: Inventory, host: str, out: Reporter, coordinator: str | None = None) -> bool:
    """Report for each board: SSH, arch, Docker, Python, disk, sensors; record its health (in the farm too, where
    the boards are its places). True if all are fine."""
    with open_farm(coordinator, inventory) as lab:
        boards = inventory.select(host) if lab is None else farm_boards(inventory, host, lab, out, skip=False)
        ok = _check(inventory, boards, out)
        if lab is not None:
            for board in boards:
                lab.tag(board.name, {HEALTHY: "yes" if ok.get(board.name) else "no"})
    return all(ok.values())


def _check(inventory: Inventory, boards: list[Board], out: Reporter) -> dict[str, bool]:
    bases, recipes = load_bases(), load_recipes()
    try:
        client = images.engine()
    except SetupError:  # no engine here: what a deploy would send is not known, the rest is
        client = None

    def one(board: Board) -> BoardFacts:
        with connect(board) as conn:  # no lock: a check reads, and answers on a busy board too
            return check_board(conn, board, client, recipes, bases)

    group = fan_out(boards, one)
    out.show(check_table(boards, group))
    for b in boards:  # whole, not cut to a narrow terminal's column: each problem says its fix
        for problem in group.succeeded[b.name].problems if b.name in group.succeeded else ():
            out.show(f"[red]{escape(b.name)}[/]: {escape(problem)}")
    _failures(group, "check", out)
    health.record(inventory, {**{name: [str(e).splitlines()[0]] for name, e in group.failed.items()},
                              **{name: list(f.problems) for name, f in group.succeeded.items()}})
    return {b.name: b.name in group.succeeded and not group.succeeded[b.name].problems for b in boards}


def _failures(group: GroupResult, what: str, out: Reporter, boards: int | None = None, hint: str = "") -> None:
    """Each board's failure, whole; with `boards`, a BoardError if any failed."""
    for name, err in group.failed.items():
        out.failed(name, what, err)
    if boards and group.failed:
        raise BoardError(f"{what} failed on {len(group.failed)} of {boards} boards: {', '.join(group.failed)}",
                         hint="fix what is reported above and rerun" + hint)


def deploy_boards(inventory: Inventory, host: str, out: Reporter, frameworks: list[str] | None = None,
                  parallel: bool = True, base_image: str | None = None, modes: tuple[str, ...] = MODE_SETS["both"],
                  lab: Farm | None = None, wait_timeout: float = 3600) -> GroupResult[list[Deployment]]:
    """Deploy frameworks (default: each board's own list) to the boards (places of `lab`, where given), for
    `modes`; errors per board."""
    boards = inventory.select(host) if lab is None else farm_boards(inventory, host, lab, out)
    wanted = {b.name: list(frameworks or b.frameworks) for b in boards}
    recipes = {name: get_recipe(name) for names in wanted.values() for name in names}  # unknown: fail before work
    found = targets.platforms(boards, lock=lab is None)
    planned = {key: t for key, t in targets.plan_targets(list(recipes.values()), boards, found.succeeded,
                                                         dict.fromkeys(recipes, modes)).items()
               if key[0] in wanted[key[1]]}
    built = targets.build(planned, out, base_image, bare=tuple(recipes) if "bare" in modes else ())

    def one(board: Board) -> list[Deployment]:
        if board.name in found.failed:
            raise found.failed[board.name]
        with held_link(board, lab, token=SESSION, purpose="deploy", wait_timeout=wait_timeout,
                       out=out) as link:  # a deploy spoils a neighbour's timings
            return [link.retrying(functools.partial(deploy, board=board, image=built[(f, board.name)].image,
                                                    export=built[(f, board.name)].layers, progress=bars, modes=modes,
                                                    bare=built[(f, board.name)].bare))[0]
                    for f in wanted[board.name]]

    with out.progress() as bars:
        group = fan_out(boards, one, parallel=parallel)
    for name, deps in group.succeeded.items():
        for d in deps:
            notes = (*d.notes, *filter(None, [planned[(d.image.framework, name)].note]))
            out.show(f"[green]{escape(name)}[/]: " + escape(
                f"{d.image.framework} {d.framework_version} (image on {d.image.based_on}) ready in "
                f"{', '.join(d.modes)}; {sent(d)} in {d.seconds:.1f} s" + "".join(f"\n  note: {n}" for n in notes)))
    _failures(group, "deploy", out, len(boards), "; boards that succeeded are ready")
    return group


def clean_boards(inventory: Inventory, host: str, out: Reporter, lab: Farm | None = None,
                 wait_timeout: float = 3600) -> GroupResult[dict]:
    """Remove from the boards (places of `lab`, where given) what no current recipe uses (deploy.clean), and say
    what went and what it freed."""
    boards = inventory.select(host) if lab is None else farm_boards(inventory, host, lab, out)
    found = targets.platforms(boards, lock=lab is None)
    bases, recipes = load_bases(), load_recipes()
    cached = {file_sha256(p) for p in (cache_dir() / "models").glob("*") if p.is_file()}

    def one(board: Board) -> dict:
        if board.name in found.failed:
            raise found.failed[board.name]
        in_use = targets.in_use(recipes.values(), board, found.succeeded[board.name], bases)
        with held_link(board, lab, token=SESSION, purpose="clean", wait_timeout=wait_timeout, out=out) as link:
            return link.retrying(functools.partial(clean, board=board, targets=in_use, cached_models=cached))[0]

    group = fan_out(boards, one)
    out.show(cleaned_table(group))
    _failures(group, "clean", out, len(boards))
    return group


def modes(inventory: Inventory, host: str, out: Reporter) -> None:
    """Per board (asked over SSH) and framework: the modes it runs in, each with the version it gets, or why not."""
    boards = inventory.select(host)
    out.show(modes_table(boards, targets.platforms(boards), load_recipes(), load_bases()))


def sweep(request: Request, out: Reporter) -> Path | None:
    """bench, calibrate, explain, compare or agree: plan the cells, build what the boards lack, deploy and run
    them pair after pair until each stopping rule says enough, then collect, judge and report; returns
    results/<run-id>/ (None for a dry run). Through a labgrid farm where one is named."""
    inventory = load_inventory(request.inventory)
    with open_farm(request.coordinator, inventory) as lab:
        return _sweep(request, inventory, lab, out)


def _sweep(request: Request, inventory: Inventory, lab: Farm | None, out: Reporter) -> Path | None:
    if request.task == "agree" and reference(request.model) is None:
        raise ConfigError(f"the agreement check needs a zoo network, not {request.model!r}",
                          hint=f"use one of {', '.join(zoo.NETWORKS)} (PyTorch gives the reference)")
    boards = (health.healthy_boards(inventory, request.host, out) if lab is None else
              farm_boards(inventory, request.host, lab, out))
    # a board that does not answer fails below, with its cells; a dry run asks nothing
    found = None if request.dry_run else targets.platforms(boards, request.timeout, lock=lab is None)
    planned = plan(request, boards, found, out)
    if request.dry_run:
        for line in describe(planned.every_cell(), planned.rule):
            out.show(escape(line))  # a model named like [/x] is text, not markup
        return None
    planned = resolve_models(planned, out)
    job = dataclasses.replace(_build(planned, boards, found, request, out), farm=lab,
                              wait_timeout=request.wait_timeout)
    run_dir = results.new_run_dir() if request.resume is None else request.resume
    with results.locked_run(run_dir):  # a second --resume of this run is refused while this one writes it
        cells = job.sweep.every_cell()
        _start(run_dir, job, boards, cells, request, out)
        ex = Execution.load(run_dir, cells, job.sweep.rule)
        if request.resume is not None:
            out.show(f"resuming {escape(str(run_dir))}: {len(ex.stops)} of {len(cells)} cells were finished, "
                     f"{len(ex.records)} runs are kept")
        group = run(job, boards, found.failed, ex, parallel=request.parallel, out=out)
        collect(ex, cells, group, boards, job.refs, request.judgement, job.sweep.profile, out)
    _after(request, run_dir, out)
    return run_dir


def _build(planned: Sweep, boards: list[Board], found: GroupResult, request: Request, out: Reporter) -> Job:
    """What each board gets of each framework, built here (or found built), with the agreement references."""
    modes = {r.framework: tuple(m for m in MODES if any(a.mode == m for c in planned.every_cell()
                                                        if c.framework == r.framework for a in c.arms))
             for r in planned.recipes}
    if planned.every:
        planned = runnable(planned, boards, found.succeeded, modes, out)
    chosen = targets.plan_targets(planned.recipes, boards, found.succeeded, modes)
    built = targets.build(chosen, out, request.base_image, bare=tuple(f for f, m in modes.items() if "bare" in m))
    return Job(sweep=planned, built=built, modes=modes, refs=planned.references(), timeout=request.timeout,
               measures=request.measures, notes={key: t.note for key, t in chosen.items()})


def _start(run_dir: Path, job: Job, boards: list[Board], cells: list[Cell], request: Request,
           out: Reporter) -> None:
    """The run's manifest: for a new run, what it asked for and what each board gets; then its commands.log."""
    if request.resume is None:
        sw = job.sweep
        results.write_manifest(run_dir, complete=False, request=request.saved, modes_version=results.MODES_VERSION,
                               frameworks=[r.framework for r in sw.recipes], model=sw.model, batch=list(sw.batches),
                               options=list(sw.options),
                               models={f"{f}/{m}" + variant(0, n): {"name": s.name, "sha256": s.digest}
                                       for (f, m, n), s in sw.specs.items()},
                               boards=[b.name for b in boards], rule=dataclasses.asdict(sw.rule),
                               images={f"{b}/{f}": {"tag": made.image.tag, "based_on": made.image.based_on,
                                                    "note": job.notes[(f, b)]} for (f, b), made in job.built.items()},
                               cells={c.key: {"arms": [a.label for a in c.arms], "stop": None, "pairs": 0}
                                      for c in cells})
        out.show(f"results go to {escape(str(run_dir))}")
    else:
        results.write_manifest(run_dir, complete=False)
    commands.attach(run_dir / "commands.log")  # with what ran before (the platforms asked, the builds)


def _after(request: Request, run_dir: Path, out: Reporter) -> None:
    """What calibrate and explain show beside the run's own tables."""
    if request.task == "calibrate":
        out.show(report.calibration_table(analysis.comparison(run_dir, request.judgement)))
    elif request.task == "explain":
        out.show(report.explain_table(analysis.comparison(run_dir, request.judgement)))


def collect(ex: Execution, cells: list[Cell], group: GroupResult, boards: list[Board], refs: dict,
            judgement: Judgement, profile: int, out: Reporter) -> Path:
    """Normalize what came back, judge each comparison, and say plainly what is missing and how to go on."""
    run_dir, records = ex.run_dir, sorted(ex.records, key=lambda rec: (rec[0].board, rec[0].framework, rec[0].pair,
                                                                       rec[0].position))
    missing = ex.unfinished(cells, group.failed)
    runs = results.save_tables(run_dir, records, boards, {k: r.output for k, r in refs.items()}, ex.attempts)
    if runs is not None:
        for shown in (*report.run_tables(runs, analysis.comparison(run_dir, judgement), references=bool(refs)),
                      *report.run_notes(runs)):
            out.show(shown)
    if profile:
        ops, none = results.save_profiles(run_dir, [run for cell in cells for run in cell.profile_runs(profile)])
        for shown in ([report.ops_top(ops)] if len(ops) else []) + [f"  no operator profile from {escape(why)}"
                                                                     for why in none]:
            out.show(shown)
    _failures(group, "benchmark", out)
    results.write_manifest(run_dir, complete=not missing, missing=missing, interrupted=False,
                           failures={k: str(v) for k, v in group.failed.items()})
    if runs is not None:
        out.show(f"results: {escape(str(run_dir))}/results.parquet (load with pandas.read_parquet)")
        try:
            write_report(run_dir, out)
        except Exception as e:  # noqa: BLE001 - the results are kept whatever the figures do
            out.warn(f"the report could not be written ({e!r}); the results are whole: `invoke report --run "
                     f"{run_dir}` tries again")
    if missing:
        raise RunError(f"INCOMPLETE: {len(missing)} of {len(cells)} cells did not finish "
                       f"({', '.join(group.failed) or 'see above'}); the {len(records)} runs that did are in "
                       f"{run_dir}", hint=f"fix the failing boards, then run only what is missing: "
                                          f"{results.resume_command(run_dir)}")
    if runs is not None and runs["agrees"].eq(False).any():
        raise RunError(f"a framework does not reproduce PyTorch's output (see the warnings above); "
                       f"the timings are in {run_dir}", hint="the conversion or the runtime changed the function")
    return run_dir


def write_report(run_dir: Path, out: Reporter, against: Path | None = None,
                 changes: pd.DataFrame | None = None) -> Path:
    """results/<run-id>/report.html: the run's verdicts, figures and provenance in one offline file (and its
    change from the run `against`, given as `changes` where already judged)."""
    manifest = results.read_manifest(run_dir)
    runs, samples, histograms, sensors, ops = analysis.tables_of(run_dir, manifest)
    if against is not None and changes is None:
        changes = analysis.changes(against, run_dir)
    macs, why = analysis.macs(runs.loc[runs["batch"] == 1, "model"])
    from .report import page  # matplotlib, imported by the one task step that draws: a refusal answers at once
    text = page.render(run_dir, manifest=manifest, runs=runs, samples=samples, histograms=histograms,
                       sensors=sensors, ops=ops,
                       comparison=analysis.judged(runs, manifest),
                       notes=report.unavailable_notes(runs), macs=macs, why_no_macs=why, changes=changes,
                       against=against.name if against else None)
    path = run_dir / "report.html"
    results.write_atomic(path, text)
    out.show(f"report: {escape(str(path))} (opens offline in any browser)")
    return path


def compare_runs(before: Path, after: Path, out: Reporter) -> pd.DataFrame:
    """Print each matched cell's change from run `before` to run `after`, and write it into the report of `after`."""
    changes = analysis.changes(before, after)
    if changes.empty:
        raise RunError(f"no cell of {after.name} was measured by {before.name} too (same board, framework, model, "
                       "threads, batch, options, input shapes)", hint="compare two runs of the same bench")
    out.show(report.change_table(changes, before.name, after.name))
    write_report(after, out, before, changes)
    return changes


def show_results(run_dir: Path, out: Reporter) -> None:
    """Print the comparison table of a finished run and whether it is complete."""
    manifest = results.read_manifest(run_dir)
    out.show(report.mode_table(analysis.judged(analysis.runs_of(run_dir, manifest), manifest)))
    if not manifest.get("complete"):
        out.show(f"[bold red]INCOMPLETE[/]: missing cells {escape(str(manifest.get('missing')))}")
