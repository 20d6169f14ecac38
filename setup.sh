#!/usr/bin/env bash
# Sets up everything edgeorch needs on this machine (Debian/Ubuntu, as root), idempotently:
# Docker engine, QEMU user emulation for ARM, mmdebstrap, and a Python venv with edgeorch.
set -euo pipefail
cd "$(dirname "$0")"
say() { printf '+ %s\n' "$*"; }
log=/var/log/edgeorch-setup.log  # apt's own chatter goes here; shown when a step fails
quietly() { "$@" >>"$log" 2>&1 || { tail -n 20 "$log" >&2; echo "error: \`$*\` failed (log: $log)" >&2; exit 1; }; }

need=()
# binutils of each arch: TVM's compiled models are linked here for the boards (edgeorch/models/export_tvm.py);
# arch-test: mmdebstrap (a Recommends) refuses a foreign architecture's rootfs without it
for pair in dockerd:docker.io mmdebstrap:mmdebstrap arch-test:arch-test ssh-keygen:openssh-client ip:iproute2 \
            aarch64-linux-gnu-ld:binutils-aarch64-linux-gnu x86_64-linux-gnu-ld:binutils-x86-64-linux-gnu; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if ((${#need[@]})); then
  say "apt-get install ${need[*]}"
  quietly apt-get update -q
  quietly env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# ARM binaries run through QEMU's binfmt handlers (also inside containers and chroots).
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  say "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc"
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
# QEMU 10 from Debian trixie, not bookworm's 7.2 (qemu-user-static, whose handlers are replaced where it is
# installed): under 7.2 the cpuinfo library inside ONNX Runtime >= 1.23
# and LiteRT 2.x crashes on the simulated arm64 board (docs/reference/frameworks-and-boards.md, "Version choices,
# and why"). Its static binaries are
# unpacked under $qemu_dir and registered with the F flag, so chroots and containers need no copy of them.
qemu_dir=/usr/local/lib/edgeorch/qemu
qemu_version=1:10.0.13+ds-0+deb13u1
if [ "$(cat "$qemu_dir/VERSION" 2>/dev/null)" != "$qemu_version" ]; then
  say "apt-get download qemu-user=$qemu_version (trixie) into $qemu_dir"
  tmp=$(mktemp -d)
  echo "deb http://deb.debian.org/debian trixie main" > "$tmp/sources.list"
  apt_opts=(-q -o "Dir::Etc::SourceList=$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache")
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial"
  quietly apt-get "${apt_opts[@]}" update
  (cd "$tmp" && apt-get "${apt_opts[@]}" download "qemu-user=$qemu_version" >"$tmp/download.log" 2>&1) \
    || { cat "$tmp/download.log" >&2; echo "error: could not download qemu-user $qemu_version" >&2; exit 1; }
  dpkg-deb -x "$tmp"/qemu-user_*.deb "$tmp/x"
  mkdir -p "$qemu_dir"
  install -m 755 "$tmp/x/usr/bin/qemu-aarch64" "$tmp/x/usr/bin/qemu-arm" "$qemu_dir/"
  echo "$qemu_version" > "$qemu_dir/VERSION"
  rm -rf "$tmp"
fi
# magic and mask of 64-bit ARM and 32-bit ARM ELF executables, as Debian's qemu-user-binfmt registers them
declare -A magic=([qemu-aarch64]='\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
                  [qemu-arm]='\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00')
mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
for q in qemu-aarch64 qemu-arm; do
  if ! grep -qs "interpreter $qemu_dir/$q" "/proc/sys/fs/binfmt_misc/$q"; then
    say "register $qemu_dir/$q as the binfmt handler $q"
    [ -e "/proc/sys/fs/binfmt_misc/$q" ] && echo -1 > "/proc/sys/fs/binfmt_misc/$q"
    printf ':%s:M::%s:%s:%s:PF\n' "$q" "${magic[$q]}" "$mask" "$qemu_dir/$q" > /proc/sys/fs/binfmt_misc/register
  fi
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
  say "pip install -e '.[models,dev,farm]'"
  .venv/bin/python -m pip install -qq --disable-pip-version-check -e '.[models,dev,farm]'
  echo "$want" > "$stamp"
fi
echo "edgeorch is set up. Activate its environment with:  . .venv/bin/activate"
