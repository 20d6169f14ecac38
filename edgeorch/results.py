"""Results: keep every answer untouched, validate it, normalize runs into pandas tables."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import fcntl
import io
import json
import os
import secrets
import shlex
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from . import stats
from .bench import RESULT_SCHEMA, SAMPLES_MARK
from .bench import samples as board_samples
from .bench.signature import format_shape
from .cache import ROOT, write_atomic  # results.write_atomic: the one atomic writer
from .errors import BoardError, ConfigError, RunError
from .plan import RunSpec


def root() -> Path:
    """Where runs go: $EDGEORCH_RESULTS (what `--results DIR` sets), else results/ in the checkout."""
    return Path(os.environ.get("EDGEORCH_RESULTS") or ROOT / "results")


# perf's events -> their per-inference column (the Velasco-Montero figures; hardware ones only where a PMU is)
COUNTER_COLUMNS = {
    "cycles": "cycles_per_inf", "instructions": "instructions_per_inf", "cache-references": "cache_refs_per_inf",
    "cache-misses": "cache_misses_per_inf", "branch-instructions": "branches_per_inf",
    "branch-misses": "branch_misses_per_inf", "L1-dcache-load-misses": "l1d_misses_per_inf",
    "dTLB-load-misses": "dtlb_misses_per_inf", "iTLB-load-misses": "itlb_misses_per_inf",
    "task-clock": "cpu_ms_per_inf", "page-faults": "page_faults_per_inf",
    "context-switches": "context_switches_per_inf", "cpu-migrations": "cpu_migrations_per_inf",
}

# The normalized table: one row per run. Golden tests pin these names and their order.
COLUMNS = [
    "run_id", "cell", "board", "arch", "machine", "framework", "framework_version", "runtime", "model",
    "model_sha256", "mode", "arm", "pair", "position", "attempts", "iterations", "warmup", "threads", "batch",
    "input_shapes", "precision",
    "framework_options", "p50_ms", "p90_ms",
    "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "throughput_ips", "load_ms",
    "first_inference_ms", "cpu_percent", "peak_rss_mb",
    "rss_before_load_mb", "rss_after_load_mb", "rss_after_first_mb", "peak_rss_timed_mb", "samples_mb",
    "cgroup_peak_mb", "model_size_mb",
    *COUNTER_COLUMNS.values(), "ipc", "counters_unavailable",
    "energy_mj", "energy_above_idle_mj", "avg_power_w", "idle_power_w", "power_source", "power_rate_hz",
    "energy_unavailable",
    "max_temp_c", "throttled",
    "throttle_evidence", "sampler_cost", "governor", "cpu_model", "cores", "kernel", "os", "python", "numpy",
    "image_id",
    "bench_sha256", "started_at", "max_abs_diff", "correlation", "top1", "top1_ref", "agrees",
]


def new_run_dir() -> Path:
    """A fresh results/<run-id>/ directory, made by this call alone (never one that was there); run ids sort by
    time."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    root().mkdir(parents=True, exist_ok=True)
    for _ in range(16):
        path = root() / f"{stamp}-{secrets.token_hex(2)}"
        try:
            path.mkdir()  # exclusive: a run directory that exists (another run's, or planted) is never taken over
        except FileExistsError:
            continue
        (path / "raw").mkdir()
        return path
    raise RunError(f"no new run directory could be made under {root()}: every id tried for {stamp} exists",
                   hint="remove what is not a run under that directory, or pass another one with --results DIR")


LOCK = ".lock"


