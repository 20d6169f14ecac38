"""Every test writes its runs under a results directory of its own session, never into the checkout's results/:
that history is the user's. It is removed after a session that passed, and named after one that did not.

Tests marked `exhaustive` (every framework installed under QEMU on every ARM board, every network of the zoo) run
only with `--all` (`./test.sh --all`); the default tier proves each path once, on its smallest case."""

import os
import shutil
import tempfile

import pytest

_LEFT = pytest.StashKey[int]()

os.environ["EDGEORCH_RESULTS"] = tempfile.mkdtemp(prefix="edgeorch-test-results-")
# The tasks' tables as a piped run prints them, whatever width the calling shell exports (CI's says 80).
os.environ["COLUMNS"] = "160"


def pytest_addoption(parser):
    parser.addoption("--all", action="store_true", dest="exhaustive",
                     help="also run the exhaustive tier (tests marked exhaustive)")
    parser.addoption("--part", choices=("a", "b"),
                     help="only the integration tests of this part (./test.sh runs the two side by side)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("exhaustive"):
        return
    left = [item for item in items if item.get_closest_marker("exhaustive")]
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = [item for item in items if not item.get_closest_marker("exhaustive")]
        config.stash[_LEFT] = len(left)


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 0:
        shutil.rmtree(os.environ["EDGEORCH_RESULTS"], ignore_errors=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if config.stash.get(_LEFT, 0):
        terminalreporter.write_line(f"{config.stash[_LEFT]} tests of the exhaustive tier were not run: "
                                    "./test.sh --all runs them")
    if exitstatus != 0:
        terminalreporter.write_line(f"the runs of this session are kept in {os.environ['EDGEORCH_RESULTS']}")
