"""edgeorch.bench.power (board side): power sources on fixture sysfs trees, the meter command, and the summary."""

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from edgeorch.bench import power
from edgeorch.bench.power import (
    MeterSource,
    PmicSource,
    PowerSampler,
    RaplSource,
    SourceError,
    find_source,
    pmic_rails,
    summarize,
    unavailable,
)

FIXTURES = Path(__file__).parent / "fixtures" / "power"
PMIC_TEXT = (FIXTURES / "pi5" / "pmic_read_adc.txt").read_text()
RANGE = 262143328850  # max_energy_range_uj of every zone in x86-rapl


def tree(tmp_path, name):
    """A writable copy of a fixture tree (symlinks kept), so a test can move counters on."""
    copy = tmp_path / name
    shutil.copytree(FIXTURES / name, copy, symlinks=True)
    return copy


def no_vcgencmd(args):
    raise SourceError("no vcgencmd on PATH (Raspberry Pi OS has it)")


def set_uj(root, zone, value):
    (root / "sys/class/powercap" / zone / "energy_uj").write_text(f"{value}\n")


# --- RAPL -------------------------------------------------------------------------------------------------------

def test_rapl_sums_the_top_level_packages_only(tmp_path):
    root = tree(tmp_path, "x86-rapl")
    source, notes = find_source(root=str(root), vcgencmd=no_vcgencmd)
    assert isinstance(source, RaplSource) and notes == []
    assert source.name == "rapl:package-0+package-1" and source.kind == "energy"
    first = source.read()
    assert first == pytest.approx((123456789012 + 23456789012) / 1e6)
    # the subzones move by more than the packages: a reader that added them in would see it
    set_uj(root, "intel-rapl:0", 123456789012 + 4_000_000)
    set_uj(root, "intel-rapl:1", 23456789012 + 1_000_000)
    set_uj(root, "intel-rapl:0:0", 98765432101 + 90_000_000)
    set_uj(root, "intel-rapl:0:1", 1234567890 + 70_000_000)
    assert source.read() - first == pytest.approx(5.0)


def test_rapl_unwraps_each_package_across_max_energy_range(tmp_path):
    root = tree(tmp_path, "x86-rapl")
    set_uj(root, "intel-rapl:0", RANGE - 1_500_000)
    source, _ = find_source(root=str(root), vcgencmd=no_vcgencmd)
    first = source.read()
    set_uj(root, "intel-rapl:0", 500_000)  # wrapped: 1.5 J to the top, 0.5 J after it
    set_uj(root, "intel-rapl:1", 23456789012 + 3_000_000)
    assert source.read() - first == pytest.approx(2.0 + 3.0)
    set_uj(root, "intel-rapl:0", 2_500_000)  # and on from the wrapped value
    assert source.read() - first == pytest.approx(2.0 + 3.0 + 2.0)


def root_only(path, *args, **kwargs):
    """open() as a non-root user sees it on Linux 5.10+: energy_uj is mode 0400."""
    if str(path).endswith("/energy_uj"):
        raise PermissionError(13, "Permission denied", str(path))
    return open(path, *args, **kwargs)


def test_rapl_root_only_energy_uj_says_why_and_the_fix(tmp_path, monkeypatch):
    root = tree(tmp_path, "x86-rapl")
    monkeypatch.setattr(power, "_open", root_only)
    source, notes = find_source(root=str(root), vcgencmd=no_vcgencmd)
    assert source is None
    [rapl] = [n for n in notes if n.startswith("rapl:")]
    assert "/sys/class/powercap/intel-rapl:0/energy_uj is readable by root only since Linux 5.10" in rapl
    assert "CVE-2020-8694" in rapl and "PLATYPUS" in rapl
    assert "run the watcher as root" in rapl and "udev rule" in rapl and "chmod" in rapl
    assert str(tmp_path) not in rapl  # the path a user can paste on the board


def test_rapl_opener_is_injectable(tmp_path):
    root = tree(tmp_path, "x86-rapl")
    zone = str(root / "sys/class/powercap/intel-rapl:0")
    with pytest.raises(SourceError, match="root only since Linux 5.10"):
        RaplSource([("package-0", zone)], opener=root_only).read()


def test_rapl_skips_psys_which_contains_the_packages(tmp_path):
    root = tree(tmp_path, "x86-rapl")
    shutil.rmtree(root / "sys/class/powercap/intel-rapl:1")
    shutil.rmtree(root / "sys/class/powercap/intel-rapl:1:0")
    psys = root / "sys/class/powercap/intel-rapl:1"
    psys.mkdir()
    (psys / "name").write_text("psys\n")
    (psys / "energy_uj").write_text("999999999\n")
    source, notes = find_source(root=str(root), vcgencmd=no_vcgencmd)
    assert source.name == "rapl:package-0"
    assert source.read() == pytest.approx(123456.789012)
    assert notes == ["rapl: skipped intel-rapl:1 (psys): not a package zone"]


