"""edgeorch tasks: `invoke --list` shows them, `invoke --help TASK` explains one.

Each task parses its arguments and calls one library function; errors are reported once,
here, with the exit code of their kind.
"""

import atexit
import functools
import inspect
import os
import sys
import time
from pathlib import Path

import invoke
from invoke import Collection, Exit
from rich.markup import escape

from edgeorch import farm, farm_sim, pipeline, request, sim
from edgeorch import report as tables
from edgeorch import results as store
from edgeorch.console import Reporter, commands, console
from edgeorch.errors import ConfigError, EdgeorchError
from edgeorch.inventory import load_inventory
from edgeorch.plan import parse_modes
from edgeorch.recipes import load_recipes
from edgeorch.report.boards import inventory_table, places_table
from edgeorch.systems import load_systems

INVENTORY = os.environ.get("EDGEORCH_INVENTORY") or "inventory.yaml"  # set but empty: the default too
INV_HELP = "inventory file (default: $EDGEORCH_INVENTORY, else inventory.yaml)"
RESULTS_HELP = "the directory of the runs (default: $EDGEORCH_RESULTS, else results/ of this checkout)"
COORDINATOR_HELP = "a labgrid coordinator HOST:PORT: reserve, lock and release the boards through its farm, waiting " \
                   "in its queue (default: $EDGEORCH_COORDINATOR, else the inventory's `coordinator:`; none: the " \
                   "boards are driven directly); --host also takes tag:KEY=VALUE there"
FARM_HELP = "the labgrid coordinator HOST:PORT (default: $EDGEORCH_COORDINATOR, else the inventory's `coordinator:`)"
WAIT_HELP = "with a coordinator: seconds to wait in the farm's queue for each board before giving up"
VERBOSE_HELP = "also show every external command on the console, with its duration and exit code, as it ends " \
               "(all are logged in commands.log; EDGEORCH_VERBOSE=1 does the same)"


class Task(invoke.Task):
    """A task whose --verbose answers to -v too, whatever its other options are (-v is never another's)."""

    def arg_opts(self, name, default, taken_names):
        if name == "verbose":
            return {**super().arg_opts(name, default, taken_names), "names": ["verbose", "v"]}
        opts = super().arg_opts(name, default, {*taken_names, "v"})
        # where every letter of the name is taken, invoke's next pick is the '_' (as '-'): no short flag then
        return {**opts, "names": [n for n in opts["names"] if len(n) > 1 or n.isalnum()]}


task = functools.partial(invoke.task, klass=Task)
OUT = Reporter(console)  # what the library tells the user goes through this, to the terminal


@atexit.register
def _write_commands() -> None:
    """The commands of tasks that made no run directory go to results/commands.log, when edgeorch ends."""
    commands.close(store.root() / "commands.log")


def _results_dir(path) -> None:
    """--results DIR: where this task reads and writes runs, as $EDGEORCH_RESULTS would say."""
    if path:
        if Path(path).exists() and not Path(path).is_dir():
            raise ConfigError(f"--results {path}: not a directory", hint="pass the directory the runs go to")
        os.environ["EDGEORCH_RESULTS"] = str(Path(path).resolve())


def reported(fn):
    """Turn an EdgeorchError into one red message and the exit code of its kind."""
    @functools.wraps(fn)
    def wrapper(c, *args, **kwargs):
        commands.begin(verbose=bool(kwargs.get("verbose")))  # to this task's run directory, if it makes one
        try:
            return fn(c, *args, **kwargs)
        except EdgeorchError as e:
            console.print(f"[bold red]error:[/] {escape(e.message)}")  # a user's name like [/x] is text
            if e.hint:
                console.print(f"[yellow]fix:[/] {escape(e.hint)}")
            raise Exit(code=e.exit_code) from e
    return wrapper


