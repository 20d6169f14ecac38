"""The benchmark entrypoint: `python -m edgeorch_bench ...` prints one JSON document on stdout.

stdout carries that document and nothing else (stray output of native libraries is sent to
stderr); the exit code says whether the run succeeded.
"""

import argparse
import contextlib
import datetime
import json
import os
import resource
import sys
import time
from pathlib import Path

from . import (
    EXIT_ARGS,
    EXIT_FRAMEWORK,
    EXIT_MODEL,
    EXIT_OK,
    EXIT_RUNTIME,
    PROBE_SCHEMA,
    RESULT_SCHEMA,
    bundle_digest,
    file_sha256,
    probes,
    samples,
    signature,
)


class Failure(Exception):
    def __init__(self, kind, message, code):
        super().__init__(message)
        self.kind, self.message, self.code = kind, message, code


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise Failure("args", message, EXIT_ARGS)

    def exit(self, status=0, message=None):  # --help must not end the process outside the protocol
        raise Failure("args", message or "usage printed on stderr (--help)", EXIT_ARGS)


def _parser():
    p = _Parser(prog="edgeorch_bench", description=__doc__)
    p.add_argument("--framework", required=True)
    p.add_argument("--mode", required=True, choices=["docker", "bare", "native"])
    p.add_argument("--probe", action="store_true", help="print versions and board facts, run nothing")
    p.add_argument("--model", help="model file")
    p.add_argument("--model-sha256", help="expected sha256 of the model file")
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--min-time", type=float, default=0.0,
                   help="time inferences for at least this many seconds as well as --iterations")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="0: the framework's default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-interval", type=float, default=0.5)
    p.add_argument("--image-id", default=None)
    p.add_argument("--run-id", default=None)
    p.add_argument("--input", action="append", default=[], metavar="[NAME=]FILE",
                   help=".npy file fed to input NAME instead of seeded data (repeatable); a bare FILE feeds the "
                        "first input")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=DIMS",
                   help="the shape fed to input NAME, e.g. input=1x3x224x224 (repeatable); needed for every "
                        "input with dynamic dimensions")
    p.add_argument("--cache-dir", help="where a framework keeps what it compiles from the model (TensorRT's "
                                       "engines); else beside the model")
    p.add_argument("--outputs", action="store_true", help="include the last inference's outputs")
    p.add_argument("--raw-samples", action="store_true",
                   help="after the document's line, every timed inference's start and latency in binary (for the "
                        "watcher: edgeorch_bench.samples.write_raw)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="a profiling pass instead of a timed run: per-operator times over N inferences")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a framework option, e.g. xnnpack=off (tflite) or device=cpu (pytorch)")
    return p


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _adapter(name, options, cache_dir=None):
    from . import adapters
    if name not in adapters.ADAPTERS:
        raise Failure("args", f"unknown framework {name!r}; this bundle has {adapters.names()}", EXIT_ARGS)
    if any("=" not in o for o in options):
        raise Failure("args", f"--option takes KEY=VALUE, got {options}", EXIT_ARGS)
    cls = adapters.get(name)
    kwargs = {"cache_dir": cache_dir} if cache_dir and getattr(cls, "uses_cache_dir", False) else {}
    try:
        return cls(dict(o.split("=", 1) for o in options), **kwargs)
    except adapters.FrameworkMissing as e:
        raise Failure("framework", str(e), EXIT_FRAMEWORK) from e
    except adapters.OptionError as e:
        raise Failure("args", f"{name}: {e}", EXIT_ARGS) from e


def _check_model(args):
    if not args.model:
        raise Failure("args", "--model is required unless --probe is given", EXIT_ARGS)
    path = Path(args.model)
    if not path.is_file():
        raise Failure("model", f"model file {path} does not exist on this board", EXIT_MODEL)
    digest = file_sha256(path)  # in chunks: a VGG-16 must not add its 0.5 GB to the run's peak memory
    if args.model_sha256 and digest != args.model_sha256:
        raise Failure("model", f"model file {path} has sha256 {digest}, expected {args.model_sha256} "
                      "(corrupted or stale copy)", EXIT_MODEL)
    return {"path": str(path), "sha256": digest, "size_bytes": path.stat().st_size}


