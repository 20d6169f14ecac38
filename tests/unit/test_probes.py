"""edgeorch.bench (board side): the throttle verdict from sensor samples, and the bundle digest."""

import shutil
from pathlib import Path

import pytest

from edgeorch import bench
from edgeorch.bench.probes import Sampler


def sampler(samples, zones=None):
    """A Sampler whose sensor readings are `samples`, as if it had sampled a board during a run."""
    s = Sampler()
    s.samples = samples
    s.zones = zones or {}
    return s


def vc(*states, temp=55.0):
    return [{"t_s": i * 0.5, "temps_c": {"vcgencmd": temp}, "freqs_mhz": {}, "throttled": state}
            for i, state in enumerate(states)]


def temps(*values):
    return [{"t_s": i * 0.5, "temps_c": {"cpu-thermal:thermal_zone0": v}, "freqs_mhz": {}}
            for i, v in enumerate(values)]


CPU_ZONE = {"/sys/class/thermal/thermal_zone0": ("cpu-thermal:thermal_zone0", 80.0)}


@pytest.mark.parametrize("states, throttled", [
    (("0x0", "0x0", "0x0"), False),
    (("0x0", "0x0", "0x20000"), True),       # frequency capping started during the run
    (("0x10000", "0x10000", "0x50000"), True),  # throttling occurred during the run
    (("0x50000", "0x50000"), False),         # throttling and under-voltage before the run only
    (("0x10000", "0x10001"), False),         # under-voltage slows nothing by itself
    (("0x0", "0x4", "0x0"), True),           # throttled at one sample
    (("0x8",), True),                        # soft temperature limit active
])
def test_vcgencmd_throttle_bits(states, throttled):
    summary = sampler(vc(*states)).summary()
    assert summary["throttled"] is throttled
    assert summary["throttle_evidence"] == f"vcgencmd get_throttled {states[0]} -> {states[-1]}"
    assert summary["max_temp_c"] == 55.0


def test_vcgencmd_wins_over_thermal_zones():
    s = sampler(vc("0x0", "0x0", temp=90.0), zones=CPU_ZONE)
    assert s.summary()["throttled"] is False


@pytest.mark.parametrize("peak, throttled", [(85.0, True), (80.0, True), (60.0, False)])
def test_passive_trip_point(peak, throttled):
    summary = sampler(temps(50.0, peak, 55.0), zones=CPU_ZONE).summary()
    assert summary["max_temp_c"] == peak and summary["throttled"] is throttled
    assert ("reached" in summary["throttle_evidence"]) is throttled
    assert "cpu-thermal" in summary["throttle_evidence"]


def freqs(*mhz):
    return [{"t_s": i * 0.5, "temps_c": {}, "freqs_mhz": {"cpu0": f, "cpu1": 600.0}} for i, f in enumerate(mhz)]


@pytest.mark.parametrize("mhz, throttled", [
    ((1500, 1500, 1500), False),
    ((1500, 1000, 1000, 1000, 1500), True),  # a Pi capped to 1 GHz for most of the run
    ((1500, 1400, 1450), False),             # near the maximum: turbo limits and sampling noise
    ((600, 1500, 1500), False),              # one idle sample before the model ran
])
def test_a_clock_under_the_governors_maximum_under_load_is_throttling(mhz, throttled):
    s = sampler(freqs(*mhz))
    s.max_freqs = {"cpu0": 1500.0, "cpu1": 1500.0}
    summary = s.summary()
    assert summary["throttled"] is throttled
    assert ("of the governor's maximum 1500 MHz" in summary["throttle_evidence"]) is throttled


def test_every_zone_with_a_passive_trip_point_counts():
    zones = {**CPU_ZONE, "/sys/class/thermal/thermal_zone1": ("gpu-thermal:thermal_zone1", 70.0),
             "/sys/class/thermal/thermal_zone2": ("acpitz:thermal_zone2", None)}
    hot_gpu = [{"t_s": 0.0, "temps_c": {"cpu-thermal:thermal_zone0": 60.0, "gpu-thermal:thermal_zone1": 75.0,
                                        "acpitz:thermal_zone2": 40.0}, "freqs_mhz": {}}]
    assert sampler(hot_gpu, zones=zones).summary()["throttled"] is True


