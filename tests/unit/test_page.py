"""The HTML report of a run directory written from synthetic answers: self-contained, every cell in it, names
escaped, and the figures that the run's measures call for."""

import re

import numpy as np
import pytest

from edgeorch import analysis, pipeline, results
from edgeorch.console import REPORTER
from edgeorch.plan import RunSpec


def write_run(run_dir, make_doc, *, model="mobilenet_v2", board="rpi4", listed=False):
    """A finished bench of 3 pairs, docker against bare, as collect leaves it (the manifest and the tables); `listed`:
    as an edgeorch before summaries left it, every inference in samples.parquet and no histograms.parquet."""
    rng = np.random.default_rng(1)
    records = []
    cell = f"{board}/tflite-{model}"
    for pair in range(3):
        for position, mode in enumerate(("docker", "bare")):
            spec = RunSpec(board=board, framework="tflite", model=model, mode=mode, pair=pair, arm=mode,
                           position=position, iterations=30, warmup=5, threads=0, cell=cell)
            records.append((spec, make_doc(list(20 * np.exp(0.01 * rng.standard_normal(30))), mode=mode,
                                           throttled=pair == 2 and mode == "bare", listed=listed)))
    runs, samples = results.normalize(records, run_id=run_dir.name, arch_of={board: "arm64"})
    results.write_tables(run_dir, runs, samples, results.sensor_table(records),
                         None if listed else results.histogram_table(records))
    results.write_manifest(run_dir, complete=True, request={"task": "bench", "equivalence": "0.02"},
                           modes_version=results.MODES_VERSION,
                           cells={cell: {"arms": ["docker", "bare"], "stop": "max-pairs", "pairs": 3}},
                           images={f"{board}/tflite": {"tag": "edgeorch/tflite:x", "based_on": "", "note": ""}})
    return cell


@pytest.mark.parametrize("listed", [False, True], ids=["summaries", "an-older-run"])
def test_the_report_is_one_offline_file_with_every_cell(tmp_path, make_doc, listed):
    run_dir = tmp_path / "20261203T000000Z-abcd"
    run_dir.mkdir()
    write_run(run_dir, make_doc, model="my <model> & 'co'", listed=listed)
    assert (run_dir / "histograms.parquet").exists() != listed  # an older run's are made from its samples
    text = pipeline.write_report(run_dir, REPORTER).read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text)  # nothing to fetch
    assert "default-src 'none'" in text  # and a browser would refuse it anyway
    assert "my &lt;model&gt; &amp;" in text and "<model>" not in text  # the user's name is text, never markup
    for alt in ("latency ECDF of", "latency over time of"):
        assert text.count(f'alt="{alt} ') == 1
    assert "throttled</b>: bare run #2" in text  # the throttled run is named beside its figure
    assert "INVALID" in text and "fit needs two or more" in text  # too few pairs; one network
    assert text.count("data:image/png;base64,") >= 5


def test_the_report_judges_with_the_runs_own_band(tmp_path, make_doc):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    write_run(run_dir, make_doc)
    assert analysis.judgement_of(results.read_manifest(run_dir)).equivalence == 0.02
