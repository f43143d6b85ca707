#!/bin/sh
# Make (once) a Debian bookworm root filesystem with what the mailiverse package depends on,
# and keep it as a tarball in appliance/.cache/ so later CI runs only unpack it.
# Usage: make-rootfs.sh [OUTPUT.tar]   (root; the mirror is taken from this machine's apt sources)
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
arch=$(dpkg --print-architecture)
out=${1:-$here/.cache/bookworm-$arch-rootfs.tar}
[ -s "$out" ] && { echo "$out"; exit 0; }
[ "$(id -u)" = 0 ] || { echo "make-rootfs.sh: debootstrap needs root" >&2; exit 1; }
mirror=${MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -rhoE '^(URIs:|deb) +[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
           | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}
mkdir -p "$(dirname "$out")"
work=$(mktemp -d "${TMPDIR:-/tmp}/mv-rootfs.XXXXXX")
trap 'umount "$work/root/proc" 2>/dev/null || true; rm -rf --one-file-system "$work"' EXIT
debootstrap --variant=minbase --include=python3 bookworm "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
chroot "$work/root" apt-get clean
tar -C "$work/root" -cf "$out.tmp" .
mv "$out.tmp" "$out"
echo "$out"
