"""Integration tests use the real things: the Docker engine, the simulated fleet over SSH, TFLite."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgeorch import results, sim
from edgeorch.inventory import load_inventory

ROOT = Path(__file__).resolve().parents[2]
# The inventory the tests use, and the tasks they run by default: the shipped one, or part b's (see below).
INVENTORY = Path(os.environ.get("EDGEORCH_INVENTORY", ROOT / "inventory.yaml")).resolve()

# ./test.sh runs the integration tests in two parts side by side, as one part leaves a core idle: waiting on SSH, on
# QEMU's single-threaded ARM boards, on a board's Docker engine. Part b is these files' tests that need no ARM board,
# on an x86 sim board of its own (part_b/inventory.yaml: the same board on another port, with its own state), since
# two benchmarks on one board refuse each other. Part a is the rest: the ARM boards, and the tests that stop, restart
# or name the shipped x86 board (faults, SSH set-ups, the fleet itself). The files are split by their time.
PART_B = {"test_bad_input.py", "test_browser.py", "test_caffe_export.py", "test_deploy_layers.py", "test_errors.py",
          "test_farm.py",
          "test_frameworks.py", "test_hostile_names.py", "test_lost_link.py", "test_measures.py",
          "test_model_inputs.py", "test_models_build.py", "test_shared_board.py", "test_zoo_convert.py",
          "test_zoo_export.py"}


def _part(item) -> str:
    arm = {"pi_fleet", "trixie_fleet"} & set(item.fixturenames)
    return "b" if item.path.name in PART_B and not arm else "a"


def pytest_collection_modifyitems(config, items):
    """Every test here is marked integration. Those on the x86 board alone run first, then those on the bookworm
    Pis, then those on today's Raspberry Pi OS: ./test.sh starts the ARM boards (mmdebstraps and apt under QEMU:
    minutes) while the tests before them run."""
    if part := config.getoption("part"):
        other = [item for item in items if _part(item) != part]
        config.hook.pytest_deselected(items=other)
        items[:] = [item for item in items if _part(item) == part]
    for item in items:
        item.add_marker(pytest.mark.integration)
    # a stable sort: each part keeps the files' order
    items.sort(key=lambda item: 2 if "trixie_fleet" in item.fixturenames else int("pi_fleet" in item.fixturenames))


@pytest.fixture(scope="session")
def fleet():
    """The shipped inventory, its x86 sim board up (sim.up is idempotent, so a running board is reused). A test on
    the ARM boards asks for pi_fleet or trixie_fleet too."""
    inventory = load_inventory(INVENTORY)
    sim.up(inventory, "x86")
    return inventory


# The bookworm boards of the default tier: x86 and the 32-bit Pi. The quick start's rpi4 (arm64 bookworm) costs an
# mmdebstrap and a board made under QEMU for no path the other boards lack (rpi5 is arm64 too): exhaustive.
BOOKWORM = "x86,rpi3-bookworm"


@pytest.fixture(scope="session")
def pi_fleet(fleet):
    """The BOOKWORM boards up; where ./test.sh is starting them in the background, sim.up waits for it and builds
    nothing twice."""
    sim.up(fleet, BOOKWORM)
    return fleet


@pytest.fixture(scope="session")
def rpi4_fleet(pi_fleet):
    """rpi4 up too (the exhaustive tier's arm64 bookworm board)."""
    sim.up(pi_fleet, "rpi4")
    return pi_fleet


@pytest.fixture(scope="session")
def trixie_fleet(fleet):
    """The boards of today's Raspberry Pi OS (group trixie) up, as pi_fleet does."""
    sim.up(fleet, "trixie")
    return fleet


def invoke(*args: str, cwd: Path = ROOT, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `invoke ARGS` exactly as a user would, from the project root (in `env`, by default this one's)."""
    cmd = [str(Path(sys.executable).parent / "invoke"), *args]
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {r.returncode}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


def runs_started(before: set[Path], inventory: Path) -> list[Path]:
    """The run directories made since `before` by a task given `inventory` (other benches may run meanwhile)."""
    started = []
    for run in set(results.root().glob("*/")) - before:
        try:
            request = json.loads((run / "manifest.json").read_text()).get("request") or {}
        except (OSError, ValueError):
            continue
        if request.get("inventory") == str(inventory):
            started.append(run)
    return started


# The zoo's networks whose layers a smaller one already has run in the exhaustive tier only: ResNet-50's bottlenecks
# are ResNet-18's convs, BatchNorm and adds; VGG-16's convs, pools and dense head are AlexNet's.
SAME_LAYERS = {"resnet50", "vgg16"}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """A fresh model cache for the test file's exports."""
    return tmp_path_factory.mktemp("cache")


def export_each(exporter, names, cache_dir) -> dict:
    """Each network exported once into `cache_dir`: {name: (path, log lines)}."""
    result = {}
    for name in names:
        logged = []
        result[name] = exporter.export(name, 1, cache_dir, logged.append), logged
    return result


def networks(names) -> list:
    """`names` as test parameters, those of SAME_LAYERS marked exhaustive."""
    return [pytest.param(n, marks=pytest.mark.exhaustive) if n in SAME_LAYERS else n for n in names]
