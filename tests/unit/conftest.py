"""Shared builders for unit tests: entrypoint result documents as a board would answer them."""

import pytest

from edgeorch.bench import RESULT_SCHEMA


def result_doc(latencies_ms, *, mode="docker", machine="aarch64", framework_version="2.14.0",
               wall_ns=None, max_temp_c=61.5, throttled=False, run_id="20250101T000000Z-abcd"):
    """An `edgeorch.result/3` document shaped like edgeorch.bench.__main__.run() writes one."""
    latencies_ns = [round(ms * 1_000_000) for ms in latencies_ms]
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
                   "latencies_ns": latencies_ns,
                   "wall_ns": sum(latencies_ns) if wall_ns is None else wall_ns},
        "resources": {"cpu_time_s": 19.6, "cpu_percent": 392.0, "peak_rss_bytes": 150 * 2**20},
        "sensors": {"where": "host", "sources": ["thermal:cpu-thermal:thermal_zone0"], "samples": [],
                    "window_s": 2.0, "sampler_cost": 0.001,
                    "max_temp_c": max_temp_c, "throttled": throttled,
                    "throttle_evidence": "max 61.5 C vs passive trip point 80.0 C"},
    }


@pytest.fixture
def make_doc():
    return result_doc
