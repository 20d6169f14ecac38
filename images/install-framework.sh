#!/bin/sh
# Installs a framework bundle into DIR/venv from the wheels in DIR/wheels, offline and without
# dependency resolution: the recipe pins every package the framework needs at run time.
# The image build and the bare-metal deploy both run exactly this, so both modes get the
# same packages the same way.
set -eu
dir=$1
python=${2:-python3}
"$python" -m venv --system-site-packages "$dir/venv"
"$dir/venv/bin/python" -m pip install --quiet --no-index --no-deps --no-cache-dir \
    --disable-pip-version-check --find-links "$dir/wheels" -r "$dir/wheels/requirements.txt"
