"""edgeorch.bench.watch (board side): sensors read from outside the measured process, and the sampler's own cost."""

import base64
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import psutil
import pytest

from edgeorch.bench import SAMPLES_MARK, watch

WINDOW = 2.0
SECOND = 1_000_000_000


def test_the_cost_compares_each_on_window_with_the_off_windows_beside_it():
    starts = [i * SECOND // 10 for i in range(100)]  # 10 s: windows on, off, on, off, on
    on = [int((s / SECOND) / WINDOW) % 2 == 0 for s in starts]
    assert watch.sampler_cost([110 if w else 100 for w in on], starts, 0, WINDOW) == pytest.approx(0.10)
    assert watch.sampler_cost([100] * 100, starts, 0, WINDOW) == 0


def test_a_drift_through_the_run_is_not_taken_for_the_samplers_cost():
    starts = [i * SECOND // 10 for i in range(100)]
    warming = [200 - i for i in range(100)]  # every iteration faster than the one before
    assert watch.sampler_cost(warming, starts, 0, WINDOW) == pytest.approx(0, abs=0.005)


def test_no_cost_without_an_on_window_between_two_off_windows():
    starts = [i * SECOND // 10 for i in range(35)]  # 3.5 s: on, then off, then a bit of on
    assert watch.sampler_cost([100] * 35, starts, 0, WINDOW) is None


# a run as the entrypoint answers with --raw-samples: its document's line, then every sample in binary
CHILD = textwrap.dedent("""
    import json, os, sys, time
    from edgeorch.bench import samples
    recorder, cpu = samples.Recorder(), time.process_time()
    recorder.time(lambda: sum(range(2000)), 1, time.perf_counter_ns() + int(float(sys.argv[1]) * 1e9))
    starts, latencies = recorder.arrays()
    out = sys.stdout.buffer
    out.write(json.dumps({"schema": "x", "status": "ok", "pid": os.getpid(), "sensors": {},
                          "timing": {"cpu_time_s": time.process_time() - cpu,
                                     **samples.summarize(starts, latencies)}}).encode() + b"\\n")
    samples.write_raw(out, starts, latencies)
""")


def run_watch(tmp_path, seconds, *options):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return subprocess.run([sys.executable, "-m", "edgeorch.bench.watch", "--interval", "0.05", "--window", "0.2",
                           *options, "--", sys.executable, str(script), seconds], capture_output=True, text=True,
                          timeout=60)


def test_the_watcher_puts_its_samples_and_their_cost_into_the_childs_document(tmp_path):
    r = run_watch(tmp_path, "1.0")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    sensors = doc["sensors"]
    assert sensors["where"] == "host" and sensors["window_s"] == 0.2
    assert isinstance(sensors["max_freqs_mhz"], dict)  # the governor's limits, where the board has cpufreq
    assert len(sensors["samples"]) >= 3  # the first, the last, and some in the on-windows
    # measured (its arithmetic is the tests above'): a busy machine's noise can make it anything above -100%
    assert sensors["sampler_cost"] is not None and -1 < sensors["sampler_cost"] < math.inf
    assert {"max_temp_c", "throttled", "throttle_evidence"} <= set(sensors)
    assert doc["pid"] != 0 and doc["timing"]["count"] > 0
    assert r.stdout.count("\n") == 1  # the document alone: every sample stayed on the board


def test_keep_samples_passes_every_sample_on_after_the_document(tmp_path):
    r = run_watch(tmp_path, "0.5", "--keep-samples")
    assert r.returncode == 0, r.stderr
    line, kept = r.stdout.splitlines()
    timing = json.loads(line)["timing"]
    assert kept.startswith(SAMPLES_MARK)
    both = np.frombuffer(base64.b64decode(kept.removeprefix(SAMPLES_MARK)), dtype="<i8").reshape(2, -1)
    sub = timing["subsample"]
    assert both.shape == (2, timing["count"])
    assert both[0][sub["index"]].tolist() == sub["starts_ns"] and both[1][sub["index"]].tolist() == sub["latencies_ns"]


def test_the_watcher_counts_the_childs_inferences_with_perf_and_integrates_a_meters_watts(tmp_path):
    from edgeorch.bench import counters
    meter = tmp_path / "meter.py"
    meter.write_text("print('2.5 W')")
    r = run_watch(tmp_path, "1.2", "--counters", "--energy", "--idle", "0.3",
                  "--power-meter", json.dumps([sys.executable, str(meter)]))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    energy, timing = doc["energy"], doc["timing"]
    sub = timing["subsample"]  # the first and the last inference among them
    timed_s = (sub["starts_ns"][-1] + sub["latencies_ns"][-1] - sub["starts_ns"][0]) / 1e9
    assert energy["source"].startswith(f"meter:{os.path.basename(sys.executable)}#")
    assert energy["avg_power_w"] == energy["idle_power_w"] == 2.5
    assert energy["energy_mj"] == pytest.approx(2.5 * timed_s / timing["count"] * 1000, rel=1e-6)
    found = doc["counters"]
    if counters.find_perf()[0] is None:
        assert found["per_inference"] == {} and "perf" in found["reason"]
    else:  # task-clock per inference of a busy single thread: about its CPU time per iteration (not its latency,
        # which a busy machine stretches while the thread waits for a core)
        cpu_ms = timing["cpu_time_s"] * 1e3 / timing["count"]
        assert 0.3 < found["per_inference"]["task-clock"] / cpu_ms < 3
        assert found["intervals"] >= 5 and 0 < found["inferences"] <= timing["count"]


def test_a_child_that_does_not_answer_a_document_is_passed_on_untouched(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edgeorch.bench.watch", "--", sys.executable, "-c",
                        "import sys; print('not json'); sys.exit(3)"], capture_output=True, text=True, timeout=60)
    assert (r.stdout, r.returncode) == ("not json\n", 3)


def _alive(marker):
    return subprocess.run(["pgrep", "-f", f"[s]leep {marker}"], capture_output=True).returncode == 0


def test_a_run_past_its_deadline_is_killed_with_everything_it_started_and_answers_a_timeout(tmp_path):
    # the child starts a grandchild: a kill of the child alone would leave it running on the board
    r = subprocess.run([sys.executable, "-m", "edgeorch.bench.watch", "--tag", "edgeorch-run-test", "--deadline", "1",
                        "--", "sh", "-c", "sleep 97.5 & sleep 97.5; echo never"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 124
    doc = json.loads(r.stdout)
    assert doc["status"] == "error" and doc["error"]["kind"] == "timeout" and "after 1 s" in doc["error"]["message"]
    assert not _alive("97.5")


def test_sigterm_from_the_orchestrator_ends_the_run_it_watches(tmp_path):
    watcher = subprocess.Popen([sys.executable, "-m", "edgeorch.bench.watch", "--tag", "edgeorch-run-t2", "--",
                                "sh", "-c", "sleep 98.5"], stdout=subprocess.PIPE, text=True)
    for _ in range(200):  # until the watcher has started its run
        if psutil.Process(watcher.pid).children():
            break
        time.sleep(0.05)
    watcher.terminate()
    out, _ = watcher.communicate(timeout=30)
    assert watcher.returncode == 124 and "orchestrator" in json.loads(out)["error"]["message"]
    assert not _alive("98.5")


def test_a_sigterm_while_the_run_is_being_started_ends_it_once_it_has_started():
    # the orchestrator's SIGTERM can land inside Popen, after the fork and before the pid is known: it is held
    term = watch._Term()
    term(signal.SIGTERM, None)
    with pytest.raises(watch._Stopped):
        term.release()
    with pytest.raises(watch._Stopped):
        term(signal.SIGTERM, None)
