#!/usr/bin/env bash
# Runs the test suite: unit tests (no Docker) while the simulated fleet starts, then integration tests against a
# real Docker engine and that fleet (real sshd, QEMU-emulated ARM boards, real frameworks), in two parts side by side
# (part b on an x86 sim board of its own; tests/integration/conftest.py says which tests each part has).
#   ./test.sh           the default tier: every path once, on its smallest case
#   ./test.sh --all     also the exhaustive tier (every network, every framework installed under QEMU on every ARM
#                       board): run it after changing a recipe (images/), an adapter or an exporter
# Other arguments go to pytest (e.g. -q, -x, -k NAME).
set -euo pipefail
cd "$(dirname "$0")"
unset EDGEORCH_INVENTORY  # the tests name their inventories: the shipped one, part b's
# A fresh run writes about 40 GB: Docker images, the build cache (~/.cache/edgeorch), the sim boards' own engines
# under this clone (a second clone's fleets take as much again); --all about 30 GB more
all=
case " $* " in *" --all "*) all=1 ;; esac
need_gb=50
if [ -n "$all" ]; then need_gb=80; fi
free_gb=$(( $(df -Pk . | awk 'NR == 2 {print $4}') / 1048576 ))
if [ "$free_gb" -lt "$need_gb" ]; then
  echo "warning: $free_gb GB free here; a first run of the suite writes about $((need_gb - 10)) GB (fewer once its" \
       "images and caches are there, more beside another clone's fleets: invoke sim.down there): free space if" \
       "tests fail" >&2
fi
./setup.sh
# The fleet starts in the background while the unit tests run, in four parts: the x86 board of each part of the
# integration tests, which they wait for; the bookworm Pis and the trixie boards (mmdebstraps and apt under
# QEMU: CPU for many minutes) at a lower priority, on while the x86 tests run: the tests that use them run last.
fleet_dir=$(mktemp -d -t edgeorch-sim-up.XXXXXX)  # a log per part, each with its commands.log beside it
start_part() {  # PART NICENESS HOSTS
  mkdir "$fleet_dir/$1"
  EDGEORCH_RESULTS=$fleet_dir/$1 nice -n "$2" .venv/bin/invoke sim.up --host "$3" >"$fleet_dir/$1/sim-up.log" 2>&1 \
    </dev/null &
}
start_part x86 0 x86; x86=$!
part_b_inventory=$PWD/tests/integration/part_b/inventory.yaml
EDGEORCH_INVENTORY=$part_b_inventory start_part x86-b 0 x86; x86_b=$!
pis=rpi3-bookworm  # the default tier's bookworm Pi (tests/integration/conftest.py's BOOKWORM); --all adds rpi4
if [ -n "$all" ]; then pis=pi; fi
start_part pi 10 "$pis"; pi=$!
start_part trixie 15 trixie; trixie=$!
part_b=
trap 'kill $part_b "$x86" "$x86_b" "$pi" "$trixie" 2>/dev/null || true' EXIT
part_failed() {  # PART
  tail -n 40 "$fleet_dir/$1/sim-up.log"
  echo "error: the sim boards of part $1 did not start (log: $fleet_dir/$1/sim-up.log)" >&2
}
# the tests open the HTML report in a real headless browser (Debian's Chromium)
if ! command -v chromium >/dev/null; then
  printf '+ apt-get install chromium\n'
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1
fi
tests() {  # pytest ARGS, where none selected (exit 5, e.g. -k NAME matches only the other tier's) is no failure
  local rc=0
  .venv/bin/python -m pytest "$@" || rc=$?
  [ "$rc" -eq 5 ] && rc=0
  return "$rc"
}
tests tests/unit "$@"
started=$SECONDS
wait "$x86" || { part_failed x86; exit 1; }
wait "$x86_b" || { part_failed x86-b; exit 1; }
printf 'the x86 sim boards are up (%d s after the unit tests; the ARM boards start on: %s)\n' $((SECONDS - started)) \
  "$fleet_dir"
echo "integration tests, part a here and part b beside it (its output follows; log: $fleet_dir/part-b.log)"
part_b_tests() {  # pytest ARGS; under --all, part b's board then goes (some 15 GB), while part a goes on for an hour
  local rc=0
  tests tests/integration --part b "$@" || rc=$?
  if [ -n "$all" ]; then .venv/bin/invoke sim.down || echo "warning: part b's sim board is still up" >&2; fi
  return "$rc"
}
EDGEORCH_INVENTORY=$part_b_inventory part_b_tests "$@" >"$fleet_dir/part-b.log" 2>&1 </dev/null &
part_b=$!
status=0
tests tests/integration --part a "$@" || status=$?
wait "$part_b" || status=1
part_b=
printf '\nintegration tests, part b:\n'
cat "$fleet_dir/part-b.log"
wait "$pi" || { part_failed pi; status=1; }
wait "$trixie" || { part_failed trixie; status=1; }
if [ "$status" -ne 0 ]; then  # a full disk fails tests anywhere: say how much is left
  df -Ph . | awk 'NR == 2 {print "disk: " $4 " free here after the tests (" $5 " used)"}' >&2
fi
exit "$status"
