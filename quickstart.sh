#!/usr/bin/env bash
# Quick start: set up this machine, start the simulated fleet, and benchmark TFLite
# MobileNet-v2 on every simulated board, in Docker and on bare metal.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
.venv/bin/invoke sim.up
# The ARM boards run under QEMU (~2 s per MobileNet-v2 inference), hence few iterations here;
# the defaults (50 iterations, 5 warm-up, 3 pairs) are meant for real boards.
.venv/bin/invoke bench --host sim --framework tflite --model mobilenet_v2 --iterations 10 --warmup 2 --repeat 3