def _hosts(c, host):
    """--host, or the hosts of a `deploy` earlier on the same command line."""
    host = host or c.config.get("edgeorch_last_host")
    if not host:
        raise ConfigError("no boards given", hint="pass --host BOARD, a group, or a comma list "
                                                  "(e.g. --host rpi4 or --host sim)")
    c.config.edgeorch_last_host = host
    return host


@task(help={"inventory": INV_HELP})
@reported
def inventory(c, inventory=INVENTORY):
    """Show the boards of the inventory."""
    console.print(inventory_table(load_inventory(inventory)))


@task(help={"host": "board, group, or comma list (default: all)", "inventory": INV_HELP,
            "coordinator": FARM_HELP, "verbose": VERBOSE_HELP})
@reported
def check(c, host="all", inventory=INVENTORY, coordinator=None, verbose=False):
    """Check each board: SSH, arch, Docker version, Python, free disk, thermal/frequency sensors; with a farm, mark
    each place healthy or not (sweeps skip unhealthy places)."""
    if not pipeline.check(load_inventory(inventory), host, OUT, coordinator):
        raise Exit(code=5)


BENCH_HELP = {
    "host": "board, group, or comma list (default: the host of a preceding deploy)",
    "framework": "framework, comma list of them, or all (see `invoke matrix`)",
    "model": "a zoo network or builtin of the framework's format (see `invoke matrix`), or the path of your own "
             "file; a comma list sweeps several",
    "mode": "docker (a container of the framework image), bare (the image's userland without the container), "
            "native (the board's own Python with the framework's wheels), a comma list, both (docker,bare) or all",
    "iterations": "timed inferences per run",
    "warmup": "untimed inferences before them",
    "repeat": "exactly K pairs, no stopping rule (below --min-pairs there is no verdict)",
    "min_pairs": "pairs before a verdict may be given (default 5); with one --mode, the number of runs",
    "max_pairs": "most pairs per cell (default 40)",
    "precision": "stop adding pairs once the 95% CI half-width is under this (default 0.01: ±1%)",
    "max_time": "most seconds of pairs per cell (default 1800)",
    "min_time": "each run times inferences for at least this many seconds as well as --iterations",
    "equivalence": "the band within which Docker and bare count as equivalent (default 0.01: ±1%)",
    "max_spread": "a mode whose run medians spread more than this is INVALID (default 0.10)",
    "cooldown": "idle seconds before each run (but a cell's first), so the heat of the last one fades",
    "threads": "framework threads (0: the framework's default); a comma list sweeps them, e.g. 1,2,4",
    "batch": "images per inference, for zoo networks (throughput is reported in images/s); a comma list sweeps "
             "them, e.g. 1,2,4,8",
    "profile": "after each cell's pairs, a profiling pass of N inferences per mode: per-operator times in "
               "ops.parquet (never inside the timed runs; 0: none)",
    "counters": "count perf's events per inference, from the board's host, in both modes (on by default)",
    "energy": "energy per inference from the board's power sensor or its inventory `power_meter:` (on by default)",
    "keep_samples": "also keep every timed inference's start and latency, as raw/<run>.samples.npy (a run's JSON "
                    "holds a summary and 1,000 of them)",
    "option": "framework option KEY=VALUE, repeatable: xnnpack=off (tflite, litert), device=cpu (pytorch), "
              "precision=fp16 (tensorrt), delegate=/usr/lib/aarch64-linux-gnu/libedgetpu.so.1 (tflite, litert: an "
              "external delegate's library on the board, such as the Edge TPU's)",
    "input_shape": "NAME=DIMS, repeatable: the shape fed to a model input, e.g. input=1x3x224x224 (needed for "
                   "every input with dynamic dimensions, like trtexec --shapes)",
    "input": "NAME=FILE.npy, repeatable: feed that input the file instead of seeded data (pushed to the boards); a "
             "bare FILE.npy feeds the first input",
    "parallel": "run boards side by side (real fleets; the sim boards share this host's CPUs)",
    "dry_run": "print the planned runs and stop", "inventory": INV_HELP,
    "timeout": "seconds one run may take: past it the run is killed on the board, and its cell fails",
    "resume": "a results/<run-id> directory (or the id) of a run of this task that did not finish: run only its "
              "missing cells into it, with the arguments it was started with",
    "base_image": "the image to build FROM for frameworks that need the vendor's (tensorrt), e.g. "
                  "nvcr.io/nvidia/l4t-tensorrt:r8.5.2-runtime",
    "coordinator": COORDINATOR_HELP, "wait_timeout": WAIT_HELP, "results": RESULTS_HELP, "verbose": VERBOSE_HELP,
}


