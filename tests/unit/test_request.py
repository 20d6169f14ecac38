"""A sweep task's options parsed once into a Request, kept in the manifest, and parsed the same way again on
--resume; a dry run plans without converting a model; library modules report through the reporter they are handed."""

import ast
import json
from pathlib import Path

import invoke
import pytest
from rich.console import Console

import tasks
from edgeorch import pipeline, request, results
from edgeorch.console import Reporter

ROOT = Path(__file__).resolve().parents[2]


def _given(**options) -> dict:
    """A task's options as invoke hands them over (text), as `invoke bench` gives them by default."""
    return {**tasks.DEFAULTS, "framework": "tflite", "host": "x86", "model": "tiny", "inventory": "inventory.yaml",
            **options}


def test_a_benchs_text_options_become_one_frozen_request():
    found = request.parse({"task": "bench", **request.counts(_given(threads="1,2", batch="1", min_pairs="3",
                                                                      max_pairs="9", precision="0.02",
                                                                      equivalence="0.03", keep_samples=True))})
    assert (found.threads, found.batch, found.iterations) == ((1, 2), (1,), 50)
    assert (found.rule.min_pairs, found.rule.max_pairs, found.rule.precision) == (3, 9, 0.02)
    assert (found.judgement.equivalence, found.judgement.min_pairs) == (0.03, 3)
    assert found.measures.keep_samples and found.measures.counters
    with pytest.raises(AttributeError):
        found.model = "other"  # frozen: what the manifest records is what ran


def test_repeat_is_exactly_k_pairs_whatever_the_rule_says():
    found = request.parse({"task": "compare", **_given(repeat="2", min_pairs="5", max_pairs="40")})
    assert (found.rule.min_pairs, found.rule.max_pairs) == (2, 2)
    assert found.judgement.min_pairs == 5  # below it, no verdict


@pytest.mark.parametrize("task", ["compare", "calibrate", "explain", "agree"])
def test_bench_has_every_option_of_a_sweep_so_its_defaults_fill_in_the_rest(task):
    options = {a.name for a in tasks.ns[task].get_arguments()} - {"resume", "results", "verbose"}
    assert options <= set(tasks.DEFAULTS)


def test_what_the_manifest_keeps_parses_to_the_same_request():
    first = request.parse({"task": "explain", **request.counts(_given(threads="4", min_time="0.5"))})
    again = request.parse(json.loads(json.dumps(first.saved)))  # as the manifest writes and reads it
    assert again == first


@pytest.mark.parametrize("task", ["bench", "compare", "calibrate", "explain"])
def test_every_sweep_task_resumes_with_the_options_it_was_started_with(tmp_path, task):
    saved = {"task": task, **_given(iterations=7, threads=[2], batch=[1], timeout=60.0)}
    (tmp_path / "manifest.json").write_text(json.dumps({"request": saved, "modes_version": results.MODES_VERSION}))
    assert "resume" in {a.name for a in tasks.ns[task].get_arguments()}
    found = tasks._request(invoke.Context(), task, {"resume": str(tmp_path), "iterations": "99"})
    assert (found.task, found.iterations, found.threads, found.resume) == (task, 7, (2,), tmp_path)


def test_a_dry_run_plans_a_zoo_network_without_converting_it(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEORCH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "inventory.yaml").write_text("boards:\n  - {name: pi4, host: 10.0.0.4, user: pi, arch: arm64}\n")
    console = Console(record=True, width=400)
    planned = pipeline.sweep(request.parse({"task": "bench", **_given(
        framework="tflite,onnxruntime", model="mobilenet_v2,squeezenet1_1", host="pi4",
        inventory=str(tmp_path / "inventory.yaml"), dry_run=True)}), Reporter(console))
    shown = console.export_text()
    assert planned is None and "pi4/onnxruntime-squeezenet1_1:" in shown and "pi4/tflite-mobilenet_v2:" in shown
    assert not list((tmp_path / "cache").rglob("*.onnx")) and not list((tmp_path / "cache").rglob("*.tflite"))


def test_library_modules_print_nothing_themselves():
    """Output goes through the Reporter a task hands in (console.py); the board side speaks its protocol."""
    printing = []
    for path in sorted((ROOT / "edgeorch").rglob("*.py")):
        if path.name == "console.py" or "bench" in path.relative_to(ROOT / "edgeorch").parts[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                fn = node.func
                if (isinstance(fn, ast.Name) and fn.id == "print") or (
                        isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name) and fn.value.id == "console"):
                    printing.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not printing, printing


def test_an_unfinished_run_says_to_resume_it_with_the_task_that_started_it(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"request": {"task": "calibrate"}}))
    assert results.resume_command(tmp_path) == f"invoke calibrate --resume {tmp_path}"
    (tmp_path / "manifest.json").write_text(json.dumps({"request": None}))  # an older run, or a library call
    assert results.resume_command(tmp_path) == f"invoke bench --resume {tmp_path}"


@pytest.mark.parametrize("name", sorted(tasks.ns.task_names))
def test_every_tasks_command_line_parses(name):
    """invoke builds each task's parser only when it is run: a broken option name fails there, not at import."""
    from invoke.parser import Parser, ParserContext
    context = ParserContext(name=name, args=tasks.ns[name].get_arguments())
    [parsed] = Parser(contexts=[context]).parse_argv([name, *("x" for _ in context.positional_args)])
    assert parsed.name == name
