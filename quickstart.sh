#!/usr/bin/env bash
# Quick start: set up this machine, start the simulated fleet, and benchmark TFLite
# MobileNet-v2 on every simulated board, in Docker and on bare metal.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
.venv/bin/invoke sim.up --host sim
# The ARM boards run under QEMU (~2.5 s per MobileNet-v2 inference), hence few iterations and a short
# stopping rule here: 5 to 8 pairs, at most 5 minutes a board, each run at least 2 s. The defaults (50
# iterations, at least 5 s a run, 5 to 40 pairs until the 95% CI is within ±1%, 30 minutes a cell) are
# meant for real boards.
.venv/bin/invoke bench --host sim --framework tflite --model mobilenet_v2 --iterations 5 --warmup 1 --min-time 2 \
  --max-pairs 8 --max-time 300
