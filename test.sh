#!/usr/bin/env bash
# Runs the test suite: unit tests (no Docker) while the simulated fleet starts, then integration tests against a
# real Docker engine and that fleet (real sshd, QEMU-emulated ARM boards, real frameworks).
#   ./test.sh           the default tier: every path once, on its smallest case
#   ./test.sh --all     also the exhaustive tier (every network, every framework installed under QEMU on every ARM
#                       board): run it after changing a recipe (images/), an adapter or an exporter
# Other arguments go to pytest (e.g. -q, -x, -k NAME).
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
# The fleet starts in the background (debootstraps, apt under QEMU: mostly waiting) while the unit tests run.
fleet_dir=$(mktemp -d -t edgeorch-sim-up.XXXXXX)
fleet_log=$fleet_dir/sim-up.log  # its commands.log beside it
EDGEORCH_RESULTS=$fleet_dir .venv/bin/invoke sim.up >"$fleet_log" 2>&1 </dev/null &
fleet=$!
trap 'kill "$fleet" 2>/dev/null || true' EXIT
# the tests open the HTML report in a real headless browser (Debian's Chromium)
if ! command -v chromium >/dev/null; then
  printf '+ apt-get install chromium\n'
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1
fi
.venv/bin/python -m pytest tests/unit "$@"
started=$SECONDS
if ! wait "$fleet"; then
  tail -n 40 "$fleet_log"
  echo "error: the simulated fleet did not start (log: $fleet_log)" >&2
  exit 1
fi
printf 'the simulated fleet is up (%d s after the unit tests; log: %s)\n' $((SECONDS - started)) "$fleet_log"
.venv/bin/python -m pytest tests/integration "$@"
