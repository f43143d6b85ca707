#!/bin/sh
# Make a mailiverse image from a Raspberry Pi OS Lite (arm64, bookworm) image.
#
#   sudo appliance/pi/build-image.sh 2024-11-19-raspios-bookworm-arm64-lite.img.xz [mailiverse_X_arm64.deb]
#
# Writes mailiverse-pi.img next to the input.  Without a .deb, the package is built inside the image
# (arm64, under qemu-user-static) with appliance/build-deb.sh, so the wheels match the Pi's Python.
# Network: only the Raspberry Pi OS / Debian package mirrors and PyPI.  Needs root, losetup (util-linux),
# qemu-user-static and binfmt-support (on a non-arm64 host), xz-utils, e2fsprogs.
set -eu
[ "$(id -u)" = 0 ] || { echo "build-image.sh: run as root (loop devices, chroot)" >&2; exit 1; }
src=${1:?usage: build-image.sh RASPIOS_LITE_ARM64.img.xz [DEB]}
deb=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=${OUT:-$(dirname "$src")/mailiverse-pi.img}
grow_mb=${GROW_MB:-1024}

case "$src" in
  *.xz) xz -dc "$src" > "$out" ;;
  *) cp "$src" "$out" ;;
esac
truncate -s +"${grow_mb}M" "$out"
# grow the root partition (the second) into the added space
echo ", +" | sfdisk -N 2 --no-reread "$out" >/dev/null
loop=$(losetup --show -fP "$out")
mnt=$(mktemp -d)
cleanup() {
  for m in dev/pts dev proc sys boot/firmware; do umount "$mnt/$m" 2>/dev/null || true; done
  umount "$mnt" 2>/dev/null || true
  losetup -d "$loop" 2>/dev/null || true
  rmdir "$mnt" 2>/dev/null || true
}
trap cleanup EXIT
e2fsck -pf "${loop}p2" >/dev/null || true
resize2fs "${loop}p2" >/dev/null
mount "${loop}p2" "$mnt"
mount "${loop}p1" "$mnt/boot/firmware"
mount --bind /dev "$mnt/dev"; mount --bind /dev/pts "$mnt/dev/pts"
mount -t proc proc "$mnt/proc"; mount -t sysfs sys "$mnt/sys"
if [ "$(dpkg --print-architecture)" != arm64 ]; then
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || { echo "install qemu-user-static and binfmt-support" >&2; exit 1; }
fi
cp /etc/resolv.conf "$mnt/etc/resolv.conf.mailiverse" 2>/dev/null && mv "$mnt/etc/resolv.conf.mailiverse" "$mnt/etc/resolv.conf" || true

chroot "$mnt" apt-get update -q
chroot "$mnt" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
if [ -z "$deb" ]; then
  mkdir -p "$mnt/usr/src/mailiverse"
  tar -C "$top" --exclude=.venv --exclude=.git --exclude=dist --exclude=appliance/.cache -cf - . | tar -C "$mnt/usr/src/mailiverse" -xf -
  chroot "$mnt" env DIST_DIR=/usr/src/dist sh /usr/src/mailiverse/appliance/build-deb.sh
  deb=$(ls "$mnt"/usr/src/dist/mailiverse_*_arm64.deb)
  rm -rf "$mnt/usr/src/mailiverse"
fi
cp "$deb" "$mnt/tmp/mailiverse.deb"
chroot "$mnt" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q /tmp/mailiverse.deb
rm -f "$mnt/tmp/mailiverse.deb"; rm -rf "$mnt/usr/src/dist"
install -m 0644 "$here/mailiverse-firstboot.service" "$mnt/etc/systemd/system/mailiverse-firstboot.service"
chroot "$mnt" systemctl enable mailiverse-firstboot.service
# the service starts only after set-up has written /etc/mailiverse/mailiverse.env
chroot "$mnt" systemctl disable mailiverse.service >/dev/null 2>&1 || true
install -m 0644 "$here/mailiverse.conf.example" "$mnt/boot/firmware/mailiverse.conf.example"
chroot "$mnt" apt-get clean
echo "image: $out  (flash it, copy mailiverse.conf.example to mailiverse.conf on the boot partition, set DOMAIN=)"
