"""Tolerant collectors of board facts and sensors: each skips what a board lacks."""

import glob
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _vcgencmd(*args):
    exe = shutil.which("vcgencmd")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=2)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _cpu_model():
    info = _read("/proc/cpuinfo") or ""
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        m = re.search(rf"^{key}\s*:\s*(.+)$", info, re.MULTILINE)
        if m:
            return m.group(1).strip()
    return platform.processor() or None


def _os_name():
    text = _read("/etc/os-release") or ""
    m = re.search(r'^PRETTY_NAME="?([^"\n]+)"?$', text, re.MULTILINE)
    return m.group(1) if m else None


def _mem_total():
    m = re.search(r"^MemTotal:\s+(\d+) kB", _read("/proc/meminfo") or "", re.MULTILINE)
    return int(m.group(1)) * 1024 if m else None


def _seccomp():
    """This process's seccomp mode: 0 none, 2 a filter (Docker's default profile), None where unknown."""
    m = re.search(r"^Seccomp:\s+(\d+)", _read("/proc/self/status") or "", re.MULTILINE)
    return int(m.group(1)) if m else None


def _status_kb(field, text=None):
    """A `kB` field of /proc/self/status (VmRSS, VmHWM) in bytes, None where the kernel has none."""
    m = re.search(rf"^{field}:\s+(\d+) kB", _read("/proc/self/status") if text is None else text, re.MULTILINE)
    return int(m.group(1)) * 1024 if m else None


def rss_bytes():
    """This process's resident set now."""
    return _status_kb("VmRSS")


def reset_peak_rss():
    """Start this process's peak RSS (VmHWM) again from its RSS now (Linux 4.0+: `5` to clear_refs), so that the
    peak read later is the peak of what followed; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes():
    """This process's peak RSS since it started, or since reset_peak_rss()."""
    return _status_kb("VmHWM")


# cgroup v2 (Linux 5.19+ has memory.peak), then v1: inside a container, its own cgroup is mounted here
CGROUP_PEAKS = ("/sys/fs/cgroup/memory.peak", "/sys/fs/cgroup/memory/memory.max_usage_in_bytes")


def cgroup_memory_peak(paths=CGROUP_PEAKS):
    """(bytes, file) of the container's cgroup memory peak (page cache included, as the kernel counts it), or
    (None, why)."""
    for path in paths:
        raw = _read(path)
        if raw and raw.isdigit():
            return int(raw), path
    return None, "no cgroup memory peak readable (cgroup v2 needs Linux 5.19+ for memory.peak)"


def facts():
    """What this board and process are: CPU, cores, kernel, OS, Python, numpy."""
    try:
        import numpy
        numpy_version = numpy.__version__
    except ImportError:
        numpy_version = None
    model = _read("/proc/device-tree/model")
    return {
        "cpu_model": _cpu_model(),
        "board_model": model.rstrip("\x00") if model else None,
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "bits": 64 if sys.maxsize > 2**32 else 32,
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version(),
        "numpy": numpy_version,
        "mem_total_bytes": _mem_total(),
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "in_container": os.path.exists("/.dockerenv"),
        "seccomp": _seccomp(),
    }


def libraries():
    """The shared libraries this process has mapped (from /proc/self/maps): where its userland comes from."""
    found = set()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split(None, 5)
                path = fields[5].strip() if len(fields) == 6 else ""
                if path.startswith("/") and ".so" in os.path.basename(path):
                    found.add(path)
    except OSError:
        pass
    return sorted(found)


def _thermal_zones():
    zones = {}
    for zone in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
        kind = _read(f"{zone}/type") or os.path.basename(zone)
        if _read(f"{zone}/temp") is None:
            continue
        passive = []
        for trip in glob.glob(f"{zone}/trip_point_*_type"):
            if _read(trip) == "passive":
                temp = _read(trip.replace("_type", "_temp"))
                if temp and temp.lstrip("-").isdigit():
                    passive.append(int(temp) / 1000)
        zones[zone] = (f"{kind}:{os.path.basename(zone)}", min(passive) if passive else None)
    return zones


