"""Hostile names, end to end: every place a user's name travels (model files and their directories, `workdir:`,
`--option`, `--model`, board names, `--host`, the inventory's own path) gets spaces, quotes, `;`, `$()`,
backticks, newlines, `*`, `~`, a leading `-`, rich markup and non-ASCII. Each name carries payloads that would
create a sentinel file if any shell ever read it as script text; after every case no sentinel exists, here or on
the board, and the case either worked (a short bench of x86 whose results name the model as the user did) or was
refused with the exit code of its kind and a message naming the thing and the fix.

The results directory (`--results DIR`) is a path on this machine only; its case checks that a hostile one holds
the run and its report, which names the run's model in text, never markup.
"""

import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml

from edgeorch import results, sim
from edgeorch.cache import cache_dir
from edgeorch.models import resolve

from .conftest import INVENTORY, ROOT, invoke, runs_started

U = uuid.uuid4().hex[:12]
SENTINEL = f"/tmp/edgeorch-pwned-{U}"  # absolute: on this host, and in the board's /tmp
REL = f"pwned-{U}"                      # relative: wherever a shell that read it would be running
PAYLOADS = f"$(touch {REL}) `touch {REL}`;touch {REL};"  # no "/": fits in one file name
BENCH = ("--framework", "tflite", "--iterations", "3", "--warmup", "0", "--min-time", "0", "--repeat", "1")

# Quotes come in pairs, so that a name pasted into a command line, bare or in quotes, leaves its payloads outside
# them and runs them: test_each_hostile_name_would_run_its_payload_in_a_naive_command_line checks that they would.
DIRECTORY = (f"""dir's "x" y's {PAYLOADS}touch """, "tmp", f"edgeorch-pwned-{U};b ~ *")  # one path, 3 levels
MODEL_STEMS = {"quotes-and-shell": f"""it's "my" model's * {PAYLOADS} x""",
               "dash-unicode-markup-newline": f"-rf ~ modèle 模型 [bold] [red\n{PAYLOADS}"}  # a file has no [/x]
ONNX_STEM = f"""-it's "an" onnx's ~ * 模型 {PAYLOADS} x"""
WORKDIR = f"""it's "w" w's {PAYLOADS}touch {SENTINEL};x/-y ~ é 模 * [/x]"""
BAD_WORKDIRS = {f"edgeorch\ntouch {REL}": "control character", "edge\torch": "control character",
                "~nobody/edgeorch": "another user's ~", "": "is not a directory"}
OPTIONS = [f"xnnpack=off;touch {SENTINEL}", f"xnnpack=$(touch {REL})", f"`touch {REL}`=on",
           f"xnnpack=off\ntouch {REL}"]
MODELS = {f"$(touch {REL})": "unknown model", f"`touch {REL}`": "unknown model",
          f"tiny;touch {SENTINEL}": "does not exist", "-rf": "unknown model", "*": "unknown model",
          "tiny\n": "unknown model"}
BOARD_NAMES = [f"x86;touch {SENTINEL}", f"$(touch {REL})", "x 86", "-x86", "模型", "x86\n"]
HOSTS = [f"x86;touch {SENTINEL}", f"$(touch {REL})", f"x86\ntouch {REL}", "-rf", "*"]


@pytest.mark.parametrize("name", [
    "/".join(DIRECTORY) + f"/{MODEL_STEMS['quotes-and-shell']}.tflite",
    f"{MODEL_STEMS['dash-unicode-markup-newline']}.tflite", f"{ONNX_STEM}.onnx", WORKDIR, *list(BAD_WORKDIRS)[:1],
    *OPTIONS, *list(MODELS)[:3], *BOARD_NAMES[:2], *HOSTS[:3]])
def test_each_hostile_name_would_run_its_payload_in_a_naive_command_line(tmp_path_factory, name):
    cwd = tmp_path_factory.mktemp("naive")
    fired = []
    for line in (f"true {name}", f'true "{name}"'):  # what f-strings of commands did before argument lists
        subprocess.run(["sh", "-c", line], cwd=cwd, capture_output=True, timeout=10)
        fired.append((cwd / REL).exists() or Path(SENTINEL).exists())
        for made in (cwd / REL, Path(SENTINEL)):
            made.unlink(missing_ok=True)
    # bare, every payload runs; in double quotes, $() and backticks still do
    assert fired == [True, "$(" in name or "`" in name], "this name would not show that a shell read it"