@task(help={"host": "board, group, or comma list",
            "framework": "framework or comma list of them to deploy (default: what a bench, calibrate or explain "
                         "after it on the command line runs, else each board's `frameworks` list)",
            "mode": "docker, bare, native, a comma list of them, both (docker,bare) or all (default: the following "
                    "task's, else both)",
            "serial": "deploy one board after another instead of side by side", "inventory": INV_HELP,
            "base_image": BENCH_HELP["base_image"], "coordinator": COORDINATOR_HELP, "wait_timeout": WAIT_HELP,
            "verbose": VERBOSE_HELP})
@reported
def deploy(c, host=None, framework=None, mode=None, inventory=INVENTORY, serial=False, base_image=None,
           coordinator=None, wait_timeout="3600", verbose=False):
    """Build the framework image for each board's arch and deploy it: the image (docker), its userland out of the
    container (bare), the wheels for the board's own Python (native)."""
    chained = _chained_options()
    framework = framework or chained.get("framework")
    frameworks = None if framework in (None, "all") else [f.strip() for f in framework.split(",") if f.strip()]
    inv = load_inventory(inventory)
    with farm.open_farm(coordinator, inv) as lab:
        pipeline.deploy_boards(inv, _hosts(c, host), OUT, frameworks, parallel=not serial, base_image=base_image,
                               modes=parse_modes(mode or chained.get("mode") or "both"), lab=lab,
                               wait_timeout=request.number("wait_timeout", wait_timeout, task="deploy"))


SWEEPS = ("bench", "calibrate", "explain", "compare", "agree")


def _chained_options() -> dict[str, str]:
    """The --framework and --mode of the sweep task that follows `deploy` on this command line (invoke deploy
    --host rpi3 bench --framework tflite): a chained deploy sends what that task will run, not every framework the
    boards list."""
    words = sys.argv[1:]
    after = next((i for i, w in enumerate(words) if w in SWEEPS and i > 0 and words[:i].count("deploy")), None)
    found = {}
    for i, word in enumerate(words[after + 1:] if after is not None else [], start=(after or 0) + 1):
        for name in ("framework", "mode"):
            if word.startswith(f"--{name}="):
                found[name] = word.split("=", 1)[1]
            elif word == f"--{name}" and i + 1 < len(words):
                found[name] = words[i + 1]
    return found


@task(help={"host": "board, group, or comma list", "inventory": INV_HELP, "coordinator": COORDINATOR_HELP,
            "wait_timeout": WAIT_HELP, "verbose": VERBOSE_HELP})
@reported
def clean(c, host=None, inventory=INVENTORY, coordinator=None, wait_timeout="3600", verbose=False):
    """Remove from boards the edgeorch images, bare bundles and models that no current recipe uses; say what it
    freed."""
    inv = load_inventory(inventory)
    with farm.open_farm(coordinator, inv) as lab:
        pipeline.clean_boards(inv, _hosts(c, host), OUT, lab, request.number("wait_timeout", wait_timeout,
                                                                                   task="clean"))


STOPPING = ("repeat", "min_pairs", "max_pairs", "precision", "max_time", "min_time", "equivalence", "max_spread",
            "cooldown")
