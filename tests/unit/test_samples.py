"""A run's timed inferences summarised on the board (edgeorch.bench.samples): what the verdicts, the tables and the
figures use comes out as from every sample, in a document of bounded size, from a recorder whose memory is known."""

import json
import mmap
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from edgeorch import analysis, results
from edgeorch.bench import samples
from edgeorch.plan import RunSpec

from .conftest import result_doc


def _run(n, seed=0):
    """(starts, latencies) of a 4 µs model with a heavy tail and a few stalls, back to back."""
    rng = np.random.default_rng(seed)
    lat = np.round(4000 * np.exp(0.1 * rng.standard_normal(n))).astype(np.int64)
    lat[rng.integers(0, n, n // 1000)] *= 50
    return 10**12 + np.cumsum(lat + 150) - lat[0] - 150, lat


def test_the_summary_is_exact_where_edgeorch_reports_and_bounded_in_size():
    starts, lat = _run(1_000_000)
    summary = samples.summarize(starts, lat)
    found = summary["latency_ns"]
    assert summary["count"] == len(lat) and found["min"] == lat.min() and found["max"] == lat.max()
    assert found["p50"] == np.median(lat) and found["mean"] == pytest.approx(lat.mean(), rel=1e-12)
    assert [found["p90"], found["p99"]] == np.percentile(lat, [90, 99]).tolist()
    assert found["std"] == pytest.approx(lat.std(ddof=1), rel=1e-9)
    assert len(json.dumps(summary)) < 150_000  # a million inferences: the document stays far below 1 MB
    worst = samples.summarize(np.arange(3), np.array([1, 10**5, 10**10]))  # 1 ns to 10 s: the widest histogram
    assert len(json.dumps(worst)) < 60_000


def test_every_latency_is_within_the_stated_error_of_its_bucket():
    _, lat = _run(200_000, seed=1)
    hist = samples.histogram(lat)
    values = samples.bucket_values({**hist, "counts": np.ones(len(hist["counts"]), int).tolist()})[0]
    read_back = values[samples.buckets(lat) - hist["first"]]
    assert np.abs(read_back / lat - 1).max() <= samples.HISTOGRAM_ERROR
    assert samples.HISTOGRAM_ERROR < 0.0014 and sum(hist["counts"]) == len(lat)


def test_the_ecdf_from_the_histogram_matches_every_sample_within_its_error():
    _, lat = _run(300_000, seed=2)
    values, counts = samples.bucket_values(samples.histogram(lat))
    fraction = np.cumsum(counts) / counts.sum()
    for q in (0.01, 0.5, 0.9, 0.99, 0.999):
        from_histogram = values[np.searchsorted(fraction, q)]
        assert from_histogram / np.quantile(lat, q, method="inverted_cdf") - 1 == pytest.approx(
            0, abs=samples.HISTOGRAM_ERROR)


def test_the_subsample_is_evenly_spaced_bounded_and_keeps_the_first_and_the_last():
    starts, lat = _run(123_457)
    sub = samples.summarize(starts, lat)["subsample"]
    index = np.asarray(sub["index"])
    assert len(index) == samples.SUBSAMPLE and index[0] == 0 and index[-1] == len(lat) - 1
    assert set(np.diff(index)) <= {123, 124}  # (n - 1) / 999, rounded
    assert sub["starts_ns"] == starts[index].tolist() and sub["latencies_ns"] == lat[index].tolist()
    few = samples.summarize(starts[:7], lat[:7])["subsample"]
    assert few["index"] == list(range(7))  # a short run keeps every inference


def test_the_recorder_keeps_every_sample_across_its_chunks():
    rec = samples.Recorder(chunk=8)
    rec.time(lambda: time.sleep(0.0001), 29, 0)
    starts, latencies = rec.arrays()
    assert rec.n == len(starts) == len(latencies) == 29 and len(rec.full) == 3
    assert np.all(np.diff(starts) > 0) and np.all(latencies >= 100_000)
    assert np.all(np.diff(starts) >= latencies[:-1])  # one after another, each start before its inference
    again = samples.Recorder(chunk=8)
    again.time(lambda: None, 1, time.perf_counter_ns() + 50_000_000)
    assert again.n > 1000  # --min-time: as many as fit


def test_the_recorders_memory_is_the_16_bytes_an_inference_it_says():
    """RSS grows by what resident_bytes() says, and not more: a million samples, 16 MB, where a list of Python
    ints took about 80 MB."""
    code = textwrap.dedent("""
        from edgeorch.bench import probes, samples
        rec = samples.Recorder()
        before = probes.rss_bytes()
        rec.time(lambda: None, 1_000_000, 0)
        print(probes.rss_bytes() - before, rec.resident_bytes())
    """)
    grown, said = map(int, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                          timeout=120).stdout.split())
    assert 16_000_000 <= said < 16_000_000 + 2 * 2 * mmap.PAGESIZE  # the last page of each array part-filled
    assert abs(grown - said) < 1_000_000, (grown, said)


def _pair_docs(listed):
    """Three pairs of a 4 µs model, docker 2% slower, as the board answers them (or listed, as before summaries)."""
    records = []
    for pair in range(3):
        for position, mode in enumerate(("docker", "bare")):
            starts, lat = _run(20_000, seed=10 * pair + position)
            lat = np.round(lat * (1.02 if mode == "docker" else 1.0)).astype(np.int64)
            spec = RunSpec(board="x86", framework="tflite", model="tiny", mode=mode, pair=pair, arm=mode,
                           position=position, iterations=50, warmup=5, threads=0, cell="x86/tflite-tiny")
            records.append((spec, result_doc(list(lat / 1e6), mode=mode, listed=listed)))
    return records


def test_verdicts_and_tables_from_summaries_are_those_from_every_sample():
    summarised = _pair_docs(listed=False)
    every = _pair_docs(listed=True)  # an edgeorch before summaries: every inference in the document
    assert all(len(doc["timing"]["latencies_ns"]) == 20_000 for _, doc in every)
    cells = {"x86/tflite-tiny": {"arms": ["docker", "bare"], "stop": "max-pairs", "pairs": 3}}
    tables = [results.normalize(records, run_id="r", arch_of={})[0] for records in (summarised, every)]
    columns = ["iterations", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "max_ms", "throughput_ips"]
    assert tables[0][columns].equals(tables[1][columns])
    verdicts = [analysis.compare_arms(runs, cells) for runs in tables]
    assert verdicts[0].equals(verdicts[1]) and verdicts[0].iloc[0]["ratio"] == pytest.approx(1.02, abs=0.002)
    hist = [results.histogram_table(records) for records in (summarised, every)]
    assert hist[0]["count"].sum() == hist[1]["count"].sum() == 6 * 20_000
    assert np.array_equal(hist[0]["latency_ns"].to_numpy(), hist[1]["latency_ns"].to_numpy())
