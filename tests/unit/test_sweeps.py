"""Sweeps of threads x batch x models: each combination is a cell of its own, with its own keys and verdict."""

import pandas as pd
import pytest

from edgeorch import analysis, report, results
from edgeorch.arch import Arch
from edgeorch.errors import ConfigError
from edgeorch.inventory import Board
from edgeorch.plan import bench_cell, mode_arms, parse_counts, split_models

BOARD = Board(name="rpi4", host="h", user="u", arch=Arch.ARM64)


def cell(threads=0, batch=1, model="mobilenet_v2"):
    return bench_cell(BOARD, framework="onnxruntime", model=model, arms=mode_arms(("docker", "bare")), iterations=5,
                      warmup=1, threads=threads, batch=batch)


def test_each_threads_and_batch_value_is_a_cell_with_its_own_keys():
    assert cell().key == "rpi4/onnxruntime-mobilenet_v2"  # the defaults keep the keys of a plain bench
    assert cell(threads=2, batch=4).key == "rpi4/onnxruntime-mobilenet_v2-t2-b4"
    assert [r.key for r in cell(threads=2, batch=4).runs(1)] == ["rpi4/onnxruntime-mobilenet_v2-t2-b4-bare-01",
                                                                 "rpi4/onnxruntime-mobilenet_v2-t2-b4-docker-01"]
    assert {(r.threads, r.batch, r.cell) for r in cell(batch=8).runs(0)} == {(0, 8, "rpi4/onnxruntime-mobilenet_v2-b8")}
    keys = {r.key for t in (1, 2, 4) for b in (1, 2, 4, 8) for p in range(3) for r in cell(t, b).runs(p)}
    assert len(keys) == 3 * 4 * 3 * 2


def test_a_profiling_pass_per_mode_has_keys_no_timed_run_has():
    passes = cell(threads=2).profile_runs(20)
    assert [(r.mode, r.profile, r.key) for r in passes] == [
        ("docker", 20, "rpi4/onnxruntime-mobilenet_v2-t2-docker-profile"),
        ("bare", 20, "rpi4/onnxruntime-mobilenet_v2-t2-bare-profile")]


@pytest.mark.parametrize("value, counts", [("0", (0,)), (4, (4,)), ("1,2,4", (1, 2, 4)), ("2,2,1", (2, 1))])
def test_counts_are_one_number_or_a_comma_list(value, counts):
    assert parse_counts("threads", value) == counts


@pytest.mark.parametrize("value", ["two", "1,,2", "1;2", "0"])
def test_a_bad_count_names_the_option(value):
    with pytest.raises(ConfigError, match="--batch") as e:
        parse_counts("batch", value, least=1)
    assert "1,2,4" in e.value.hint


def test_a_file_whose_name_has_a_comma_stays_one_model(tmp_path):
    odd = tmp_path / "net,v2.onnx"
    odd.write_bytes(b"x")
    assert split_models("mobilenet_v2,resnet18") == ("mobilenet_v2", "resnet18")
    assert split_models(str(odd), exists=lambda m: m == str(odd)) == (str(odd),)
    assert split_models("tiny") == ("tiny",)


def test_cells_of_a_sweep_are_judged_apart(make_doc):
    """Two thread counts of one model: each its own verdict, from its own pairs only."""
    records = []
    for threads, slower in ((1, 1.0), (4, 1.5)):  # with 4 threads docker is 50% slower, with 1 the same
        c = cell(threads=threads)
        for pair in range(3):
            for run in c.runs(pair):
                ms = [10 * (slower if run.mode == "docker" else 1.0) * (1 + 0.001 * i) for i in range(50)]
                doc = make_doc(ms, mode=run.mode)
                doc["params"]["threads"] = run.threads  # as the board answers: the threads it was given
                records.append((run, doc))
    runs, samples = results.normalize(records, run_id="r", arch_of={"rpi4": "arm64"})
    cells = {cell(threads=t).key: {"arms": ["docker", "bare"], "stop": "max-pairs", "pairs": 3} for t in (1, 4)}
    table = analysis.compare_arms(runs, cells, min_pairs=3)
    assert table["model"].tolist() == ["mobilenet_v2 t1", "mobilenet_v2 t4"]
    assert table["pairs"].tolist() == [3, 3]
    assert table["ratio"].tolist() == pytest.approx([1.0, 1.5])