COMPARE_HELP = {k: v for k, v in BENCH_HELP.items()
                if (k not in STOPPING or k in ("repeat", "min_time"))
                and k not in ("profile", "counters", "energy", "keep_samples")}
CALIBRATE_HELP = {**{k: v for k, v in BENCH_HELP.items()
                     if k not in ("batch", "option", "parallel", "base_image", "input_shape", "input", "profile",
                                  "counters", "energy", "keep_samples")},
                  "mode": "docker, bare, native, a comma list, both (docker,bare) or all: each mode is run against "
                          "itself"}
EXPLAIN_HELP = {k: v for k, v in CALIBRATE_HELP.items() if k != "mode"}


@task(help=BENCH_HELP, iterable=["option", "input_shape", "input"], auto_shortflags=False)
@reported
def bench(c, framework=None, host=None, model="mobilenet_v2", mode="both", iterations="50", warmup="5", repeat=None,
          min_pairs="5", max_pairs="40", precision="0.01", max_time="1800", min_time="5", equivalence="0.01",
          max_spread="0.10", cooldown="0", threads="0", batch="1", option=None, input_shape=None, input=None,
          parallel=False, dry_run=False, timeout="3600", base_image=None, resume=None, inventory=INVENTORY,
          profile="0", counters=True, energy=True, keep_samples=False, coordinator=None, wait_timeout="3600",
          results=None, verbose=False):
    """Benchmark a model in Docker and on bare metal, pair after pair until the verdict is known; results go to
    results/<run-id>/."""
    _sweep(c, "bench", locals())


def _sweep(c, name: str, given: dict, **fixed) -> Path | None:
    """A sweep task: its options parsed once into a request (with --resume RUN, that run's own), then run; `fixed`:
    what the task sets whatever is given."""
    return pipeline.sweep(_request(c, name, {**given, **fixed}), OUT)


def _request(c, name: str, given: dict) -> request.Request:
    """A sweep task's request, its options kept in its manifest: with --resume RUN, the options that run was started
    with (and its run directory), whatever else is given."""
    resume = given.get("resume")
    _results_dir(given.get("results"))
    given = {k: v for k, v in given.items() if k == "task" or k in DEFAULTS}
    if resume:
        run_dir = store.find_run(resume, "--resume")
        manifest = store.read_manifest(run_dir)
        saved = manifest.get("request") or {}
        if saved.get("task") != name:
            raise ConfigError(f"--resume {resume}: that run was not started by `invoke {name}` of this edgeorch",
                              hint="resume it with the task that made it, or start a new run")
        if store.legacy_modes(manifest) and saved.get("mode") != "docker":
            raise ConfigError(f"--resume {resume}: that run's bare mode was the board's own Python, which is native "
                              "mode now (bare is the image's userland without a container): its pairs cannot go on "
                              "with today's arms", hint="start a new run; `invoke report` still reads the old one")
        console.print(f"resuming {escape(str(run_dir))} with the arguments it was started with")
        return request.parse({**DEFAULTS, **saved}, resume=run_dir)
    if not given.get("framework"):
        raise ConfigError(f"`invoke {name}` needs --framework (or --resume RUN)",
                          hint="e.g. --framework tflite; `invoke matrix` lists the frameworks")
    given["host"] = _hosts(c, given["host"])
    given["inventory"] = str(Path(given["inventory"]).resolve())
    return request.parse({**DEFAULTS, "task": name, **given})


# bench has every option of a sweep: a task without one means bench's default
DEFAULTS = {k: p.default for k, p in inspect.signature(bench).parameters.items()
            if p.default is not p.empty and k not in ("resume", "results", "verbose")}