@pytest.fixture(scope="module")
def x86(fleet):
    return next(sb for sb in sim.sim_boards(fleet) if sb.board.name == "x86")


@pytest.fixture(scope="module")
def tiny_file():
    """The builtin tiny .tflite from the build cache: a user's own file once copied under another name."""
    return resolve("tiny", "tflite", cache_dir=cache_dir()).path


def _pwned(x86, tmp_path) -> list[Path]:
    """Every sentinel a payload made: the absolute one here and on the board, the relative one in each place a
    shell could have run (the board's home and /tmp, its root, this clone's root, the test's own directory)."""
    found = [p for p in (Path(SENTINEL), x86.rootfs / SENTINEL.lstrip("/")) if p.exists()]
    for top in (ROOT, x86.rootfs, x86.rootfs / "root", Path.home()):
        found += [top / REL] if (top / REL).exists() else []
    for tree in (x86.home, x86.rootfs / "tmp", tmp_path):
        found += [Path(d) / REL for d, _, files in os.walk(tree) if REL in files]
    return found


@pytest.fixture(autouse=True)
def nothing_ran(x86, tmp_path):
    yield
    assert _pwned(x86, tmp_path) == [], "a name was run as a command"


def _runs() -> set[Path]:
    return set(results.root().glob("*/"))


@pytest.fixture
def inv(tmp_path) -> Path:
    """A copy of the shipped inventory's x86 board: its run directories, if any, can be told from others'."""
    return _inventory(tmp_path)


def _bench(*args: str, cwd: Path = ROOT):
    """`invoke bench ARGS` from `cwd`; while another test's bench holds the board's lock, wait (bounded)."""
    search = ("--search-root", str(ROOT)) if cwd != ROOT else ()
    for _ in range(30):
        r = invoke(*search, "bench", *args, cwd=cwd, check=False)
        if "is being benchmarked by" not in r.stdout:
            return r
        time.sleep(5)
    raise AssertionError("the x86 board stayed locked by another benchmark for 150 s")


def _refused(r, code: int, *parts: str) -> str:
    out = " ".join(r.stdout.split())
    assert r.returncode == code, out[-3000:] + r.stderr[-3000:]
    assert "Traceback" not in r.stderr + r.stdout
    assert "error:" in out and "fix:" in out
    for part in parts:
        assert part in out, (part, out[-2000:])
    return out


def _results(r) -> pd.DataFrame:
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    run_dir = Path(re.search(r"results go to (\S+)", r.stdout).group(1))
    return pd.read_parquet(run_dir / "results.parquet")


def _hostile_dir(tmp_path: Path) -> Path:
    """A directory whose path, read by a shell, would touch the absolute sentinel."""
    d = tmp_path.joinpath(*DIRECTORY)
    d.mkdir(parents=True)
    return d


# The user's file under a hostile name in a hostile directory: given by absolute path, or relative to the
# current directory (so that the argument itself starts with `-`).
@pytest.mark.parametrize("stem, relative", [(MODEL_STEMS["quotes-and-shell"], False),
                                            (MODEL_STEMS["dash-unicode-markup-newline"], True)], ids=list(MODEL_STEMS))
def test_a_model_file_with_a_hostile_name_is_benchmarked_under_that_name(fleet, tmp_path, tiny_file, stem,
                                                                         relative):
    model = _hostile_dir(tmp_path) / f"{stem}.tflite"
    shutil.copyfile(tiny_file, model)
    arg = model.name if relative else str(model)
    runs = _results(_bench("--inventory", str(INVENTORY), "--host", "x86", f"--model={arg}", *BENCH,
                           cwd=model.parent if relative else ROOT))
    assert set(runs["model"]) == {stem}
    assert sorted(runs["mode"]) == ["bare", "docker"]