def test_a_zone_is_compared_with_its_own_trip_point():
    # CPU 65 C and GPU 55 C are under their own trip points (80 and 70 C); the PMIC die has none.
    # Yet the hottest reading (PMIC, 75 C) is over the lowest trip point (GPU, 70 C): "throttled".
    zones = {**CPU_ZONE, "/sys/class/thermal/thermal_zone1": ("gpu-thermal:thermal_zone1", 70.0),
             "/sys/class/thermal/thermal_zone2": ("pmic-die:thermal_zone2", None)}
    readings = [{"t_s": 0.0, "temps_c": {"cpu-thermal:thermal_zone0": 65.0, "gpu-thermal:thermal_zone1": 55.0,
                                         "pmic-die:thermal_zone2": 75.0}, "freqs_mhz": {}}]
    assert sampler(readings, zones=zones).summary()["throttled"] is False


@pytest.mark.parametrize("samples, zones", [
    ([{"t_s": 0.0, "temps_c": {}, "freqs_mhz": {"cpu0": 1500.0}}], {}),
    (temps(70.0), {}),                                                   # a temperature but no limit
    (temps(70.0), {"/sys/class/thermal/thermal_zone0": ("x86_pkg_temp:thermal_zone0", None)}),
])
def test_no_throttle_sensor_is_unknown_not_false(samples, zones):
    summary = sampler(samples, zones).summary()
    assert summary["throttled"] is None
    assert "no throttle sensor" in summary["throttle_evidence"]


def test_no_samples_at_all():
    assert sampler([]).summary() == {"max_temp_c": None, "throttled": None,
                                     "throttle_evidence": "no throttle sensor on this board"}


def test_bundle_digest_tracks_every_byte(tmp_path):
    copy = tmp_path / "bench"
    shutil.copytree(Path(bench.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert bench.bundle_digest(copy) == bench.bundle_digest()
    target = copy / "probes.py"
    data = bytearray(target.read_bytes())
    data[-2] ^= 0x01
    target.write_bytes(bytes(data))
    assert bench.bundle_digest(copy) != bench.bundle_digest()


def test_bundle_digest_tracks_file_names(tmp_path):
    copy = tmp_path / "bench"
    shutil.copytree(Path(bench.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = bench.bundle_digest(copy)
    (copy / "probes.py").rename(copy / "sensors.py")
    assert bench.bundle_digest(copy) != before
    (copy / "extra.py").write_text("")
    names = [p.as_posix() for p in bench.bundle_files(copy)]
    assert names == sorted(names) and {"extra.py", "sensors.py", "__main__.py", "adapters/base.py"} <= set(names)
    assert "probes.py" not in names


def test_bundle_digest_tracks_the_subpackages(tmp_path):
    copy = tmp_path / "bench"
    shutil.copytree(Path(bench.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = bench.bundle_digest(copy)
    (copy / "adapters" / "tflite.py").rename(copy / "tflite.py")  # the same bytes, another place
    assert bench.bundle_digest(copy) != before


def test_the_image_and_the_bare_bundle_get_the_same_files(tmp_path):
    from edgeorch.images import copy_bundle

    copy_bundle(tmp_path / "edgeorch_bench")
    assert bench.bundle_digest(tmp_path / "edgeorch_bench") == bench.bundle_digest()


def test_the_bare_bundle_is_copied_with_its_subpackages(tmp_path, monkeypatch):
    import subprocess
    from types import SimpleNamespace

    from edgeorch import deploy

    def remote(conn, argv, **kwargs):  # run the board's command here, as the board's shell would
        return subprocess.run(argv, check=True, capture_output=True, text=True)

    class Sftp:
        def put(self, local, dest, callback=None):
            shutil.copyfile(local, dest)

        def get_channel(self):  # each transfer sets how long its waits on the link may take
            return SimpleNamespace(settimeout=lambda seconds: None, gettimeout=lambda: 60)

    monkeypatch.setattr(deploy, "remote", remote)
    (tmp_path / "bundle" / "edgeorch_bench").mkdir(parents=True)
    (tmp_path / "bundle" / "edgeorch_bench" / "stale.py").write_text("")
    deploy._copy_entrypoint(SimpleNamespace(sftp=Sftp), SimpleNamespace(name="b"), str(tmp_path / "bundle"))
    assert bench.bundle_digest(tmp_path / "bundle" / "edgeorch_bench") == bench.bundle_digest()