@task(help=COMPARE_HELP, iterable=["option", "input_shape", "input"])
@reported
def compare(c, model, host=None, framework="all", mode="both", iterations="20", warmup="3", repeat="2", min_time="0",
            threads="0", batch="1", option=None, input_shape=None, input=None, parallel=False, dry_run=False,
            timeout="3600", base_image=None, resume=None, inventory=INVENTORY, coordinator=None, wait_timeout="3600",
            results=None, verbose=False):
    """Compare frameworks on one model: median latency side by side, each checked against PyTorch."""
    _sweep(c, "compare", locals())


@task(help=CALIBRATE_HELP, auto_shortflags=False)
@reported
def calibrate(c, framework=None, host=None, model="mobilenet_v2", mode="both", iterations="50", warmup="5",
              repeat=None, min_pairs="5", max_pairs="40", precision="0.01", max_time="1800", min_time="5",
              equivalence="0.01", max_spread="0.10", cooldown="0", threads="0", timeout="3600", dry_run=False,
              resume=None, inventory=INVENTORY, coordinator=None, wait_timeout="3600", results=None, verbose=False):
    """The A/A test: each mode against itself, interleaved like a real comparison; the board's noise floor, the
    interval width per minute of benchmarking, and a verdict that must be equivalent or inconclusive."""
    _sweep(c, "calibrate", locals())


@task(help=EXPLAIN_HELP, auto_shortflags=False)
@reported
def explain(c, framework=None, host=None, model="mobilenet_v2", iterations="50", warmup="5", repeat=None, min_pairs="5",
            max_pairs="40", precision="0.01", max_time="1800", min_time="5", equivalence="0.01", max_spread="0.10",
            cooldown="0", threads="0", timeout="3600", dry_run=False, resume=None, inventory=INVENTORY,
            coordinator=None, wait_timeout="3600", results=None, verbose=False):
    """Why Docker differs: Docker rerun with one knob changed at a time (seccomp unconfined, host network, host
    IPC, no CPU limits, the model on a bind mount), each against bare metal with its own interval."""
    _sweep(c, "explain", locals())


@task(help={"host": "board, group, or comma list", "framework": "framework, comma list, or all (see `invoke matrix`)",
            "model": "a zoo network (see `invoke zoo`)", "inventory": INV_HELP, "results": RESULTS_HELP,
            "coordinator": COORDINATOR_HELP, "wait_timeout": WAIT_HELP, "verbose": VERBOSE_HELP})
@reported
def agree(c, framework, host=None, model="mobilenet_v2", inventory=INVENTORY, coordinator=None, wait_timeout="3600",
          results=None, verbose=False):
    """Check that frameworks reproduce PyTorch's output of a zoo network on the boards, in both modes."""
    _sweep(c, "agree", locals(), iterations=1, warmup=0, repeat=1, min_time=0)


@task
@reported
def zoo(c):
    """List the network zoo: parameters and MACs as built, next to the published figures."""
    console.print(tables.zoo_table())


@task(help={"host": "also show the modes each framework runs in on these boards (a board, group or comma list; "
                    "asked over SSH)", "inventory": INV_HELP})
@reported
def matrix(c, host=None, inventory=INVENTORY):
    """Which framework runs on which arch (or why not), and with which models; then every system the seed papers
    measured and how edgeorch runs it (or why not); with --host, the modes each framework has on each of those
    boards."""
    recipes = load_recipes()
    console.print(tables.matrix_table(recipes))
    console.print(tables.systems_table(load_systems(), recipes))
    if host:
        pipeline.modes(load_inventory(inventory), host, OUT)


@task(name="up", help={"inventory": INV_HELP, "host": "only these sim boards: a board, a group or a comma list "
                                                    "(default: every board with `sim: true`)",
                         "verbose": VERBOSE_HELP})
@reported
def sim_up(c, inventory=INVENTORY, host=None, verbose=False):
    """Start the simulated fleet (idempotent): sshd per board on loopback, own-arch userland, own dockerd."""
    sim.up(load_inventory(inventory), host, OUT)


