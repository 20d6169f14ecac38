"""The board-side entrypoint's protocol on its error paths: one JSON document, an error kind, an exit code."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeorch import results
from edgeorch.bench import (
    EXIT_ARGS,
    EXIT_FRAMEWORK,
    EXIT_MODEL,
    EXIT_RUNTIME,
    PROBE_SCHEMA,
    RESULT_SCHEMA,
    adapters,
    bundle_digest,
)
from edgeorch.bench.__main__ import run
from edgeorch.bench.adapters.base import ModelLoadError
from edgeorch.bench.signature import Declared
from edgeorch.errors import RunError
from edgeorch.runners import Answer

ROOT = Path(__file__).resolve().parents[2]
HAS_TFLITE = any(importlib.util.find_spec(m) for m in ("tflite_runtime", "ai_edge_litert"))


def failed(argv, kind, code):
    doc, exit_code = run(argv)
    assert (doc["status"], doc["error"]["kind"], exit_code) == ("error", kind, code), doc
    assert doc["bench"]["sha256"] == bundle_digest()
    assert doc["started_at"] <= doc["finished_at"]
    json.dumps(doc)  # the document must serialize as it is
    return doc


def test_missing_mode():
    doc = failed(["--framework", "tflite"], "args", EXIT_ARGS)
    assert "--mode" in doc["error"]["message"]
    assert doc["schema"] == RESULT_SCHEMA


@pytest.mark.parametrize("argv, word", [
    (["--framework", "tflite", "--mode", "vm"], "--mode"),
    (["--framework", "tflite", "--mode", "bare", "--iterations", "many"], "--iterations"),
    (["--framework", "tflite", "--mode", "bare", "--bogus"], "--bogus"),
])
def test_bad_arguments(argv, word):
    assert word in failed(argv, "args", EXIT_ARGS)["error"]["message"]


def test_unknown_framework_lists_the_known_ones():
    doc = failed(["--framework", "mxnet", "--mode", "docker", "--run-id", "r1"], "args", EXIT_ARGS)
    assert "'mxnet'" in doc["error"]["message"] and "tflite" in doc["error"]["message"]
    # Even a failed run says where and what it ran on, for the raw results.
    assert doc["run"] == {"mode": "docker", "run_id": "r1", "image_id": None}
    assert doc["facts"]["cores"] >= 1


@pytest.mark.skipif(HAS_TFLITE, reason="a TFLite runtime is installed on this host")
def test_probe_without_the_framework():
    doc = failed(["--framework", "tflite", "--mode", "bare", "--probe"], "framework", EXIT_FRAMEWORK)
    assert doc["schema"] == PROBE_SCHEMA
    assert "tflite_runtime" in doc["error"]["message"]


def test_help_still_answers_a_document():
    doc, code = run(["--help"])
    assert doc["schema"] == RESULT_SCHEMA and code == EXIT_ARGS


def test_stdout_carries_the_document_only():
    p = subprocess.run([sys.executable, "-m", "edgeorch.bench", "--framework", "nope", "--mode", "bare"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == EXIT_ARGS, p.stderr
    doc = json.loads(p.stdout)  # the whole of stdout: nothing before or after the document
    assert (doc["schema"], doc["status"], doc["error"]["kind"]) == (RESULT_SCHEMA, "error", "args")


@pytest.fixture
def two_inputs(tmp_path):
    """An ONNX model y = x * n with a dynamic batch: x float32 [batch, 4], n an int64 scalar."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Cast", ["n"], ["nf"], to=TensorProto.FLOAT), helper.make_node("Mul", ["x", "nf"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
              helper.make_tensor_value_info("n", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    path = tmp_path / "two.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    return path


def measure(model, *argv):
    return run(["--framework", "onnxruntime", "--mode", "bare", "--model", str(model), "--iterations", "2",
                "--warmup", "0", "--sample-interval", "0", *argv])


@pytest.mark.parametrize("value, says", [("noequals", "--input-shape 'noequals' is not NAME=DIMS"),
                                         ("x=1xfoo", "--input-shape 'x=1xfoo': '1xfoo' is not dimensions")])
def test_a_bad_input_shape_is_refused_before_the_model_is_read(two_inputs, value, says):
    doc = failed(["--framework", "onnxruntime", "--mode", "bare", "--model", "/nonexistent.onnx",
                  "--input-shape", value], "args", EXIT_ARGS)
    message = doc["error"]["message"]
    assert message.startswith(says) and "e.g. --input-shape input=1x3x224x224" in message


def test_a_multi_input_model_runs_with_the_shapes_and_files_given(two_inputs, tmp_path):
    np.save(tmp_path / "n.npy", np.array(3, np.int64))
    doc, code = measure(two_inputs, "--input-shape", "x=2x4", "--input", f"n={tmp_path / 'n.npy'}", "--outputs")
    assert code == 0, doc["error"]
    assert doc["model"]["inputs"] == [{"name": "x", "shape": [2, 4], "dtype": "float32", "source": "seeded"},
                                      {"name": "n", "shape": [], "dtype": "int64", "source": "file"}]
    assert doc["model"]["batch"] == 2 and doc["outputs"][0]["shape"] == [2, 4]
    seeded, _ = measure(two_inputs, "--input-shape", "x=2x4", "--input-shape", "n=scalar", "--outputs")
    # x is the same seeded data in both runs; only n differs (3 from the file, a seeded one in [0, 10))
    ratio = np.divide(seeded["outputs"][0]["values"], doc["outputs"][0]["values"])
    assert np.allclose(ratio, ratio[0]) and 0 <= ratio[0] * 3 < 10


def test_a_dynamic_input_without_its_shape_is_refused_with_kind_args(two_inputs):
    doc, code = measure(two_inputs)
    assert code == EXIT_ARGS and doc["error"] == {"kind": "args", "message": (
        "input 'x' of the model has dynamic dimensions [batch, 4], which edgeorch does not guess: pass "
        "--input-shape x=<batch>x4 with a number for each <...>")}


# --- a failed run names the inputs it made up ---------------------------------------------------------------


class VoiceActivity:
    """A fake adapter shaped like a voice-activity model: audio float32 [1, 512] and an int64 scalar sample rate
    `sr`, which fails deep inside, as ONNX Runtime did, when sr is not a real sampling rate."""

    name = "fake"
    fail_load = False

    def __init__(self, options):
        pass

    def info(self, threads):
        return {"name": self.name, "version": "0", "threads": threads}

    def load(self, path, threads):
        if self.fail_load:
            raise ModelLoadError("not a model")

    def inputs(self):
        return [Declared("audio", (1, 512), "float32"), Declared("sr", (), "int64")]

    def reshape(self, shapes):
        pass

    def convert(self, name, array):
        return array

    def describe(self):
        return {}

    def feed(self, arrays):
        self.audio, self.sr = arrays

    def infer(self):
        if self.sr < 8000:
            raise RuntimeError("Input X must have 3 dimensions only")

    def outputs(self):
        return []

    def profile(self, runs):
        return []


@pytest.fixture
def voice(tmp_path, monkeypatch):
    """The entrypoint's arguments for a short timed run of VoiceActivity, and any others given."""
    monkeypatch.setitem(adapters.ADAPTERS, "fake", "fake")
    monkeypatch.setattr(adapters, "get", lambda name: VoiceActivity)
    model = tmp_path / "vad.onnx"
    model.write_bytes(b"fake")
    return lambda *argv: ["--framework", "fake", "--mode", "bare", "--model", str(model), "--iterations", "2",
                          "--warmup", "1", "--sample-interval", "0", *argv]


@pytest.mark.parametrize("profile", [[], ["--profile", "2"]], ids=["timed", "profile"])
def test_a_failed_run_names_the_inputs_it_made_up_and_the_orchestrator_gives_the_fix(voice, profile):
    doc = failed(voice(*profile), "runtime", EXIT_RUNTIME)
    assert doc["error"]["made_up_inputs"] == [
        {"name": "audio", "dtype": "float32", "shape": [1, 512], "range": "standard normal floats"},
        {"name": "sr", "dtype": "int64", "shape": [], "range": "integers in [0, 10)"}]
    assert doc["error"]["message"].startswith("RuntimeError: Input X must have 3 dimensions only; ")
    assert "'sr' (int64 scalar, integers in [0, 10))" in doc["error"]["message"]

    with pytest.raises(RunError) as caught:
        results.parse_answer(Answer(json.dumps(doc) + "\n", "", EXIT_RUNTIME), board="rpi4", what="bare run")
    assert "'sr' (int64 scalar, integers in [0, 10))" in caught.value.message
    assert "--input audio=FILE.npy --input sr=FILE.npy" in caught.value.hint
    assert "int64 scalar for 'sr'" in caught.value.hint and "see the message above" not in caught.value.hint


def test_an_input_from_a_file_is_not_named_as_made_up(voice, tmp_path):
    np.save(tmp_path / "sr.npy", np.array(16000, np.int64))
    doc, code = run(voice("--input", f"sr={tmp_path / 'sr.npy'}"))
    assert (code, doc["error"]) == (0, None)  # the fix the error gives works
    np.save(tmp_path / "sr.npy", np.array(3, np.int64))
    doc = failed(voice("--input", f"sr={tmp_path / 'sr.npy'}"), "runtime", EXIT_RUNTIME)
    assert [i["name"] for i in doc["error"]["made_up_inputs"]] == ["audio"]


def test_a_failure_before_the_inputs_are_fed_names_none(voice, monkeypatch):
    assert "made_up_inputs" not in failed(voice("--iterations", "0"), "args", EXIT_ARGS)["error"]
    monkeypatch.setattr(VoiceActivity, "fail_load", True)
    assert "made_up_inputs" not in failed(voice(), "model", EXIT_MODEL)["error"]
