"""Bad input and broken boards: a clear message naming the thing and the fix, a non-zero exit,
nothing half-done presented as complete."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from edgeorch import results, sim

from .conftest import INVENTORY, invoke


def _runs() -> set[Path]:
    return set(results.root().glob("*/"))


def test_unknown_host(fleet):
    r = invoke("bench", "--host", "nosuch", "--framework", "tflite", check=False)
    assert r.returncode == 2
    assert "'nosuch' is neither a board nor a group" in r.stdout and "x86" in r.stdout  # the boards there are


def test_unknown_framework(fleet):
    r = invoke("bench", "--host", "x86", "--framework", "caffe9", check=False)
    assert r.returncode == 2 and "unknown framework 'caffe9'" in r.stdout and "tflite" in r.stdout


@pytest.mark.parametrize("task, args, message", [
    ("bench", ["--precision", "1%"], "--precision '1%' is not a number"),
    ("bench", ["--max-pairs", "many"], "--max-pairs 'many' is not an integer"),
    ("calibrate", ["--min-pairs", "9", "--max-pairs", "4"], "1 <= min-pairs <= max-pairs"),
    ("explain", ["--precision", "1.5"], "--precision 1.5 must be in (0, 1)"),
])
def test_a_stopping_option_that_cannot_work_is_refused_before_anything(task, args, message):
    before = _runs()
    r = invoke(task, "--host", "x86", "--framework", "tflite", "--model", "tiny", *args, check=False)
    assert r.returncode == 2 and message in r.stdout and "fix:" in r.stdout
    assert _runs() == before


def test_a_file_that_is_not_a_model(fleet, tmp_path):
    bad = tmp_path / "notes.tflite"
    bad.write_text("these are my notes, not a model\n")
    before = _runs()
    r = invoke("bench", "--host", "x86", "--framework", "tflite", "--model", str(bad), check=False)
    assert r.returncode == 4 and str(bad) in r.stdout
    assert _runs() == before  # nothing started, nothing half-written


def _inventory_with_ghost(tmp_path) -> Path:
    raw = yaml.safe_load(INVENTORY.read_text())
    for key in ("identity_file", "known_hosts"):
        raw["defaults"][key] = str(INVENTORY.parent / raw["defaults"][key])
    x86 = next(b for b in raw["boards"] if b["name"] == "x86")
    raw["boards"] = [x86, {"name": "ghost", "port": 1, "arch": "amd64"}]
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_check_reports_an_unreachable_board(fleet, tmp_path):
    r = invoke("check", "--inventory", str(_inventory_with_ghost(tmp_path)), check=False)
    assert r.returncode == 5
    assert "ghost" in r.stdout and "unreachable" in r.stdout
    assert re.search(r"x86 .*ok", r.stdout)


def test_a_dead_board_loses_nothing_of_the_others(fleet, tmp_path):
    r = invoke("bench", "--inventory", str(_inventory_with_ghost(tmp_path)), "--host", "x86,ghost",
               "--framework", "tflite", "--model", "tiny", "--iterations", "5", "--repeat", "1", "--min-time", "0",
               check=False)
    assert r.returncode == 6 and "INCOMPLETE" in r.stdout and "ghost" in r.stdout
    run_dir = Path(re.search(r"results go to (\S+)", r.stdout).group(1))
    assert set(pd.read_parquet(run_dir / "results.parquet")["board"]) == {"x86"}
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["complete"] is False
    assert manifest["missing"] == ["ghost/tflite-tiny"]
    done = manifest["cells"]["x86/tflite-tiny"]
    assert (done["arms"], done["stop"], done["pairs"], done["failure"]) == (["docker", "bare"], "max-pairs", 1, None)
    assert "unreachable" in manifest["cells"]["ghost/tflite-tiny"]["failure"]
    assert f"invoke bench --resume {run_dir}" in " ".join(r.stdout.split())


def test_a_board_without_docker(fleet):
    [sb] = [s for s in sim.sim_boards(fleet) if s.board.name == "x86"]
    engine = sim._dockerd(sb)  # (its pidfile holds its pid in the board's PID namespace)
    engine.terminate()
    try:
        engine.wait(60)
        r = invoke("deploy", "--host", "x86", check=False)
        assert r.returncode == 5
        assert "x86 has no working Docker engine" in r.stdout and "install Docker" in r.stdout
    finally:
        sim.up(fleet, "x86")
    r = invoke("check", "--host", "x86")  # the board has its engine back
    assert "20.10" in r.stdout