def _load(adapter, args, made_up):
    """Load the model and feed it its inputs: (model facts, load time in ns, memory so far). The inputs fed seeded
    data are added to `made_up` once fed, so that a failure from then on can name them."""
    from .adapters.base import ModelLoadError, arrays
    if args.iterations < 1 or args.warmup < 0 or args.min_time < 0 or args.profile < 0:
        raise Failure("args", "--iterations must be >= 1, --warmup, --min-time and --profile >= 0", EXIT_ARGS)
    try:
        shapes, files = signature.parse_shapes(args.input_shape), signature.parse_inputs(args.input)
    except signature.InputError as e:
        raise Failure("args", str(e), EXIT_ARGS) from e
    model = _check_model(args)
    memory = {"rss_before_load_bytes": probes.rss_bytes()}
    t = time.perf_counter_ns()
    try:
        # Loading includes fixing the input shapes: TFLite allocates for them, TensorRT builds its engine.
        adapter.load(model["path"], args.threads)
        inputs = signature.resolve(adapter.inputs(), shapes, files)
        adapter.reshape({i["name"]: tuple(i["shape"]) for i in inputs})
    except ModelLoadError as e:
        raise Failure("model", f"{model['path']} is not a model {adapter.name} can load: {e}", EXIT_MODEL) from e
    except signature.InputError as e:
        raise Failure("args", str(e), EXIT_ARGS) from e
    load_ns = time.perf_counter_ns() - t
    memory["rss_after_load_bytes"] = probes.rss_bytes()
    described = adapter.describe()
    extra = {i["name"]: i for i in described.get("inputs", [])}  # e.g. TFLite's quantization
    model.update(described, inputs=[{**extra.get(i["name"], {}), **{k: v for k, v in i.items() if k != "path"}}
                                    for i in inputs])
    try:
        data, seeded = arrays(adapter, inputs, args.seed)
        adapter.feed(data)
    except (signature.InputError, ModelLoadError) as e:
        raise Failure("args", str(e), EXIT_ARGS) from e
    made_up.extend(seeded)
    inputs = model.get("inputs") or [{}]
    model["batch"] = int((inputs[0].get("shape") or [1])[0] or 1)  # images per inference
    return model, load_ns, memory


def _profile(adapter, args, made_up):
    """The profiling pass: per-operator times over --profile inferences, after one untimed inference; no timed run."""
    from .adapters.base import NotProfiled
    model, _, _ = _load(adapter, args, made_up)
    adapter.infer()
    try:
        ops = adapter.profile(args.profile)
        found = {"inferences": args.profile, "ops": ops, "reason": None}
    except NotProfiled as e:
        found = {"inferences": 0, "ops": [], "reason": str(e)}
    return {"model": model, "profile": found}


