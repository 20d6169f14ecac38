"""edgeorch.report: the docker/bare ratio with its confidence interval, the per-board comparison table."""

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from edgeorch import analysis, report, results, stats
from edgeorch.plan import RunSpec


def normalized(make_doc, runs):
    """`runs`: (board, arm, pair, latencies_ms, throttled, max_temp_c) -> results.normalize's frames."""
    records = []
    for board, arm, pair, latencies, throttled, temp in runs:
        mode = arm.split("-")[0].split("+")[0]
        spec = RunSpec(board=board, framework="tflite", model="mobilenet_v2", mode=mode, pair=pair, arm=arm,
                       iterations=len(latencies), warmup=5, threads=0)
        records.append((spec, make_doc(latencies, mode=mode, throttled=throttled, max_temp_c=temp)))
    return results.normalize(records, run_id="r", arch_of={})


def pairs(rng, board, n, *, ratio, offset=0.01, center=20.0, arms=("docker", "bare"), throttled=None, temp=None):
    """`n` pairs on `board` whose run medians differ by `ratio` times a run-level offset of `offset`."""
    out = []
    for pair in range(n):
        for arm, scale in zip(arms, (ratio, 1.0)):
            level = center * scale * np.exp(offset * rng.standard_normal())
            out.append((board, arm, pair, list(level * (1 + 0.01 * rng.standard_normal(30))),
                        throttled(arm, pair) if throttled else False, temp))
    return out


CELLS = {"rpi4/tflite-mobilenet_v2": {"arms": ["docker", "bare"], "stop": "precision", "pairs": 8},
         "rpi3/tflite-mobilenet_v2": {"arms": ["docker", "bare"], "stop": "max-pairs", "pairs": 6},
         "rpi5/tflite-mobilenet_v2": {"arms": ["docker", "bare"], "stop": "max-pairs", "pairs": 3},
         "x86/tflite-mobilenet_v2": {"arms": ["docker"], "stop": "runs", "pairs": 2}}


@pytest.fixture
def comparison(make_doc):
    rng = np.random.default_rng(7)
    runs = pairs(rng, "rpi4", 8, ratio=1.2, temp=61.0)
    runs += pairs(rng, "rpi3", 6, ratio=1.0, temp=81.0, throttled=lambda arm, pair: arm == "bare" and pair == 2)
    runs += pairs(rng, "rpi5", 3, ratio=1.0)
    runs += [("x86", "docker", 0, [0.5] * 10, None, None), ("x86", "docker", 1, [0.5] * 10, None, None)]
    return analysis.compare_arms(normalized(make_doc, runs)[0], CELLS).set_index("board")


def test_the_pair_is_the_unit_and_the_interval_holds_the_truth(comparison):
    rpi4 = comparison.loc["rpi4"]
    assert rpi4["pairs"] == 8 and rpi4["stop"] == "precision" and rpi4["valid"]
    assert rpi4["a_p50_ms"] == pytest.approx(24, rel=0.03) and rpi4["b_p50_ms"] == pytest.approx(20, rel=0.03)
    assert rpi4["ci_low"] < 1.2 < rpi4["ci_high"] and rpi4["ratio"] == pytest.approx(1.2, rel=0.02)
    assert rpi4["kind"] == "slower" and rpi4["verdict"].startswith("docker slower than bare by")


def test_a_throttled_run_makes_its_cell_invalid_but_keeps_it(comparison):
    rpi3 = comparison.loc["rpi3"]
    assert not rpi3["valid"] and rpi3["verdict"].startswith("INVALID: throttled: bare #2")
    assert rpi3["throttled"] and rpi3["max_temp_c"] == 81.0 and rpi3["pairs"] == 6  # the numbers are kept


def test_too_few_pairs_give_no_verdict(comparison):
    assert comparison.loc["rpi5", "kind"] == "too few pairs"
    assert "too few pairs (3 < 5)" in comparison.loc["rpi5", "verdict"]


def test_one_mode_alone_has_no_comparison(comparison):
    x86 = comparison.loc["x86"]
    assert x86["verdict"] == "one mode only" and x86["a_p50_ms"] == 0.5 and x86["b"] == ""
    assert not x86["throttle_known"] and pd.isna(x86["max_temp_c"])  # nobody measured: not "not throttled"


def test_a_spread_above_the_limit_is_invalid(make_doc):
    rng = np.random.default_rng(3)
    runs = pairs(rng, "rpi4", 6, ratio=1.0, offset=0.2)
    found = analysis.compare_arms(normalized(make_doc, runs)[0], {}, max_spread=0.05).iloc[0]
    assert not found["valid"] and "runs spread" in found["verdict"] and "--max-spread 5%" in found["verdict"]


