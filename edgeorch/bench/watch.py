"""The sensor watcher: `python -m edgeorch_bench.watch -- COMMAND...` runs a benchmark run as a child process and
samples the board's sensors from outside it, the same way in both modes (the child is the bare-metal entrypoint or
`docker start -a`), so the sampler never runs in the measured process and `vcgencmd` answers in both modes.

It samples in alternating windows, on then off, and reports the sampler's cost from the run itself: the median
latency of the iterations that started in on-windows over that of the others. The child's JSON document is printed
with its `sensors` replaced by the watcher's; anything else the child printed is passed on untouched.
"""

import argparse
import json
import os
import signal
import subprocess
import sys

from . import EXIT_TIMEOUT, RESULT_SCHEMA, probes


def _parser():
    p = argparse.ArgumentParser(prog="edgeorch_bench.watch", description=__doc__)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between samples in an on-window")
    p.add_argument("--window", type=float, default=2.0, help="seconds of each on- and off-window")
    p.add_argument("--cwd", default=None, help="the directory the command runs in")
    p.add_argument("--tag", default=None, help="the run's name: its mark in the process list, its container's name")
    p.add_argument("--deadline", type=float, default=None,
                   help="seconds after which the run is killed here, whether or not anyone still listens")
    p.add_argument("--container", action="store_true", help="the command runs container --tag: remove it too")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the run's command")
    return p


def sampler_cost(latencies_ns, starts_ns, t0_ns, window_s):
    """The sampler's cost, measured in the run: each on-window's median latency over the mean of its two off-window
    neighbours' (so a drift through the run, warming up or heating, cancels), the median of those ratios, minus one.
    None for a run too short to have an on-window between two off-windows (3 iterations in each)."""
    windows = {}
    for latency, start in zip(latencies_ns, starts_ns):
        windows.setdefault(int((start - t0_ns) / 1e9 / window_s), []).append(latency)
    medians = {w: sorted(v)[len(v) // 2] for w, v in windows.items() if len(v) >= 3}
    ratios = sorted(medians[w] / ((medians[w - 1] + medians[w + 1]) / 2) for w in medians
                    if w % 2 == 0 and w - 1 in medians and w + 1 in medians)
    return ratios[len(ratios) // 2] - 1 if ratios else None


class _Stopped(Exception):
    """SIGTERM from the orchestrator: the run is given up on."""


def _stop(signum, frame):
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


def main(argv=None):
    args = _parser().parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print("edgeorch_bench.watch: no command given after --", file=sys.stderr)
        return 2
    sampler = probes.Sampler(args.interval, window=args.window)
    signal.signal(signal.SIGTERM, _stop)
    with sampler:
        # its own session: a kill reaches everything the run started
        child = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=args.cwd, start_new_session=True)
        try:
            out, _ = child.communicate(timeout=args.deadline)
        except (subprocess.TimeoutExpired, _Stopped) as e:
            _kill(child, args.tag if args.container else None)
            why = (f"after {args.deadline:g} s (the deadline of --timeout)" if isinstance(e, subprocess.TimeoutExpired)
                   else "at the orchestrator's request")
            json.dump({"schema": RESULT_SCHEMA, "status": "error", "error": {
                "kind": "timeout", "message": f"the run was killed on the board {why}"}}, sys.stdout)
            sys.stdout.write("\n")
            return EXIT_TIMEOUT
    out = out.decode(errors="replace")
    try:
        doc = json.loads(out)
    except json.JSONDecodeError:
        doc = None
    if not isinstance(doc, dict) or "timing" not in doc:  # a failure or a probe: its own words, untouched
        sys.stdout.write(out)
        return child.returncode
    timing = doc["timing"]
    cost = sampler_cost(timing["latencies_ns"], timing.get("starts_ns") or [], sampler.t0_ns, args.window)
    doc["sensors"] = {"where": "host", "sources": sampler.sources(), "samples": sampler.samples,
                      "max_freqs_mhz": sampler.max_freqs, "window_s": args.window, "sampler_cost": cost,
                      **sampler.summary()}
    json.dump(doc, sys.stdout)
    sys.stdout.write("\n")
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
