#!/bin/sh
# Installs a framework bundle into DIR/venv from the wheels in DIR/wheels, offline.
# The image build and the bare-metal deploy both run exactly this, so both modes get the
# same packages the same way.
set -eu
dir=$1
python=${2:-python3}
"$python" -m venv --system-site-packages "$dir/venv"
"$dir/venv/bin/python" -m pip install --quiet --no-index --no-cache-dir \
    --disable-pip-version-check --find-links "$dir/wheels" -r "$dir/wheels/requirements.txt"
