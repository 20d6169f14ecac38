"""edgeorch.bench.counters (board side): perf's interval lines, gated to the timed loop, per inference."""

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edgeorch.bench import counters

FIXTURES = Path(__file__).parent / "fixtures" / "perf"
MS = 1_000_000
INTERVAL = 100 * MS
T0 = 5_000_000_000_000  # perf's start on the monotonic clock, in the synthetic runs


def fixture_lines(name):
    return (FIXTURES / name).read_text().splitlines()


def parsed(name):
    return [row for row in map(counters.parse_line, fixture_lines(name)) if row]


def stamped(name, delay_ns=150_000):
    """A fixture's lines as a Counter keeps them, perf started at T0: each stamped at its interval's end."""
    lines = []
    for text in fixture_lines(name):
        row = counters.parse_line(text)
        lines.append((T0 + round(row[0] * 1e9) + delay_ns if row else T0, text))
    return lines


# parse_line ----------------------------------------------------------------------------------------------------


def test_comments_and_blank_lines_are_not_counts():
    assert counters.parse_line("# started on Mon") is None
    assert counters.parse_line("") is None
    assert counters.parse_line("   \n") is None
    assert counters.parse_line("Problems finding threads of monitor") is None


def test_a_captured_software_count_and_a_hardware_event_this_machine_lacks():
    rows = parsed("busy_all_events.csv")
    first = rows[:13]
    assert first[9] == (0.100203393, "task-clock", 50.07, "msec", None, 100.0)
    assert first[10] == (0.100203393, "page-faults", 4169.0, "", None, 100.0)
    assert first[0] == (0.100203393, "cycles", None, "", "<not supported>", 100.0)
    assert {r[1] for r in rows if r[4]} == set(counters.HARDWARE)  # no PMU here: every hardware event
    assert all(r[2] is not None for r in rows if r[1] in counters.SOFTWARE)


def test_a_captured_not_counted_interval_of_a_process_off_cpu():
    rows = parsed("sleep_task_clock_cycles.csv")
    assert rows[2] == (0.200682505, "task-clock", None, "msec", "<not counted>", 100.0)
    assert rows[-2] == (1.003372297, "task-clock", 0.07, "msec", None, 100.0)


def test_captured_user_space_only_events_keep_their_modifier():
    rows = parsed("user_only_paranoid2.csv")
    assert {r[1] for r in rows} == {f"{e}:u" for e in counters.EVENTS}
    assert counters.event_name("context-switches:u") == ("context-switches", "u")


def test_a_constructed_pmu_board_multiplexed_below_100_percent():
    rows = parsed("rpi4_cortex_a72_constructed.csv")
    cycles, instructions = rows[0], rows[1]
    assert cycles == (0.100213554, "cycles", 597180000.0, "", None, 100.0)
    assert instructions == (0.100213554, "instructions", 722587800.0, "", None, 75.02)
    assert min(r[5] for r in rows) == 62.49
    assert all(r[4] is None for r in rows)


def test_event_names_with_a_pmu_modifiers_or_terms():
    assert counters.event_name("cpu_core/cycles/") == ("cycles", "")
    assert counters.event_name("armv8_cortex_a76/instructions/u") == ("instructions", "u")
    assert counters.event_name("cycles:uk") == ("cycles", "ku")
    assert counters.event_name("L1-dcache-load-misses") == ("L1-dcache-load-misses", "")
    row = counters.parse_line("     1.000200000,123,,cpu/event=0x3c,umask=0x00/,4000,50.00,,")
    assert row == (1.0002, "cpu/event=0x3c,umask=0x00/", 123.0, "", None, 50.0)


# per_inference -------------------------------------------------------------------------------------------------


def synth(counts, delays_ns=None, n=10):
    """perf's lines for n intervals of 100 ms from T0: counts(i) -> {event: (value text, pct)}, each interval's
    lines stamped at its end plus a reading delay."""
    lines = []
    for i in range(n):
        t = (i + 1) * 0.1
        arrival = T0 + (i + 1) * INTERVAL + (delays_ns[i] if delays_ns else 200_000)
        for event, (value, pct) in counts(i).items():
            unit = "msec" if event.startswith("task-clock") else ""
            lines.append((arrival, f"{t:16.9f},{value},{unit},{event},{100 * MS},{pct:.2f},,"))
    return lines


