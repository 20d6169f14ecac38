"""Tables fit the terminal: at 100 columns and at 80 every verdict is whole on its row; what does not fit goes to the
caption (a column all of whose rows agree) or is left out (the least important first), and the caption says so."""

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from edgeorch import analysis, report, results, sweep
from edgeorch.errors import Unreachable
from edgeorch.facts import BoardFacts
from edgeorch.inventory import Arch
from edgeorch.plan import RunSpec
from edgeorch.report.boards import check_table
from edgeorch.transport import GroupResult

from .test_compare_runs import runs_of

BOARDS = ("rpi3-bookworm", "rpi4", "x86")
VERDICT = (r"(equivalent|inconclusive|too few pairs|INVALID \(\d\)"
           r"|(slower|faster|regression|improvement) [+-]\d+\.\d%)")


def render(table, width: int) -> list[str]:
    console = Console(record=True, width=width)
    console.print(table)
    return [line.rstrip() for line in console.export_text().splitlines()]


def rows(lines: list[str], first: tuple[str, ...]) -> list[str]:
    return [line for line in lines if line.split()[:1] and line.split()[0] in first]


def normalized(make_doc, board_pairs: dict, arms=("docker", "bare"), rng=None):
    """results.normalize's frames of `pairs` pairs per board, each arm's runs around its own level."""
    rng = rng or np.random.default_rng(11)
    records = []
    for board, (pairs, levels) in board_pairs.items():
        for pair in range(pairs):
            for arm, level in zip(arms, levels):
                mode = arm.split("-")[0].split("+")[0]
                spec = RunSpec(board=board, framework="tflite", model="mobilenet_v2", mode=mode, pair=pair, arm=arm,
                               iterations=30, warmup=5, threads=0)
                lat = level * np.exp(0.01 * rng.standard_normal()) * (1 + 0.01 * rng.standard_normal(30))
                records.append((spec, make_doc(list(lat), mode=mode)))
    return results.normalize(records, run_id="r", arch_of={})


@pytest.fixture
def quickstart(make_doc):
    """What the quick start's bench shows: TFLite MobileNet-v2 on its three boards, each cell's verdict."""
    runs, samples = normalized(make_doc, {"rpi3-bookworm": (8, (2512.0, 2480.0)), "rpi4": (6, (1810.0, 1500.0)),
                                          "x86": (3, (21.0, 20.0))})
    cells = {f"{b}/tflite-mobilenet_v2": {"arms": ["docker", "bare"], "stop": "max-pairs", "pairs": 8} for b in BOARDS}
    return runs, analysis.compare_arms(runs, cells)


@pytest.mark.parametrize("width", [80, 100])
def test_the_mode_table_keeps_every_verdict_whole(quickstart, width):
    _, comparison = quickstart
    lines = render(report.mode_table(comparison), width)
    assert max(map(len, lines)) <= width
    found = rows(lines, BOARDS)
    assert [line.split()[0] for line in found] == list(BOARDS)  # each board's name whole, one row each
    assert all(re.search(VERDICT + r"\s*$", line) for line in found), lines
    assert "INVALID (1)" in found[2] and "(1) too few pairs (3 < 5)" in map(str.strip, lines)


def test_at_100_columns_the_quick_starts_table_shows_every_column(quickstart):
    _, comparison = quickstart
    lines = render(report.mode_table(comparison), 100)
    assert all(h in lines[1] for h in ("board", "framework", "model", "docker p50", "bare p50", "95% CI", "pairs"))
    assert not any(line.startswith(("every row:", "left out")) for line in lines)
    assert "tflite" in rows(lines, BOARDS)[0] and "mobilenet_v2" in rows(lines, BOARDS)[0]


def test_at_80_columns_what_every_row_says_goes_to_the_caption_first(quickstart):
    _, comparison = quickstart
    lines = render(report.mode_table(comparison), 80)
    assert "every row: framework tflite, model mobilenet_v2" in lines
    assert "docker p50" in lines[1] and "pairs" in lines[1]  # no figure was left out for them


def test_the_least_important_columns_are_left_out_first_and_named(quickstart):
    comparison = quickstart[1].assign(framework=["onnxruntime", "tflite", "pytorch"],
                                      model=["squeezenet1_1 t2 b4", "mobilenet_v2 t4 b8", "resnet18 t1 b16"])
    lines = render(report.mode_table(comparison), 80)
    assert max(map(len, lines)) <= 80
    assert any(line.startswith("left out to fit: pairs, bare p50") for line in lines)  # least important first
    assert all(re.search(VERDICT + r"\s*$", line) for line in rows(lines, BOARDS)), lines
    assert "squeezenet1_1 t2 b4" in rows(lines, BOARDS)[0]  # the names stay whole too
    narrow = render(report.mode_table(comparison), 60)
    assert all(re.search(VERDICT + r"\s*$", line) for line in rows(narrow, BOARDS)), narrow


