#!/bin/sh
# Installs a framework bundle into DIR/venv from the wheels in DIR/wheels, offline and without
# dependency resolution: the recipe pins every package the framework needs at run time.
# The image build and the bare-metal deploy both run exactly this, so both modes get the
# same packages the same way.
set -eu
dir=$1
python=${2:-python3}
# pip runs from Debian's own pip wheel (python3-venv's) without being installed into the venv: ensurepip installing it
# costs 21 s of CPU under QEMU on an arm64 board here, about as long again as the install itself.
# The image runs it twice, each time on the wheels its context has put there: first a layer of packages several
# frameworks share (torch), then the rest, into the venv the first made.
pip_wheel=$(ls /usr/share/python-wheels/pip-*.whl 2>/dev/null | tail -n 1 || :)
if [ -n "$pip_wheel" ]; then
    [ -e "$dir/venv/bin/python" ] || "$python" -m venv --system-site-packages --without-pip "$dir/venv"
    pip() { PYTHONPATH=$pip_wheel "$dir/venv/bin/python" -m pip "$@"; }
else
    [ -e "$dir/venv/bin/python" ] || "$python" -m venv --system-site-packages "$dir/venv"
    pip() { "$dir/venv/bin/python" -m pip "$@"; }
fi
if [ -s "$dir/wheels/requirements.txt" ]; then
    pip install --quiet --no-index --no-deps --no-cache-dir \
        --disable-pip-version-check --find-links "$dir/wheels" -r "$dir/wheels/requirements.txt"
fi
