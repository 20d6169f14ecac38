"""Results: keep every answer untouched, validate it, normalize runs into pandas tables."""

from __future__ import annotations

import datetime
import json
import os
import secrets
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from . import stats
from .bench import RESULT_SCHEMA
from .cache import ROOT
from .errors import BoardError, RunError
from .plan import RunSpec

RESULTS = ROOT / "results"

# The normalized table: one row per run. Golden tests pin these names and their order.
COLUMNS = [
    "run_id", "board", "arch", "machine", "framework", "framework_version", "runtime", "model",
    "model_sha256", "mode", "arm", "pair", "position", "attempts", "iterations", "warmup", "threads", "batch",
    "input_shapes", "precision",
    "framework_options", "p50_ms", "p90_ms",
    "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "throughput_ips", "load_ms",
    "first_inference_ms", "cpu_percent", "peak_rss_mb", "max_temp_c", "throttled",
    "throttle_evidence", "sampler_cost", "governor", "cpu_model", "cores", "kernel", "os", "python", "numpy",
    "image_id",
    "bench_sha256", "started_at", "max_abs_diff", "correlation", "top1", "top1_ref", "agrees",
]


def new_run_dir(root: Path = RESULTS) -> Path:
    """A fresh results/<run-id>/ directory; run ids sort by time."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = root / f"{stamp}-{secrets.token_hex(2)}"
    (path / "raw").mkdir(parents=True)
    return path


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
        raise RunError(f"board {board}: the {what} failed ({err.get('kind', 'unknown')}, exit "
                       f"{answer.exit_code}): {err.get('message', 'no message')}",
                       hint="fix the model or arguments named above" if err.get("kind") in ("model", "args")
                       else "give runs more time (--timeout SECONDS), or check whether the board hangs"
                       if err.get("kind") == "timeout" else "see the message above; the board's stderr is kept under "
                                                            "results/")
    return doc


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write `path` so that it is whole or absent, whenever the writer is killed (a temporary, then a rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def raw_path(run_dir: Path, spec: RunSpec) -> Path:
    return run_dir / "raw" / f"{spec.key}.json"


def save_raw(run_dir: Path, spec: RunSpec, answer) -> Path:
    """Store the answer exactly as it came back (stderr beside it) before anything reads it."""
    path = raw_path(run_dir, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    if answer.stderr.strip():
        write_atomic(path.with_suffix(".stderr.txt"), answer.stderr)
    write_atomic(path, answer.stdout)
    return path


_manifest_lock = threading.Lock()  # boards run side by side, and each updates the manifest after every run


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
            if not isinstance(doc, dict) or doc.get("status") != "ok" or "timing" not in doc:
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


def normalize(records: list[tuple[RunSpec, dict]], *, run_id: str, arch_of: dict[str, str],
              reference: np.ndarray | None = None, attempts: dict[str, int] | None = None
              ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, samples): one row per run with latency statistics, and one row per iteration.

    With a `reference` output, each run's last output is compared with it (agreement columns).
    """
    from .report import agreement

    attempts = attempts or {}  # run key -> attempts it took (a retried run is marked, never mixed in silently)
    rows, samples = [], []
    for spec, doc in records:
        check = {"max_abs_diff": None, "correlation": None, "top1": None, "top1_ref": None, "agrees": None}
        if reference is not None and doc.get("outputs"):
            out = doc["outputs"][0]
            output = np.asarray(out["values"], dtype=np.float64).reshape(out["shape"])
            found = agreement(reference, output, precision=precision(doc))
            check = {key: found[key] for key in ("max_abs_diff", "correlation", "top1", "top1_ref")}
            check["agrees"] = found["agree"]
        lat_ns = np.asarray(doc["timing"]["latencies_ns"], dtype=np.int64)
        ms = lat_ns / 1e6
        facts, fw, params, sensors = doc["facts"], doc["framework"], doc["params"], doc.get("sensors") or {}
        board = spec.board
        rows.append({
            "run_id": run_id, "board": board, "arch": arch_of.get(board),
            "machine": facts["machine"], "framework": fw["name"], "framework_version": fw["version"],
            "runtime": fw.get("runtime"), "model": spec.model, "model_sha256": doc["model"]["sha256"],
            "mode": doc["run"]["mode"], "arm": spec.arm or spec.mode, "pair": spec.pair, "position": spec.position,
            "attempts": attempts.get(spec.key, 1),
            "iterations": len(ms),
            "warmup": params["warmup"], "threads": params["threads"],
            "p50_ms": float(np.percentile(ms, 50)), "p90_ms": _quantile(ms, 0.90), "p99_ms": _quantile(ms, 0.99),
            "mean_ms": float(ms.mean()),
            "std_ms": float(ms.std(ddof=1)) if len(ms) > 1 else 0.0,
            "min_ms": float(ms.min()), "max_ms": float(ms.max()),
            "batch": doc["model"].get("batch", 1), "precision": precision(doc),
            # what each input was fed, as JSON text: {"input": [1, 3, 224, 224]}
            "input_shapes": json.dumps({i["name"]: i["shape"] for i in doc["model"].get("inputs") or []}),
            "framework_options": json.dumps(fw.get("options") or {}, sort_keys=True),
            "throughput_ips": float(doc["model"].get("batch", 1) * len(ms) / (doc["timing"]["wall_ns"] / 1e9)),
            "load_ms": doc["timing"]["load_ns"] / 1e6,
            "first_inference_ms": doc["timing"]["first_inference_ns"] / 1e6,
            "cpu_percent": doc["resources"]["cpu_percent"],
            "peak_rss_mb": doc["resources"]["peak_rss_bytes"] / 2**20,
            "max_temp_c": sensors.get("max_temp_c"), "throttled": sensors.get("throttled"),
            "throttle_evidence": sensors.get("throttle_evidence"), "sampler_cost": sensors.get("sampler_cost"),
            "governor": facts.get("governor"),
            "cpu_model": facts["cpu_model"], "cores": facts["cores"], "kernel": facts["kernel"],
            "os": facts["os"], "python": facts["python"], "numpy": facts["numpy"],
            "image_id": doc["run"].get("image_id"), "bench_sha256": doc["bench"]["sha256"],
            "started_at": doc["started_at"], **check,
        })
        samples.append(pd.DataFrame({"board": board, "framework": fw["name"], "model": spec.model,
                                     "mode": spec.mode, "arm": spec.arm or spec.mode, "pair": spec.pair,
                                     "iteration": np.arange(len(lat_ns)), "latency_ns": lat_ns}))
    runs = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("throttled", "agrees"):
        runs[col] = runs[col].astype("boolean")
    for col in ("top1", "top1_ref"):
        runs[col] = runs[col].astype("Int64")
    cols = ["max_abs_diff", "correlation", "p90_ms", "p99_ms", "sampler_cost"]
    runs[cols] = runs[cols].astype("float64")
    long = pd.concat(samples, ignore_index=True) if samples else pd.DataFrame(
        columns=["board", "framework", "model", "mode", "arm", "pair", "iteration", "latency_ns"])
    return runs, long


