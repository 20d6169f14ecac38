"""Strings from a board or a model (names, notes, throttle evidence, operator names, health problems, errors) are
text wherever edgeorch shows them: rich never reads them as markup, matplotlib never as math text, the page never as
HTML. A run whose answer is not the expected shape is a named error for that run, and the other runs are kept."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from rich.console import Console

from edgeorch import analysis, execute, health, pipeline, report, results
from edgeorch.console import Reporter
from edgeorch.errors import BoardError, RunError
from edgeorch.facts import BoardFacts
from edgeorch.inventory import load_inventory
from edgeorch.plan import Arm, Cell, RunSpec
from edgeorch.report import figures
from edgeorch.report.boards import check_table
from edgeorch.transport import GroupResult

from .conftest import result_doc

BOARD = "pi[/x]"
MODEL = "net$\\x$[bold]<script>"
EVIDENCE = "[/x] vcgencmd 0x50005 [bold]$\\x$ <script>alert(1)</script>"
NOTE = "[/red] no meter $\\x$ <b>"
OPS = ("Conv[/x]", "layer$\\x$<script>")


def _console() -> Console:
    """The tasks' console as a test sees it: recorded, wide enough that nothing is cut."""
    return Console(record=True, width=400, highlight=False)


def _doc(ms: float, mode: str, throttled: bool = False) -> dict:
    doc = result_doc(list(ms * np.exp(0.01 * np.random.default_rng(int(ms * 10)).standard_normal(30))), mode=mode,
                     throttled=throttled)
    doc["sensors"]["throttle_evidence"] = EVIDENCE
    doc["energy"] = {"source": "meter:x", "reason": NOTE}
    doc["framework"]["version"] = "2.[/x]"
    return doc


def _records(cell: Cell, pairs: int = 3) -> list:
    return [(spec, _doc(20.0 + pair, spec.mode, throttled=pair == 2 and spec.mode == "bare"))
            for pair in range(pairs) for spec in cell.runs(pair)]


CELL = Cell(board=BOARD, framework="tflite", model=MODEL, arms=(Arm(label="docker", mode="docker"),
                                                                Arm(label="bare", mode="bare")),
            iterations=30, warmup=5, threads=0)
DEAD = Cell(board="dead[bold]", framework="tflite", model=MODEL, arms=CELL.arms, iterations=30, warmup=5, threads=0)