def loop(first_ms, last_ms, every_ms=10):
    """Inferences every `every_ms` from T0 + first_ms, the last one ending at T0 + last_ms."""
    starts = [T0 + ms * MS for ms in range(first_ms, last_ms, every_ms)]
    return starts, [every_ms * MS] * len(starts)


EDGE = 10**9  # what the intervals astride the loop's edges count: any of it in the sums shows


def busy(i):
    inside = 2 <= i <= 7  # intervals 3..8, [200, 800] ms, lie within a loop over [150, 850] ms
    scale = 1 if inside else EDGE
    return {"task-clock": (f"{100 * scale:.2f}", 100), "cycles": (f"{10**6 * scale}", 100),
            "instructions": (f"{2 * 10**6 * scale}", 75.0 - i), "cache-misses": ("<not supported>", 100),
            "context-switches": (f"{3 * scale}", 100)}


def test_counts_per_inference_over_the_intervals_within_the_loop():
    starts, latencies = loop(150, 850)  # 70 inferences, 60 of them start in [200, 800) ms
    doc = counters.per_inference(synth(busy), starts, latencies, INTERVAL, perf_version="6.1.187")
    assert doc["method"] == counters.METHOD and doc["perf"] == "6.1.187" and doc["interval_ms"] == 100
    assert doc["intervals"] == 6 and doc["inferences"] == 60
    per = doc["per_inference"]
    assert per["task-clock"] == pytest.approx(10.0)  # 600 ms of CPU over 60 inferences
    assert per["cycles"] == pytest.approx(10**5)
    assert per["instructions"] == pytest.approx(2 * 10**5)
    assert per["context-switches"] == pytest.approx(0.3)
    assert doc["ipc"] == pytest.approx(2.0)
    assert doc["running_pct"]["instructions"] == 68.0  # the least of the gated intervals, 3 to 8
    assert doc["running_pct"]["cycles"] == 100.0
    assert doc["units"] == {"task-clock": "msec"}
    assert "reason" not in doc and "modifiers" not in doc
    json.dumps(doc)


def test_an_unsupported_event_is_named_with_its_reason_never_a_zero():
    starts, latencies = loop(150, 850)
    doc = counters.per_inference(synth(busy), starts, latencies, INTERVAL)
    assert "cache-misses" not in doc["per_inference"]
    assert doc["unavailable"] == {"cache-misses": "<not supported>"}
    assert "cache-misses" not in doc["running_pct"]


def test_reading_delays_do_not_move_the_intervals():
    starts, latencies = loop(150, 850)
    late = [200_000, 30 * MS, 150_000, 45 * MS, 300_000, 150_000, 80 * MS, 200_000, 5 * MS, 150_000]
    doc = counters.per_inference(synth(busy, late), starts, latencies, INTERVAL)
    assert doc["intervals"] == 6 and doc["inferences"] == 60
    assert doc["per_inference"]["task-clock"] == pytest.approx(10.0)


def test_no_ipc_without_cycles():
    starts, latencies = loop(150, 850)
    doc = counters.per_inference(synth(lambda i: {"instructions": ("100", 100), "cycles": ("<not supported>", 100)}),
                                 starts, latencies, INTERVAL)
    assert doc["ipc"] is None and doc["unavailable"] == {"cycles": "<not supported>"}


def test_a_loop_under_two_intervals_has_a_reason_and_no_counts():
    starts, latencies = loop(250, 400)  # 150 ms: no 100 ms interval fits wholly
    doc = counters.per_inference(synth(busy), starts, latencies, INTERVAL, perf_version="6.1.187")
    assert doc["per_inference"] == {}
    assert doc["reason"] == "the timed loop lasted 0.15 s, under two 100 ms intervals: give the run --min-time"
    assert set(doc["unavailable"]) == {"task-clock", "cycles", "instructions", "cache-misses", "context-switches"}
    assert set(doc["unavailable"].values()) == {doc["reason"]}
    assert doc["method"] == counters.METHOD


def test_a_loop_perf_missed_says_where_perf_counted():
    starts = [T0 + 5 * 10**9 + i * 10 * MS for i in range(100)]  # a second, long after perf's last interval
    doc = counters.per_inference(synth(busy), starts, [10 * MS] * 100, INTERVAL)
    assert doc["per_inference"] == {} and "no perf interval lay wholly within the timed loop" in doc["reason"]


