#!/usr/bin/env bash
# Sets up everything edgeorch needs on this machine (Debian/Ubuntu, as root), idempotently:
# Docker engine, QEMU user emulation for ARM, debootstrap, and a Python venv with edgeorch.
set -euo pipefail
cd "$(dirname "$0")"
say() { printf '+ %s\n' "$*"; }

need=()
for pair in dockerd:docker.io qemu-aarch64-static:qemu-user-static update-binfmts:binfmt-support \
            debootstrap:debootstrap ssh-keygen:openssh-client ip:iproute2; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if ((${#need[@]})); then
  say "apt-get install ${need[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

# ARM binaries run through QEMU's binfmt handlers (also inside containers and chroots).
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  say "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc"
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
for q in qemu-aarch64 qemu-arm; do
  [ -e "/proc/sys/fs/binfmt_misc/$q" ] || { say "update-binfmts --enable $q"; update-binfmts --enable "$q"; }
done

if ! docker info >/dev/null 2>&1; then
  say "dockerd &  (log: /var/log/edgeorch-dockerd.log)"
  nohup dockerd >/var/log/edgeorch-dockerd.log 2>&1 &
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "error: dockerd did not start; see /var/log/edgeorch-dockerd.log" >&2; exit 3; }
fi

stamp=.venv/.edgeorch-installed
want=$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  [ -x .venv/bin/python ] || { say "python3 -m venv .venv"; python3 -m venv .venv; }
  say "pip install -e '.[models,dev]'"
  .venv/bin/python -m pip install -qq --disable-pip-version-check -e '.[models,dev]'
  echo "$want" > "$stamp"
fi
echo "edgeorch is set up. Activate its environment with:  . .venv/bin/activate"