def _quantile(ms: np.ndarray, q: float) -> float | None:
    """The q-quantile, only from enough samples that the largest one bounds it (459 for p99, 44 for p90)."""
    return float(np.percentile(ms, 100 * q)) if len(ms) >= stats.min_samples(q) else None


def precision(doc: dict) -> str:
    """fp32, fp16 or int8: the framework's precision option if it has one, else the model's input type."""
    chosen = (doc["framework"].get("options") or {}).get("precision")
    if chosen:
        return chosen
    dtype = ((doc["model"].get("inputs") or [{}])[0]).get("dtype", "float32")
    return {"int8": "int8", "uint8": "int8", "float16": "fp16"}.get(dtype, "fp32")


def write_tables(run_dir: Path, runs: pd.DataFrame, samples: pd.DataFrame) -> None:
    """results.csv and results.parquet (one row per run), samples.parquet (one row per iteration), each whole."""
    write_atomic(run_dir / "results.csv", runs.to_csv(index=False))
    write_atomic(run_dir / "results.parquet", runs.to_parquet(index=False))
    write_atomic(run_dir / "samples.parquet", samples.to_parquet(index=False))


def latest_run(root: Path = RESULTS) -> Path:
    """The newest results/<run-id>/ directory."""
    runs = sorted(p for p in root.glob("*/manifest.json"))
    if not runs:
        raise RunError(f"no benchmark results under {root}", hint="run `invoke bench` first")
    return runs[-1].parent
