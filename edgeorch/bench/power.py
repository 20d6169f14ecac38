"""Energy per inference from the board's own power sensor (RAPL, Jetson INA3221, Pi 5 PMIC) or a meter command.

Each source is a small class with `name`, `kind` ("power": a reading is watts now; "energy": a reading is a
cumulative joule counter), `scope` (what it covers, in words) and `read()`, which raises SourceError(reason) when a
read fails. find_source() picks the first that answers; PowerSampler collects (t_ns, reading) pairs on the clock of
the benchmark's `starts_ns`; summarize() turns them into the average power over the timed phase and millijoules per
inference. Standard library only: this file runs on the boards.
"""

import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import time


class SourceError(Exception):
    """A read failed; the message says why and, where there is one, the fix."""


_open = open  # the opener every sysfs read goes through: tests swap it to act as a non-root user


def _sys(root, path):
    return os.path.join(root, path.lstrip("/"))


def _read(path, opener=None):
    try:
        with (opener or _open)(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _number(path, opener=None):
    """An integer sysfs value, raising SourceError where it cannot be read (PermissionError passes through)."""
    try:
        with (opener or _open)(path) as f:
            raw = f.read().strip()
    except PermissionError:
        raise
    except OSError as e:
        raise SourceError(f"cannot read {path}: {e.strerror or e}") from e
    try:
        return int(raw)
    except ValueError:
        raise SourceError(f"{path} holds {raw!r}, not a number") from None


# --- RAPL (Intel, and AMD Zen under the same powercap interface) ----------------------------------------------

POWERCAP = "/sys/class/powercap"

RAPL_ROOT_ONLY = (
    "{path} is readable by root only since Linux 5.10 (CVE-2020-8694, PLATYPUS; backported to 5.4.77): run the "
    "watcher as root, or give read access: `sudo chmod a+r /sys/class/powercap/intel-rapl:*/energy_uj` (until the "
    "next boot), or a udev rule such as /etc/udev/rules.d/99-rapl.rules: SUBSYSTEM==\"powercap\", ACTION==\"add\", "
    "RUN+=\"/bin/chgrp power /sys%p/energy_uj\", RUN+=\"/bin/chmod g+r /sys%p/energy_uj\" (a group rather than a+r: "
    "the counter is the side channel the CVE is about)")


class RaplSource:
    """The summed energy counters of the CPU packages, in joules, unwrapped zone by zone."""

    kind = "energy"
    wrap = None  # read() unwraps each zone itself: the sum of several counters cannot be unwrapped afterwards
    scope = "CPU package(s): cores, caches, uncore and iGPU; not DRAM, disks, fans or the power supply"

    def __init__(self, zones, opener=None):
        """`zones`: (name, zone directory) of top-level package zones."""
        self.zones = list(zones)
        self.name = "rapl:" + "+".join(name for name, _ in self.zones)
        self._open = opener or _open
        self._ranges = {}
        for _, path in self.zones:
            raw = _read(os.path.join(path, "max_energy_range_uj"), self._open)
            self._ranges[path] = int(raw) if raw and raw.isdigit() else None
        self._last = {}
        self._total_uj = 0

    def read(self):
        raws = {}
        for _, path in self.zones:
            file = os.path.join(path, "energy_uj")
            try:
                raws[path] = _number(file, self._open)
            except PermissionError as e:
                shown = file[file.index(POWERCAP):] if POWERCAP in file else file
                raise SourceError(RAPL_ROOT_ONLY.format(path=shown)) from e
        for path, raw in raws.items():
            last = self._last.get(path)
            if last is None:
                self._total_uj += raw  # the first read only sets where each zone's counter stands
            elif raw >= last:
                self._total_uj += raw - last
            elif self._ranges[path]:
                # a counter that went down wrapped once: reads come far more often than a wrap (minutes at 100 W)
                self._total_uj += raw + self._ranges[path] - last
            else:
                self._last.update(raws)
                raise SourceError(f"{path}/energy_uj went down and max_energy_range_uj is unknown: cannot unwrap")
        self._last.update(raws)
        return self._total_uj / 1e6


def _rapl(root, opener=None):
    """(RaplSource or None, notes)."""
    zones, notes = [], []
    # top-level zones only: intel-rapl:N:M (core, uncore, dram) lie inside package N, so adding them counts twice;
    # intel-rapl-mmio:N repeats package N through MMIO on recent Intel laptops and does not match this pattern
    for path in sorted(glob.glob(_sys(root, POWERCAP + "/intel-rapl:*"))):
        base = os.path.basename(path)
        if not re.fullmatch(r"intel-rapl:\d+", base):
            continue
        name = _read(os.path.join(path, "name"), opener) or base
        if not name.startswith("package"):
            # psys (the whole SoC platform on laptops) contains the packages
            notes.append(f"rapl: skipped {base} ({name}): not a package zone")
            continue
        zones.append((name, path))
    if not zones:
        return None, notes + [f"rapl: no {POWERCAP}/intel-rapl:* package zone (not an Intel or AMD x86 with powercap)"]
    return RaplSource(zones, opener), notes


# --- Jetson INA3221 ---------------------------------------------------------------------------------------------

# A board's input rail covers the others (on a Nano, POM_5V_GPU and POM_5V_CPU are inside POM_5V_IN), so it is
# used alone. A board without one (AGX Orin: VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0, VDDQ_VDD2_1V8AO; AGX Xavier)
# has disjoint rails, summed. Either way the carrier board is not measured.
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")


def _skip_rail(label):
    # "NC": channel not connected; "sum of shunt voltages": the driver's summation channel (in7)
    return not label or label.upper() == "NC" or "sum of shunt" in label.lower()


class Ina3221Source:
    """Watts from INA3221 rails: the input rail where the board has one, else the sum of its rails."""

    kind = "power"
    wrap = None

    def __init__(self, rails, opener=None):
        """`rails`: (label, reader) where reader(opener) gives that rail's watts."""
        self.rails = list(rails)
        self.name = "ina3221:" + "+".join(label for label, _ in self.rails)
        inputs = len(self.rails) == 1 and self.rails[0][0] in INPUT_RAILS
        self.scope = ("the module's input rail: not the carrier board" if inputs
                      else "the sum of the module's rails: not the carrier board")
        self._open = opener or _open

    def read(self):
        try:
            return sum(reader(self._open) for _, reader in self.rails)
        except PermissionError as e:
            raise SourceError(f"cannot read {e.filename}: permission denied") from e


def _hwmon_rail(hwmon, n):
    volt, curr = os.path.join(hwmon, f"in{n}_input"), os.path.join(hwmon, f"curr{n}_input")

    def read(opener):
        return _number(volt, opener) * _number(curr, opener) / 1e6  # mV x mA

    return read


def _iio_rail(device, n):
    power = os.path.join(device, f"in_power{n}_input")

    def read(opener):
        return _number(power, opener) / 1e3  # mW

    return read


def _ina3221(root, opener=None):
    """(Ina3221Source or None, notes)."""
    rails, notes = [], []
    # JetPack 5/6 (L4T 35+): hwmon, whose index changes between boots, so a rail is known by its label only
    for hwmon in sorted(glob.glob(_sys(root, "/sys/class/hwmon/hwmon*"))):
        if _read(os.path.join(hwmon, "name"), opener) != "ina3221":
            continue
        for label_path in sorted(glob.glob(os.path.join(hwmon, "in*_label"))):
            n = re.search(r"in(\d+)_label$", label_path).group(1)
            label = _read(label_path, opener)
            if _skip_rail(label) or not os.path.exists(os.path.join(hwmon, f"curr{n}_input")):
                continue
            if _read(os.path.join(hwmon, f"in{n}_enable"), opener) == "0":
                notes.append(f"ina3221: rail {label} is disabled (in{n}_enable = 0)")
                continue
            rails.append((label, _hwmon_rail(hwmon, n)))
    # JetPack 4 (L4T 32): the ina3221x iio driver, rails named by rail_name_N, power in mW
    if not rails:
        pattern = "/sys/bus/i2c/drivers/ina3221x/*/iio:device*/rail_name_*"
        for name_path in sorted(glob.glob(_sys(root, pattern))):
            device, n = os.path.dirname(name_path), name_path.rsplit("_", 1)[1]
            label = _read(name_path, opener)
            if _skip_rail(label) or not os.path.exists(os.path.join(device, f"in_power{n}_input")):
                continue
            rails.append((label, _iio_rail(device, n)))
    if not rails:
        return None, notes + ["ina3221: no hwmon named ina3221 in /sys/class/hwmon and no "
                              "/sys/bus/i2c/drivers/ina3221x/*/iio:device* (not a Jetson, or a Nano 2GB, "
                              "which has none)"]
    inputs = [rail for rail in rails if rail[0] in INPUT_RAILS]
    return Ina3221Source(inputs[:1] or rails, opener), notes


# --- Raspberry Pi 5 PMIC ----------------------------------------------------------------------------------------

_PMIC_LINE = re.compile(r"^\s*(\S+)_([AV])\s+(?:current|volt)\(\d+\)=([-+\d.eE]+)[AV]\s*$", re.MULTILINE)


def pmic_rails(text):
    """{rail: (volts, amps)} from `vcgencmd pmic_read_adc`; rails without both halves (EXT5V_V, BATT_V) left out."""
    volts, amps = {}, {}
    for rail, unit, value in _PMIC_LINE.findall(text or ""):
        try:
            (amps if unit == "A" else volts)[rail] = float(value)
        except ValueError:
            continue
    return {rail: (volts[rail], amps[rail]) for rail in volts if rail in amps}


def _run_vcgencmd(args, timeout=2.0):
    """vcgencmd's stdout, or SourceError saying why there is none."""
    exe = shutil.which("vcgencmd")
    if not exe:
        raise SourceError("no vcgencmd on PATH (Raspberry Pi OS has it)")
    try:
        out = subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SourceError(f"vcgencmd {' '.join(args)} gave no answer within {timeout:g} s") from None
    except OSError as e:
        raise SourceError(f"cannot run vcgencmd: {e}") from e
    if out.returncode != 0:
        said = (out.stderr or out.stdout).strip()
        hint = " (vcgencmd needs /dev/vcio: run as root or join the video group)" if re.search(
            r"vcio|VCHI|ermission", said) else ""
        raise SourceError(f"vcgencmd {' '.join(args)} exited {out.returncode}: {said[:200]!r}{hint}")
    return out.stdout


class PmicSource:
    """Watts summed over the Pi 5 PMIC's rails (V x A), through `vcgencmd pmic_read_adc`."""

    name = "pmic"
    kind = "power"
    wrap = None
    # The PMIC's output rails, not the 5 V input: USB peripherals, the fan, and the PMIC's own conversion losses
    # are not in the sum, so it reads below wall power.
    scope = "the sum of the PMIC's output rails: not the 5 V input (USB devices, fan, conversion losses)"

    def __init__(self, vcgencmd=None):
        """`vcgencmd(args)` returns vcgencmd's stdout or raises SourceError; it is a process per read (milliseconds
        on a Pi 5), a cost the watcher's on/off windows measure."""
        self._vcgencmd = vcgencmd or _run_vcgencmd

    def read(self):
        try:
            out = self._vcgencmd(["pmic_read_adc"])
        except OSError as e:
            raise SourceError(f"cannot run vcgencmd: {e}") from e
        rails = pmic_rails(out)
        if not rails:
            shown = (out or "").strip()[:200]
            raise SourceError(f"vcgencmd pmic_read_adc printed no rail readings (only a Raspberry Pi 5 has this "
                              f"PMIC): {shown!r}")
        return sum(v * a for v, a in rails.values())


# --- an external meter ------------------------------------------------------------------------------------------

# a whole number (not the 219 of "INA219"), then its unit if it is W or mW (not "Wh")
_WATTS = re.compile(r"(?<![\w.])([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)(?!\.?\d)(?:\s*(mW|W)(?![A-Za-z]))?")


def parse_watts(text):
    """Watts from a meter's output: the first number marked W or mW if one is ("5.1V 0.64A 3.25W"), else the first
    number; None without one."""
    found = [(float(m.group(1)), m.group(2)) for m in _WATTS.finditer(text or "")]
    for value, unit in found:
        if unit:
            return value / 1000 if unit == "mW" else value
    return found[0][0] if found else None


# A meter's command may hold a secret (a smart plug's token, a lab PDU's password): the inventory names where it is on
# the board, never the command itself, so that it is on no command line edgeorch makes (the board's `ps`), in no
# commands.log, and in no result; results name the meter by its program and a hash of its command
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def meter_reference(words):
    """What kind of `power_meter:` the inventory gives: "env" (env:NAME, a variable of the watcher's environment on
    the board), "file" (@/path, a file on the board), "program" (one word: a program run without arguments, which
    holds no secret), or None for a command with arguments (refused: its words would show everywhere)."""
    words = [words] if isinstance(words, str) else list(words)
    if len(words) != 1:
        return None
    word = words[0]
    if word.startswith("env:"):
        return "env" if _ENV_NAME.fullmatch(word[4:]) else None
    if word.startswith("@"):
        return "file" if word[1:].startswith("/") else None
    return "program"


def _parse_meter(text, origin):
    """(argv, env) from what a reference holds: a JSON list of words, a JSON object {"command": [...], "env": {...}}
    (the env given to the meter alone: a token it reads from there is not even in the meter's own `ps` line), or
    words as a shell would split them (# starts a comment)."""
    text = text.strip()
    try:
        found = json.loads(text) if text[:1] in "[{" else None
    except ValueError as e:
        raise SourceError(f"{origin} is not valid JSON ({e.msg} at line {e.lineno})") from None
    if isinstance(found, dict):
        argv, env = found.get("command"), found.get("env") or {}
    else:
        argv, env = found, {}
        if found is None:
            try:
                argv = shlex.split(text, comments=True)
            except ValueError as e:
                raise SourceError(f"{origin} cannot be split into words: {e}") from None
    if not isinstance(argv, list) or not argv or not all(isinstance(w, str) for w in argv):
        raise SourceError(f"{origin} holds no command: write its words, e.g. `ina260 --bus 1`, or JSON "
                          '{"command": ["tool", "--token-from-env"], "env": {"TOKEN": "..."}}')
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise SourceError(f"{origin}: its \"env\" must map names to strings")
    return argv, env


def _private_file(path):
    """The text of a meter file on the board, only if no other login can have written it: a plain file (not a link),
    owned by this login or root, writable by its owner alone."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as e:
        raise SourceError(f"cannot read @{path} on the board: {e.strerror} (a link is refused: name the file itself)"
                          ) from None
    with os.fdopen(fd, encoding="utf-8", errors="replace") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise SourceError(f"@{path} is not a plain file")
        if st.st_uid not in (os.getuid(), 0) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise SourceError(f"@{path} could have been written by another login (owner uid {st.st_uid}, mode "
                              f"{stat.S_IMODE(st.st_mode):o}): its command would run as this one; make it this "
                              f"login's, mode 600: chmod 600 {path}")
        return f.read(65536)


def resolve_meter(meter, environ=None):
    """(argv, env, origin): the meter's command from the inventory's `power_meter:` as the board has it: env:NAME,
    @/path, or the words themselves (origin "" then)."""
    words = [meter] if isinstance(meter, str) else list(meter)
    kind = meter_reference(words)
    if kind == "env":
        name = words[0][4:]
        value = (os.environ if environ is None else environ).get(name)
        if not value:
            raise SourceError(f"env:{name} is not set in the environment edgeorch's watcher gets on the board (its "
                              "login's non-interactive SSH environment: /etc/environment, or ~/.ssh/environment "
                              "with PermitUserEnvironment)")
        return (*_parse_meter(value, f"env:{name}"), f"env:{name}")
    if kind == "file":
        return (*_parse_meter(_private_file(words[0][1:]), words[0]), words[0])
    argv = shlex.split(meter) if isinstance(meter, str) else list(meter)
    return argv, {}, ""


class MeterSource:
    """Watts printed by a command (a USB meter's tool, an INA219/INA260 reader, a smart plug's client), run without a
    shell. Its name, and every message about it, show its program and a hash of its command, never its arguments or
    environment: they may hold a token."""

    kind = "power"
    wrap = None
    scope = "what the meter measures"

    def __init__(self, argv, timeout=5.0, env=None, origin=""):
        self.argv = shlex.split(argv) if isinstance(argv, str) else list(argv)
        if not self.argv:
            raise ValueError("a meter command needs at least a program")
        self.env = dict(env or {})
        digest = hashlib.sha256(json.dumps([self.argv, sorted(self.env.items())]).encode()).hexdigest()[:12]
        program = os.path.basename(self.argv[0])
        self.name = f"meter:{program}#{digest}"
        self.shown = f"meter {program} (#{digest}{', from ' + origin if origin else ''})"
        self.timeout = timeout
        # what a message must never repeat, should the meter print it back (a URL with its token, in an error)
        self._secrets = sorted({w for w in [*self.argv[1:], *self.env.values()] if len(w) >= 4}, key=len,
                               reverse=True)

    @classmethod
    def from_reference(cls, meter, timeout=5.0, environ=None):
        argv, env, origin = resolve_meter(meter, environ)
        return cls(argv, timeout=timeout, env=env, origin=origin)

    def _scrub(self, text):
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:200]

    def read(self):
        try:
            # its own session: a timeout ends the meter and anything it started, never left polling the bus
            proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    errors="replace", start_new_session=True,
                                    env={**os.environ, **self.env} if self.env else None)
        except OSError as e:
            raise SourceError(f"{self.shown} cannot run: {e.strerror or type(e).__name__}") from None
        try:
            out, err = proc.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            out, err = proc.communicate()
            raise SourceError(f"{self.shown} gave no answer within {self.timeout:g} s; it printed "
                              f"{self._scrub((out + err).strip())!r}") from None
        if proc.returncode != 0:
            raise SourceError(f"{self.shown} exited {proc.returncode}; it printed "
                              f"{self._scrub((out + err).strip())!r}")
        watts = parse_watts(out)
        if watts is None:
            raise SourceError(f"{self.shown} printed no number of watts: {self._scrub((out + err).strip())!r}")
        return watts


# --- choosing one -----------------------------------------------------------------------------------------------

def find_source(meter=None, root="/", vcgencmd=None):
    """(source or None, notes): an explicit meter, else RAPL, INA3221, the Pi 5 PMIC, whichever first answers one
    read(); the notes say what was looked for and why each was not used. `root` prefixes every sysfs path."""
    notes = []
    if meter:
        try:
            source = MeterSource.from_reference(meter)
            source.read()
            return source, notes
        except SourceError as e:
            # no fall-back: a board sensor covers something else than the meter the user asked for
            return None, [f"meter: {e}; no board sensor used instead, because a meter was asked for"]
    for find in (_rapl, _ina3221):
        source, found_notes = find(root)
        notes += found_notes
        if source is None:
            continue
        try:
            source.read()
            return source, notes
        except SourceError as e:
            notes.append(f"{source.name.split(':')[0]}: {e}")
    source = PmicSource(vcgencmd)
    try:
        source.read()
        return source, notes
    except SourceError as e:
        notes.append(f"pmic: {e}")
    return None, notes


# --- sampling and the summary ----------------------------------------------------------------------------------

class PowerSampler:
    """(t_ns, reading) samples of one source: sample() is called by the watcher's sampler thread at its own pace;
    run_for() measures alone (idle power before a run)."""

    def __init__(self, source, clock=time.monotonic_ns):
        self.source = source
        # CLOCK_MONOTONIC is system-wide: the benchmark's starts_ns, taken in another process (in a container too:
        # Docker gives it no time namespace), are on the same clock
        self.clock = clock
        self.samples = []
        self.errors = 0
        self.last_error = None

    def sample(self):
        """Append one sample; a failed read is counted, not raised, so one glitch does not end the run."""
        before = self.clock()
        try:
            reading = self.source.read()
        except SourceError as e:
            self.errors += 1
            self.last_error = str(e)
            return None
        # the middle of the read: a vcgencmd call takes milliseconds
        sample = ((before + self.clock()) // 2, reading)
        self.samples.append(sample)
        return sample

    def run_for(self, seconds, interval):
        """Sample every `interval` seconds for `seconds`, first and last included; the samples taken."""
        first = len(self.samples)
        start = time.monotonic()
        n = 0
        while True:
            self.sample()
            n += 1
            due = start + n * interval  # on a schedule, so slow reads do not stretch the rate
            if due > start + seconds:
                break
            time.sleep(max(0.0, due - time.monotonic()))
        return self.samples[first:]


_FIELDS = ("kind", "avg_power_w", "idle_power_w", "energy_mj", "energy_above_idle_mj", "duration_s", "inferences",
           "samples", "idle_samples", "rate_hz", "reason", "idle_reason")


def _average(samples, kind, wrap):
    """(watts, None) over `samples` (sorted), or (None, why)."""
    if len(samples) < 2:
        return None, f"{len(samples)} sample(s)"
    if kind == "power":
        return sum(r for _, r in samples) / len(samples), None
    if kind != "energy":
        raise ValueError(f"kind must be 'power' or 'energy', not {kind!r}")
    span_s = (samples[-1][0] - samples[0][0]) / 1e9
    if span_s <= 0:
        return None, "all samples at one instant"
    joules = 0.0
    for (_, a), (_, b) in zip(samples, samples[1:]):
        if b >= a:
            joules += b - a
        elif wrap:
            joules += b + wrap - a  # went down: wrapped once between the two
        else:
            return None, "the energy counter went down and its range (wrap) is unknown"
    return joules / span_s, None


def summarize(samples, kind, start_ns, end_ns, inferences, idle=None, rate_hz=None, wrap=None):
    """Average power over the timed phase [start_ns, end_ns], idle power, and millijoules per inference, as a
    JSON-ready dict; a value not measured is None, with a reason. `wrap`: an energy counter's range, where the
    source does not unwrap it itself."""
    inside = sorted((t, r) for t, r in samples if start_ns <= t <= end_ns)
    duration_s = (end_ns - start_ns) / 1e9
    avg, why = _average(inside, kind, wrap)
    reason = None
    if avg is None:
        reason = (f"power: {why} inside the timed phase of {duration_s:.3g} s (2 needed): run longer (a longer "
                  f"--min-time) or sample more often" if len(inside) < 2 else f"power: {why}")
    idle_avg, idle_reason = None, "no idle power was measured"
    if idle is not None:
        idle_sorted = sorted(idle)
        idle_avg, why = _average(idle_sorted, kind, wrap)
        idle_reason = None if idle_avg is not None else f"idle: {why} (2 needed): measure idle for longer"
    energy = above = None
    if avg is not None and inferences and inferences > 0 and duration_s > 0:
        energy = avg * duration_s / inferences * 1000
        if idle_avg is not None:
            above = (avg - idle_avg) * duration_s / inferences * 1000
    elif avg is not None:
        reason = f"energy per inference: {inferences!r} inferences in {duration_s:.3g} s"
    if rate_hz is None and len(inside) >= 2 and inside[-1][0] > inside[0][0]:
        rate_hz = (len(inside) - 1) / ((inside[-1][0] - inside[0][0]) / 1e9)
    return {"kind": kind, "avg_power_w": avg, "idle_power_w": idle_avg, "energy_mj": energy,
            "energy_above_idle_mj": above, "duration_s": duration_s, "inferences": inferences,
            "samples": len(inside), "idle_samples": None if idle is None else len(idle), "rate_hz": rate_hz,
            "reason": reason, "idle_reason": idle_reason}


def unavailable(notes):
    """summarize()'s shape with every number None and the reason why: the notes of find_source()."""
    doc = dict.fromkeys(_FIELDS)
    doc["reason"] = "; ".join(notes) or "no power source"
    doc["idle_reason"] = "no power source"
    return doc