def _measure(adapter, args, made_up):
    """The timed run: ((starts, latencies) of every timed inference, the document's measures)."""
    model, load_ns, memory = _load(adapter, args, made_up)
    # 0: the watcher samples from outside this process (edgeorch_bench.watch), as the orchestrator runs it
    sampler = probes.Sampler(args.sample_interval) if args.sample_interval > 0 else contextlib.nullcontext()
    with sampler:
        t = time.perf_counter_ns()
        adapter.infer()
        first_ns = time.perf_counter_ns() - t
        memory["rss_after_first_bytes"] = probes.rss_bytes()
        warmup = []
        for _ in range(args.warmup):
            t = time.perf_counter_ns()
            adapter.infer()
            warmup.append(time.perf_counter_ns() - t)
        recorder = samples.Recorder()
        reset = probes.reset_peak_rss()  # the peak of the timed phase alone, as LiteRT's benchmark reports it
        cpu0, wall0 = os.times(), time.perf_counter_ns()
        # a 1 ms model and a 2 s model both get a meaningful sample: enough inferences and enough time
        recorder.time(adapter.infer, args.iterations, wall0 + int(args.min_time * 1e9))
        wall_ns, cpu1 = time.perf_counter_ns() - wall0, os.times()
    cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    memory["peak_rss_timed_bytes"] = probes.peak_rss_bytes() if reset else None
    memory["samples_bytes"] = recorder.resident_bytes()  # the harness's part of that peak: 16 bytes an inference
    if args.mode == "docker":
        memory["cgroup_peak_bytes"], memory["cgroup_peak_source"] = probes.cgroup_memory_peak()
    else:
        memory["cgroup_peak_bytes"], memory["cgroup_peak_source"] = None, "bare metal: no cgroup of the run's own"
    starts, latencies = recorder.arrays()
    extra = {"outputs": [{"shape": list(o.shape), "dtype": o.dtype.name, "values": o.ravel().tolist()}
                         for o in adapter.outputs()]} if args.outputs else {}
    return (starts, latencies), {**extra,
        "model": model,
        "timing": {"load_ns": load_ns, "first_inference_ns": first_ns, "warmup_ns": warmup, "wall_ns": wall_ns,
                   **samples.summarize(starts, latencies)},
        "resources": {
            "cpu_time_s": round(cpu_s, 4),
            # Over 100 when the framework uses several cores.
            "cpu_percent": round(100 * cpu_s / (wall_ns / 1e9), 2),
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        },
        "memory": memory,
        "sensors": {"where": "process", "sources": sampler.sources(), "samples": sampler.samples,
                    **sampler.summary()} if args.sample_interval > 0 else {},
    }


def run(argv, raw=None):
    """Parse, measure, and return (document, exit code); never raises. With --raw-samples, every timed inference's
    (starts, latencies) is appended to the list `raw`."""
    doc = {"schema": PROBE_SCHEMA if "--probe" in argv else RESULT_SCHEMA, "status": "error",
           "error": None, "started_at": _now(), "bench": {"sha256": bundle_digest(Path(__file__).parent)}}
    made_up = []  # the inputs fed seeded data: a model given values it cannot take often fails deep inside
    try:
        args = _parser().parse_args(argv)
        doc["run"] = {"mode": args.mode, "run_id": args.run_id, "image_id": args.image_id}
        doc["facts"] = probes.facts()
        adapter = _adapter(args.framework, args.option, args.cache_dir)
        doc["framework"] = adapter.info(args.threads)
        if args.probe:  # with the framework imported: where each mode's libraries come from
            doc["facts"].update(executable=sys.executable, libraries=probes.libraries())
        else:
            doc["params"] = {"iterations": args.iterations, "min_time_s": args.min_time, "warmup": args.warmup,
                             "threads": args.threads, "seed": args.seed,
                             "sample_interval_s": args.sample_interval, "profile": args.profile}
            if args.profile:
                doc.update(_profile(adapter, args, made_up))
            else:
                every, measured = _measure(adapter, args, made_up)
                doc.update(measured)
                if args.raw_samples and raw is not None:
                    raw.append(every)
            doc["framework"] = adapter.info(args.threads)  # with what loading the model settled (threads, executor)
        doc["status"], code = "ok", EXIT_OK
    except Failure as e:
        doc["error"], code = {"kind": e.kind, "message": e.message}, e.code
    except Exception as e:  # a crash still answers in the protocol
        doc["error"], code = {"kind": "runtime", "message": f"{type(e).__name__}: {e}"}, EXIT_RUNTIME
    if doc["error"] and made_up:
        named = ", ".join(f"{i['name']!r} ({i['dtype']} {signature.format_shape(i['shape'])}, {i['range']})"
                          for i in made_up)
        doc["error"].update(made_up_inputs=made_up,
                            message=f"{doc['error']['message']}; inputs made up from seeded data: {named}")
    doc["finished_at"] = _now()
    return doc, code


def main():
    # Keep fd 1 for the JSON document alone: native libraries that print go to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    raw = []
    doc, code = run(sys.argv[1:], raw)
    out.write(json.dumps(doc).encode() + b"\n")
    for starts, latencies in raw:
        samples.write_raw(out, starts, latencies)
    out.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
