"""A planned sweep run on its boards: per board, under its lock, each framework deployed and its cells run pair
after pair until the stopping rule says enough, every run kept as it comes back, what is not finished left for
--resume."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rich.markup import escape

from . import results, stats
from .cache import file_sha256
from .console import Reporter
from .deploy import Deployment, deploy, push_file
from .errors import BareUnavailable, BoardError, ConnectionLost, EdgeorchError, RunError, Unreachable
from .farm import HEALTHY, Farm, Held, held_link
from .inventory import Board
from .models import ModelSpec
from .plan import Cell, RunSpec, StopRule
from .report.boards import sent
from .runners import SESSION, Measures, entrypoint_args, kill_runs
from .sweep import Reference, Sweep
from .targets import Built
from .transport import GroupResult, Link, fan_out


@dataclass(frozen=True, kw_only=True)
class Job:
    """What every board of a sweep is given: the plan, what was built for it, and how its runs are made."""
    sweep: Sweep
    built: dict[tuple[str, str], Built]
    modes: dict[str, tuple[str, ...]]  # framework -> the modes its cells run in
    refs: dict[tuple[str, int], Reference]
    timeout: float
    measures: Measures
    notes: dict[tuple[str, str], str] = field(default_factory=dict)  # (framework, board) -> what its build notes
    farm: Farm | None = None  # where boards are reserved first, if they are places of a labgrid farm
    wait_timeout: float = 3600  # how long a board is waited for in the farm's queue


@dataclass
class Execution:
    """What a sweep's run directory holds so far, shared by its boards' threads: the runs kept, each cell's stop,
    the attempts of retried runs, and what each board was sent."""
    run_dir: Path
    records: list[tuple[RunSpec, dict]] = field(default_factory=list)
    stops: dict[str, dict] = field(default_factory=dict)
    earlier: dict[str, list] = field(default_factory=dict)  # cell key -> the pairs an earlier session finished
    attempts: dict[str, int] = field(default_factory=dict)
    deploys: list[dict] = field(default_factory=list)
    held: list[dict] = field(default_factory=list)  # each board's farm place, reservation and wait, as held
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def load(cls, run_dir: Path, cells: list[Cell], rule: StopRule) -> Execution:
        """What earlier sessions of the run finished (kept, and not run again), and the deploys they made."""
        manifest = results.read_manifest(run_dir)
        shipped = run_dir / "deploy.json"
        ex = cls(run_dir=run_dir, attempts=dict(manifest.get("attempts") or {}),
                 deploys=json.loads(shipped.read_text()) if shipped.exists() else [],
                 held=list(manifest.get("farm") or []))
        for cell in cells:
            state = (manifest.get("cells") or {}).get(cell.key) or {}
            ex.earlier[cell.key] = results.finished_pairs(run_dir, lambda p, c=cell: c.runs(p) if p < rule.max_pairs
                                                          else None)
            ex.records += [rec for pair in ex.earlier[cell.key] for rec in pair]
            if state.get("stop"):
                ex.stops[cell.key] = {"stop": state["stop"], "pairs": state["pairs"]}
        return ex

    def kept(self, run: RunSpec, doc: dict, tries: int) -> None:
        """A run came back: kept, and marked when it took more than one attempt."""
        with self.lock:
            self.records.append((run, doc))
            if tries > 1:
                self.attempts[run.key] = tries
                results.write_manifest(self.run_dir, attempts=self.attempts)

    def deployed(self, deployment: Deployment) -> None:
        """What a board was sent for this run, beside its results (deploy.json)."""
        with self.lock:
            self.deploys.append(deployment.summary())
            results.write_atomic(self.run_dir / "deploy.json", json.dumps(self.deploys, indent=1))

    def reserved(self, board: str, held: Held) -> None:
        """A board held through the farm: its place, reservation and wait, in the manifest (`farm`)."""
        with self.lock:
            self.held.append({"board": board, **dataclasses.asdict(held), "at": time.time()})
            results.write_manifest(self.run_dir, farm=self.held)

    def stopped(self, cell: Cell, stop: dict) -> None:
        with self.lock:
            self.stops[cell.key] = stop

    def unfinished(self, cells: list[Cell], failed: dict[str, EdgeorchError]) -> list[str]:
        """The cells that did not stop; each of a board that failed as a whole (unreachable, busy) says why."""
        state = results.read_manifest(self.run_dir).get("cells") or {}
        missing = [c for c in cells if c.key not in self.stops]
        for cell in missing:
            if cell.board in failed and not (state.get(cell.key) or {}).get("failure"):
                results.update_cell(self.run_dir, cell.key, failure=failed[cell.board].message)
        return [c.key for c in missing]

    def failed(self, cells: list[Cell], why: str) -> None:
        """Cells a board could not finish: each says why in the manifest."""
        for cell in cells:
            if cell.key not in self.stops:
                results.update_cell(self.run_dir, cell.key, failure=why)


def run(job: Job, boards: list[Board], failed: dict[str, EdgeorchError], ex: Execution, *, parallel: bool,
        out: Reporter) -> GroupResult[int]:
    """Every board's cells, side by side or one board after another; a board's failure (`failed`: its platform
    could not be asked) is its own, the others go on. ^C keeps what finished and says how to go on."""
    try:
        with out.progress() as bars:
            return fan_out(boards, lambda board: _board(job, board, failed.get(board.name), ex, bars, out),
                           parallel=parallel)
    except KeyboardInterrupt:
        results.write_manifest(ex.run_dir, interrupted=True)
        where = escape(str(ex.run_dir))
        out.show(f"[bold red]interrupted[/]: every finished run is kept in {where}; go on with "
                 f"`{escape(results.resume_command(ex.run_dir))}`")
        raise


@contextlib.contextmanager
def reserve(board: Board, job: Job, ex: Execution, out: Reporter) -> Iterator[Link]:
    """The board, held for this run until the block ends: its place in the farm, where there is one (kept in the
    manifest), and edgeorch's own lock."""
    with held_link(board, job.farm, token=SESSION, purpose=f"run {ex.run_dir.name}", wait_timeout=job.wait_timeout,
                   out=out, on_hold=functools.partial(ex.reserved, board.name)) as link:
        yield link