# --- Jetson INA3221 ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, watts", [
    ("jetson-orin-hwmon3", 5048 * 1128 / 1e6),
    ("jetson-orin-hwmon1", 5056 * 2016 / 1e6),  # another boot: hwmon1 is the INA3221, hwmon3 the fan
])
def test_ina3221_input_rail_found_by_label(name, watts):
    source, notes = find_source(root=str(FIXTURES / name), vcgencmd=no_vcgencmd)
    assert source.name == "ina3221:VDD_IN" and source.kind == "power"
    assert source.read() == pytest.approx(watts)
    assert any(n.startswith("rapl: no /sys/class/powercap/intel-rapl:*") for n in notes)


def test_ina3221_sums_the_rails_of_a_board_without_an_input_rail(tmp_path):
    root = tree(tmp_path, "jetson-orin-hwmon3")
    hwmon = root / "sys/class/hwmon/hwmon3"
    # AGX Orin's first INA3221: disjoint rails, no VDD_IN
    for n, label in ((1, "VDD_GPU_SOC"), (2, "VDD_CPU_CV"), (3, "VIN_SYS_5V0")):
        (hwmon / f"in{n}_label").write_text(label + "\n")
    source, _ = find_source(root=str(root), vcgencmd=no_vcgencmd)
    assert source.name == "ina3221:VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0"  # in7, the sum of shunts, left out
    assert source.read() == pytest.approx(5048 * (1128 + 264 + 392) / 1e6)


def test_ina3221_skips_not_connected_and_disabled_rails(tmp_path):
    root = tree(tmp_path, "jetson-orin-hwmon3")
    hwmon = root / "sys/class/hwmon/hwmon3"
    (hwmon / "in1_label").write_text("NC\n")
    (hwmon / "in3_enable").write_text("0\n")
    source, notes = find_source(root=str(root), vcgencmd=no_vcgencmd)
    assert source.name == "ina3221:VDD_CPU_GPU_CV"
    assert source.read() == pytest.approx(5048 * 264 / 1e6)
    assert "ina3221: rail VDD_SOC is disabled (in3_enable = 0)" in notes


def test_ina3221_l4t32_iio_in_milliwatts():
    source, _ = find_source(root=str(FIXTURES / "jetson-nano-l4t32"), vcgencmd=no_vcgencmd)
    assert source.name == "ina3221:POM_5V_IN"
    assert source.read() == pytest.approx(2.147)


# --- Raspberry Pi 5 PMIC ----------------------------------------------------------------------------------------

def test_pmic_sum_of_v_times_a():
    rails = pmic_rails(PMIC_TEXT)
    assert len(rails) == 12 and "EXT5V" not in rails and "BATT" not in rails
    assert rails["VDD_CORE"] == (0.72076500, 0.80037000)
    source, notes = find_source(root="/nonexistent", vcgencmd=lambda args: PMIC_TEXT)
    assert source.name == "pmic" and source.kind == "power"
    # worked by hand from the listing (see fixtures/power/pi5/README.md)
    assert source.read() == pytest.approx(1.7441107464367722, rel=1e-12)
    assert [n.split(":")[0] for n in notes] == ["rapl", "ina3221"]


def test_pmic_on_a_pi_4_says_only_a_pi_5_has_it():
    pi4 = PmicSource(lambda args: 'error=2 error_msg="Invalid arguments"\n')
    with pytest.raises(SourceError, match="only a Raspberry Pi 5 has this PMIC.*Invalid arguments"):
        pi4.read()


def test_pmic_runner_gets_pmic_read_adc():
    asked = []
    PmicSource(lambda args: asked.append(args) or PMIC_TEXT).read()
    assert asked == [["pmic_read_adc"]]


# --- an external meter ------------------------------------------------------------------------------------------

def script(tmp_path, body, name="meter.py"):
    path = tmp_path / name
    path.write_text(body)
    return [sys.executable, str(path)]


@pytest.mark.parametrize("printed", ["3.25", "3.25 W", "INA260 on bus 1: 5.12V 0.635A 3.25W", "3250 mW"])
def test_meter_prints_watts(tmp_path, printed):
    argv = script(tmp_path, f"print({printed!r})")
    source, notes = find_source(meter=argv, root=str(FIXTURES / "x86-rapl"), vcgencmd=no_vcgencmd)
    assert source.name.startswith(f"meter:{os.path.basename(sys.executable)}#") and notes == []  # over RAPL
    assert source.read() == pytest.approx(3.25)