@contextlib.contextmanager
def locked_run(run_dir: Path) -> Iterator[None]:
    """Hold the run directory for this process alone while it writes a session of the run into it: a second
    `--resume` of the run (another terminal) is refused at once, naming this process, instead of interleaving its
    manifest updates with ours. The lock is the kernel's (flock): it goes when the process does, however it ends."""
    path = run_dir / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as e:
        raise RunError(f"cannot open the lock of {run_dir} ({path}): {e.strerror}",
                       hint=f"{path} must be a plain file this login can write (not a link): remove it") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 1000, 0).decode(errors="replace").strip() or "a process that has not said which"
            pid = holder.split()[1] if holder.startswith("pid ") else "PID"
            raise RunError(f"{run_dir} is in use by another edgeorch: {holder}",
                           hint=f"wait for it to end (its results are kept in the same directory), or stop it "
                                f"(kill {pid}) and run `{resume_command(run_dir)}` again") from None
        argv = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
        since = datetime.datetime.now().isoformat(sep=" ", timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {since}: {argv}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # whoever reads it next finds no holder named
    finally:
        os.close(fd)


def _real_inputs_hint(made_up: list[dict]) -> str:
    """The fix for a run that failed with inputs fed made-up (seeded) data: feed each one real values from a file."""
    options = " ".join("--input " + shlex.quote(f"{i.get('name')}=FILE.npy") for i in made_up)
    wanted = ", ".join(f"{i.get('dtype')} {format_shape(i.get('shape') or [])} for {i.get('name')!r}" for i in made_up)
    return (f"the model may need realistic values where edgeorch made them up: pass {options}, each FILE.npy an "
            f"array saved with numpy.save of that input's dtype and shape ({wanted}) holding values the model "
            "expects; the board's stderr is kept under results/")


def parse_answer(answer, *, board: str, what: str, schema: str = RESULT_SCHEMA) -> dict:
    """The JSON document of an entrypoint answer; BoardError if it is not one or reports failure."""
    try:
        doc = json.loads(answer.stdout)
    except json.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict) or doc.get("schema") != schema:
        detail = (answer.stderr.strip() or answer.stdout.strip())[-600:] or "no output"
        before, _, rest = answer.stdout.rpartition("\n{")
        try:
            late = json.loads("{" + rest) if before.strip() else None
        except json.JSONDecodeError:
            late = None
        if isinstance(late, dict) and late.get("schema") == schema:  # the orchestrator never scrapes around it
            raise BoardError(f"board {board}: the {what} printed text before its {schema} document: "
                             f"{before.strip()[-300:]!r}",
                             hint="something on the board writes to stdout as Python starts (the inventory's "
                                  "`python:`, a shell profile, sitecustomize): make it write to stderr, or nothing")
        if answer.exit_code in (126, 127):  # the shell's "not found" and "not executable"
            raise BoardError(f"board {board}: the {what} could not start (exit {answer.exit_code}): {detail}",
                             hint="a program it runs is missing on the board: check `python:` of the board in the "
                                  "inventory (`invoke check --host BOARD` shows what the board has)")
        raise BoardError(f"board {board}: the {what} answered something that is not an {schema} "
                         f"document (exit {answer.exit_code}): {detail}",
                         hint="redeploy the framework (invoke deploy --host BOARD); if it persists, "
                              "run the entrypoint by hand on the board to see what it prints")
    if doc.get("status") != "ok" or answer.exit_code != 0:
        err = doc.get("error") or {}
        # the board's message already names them: the hint gives the fix
        made_up = [i for i in err.get("made_up_inputs") or [] if isinstance(i, dict)]
        raise RunError(f"board {board}: the {what} failed ({err.get('kind', 'unknown')}, exit "
                       f"{answer.exit_code}): {err.get('message', 'no message')}",
                       hint=_real_inputs_hint(made_up) if made_up
                       else "fix the model or arguments named above" if err.get("kind") in ("model", "args")
                       else "give runs more time (--timeout SECONDS), or check whether the board hangs"
                       if err.get("kind") == "timeout" else "see the message above; the board's stderr is kept under "
                                                            "results/")
    return doc


_NUMBER = (int, float)
# What normalize() reads of a timed run's document, and of a profiling pass's: where each must be and what it is
_TIMED = {("timing", "wall_ns"): _NUMBER, ("timing", "load_ns"): _NUMBER,
          ("timing", "first_inference_ns"): _NUMBER, ("facts", "machine"): str, ("facts", "cpu_model"): str,
          ("facts", "cores"): int, ("facts", "kernel"): str, ("facts", "os"): str, ("facts", "python"): str,
          ("facts", "numpy"): str, ("framework", "name"): str, ("framework", "version"): str,
          ("params", "warmup"): int, ("params", "threads"): int, ("model", "sha256"): str, ("run", "mode"): str,
          ("resources", "cpu_percent"): _NUMBER, ("resources", "peak_rss_bytes"): _NUMBER, ("bench", "sha256"): str,
          ("started_at",): str}
_OPTIONAL = ("sensors", "energy", "counters", "memory")  # absent, null or an object


