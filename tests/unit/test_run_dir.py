"""A run directory is made by one run alone, and one process at a time writes a session of it: a second `--resume`
of a run that is going on is refused at once, naming the process that holds it."""

import datetime
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from edgeorch import health, pipeline, results, targets
from edgeorch.console import REPORTER
from edgeorch.errors import RunError
from edgeorch.inventory import Inventory
from edgeorch.plan import StopRule
from edgeorch.request import Request
from edgeorch.sweep import Sweep
from edgeorch.transport import GroupResult

ROOT = Path(__file__).resolve().parents[2]


class _Frozen(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=tz)


@pytest.fixture
def frozen(tmp_path, monkeypatch):
    """Results under tmp_path, at one instant, with the random part of run ids given by the test."""
    monkeypatch.setenv("EDGEORCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(results, "datetime", types.SimpleNamespace(datetime=_Frozen, UTC=datetime.UTC))
    tokens: list[str] = []
    monkeypatch.setattr(results.secrets, "token_hex", lambda n: tokens.pop(0))
    return tokens


def test_a_new_run_never_takes_over_a_directory_that_exists(frozen, tmp_path):
    frozen += ["abcd", "abcd", "ef01"]
    first = results.new_run_dir()
    (first / "results.csv").write_text("the first run's")
    second = results.new_run_dir()
    assert (first.name, second.name) == ("20260102T030405Z-abcd", "20260102T030405Z-ef01")
    assert (first / "results.csv").read_text() == "the first run's" and (second / "raw").is_dir()


def test_when_every_id_is_taken_the_error_says_so(frozen, tmp_path):
    frozen += ["abcd"] * 17
    results.new_run_dir()
    with pytest.raises(RunError, match="every id tried for 20260102T030405Z exists") as e:
        results.new_run_dir()
    assert "--results" in e.value.hint


HOLD = """
import sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from edgeorch import results
with results.locked_run(Path(sys.argv[2])):
    results.write_manifest(Path(sys.argv[2]), session="first")
    print("held", flush=True)
    sys.stdin.readline()
"""


@pytest.fixture
def held(tmp_path):
    """A run directory that another edgeorch process is writing a session of (until the test ends)."""
    run_dir = tmp_path / "20260102T030405Z-abcd"
    (run_dir / "raw").mkdir(parents=True)
    results.write_manifest(run_dir, complete=False, request={"task": "bench"})
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(ROOT), str(run_dir)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield run_dir, proc
    proc.stdin.close()
    proc.wait(30)


def test_a_second_session_of_a_run_is_refused_naming_the_process_that_holds_it(held):
    run_dir, proc = held
    with pytest.raises(RunError, match=f"in use by another edgeorch: pid {proc.pid} on ") as e:
        with results.locked_run(run_dir):
            pass
    assert f"kill {proc.pid}" in e.value.hint and "--resume" in e.value.hint
    proc.stdin.close()  # the other session ends: the run is free again
    proc.wait(30)
    with results.locked_run(run_dir):
        results.write_manifest(run_dir, session="second")
    assert results.read_manifest(run_dir)["session"] == "second"


def test_a_resume_of_a_run_going_on_touches_nothing_of_it(held, monkeypatch):
    run_dir, proc = held
    before = (run_dir / "manifest.json").read_bytes()
    monkeypatch.setattr(pipeline, "load_inventory", lambda path: Inventory(Path("-")))
    monkeypatch.setattr(health, "healthy_boards", lambda inventory, host, out: [])
    empty = Sweep(cells={}, rule=StopRule(), recipes=[], named={}, model="m", batches=(1,), options=())
    monkeypatch.setattr(pipeline, "plan", lambda request, boards, found, out: empty)
    monkeypatch.setattr(targets, "platforms", lambda boards, timeout, lock=True: GroupResult(succeeded={}, failed={}))
    monkeypatch.setattr(targets, "build", lambda chosen, out, base_image=None, bare=(): {})
    with pytest.raises(RunError, match=f"pid {proc.pid}"):
        pipeline.sweep(Request(task="bench", inventory="-", host="x", framework="tflite", resume=run_dir), REPORTER)
    assert (run_dir / "manifest.json").read_bytes() == before
    assert json.loads(before)["session"] == "first"


def test_a_link_at_the_lock_is_refused_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("someone else's file")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / results.LOCK).symlink_to(victim)
    with pytest.raises(RunError, match="cannot open the lock"):
        with results.locked_run(run_dir):
            pass
    assert victim.read_text() == "someone else's file"