def test_the_printed_table_keeps_all_its_columns(quickstart):
    table = report.mode_table(quickstart[1])
    render(table, 60)
    assert len(table.columns) == 8 and table.caption.startswith("stopped by")


@pytest.mark.parametrize("width", [80, 100])
def test_calibration_and_explain_verdicts_fit(make_doc, width):
    runs, samples = normalized(make_doc, {"rpi3-bookworm": (6, (20.0, 20.0, 20.2, 20.1))},
                               arms=("docker-A", "docker-B", "bare-A", "bare-B"))
    cal = analysis.compare_arms(runs, {
        "rpi3-bookworm/tflite-mobilenet_v2:docker": {"arms": ["docker-A", "docker-B"], "stop": "max-pairs"},
        "rpi3-bookworm/tflite-mobilenet_v2:bare": {"arms": ["bare-A", "bare-B"], "stop": "max-pairs"}})
    lines = render(report.calibration_table(cal), width)
    assert max(map(len, lines)) <= width and "minutes to ±1%" in lines[1]
    assert all(re.search(VERDICT + r"\s*$", line) for line in rows(lines, ("docker", "bare", "rpi3-bookworm")))
    knobs = ("docker", "bare", *(f"docker+{k}" for k in sweep.KNOBS), "docker+model-on-bind-mount")
    runs, samples = normalized(make_doc, {"rpi3-bookworm": (6, (22.0, 20.0, 21.0, 22.0, 22.1, 21.5, 22.0))},
                               arms=knobs)
    explained = analysis.compare_arms(runs, {"rpi3-bookworm/tflite-mobilenet_v2": {"arms": list(knobs)}})
    lines = render(report.explain_table(explained), width)
    assert max(map(len, lines)) <= width
    found = [line for line in lines if re.match(r"(rpi3-bookworm\s+)?docker", line) and "verdict" not in line]
    assert len(found) == 6 and all(re.search(VERDICT + r"\s*$", line) for line in found), lines
    assert "docker+model-on-bind-mount" in lines[-1] or any("docker+model-on-bind-mount " in x for x in found)


@pytest.mark.parametrize("width", [80, 100])
def test_a_change_between_runs_fits(width):
    rng = np.random.default_rng(3)
    before = pd.concat([runs_of("A", 20 * np.exp(0.01 * rng.standard_normal(6)), board=b, arm=arm)
                        for b in BOARDS for arm in ("docker", "bare")])
    after = pd.concat([runs_of("B", 22 * np.exp(0.01 * rng.standard_normal(6)), board=b, arm=arm)
                       for b in BOARDS for arm in ("docker", "bare")])
    lines = render(report.change_table(analysis.compare_runs(before, after), "20250101T000000Z-abcd",
                                       "20250108T000000Z-ef01"), width)
    assert max(map(len, lines)) <= width
    found = rows(lines, BOARDS)
    assert len(found) == 6 and all(re.search(VERDICT + r"\s*$", line) for line in found), lines


@pytest.mark.parametrize("width", [80, 100])
def test_the_tables_beside_the_verdict_fit_too(quickstart, width):
    runs, _ = quickstart
    for table in (report.measures_table(runs), report.framework_table(runs), report.sweep_table(runs)):
        lines = render(table, width)
        assert max(map(len, lines)) <= width, lines
        assert [line.split()[0] for line in rows(lines, BOARDS)] == sorted(2 * BOARDS) or table.title.startswith(
            ("Frameworks", "Beside")), lines


@pytest.mark.parametrize("width", [80, 100])
def test_the_check_table_keeps_each_boards_problems_whole(width):
    row = BoardFacts(board="rpi4", arch_ok=True, arch_found="arm64", python="3.11.2", python_exit="0", python_said="",
                     os="Debian GNU/Linux 12 (bookworm)", platform=None, docker="20.10.24+dfsg1", venv=True,
                     numpy="1.24.2", disk_free_mb=56156, sensors="thermal x1, cpufreq x4",
                     frameworks=("tflite 2.14.0", "onnxruntime 1.20.1"))
    boards = [type("B", (), {"name": n, "arch": Arch.ARM64})() for n in BOARDS]
    group = GroupResult(succeeded={"rpi3-bookworm": dataclasses.replace(row, problems=("no working Docker engine",)),
                                   "rpi4": row},
                        failed={"x86": Unreachable("board x86 is unreachable")})
    lines = render(check_table(boards, group), width)
    assert max(map(len, lines)) <= width
    found = {line.split()[1]: line for line in lines if line.split()[1:2] and line.split()[1] in BOARDS}
    assert "1: see below" in found["rpi3-bookworm"] and "none" in found["rpi4"]
    assert "not reached: see below" in found["x86"]