def malformed(doc: dict, *, profile: bool = False) -> str | None:
    """What is wrong with the shape of a run's document (the first thing found), or None when normalize() and the
    tables can read it: a board's answer is the board's, and one odd run must not end the collection of all."""
    if profile:
        found = doc.get("profile")
        ops = found.get("ops") if isinstance(found, dict) else None
        if not isinstance(ops, list) or not all(
                isinstance(op, dict) and isinstance(op.get("op_type"), str) and isinstance(op.get("op_name"), str)
                and isinstance(op.get("time_ns"), _NUMBER) and not isinstance(op.get("time_ns"), bool) for op in ops):
            return "profile.ops is not a list of {op_type, op_name, time_ns}"
        return None
    for path, kind in _TIMED.items():
        value = doc
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"{'.'.join(path)} is {type(value).__name__ if value is not None else 'missing'}, not " \
                   f"{'a number' if kind is _NUMBER else kind.__name__}"
    problem = _malformed_timing(doc["timing"])
    if problem:
        return problem
    if doc["timing"]["wall_ns"] <= 0:
        return "timing.wall_ns is not above 0"
    for key in _OPTIONAL:
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            return f"{key} is {type(doc[key]).__name__}, not an object"
    inputs = doc["model"].get("inputs") or []
    if not isinstance(inputs, list) or not all(isinstance(i, dict) and "name" in i and "shape" in i for i in inputs):
        return "model.inputs is not a list of {name, shape}"
    return None


def _whole(values) -> bool:
    return isinstance(values, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)


def _malformed_timing(timing: dict) -> str | None:
    """What is wrong with a timing summary (samples.summarize's), or with the lists of an edgeorch before them."""
    if "count" not in timing:
        if not timing.get("latencies_ns") or not _whole(timing["latencies_ns"]):
            return "timing.latencies_ns is not a list of one or more whole nanoseconds"
        return None
    count, latency, hist, sub = (timing.get(k) for k in ("count", "latency_ns", "histogram", "subsample"))
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        return "timing.count is not a whole number above 0"
    if not isinstance(latency, dict) or not all(isinstance(latency.get(k), _NUMBER) and latency[k] >= 0
                                                for k in ("mean", "std", "min", "max", "p50", "p90", "p99")):
        return "timing.latency_ns is not {mean, std, min, max, p50, p90, p99} of numbers >= 0"
    if not isinstance(hist, dict) or not isinstance(hist.get("first"), int) \
            or not isinstance(hist.get("per_doubling"), int) or hist["per_doubling"] < 1 \
            or not _whole(hist.get("counts")) or sum(hist["counts"]) != count:
        return "timing.histogram is not {per_doubling, first, counts} of the run's inferences"
    if not isinstance(sub, dict) or not all(_whole(sub.get(k)) for k in ("index", "starts_ns", "latencies_ns")) \
            or not sub["index"] or not len(sub["index"]) == len(sub["starts_ns"]) == len(sub["latencies_ns"]):
        return "timing.subsample is not {index, starts_ns, latencies_ns} of equal lengths"
    return None


def timing(doc: dict) -> dict:
    """The run's timing summary (samples.summarize's): the document's own, or made here (and kept in it) from every
    sample of an edgeorch before summaries, whose subsample then has no starts where it kept none."""
    found = doc["timing"]
    if "count" not in found:  # once: the summary joins the lists
        starts = found.get("starts_ns") or []
        found.update(board_samples.summarize(starts or np.zeros(len(found["latencies_ns"]), np.int64),
                                             found["latencies_ns"]))
        if not starts:
            found["subsample"]["starts_ns"] = []
    return found


def check_run(doc: dict, *, board: str, what: str, key: str, profile: bool = False) -> dict:
    """`doc` if its shape is one the tables read; else a BoardError that names the run (the answer stays in raw/)."""
    problem = malformed(doc, profile=profile)
    if problem:
        raise BoardError(f"board {board}: the {what} answered a document of the wrong shape ({problem}); it is kept "
                         f"as raw/{key}.json and left out of the results",
                         hint="the board's edgeorch differs from this one: redeploy it (invoke deploy --host "
                              f"{board}), then resume the run")
    return doc


def raw_path(run_dir: Path, spec: RunSpec) -> Path:
    return run_dir / "raw" / f"{spec.key}.json"


