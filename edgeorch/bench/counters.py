"""Hardware and software performance counters per inference, as Velasco-Montero et al. count them: `perf stat`
attached from the board's host to the measured process (perf cannot open its events inside a default container:
Docker's seccomp profile refuses perf_event_open), printing every interval, each interval stamped on arrival and
kept only if it lies wholly within the timed loop.

Only perf's own words are numbers here: an event perf could not count is named with its reason, never a zero.
"""

import glob
import os
import platform
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time

from .probes import _read

METHOD = "perf stat -p, gated to the timed loop by its interval stamps"

HARDWARE = ("cycles", "instructions", "cache-references", "cache-misses", "branch-instructions", "branch-misses",
            "L1-dcache-load-misses", "dTLB-load-misses", "iTLB-load-misses")
SOFTWARE = ("task-clock", "page-faults", "context-switches", "cpu-migrations")
EVENTS = HARDWARE + SOFTWARE

# Versioned perf binaries, for when the `perf` on PATH is a distribution's wrapper that finds no perf for the
# running kernel: Debian's perf_<version>, Ubuntu's linux-tools/<release>/perf and linux-tools-<version>/perf.
PERF_GLOBS = ("/usr/bin/perf_*", "/usr/lib/linux-tools/*/perf", "/usr/lib/linux-tools-*/perf")

NOT_SUPPORTED, NOT_COUNTED = "<not supported>", "<not counted>"

# Software events that happen in the kernel: counted in user space only (perf's `:u` fallback for a user under
# kernel.perf_event_paranoid=2) they always read 0, which is not a measurement.
KERNEL_SIDE = {"context-switches", "cs", "cpu-migrations", "migrations"}

_MODIFIERS = re.compile(r"^[ukhIGHpPSDWe]+$")
_PMU_EVENT = re.compile(r"^[\w.-]+/(.+)/([A-Za-z]*)$")  # cpu_core/cycles/, armv8_cortex_a72/cycles/u


def _kernel():
    return platform.release()


def _version_of(exe):
    """(version, None) if `exe --version` runs as perf, else (None, what it said)."""
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as e:
        return None, str(e)
    m = re.match(r"perf version (\S+)", out.stdout.strip())
    if out.returncode == 0 and m:
        return m.group(1), None
    said = [line.strip() for line in (out.stderr + out.stdout).splitlines() if line.strip()]
    return None, said[0] if said else f"exit status {out.returncode}"


def _newest_first(paths):
    def key(path):
        # the version is the part after perf_ or linux-tools[-/]: 5.15.0-91-generic sorts by its numbers
        m = re.search(r"(?:perf_|linux-tools[-/])([^/]+)", path)
        return tuple(int(n) for n in re.findall(r"\d+", m.group(1) if m else path))
    return sorted(paths, key=key, reverse=True)


def find_perf():
    """The perf to use: (argv, version, None), or (None, None, a reason a user can act on)."""
    kernel = _kernel()
    tried, seen = [], set()
    on_path = shutil.which("perf")
    candidates = [on_path] if on_path else []
    versioned = [p for pattern in PERF_GLOBS for p in glob.glob(pattern)
                 if os.path.isfile(p) and os.access(p, os.X_OK)]
    candidates += _newest_first(versioned)
    for exe in candidates:
        real = os.path.realpath(exe)
        if real in seen:
            continue
        seen.add(real)
        version, why = _version_of(exe)
        if version:
            return [exe], version, None
        tried.append(f"{exe}: {why}")
    install = (f"Debian/Raspberry Pi OS: sudo apt install linux-perf; "
               f"Ubuntu: sudo apt install linux-tools-{kernel}")
    if not tried:
        return None, None, f"perf is not installed on the board ({install})"
    return None, None, (f"perf does not run for the board's kernel {kernel} ({'; '.join(tried)}): "
                        f"install the perf for this kernel ({install})")


def unavailable(reason, events=EVENTS):
    """The counters of a run that has none: every event named with the reason."""
    return {"method": METHOD, "reason": reason, "per_inference": {}, "unavailable": {e: reason for e in events}}


