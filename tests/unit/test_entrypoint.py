"""The board-side entrypoint's protocol on its error paths: one JSON document, an error kind, an exit code."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeorch.bench import EXIT_ARGS, EXIT_FRAMEWORK, PROBE_SCHEMA, RESULT_SCHEMA, bundle_digest
from edgeorch.bench.__main__ import run

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