def test_intervals_with_no_inference_start_have_a_reason():
    starts, latencies = [T0 + 50 * MS], [900 * MS]  # one long inference: nothing starts inside the intervals
    doc = counters.per_inference(synth(busy), starts, latencies, INTERVAL)
    assert doc["per_inference"] == {} and doc["reason"].startswith("no inference started within")


def test_no_lines_at_all_names_every_default_event():
    doc = counters.per_inference([], *loop(150, 850), INTERVAL)
    assert doc["per_inference"] == {} and set(doc["unavailable"]) == set(counters.EVENTS)


def test_unavailable_has_the_shape_of_a_run_without_counters():
    doc = counters.unavailable("perf is not installed")
    assert doc == {"method": counters.METHOD, "reason": "perf is not installed", "per_inference": {},
                   "unavailable": {e: "perf is not installed" for e in counters.EVENTS}}
    assert counters.unavailable("x", events=["cycles"])["unavailable"] == {"cycles": "x"}


def test_an_interval_off_cpu_counts_zero_but_one_multiplexed_out_is_unavailable():
    def counts(i):
        off = i == 4
        return {"task-clock": ("<not counted>" if off else "50.00", 100),  # run = enabled = 0: off every CPU
                "instructions": ("<not counted>" if off else "1000", 0 if off else 50)}  # enabled, never counted
    doc = counters.per_inference(synth(counts), *loop(150, 850), INTERVAL)
    assert doc["per_inference"]["task-clock"] == pytest.approx(5 * 50 / 60)
    assert doc["unavailable"] == {"instructions": "<not counted>"}


def test_an_event_never_counted_is_unavailable():
    doc = counters.per_inference(synth(lambda i: {"task-clock": ("<not counted>", 100), "page-faults": ("1", 100)}),
                                 *loop(150, 850), INTERVAL)
    assert doc["unavailable"] == {"task-clock": "<not counted>"}
    assert doc["per_inference"] == {"page-faults": pytest.approx(0.1)}


def test_a_hybrid_cpus_pmus_sum_into_one_event():
    def counts(i):
        return {"cpu_core/cycles/": ("900", 100), "cpu_atom/cycles/": ("<not counted>", 0),  # never on an E-core
                "cpu_core/instructions/": ("1500", 100), "cpu_atom/instructions/": ("300", 100)}
    doc = counters.per_inference(synth(counts), *loop(150, 850), INTERVAL)
    assert doc["per_inference"] == {"cycles": pytest.approx(90), "instructions": pytest.approx(180)}
    assert doc["ipc"] == pytest.approx(2.0)


def test_user_space_only_counts_keep_the_modifier_and_drop_kernel_side_zeros():
    starts, latencies = loop(-50, 600, every_ms=1)  # a loop over all the fixture's intervals
    doc = counters.per_inference(stamped("user_only_paranoid2.csv"), starts, latencies, INTERVAL)
    assert doc["intervals"] == 4
    assert doc["modifiers"]["task-clock"] == "u"
    assert set(doc["per_inference"]) == {"task-clock", "page-faults"}
    assert doc["unavailable"]["context-switches"].startswith("counted in user space only (:u)")
    assert doc["unavailable"]["cpu-migrations"].startswith("counted in user space only (:u)")
    assert doc["unavailable"]["cycles"] == "<not supported>"


def test_different_modifiers_of_one_event_stay_apart():
    doc = counters.per_inference(synth(lambda i: {"cycles:u": ("600", 100), "cycles:k": ("400", 100)}),
                                 *loop(150, 850), INTERVAL)
    assert doc["per_inference"] == {"cycles:u": pytest.approx(60), "cycles:k": pytest.approx(40)}


def test_every_event_unsupported_software_too_says_perf_counts_nothing():
    doc = counters.per_inference(synth(lambda i: {e: ("<not supported>", 100) for e in counters.EVENTS}),
                                 *loop(150, 850), INTERVAL)
    assert doc["per_inference"] == {} and "QEMU user-mode" in doc["reason"]
    assert doc["unavailable"] == {e: "<not supported>" for e in counters.EVENTS}