def parse_line(text):
    """One line of `perf stat -x, -I`: (interval_time_s, event, value or None, unit, why not counted or None,
    running_pct or None); None for a comment, a blank line or anything else that is not an interval's count."""
    line = text.strip()
    if not line or line.startswith("#"):
        return None
    fields = line.split(",")
    if len(fields) < 4:
        return None
    try:
        t_s = float(fields[0])
    except ValueError:
        return None
    raw, unit = fields[1].strip(), fields[2].strip()
    # an event with its terms, cpu/event=0x3c,umask=0x0/, has commas of its own: its closing slash ends it
    i = 3
    event = fields[i]
    while event.count("/") == 1 and i + 1 < len(fields):
        i += 1
        event += "," + fields[i]
    rest = fields[i + 1:]
    if raw in (NOT_SUPPORTED, NOT_COUNTED):
        value, reason = None, raw
    else:
        try:
            value, reason = float(raw), None
        except ValueError:
            return None
    pct = None
    if len(rest) >= 2 and rest[1].strip():
        try:
            pct = float(rest[1])
        except ValueError:
            pct = None
    return t_s, event.strip(), value, unit, reason, pct


def event_name(event):
    """An event as perf printed it, as (name, modifiers): cpu_core/cycles/ -> (cycles, ''), cycles:u -> (cycles, u).
    A hybrid CPU's PMUs (cpu_core/, cpu_atom/, armv8_cortex_a76/...) print one line each: same name, summed."""
    mods = ""
    m = _PMU_EVENT.match(event)
    if m:
        event, mods = m.group(1), m.group(2)
    if ":" in event:
        head, tail = event.rsplit(":", 1)
        if _MODIFIERS.match(tail):
            event, mods = head, mods + tail
    return event, "".join(sorted(set(mods)))


def _intervals(lines):
    """perf's intervals as [(start_ns, end_ns, rows)] on the monotonic clock, in order."""
    groups = {}
    for arrival, text in lines:
        row = parse_line(text)
        if row is None:
            continue
        arrived, rows = groups.get(row[0], (arrival, []))
        rows.append(row)
        groups[row[0]] = (min(arrived, arrival), rows)
    if not groups:
        return []
    # perf stamps an interval from its start, on CLOCK_MONOTONIC; an arrival is that moment plus the read's delay.
    # The least delayed arrival places perf's start best, so every interval's end is that start plus perf's time.
    times = sorted(groups)
    origin = min(groups[t][0] - round(t * 1e9) for t in times)
    spans, previous = [], 0.0
    for t in times:
        spans.append((origin + round(previous * 1e9), origin + round(t * 1e9), groups[t][1]))
        previous = t
    return spans


def _too_few(doc, reason, names):
    doc.update(unavailable(reason, names or EVENTS))
    return doc


def per_inference(lines, starts_ns, latencies_ns, interval_ns, perf_version=None):
    """perf's counts per inference over the timed loop, from (arrival monotonic_ns, text) lines; JSON-ready."""
    interval_ms = interval_ns / 1e6
    interval_ms = int(interval_ms) if interval_ms == int(interval_ms) else interval_ms
    doc = {"method": METHOD, "perf": perf_version, "interval_ms": interval_ms}
    spans = _intervals(lines)
    names = _event_names(spans)
    if not spans:
        return _too_few(doc, "perf printed no interval", names)
    if not starts_ns or not latencies_ns:
        return _too_few(doc, "the run reported no inference start times to place perf's intervals on", names)
    gated, why = _gated(spans, starts_ns[0], starts_ns[-1] + latencies_ns[-1], interval_ns, interval_ms)
    if not gated:
        return _too_few(doc, why, names)
    starts = sorted(starts_ns)
    inferences = sum(_count_in(starts, start, end) for start, end, _ in gated)
    if not inferences:
        return _too_few(doc, f"no inference started within the {len(gated)} intervals inside the timed loop", names)
    sums, units, pcts, mods_of, why_not = _tally(gated)
    per = {key: total / inferences for key, total in sums.items() if key not in why_not}
    cycles, instructions = per.get("cycles"), per.get("instructions")
    doc.update({
        "intervals": len(gated), "inferences": inferences, "per_inference": per,
        "unavailable": {key: why_not[key] for key in sums if key in why_not},
        "running_pct": {key: pcts[key] for key in per if key in pcts},
        "units": {key: units[key] for key in per if key in units},
        "ipc": instructions / cycles if cycles and instructions is not None else None,
    })
    modified = {key: mods_of[key] for key in sums if mods_of[key]}
    if modified:
        doc["modifiers"] = modified  # cycles:u is user space only: perf's fallback without the right to count more
    if not per and sums and all(why_not[key] == NOT_SUPPORTED for key in sums):
        doc["reason"] = ("perf_event_open counts nothing here, software events included (QEMU user-mode "
                         "emulation, or a kernel without CONFIG_PERF_EVENTS)")
    return doc


