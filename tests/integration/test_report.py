"""The HTML report and comparisons across runs, from real benches of the x86 sim board, opened in a real headless
Chromium: two benches of the same cells with nothing changed between them, then `results.compare` of the two."""

import os
import re

import pandas as pd
import pytest

from edgeorch import results

from . import browser
from . import faults as F
from .conftest import ROOT, invoke
from .test_pipeline import run_dir_of

MODELS = ("squeezenet1_1", "mobilenet_v2")  # two networks of the zoo: the MACs figure has a line to fit


@pytest.fixture(scope="module")
def two_runs(fleet):
    """Two benches of ONNX Runtime on both networks, one after the other, with nothing changed in between."""
    x86 = F.sim_board(fleet)
    found = []
    for _ in range(2):
        F.wait_for(lambda: F.lock_free(x86), "free lock on the x86 board", timeout=600, every=0.5)
        r = invoke("bench", "--host", "x86", "--framework", "onnxruntime", "--model", ",".join(MODELS), "--repeat",
                   "6", "--iterations", "10", "--warmup", "2", "--min-time", "1", "--no-counters", "--no-energy",
                   env={**os.environ, "COLUMNS": "100"})
        found.append((run_dir_of(r.stdout), r.stdout))
    return found


def test_a_bench_ends_naming_its_report_and_its_tables_fit_100_columns(two_runs):
    for run_dir, out in two_runs:
        assert f"report: {run_dir / 'report.html'}" in F.flat(out) and (run_dir / "report.html").is_file()
        # each verdict whole on its row: a word and a number, or INVALID with its footnote
        rows = [line for line in out.splitlines() if line.split()[:2] == ["x86", "onnxruntime"]]
        assert len(rows) >= len(MODELS) and max(map(len, rows)) <= 100
        assert all(re.search(r"(equivalent|inconclusive|slower [+-]\d+\.\d%|faster [+-]\d+\.\d%|INVALID \(\d\))\s*$",
                             line) for line in rows), rows


def test_tests_write_under_their_own_results_directory(two_runs):
    for run_dir, _ in two_runs:
        assert run_dir.parent == results.root() and results.root() != ROOT / "results"
    assert not any((ROOT / "results" / run_dir.name).exists() for run_dir, _ in two_runs)


def test_history_loads_every_run_into_one_dataframe(two_runs):
    history = results.history()
    ids = {run_dir.name for run_dir, _ in two_runs}
    assert ids <= set(history["run_id"])
    ours = history[history["run_id"].isin(ids)]
    assert len(ours) == 2 * len(MODELS) * 6 * 2  # runs x models x pairs x modes


def test_compare_of_two_runs_judges_each_cell_and_the_report_shows_it(two_runs):
    (a, _), (b, _) = two_runs
    r = invoke("results.compare", str(a), b.name, env={**os.environ, "COLUMNS": "100"})
    out = r.stdout
    assert f"From run {a.name} to run {b.name}" in F.flat(out)
    # a row per network and mode (the board, the same in every row, may have moved to the caption)
    rows = [line for line in out.splitlines()
            if line.split()[:1] == ["x86"] or line.split()[:2] in [["onnxruntime", m] for m in MODELS]]
    assert len(rows) == len(MODELS) * 2, out
    # Each row a verdict. Not asserted: that this one A/A pair of runs says "no change". Two runs on this shared VM
    # moved by up to 12% between them (seen here), far beyond the 1% a run's shift is assumed to be without a
    # history: that promise is proved by the A/A tests of tests/unit/test_compare_runs.py, not by one draw.
    for row in rows:
        assert re.search(r"(equivalent|inconclusive|regression [+-]\d+\.\d%|improvement [+-]\d+\.\d%|INVALID "
                         r"\(\d\))\s*$", row), out
    assert f"report: {b / 'report.html'}" in F.flat(out)
    page = browser.load(b / "report.html")
    assert f"Against run {a.name}" in page.text


def test_the_report_opens_offline_with_every_cell_and_its_figures(two_runs):
    run_dir, _ = two_runs[1]
    page = browser.load(run_dir / "report.html")
    assert page.console_errors == [] and page.requests == []  # nothing fetched: it works on an offline board's LAN
    assert not browser.blank(page.screenshot)
    df = pd.read_parquet(run_dir / "results.parquet")
    for cell in set(df["cell"]):
        assert cell in page.text
        for kind in ("latency ECDF of", "latency over time of"):
            assert any(img["alt"] == f"{kind} {cell}" for img in page.images), (kind, cell)
    alts = [img["alt"] for img in page.images]
    assert "latency and energy against MACs" in alts and "throughput against CPU utilisation" in alts
    for img, shot in zip(page.images, page.image_shots):
        assert img["complete"] and img["naturalWidth"] > 100, img
        assert not browser.blank(shot), img["alt"]
    for text in ("Verdicts: the pair is the unit", "Provenance", df["framework_version"].iloc[0],
                 df["bench_sha256"].iloc[0], df["model_sha256"].iloc[0]):
        assert text in page.text


def test_report_of_a_run_by_id_and_a_bad_run_is_refused(two_runs):
    run_dir, _ = two_runs[0]
    (run_dir / "report.html").unlink()
    invoke("report", "--run", run_dir.name)
    assert (run_dir / "report.html").stat().st_size > 10_000
    r = invoke("report", "--run", "no-such-run", check=False)
    assert r.returncode == 2 and "--run no-such-run: no run directory" in F.flat(r.stdout)