@task(name="status", help={"inventory": INV_HELP})
@reported
def sim_status(c, inventory=INVENTORY):
    """Show each simulated board: container, private dockerd, sshd."""
    console.print(sim.status_table(load_inventory(inventory)))


@task(name="down", help={"inventory": INV_HELP, "verbose": VERBOSE_HELP})
@reported
def sim_down(c, inventory=INVENTORY, verbose=False):
    """Remove everything sim.up made (containers, private dockerds and stores, keys, board images)."""
    sim.down(load_inventory(inventory), OUT)




@task(name="up", help={"inventory": INV_HELP, "port": "the coordinator's port on 127.0.0.1"})
@reported
def farm_up(c, inventory=INVENTORY, port=str(farm.DEFAULT_PORT)):
    """Start a labgrid coordinator and an exporter on loopback for the simulated fleet, each sim board a place with
    its tags (idempotent)."""
    farm_sim.up(load_inventory(inventory), request.number("port", port, int, task="farm.up"), OUT)


@task(name="down", help={"inventory": INV_HELP})
@reported
def farm_down(c, inventory=INVENTORY):
    """Stop the coordinator and exporter farm.up started."""
    farm_sim.down(load_inventory(inventory), OUT)


@task(name="export", help={"coordinator": FARM_HELP, "host": "board, group, or comma list (default: all)",
                           "inventory": INV_HELP, "config": "where the exporter configuration is written"})
@reported
def farm_export(c, coordinator=None, host="all", inventory=INVENTORY, config="farm-exporter.yaml"):
    """Write the labgrid exporter configuration of the inventory's boards (a NetworkService each: address, port,
    user) and make each board a place of the farm, tagged with its name, arch, groups and release."""
    inv = load_inventory(inventory)
    with farm.open_farm(coordinator, inv, required=True) as lab:
        farm_sim.export(lab, inv, inv.select(host), Path(config), OUT)


@task(name="status", help={"coordinator": FARM_HELP, "inventory": INV_HELP})
@reported
def farm_status(c, coordinator=None, inventory=INVENTORY):
    """Show the farm's places: healthy or not, who holds each and since when, their edgeorch lease, tags."""
    with farm.open_farm(coordinator, load_inventory(inventory), required=True) as lab:
        console.print(places_table(lab.address, lab.places(), time.time()))


RUN_HELP = "a results/<run-id> directory or its run id (default: the newest)"


@task(name="show", help={"run": RUN_HELP, "results": RESULTS_HELP})
@reported
def results_show(c, run=None, results=None):
    """Show the Docker/bare comparison of a finished run again."""
    _results_dir(results)
    pipeline.show_results(store.find_run(run), OUT)


@task(name="compare", positional=["run_a", "run_b"],
      help={"run_a": "the earlier run (the baseline): a results/<run-id> directory or its id",
            "run_b": "the later run (default: the newest)", "results": RESULTS_HELP})
@reported
def results_compare(c, run_a, run_b=None, results=None):
    """Each cell both runs measured: its change from RUN_A to RUN_B with its interval and a verdict (the run is the
    unit); written into RUN_B's report.html too."""
    _results_dir(results)
    pipeline.compare_runs(store.find_run(run_a, "RUN_A"), store.find_run(run_b, "RUN_B"), OUT)


@task(help={"run": RUN_HELP, "against": "an earlier run to compare with, in the report (as results.compare does)",
            "results": RESULTS_HELP})
@reported
def report(c, run=None, against=None, results=None):
    """Write results/<run-id>/report.html: one self-contained page of the run's verdicts and figures, offline."""
    _results_dir(results)
    pipeline.write_report(store.find_run(run), OUT, store.find_run(against, "--against") if against else None)


ns = Collection(inventory, check, deploy, clean, bench, compare, calibrate, explain, agree, report, zoo, matrix,
                Collection("sim", sim_up, sim_status, sim_down),
                Collection("farm", farm_up, farm_down, farm_export, farm_status),
                Collection("results", results_show, results_compare))
