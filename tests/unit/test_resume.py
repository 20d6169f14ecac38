"""What a killed sweep leaves behind is whole and resumable: atomic writes, and the finished pairs of a cell."""

import json
import os
import signal
import subprocess
import sys

from edgeorch import results
from edgeorch.plan import Arm, Cell

from .conftest import result_doc

CELL = Cell(board="x86", framework="tflite", model="m", arms=(Arm(label="docker", mode="docker"),
                                                             Arm(label="bare", mode="bare")),
            iterations=5, warmup=0, threads=0)


def _runs_of(pair):
    return CELL.runs(pair) if pair < 10 else None


def _answer(run_dir, spec, doc):
    path = results.raw_path(run_dir, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))


def test_whole_pairs_are_kept_and_the_runs_of_a_cut_pair_are_set_aside_not_lost(tmp_path):
    for pair in range(2):
        for spec in CELL.runs(pair):
            _answer(tmp_path, spec, result_doc([5.0] * 5, mode=spec.mode))
    cut = CELL.runs(2)[0]  # the pair's first run finished, then the orchestrator died
    _answer(tmp_path, cut, result_doc([5.0] * 5, mode=cut.mode))
    pairs = results.finished_pairs(tmp_path, _runs_of)
    assert [[spec.key for spec, _ in pair] for pair in pairs] == [[s.key for s in CELL.runs(p)] for p in range(2)]
    assert not results.raw_path(tmp_path, cut).exists()
    kept = list((tmp_path / "raw" / "superseded").rglob("*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["status"] == "ok"


def test_a_failed_or_unreadable_answer_ends_the_finished_pairs(tmp_path):
    first, second = CELL.runs(0)
    _answer(tmp_path, first, result_doc([5.0] * 5, mode=first.mode))
    _answer(tmp_path, second, '{"schema": "edgeorch.result/6", "status": "error"')  # cut mid-write by old code
    assert results.finished_pairs(tmp_path, _runs_of) == []
    assert not results.raw_path(tmp_path, first).exists()


def test_a_write_killed_midway_leaves_the_old_file_whole(tmp_path):
    target = tmp_path / "manifest.json"
    target.write_text('{"complete": false}')
    script = ("import sys; sys.path.insert(0, sys.argv[1]); from edgeorch import results; import pathlib, os, "
              "signal\n"
              "os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
              "results.write_atomic(pathlib.Path(sys.argv[2]), 'x' * 10_000_000)\n")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, "-c", script, root, str(target)])
    assert r.returncode == -signal.SIGKILL
    assert json.loads(target.read_text()) == {"complete": False}


def test_the_manifest_is_updated_cell_by_cell(tmp_path):
    results.write_manifest(tmp_path, complete=False, cells={CELL.key: {"stop": None, "pairs": 0}})
    results.update_cell(tmp_path, CELL.key, pairs=3, last_run="x86/tflite-m-bare-02")
    results.update_cell(tmp_path, CELL.key, stop="precision")
    assert results.read_manifest(tmp_path)["cells"][CELL.key] == {"stop": "precision", "pairs": 3,
                                                                  "last_run": "x86/tflite-m-bare-02"}
