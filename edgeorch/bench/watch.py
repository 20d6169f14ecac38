"""The sensor watcher: `python -m edgeorch_bench.watch -- COMMAND...` runs a benchmark run as a child process and
samples the board's sensors from outside it, the same way in both modes (the child is the bare-metal entrypoint or
`docker start -a`), so the sampler never runs in the measured process and `vcgencmd` answers in both modes.

It samples in alternating windows, on then off, and reports the sampler's cost from the run itself: the median
latency of the iterations that started in on-windows over that of the others. The child's JSON document is printed
with its `sensors` replaced by the watcher's; anything else the child printed is passed on untouched. Every
inference's start and latency come after the child's document, in binary (--raw-samples): they stay here, unless
--keep-samples passes them on, as one line of base64 after the document (SAMPLES_MARK, then the bytes).

From here too, so the same way in both modes: with --counters, perf attached to the measured process (the child, or
the container's first process) counts events per inference over the timed loop; with --energy, the board's power
source is sampled for --idle seconds before the run, then in the on-windows, and integrated over the timed loop.
"""

import argparse
import base64
import bisect
import json
import os
import signal
import subprocess
import sys
import threading
import time
from array import array

from . import EXIT_TIMEOUT, RESULT_SCHEMA, SAMPLES_MARK, counters, power, probes


def _parser():
    p = argparse.ArgumentParser(prog="edgeorch_bench.watch", description=__doc__)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between samples in an on-window")
    p.add_argument("--window", type=float, default=2.0, help="seconds of each on- and off-window")
    p.add_argument("--cwd", default=None, help="the directory the command runs in")
    p.add_argument("--tag", default=None, help="the run's name: its mark in the process list, its container's name")
    p.add_argument("--deadline", type=float, default=None,
                   help="seconds after which the run is killed here, whether or not anyone still listens")
    p.add_argument("--container", action="store_true", help="the command runs container --tag: remove it too")
    p.add_argument("--counters", action="store_true",
                   help="count perf's events per inference, perf attached to the run's process from here")
    p.add_argument("--energy", action="store_true", help="energy per inference from the board's power source")
    p.add_argument("--power-meter", default=None, metavar="JSON",
                   help='a command that prints watts, as a JSON list of its words, e.g. ["ina260", "--bus", "1"]')
    p.add_argument("--idle", type=float, default=2.0, help="seconds of idle power sampled before the run")
    p.add_argument("--power-interval", type=float, default=0.1, help="seconds between power samples")
    p.add_argument("--keep-samples", action="store_true",
                   help="pass every inference's start and latency on, after the document (SAMPLES_MARK)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the run's command")
    return p