def test_meter_shell_script_runs_without_a_shell(tmp_path):
    sh = tmp_path / "meter.sh"
    sh.write_text("#!/bin/sh\necho '3.25 W'\n")
    sh.chmod(0o755)
    assert MeterSource([str(sh)]).read() == 3.25
    # an argument with shell syntax reaches the program as it is
    argv = script(tmp_path, "import sys; print(len(sys.argv[1]), 'W')", name="argc.py")
    assert MeterSource(argv + ["$(echo 12345678)"]).read() == len("$(echo 12345678)")


def test_meter_failing(tmp_path):
    argv = script(tmp_path, "import sys; print('no INA219 at 0x40', file=sys.stderr); sys.exit(3)")
    source, notes = find_source(meter=argv, root=str(FIXTURES / "x86-rapl"), vcgencmd=no_vcgencmd)
    assert source is None  # no silent fall-back to RAPL, which measures something else
    [note] = notes
    assert "exited 3" in note and "no INA219 at 0x40" in note
    assert f"meter {os.path.basename(sys.executable)} (#" in note and "meter.py" not in note  # its words are not shown


def test_meter_printing_garbage(tmp_path):
    with pytest.raises(SourceError, match=r"printed no number of watts: 'device busy'.*") as e:
        MeterSource(script(tmp_path, "print('device busy')")).read()
    assert source_name_in(str(e.value)) and "meter.py" not in str(e.value)


def source_name_in(text):
    return f"meter {os.path.basename(sys.executable)} (#" in text


def test_meter_hanging_times_out(tmp_path):
    argv = script(tmp_path, "import time; print('reading', flush=True); time.sleep(30)")
    began = time.monotonic()
    with pytest.raises(SourceError, match=r"no answer within 0.5 s; it printed 'reading'"):
        MeterSource(argv, timeout=0.5).read()
    assert time.monotonic() - began < 5


def test_meter_missing_program():
    with pytest.raises(SourceError, match="cannot run"):
        MeterSource(["/nonexistent/ina219-read"]).read()


def test_meter_from_a_string_is_split_like_a_shell_would():
    assert MeterSource("ina219-read --bus 1 --addr '0x40'").argv == ["ina219-read", "--bus", "1", "--addr", "0x40"]


# --- choosing ---------------------------------------------------------------------------------------------------

def test_find_source_on_an_empty_root_says_what_it_looked_for(tmp_path):
    source, notes = find_source(root=str(tmp_path), vcgencmd=no_vcgencmd)
    assert source is None
    assert notes == [
        "rapl: no /sys/class/powercap/intel-rapl:* package zone (not an Intel or AMD x86 with powercap)",
        "ina3221: no hwmon named ina3221 in /sys/class/hwmon and no /sys/bus/i2c/drivers/ina3221x/*/iio:device* "
        "(not a Jetson, or a Nano 2GB, which has none)",
        "pmic: no vcgencmd on PATH (Raspberry Pi OS has it)",
    ]
    doc = unavailable(notes)
    assert doc["reason"] == "; ".join(notes)
    assert doc["avg_power_w"] is None and doc["energy_mj"] is None and doc["samples"] is None
    assert set(doc) == set(summarize([], "power", 0, 1, 1))


def test_find_source_order_rapl_before_ina3221_before_pmic(tmp_path):
    root = tree(tmp_path, "x86-rapl")
    shutil.copytree(FIXTURES / "jetson-orin-hwmon3" / "sys" / "class" / "hwmon", root / "sys/class/hwmon")
    source, _ = find_source(root=str(root), vcgencmd=lambda args: PMIC_TEXT)
    assert source.name.startswith("rapl:")
    shutil.rmtree(root / "sys/class/powercap")
    source, _ = find_source(root=str(root), vcgencmd=lambda args: PMIC_TEXT)
    assert source.name == "ina3221:VDD_IN"


# --- sampling and the summary ----------------------------------------------------------------------------------

S = 1_000_000_000


def power_samples(t0_s, t1_s, watts, hz=10):
    step = S // hz
    return [(t, watts) for t in range(int(t0_s * S), int(t1_s * S) + 1, step)]


