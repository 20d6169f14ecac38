"""edgeorch.report: the docker/bare ratio with its confidence interval, the per-board comparison table."""

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from edgeorch import report, results
from edgeorch.plan import RunSpec


def noisy(rng, center_ms, n_runs=3, n=200, spread=0.02):
    """`n_runs` runs of `n` latencies around `center_ms` with a relative noise of `spread`."""
    return [center_ms * (1 + spread * rng.standard_normal(n)) for _ in range(n_runs)]


def test_identical_distributions_are_no_difference():
    rng = np.random.default_rng(1)
    ratio, low, high = report.ratio_ci(noisy(rng, 10.0), noisy(rng, 10.0))
    assert ratio == pytest.approx(1.0, abs=0.01)
    assert low < 1 < high
    assert report.verdict(low, high) == "no significant difference"


def test_docker_20_percent_slower():
    rng = np.random.default_rng(2)
    ratio, low, high = report.ratio_ci(noisy(rng, 12.0), noisy(rng, 10.0))
    assert ratio == pytest.approx(1.2, abs=0.01)
    assert 1 < low <= ratio <= high < 1.25
    assert report.verdict(low, high).startswith("docker slower (+")


def test_docker_faster():
    rng = np.random.default_rng(3)
    _, low, high = report.ratio_ci(noisy(rng, 9.0), noisy(rng, 10.0))
    assert high < 1
    assert report.verdict(low, high).startswith("docker faster (-")


def test_ratio_ci_is_reproducible():
    rng = np.random.default_rng(4)
    docker, bare = noisy(rng, 11.0), noisy(rng, 10.0)
    assert report.ratio_ci(docker, bare) == report.ratio_ci(docker, bare)


@pytest.mark.parametrize("low, high, text", [
    (1.05, 1.2, "docker slower (+5.0% at least)"),
    (0.8, 0.9, "docker faster (-10.0% at least)"),
    (0.99, 1.01, "no significant difference"),
    (1.0, 1.1, "no significant difference"),  # an interval touching 1 does not exclude it
])
def test_verdict(low, high, text):
    assert report.verdict(low, high) == text


# --- compare_modes on a normalized frame ----------------------------------------------------------

DOCKER_RPI4 = {0: list(range(20, 30)), 1: list(range(21, 30)) + [300]}  # pooled median 25, an outlier
BARE_RPI4 = {0: list(range(10, 20)), 1: list(range(10, 20))}    # pooled median 14.5


def normalized(make_doc, runs):
    """`runs`: (board, mode, pair, latencies_ms, throttled, max_temp_c) -> results.normalize's frames."""
    records = []
    for board, mode, pair, latencies, throttled, temp in runs:
        spec = RunSpec(board=board, framework="tflite", model="mobilenet_v2", mode=mode, pair=pair,
                       iterations=len(latencies), warmup=5, threads=0)
        records.append((spec, make_doc(latencies, mode=mode, throttled=throttled, max_temp_c=temp)))
    return results.normalize(records, run_id="r", arch_of={})


@pytest.fixture
def comparison(make_doc):
    runs = [("rpi4", mode, pair, lat[pair], False, 60.0 + pair)
            for pair in (0, 1) for mode, lat in (("docker", DOCKER_RPI4), ("bare", BARE_RPI4))]
    runs += [("rpi3", "docker", 0, [30.0] * 10, None, None), ("rpi3", "bare", 0, [30.0] * 10, True, 81.0),
             ("rpi3", "docker", 1, [30.0] * 10, False, 79.0), ("rpi3", "bare", 1, [30.0] * 10, None, None),
             ("x86", "docker", 0, [5.0] * 10, None, None), ("x86", "docker", 1, [5.0] * 10, None, None)]
    return report.compare_modes(*normalized(make_doc, runs)).set_index("board")


def test_one_row_per_board_with_pooled_medians(comparison):
    assert comparison.index.tolist() == ["rpi3", "rpi4", "x86"]
    rpi4 = comparison.loc["rpi4"]
    assert (rpi4["docker_p50_ms"], rpi4["bare_p50_ms"]) == (25.0, 14.5)
    assert (rpi4["docker_runs"], rpi4["bare_runs"]) == (2, 2)
    assert rpi4["ratio"] == pytest.approx(25 / 14.5)
    assert rpi4["ci_low"] > 1 and rpi4["verdict"].startswith("docker slower")
    assert comparison.loc["rpi3", "verdict"] == "no significant difference"
    assert comparison.loc["rpi3", "ratio"] == 1.0


def test_a_board_with_one_mode_needs_both(comparison):
    x86 = comparison.loc["x86"]
    assert x86["verdict"] == "needs both modes"
    assert (x86["docker_runs"], x86["bare_runs"]) == (2, 0)
    assert x86["docker_p50_ms"] == 5.0 and pd.isna(x86["bare_p50_ms"]) and pd.isna(x86["ratio"])


def test_throttling_and_temperature(comparison):
    # rpi3: throttled in one bare run only, unknown in two others: still a throttled board.
    assert comparison.loc["rpi3", ["throttled", "throttle_known", "max_temp_c"]].tolist() == [True, True, 81.0]
    assert comparison.loc["rpi4", ["throttled", "throttle_known", "max_temp_c"]].tolist() == [False, True, 61.0]
    # x86: no sensor answered in any run; "not throttled" would be a claim nobody measured.
    assert comparison.loc["x86", ["throttled", "throttle_known"]].tolist() == [False, False]
    assert pd.isna(comparison.loc["x86", "max_temp_c"])


def test_mode_table_renders(comparison):
    console = Console(record=True, width=200)
    console.print(report.mode_table(comparison.reset_index()))
    lines = {line.split("│")[1].strip(): line for line in console.export_text().splitlines()
             if line.count("│") > 2 and "board" not in line}
    assert set(lines) == {"rpi3", "rpi4", "x86"}
    assert "25.00" in lines["rpi4"] and "14.50" in lines["rpi4"] and f"{25 / 14.5:.3f}" in lines["rpi4"]
    assert "2/2" in lines["rpi4"] and "61.0 C" in lines["rpi4"]
    assert "YES" in lines["rpi3"]
    assert "needs both modes" in lines["x86"] and "unknown" in lines["x86"] and "n/a" in lines["x86"]


def test_agreement_of_outputs():
    ref = np.linspace(-2.0, 3.0, 1000).reshape(1, 1000)
    same = report.agreement(ref, ref.astype(np.float32))
    assert same["agree"] and same["top1"] == same["top1_ref"] == 999 and same["max_abs_diff"] < 1e-6
    noisy = report.agreement(ref, ref + 0.01)  # 0.01 of a range of 5: above the 1e-3 tolerance
    assert not noisy["agree"] and "above" in noisy["why"] and noisy["top1"] == 999
    flipped = ref.copy()
    flipped[0, 0] = 10.0
    assert report.agreement(ref, flipped)["why"] == "top-1 differs"
    assert "shape" in report.agreement(ref, ref.reshape(1000, 1))["why"]


def test_agreement_of_a_batch_needs_every_image_to_agree():
    ref = np.stack([np.linspace(-1, 1, 10), np.linspace(1, -1, 10)])  # top-1: 9, then 0
    assert report.agreement(ref, ref.copy())["agree"]
    swapped = ref.copy()
    swapped[1] = ref[0]  # the second image's top-1 is wrong
    found = report.agreement(ref, swapped)
    assert not found["agree"] and found["why"] == "top-1 differs" and found["top1"] == 9
