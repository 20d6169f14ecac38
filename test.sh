#!/usr/bin/env bash
# Runs the whole test suite: unit tests (seconds) then integration tests against a real
# Docker engine and the simulated fleet (real sshd, QEMU-emulated ARM boards, real TFLite).
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
# the tests open the HTML report in a real headless browser (Debian's Chromium)
if ! command -v chromium >/dev/null; then
  printf '+ apt-get install chromium\n'
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null
fi
.venv/bin/python -m pytest tests/unit "$@"
.venv/bin/python -m pytest tests/integration "$@"