def test_summarize_power_against_a_known_truth():
    # 2 W before and after, 5 W in the timed phase [1 s, 3 s], 10 Hz; 40 inferences
    samples = power_samples(0, 0.9, 2.0) + power_samples(1, 3, 5.0) + power_samples(3.1, 4, 2.0)
    idle = power_samples(0, 2, 2.0)
    doc = summarize(samples, "power", 1 * S, 3 * S, 40, idle=idle, rate_hz=10)
    assert doc["avg_power_w"] == 5.0 and doc["idle_power_w"] == 2.0
    assert doc["energy_mj"] == pytest.approx(5.0 * 2 / 40 * 1000)  # 250 mJ
    assert doc["energy_above_idle_mj"] == pytest.approx(3.0 * 2 / 40 * 1000)  # 150 mJ
    assert doc["samples"] == 21 and doc["idle_samples"] == 21 and doc["rate_hz"] == 10
    assert doc["duration_s"] == 2.0 and doc["reason"] is None and doc["idle_reason"] is None


def test_summarize_ignores_samples_outside_the_window():
    samples = power_samples(0, 0.9, 100.0) + power_samples(1, 2, 4.0) + power_samples(2.1, 3, 100.0)
    doc = summarize(samples, "power", 1 * S, 2 * S, 10)
    assert doc["avg_power_w"] == 4.0 and doc["samples"] == 11
    assert doc["rate_hz"] == pytest.approx(10.0)  # measured when not given
    assert doc["energy_above_idle_mj"] is None and doc["idle_power_w"] is None
    assert doc["idle_reason"] == "no idle power was measured"


def test_summarize_energy_counter_with_a_wrap_in_the_middle():
    # a 5 W counter in joules that wraps at 100 J (at t = 2 s), 10 Hz, in 0..4 s; timed phase [1 s, 3 s]
    counter = [(t, (90.0 + 5.0 * t / S) % 100.0) for t in range(0, 4 * S + 1, S // 10)]
    assert any(b < a for (_, a), (_, b) in zip(counter, counter[1:]))  # it does wrap inside the window
    idle = [(t, (10.0 + 2.0 * t / S) % 100.0) for t in range(0, 2 * S + 1, S // 10)]
    doc = summarize(counter, "energy", 1 * S, 3 * S, 20, idle=idle, wrap=100.0)
    assert doc["avg_power_w"] == pytest.approx(5.0) and doc["idle_power_w"] == pytest.approx(2.0)
    assert doc["energy_mj"] == pytest.approx(5.0 * 2 / 20 * 1000)
    assert doc["energy_above_idle_mj"] == pytest.approx(3.0 * 2 / 20 * 1000)


def test_summarize_energy_going_down_without_a_range_is_not_a_number():
    doc = summarize([(0, 90.0), (S, 5.0)], "energy", 0, S, 1)
    assert doc["avg_power_w"] is None and doc["energy_mj"] is None
    assert "went down" in doc["reason"]


@pytest.mark.parametrize("samples", [[], [(int(1.5 * S), 5.0)]])
def test_summarize_too_few_samples_is_none_with_what_to_do(samples):
    doc = summarize(samples + [(0, 5.0), (4 * S, 5.0)], "power", 1 * S, 2 * S, 10, idle=power_samples(0, 1, 2.0))
    assert doc["avg_power_w"] is None and doc["energy_mj"] is None and doc["energy_above_idle_mj"] is None
    assert doc["samples"] == len(samples)
    assert "--min-time" in doc["reason"] and "2 needed" in doc["reason"]
    assert doc["idle_power_w"] == 2.0  # what was measured is still there


def test_summarize_unusable_idle_is_none_with_a_reason():
    doc = summarize(power_samples(0, 1, 5.0), "power", 0, S, 10, idle=[(0, 2.0)])
    assert doc["idle_power_w"] is None and doc["energy_above_idle_mj"] is None
    assert doc["energy_mj"] == pytest.approx(500.0) and "idle: 1 sample(s)" in doc["idle_reason"]


class Steps:
    """A source reading 1.0, 2.0, ..., failing on the reads listed in `fail`."""
    name, kind = "steps", "power"

    def __init__(self, fail=()):
        self.n, self.fail = 0, set(fail)

    def read(self):
        self.n += 1
        if self.n in self.fail:
            raise SourceError("glitch")
        return float(self.n)


def test_power_sampler_stamps_the_monotonic_clock_and_counts_failures():
    clock = iter([100, 110, 200, 300, 310]).__next__  # a failed read takes no second reading
    sampler = PowerSampler(Steps(fail={2}), clock=clock)
    for _ in range(3):
        sampler.sample()
    assert sampler.samples == [(105, 1.0), (305, 3.0)]  # the middle of each read
    assert sampler.errors == 1 and sampler.last_error == "glitch"


def test_power_sampler_run_for_samples_first_and_last():
    before = time.monotonic_ns()
    samples = PowerSampler(Steps()).run_for(0.2, 0.05)
    assert [r for _, r in samples] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert before <= samples[0][0] and samples[-1][0] - samples[0][0] >= 0.19 * S
