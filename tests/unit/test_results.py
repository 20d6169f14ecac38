"""edgeorch.results: validating entrypoint answers, normalizing them into tables, the pinned schema."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edgeorch import results
from edgeorch.arch import Arch
from edgeorch.bench import PROBE_SCHEMA
from edgeorch.errors import BoardError, RunError
from edgeorch.inventory import Board
from edgeorch.plan import bench_cell, mode_arms
from edgeorch.runners import Answer

GOLDEN_COLUMNS = Path(__file__).resolve().parents[1] / "golden" / "results_columns.json"
ONE_TO_100_MS = list(range(1, 101))


def specs():
    """The two runs of one pair on rpi4: docker, then bare."""
    return bench_cell(Board(name="rpi4", host="h", user="u", arch=Arch.ARM64), framework="tflite",
                      model="mobilenet_v2", arms=mode_arms(("docker", "bare")), iterations=100, warmup=5,
                      threads=0).runs(0)


@pytest.fixture
def normalized(make_doc):
    """A docker run of 1..100 ms in exactly 5 s, then a bare run of 2..101 ms."""
    docker, bare = specs()
    records = [(docker, make_doc(ONE_TO_100_MS, wall_ns=5_000_000_000)),
               (bare, make_doc([ms + 1 for ms in ONE_TO_100_MS], mode="bare", throttled=None, max_temp_c=None))]
    return results.normalize(records, run_id="run-1", arch_of={"rpi4": "arm64"})


def test_latency_statistics(normalized):
    runs, _ = normalized
    docker = runs.iloc[0]
    # numpy's default (linear) percentiles of 1, 2, ..., 100.
    assert docker["p50_ms"] == pytest.approx(50.5)
    assert docker["p90_ms"] == pytest.approx(90.1)
    assert pd.isna(docker["p99_ms"])  # 100 samples cannot bound a p99: 459 can
    assert docker["mean_ms"] == pytest.approx(50.5)
    assert docker["std_ms"] == pytest.approx((100 * 101 / 12) ** 0.5)  # sample std of 1..n
    assert (docker["min_ms"], docker["max_ms"]) == (1.0, 100.0)
    assert docker["throughput_ips"] == pytest.approx(20.0)  # 100 inferences in 5 s
    assert (docker["load_ms"], docker["first_inference_ms"]) == (250.0, 12.5)
    assert (docker["peak_rss_mb"], docker["cpu_percent"]) == (150.0, 392.0)
    bare = runs.iloc[1]
    assert (bare["p50_ms"], bare["min_ms"], bare["max_ms"]) == (pytest.approx(51.5), 2.0, 101.0)
    # wall time is the sum of latencies: 5.15 s
    assert bare["throughput_ips"] == pytest.approx(100 / 5.15)


def test_tail_percentiles_need_enough_samples(make_doc):
    runs, _ = results.normalize([(specs()[0], make_doc(list(range(1, 460))))], run_id="r", arch_of={})
    assert runs["p99_ms"].iloc[0] == pytest.approx(np.percentile(np.arange(1, 460), 99))
    runs, _ = results.normalize([(specs()[0], make_doc(list(range(1, 44))))], run_id="r", arch_of={})
    assert pd.isna(runs["p90_ms"].iloc[0]) and pd.isna(runs["p99_ms"].iloc[0]) and runs["p50_ms"].iloc[0] == 22


def test_one_row_per_run_with_its_identity(normalized):
    runs, _ = normalized
    assert runs[["run_id", "board", "arch", "framework", "model", "mode", "pair", "iterations"]].values.tolist() == [
        ["run-1", "rpi4", "arm64", "tflite", "mobilenet_v2", "docker", 0, 100],
        ["run-1", "rpi4", "arm64", "tflite", "mobilenet_v2", "bare", 0, 100]]
    assert runs["image_id"].iloc[0] == "sha256:" + "1" * 64 and pd.isna(runs["image_id"].iloc[1])
    assert runs["throttled"].dtype == "boolean"
    assert runs["throttled"].tolist()[0] is False and runs["throttled"].isna().tolist() == [False, True]


def test_a_complete_document_fills_every_column(make_doc):
    """A key written under a name COLUMNS lacks would silently vanish; this catches that drift."""
    reference = np.linspace(-1, 1, 10).reshape(1, 10)
    doc = {**make_doc(list(range(1, 501))), "outputs": [{"shape": [1, 10], "dtype": "float32",
                                                         "values": (reference.ravel() + 1e-4).tolist()}]}
    runs, _ = results.normalize([(specs()[0], doc)], run_id="r", arch_of={"rpi4": "arm64"},
                                  references={("mobilenet_v2", 1): reference})
    reasons = ["energy_unavailable"]  # a reason column is empty when the figure was measured
    assert runs.columns[runs.isna().any()].tolist() == reasons
    row = runs.iloc[0]
    assert (row["agrees"], row["top1"], row["top1_ref"]) == (True, 9, 9)
    assert row["max_abs_diff"] == pytest.approx(1e-4) and row["precision"] == "fp32" and row["batch"] == 1
    assert json.loads(row["framework_options"]) == {"xnnpack": "default"}


def test_an_output_that_is_not_pytorchs_is_marked(make_doc):
    reference = np.linspace(-1, 1, 10).reshape(1, 10)
    flipped = {**make_doc(ONE_TO_100_MS), "outputs": [{"shape": [1, 10], "dtype": "float32",
                                                       "values": reference.ravel()[::-1].tolist()}]}
    runs, _ = results.normalize([(specs()[0], flipped)], run_id="r", arch_of={"rpi4": "arm64"},
                                  references={("mobilenet_v2", 1): reference})
    assert runs["agrees"].tolist() == [False] and runs["top1"].tolist() == [0]


def test_an_int8_model_is_judged_by_its_own_tolerance(make_doc):
    reference = np.linspace(-1, 1, 10).reshape(1, 10)
    doc = make_doc(ONE_TO_100_MS)
    doc["model"]["inputs"][0]["dtype"] = "int8"
    noisy = reference.ravel() + np.random.default_rng(0).normal(0, 0.3, 10)  # top-1 moves, the shape stays
    doc["outputs"] = [{"shape": [1, 10], "dtype": "float32", "values": noisy.tolist()}]
    runs, _ = results.normalize([(specs()[0], doc)], run_id="r", arch_of={"rpi4": "arm64"},
                                  references={("mobilenet_v2", 1): reference})
    assert runs["precision"].tolist() == ["int8"] and runs["agrees"].tolist() == [True]
    assert runs["correlation"].iloc[0] > 0.5 and runs["top1"].iloc[0] != 9
    doc["model"]["inputs"][0]["dtype"] = "float32"  # the same output from a float model does not agree
    runs, _ = results.normalize([(specs()[0], doc)], run_id="r", arch_of={"rpi4": "arm64"},
                                  references={("mobilenet_v2", 1): reference})
    assert runs["agrees"].tolist() == [False]


def test_samples_one_row_per_iteration(normalized):
    _, samples = normalized
    assert len(samples) == 200
    docker = samples[samples["mode"] == "docker"]
    assert docker["iteration"].tolist() == list(range(100))
    assert docker["latency_ns"].tolist() == [ms * 1_000_000 for ms in ONE_TO_100_MS]
    assert set(samples["board"]) == {"rpi4"} and set(samples["pair"]) == {0}


def test_normalize_nothing():
    runs, samples = results.normalize([], run_id="r", arch_of={})
    assert list(runs.columns) == results.COLUMNS and runs.empty
    assert samples.empty and "latency_ns" in samples.columns


def test_columns_match_the_golden_file(normalized):
    # The golden file pins the result schema that results.csv/.parquet consumers rely on. When a
    # column must change, update tests/golden/results_columns.json deliberately, in the same
    # change that bumps the result schema version (edgeorch.bench.RESULT_SCHEMA).
    runs, _ = normalized
    assert list(runs.columns) == json.loads(GOLDEN_COLUMNS.read_text())


def test_samples_and_sensors_share_one_time_base(make_doc):
    doc = make_doc([10.0, 20.0, 30.0], throttled=True, max_temp_c=70.0)
    _, samples = results.normalize([(specs()[0], doc)], run_id="r", arch_of={})
    assert samples["t_s"].tolist() == pytest.approx([0.0, 0.01, 0.03])  # each inference's start after the first
    sensors = results.sensor_table([(specs()[0], doc)])
    assert sensors["t_s"].tolist() == pytest.approx([-0.5, 0.5])  # sampled half a second before and after it
    assert sensors["temp_c"].tolist() == [55.0, 70.0]
    assert sensors["freq_mhz"].iloc[0] == 1500.0 and pd.isna(sensors["freq_mhz"].iloc[1])  # the fastest CPU
    assert sensors["throttled"].tolist() == [False, True] and set(sensors["mode"]) == {"docker"}
    doc = make_doc([10.0, 20.0, 30.0], listed=True)
    del doc["timing"]["starts_ns"]  # an older edgeorch's answer: no time base, no rows, no error
    assert results.sensor_table([(specs()[0], doc)]).empty
    assert results.normalize([(specs()[0], doc)], run_id="r", arch_of={})[1]["t_s"].isna().all()


def test_tables_round_trip(tmp_path, normalized):
    runs, samples = normalized
    results.write_tables(tmp_path, runs, samples, results.sensor_table([]))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "results.parquet"), runs, check_dtype=False)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "samples.parquet"), samples, check_dtype=False)
    csv = pd.read_csv(tmp_path / "results.csv")
    assert list(csv.columns) == results.COLUMNS
    numeric = ["pair", "iterations", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "throughput_ips"]
    np.testing.assert_allclose(csv[numeric].to_numpy(float), runs[numeric].to_numpy(float))
    assert csv["board"].tolist() == ["rpi4", "rpi4"] and csv["mode"].tolist() == ["docker", "bare"]


# --- parse_answer -----------------------------------------------------------------------------------


def answer(doc, stderr="", exit_code=0):
    return Answer(json.dumps(doc) + "\n", stderr, exit_code)


def test_parse_answer_returns_the_document(make_doc):
    doc = make_doc([1.0, 2.0])
    assert results.parse_answer(answer(doc), board="rpi4", what="docker run") == doc


def test_parse_answer_non_json_names_board_and_stderr_tail():
    stderr = "x" * 2000 + "\nImportError: libtensorflowlite_c.so: cannot open shared object file\n"
    with pytest.raises(BoardError) as e:
        results.parse_answer(Answer("Segmentation fault\n", stderr, 139), board="rpi3", what="bare run")
    msg = e.value.message
    assert "board rpi3" in msg and "bare run" in msg and "exit 139" in msg
    assert msg.endswith("libtensorflowlite_c.so: cannot open shared object file")
    assert "x" * 700 not in msg, "only the tail of a long stderr"


def test_parse_answer_empty_output():
    with pytest.raises(BoardError, match="no output"):
        results.parse_answer(Answer("", "", 137), board="rpi3", what="bare run")


@pytest.mark.parametrize("schema", ["edgeorch.result/1", "edgeorch.result/2", None])
def test_parse_answer_wrong_schema(make_doc, schema):
    doc = {**make_doc([1.0]), "schema": schema}
    with pytest.raises(BoardError, match="board x86.*not an edgeorch.result/6 document"):
        results.parse_answer(answer(doc, stderr="warning: something"), board="x86", what="docker run")


def test_parse_answer_checks_the_schema_asked_for(make_doc):
    probe = {**make_doc([1.0]), "schema": PROBE_SCHEMA}
    assert results.parse_answer(answer(probe), board="x86", what="probe", schema=PROBE_SCHEMA) == probe
    with pytest.raises(BoardError, match="edgeorch.probe/1"):
        results.parse_answer(answer(make_doc([1.0])), board="x86", what="probe", schema=PROBE_SCHEMA)


def test_parse_answer_error_document_carries_the_entrypoint_message(make_doc):
    doc = {**make_doc([1.0]), "status": "error",
           "error": {"kind": "model", "message": "model file /m.tflite does not exist on this board"}}
    with pytest.raises(RunError) as e:
        results.parse_answer(answer(doc, exit_code=3), board="rpi4", what="docker run")
    assert "board rpi4" in e.value.message and "(model, exit 3)" in e.value.message
    assert "model file /m.tflite does not exist on this board" in e.value.message
    assert "fix the model" in e.value.hint


def test_a_run_that_failed_on_made_up_inputs_is_told_to_feed_files_named_for_the_shell(make_doc):
    made_up = [{"name": "sr", "dtype": "int64", "shape": [], "range": "integers in [0, 10)"},
               {"name": "mel spec;$(x)", "dtype": "float32", "shape": [1, 80], "range": "standard normal floats"}]
    doc = {**make_doc([1.0]), "status": "error",
           "error": {"kind": "runtime", "message": "RuntimeError: bad input", "made_up_inputs": made_up}}
    with pytest.raises(RunError) as e:
        results.parse_answer(answer(doc, exit_code=5), board="rpi4", what="bare run")
    assert e.value.hint.startswith("the model may need realistic values where edgeorch made them up: pass "
                                   "--input sr=FILE.npy --input 'mel spec;$(x)=FILE.npy', ")
    assert "(int64 scalar for 'sr', float32 1x80 for 'mel spec;$(x)')" in e.value.hint


def test_parse_answer_ok_document_with_failing_exit_code(make_doc):
    with pytest.raises(RunError, match="exit 5"):
        results.parse_answer(answer(make_doc([1.0]), exit_code=5), board="rpi4", what="bare run")


def test_the_shapes_each_input_was_fed_are_a_column(make_doc):
    doc = make_doc(ONE_TO_100_MS)
    doc["model"]["inputs"] = [{"name": "x", "shape": [4, 3], "dtype": "float32", "source": "seeded"},
                              {"name": "n", "shape": [], "dtype": "int64", "source": "file"}]
    runs, _ = results.normalize([(specs()[0], doc)], run_id="r", arch_of={})
    assert json.loads(runs["input_shapes"].iloc[0]) == {"x": [4, 3], "n": []}


def test_input_shapes_are_passed_to_the_entrypoint_in_both_modes():
    from edgeorch.runners import entrypoint_args

    cell = bench_cell(Board(name="rpi4", host="h", user="u", arch=Arch.ARM64), framework="onnxruntime", model="m",
                      arms=mode_arms(("docker", "bare")), iterations=10, warmup=0, threads=0,
                      input_shapes=("x=4x3", "n=scalar"))
    for run in cell.runs(0):
        args = entrypoint_args(run, model_sha256="a" * 64, run_id="r")
        assert [args[i + 1] for i, a in enumerate(args) if a == "--input-shape"] == ["x=4x3", "n=scalar"]


@pytest.mark.parametrize("value, says", [("x=1xfoo", "'1xfoo' is not dimensions"), ("noequals", "not NAME=DIMS")])
def test_a_bad_input_shape_is_a_config_error_naming_the_option(value, says):
    from edgeorch.errors import ConfigError

    with pytest.raises(ConfigError, match=says) as caught:
        bench_cell(Board(name="rpi4", host="h", user="u", arch=Arch.ARM64), framework="onnxruntime", model="m",
                   arms=mode_arms(("bare",)), iterations=10, warmup=0, threads=0, input_shapes=(value,))
    assert "--input-shape" in caught.value.message and "--input-shape input=1x3x224x224" in caught.value.hint