def save_raw(run_dir: Path, spec: RunSpec, answer):
    """Store the answer exactly as it came back (stderr beside it) before anything reads it, less every sample of
    --keep-samples: those go beside it, binary (samples_path), and the answer without them is returned."""
    path = raw_path(run_dir, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    if answer.stderr.strip():
        write_atomic(path.with_suffix(".stderr.txt"), answer.stderr)
    text, mark, encoded = answer.stdout.partition("\n" + SAMPLES_MARK)
    if mark:
        buf = io.BytesIO()
        np.save(buf, np.frombuffer(base64.b64decode(encoded), dtype="<i8").reshape(2, -1))
        write_atomic(samples_path(run_dir, spec), buf.getvalue())
        answer = dataclasses.replace(answer, stdout=text + "\n")
    write_atomic(path, answer.stdout)
    return answer


def samples_path(run_dir: Path, spec: RunSpec) -> Path:
    """raw/<key>.samples.npy (--keep-samples): every timed inference's start and latency in ns, int64 of shape
    (2, count): numpy.load(path) and its rows are starts, latencies."""
    return run_dir / "raw" / f"{spec.key}.samples.npy"


_manifest_lock = threading.Lock()  # boards run side by side, and each updates the manifest after every run


# The manifest's modes_version: 2 since bare mode is the framework image's userland out of its container. Runs before
# it (no modes_version) called the board's own Python "bare": that is native mode now.
MODES_VERSION = 2
_LEGACY_ARMS = {"bare": "native", "bare-A": "native-A", "bare-B": "native-B"}


def legacy_modes(manifest: dict) -> bool:
    """Whether the run is from before bare mode was the image's userland (its bare was the board's own Python)."""
    return int(manifest.get("modes_version") or 1) < MODES_VERSION


def current_modes(table: pd.DataFrame, manifest: dict) -> pd.DataFrame:
    """`table` of the run of `manifest` with its modes and arms under today's names: an older run's bare is
    native."""
    if legacy_modes(manifest):
        for column in ("mode", "arm"):
            if column in table:
                table[column] = table[column].replace(_LEGACY_ARMS)
    return table


def current_cells(manifest: dict) -> dict:
    """The manifest's cells with their arms under today's names."""
    cells = manifest.get("cells") or {}
    if not legacy_modes(manifest):
        return cells
    return {key: {**cell, "arms": [_LEGACY_ARMS.get(a, a) for a in cell.get("arms") or []]}
            for key, cell in cells.items()}


def write_manifest(run_dir: Path, **fields) -> None:
    """results/<run-id>/manifest.json: what was asked, what ran, what failed, complete or not."""
    path = run_dir / "manifest.json"
    with _manifest_lock:
        doc = json.loads(path.read_text()) if path.exists() else {"run_id": run_dir.name}
        doc.update(fields)
        write_atomic(path, json.dumps(doc, indent=1, default=str))


def update_cell(run_dir: Path, key: str, **fields) -> None:
    """Record a cell's progress in the manifest (after each pair, so a killed sweep knows where it was)."""
    path = run_dir / "manifest.json"
    with _manifest_lock:
        doc = json.loads(path.read_text())
        doc.setdefault("cells", {}).setdefault(key, {}).update(fields)
        write_atomic(path, json.dumps(doc, indent=1, default=str))


def read_manifest(run_dir: Path) -> dict:
    """The manifest of a run directory; RunError if there is none."""
    try:
        return json.loads((run_dir / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RunError(f"{run_dir} is not an edgeorch run directory (no readable manifest.json)",
                       hint="pass a directory under results/ that a bench wrote") from e


def resume_command(run_dir: Path) -> str:
    """How a user goes on with an unfinished run: the task that started it (its manifest says), with --resume."""
    try:
        task = (read_manifest(run_dir).get("request") or {}).get("task") or "bench"
    except RunError:  # a run whose manifest is not written yet was started by a bench or the like
        task = "bench"
    return f"invoke {task} --resume {run_dir}"


def finished_pairs(run_dir: Path, runs_of) -> list[list[tuple[RunSpec, dict]]]:
    """The pairs of a cell that finished in an earlier session of the run, in order: each pair whole (all its runs
    answered ok) until the first that is not. The runs of that incomplete pair are moved to raw/superseded/, kept but
    never mixed in: a pair's runs must run back to back."""
    pairs: list[list[tuple[RunSpec, dict]]] = []
    pair = 0
    while True:
        specs = runs_of(pair)
        if specs is None:
            return pairs
        docs = []
        for spec in specs:
            path = raw_path(run_dir, spec)
            try:
                doc = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                break
            if not isinstance(doc, dict) or doc.get("status") != "ok" or malformed(doc):
                break
            docs.append((spec, doc))
        if len(docs) < len(specs):
            for spec in specs:
                for path in raw_path(run_dir, spec).parent.glob(raw_path(run_dir, spec).stem + ".*"):
                    dest = run_dir / "raw" / "superseded" / path.relative_to(run_dir / "raw")
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(path, dest.with_name(f"{dest.stem}.{secrets.token_hex(2)}{dest.suffix}"))
            return pairs
        pairs.append(docs)
        pair += 1


def _mb(value) -> float | None:
    return None if value is None else value / 2**20


def _memory(doc: dict) -> dict:
    """The memory columns: RSS before and after loading, after the first inference, the timed phase's peak less the
    harness's samples (16 bytes an inference, which it knows: samples_mb), the container's cgroup peak (Docker), the
    model's size on disk."""
    memory = doc.get("memory") or {}
    peak, kept = memory.get("peak_rss_timed_bytes"), memory.get("samples_bytes") or 0
    return {"rss_before_load_mb": _mb(memory.get("rss_before_load_bytes")),
            "rss_after_load_mb": _mb(memory.get("rss_after_load_bytes")),
            "rss_after_first_mb": _mb(memory.get("rss_after_first_bytes")),
            "peak_rss_timed_mb": _mb(peak - kept if peak is not None else None),
            "samples_mb": _mb(memory.get("samples_bytes")),
            "cgroup_peak_mb": _mb(memory.get("cgroup_peak_bytes")),
            "model_size_mb": _mb(doc["model"].get("size_bytes"))}


def _counters(doc: dict) -> dict:
    """perf's counts per inference; an event the board lacks is NaN here and named with its reason in
    counters_unavailable, never 0."""
    found = doc.get("counters")
    if not found:
        return {"ipc": None, "counters_unavailable": json.dumps({"*": "not measured (--no-counters)"})}
    per = found.get("per_inference") or {}
    row = {column: per.get(event) for event, column in COUNTER_COLUMNS.items()}
    unavailable = dict(found.get("unavailable") or {})
    if found.get("reason") and not per:
        unavailable = {"*": found["reason"]}
    return {**row, "ipc": found.get("ipc"), "counters_unavailable": json.dumps(unavailable, sort_keys=True)}


def _energy(doc: dict) -> dict:
    """Energy per inference (mJ, all of it and above idle), average and idle power, the sensor and its rate."""
    found = doc.get("energy")
    if not found:
        return {"energy_unavailable": "not measured (--no-energy)"}
    return {"energy_mj": found.get("energy_mj"), "energy_above_idle_mj": found.get("energy_above_idle_mj"),
            "avg_power_w": found.get("avg_power_w"), "idle_power_w": found.get("idle_power_w"),
            "power_source": found.get("source"), "power_rate_hz": found.get("rate_hz"),
            "energy_unavailable": found.get("reason")}


def normalize(records: list[tuple[RunSpec, dict]], *, run_id: str, arch_of: dict[str, str],
              references: dict[tuple[str, int], np.ndarray] | None = None, attempts: dict[str, int] | None = None
              ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, samples): one row per run with its latency statistics, and a row per inference of its subsample.

    With a reference output for a run's (model, batch), its last output is compared with it (agreement columns).
    """
    attempts = attempts or {}  # run key -> attempts it took (a retried run is marked, never mixed in silently)
    rows, samples = [], []
    for spec, doc in records:
        check = _agreement_columns(spec, doc, references)
        summary = timing(doc)
        rows.append(_run_row(spec, doc, summary, check, run_id=run_id, arch_of=arch_of, attempts=attempts))
        sub = summary["subsample"]
        samples.append(pd.DataFrame({**_who(spec, doc["framework"]["name"]),
                                     "iteration": np.asarray(sub["index"], np.int64),
                                     "latency_ns": np.asarray(sub["latencies_ns"], np.int64),
                                     "t_s": _since_start(doc, sub["starts_ns"] or None)}))
    runs = _typed_runs(pd.DataFrame(rows, columns=COLUMNS))
    long = pd.concat(samples, ignore_index=True) if samples else pd.DataFrame(columns=SAMPLE_COLUMNS)
    return runs, long


def _agreement_columns(spec: RunSpec, doc: dict, references: dict[tuple[str, int], np.ndarray] | None) -> dict:
    """The run's last output against the reference for its (model, batch); all None without one."""
    check = {"max_abs_diff": None, "correlation": None, "top1": None, "top1_ref": None, "agrees": None}
    reference = (references or {}).get((spec.model, spec.batch))
    if reference is not None and doc.get("outputs"):
        out = doc["outputs"][0]
        output = np.asarray(out["values"], dtype=np.float64).reshape(out["shape"])
        found = stats.agreement(reference, output, precision=precision(doc))
        check = {key: found[key] for key in ("max_abs_diff", "correlation", "top1", "top1_ref")}
        check["agrees"] = found["agree"]
    return check


def _run_row(spec: RunSpec, doc: dict, summary: dict, check: dict, *, run_id: str, arch_of: dict[str, str],
             attempts: dict[str, int]) -> dict:
    """One run's row of the runs table (COLUMNS), from its document and timing summary."""
    count, ms = summary["count"], {k: v / 1e6 for k, v in summary["latency_ns"].items()}
    facts, fw, params, sensors = doc["facts"], doc["framework"], doc["params"], doc.get("sensors") or {}
    board = spec.board
    return {
        "run_id": run_id, "cell": spec.cell or None, "board": board, "arch": arch_of.get(board),
        "machine": facts["machine"], "framework": fw["name"], "framework_version": fw["version"],
        "runtime": fw.get("runtime"), "model": spec.model, "model_sha256": doc["model"]["sha256"],
        "mode": doc["run"]["mode"], "arm": spec.arm or spec.mode, "pair": spec.pair, "position": spec.position,
        "attempts": attempts.get(spec.key, 1),
        "iterations": count,
        "warmup": params["warmup"], "threads": params["threads"],
        "p50_ms": ms["p50"], "p90_ms": _quantile(ms["p90"], count, 0.90),
        "p99_ms": _quantile(ms["p99"], count, 0.99),
        "mean_ms": ms["mean"], "std_ms": ms["std"], "min_ms": ms["min"], "max_ms": ms["max"],
        "batch": doc["model"].get("batch", 1), "precision": precision(doc),
        # what each input was fed, as JSON text: {"input": [1, 3, 224, 224]}
        "input_shapes": json.dumps({i["name"]: i["shape"] for i in doc["model"].get("inputs") or []}),
        "framework_options": json.dumps(fw.get("options") or {}, sort_keys=True),
        "throughput_ips": float(doc["model"].get("batch", 1) * count / (doc["timing"]["wall_ns"] / 1e9)),
        "load_ms": doc["timing"]["load_ns"] / 1e6,
        "first_inference_ms": doc["timing"]["first_inference_ns"] / 1e6,
        "cpu_percent": doc["resources"]["cpu_percent"],
        "peak_rss_mb": doc["resources"]["peak_rss_bytes"] / 2**20, **_memory(doc), **_counters(doc),
        **_energy(doc),
        "max_temp_c": sensors.get("max_temp_c"), "throttled": sensors.get("throttled"),
        "throttle_evidence": sensors.get("throttle_evidence"), "sampler_cost": sensors.get("sampler_cost"),
        "governor": facts.get("governor"),
        "cpu_model": facts["cpu_model"], "cores": facts["cores"], "kernel": facts["kernel"],
        "os": facts["os"], "python": facts["python"], "numpy": facts["numpy"],
        "image_id": doc["run"].get("image_id"), "bench_sha256": doc["bench"]["sha256"],
        "started_at": doc["started_at"], **check,
    }


def _typed_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs table with nullable booleans and integers, and float columns that stay float when all are None."""
    for col in ("throttled", "agrees"):
        runs[col] = runs[col].astype("boolean")
    for col in ("top1", "top1_ref"):
        runs[col] = runs[col].astype("Int64")
    cols = ["max_abs_diff", "correlation", "p90_ms", "p99_ms", "sampler_cost", *COUNTER_COLUMNS.values(), "ipc",
            "rss_before_load_mb", "rss_after_load_mb", "rss_after_first_mb", "peak_rss_timed_mb", "samples_mb",
            "cgroup_peak_mb",
            "energy_mj", "energy_above_idle_mj", "avg_power_w", "idle_power_w", "power_rate_hz"]
    runs[cols] = runs[cols].astype("float64")
    return runs


SAMPLE_COLUMNS = ["cell", "board", "framework", "model", "mode", "arm", "pair", "iteration", "latency_ns", "t_s"]
HISTOGRAM_COLUMNS = ["cell", "board", "framework", "model", "mode", "arm", "pair", "latency_ns", "count"]
SENSOR_COLUMNS = ["cell", "board", "framework", "model", "mode", "arm", "pair", "t_s", "temp_c", "freq_mhz",
                  "throttled"]


def _who(spec: RunSpec, framework: str) -> dict:
    return {"cell": spec.cell or None, "board": spec.board, "framework": framework, "model": spec.model,
            "mode": spec.mode, "arm": spec.arm or spec.mode, "pair": spec.pair}


def _since_start(doc: dict, stamps_ns) -> np.ndarray | float:
    """Monotonic stamps (ns) as seconds since the run's first timed inference began; NaN before edgeorch kept
    the starts."""
    starts = timing(doc)["subsample"]["starts_ns"]  # the first inference is always in the subsample
    if not starts or stamps_ns is None:
        return np.nan
    return (np.asarray(stamps_ns, dtype=np.float64) - starts[0]) / 1e9


def histogram_table(records: list[tuple[RunSpec, dict]]) -> pd.DataFrame:
    """histograms.parquet: each run's latency histogram, a row per occupied bucket (its geometric middle, within
    samples.HISTOGRAM_ERROR of every latency in it, and how many fell in it): the ECDF of every inference."""
    parts = []
    for spec, doc in records:
        values, counts = board_samples.bucket_values(timing(doc)["histogram"])
        parts.append(pd.DataFrame({**_who(spec, doc["framework"]["name"]), "latency_ns": values, "count": counts}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=HISTOGRAM_COLUMNS)


def histograms_of(samples: pd.DataFrame) -> pd.DataFrame:
    """The histogram table of a samples table that holds every inference (an edgeorch before summaries)."""
    who = [c for c in HISTOGRAM_COLUMNS[:7] if c in samples]
    parts = []
    for key, grp in samples.groupby(who, dropna=False, sort=False):
        values, counts = board_samples.bucket_values(board_samples.histogram(grp["latency_ns"].to_numpy()))
        parts.append(pd.DataFrame({**dict(zip(who, key)), "latency_ns": values, "count": counts}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=HISTOGRAM_COLUMNS)


def sensor_table(records: list[tuple[RunSpec, dict]]) -> pd.DataFrame:
    """sensors.parquet: one row per sample of the watcher (hottest zone, fastest CPU, vcgencmd's throttle bits now)
    on the time base of samples.parquet's t_s, so that latency, temperature and clock line up."""
    rows = []
    for spec, doc in records:
        sensors = doc.get("sensors") or {}
        if "t0_ns" not in sensors or not timing(doc)["subsample"]["starts_ns"]:  # before the watcher's clock
            continue
        found = sensors.get("samples") or []
        for s, t in zip(found, _since_start(doc, [sensors["t0_ns"] + s["t_s"] * 1e9 for s in found])):
            temps, freqs = s.get("temps_c") or {}, s.get("freqs_mhz") or {}
            rows.append({**_who(spec, doc["framework"]["name"]), "t_s": float(t),
                         "temp_c": max(temps.values()) if temps else np.nan,
                         "freq_mhz": max(freqs.values()) if freqs else np.nan,
                         "throttled": bool(int(s["throttled"], 16) & 0xE) if "throttled" in s else None})
    table = pd.DataFrame(rows, columns=SENSOR_COLUMNS)
    table["throttled"] = table["throttled"].astype("boolean")
    return table


def _quantile(value: float, count: int, q: float) -> float | None:
    """The q-quantile, only from enough samples that the largest one bounds it (459 for p99, 44 for p90)."""
    return value if count >= stats.min_samples(q) else None


def precision(doc: dict) -> str:
    """fp32, fp16 or int8: the framework's precision option if it has one, else the model's input type."""
    chosen = (doc["framework"].get("options") or {}).get("precision")
    if chosen:
        return chosen
    dtype = ((doc["model"].get("inputs") or [{}])[0]).get("dtype", "float32")
    return {"int8": "int8", "uint8": "int8", "float16": "fp16"}.get(dtype, "fp32")


def write_tables(run_dir: Path, runs: pd.DataFrame, samples: pd.DataFrame, sensors: pd.DataFrame,
                 histograms: pd.DataFrame | None = None) -> None:
    """results.csv and results.parquet (one row per run), samples.parquet (each run's subsample of inferences),
    sensors.parquet (one row per sensor sample), histograms.parquet (each run's latency histogram), each whole."""
    write_atomic(run_dir / "results.csv", runs.to_csv(index=False))
    write_atomic(run_dir / "results.parquet", runs.to_parquet(index=False))
    write_atomic(run_dir / "samples.parquet", samples.to_parquet(index=False))
    write_atomic(run_dir / "sensors.parquet", sensors.to_parquet(index=False))
    if histograms is not None:
        write_atomic(run_dir / "histograms.parquet", histograms.to_parquet(index=False))


def save_tables(run_dir: Path, records: list[tuple[RunSpec, dict]], boards: list, references: dict,
                attempts: dict[str, int]) -> pd.DataFrame | None:
    """The run directory's tables from the runs that came back (normalized), and its runs table; None if none did."""
    if not records:
        return None
    runs, samples = normalize(records, run_id=run_dir.name, arch_of={b.name: b.arch.value for b in boards},
                              references=references, attempts=attempts)
    write_tables(run_dir, runs, samples, sensor_table(records), histogram_table(records))
    return runs


OPS_COLUMNS = ["run_id", "cell", "board", "framework", "model", "mode", "threads", "batch", "op_type", "op_name",
               "time_ms", "share", "rank"]


def save_profiles(run_dir: Path, runs: list[RunSpec]) -> tuple[pd.DataFrame, list[str]]:
    """ops.parquet from every profiling pass of `runs` that came back, and why a runtime has none."""
    found = profiles(run_dir, runs)
    ops = ops_table(found, run_id=run_dir.name)
    write_atomic(run_dir / "ops.parquet", ops.to_parquet(index=False))
    return ops, sorted({f"{spec.framework}: {doc['profile'].get('reason')}" for spec, doc in found
                        if doc["profile"].get("reason")})


def profiles(run_dir: Path, runs: list[RunSpec]) -> list[tuple[RunSpec, dict]]:
    """The profiling passes of `runs` that came back whole, from raw/ (those of an earlier session too)."""
    found = []
    for spec in runs:
        try:
            doc = json.loads(raw_path(run_dir, spec).read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(doc, dict) and doc.get("status") == "ok" and not malformed(doc, profile=True):
            found.append((spec, doc))
    return found


def ops_table(records: list[tuple[RunSpec, dict]], *, run_id: str) -> pd.DataFrame:
    """ops.parquet: one row per operator of each profiling pass (board, framework, mode, op type, op name, its mean
    time per inference, its share of the pass's total, its rank by time)."""
    rows = []
    for spec, doc in records:
        ops = doc["profile"]["ops"]
        total = sum(op["time_ns"] for op in ops) or 1.0
        ranked = sorted(range(len(ops)), key=lambda i: -ops[i]["time_ns"])
        rank = {i: r + 1 for r, i in enumerate(ranked)}
        rows += [{"run_id": run_id, "cell": spec.cell, "board": spec.board, "framework": spec.framework,
                  "model": spec.model, "mode": spec.mode, "threads": spec.threads, "batch": spec.batch,
                  "op_type": op["op_type"], "op_name": op["op_name"], "time_ms": op["time_ns"] / 1e6,
                  "share": op["time_ns"] / total, "rank": rank[i]} for i, op in enumerate(ops)]
    return pd.DataFrame(rows, columns=OPS_COLUMNS)


def run_dirs() -> list[Path]:
    """Every results/<run-id>/ directory, oldest first."""
    return sorted(p.parent for p in root().glob("*/manifest.json"))


def latest_run() -> Path:
    """The newest results/<run-id>/ directory."""
    runs = run_dirs()
    if not runs:
        raise RunError(f"no benchmark results under {root()}", hint="run `invoke bench` first (or pass --results "
                                                                    "DIR where they are)")
    return runs[-1]


def find_run(run: str | Path | None, option: str = "--run") -> Path:
    """A run directory from what a user typed: a path, a run id under the results directory, or None (the newest)."""
    if run is None:
        return latest_run()
    path = Path(run)
    if not (path / "manifest.json").is_file() and (root() / str(run) / "manifest.json").is_file():
        path = root() / str(run)
    if not (path / "manifest.json").is_file():
        raise ConfigError(f"{option} {run}: no run directory of that name (with a manifest.json) here or under "
                          f"{root()}",
                          hint="pass a directory under results/, as printed by the bench (results go to ...), or "
                               "its run id")
    return path.resolve()


def history() -> pd.DataFrame:
    """Every run's results.parquet under the results directory, oldest first, in one DataFrame (run_id tells them
    apart)."""
    tables = [current_modes(pd.read_parquet(d / "results.parquet"), read_manifest(d))
              for d in run_dirs() if (d / "results.parquet").is_file()]
    tables = [t for t in tables if len(t)]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=COLUMNS)