def sampler_cost(latencies_ns, starts_ns, t0_ns, window_s):
    """The sampler's cost, measured in the run: each on-window's median latency over the mean of its two off-window
    neighbours' (so a drift through the run, warming up or heating, cancels), the median of those ratios, minus one.
    None for a run too short to have an on-window between two off-windows (3 iterations in each). The starts are in
    order (a monotonic clock), so each window is a slice."""
    medians, i = {}, 0
    while i < len(starts_ns):
        w = int((starts_ns[i] - t0_ns) / 1e9 / window_s)
        j = bisect.bisect_left(starts_ns, t0_ns + (w + 1) * window_s * 1e9, i)
        if j - i >= 3:
            medians[w] = sorted(latencies_ns[i:j])[(j - i) // 2]
        i = max(j, i + 1)
    ratios = sorted(medians[w] / ((medians[w - 1] + medians[w + 1]) / 2) for w in medians
                    if w % 2 == 0 and w - 1 in medians and w + 1 in medians)
    return ratios[len(ratios) // 2] - 1 if ratios else None


class _Stopped(Exception):
    """SIGTERM from the orchestrator: the run is given up on."""


class _Term:
    """The SIGTERM handler: raises _Stopped, except while the run is being started, when its pid is not known yet
    and it could not be killed: then the signal is held until the run has started."""

    def __init__(self):
        self.holding, self.arrived = True, False

    def __call__(self, signum, frame):
        if self.holding:
            self.arrived = True
        else:
            raise _Stopped()

    def release(self):
        self.holding = False
        if self.arrived:
            raise _Stopped()


def _kill(child, container):
    """End the run and everything it started: its process group, and its container if it has one."""
    if container:  # `docker start -a` ending does not stop the container
        subprocess.run(["docker", "rm", "-f", container], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    child.wait()


class _PowerThread(threading.Thread):
    """Samples the power source in the thermal sampler's on-windows, so that the cost measured by its windows is
    the cost of both."""

    def __init__(self, power_sampler, interval, windows):
        super().__init__(daemon=True)
        self.power, self.interval, self.windows = power_sampler, interval, windows
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.wait(self.interval):
            if self.windows.on_window():
                self.power.sample()

    def stop(self):
        self._stop_event.set()
        self.join()


def _run_pid(child, tag, container, limit_s=60.0):
    """The pid of the measured process on this host: the child itself, or the container's first process (perf
    cannot count inside a default container, so it counts from here); None if the run ended first."""
    if not container:
        return child.pid
    deadline = time.monotonic() + limit_s
    while child.poll() is None and time.monotonic() < deadline:
        r = subprocess.run(["docker", "inspect", "--format", "{{.State.Pid}}", tag], capture_output=True, text=True)
        pid = r.stdout.strip()
        if r.returncode == 0 and pid.isdigit() and int(pid) > 0:
            return int(pid)
        time.sleep(0.1)  # each look is a docker client process: on a Pi 3 a tenth of a second of CPU
    return None


def _start_counter(child, args):
    """perf attached to the run's process, or (None, why not)."""
    argv, version, reason = counters.find_perf()
    if argv is None:
        return None, reason
    pid = _run_pid(child, args.tag, args.container)
    if pid is None:
        return None, "the run ended before perf could attach"
    counter = counters.Counter(pid, perf=argv, version=version)
    counter.start()
    return counter, None


def _power_source(args):
    """The power source and the idle power sampled before the run, or (None, None, notes)."""
    try:
        meter = json.loads(args.power_meter) if args.power_meter else None
    except ValueError:
        return None, None, [f"--power-meter {args.power_meter!r} is not a JSON list"]
    source, notes = power.find_source(meter=meter)
    if source is None:
        return None, None, notes
    idle = power.PowerSampler(source)
    idle.run_for(args.idle, args.power_interval)
    return source, idle, notes


def main(argv=None):
    args = _parser().parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("edgeorch_bench.watch: no command given after --", file=sys.stderr)
        return 2
    source, idle, notes = _power_source(args) if args.energy else (None, None, [])
    sampler = probes.Sampler(args.interval, window=args.window)
    term = _Term()
    signal.signal(signal.SIGTERM, term)
    counter, why_not = None, "not asked"
    with sampler:
        sampled = power.PowerSampler(source) if source else None
        thread = _PowerThread(sampled, args.power_interval, sampler) if sampled else None
        if thread:
            thread.start()
        # its own session: a kill reaches everything the run started
        child = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=args.cwd, start_new_session=True)
        try:
            term.release()
            if args.counters:
                counter, why_not = _start_counter(child, args)
            out, _ = child.communicate(timeout=args.deadline)
        except (subprocess.TimeoutExpired, _Stopped) as e:
            _stop_all(counter, thread)
            _kill(child, args.tag if args.container else None)
            _print_killed(e, args.deadline)
            return EXIT_TIMEOUT
        finally:
            _stop_all(counter, thread)
    line, _, raw = out.partition(b"\n")
    try:
        doc = json.loads(line)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or "timing" not in doc:  # a failure or a probe: its own words, untouched
        sys.stdout.buffer.write(out)
        return child.returncode
    starts, latencies = _every_sample(doc, raw)
    cost = sampler_cost(latencies, starts, sampler.t0_ns, args.window)
    # t0_ns: the samples' t_s are seconds after it, on the clock of timing.starts_ns (both monotonic)
    doc["sensors"] = {"where": "host", "sources": sampler.sources(), "samples": sampler.samples,
                      "t0_ns": sampler.t0_ns, "max_freqs_mhz": sampler.max_freqs, "window_s": args.window,
                      "sampler_cost": cost, **sampler.summary()}
    if args.counters:
        doc["counters"] = counter.result(starts, latencies) if counter else counters.unavailable(why_not)
    if args.energy:
        doc["energy"] = _energy(source, idle, sampled, notes, starts, latencies, args.power_interval)
    json.dump(doc, sys.stdout)
    sys.stdout.write("\n")
    if args.keep_samples and len(raw) == 16 * len(starts):
        sys.stdout.write(SAMPLES_MARK + base64.b64encode(raw).decode("ascii") + "\n")
    return child.returncode


def _stop_all(*samplers):
    """Stop those of the run's samplers that were started (None: not started)."""
    for live in samplers:
        if live:
            live.stop()


def _print_killed(e, deadline):
    """The error document of a run killed here, past its deadline or at the orchestrator's request."""
    why = (f"after {deadline:g} s (the deadline of --timeout)" if isinstance(e, subprocess.TimeoutExpired)
           else "at the orchestrator's request")
    json.dump({"schema": RESULT_SCHEMA, "status": "error", "error": {
        "kind": "timeout", "message": f"the run was killed on the board {why}"}}, sys.stdout)
    sys.stdout.write("\n")


def _energy(source, idle, sampled, notes, starts, latencies, interval):
    """Energy per inference over the timed loop from the power samples of the on-windows, or why there is none."""
    if sampled and starts:
        return {"source": source.name, "scope": source.scope, **power.summarize(
            sampled.samples, source.kind, starts[0], starts[-1] + latencies[-1], len(latencies),
            idle=idle.samples, rate_hz=1 / interval, wrap=source.wrap)}
    return power.unavailable(notes)


def _every_sample(doc, raw):
    """(starts, latencies) of every timed inference: the child's binary after its document (none where it sent
    none: nothing is measured from a subsample), or the lists of an edgeorch before --raw-samples."""
    timing = doc["timing"]
    count = timing.get("count")
    if not isinstance(count, int):
        return timing.get("starts_ns") or [], timing.get("latencies_ns") or []
    if len(raw) != 16 * count:
        return [], []
    both = array("q", raw)
    if sys.byteorder == "big":  # write_raw's bytes are little-endian
        both.byteswap()
    return both[:count], both[count:]


if __name__ == "__main__":
    sys.exit(main())