def test_the_constructed_pmu_board_per_inference():
    # perf counts from 0.15 ms after the loop's start to 501.5 ms: of the inferences every 25 ms, 25 ... 500 ms
    starts, latencies = loop(0, 600, every_ms=25)
    doc = counters.per_inference(stamped("rpi4_cortex_a72_constructed.csv"), starts, latencies, INTERVAL,
                                 perf_version="6.1")
    assert doc["intervals"] == 5 and doc["inferences"] == 20
    rows = parsed("rpi4_cortex_a72_constructed.csv")
    cycles = sum(r[2] for r in rows if r[1] == "cycles")
    assert doc["per_inference"]["cycles"] == pytest.approx(cycles / 20)
    assert doc["ipc"] == pytest.approx(sum(r[2] for r in rows if r[1] == "instructions") / cycles)
    assert doc["running_pct"]["L1-dcache-load-misses"] == 62.5
    assert doc["unavailable"] == {} and len(doc["per_inference"]) == len(counters.EVENTS)
    assert doc["per_inference"]["cpu-migrations"] == pytest.approx(2 / 20)  # a counted 0 is a 0


# find_perf -----------------------------------------------------------------------------------------------------


def script(path, body):
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


WRAPPER = 'echo "WARNING: perf not found for kernel 6.1.0-99" >&2; exit 1'


def test_a_failing_wrapper_gives_way_to_the_newest_versioned_perf(tmp_path, monkeypatch):
    bin_dir, tools = tmp_path / "bin", tmp_path / "tools"
    bin_dir.mkdir(), tools.mkdir()
    script(bin_dir / "perf", WRAPPER)
    script(tools / "perf_5.10", 'echo "perf version 5.10.0"')
    newest = script(tools / "perf_6.1", 'echo "perf version 6.1.27"')
    script(tools / "perf_6.12", "exit 1")  # newer, but does not run
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(counters, "PERF_GLOBS", (str(tools / "perf_*"),))
    assert counters.find_perf() == ([str(newest)], "6.1.27", None)


def test_ubuntu_linux_tools_directories_sort_by_version(tmp_path, monkeypatch):
    for release in ("5.15.0-91-generic", "5.15.0-101-generic", "5.4.0-150-generic"):
        (tmp_path / release).mkdir()
        script(tmp_path / release / "perf", f'echo "perf version {release}"')
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    monkeypatch.setattr(counters, "PERF_GLOBS", (str(tmp_path / "*" / "perf"),))
    assert counters.find_perf()[1] == "5.15.0-101-generic"


def test_no_perf_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(counters, "PERF_GLOBS", (str(tmp_path / "perf_*"),))
    argv, version, reason = counters.find_perf()
    assert argv is None and version is None
    assert reason.startswith("perf is not installed on the board") and "sudo apt install linux-perf" in reason


def test_only_a_failing_wrapper_says_what_it_said(tmp_path, monkeypatch):
    script(tmp_path / "perf", WRAPPER)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(counters, "PERF_GLOBS", ())
    argv, _, reason = counters.find_perf()
    assert argv is None and "perf not found for kernel 6.1.0-99" in reason and "linux-tools-" in reason


# Counter without a working perf --------------------------------------------------------------------------------


def test_a_counter_without_perf_starts_and_stops_cleanly(monkeypatch):
    monkeypatch.setattr(counters, "find_perf", lambda: (None, None, "perf is not installed on the board (...)"))
    with counters.Counter(os.getpid()) as counter:
        pass
    counter.stop()  # twice is fine
    assert counter.lines == [] and counter.failure() == "perf is not installed on the board (...)"
    assert counter.result([1], [1])["reason"] == "perf is not installed on the board (...)"


def test_a_perf_that_exits_at_once_leaves_its_words(tmp_path):
    fake = script(tmp_path / "perf", 'echo "Error: The sys_perf_event_open() syscall returned with 38" >&2; exit 1')
    counter = counters.Counter(os.getpid(), perf=[str(fake)]).start()
    t = time.monotonic()
    while counter._proc.poll() is None and time.monotonic() - t < 5:  # gone by itself, not by stop()'s SIGINT
        time.sleep(0.01)
    counter.stop()
    assert time.monotonic() - t < 5
    assert counter.returncode == 1 and "syscall returned with 38" in counter.stderr
    assert "syscall returned with 38" in counter.failure()