def test_the_sweep_table_shows_latency_against_throughput(make_doc):
    records = [(run, make_doc([10.0 * b] * 50, mode=run.mode, wall_ns=int(50 * 10e6 * b)))
               for b in (1, 4) for run in cell(batch=b).runs(0)]
    for run, doc in records:
        doc["model"]["batch"] = run.batch
    runs, _ = results.normalize(records, run_id="r", arch_of={})
    assert runs["throughput_ips"].tolist() == pytest.approx([100.0] * 4)  # 4 images in 40 ms: images/s the same
    table = report.sweep_table(runs)
    assert [c.header for c in table.columns][-5:] == ["threads", "batch", "p50", "p99", "images/s"]
    assert table.row_count == 4
    assert pd.Series(table.columns[5]._cells).tolist() == ["1", "4", "1", "4"]


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory):
    from ..input_models import export_input_models
    out = export_input_models(tmp_path_factory.mktemp("onnx"))
    (out / "a").mkdir()
    (out / "a" / "two.onnx").write_bytes((out / "two.onnx").read_bytes())
    (out / "three.onnx").write_bytes((out / "two.onnx").read_bytes())
    return out


def test_a_comma_list_of_model_files_is_a_cell_each(onnx_files):
    from edgeorch.console import REPORTER
    from edgeorch.plan import StopRule
    from edgeorch.sweep import plan_sweep, resolve_models
    models = f"{onnx_files / 'two.onnx'},{onnx_files / 'three.onnx'}"
    sweep = plan_sweep([BOARD], framework="onnxruntime", model=models, arms=[mode_arms(("docker", "bare"))],
                       rule=StopRule(), iterations=5, warmup=1, threads=(1, 2), min_time=0)
    sweep = resolve_models(sweep, REPORTER)
    assert [c.key for c in sweep.cells["rpi4"]] == ["rpi4/onnxruntime-two-t1", "rpi4/onnxruntime-two-t2",
                                                    "rpi4/onnxruntime-three-t1", "rpi4/onnxruntime-three-t2"]
    assert {sweep.spec(c).path.name for c in sweep.cells["rpi4"]} == {"two.onnx", "three.onnx"}


def test_two_model_files_of_one_name_are_refused(onnx_files):
    from edgeorch.plan import StopRule
    from edgeorch.sweep import plan_sweep
    with pytest.raises(ConfigError, match="are both named two") as e:
        plan_sweep([BOARD], framework="onnxruntime", model=f"{onnx_files / 'two.onnx'},{onnx_files / 'a/two.onnx'}",
                   arms=[mode_arms(("bare",))], rule=StopRule(), iterations=5, warmup=1, threads=0, min_time=0)
    assert "rename one" in e.value.hint


def test_every_framework_at_several_batches_leaves_out_the_batches_ncnn_cannot_take(tmp_path):
    """ncnn runs one image per inference: --framework all --batch 1,4 runs its batch 1 and says why not 4."""
    from rich.console import Console

    from edgeorch.console import Reporter
    from edgeorch.request import Request
    from edgeorch.sweep import plan
    console = Console(record=True, width=200)
    request = Request(task="compare", inventory=str(tmp_path / "inventory.yaml"), host="rpi4", framework="all",
                      model="squeezenet1_1", batch=(1, 4), dry_run=True)
    sweep = plan(request, [BOARD], None, Reporter(console))
    keys = [c.key for c in sweep.cells["rpi4"]]
    assert "rpi4/ncnn-squeezenet1_1" in keys and "rpi4/ncnn-squeezenet1_1-b4" not in keys
    assert "rpi4/onnxruntime-squeezenet1_1-b4" in keys and "rpi4/executorch-squeezenet1_1-b4" in keys
    assert ("ncnn", 4, "squeezenet1_1") not in {(f, b, m) for f, m, b in sweep.named}
    assert sweep.left_out == {("ncnn", 4): "ncnn runs one image at a time (its blobs have no batch axis)"}
    assert "leaving out ncnn at --batch 4: ncnn runs one image at a time" in console.export_text()


def test_ncnn_named_at_a_batch_of_several_images_is_refused_before_anything_converts():
    from edgeorch.errors import ModelError
    from edgeorch.plan import StopRule
    from edgeorch.sweep import plan_sweep
    with pytest.raises(ModelError, match="--batch 4: ncnn runs one image at a time") as e:
        plan_sweep([BOARD], framework="onnxruntime,ncnn", model="squeezenet1_1", arms=[mode_arms(("docker",))],
                   rule=StopRule(), iterations=5, warmup=1, threads=0, min_time=0, batch=(1, 4))
    assert e.value.hint == "drop --batch for ncnn, or run batches with pytorch or onnxruntime" and e.value.exit_code == 4