def _event_names(spans):
    """The events perf printed, each once, in the order it first printed them."""
    names = []
    for _, _, rows in spans:
        for row in rows:
            name = event_name(row[1])[0]
            if name not in names:
                names.append(name)
    return names


def _gated(spans, loop_start, loop_end, interval_ns, interval_ms):
    """(the intervals wholly within the timed loop, why there are none)."""
    # perf's intervals follow one another; an interval far longer than asked for is one whose line was lost
    gated = [(max(start, end - round(1.5 * interval_ns)), end, rows) for start, end, rows in spans]
    gated = [span for span in gated if span[0] >= loop_start and span[1] <= loop_end]
    if gated:
        return gated, None
    lasted = (loop_end - loop_start) / 1e9
    if loop_end - loop_start < 2 * interval_ns:
        why = (f"the timed loop lasted {lasted:.3g} s, under two {interval_ms:g} ms intervals: "
               f"give the run --min-time")
    else:
        why = (f"no perf interval lay wholly within the timed loop ({lasted:.3g} s): perf counted from "
               f"{(spans[0][0] - loop_start) / 1e9:+.3g} s to {(spans[-1][1] - loop_start) / 1e9:+.3g} s of it")
    return gated, why


def _tally(gated):
    """Each event's (sums, units, lowest running %, modifiers, why it has no count) over the gated intervals."""
    # one name per event; the same event counted with different modifiers (cycles:u and cycles:k) keeps them
    variants = {}
    for _, _, rows in gated:
        for row in rows:
            name, mods = event_name(row[1])
            variants.setdefault(name, set()).add(mods)

    def key_of(event):
        name, mods = event_name(event)
        return (name if len(variants[name]) == 1 else f"{name}:{mods}" if mods else name), mods

    sums, units, pcts, mods_of, why_not, counted = {}, {}, {}, {}, {}, set()
    for _, _, rows in gated:
        by_key = {}
        for row in rows:
            key, mods = key_of(row[1])
            by_key.setdefault(key, []).append(row)
            mods_of[key] = mods
            sums.setdefault(key, 0.0)
            if row[3]:
                units[key] = row[3]
        for key, found in by_key.items():
            any_counted = any(r[4] is None for r in found)
            for _, _, value, _, reason, pct in found:
                if reason is None:
                    sums[key] += value
                    counted.add(key)
                    if pct is not None:
                        pcts[key] = min(pcts.get(key, pct), pct)
                elif reason == NOT_SUPPORTED:
                    why_not[key] = NOT_SUPPORTED
                elif pct is None or pct >= 100 or any_counted:
                    # run and enabled time both 0 (printed as 100 %): the process was off every CPU for the whole
                    # interval, a true 0; or a hybrid CPU's other PMU, on whose cores it did not run
                    pass
                else:
                    # enabled but never on a counter (multiplexed out for a whole interval): the sum would be short
                    why_not.setdefault(key, NOT_COUNTED)
    for key in sums:
        if key not in counted:
            why_not.setdefault(key, NOT_COUNTED)
        if event_name(key)[0] in KERNEL_SIDE and "u" in mods_of[key] and "k" not in mods_of[key]:
            why_not.setdefault(key, "counted in user space only (:u), where this kernel-side event always reads 0: "
                                    "run the watcher as root or set kernel.perf_event_paranoid to 1 or lower")
    return sums, units, pcts, mods_of, why_not


def _count_in(starts, start, end):
    """The inference starts in [start, end)."""
    lo = _bisect(starts, start)
    return _bisect(starts, end) - lo


