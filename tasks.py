"""edgeorch tasks: `invoke --list` shows them, `invoke --help TASK` explains one.

Each task parses its arguments and calls one library function; errors are reported once,
here, with the exit code of their kind.
"""

import functools

from invoke import Collection, Exit, task

from edgeorch import pipeline, report, results, sim
from edgeorch.console import console
from edgeorch.errors import ConfigError, EdgeorchError
from edgeorch.inventory import load_inventory
from edgeorch.recipes import load_recipes

INVENTORY = "inventory.yaml"
INV_HELP = "inventory file (default: inventory.yaml)"


def reported(fn):
    """Turn an EdgeorchError into one red message and the exit code of its kind."""
    @functools.wraps(fn)
    def wrapper(c, *args, **kwargs):
        try:
            return fn(c, *args, **kwargs)
        except EdgeorchError as e:
            console.print(f"[bold red]error:[/] {e.message}")
            if e.hint:
                console.print(f"[yellow]fix:[/] {e.hint}")
            raise Exit(code=e.exit_code) from e
    return wrapper


def _hosts(c, host):
    """--host, or the hosts of a `deploy` earlier on the same command line."""
    host = host or c.config.get("edgeorch_last_host")
    if not host:
        raise ConfigError("no boards given", hint="pass --host BOARD, a group, or a comma list "
                                                  "(e.g. --host rpi3 or --host sim)")
    c.config.edgeorch_last_host = host
    return host


@task(help={"inventory": INV_HELP})
@reported
def inventory(c, inventory=INVENTORY):
    """Show the boards of the inventory."""
    console.print(pipeline.inventory_table(load_inventory(inventory)))


@task(help={"host": "board, group, or comma list (default: all)", "inventory": INV_HELP})
@reported
def check(c, host="all", inventory=INVENTORY):
    """Check each board: SSH, arch, Docker version, Python, free disk, thermal/frequency sensors."""
    if not pipeline.check(load_inventory(inventory), host):
        raise Exit(code=5)


BENCH_HELP = {
    "host": "board, group, or comma list (default: the host of a preceding deploy)",
    "framework": "framework, comma list of them, or all (see `invoke matrix`)",
    "model": "a zoo network or builtin of the framework's format (see `invoke matrix`), or the path of your own file",
    "mode": "docker, bare or both",
    "iterations": "timed inferences per run",
    "warmup": "untimed inferences before them",
    "repeat": "runs per mode; modes alternate docker, bare, docker, bare, ...",
    "threads": "framework threads (0: the framework's default)",
    "batch": "images per inference, for zoo networks (throughput is reported in images/s)",
    "option": "framework option KEY=VALUE, repeatable: xnnpack=off (tflite, litert), device=cpu (pytorch), "
              "precision=fp16 (tensorrt)",
    "parallel": "run boards side by side (real fleets; the sim boards share this host's CPUs)",
    "dry_run": "print the planned runs and stop", "inventory": INV_HELP,
    "timeout": "seconds one run may take before it counts as failed",
    "base_image": "the image to build FROM for frameworks that need the vendor's (tensorrt), e.g. "
                  "nvcr.io/nvidia/l4t-tensorrt:r8.5.2-runtime",
}


@task(help={"host": "board, group, or comma list",
            "framework": "framework to deploy (default: each board's `frameworks` list)",
            "serial": "deploy one board after another instead of side by side", "inventory": INV_HELP,
            "base_image": BENCH_HELP["base_image"]})
@reported
def deploy(c, host=None, framework=None, inventory=INVENTORY, serial=False, base_image=None):
    """Build the framework image for each board's arch and deploy it (Docker image + bare-metal bundle)."""
    pipeline.deploy_boards(load_inventory(inventory), _hosts(c, host),
                           [framework] if framework else None, parallel=not serial, base_image=base_image)




@task(help=BENCH_HELP, iterable=["option"])
@reported
def bench(c, framework, host=None, model="mobilenet_v2", mode="both", iterations=50, warmup=5, repeat=3,
          threads=0, batch=1, option=None, parallel=False, dry_run=False, timeout=3600, base_image=None,
          inventory=INVENTORY):
    """Benchmark a model in Docker and on bare metal; results go to results/<run-id>/."""
    pipeline.bench(load_inventory(inventory), _hosts(c, host), framework=framework, model=model,
                   mode=mode, iterations=iterations, warmup=warmup, repeat=repeat, threads=threads, batch=batch,
                   options=tuple(option or ()), parallel=parallel, dry_run=dry_run, timeout=timeout,
                   base_image=base_image)


@task(help=BENCH_HELP, iterable=["option"])
@reported
def compare(c, model, host=None, framework="all", mode="both", iterations=20, warmup=3, repeat=2, threads=0,
            batch=1, option=None, parallel=False, dry_run=False, timeout=3600, base_image=None, inventory=INVENTORY):
    """Compare frameworks on one model: median latency side by side, each checked against PyTorch."""
    pipeline.bench(load_inventory(inventory), _hosts(c, host), framework=framework, model=model,
                   mode=mode, iterations=iterations, warmup=warmup, repeat=repeat, threads=threads, batch=batch,
                   options=tuple(option or ()), parallel=parallel, dry_run=dry_run, timeout=timeout,
                   base_image=base_image)


@task(help={"host": "board, group, or comma list", "framework": "framework, comma list, or all (see `invoke matrix`)",
            "model": "a zoo network (see `invoke zoo`)", "inventory": INV_HELP})
@reported
def agree(c, framework, host=None, model="mobilenet_v2", inventory=INVENTORY):
    """Check that frameworks reproduce PyTorch's output of a zoo network on the boards, in both modes."""
    pipeline.agree(load_inventory(inventory), _hosts(c, host), framework=framework, model=model)


@task
@reported
def zoo(c):
    """List the network zoo: parameters and MACs as built, next to the published figures."""
    console.print(report.zoo_table())


@task
@reported
def matrix(c):
    """Which framework runs on which arch (or why not), and with which models."""
    console.print(report.matrix_table(load_recipes()))


@task(name="up", help={"inventory": INV_HELP})
@reported
def sim_up(c, inventory=INVENTORY):
    """Start the simulated fleet (idempotent): sshd per board on loopback, own-arch userland, own dockerd."""
    sim.up(load_inventory(inventory))
    sim_status(c, inventory)


@task(name="status", help={"inventory": INV_HELP})
@reported
def sim_status(c, inventory=INVENTORY):
    """Show each simulated board: container, private dockerd, sshd."""
    console.print(sim.status_table(load_inventory(inventory)))


@task(name="down", help={"inventory": INV_HELP})
@reported
def sim_down(c, inventory=INVENTORY):
    """Remove everything sim.up made (containers, private dockerds and stores, keys, board images)."""
    sim.down(load_inventory(inventory))


@task(name="show", help={"run": "results/<run-id> directory (default: the newest)"})
@reported
def results_show(c, run=None):
    """Show the Docker/bare comparison of a finished run again."""
    pipeline.show_results(run or results.latest_run())


ns = Collection(inventory, check, deploy, bench, compare, agree, zoo, matrix,
                Collection("sim", sim_up, sim_status, sim_down),
                Collection("results", results_show))
