"""Model inputs a user controls, on the simulated x86 board: a model with dynamic dimensions is refused before
anything runs, then measured with --input-shape; a model with two inputs (one an int64 scalar) runs in both modes
with seeded data for one and the user's --input file for the other."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edgeorch import results

from ..input_models import export_input_models
from .conftest import invoke

FAST = ["--host", "x86", "--framework", "onnxruntime", "--repeat", "1", "--iterations", "3", "--warmup", "0",
        "--min-time", "0"]


def run_dir_of(output: str) -> Path:
    return Path(re.search(r"results go to (\S+)", output).group(1))


def run_dirs() -> set[Path]:
    return set(results.root().glob("*")) if results.root().exists() else set()


def _manifest_text(run_dir: Path) -> str:
    path = run_dir / "manifest.json"
    return path.read_text() if path.exists() else str(run_dir)  # a directory without one is a run just started


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """torch.onnx.export of a conv net with dynamic batch and spatial dims, and of y = x * n (x float32 [2, 4], n an
    int64 scalar)."""
    pytest.importorskip("torch")
    out = export_input_models(tmp_path_factory.mktemp("inputs"))
    np.save(out / "n.npy", np.array(7, dtype=np.int64))
    return out


def test_a_dynamic_model_is_refused_then_measured_with_its_shape(fleet, models):
    before = run_dirs()
    r = invoke("bench", *FAST, "--model", str(models / "dynamic.onnx"), check=False)
    said = " ".join((r.stdout + r.stderr).split())
    assert r.returncode == 2, said
    assert "input 'image' of the model has dynamic dimensions [batch, 3, height, width]" in said
    assert "--input-shape image=<batch>x3x<height>x<width>" in said
    # refused on this machine: nothing built, sent or written (other benches may be writing runs of their own)
    assert not [d for d in run_dirs() - before if "dynamic.onnx" in _manifest_text(d)]

    r = invoke("bench", *FAST, "--model", str(models / "dynamic.onnx"), "--input-shape", "image=2x3x16x16")
    df = pd.read_parquet(run_dir_of(r.stdout) / "results.parquet")
    assert sorted(df["mode"]) == ["bare", "docker"]
    assert [json.loads(s) for s in df["input_shapes"]] == [{"image": [2, 3, 16, 16]}] * 2
    assert set(df["batch"]) == {2}


def test_a_two_input_model_runs_with_a_file_for_one_input(fleet, models):
    r = invoke("bench", *FAST, "--model", str(models / "two.onnx"), "--input", f"m={models / 'n.npy'}", check=False)
    assert r.returncode == 2 and "--input names 'm', which is not an input of the model; its inputs are: x, n" in \
        " ".join((r.stdout + r.stderr).split())

    r = invoke("bench", *FAST, "--model", str(models / "two.onnx"), "--input", f"n={models / 'n.npy'}")
    run_dir = run_dir_of(r.stdout)
    df = pd.read_parquet(run_dir / "results.parquet")
    assert sorted(df["mode"]) == ["bare", "docker"]
    assert [json.loads(s) for s in df["input_shapes"]] == [{"x": [2, 4], "n": []}] * 2
    for raw in (run_dir / "raw" / "x86").glob("*.json"):
        doc = json.loads(raw.read_text())
        assert doc["model"]["inputs"] == [{"name": "x", "shape": [2, 4], "dtype": "float32", "source": "seeded"},
                                          {"name": "n", "shape": [], "dtype": "int64", "source": "file"}]