def _bisect(values, x):
    lo, hi = 0, len(values)
    while lo < hi:
        mid = (lo + hi) // 2
        if values[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


class Counter:
    """`perf stat` attached to a process: its interval lines, each stamped with time.monotonic_ns() on arrival.

    perf writes its counts to a pipe of ours (--log-fd) and its complaints to stderr, which is kept. Verified with
    perf 6.1: perf flushes every interval as it prints it, so the lines arrive on the pipe one interval apart and
    no pty or file to tail is needed."""

    def __init__(self, pid, events=EVENTS, interval_ms=100, perf=None, version=None):
        self.pid = pid
        self.events = tuple(events)
        self.interval_ms = interval_ms
        self.perf = list(perf) if perf else None  # argv of the perf to run; None: find_perf() at start
        self.version = version
        self.lines = []  # (arrival monotonic_ns, text)
        self.stderr = ""
        self.returncode = None
        self.error = None  # why perf could not be started
        self._proc = None
        self._reader = None
        self._err = None
        self._stopped = False

    @property
    def interval_ns(self):
        return int(self.interval_ms * 1_000_000)

    def argv(self):
        return [*self.perf, "stat", "-x,", "-I", str(int(self.interval_ms)), "-e", ",".join(self.events),
                "-p", str(self.pid)]

    def start(self):
        """Start perf; never raises for perf's own failures: failure() says what went wrong."""
        if self._proc is not None or self.error:
            return self
        if self.perf is None:
            self.perf, self.version, self.error = find_perf()
            if self.perf is None:
                return self
        self._err = tempfile.TemporaryFile()  # a file, not a pipe: nobody has to drain it while perf runs
        r, w = os.pipe()
        try:
            # the write end keeps its number in perf (pass_fds), so perf is told that number; C locale: a decimal
            # comma would be read as perf's field separator
            self._proc = subprocess.Popen(self.argv() + ["--log-fd", str(w)], stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=self._err, pass_fds=(w,),
                                          env=dict(os.environ, LC_ALL="C"))
        except OSError as e:
            os.close(r)
            self.error = f"perf could not be started: {e}"
            return self
        finally:
            os.close(w)  # ours: perf holds its own, and its exit is the reader's end of file
        self._reader = threading.Thread(target=self._read, args=(r,), daemon=True)
        self._reader.start()
        return self

    def _read(self, fd):
        with os.fdopen(fd, "rb") as pipe:
            for raw in pipe:
                # one interval's lines come in one write: this stamp is the interval's end plus the pipe's delay
                self.lines.append((time.monotonic_ns(), raw.decode("utf-8", "replace").rstrip("\r\n")))

    def stop(self, timeout=5.0):
        """End perf (SIGINT: it prints the interval under way, then exits), and keep what it said."""
        if self._stopped:
            return self
        self._stopped = True
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGINT)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self.returncode = proc.returncode
        if self._reader is not None:
            self._reader.join(timeout)
        if self._err is not None:
            self._err.seek(0)
            self.stderr = self._err.read().decode("utf-8", "replace")
            self._err.close()
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def failure(self):
        """Why there are no counts, for a user; None when perf printed some."""
        if self.error:
            return self.error
        if any(parse_line(text) for _, text in self.lines):
            return None
        return _explain(self.stderr, self.returncode, self.pid, self.interval_ms)

    def result(self, starts_ns, latencies_ns):
        """The run's counters document: per_inference() of these lines, or unavailable() with the reason."""
        why = self.failure()
        if why:
            return unavailable(why, self.events)
        return per_inference(self.lines, starts_ns, latencies_ns, self.interval_ns, perf_version=self.version)


def _explain(stderr, returncode, pid, interval_ms):
    said = [line.strip() for line in (stderr or "").splitlines() if line.strip()]
    text = " ".join(said)
    if "Problems finding threads" in text or "No such process" in text:
        return f"perf could not attach: process {pid} was gone"
    if re.search(r"[Pp]ermission|Access to performance monitoring|not permitted|EACCES|EPERM", text):
        paranoid = _read("/proc/sys/kernel/perf_event_paranoid")
        return (f"perf has no permission to count process {pid} (it may run as another user, like a container's "
                f"root; kernel.perf_event_paranoid is {paranoid}): run the watcher as root, or "
                f"sudo sysctl kernel.perf_event_paranoid=-1")
    if "Function not implemented" in text or "ENOSYS" in text:
        return "perf_event_open is not implemented here (QEMU user-mode emulation?)"
    if "perf not found for kernel" in text:
        return f"perf does not run for the board's kernel: {said[0]}"
    if said:
        return f"perf stat printed no counts (exit status {returncode}): {said[0]}"
    if returncode is None:
        return "perf stat printed no counts: it was never stopped"
    if returncode == -signal.SIGINT:
        return f"perf stat printed no counts: it was stopped within its first {interval_ms} ms interval"
    return (f"perf stat printed no counts (exit status {returncode}): the run ended within its first "
            f"{interval_ms} ms interval")
