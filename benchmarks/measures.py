"""What the watcher's extras cost the measured loop, side by side in one run: the same child (an ONNX Runtime
inference of a small convolutional model, or a numpy loop without ONNX Runtime) run under the watcher plain, with
perf attached (--counters) and with a power meter sampled (--energy, a command run 10 times a second in the
on-windows), interleaved and rotated (ABC BCA CAB ...) so drift falls on all alike. Prints each one's median latency
over the plain one's, with the spread of those ratios over the rounds.

    .venv/bin/python benchmarks/measures.py [--rounds N] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

CHILD = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    try:
        import onnx, onnxruntime as ort
        from onnx import helper, TensorProto, numpy_helper
        w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 3, 3, 3)).astype("float32"), "w")
        g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
                               helper.make_node("Relu", ["c"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
        o = ort.SessionOptions()
        o.intra_op_num_threads = 1  # one core for the model: the other is the watcher's, perf's and the meter's
        s = ort.InferenceSession(m.SerializeToString(), o, providers=["CPUExecutionProvider"])
        x = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype("float32")
        infer = lambda: s.run(None, {"x": x})
    except ImportError:
        a = np.random.default_rng(0).standard_normal((96, 96))
        infer = lambda: a @ a
    starts, latencies = [], []
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        starts.append(time.monotonic_ns())
        t = time.perf_counter_ns()
        infer()
        latencies.append(time.perf_counter_ns() - t)
    print(json.dumps({"schema": "x", "status": "ok", "timing": {"latencies_ns": latencies, "starts_ns": starts}}))
""")

METER = "import sys; print(2.5)"


def run(child: Path, seconds: float, extra: list[str]) -> dict:
    r = subprocess.run([sys.executable, "-m", "edgeorch.bench.watch", *extra, "--", sys.executable, str(child),
                        str(seconds)], capture_output=True, text=True, timeout=120 + seconds, check=True)
    return json.loads(r.stdout)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--seconds", type=float, default=3.0)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        child, meter = Path(tmp) / "child.py", Path(tmp) / "meter.py"
        child.write_text(CHILD)
        meter.write_text(METER)
        arms = {"plain": [], "counters": ["--counters"],
                "energy": ["--energy", "--idle", "0.5", "--power-meter", json.dumps([sys.executable, str(meter)])]}
        medians = {arm: [] for arm in arms}
        notes = {}
        names = list(arms)
        for i in range(args.rounds):
            for arm in names[i % 3:] + names[:i % 3]:  # each arm first as often: the order's drift falls on all
                extra = arms[arm]
                doc = run(child, args.seconds, extra)
                medians[arm].append(float(np.median(doc["timing"]["latencies_ns"])))
                notes[arm] = (doc.get("counters") or {}).get("reason") or (doc.get("energy") or {}).get("reason")
    print(f"{args.rounds} rounds of {args.seconds:g} s per arm, interleaved; median latency of each run")
    print(f"{'arm':>9} | {'median µs':>9} | {'ratio to plain':>14} | {'min..max over rounds':>21}")
    plain = np.asarray(medians["plain"])
    for arm, values in medians.items():
        ratios = np.asarray(values) / plain
        print(f"{arm:>9} | {np.median(values) / 1e3:9.1f} | {np.median(ratios):14.4f} | "
              f"{ratios.min():9.4f} .. {ratios.max():9.4f}" + (f"   ({notes[arm]})" if notes.get(arm) else ""))


if __name__ == "__main__":
    main()