def test_an_explain_cell_compares_each_knob_with_the_baseline(make_doc):
    rng = np.random.default_rng(5)
    arms = ["docker", "bare", "docker+seccomp=unconfined"]
    runs = pairs(rng, "x86", 6, ratio=1.1, arms=arms[:2])
    runs += [("x86", arms[2], pair, list(20.0 * np.exp(0.01 * rng.standard_normal()) * np.ones(30)), False, None)
             for pair in range(6)]
    cells = {"x86/tflite-mobilenet_v2": {"arms": arms, "stop": "max-pairs", "pairs": 6}}
    found = analysis.compare_arms(normalized(make_doc, runs)[0], cells).set_index("a")
    assert found.loc["docker", "kind"] == "slower" and found.loc["docker+seccomp=unconfined", "b"] == "bare"
    assert found.loc["docker+seccomp=unconfined", "ratio"] == pytest.approx(1.0, abs=0.02)
    console = Console(record=True, width=100)
    console.print(report.explain_table(found.reset_index()))
    knob = next(line for line in console.export_text().splitlines() if "seccomp" in line)
    closed = next(word for word in knob.split() if word.endswith("%") and "to" not in word and "+" not in word)
    assert 80 <= int(closed.rstrip("%")) <= 120  # it closes (nearly) all of the 10% gap


def test_mode_table_fits_100_columns_and_never_wraps_a_verdict(comparison):
    console = Console(record=True, width=100)
    console.print(report.mode_table(comparison.reset_index()))
    text = console.export_text().splitlines()
    assert max(map(len, text)) <= 100
    lines = {line.split()[0]: line for line in text if line.split() and line.split()[0] in comparison.index}
    assert set(lines) == {"rpi3", "rpi4", "rpi5", "x86"}
    ratio = comparison.loc["rpi4", "ratio"]
    assert f"slower {ratio - 1:+.1%}" in lines["rpi4"] and lines["rpi4"].split()[-1] == f"{ratio - 1:+.1%}"
    assert "INVALID (1)" in lines["rpi3"] and "(1) throttled: bare #2" in map(str.strip, text)
    assert "500 µs" in lines["x86"] and "one mode only" in lines["x86"]  # sub-millisecond latencies in µs
    assert "stopped by precision: rpi4/tflite-mobilenet_v2" in map(str.strip, text)  # what ended each cell
    only = report.mode_table(comparison.drop(index="x86").reset_index())  # docker against bare on every row
    assert only.title.endswith("(docker against bare)") and [c.header for c in only.columns][3:5] == [
        "docker p50", "bare p50"]


def test_calibration_table_reports_noise_floor_and_minutes(make_doc):
    rng = np.random.default_rng(11)
    runs = pairs(rng, "x86", 8, ratio=1.0, arms=("docker-A", "docker-B"))
    cells = {"x86/tflite-mobilenet_v2:docker": {"arms": ["docker-A", "docker-B"], "stop": "max-pairs", "pairs": 8}}
    found = analysis.compare_arms(normalized(make_doc, runs)[0], cells)
    assert found["kind"].iloc[0] in ("equivalent", "inconclusive")
    assert found["noise"].iloc[0] == pytest.approx(0.014, abs=0.008)  # two runs' offsets of 1% each
    console = Console(record=True, width=250)
    console.print(report.calibration_table(found))
    row = next(line for line in console.export_text().splitlines() if "x86" in line)
    assert "docker" in row and "±" in row


def test_agreement_of_outputs():
    ref = np.linspace(-2.0, 3.0, 1000).reshape(1, 1000)
    same = stats.agreement(ref, ref.astype(np.float32))
    assert same["agree"] and same["top1"] == same["top1_ref"] == 999 and same["max_abs_diff"] < 1e-6
    noisy = stats.agreement(ref, ref + 0.01)  # 0.01 of a range of 5: above the 1e-3 tolerance
    assert not noisy["agree"] and "above" in noisy["why"] and noisy["top1"] == 999
    flipped = ref.copy()
    flipped[0, 0] = 10.0
    assert stats.agreement(ref, flipped)["why"] == "top-1 differs"
    assert "shape" in stats.agreement(ref, ref.reshape(1000, 1))["why"]


def test_agreement_of_a_batch_needs_every_image_to_agree():
    ref = np.stack([np.linspace(-1, 1, 10), np.linspace(1, -1, 10)])  # top-1: 9, then 0
    assert stats.agreement(ref, ref.copy())["agree"]
    swapped = ref.copy()
    swapped[1] = ref[0]  # the second image's top-1 is wrong
    found = stats.agreement(ref, swapped)
    assert not found["agree"] and found["why"] == "top-1 differs" and found["top1"] == 9
