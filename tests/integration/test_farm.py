"""A board farm shared by two orchestrators: `invoke farm.up` (a labgrid coordinator and exporter on loopback), two
users' benches of the same board at once through it, and one user's orchestrator killed while it holds the board.
Each user is a process of their own with their own labgrid name, as two people (or hosts) would be."""

from __future__ import annotations

import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgeorch import results
from edgeorch.farm import Farm

from . import faults as F
from .conftest import INVENTORY, ROOT, invoke, runs_started

QUICK = ["--framework", "tflite", "--model", "tiny", "--iterations", "3", "--warmup", "0", "--min-time", "0"]


@pytest.fixture(scope="module")
def farm(fleet):
    """The sim fleet's farm on a port of its own; taken down afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    invoke("farm.up", "--port", str(port), "--inventory", str(INVENTORY))
    try:
        yield f"127.0.0.1:{port}"
    finally:
        invoke("farm.down", "--inventory", str(INVENTORY), check=False)


def bench(user: str, coordinator: str, *more: str) -> subprocess.Popen:
    """`invoke bench` of the x86 board through the farm, as `user`."""
    env = {**os.environ, "LG_USERNAME": user, "EDGEORCH_INVENTORY": str(INVENTORY)}
    return subprocess.Popen([str(Path(sys.executable).parent / "invoke"), "bench", "--host", "x86", "--coordinator",
                             coordinator, *QUICK, *more], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def spans(run_dir: Path) -> list[tuple[float, float]]:
    """Each run's (start, end) on the board, from its raw answer: started_at, then its load, first inference,
    warm-up and timed loop."""
    found = []
    for path in (run_dir / "raw").rglob("*.json"):
        doc = json.loads(path.read_text())
        start = datetime.datetime.fromisoformat(doc["started_at"]).timestamp()
        t = doc["timing"]  # warmup_ns: each warm-up inference's
        found.append((start, start + (t["load_ns"] + t["first_inference_ns"] + sum(t["warmup_ns"]) + t["wall_ns"])
                      / 1e9))
    return sorted(found)


def x86(coordinator: str):
    """The x86 board's place, as the farm has it now."""
    with Farm(coordinator) as lab:
        return lab.place("x86")


def held_by(coordinator: str, user: str) -> bool:
    return (x86(coordinator).holder or "").endswith(f"/{user}")


def left_free(coordinator: str) -> None:
    place = x86(coordinator)
    assert (place.holder, place.reservation) == (None, None), place


def test_two_users_benching_one_board_queue_and_never_overlap(farm):
    before = set(results.root().glob("*/"))
    alice = bench("alice", farm, "--repeat", "3")
    F.wait_for(lambda: held_by(farm, "alice"), "alice holding x86", timeout=300, every=0.5)
    bob = bench("bob", farm, "--repeat", "2")
    said = {u: p.communicate(timeout=900)[0] for u, p in (("alice", alice), ("bob", bob))}
    assert alice.returncode == 0 and bob.returncode == 0, F.flat(said["alice"] + said["bob"])[-4000:]
    assert "x86: waiting for the farm: held by" in F.flat(said["bob"]), F.flat(said["bob"])[-3000:]
    [first, second] = sorted(runs_started(before, INVENTORY), key=lambda d: spans(d)[0])
    assert len(spans(first)) == 6 and len(spans(second)) == 4  # every pair of both sweeps ran
    assert spans(first)[-1][1] <= spans(second)[0][0]  # alice's last run ended before bob's first began
    held = results.read_manifest(second)["farm"]
    assert held[0]["place"] == "x86" and held[0]["holder"].endswith("/bob") and held[0]["waited_s"] > 1
    left_free(farm)


def test_a_killed_orchestrators_board_goes_to_the_next_in_the_queue(farm):
    alice = bench("alice", farm, "--repeat", "40")
    F.wait_for(lambda: held_by(farm, "alice"), "alice holding x86", timeout=300, every=0.5)
    time.sleep(5)  # in the middle of her runs
    os.killpg(alice.pid, signal.SIGKILL)  # no release, no clean-up, as when her laptop dies
    alice.wait()
    started = time.monotonic()
    bob = bench("bob", farm, "--repeat", "1")
    out = F.flat(bob.communicate(timeout=900)[0])
    assert bob.returncode == 0, out[-4000:]
    assert "x86: released from" in out and "/alice: its edgeorch lease lapsed" in out, out[-3000:]
    assert time.monotonic() - started < 30 + 120  # the lease, then bob's own bench
    left_free(farm)


def test_check_marks_the_place_and_sweeps_of_a_tag_skip_an_unhealthy_one(farm):
    env = {**os.environ, "EDGEORCH_INVENTORY": str(INVENTORY), "EDGEORCH_COORDINATOR": farm}
    with Farm(farm) as lab:
        lab.tag("x86", {"healthy": "no"})
        r = invoke("bench", "--host", "tag:board=x86", *QUICK, "--repeat", "1", check=False, env=env)
        out = F.flat(r.stdout + r.stderr)
        assert r.returncode == 2 and "skipping x86" in out and "unhealthy" in out, out[-3000:]
        invoke("check", "--host", "x86", env=env)
        assert lab.place("x86").tags["healthy"] == "yes"