def _board(job: Job, board: Board, unreachable: EdgeorchError | None, ex: Execution, bars, out: Reporter) -> int:
    """One board's cells not finished yet, framework after framework; the number of cells it had to run."""
    todo = [c for c in job.sweep.cells[board.name] if c.key not in ex.stops]
    if not todo:
        return 0
    if unreachable:
        raise unreachable
    failed: dict[str, EdgeorchError] = {}
    try:
        with reserve(board, job, ex, out) as link:
            kill_runs(link.conn, board.name, session="")  # with the lock held, any edgeorch run there is an orphan
            task = bars.add_task(f"{board.name}: pairs", unit="pairs",
                                 total=sum(job.sweep.rule.max_pairs - len(ex.earlier[c.key]) for c in todo))
            for recipe in job.sweep.recipes:
                mine = [c for c in todo if c.framework == recipe.framework]
                if not mine:
                    continue
                try:
                    _framework(job, board, recipe.framework, mine, link, ex, bars, lambda: bars.advance(task), out)
                except (BoardError, RunError) as e:  # the board's other frameworks still run, if it answers
                    failed[recipe.framework] = e
                    ex.failed(mine, e.message)
                    if isinstance(e, (ConnectionLost, Unreachable)):
                        raise
    except (ConnectionLost, Unreachable) as e:
        if job.farm is not None:  # the farm keeps other sweeps off it until `invoke check` passes again
            job.farm.tag(board.name, {HEALTHY: "no"})
            out.note(f"{board.name}: marked unhealthy in the farm", e.message.splitlines()[0])
        if e not in failed.values():  # lost before its first framework: the board's own failure
            failed[""] = e
    if failed:
        raise type(next(iter(failed.values())))("; ".join(f"{f}: {e.message}" if f else e.message
                                                          for f, e in failed.items()),
                                                hint="; ".join(sorted({e.hint for e in failed.values() if e.hint})))
    return len(todo)


def _deploy(job: Job, board: Board, framework: str, cells: list[Cell], link: Link, ex: Execution, bars,
            out: Reporter) -> tuple[Deployment, list[Cell]]:
    """The framework on the board in its modes, and the cells that can run; without bare mode (the cells say why)
    where the board cannot have it."""
    ready = job.built[(framework, board.name)]
    ship = functools.partial(deploy, board=board, image=ready.image, export=ready.layers, bare=ready.bare,
                             progress=bars)
    try:
        deployment, _ = link.retrying(functools.partial(ship, modes=job.modes[framework]))
    except BareUnavailable as e:
        others = tuple(m for m in job.modes[framework] if m != "bare")
        if not others:
            raise
        out.note(f"{board.name}: {framework} without bare mode", str(e))
        deployment, _ = link.retrying(functools.partial(ship, modes=others))
        cells = _without_bare(cells, ex.run_dir, e.message)
    out.step(f"{framework} {deployment.framework_version} deployed: {sent(deployment)} in "
             f"{deployment.seconds:.1f} s", board.name)
    ex.deployed(deployment)
    return deployment, cells


def _framework(job: Job, board: Board, framework: str, cells: list[Cell], link: Link, ex: Execution, bars, advance,
               out: Reporter) -> None:
    """A framework deployed, then each of its cells run until it stops (and profiled, if asked)."""
    deployment, cells = _deploy(job, board, framework, cells, link, ex, bars, out)
    pushed: dict[str, list] = {}  # a model's digest (its files together) -> its files on the board
    for cell in cells:
        spec, ref = job.sweep.spec(cell), job.refs.get((cell.model, cell.batch))
        if spec.digest not in pushed:
            pushed[spec.digest], _ = link.retrying(functools.partial(
                _push_files, board=board, workdir=deployment.workdir, spec=spec, ref=ref, progress=bars,
                inputs=job.sweep.inputs))
        files = pushed[spec.digest]
        stop = _run_cell(cell, job.sweep.rule, link, deployment, job.timeout, spec, files, ex.run_dir, ex.kept,
                         advance, ex.earlier[cell.key], outputs=ref is not None,
                         watch=job.measures.watch_args(board))
        out.step(f"{cell.key.split('/', 1)[1]}: {stop['pairs']} pairs, stopped by {stop['stop']}", board.name)
        if job.sweep.profile:
            _profile_cell(cell, job.sweep.profile, link, deployment, job.timeout, spec, files, ex.run_dir)
        ex.stopped(cell, stop)


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
    """The model (its companions beside it, by the same name), and a zoo network's reference input or the user's
    --input files, on the board: (option, its path there, after NAME= for a named input); a companion's option is
    "", a file that goes with the model but is named on no command line."""
    stem = spec.digest[:16]
    companions = [("", push_file(conn, board, workdir, path, sha256, progress, stem=stem))
                  for path, sha256 in spec.companions]
    files = [("--model", push_file(conn, board, workdir, spec.path, spec.sha256, progress, stem=stem)), *companions]
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