def test_an_onnx_file_with_a_hostile_name_is_checked_and_planned(fleet, tmp_path, inv):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    stem = ONNX_STEM
    model = _hostile_dir(tmp_path) / f"{stem}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(model))
    before = _runs()
    r = invoke("bench", "--inventory", str(inv), "--host", "x86", "--framework", "onnxruntime", f"--model={model}",
               "--dry-run", check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert f"x86/onnxruntime-{stem}:" in r.stdout
    assert runs_started(before, inv) == []


def _inventory(tmp_path: Path, directory: Path | None = None, **board) -> Path:
    """The shipped inventory's x86 board with fields replaced, its key and known_hosts by absolute path."""
    raw = yaml.safe_load(INVENTORY.read_text())
    for key in ("identity_file", "known_hosts"):
        raw["defaults"][key] = str(INVENTORY.parent / raw["defaults"][key])
    raw["boards"] = [{**next(b for b in raw["boards"] if b["name"] == "x86"), **board}]
    path = (directory or tmp_path) / "inventory.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


def test_a_hostile_workdir_works_in_both_modes(fleet, x86, tmp_path):
    top = f"edgeorch-hostile-{U}"
    workdir = f"{top}/{WORKDIR}"
    inventory = _inventory(tmp_path, _hostile_dir(tmp_path), workdir=workdir)  # the inventory's own path too
    try:
        runs = _results(_bench("--inventory", str(inventory), "--host", "x86", "--model", "tiny", *BENCH))
        assert sorted(runs["mode"]) == ["bare", "docker"]
        assert (x86.home / workdir / "models").is_dir()  # exactly the directory named, under the board's home
    finally:
        shutil.rmtree(x86.home / top, ignore_errors=True)


@pytest.mark.parametrize("workdir, problem", BAD_WORKDIRS.items())
def test_a_workdir_that_cannot_work_is_refused(fleet, tmp_path, workdir, problem):
    before, inventory = _runs(), _inventory(tmp_path, workdir=workdir)
    r = invoke("bench", "--inventory", str(inventory), "--host", "x86", "--model", "tiny", *BENCH, check=False)
    _refused(r, 2, "board 'x86', field `workdir`", problem)
    assert runs_started(before, inventory) == []


@pytest.mark.parametrize("option", OPTIONS)
def test_a_hostile_option_is_refused_before_anything_runs(fleet, inv, option):
    before = _runs()
    r = invoke("bench", "--inventory", str(inv), "--host", "x86", "--model", "tiny", *BENCH, "--option", option,
               check=False)
    _refused(r, 2, "--option", "tflite takes xnnpack=on|off")
    assert runs_started(before, inv) == []


@pytest.mark.parametrize("model, problem", MODELS.items())
def test_a_hostile_model_value_that_is_no_file_is_refused(fleet, inv, model, problem):
    before = _runs()
    r = invoke("bench", "--inventory", str(inv), "--host", "x86", f"--model={model}", *BENCH, check=False)
    _refused(r, 4, problem)
    assert "tiny" in r.stdout  # the fix lists the models there are
    assert runs_started(before, inv) == []


@pytest.mark.parametrize("name", BOARD_NAMES)
def test_a_hostile_board_name_is_refused_by_the_inventory(fleet, tmp_path, name):
    before, inventory = _runs(), _inventory(tmp_path, name=name)
    r = invoke("bench", "--inventory", str(inventory), "--host", "x86", "--model", "tiny", *BENCH, check=False)
    _refused(r, 2, "field `name`", "is not a plain name", "use ASCII letters, digits, - and _")
    assert runs_started(before, inventory) == []


@pytest.mark.parametrize("host", HOSTS)
def test_a_hostile_host_is_refused(fleet, inv, host):
    before = _runs()
    r = invoke("bench", "--inventory", str(inv), f"--host={host}", "--model", "tiny", *BENCH, check=False)
    _refused(r, 2, "is neither a board nor a group", "use one of the boards")
    assert runs_started(before, inv) == []


def test_a_results_directory_with_a_hostile_name_holds_the_run_and_its_report(fleet, tmp_path, tiny_file):
    where = _hostile_dir(tmp_path) / f"results {PAYLOADS} [/x]"
    model = tmp_path / f"{MODEL_STEMS['quotes-and-shell'].replace('*', 'x')} <b>.tflite"
    shutil.copyfile(tiny_file, model)
    r = _bench("--inventory", str(INVENTORY), "--host", "x86", f"--model={model}", *BENCH, "--results", str(where))
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    (run_dir,) = [p.parent for p in where.glob("*/manifest.json")]
    page = (run_dir / "report.html").read_text()
    assert "&lt;b&gt;" in page and " <b>" not in page  # the model's name is text in the page
    (run_dir / "report.html").unlink()
    for task in (("report",), ("results.show",)):  # the newest run of that directory
        r = invoke(*task, "--results", str(where), check=False)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (run_dir / "report.html").is_file()
