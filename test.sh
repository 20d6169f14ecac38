#!/usr/bin/env bash
# Runs the whole test suite: unit tests (seconds) then integration tests against a real
# Docker engine and the simulated fleet (real sshd, QEMU-emulated ARM boards, real TFLite).
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
.venv/bin/python -m pytest tests/unit "$@"
.venv/bin/python -m pytest tests/integration "$@"
