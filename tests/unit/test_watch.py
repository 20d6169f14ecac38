"""edgeorch.bench.watch (board side): sensors read from outside the measured process, and the sampler's own cost."""

import json
import subprocess
import sys
import textwrap

import pytest

from edgeorch.bench import watch

WINDOW = 2.0
SECOND = 1_000_000_000


def test_the_cost_compares_iterations_of_on_windows_with_those_of_off_windows():
    starts = [i * SECOND // 10 for i in range(80)]  # 8 s: windows on, off, on, off
    on = [int((s / SECOND) / WINDOW) % 2 == 0 for s in starts]
    latencies = [110 if w else 100 for w in on]
    assert watch.sampler_cost(latencies, starts, 0, WINDOW) == pytest.approx(0.10)
    assert watch.sampler_cost([100] * 80, starts, 0, WINDOW) == 0


def test_no_cost_without_enough_iterations_in_both_kinds_of_window():
    starts = [i * SECOND // 10 for i in range(15)]  # 1.5 s: all in the first on-window
    assert watch.sampler_cost([100] * 15, starts, 0, WINDOW) is None


CHILD = textwrap.dedent("""
    import json, os, sys, time
    starts, latencies = [], []
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        starts.append(time.monotonic_ns())
        t = time.perf_counter_ns()
        sum(range(2000))
        latencies.append(time.perf_counter_ns() - t)
    print(json.dumps({"schema": "x", "status": "ok", "pid": os.getpid(), "sensors": {},
                      "timing": {"latencies_ns": latencies, "starts_ns": starts}}))
""")


def run_watch(tmp_path, *argv):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return subprocess.run([sys.executable, "-m", "edgeorch.bench.watch", "--interval", "0.05", "--window", "0.2",
                           "--", sys.executable, str(script), *argv], capture_output=True, text=True, timeout=60)


def test_the_watcher_puts_its_samples_and_their_cost_into_the_childs_document(tmp_path):
    r = run_watch(tmp_path, "1.0")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    sensors = doc["sensors"]
    assert sensors["where"] == "host" and sensors["window_s"] == 0.2
    assert isinstance(sensors["max_freqs_mhz"], dict)  # the governor's limits, where the board has cpufreq
    assert len(sensors["samples"]) >= 3  # the first, the last, and some in the on-windows
    assert sensors["sampler_cost"] is not None and abs(sensors["sampler_cost"]) < 0.5
    assert {"max_temp_c", "throttled", "throttle_evidence"} <= set(sensors)
    assert doc["pid"] != 0 and doc["timing"]["latencies_ns"]


def test_a_child_that_does_not_answer_a_document_is_passed_on_untouched(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edgeorch.bench.watch", "--", sys.executable, "-c",
                        "import sys; print('not json'); sys.exit(3)"], capture_output=True, text=True, timeout=60)
    assert (r.stdout, r.returncode) == ("not json\n", 3)