def _cpufreq_paths():
    return sorted(glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq"))


# Under this share of the governor's maximum the clock was capped; above it, all-core turbo limits and sampling
# noise (an x86 at 4.7 of 5.0 GHz) are not throttling. A throttled Pi drops from 1500 to 1000 or 600 MHz.
FREQ_CAPPED = 0.8


class Sampler(threading.Thread):
    """Samples CPU temperature, frequency and throttle state every `interval` seconds."""

    def __init__(self, interval=0.5, window=None):
        super().__init__(daemon=True)
        self.interval = interval
        self.window = window  # sample only in every other window of this many seconds (the watcher's cost check)
        self.zones = _thermal_zones()
        self.freqs = _cpufreq_paths()
        # the governor's ceiling per CPU: a clock well under it while the model runs means capped
        self.max_freqs = {}
        for path in self.freqs:
            raw = _read(path.replace("scaling_cur_freq", "scaling_max_freq"))
            if raw and raw.isdigit():
                self.max_freqs[path.split("/")[5]] = int(raw) / 1000
        self.has_vcgencmd = shutil.which("vcgencmd") is not None
        self.samples = []
        self._stop_event = threading.Event()
        self.t0_ns = time.monotonic_ns()
        self._t0 = self.t0_ns / 1e9  # time.monotonic() is the same clock in seconds

    def sources(self):
        """The sensors this board has; an empty list means temperature is unknown."""
        found = [f"thermal:{label}" for label, _ in self.zones.values()]
        if self.freqs:
            found.append(f"cpufreq:{len(self.freqs)} cpus")
        if self.has_vcgencmd:
            found.append("vcgencmd")
        return found

    def sample(self):
        temps, freqs = {}, {}
        for path, (label, _) in self.zones.items():
            raw = _read(f"{path}/temp")
            if raw and raw.lstrip("-").isdigit():
                temps[label] = int(raw) / 1000
        for path in self.freqs:
            raw = _read(path)
            if raw and raw.isdigit():
                freqs[path.split("/")[5]] = int(raw) / 1000
        entry = {"t_s": round(time.monotonic() - self._t0, 3), "temps_c": temps, "freqs_mhz": freqs}
        if self.has_vcgencmd:
            # each call is a process: only what sysfs does not tell (a Pi has thermal_zone0 and cpufreq)
            m = None if temps else re.search(r"temp=([\d.]+)", _vcgencmd("measure_temp") or "")
            if m:
                temps["vcgencmd"] = float(m.group(1))
            m = None if freqs else re.search(r"=(\d+)", _vcgencmd("measure_clock", "arm") or "")
            if m:
                freqs["arm"] = int(m.group(1)) / 1e6
            m = re.search(r"throttled=(0x[0-9a-fA-F]+)", _vcgencmd("get_throttled") or "")
            if m:
                entry["throttled"] = m.group(1)
        self.samples.append(entry)

    def on_window(self):
        """Whether sampling is on now: always, or in every other window (the off-windows measure its cost)."""
        return self.window is None or int((time.monotonic() - self._t0) / self.window) % 2 == 0

    def run(self):
        while not self._stop_event.wait(self.interval):
            if self.on_window():
                self.sample()

    def __enter__(self):
        self.sample()
        self.start()
        return self

    def __exit__(self, *exc):
        self._stop_event.set()
        self.join()
        self.sample()

    def _capped(self):
        """Evidence that the clock ran below FREQ_CAPPED of the governor's maximum for most of the run (the fastest
        CPU of each sample: the one running the model); "" when it did not, None without cpufreq."""
        ceiling = max(self.max_freqs.values()) if self.max_freqs else None
        fastest = sorted(max(s["freqs_mhz"].values()) for s in self.samples if s["freqs_mhz"])
        if not ceiling or not fastest:
            return None
        median = fastest[len(fastest) // 2]
        if median < FREQ_CAPPED * ceiling:
            return f"clock {median:.0f} MHz under load < {FREQ_CAPPED:.0%} of the governor's maximum {ceiling:.0f} MHz"
        return ""

    def summary(self):
        """Max temperature and whether the CPU was throttled, with the evidence for it."""
        temps = [t for s in self.samples for t in s["temps_c"].values()]
        max_temp = max(temps) if temps else None
        throttled, evidence = None, "no throttle sensor on this board"
        states = [int(s["throttled"], 16) for s in self.samples if "throttled" in s]
        if states:
            # Bits 1-3: frequency capped, throttled, soft temperature limit now; bits 17-19:
            # the same since boot, so a bit that turns on during the run counts too.
            now = any(s & 0xE for s in states)
            during = (states[-1] & ~states[0]) & 0xE0000
            throttled = bool(now or during)
            evidence = f"vcgencmd get_throttled {hex(states[0])} -> {hex(states[-1])}"
        else:
            # Each zone against its own passive trip point: sensors differ in what is normal.
            over, checked = [], []
            for label, limit in self.zones.values():
                peaks = [s["temps_c"][label] for s in self.samples if label in s["temps_c"]]
                if limit is not None and peaks:
                    checked.append(label)
                    if max(peaks) >= limit:
                        over.append(f"{label} reached {max(peaks):.1f} C >= trip point {limit:.1f} C")
            capped = self._capped()
            if capped is not None:
                checked.append("cpufreq")
                over += [capped] if capped else []
            if checked:
                throttled = bool(over)
                evidence = "; ".join(over) or f"under every trip point, clock not capped ({', '.join(checked)})"
        return {"max_temp_c": max_temp, "throttled": throttled, "throttle_evidence": evidence}
