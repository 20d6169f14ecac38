"""Shared builders for unit tests: entrypoint result documents as a board would answer them."""

import itertools

import pytest

from edgeorch.bench import RESULT_SCHEMA, samples

START_NS = 5 * 10**12  # the board's monotonic clock when the timed loop began


def result_doc(latencies_ms, *, mode="docker", machine="aarch64", framework_version="2.14.0",
               wall_ns=None, max_temp_c=61.5, throttled=False, run_id="20250101T000000Z-abcd", listed=False):
    """A result document shaped like edgeorch.bench.__main__.run() writes one, its timing summarised; `listed`: as
    an edgeorch before summaries wrote it, every inference's start and latency listed."""
    latencies_ns = [round(ms * 1_000_000) for ms in latencies_ms]
    starts_ns = list(itertools.accumulate(latencies_ns[:-1], initial=START_NS))[:len(latencies_ns)]  # back to back
    timing = ({"latencies_ns": latencies_ns, "starts_ns": starts_ns} if listed
              else samples.summarize(starts_ns, latencies_ns))
    return {
        "schema": RESULT_SCHEMA, "status": "ok", "error": None,
        "started_at": "2025-01-01T00:00:00.000+00:00", "finished_at": "2025-01-01T00:00:09.000+00:00",
        "bench": {"sha256": "b" * 64},
        "run": {"mode": mode, "run_id": run_id, "image_id": "sha256:" + "1" * 64 if mode == "docker" else None},
        "facts": {"cpu_model": "Cortex-A72", "board_model": "Raspberry Pi 4 Model B Rev 1.4", "cores": 4,
                  "machine": machine, "bits": 64, "kernel": "6.1.0-rpi7-rpi-v8", "os": "Debian GNU/Linux 12",
                  "python": "3.11.2", "numpy": "1.24.2", "mem_total_bytes": 4 * 2**30,
                  "governor": "ondemand", "in_container": mode == "docker"},
        "framework": {"name": "tflite", "runtime": "tflite_runtime", "version": framework_version,
                      "threads": 0, "options": {"xnnpack": "default"}},
        "params": {"iterations": len(latencies_ns), "warmup": 5, "threads": 0, "seed": 0,
                   "sample_interval_s": 0.5},
        "model": {"path": "/opt/edgeorch/models/m.tflite", "sha256": "a" * 64, "size_bytes": 14_000_000,
                  "inputs": [{"name": "input", "shape": [1, 224, 224, 3], "dtype": "float32"}], "outputs": [],
                  "batch": 1},
        "timing": {"load_ns": 250_000_000, "first_inference_ns": 12_500_000, "warmup_ns": [1_000_000] * 5,
                   "wall_ns": sum(latencies_ns) if wall_ns is None else wall_ns,
                   **timing},
        "resources": {"cpu_time_s": 19.6, "cpu_percent": 392.0, "peak_rss_bytes": 150 * 2**20},
        "memory": {"rss_before_load_bytes": 40 * 2**20, "rss_after_load_bytes": 120 * 2**20,
                   "rss_after_first_bytes": 140 * 2**20, "peak_rss_timed_bytes": 147 * 2**20,
                   "samples_bytes": 2 * 2**20,
                   "cgroup_peak_bytes": 180 * 2**20 if mode == "docker" else None,
                   "cgroup_peak_source": "/sys/fs/cgroup/memory.peak" if mode == "docker" else "bare metal"},
        # as a Raspberry Pi 4 (Cortex-A72 PMU) answers: every event counted
        "counters": {"method": "perf stat -p, gated to the timed loop by its interval stamps", "perf": "6.1",
                     "interval_ms": 100, "intervals": 40, "inferences": 80,
                     "per_inference": {"cycles": 9.0e7, "instructions": 1.2e8, "cache-references": 4.0e7,
                                       "cache-misses": 1.5e6, "branch-instructions": 1.1e7, "branch-misses": 2.0e5,
                                       "L1-dcache-load-misses": 1.4e6, "dTLB-load-misses": 3.0e4,
                                       "iTLB-load-misses": 1.0e3, "task-clock": 48.0, "page-faults": 0.5,
                                       "context-switches": 2.0, "cpu-migrations": 0.1},
                     "unavailable": {}, "running_pct": {}, "ipc": 1.2e8 / 9.0e7},
        "energy": {"source": "meter:ina260", "rate_hz": 10.0, "samples": 40, "avg_power_w": 5.5,
                   "idle_power_w": 2.5, "energy_mj": 275.0, "energy_above_idle_mj": 150.0, "reason": None},
        # the watcher started a second before the timed loop; vcgencmd says throttled at its second sample
        "sensors": {"where": "host", "sources": ["thermal:cpu-thermal:thermal_zone0"], "t0_ns": START_NS - 10**9,
                    "samples": [{"t_s": 0.5, "temps_c": {"cpu-thermal": 55.0}, "freqs_mhz": {"cpu0": 1500.0,
                                                                                            "cpu1": 600.0},
                                 "throttled": "0x0"},
                                {"t_s": 1.5, "temps_c": {"cpu-thermal": max_temp_c}, "freqs_mhz": {},
                                 "throttled": "0x20002" if throttled else "0x0"}],
                    "window_s": 2.0, "sampler_cost": 0.001,
                    "max_temp_c": max_temp_c, "throttled": throttled,
                    "throttle_evidence": "max 61.5 C vs passive trip point 80.0 C"},
    }


@pytest.fixture
def make_doc():
    return result_doc