def test_a_run_full_of_markup_math_and_html_is_collected_tabled_drawn_and_paged(tmp_path, monkeypatch):
    console = _console()
    run_dir = tmp_path / "20260101T000000Z-abcd"
    (run_dir / "raw").mkdir(parents=True)
    results.write_manifest(run_dir, complete=False, request={"task": "bench"},
                           cells={c.key: {"arms": ["docker", "bare"], "stop": None, "pairs": 0} for c in (CELL, DEAD)})
    results.update_cell(run_dir, CELL.key, stop="max-pairs", pairs=3)
    failed = BoardError(f"board {DEAD.board}: [/x] the link <script> went $\\x$", hint="[bold] fix $it$")
    with pytest.raises(RunError, match="INCOMPLETE"):  # the dead board's cell is missing: said, after all the rest
        ex = execute.Execution(run_dir=run_dir, records=_records(CELL), stops={CELL.key: {"stop": "max-pairs",
                                                                                            "pairs": 3}})
        pipeline.collect(ex, [CELL, DEAD], GroupResult(succeeded={BOARD: 1}, failed={DEAD.board: failed}), [], {},
                         analysis.DEFAULTS, 0, Reporter(console))
    shown = console.export_text()
    for text in (BOARD, MODEL, EVIDENCE, NOTE, "dead[bold]", "[/x] the link <script> went $\\x$", "[bold] fix $it$"):
        assert text in shown, text
    manifest = results.read_manifest(run_dir)
    assert manifest["complete"] is False and manifest["missing"] == [DEAD.key]  # finalised
    page = (run_dir / "report.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "pi[/x]" in page and "net$\\x$[bold]&lt;script&gt;" in page and "[/x] vcgencmd 0x50005 [bold]$\\x$" in page
    assert page.count("data:image/png;base64,") >= 4  # its figures were drawn


def test_every_figure_draws_the_names_as_they_are(monkeypatch):
    records = _records(CELL, pairs=4)
    other = [(RunSpec(**{**spec.__dict__, "framework": "onnx$\\x$"}), {**doc, "framework": {
        **doc["framework"], "name": "onnx$\\x$"}}) for spec, doc in records]
    runs, samples = results.normalize(records + other, run_id="r", arch_of={})
    sensors = results.sensor_table(records)
    runs = runs.assign(threads=np.where(runs["pair"] % 2, 2, 0))
    ops = results.ops_table([(spec, {"profile": {"ops": [{"op_type": OPS[0], "op_name": OPS[1], "time_ns": 5e6},
                                                         {"op_type": "Add", "op_name": "x", "time_ns": 1e6}]}})
                             for spec in CELL.profile_runs(10)], run_id="r")
    cell = runs["cell"].iloc[0]
    drawn = {"ecdf": figures.latency_ecdf(results.histograms_of(samples), cell),
             "over time": figures.latency_over_time(runs, samples, sensors, cell),
             "frameworks": figures.frameworks(runs, BOARD, MODEL), "sweep": figures.sweep(runs),
             "energy": figures.energy(runs.assign(energy_mj=1.0)), "memory": figures.memory(runs),
             "counters": figures.counters(runs), "operators": figures.operators(ops),
             "throughput": figures.throughput_vs_cpu(runs),
             "macs": figures.macs_fit(runs.assign(model=np.where(runs["pair"] % 2, MODEL, "m$\\y$")),
                                      {MODEL: 10**9, "m$\\y$": 2 * 10**9})}
    for name, fig in drawn.items():
        assert fig is not None, name
        assert figures.png(fig).startswith("data:image/png;base64,"), name  # math text would raise here
        texts = [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_parse_math"))]
        assert all(not t.get_parse_math() for t in fig.findobj(lambda a: hasattr(a, "get_parse_math"))), name
        if name not in ("memory", "operators", "macs"):
            assert any(BOARD in t or MODEL in t or "onnx$\\x$" in t for t in texts), (name, texts)
    op_texts = [t.get_text() for t in drawn["operators"].findobj(lambda a: hasattr(a, "get_parse_math"))]
    assert any(OPS[0] in t and OPS[1] in t for t in op_texts)


def test_the_tables_show_board_strings_literally(make_doc):
    records = _records(CELL)
    runs, samples = results.normalize(records, run_id="r", arch_of={})
    comparison = analysis.compare_arms(runs, {CELL.key: {"arms": ["docker", "bare"], "stop": "[/x]stop",
                                                                "pairs": 3}})
    ops = results.ops_table([(spec, {"profile": {"ops": [{"op_type": OPS[0], "op_name": OPS[1], "time_ns": 5e6}]}})
                             for spec in CELL.profile_runs(10)], run_id="r")
    changes = analysis.compare_runs(runs, runs.assign(kernel="6.[/x]", run_id="s"))
    console = Console(record=True, width=400)
    for table in (report.mode_table(comparison), report.calibration_table(comparison),
                  report.explain_table(comparison.assign(a="docker+[bold]")), report.measures_table(runs),
                  report.sweep_table(runs), report.framework_table(runs), report.ops_top(ops),
                  report.change_table(changes, "run[/x]", "run[bold]")):
        console.print(table)
    text = console.export_text()
    for s in (BOARD, MODEL, "[/x]stop", "docker+[bold]", *OPS, "6.[/x]", "run[/x]", "run[bold]", "2.[/x]",
              "throttled: bare #2"):
        assert s in text, s


def test_a_boards_check_answers_and_health_problems_are_text(tmp_path, monkeypatch, capsys):
    board = SimpleNamespace(name="b[/x]", arch=SimpleNamespace(value="arm64"))
    row = BoardFacts(board="b[/x]", arch_ok=True, arch_found="arm64", python="3.11 $\\x$", python_exit="0",
                     python_said="", os="Debian [bold]12", platform=None, docker="[/x]24", venv=True, numpy="[red]1",
                     disk_free_mb=3000, sensors="thermal[/]", frameworks=("tflite [/x]",), problems=("x",))
    console = Console(record=True, width=400)
    console.print(check_table([board], GroupResult(succeeded={"b[/x]": row})))
    text = console.export_text()
    for s in ("b[/x]", "Debian [bold]12", "[/x]24", "3.11 $\\x$", "[red]1", "thermal[/]", "tflite [/x]"):
        assert s in text, s
    monkeypatch.setenv("EDGEORCH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "inventory.yaml").write_text("boards:\n"
                                             "  - {name: pi3, host: 10.0.0.1, user: pi, arch: armv7, groups: [lab]}\n"
                                             "  - {name: pi4, host: 10.0.0.2, user: pi, arch: arm64, groups: [lab]}\n")
    inventory = load_inventory(tmp_path / "inventory.yaml")
    health.record(inventory, {"pi3": ["[/x] docker [bold]gone $\\x$"]})
    console = _console()
    assert [b.name for b in health.healthy_boards(inventory, "lab", Reporter(console))] == ["pi4"]
    shown = console.export_text()
    assert "skipping pi3: unhealthy at its last check" in shown and "([/x] docker [bold]gone $\\x$)" in shown


def test_a_run_whose_answer_is_not_the_expected_shape_is_a_named_error_and_kept(tmp_path):
    spec = CELL.runs(0)[0]
    doc = result_doc([5.0] * 5)
    doc["timing"]["count"] = "fast"
    runner = SimpleNamespace(execute=lambda args, files: SimpleNamespace(stdout=json.dumps(doc), stderr="",
                                                                         exit_code=0))
    model = SimpleNamespace(sha256="a" * 64)
    with pytest.raises(BoardError, match=r"pi\[/x\]: the tflite docker run #0 answered a document of the wrong "
                                         r"shape \(timing.count is not a whole number above 0\)") as e:
        execute._run(runner, spec, model, [], tmp_path)
    assert "invoke deploy --host" in e.value.hint
    assert json.loads(results.raw_path(tmp_path, spec).read_text())["timing"]["count"] == "fast"  # kept


@pytest.mark.parametrize("break_it", [
    lambda d: d.pop("facts"), lambda d: d["timing"].update(count=0), lambda d: d.update(sensors=[1]),
    lambda d: d["timing"]["subsample"].update(latencies_ns=[1, "2"]), lambda d: d["model"].update(inputs=[{"x": 1}]),
    lambda d: d["framework"].update(name=None)])
def test_a_malformed_run_of_an_earlier_session_is_not_taken_as_finished(tmp_path, break_it):
    for pair in range(2):
        for spec in CELL.runs(pair):
            doc = result_doc([5.0] * 5, mode=spec.mode)
            if pair == 1 and spec.mode == "bare":
                break_it(doc)
            path = results.raw_path(tmp_path, spec)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(doc))
    pairs = results.finished_pairs(tmp_path, lambda p: CELL.runs(p) if p < 5 else None)
    assert len(pairs) == 1  # the whole first pair is kept; the second is run again
    runs, _ = results.normalize([rec for pair in pairs for rec in pair], run_id="r", arch_of={})
    assert len(runs) == 2


def test_a_malformed_profiling_pass_is_left_out_and_the_others_kept(tmp_path):
    good, bad = CELL.profile_runs(10)
    for spec, ops in ((good, [{"op_type": "Conv", "op_name": "c1", "time_ns": 5}]), (bad, [{"op_type": 3}])):
        path = results.raw_path(tmp_path, spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"status": "ok", "profile": {"ops": ops, "reason": None}}))
    found = results.profiles(tmp_path, [good, bad])
    assert [spec for spec, _ in found] == [good]
    assert list(results.ops_table(found, run_id="r")["op_name"]) == ["c1"]