def test_a_perf_that_cannot_be_run_is_a_failure_not_an_exception(tmp_path):
    counter = counters.Counter(os.getpid(), perf=[str(tmp_path / "missing")]).start()
    counter.stop()
    assert counter.failure().startswith("perf could not be started")


def test_a_perf_that_does_not_end_on_sigint_is_killed(tmp_path):
    stubborn = script(tmp_path / "perf", "trap '' INT; exec sleep 30")  # exec: the kill reaches it
    counter = counters.Counter(os.getpid(), perf=[str(stubborn)]).start()
    time.sleep(0.2)
    t = time.monotonic()
    counter.stop(timeout=0.5)
    assert time.monotonic() - t < 5 and counter.returncode is not None


def test_perfs_complaints_become_reasons():
    gone = (FIXTURES / "stderr_no_such_pid.txt").read_text()
    denied = (FIXTURES / "stderr_no_permission.txt").read_text()
    assert counters._explain(gone, 234, 4242, 100) == "perf could not attach: process 4242 was gone"
    assert counters._explain(denied, 255, 4242, 100).startswith("perf has no permission to count process 4242")
    assert counters._explain("", 0, 4242, 100).endswith("the run ended within its first 100 ms interval")
    assert counters._explain("", -2, 4242, 100).endswith("it was stopped within its first 100 ms interval")


# Counter with this machine's perf ------------------------------------------------------------------------------


CHILD = textwrap.dedent("""
    import json, time
    time.sleep(0.3)  # perf attaches meanwhile
    starts, latencies = [], []
    end = time.monotonic_ns() + 1_500_000_000
    while time.monotonic_ns() < end:
        start = time.monotonic_ns()
        while time.monotonic_ns() - start < 10_000_000:  # an inference: 10 ms of busy CPU
            pass
        starts.append(start)
        latencies.append(time.monotonic_ns() - start)
    print(json.dumps({"starts_ns": starts, "latencies_ns": latencies}))
""")


@pytest.fixture(scope="module")
def perf():
    argv, version, reason = counters.find_perf()
    if argv is None:
        pytest.skip(f"no perf here: {reason}")
    return argv, version


def test_a_real_busy_process_counted_from_outside(perf):
    argv, version = perf
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE)
    counter = counters.Counter(child.pid, perf=argv, version=version).start()
    try:
        out, _ = child.communicate(timeout=30)
    finally:
        counter.stop()
    if counter.failure():
        pytest.skip(f"perf cannot attach here: {counter.failure()}")
    timing = json.loads(out)

    # perf flushes each interval as it prints it: the lines arrive on the pipe about an interval apart
    first = {}  # each interval's first line's arrival
    for stamp, text in counter.lines:
        row = counters.parse_line(text)
        if row:
            first.setdefault(row[0], stamp)
    arrivals = sorted(first.values())
    gaps = sorted(b - a for a, b in zip(arrivals, arrivals[1:]))
    assert len(arrivals) >= 10 and 70 * MS < gaps[len(gaps) // 2] < 130 * MS

    doc = counter.result(timing["starts_ns"], timing["latencies_ns"])
    assert doc["perf"] == version and doc["intervals"] >= 10
    # a busy process uses about 100 ms of CPU per 100 ms interval, and 10 ms per 10 ms inference
    clock = doc["per_inference"]["task-clock"]
    assert 3 < clock < 12
    assert 30 < clock * doc["inferences"] / doc["intervals"] < 120
    for event in counters.HARDWARE:  # counted (a machine with a PMU) or named with perf's reason, never a zero
        if event in doc["per_inference"]:
            assert doc["per_inference"][event] > 0
        else:
            assert doc["unavailable"][event] in ("<not supported>", "<not counted>")
    assert set(doc["per_inference"]) | set(doc["unavailable"]) == set(counters.EVENTS)


def test_attaching_to_a_process_that_is_gone_fails_cleanly(perf):
    argv, version = perf
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    counter = counters.Counter(dead.pid, perf=argv, version=version).start()
    t = time.monotonic()
    time.sleep(0.3)
    counter.stop()
    assert time.monotonic() - t < 6
    assert counter.lines == [] or counter.failure() is None  # a recycled pid would be counted: no error then
    if not counter.lines:
        assert counter.returncode != 0 and counter.stderr.strip()
        assert counter.failure() == f"perf could not attach: process {dead.pid} was gone"
        assert counter.result([1], [1])["per_inference"] == {}
