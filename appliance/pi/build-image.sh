#!/bin/sh
# Build the mailiverse Raspberry Pi image (Pi 3, 4, 5, Zero 2 W; Debian bookworm arm64) from Debian
# packages only, after Debian's own raspi images (raspi.debian.net): linux-image-arm64, raspi-firmware
# (non-free-firmware) writing the FAT boot partition (config.txt, cmdline.txt, kernel, initrd, DTBs).
#
#   sudo appliance/pi/build-image.sh [mailiverse_X_arm64.deb]      # or: make pi-image
#
# Writes build/pi/mailiverse-pi-bookworm-arm64.img (OUT= to change).  Without a .deb, the package is
# built inside the arm64 root (under qemu-user-static on another host) with appliance/build-deb.sh, the
# same script as for amd64, so pip picks the aarch64 wheels for the image's Python.  Not vmdb2: this
# script debootstraps into a directory, then makes the partitions without mounting anything (mkfs.ext4 -d, mkfs.vfat + mcopy), so the
# host needs neither loop devices nor the vfat module.  Needs root, debootstrap, qemu-user-static with
# binfmt (non-arm64 host), e2fsprogs >= 1.43, dosfstools, mtools, fdisk.  Network: a Debian mirror, PyPI.
set -eu
[ "$(id -u)" = 0 ] || { echo "build-image.sh: run as root (debootstrap, chroot)" >&2; exit 1; }
deb=${1:-}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
out=${OUT:-$top/build/pi/mailiverse-pi-bookworm-arm64.img}
suite=bookworm
cache=${CACHE:-$top/appliance/.cache/$suite-arm64-pi-rootfs.tar}
kernel_cache=${cache%.tar}-kernel.tar
boot_mb=${BOOT_MB:-512}
started=$(date +%s)

for tool in debootstrap mkfs.ext4 mkfs.vfat mcopy sfdisk; do
  command -v "$tool" >/dev/null || { echo "build-image.sh: missing $tool (apt-get install debootstrap e2fsprogs dosfstools mtools fdisk)" >&2; exit 1; }
done
if [ "$(dpkg --print-architecture)" != arm64 ]; then
  grep -qs enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 \
    || { echo "build-image.sh: no binfmt for aarch64: apt-get install qemu-user-static binfmt-support" >&2; exit 1; }
fi
mirror=${MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(grep -rhoE '^(URIs:|deb) +[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
           | awk '{print $2}' | grep -E '/debian/?$' | head -n1 || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

work=$(mktemp -d "${TMPDIR:-/var/tmp}/mailiverse-pi.XXXXXX")
root="$work/root"
unmount() {
  for m in dev/pts dev proc sys; do umount "$root/$m" 2>/dev/null || true; done
}
trap 'root="$work/debroot"; unmount; root="$work/root"; unmount; rm -rf --one-file-system "$work"' EXIT
in_root() { chroot "$root" env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"; }

# 1. The base system (cached: debootstrap's second stage under emulation takes minutes).
if [ ! -s "$cache" ]; then
  echo "debootstrap $suite arm64 from $mirror"
  mkdir -p "$(dirname "$cache")"
  debootstrap --arch=arm64 --variant=minbase --components=main,non-free-firmware \
    --include=systemd-sysv,udev,kmod,dbus,ifupdown,isc-dhcp-client,iproute2,netbase,ca-certificates,openssh-server,systemd-timesyncd,cloud-guest-utils,fdisk,dosfstools,wpasupplicant,iw,unattended-upgrades,python3,python3-venv,less,nano \
    "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1 || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
  in_root apt-get clean
  tar -C "$root" -cf "$cache.tmp" . && mv "$cache.tmp" "$cache"
  rm -rf --one-file-system "$root"
fi
mount_root() {
  mount -t proc proc "$root/proc"; mount -t sysfs sys "$root/sys"
  mount --bind /dev "$root/dev"; mount --bind /dev/pts "$root/dev/pts"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  # no daemon starts inside the build
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"; chmod 0755 "$root/usr/sbin/policy-rc.d"
}
# The package is built at the same time, in a root of its own (the same base), as both take minutes.
if [ -z "$deb" ]; then
  mkdir -p "$(dirname "$out")"
  rm -f "$(dirname "$out")"/mailiverse_*_arm64.deb
  (
    set -e
    root="$work/debroot"
    mkdir -p "$root"
    tar -C "$root" -xf "$cache"
    mount_root
    mkdir -p "$root/usr/src/mailiverse"
    tar -C "$top" --exclude-vcs --exclude=./.venv --exclude=./build --exclude=./dist --exclude=./appliance/.cache \
      --exclude=__pycache__ --exclude='.*cache' --exclude=.hypothesis --exclude=./mailiverse-data --exclude='*.egg-info' \
      --exclude=./node_modules --exclude=./bench/results -cf - . | tar -C "$root/usr/src/mailiverse" -xf -
    # PyPI through this host's trust (a proxy's CA) and index settings; this root is thrown away
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/build-host-ca.crt"
    # (every variable that names a CA file, as requests prefers REQUESTS_CA_BUNDLE to pip's --cert)
    ca=/etc/ssl/build-host-ca.crt
    in_root env -u PIP_FIND_LINKS DIST_DIR=/usr/src/dist TMPDIR=/var/tmp PIP_CERT=$ca REQUESTS_CA_BUNDLE=$ca \
      CURL_CA_BUNDLE=$ca SSL_CERT_FILE=$ca ${PIP_INDEX_URL:+PIP_INDEX_URL="$PIP_INDEX_URL"} \
      sh /usr/src/mailiverse/appliance/build-deb.sh
    cp "$root"/usr/src/dist/mailiverse_*_arm64.deb "$(dirname "$out")/"
    unmount
    rm -rf --one-file-system "$root"
  ) >"$work/deb.log" 2>&1 &
  debjob=$!
fi
mkdir -p "$root"
if [ -s "$kernel_cache" ]; then
  tar -C "$root" -xf "$kernel_cache"
  mount_root
  in_root apt-get update -q >/dev/null
else
tar -C "$root" -xf "$cache"
mount_root

# 2. The system's configuration, as Debian's raspi images: partitions by label, DHCP on eth0.
cat >"$root/etc/apt/sources.list" <<EOF
deb http://deb.debian.org/debian $suite main non-free-firmware
deb http://deb.debian.org/debian $suite-updates main non-free-firmware
deb http://security.debian.org/debian-security $suite-security main non-free-firmware
EOF
cat >"$root/etc/fstab" <<'EOF'
LABEL=RASPIROOT /              ext4 rw,noatime 0 1
LABEL=RASPIFIRM /boot/firmware vfat rw,noatime,umask=0022 0 2
EOF
echo mailiverse >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tmailiverse\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
mkdir -p "$root/etc/network/interfaces.d" "$root/boot/firmware"
printf 'auto lo\niface lo inet loopback\n\nallow-hotplug eth0\niface eth0 inet dhcp\niface eth0 inet6 auto\n' \
  >"$root/etc/network/interfaces.d/eth0"
# raspi-firmware adds this to cmdline.txt
echo "net.ifnames=0" >"$root/etc/default/raspi-extra-cmdline"
in_root apt-get update -q >/dev/null
# one initramfs (MODULES=most: minutes under emulation), made by the kernel's hook, not again by triggers
mkdir -p "$root/etc/initramfs-tools"
echo "update_initramfs=no" >"$root/etc/initramfs-tools/update-initramfs.conf"
in_root apt-get install -y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  linux-image-arm64 initramfs-tools raspi-firmware firmware-brcm80211 \
  >"$work/apt-kernel.log" 2>&1 || { tail -n 30 "$work/apt-kernel.log" >&2; exit 1; }
echo "update_initramfs=yes" >"$root/etc/initramfs-tools/update-initramfs.conf"
if ! ls "$root"/boot/firmware/initrd.img-* >/dev/null 2>&1; then
  in_root update-initramfs -c -k all >>"$work/apt-kernel.log" 2>&1
fi
# raspi-firmware writes cmdline.txt, config.txt, kernel, initrd and DTBs to /boot/firmware: the root by label
sed -i 's|^#* *ROOTPART=.*|ROOTPART=LABEL=RASPIROOT|' "$root/etc/default/raspi-firmware"
grep -q '^ROOTPART=LABEL=RASPIROOT' "$root/etc/default/raspi-firmware" \
  || echo "ROOTPART=LABEL=RASPIROOT" >>"$root/etc/default/raspi-firmware"
version=$(ls "$root/lib/modules" | sort -V | tail -n1)
for hook in /etc/initramfs/post-update.d/z50-raspi-firmware /etc/kernel/postinst.d/z50-raspi-firmware; do
  [ -x "$root$hook" ] && { in_root "$hook" "$version" "/boot/initrd.img-$version" >>"$work/apt-kernel.log" 2>&1 || true; break; }
done
grep -q 'root=LABEL=RASPIROOT' "$root/boot/firmware/cmdline.txt" \
  || sed -i 's|root=[^ ]*|root=LABEL=RASPIROOT|' "$root/boot/firmware/cmdline.txt"
grep -q 'root=LABEL=RASPIROOT' "$root/boot/firmware/cmdline.txt" \
  || { echo "build-image.sh: cmdline.txt does not name LABEL=RASPIROOT" >&2; cat "$root/boot/firmware/cmdline.txt" >&2; exit 1; }
ls "$root"/boot/firmware/initrd.img-* "$root"/boot/firmware/vmlinuz-* >/dev/null \
  || { echo "build-image.sh: no kernel or initrd on the boot partition" >&2; tail -n 30 "$work/apt-kernel.log" >&2; exit 1; }
# the Pi's boot partition must hold what raspi-firmware wrote
[ -f "$root/boot/firmware/config.txt" ] && [ -f "$root/boot/firmware/cmdline.txt" ] \
  || { echo "build-image.sh: raspi-firmware wrote no config.txt/cmdline.txt" >&2; tail -n 30 "$work/apt-kernel.log" >&2; exit 1; }
# cached too: the kernel's and firmware's initramfs runs (MODULES=most) take many minutes under emulation
in_root apt-get clean
unmount
tar -C "$root" -cf "$kernel_cache.tmp" . && mv "$kernel_cache.tmp" "$kernel_cache"
mount_root
fi

# 3. The mailiverse package: the one built above, or the one given.
if [ -n "${debjob:-}" ]; then
  wait "$debjob" || { echo "build-image.sh: the package build failed:" >&2; tail -n 40 "$work/deb.log" >&2; exit 1; }
  deb=$(ls "$(dirname "$out")"/mailiverse_*_arm64.deb)
fi
cp "$deb" "$root/tmp/mailiverse.deb"
in_root apt-get install -y -q /tmp/mailiverse.deb >"$work/apt-deb.log" 2>&1 || { tail -n 30 "$work/apt-deb.log" >&2; exit 1; }
rm -rf "$root/tmp/mailiverse.deb" "$root/usr/src/mailiverse" "$root/usr/src/dist"
# the package makes its virtualenv with python3-venv only at build time
in_root apt-get purge -y -q python3-venv python3.11-venv python3-pip-whl python3-setuptools-whl >/dev/null 2>&1 || true

# 4. First boot: set-up from the boot partition, the root grown to the card, fresh SSH host keys.
install -m 0644 "$here/mailiverse-firstboot.service" "$root/etc/systemd/system/mailiverse-firstboot.service"
in_root systemctl enable mailiverse-firstboot.service >/dev/null 2>&1
# the service starts once set-up has written /etc/mailiverse/mailiverse.env (first boot does it)
in_root systemctl disable mailiverse.service >/dev/null 2>&1 || true
in_root systemctl enable mailiverse-worker.socket >/dev/null 2>&1
in_root systemctl enable systemd-timesyncd.service >/dev/null 2>&1 || true
install -m 0644 "$here/mailiverse.conf.example" "$root/boot/firmware/mailiverse.conf.example"
rm -f "$root"/etc/ssh/ssh_host_*
# as Debian's raspi images: root logs in on the console without a password until one is set
in_root passwd -d root >/dev/null
# first boot adds SSH_KEY= here; its unit sees only this directory of /root
install -d -m 0700 "$root/root/.ssh"
# SSH only with a key (SSH_KEY in mailiverse.conf): never a password, never the empty one root has on the console
install -d "$root/etc/ssh/sshd_config.d"
printf 'PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitEmptyPasswords no\nPermitRootLogin prohibit-password\n' \
  >"$root/etc/ssh/sshd_config.d/10-mailiverse.conf"
# unattended security updates of the OS (Debian's defaults: the security suite)
printf 'APT::Periodic::Update-Package-Lists "1";\nAPT::Periodic::Unattended-Upgrade "1";\n' >"$root/etc/apt/apt.conf.d/20auto-upgrades"
in_root apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root/usr/sbin/policy-rc.d"
: >"$root/etc/machine-id"; rm -f "$root/var/lib/dbus/machine-id"
printf 'nameserver 127.0.0.1\n' >"$root/etc/resolv.conf"   # dhclient rewrites it
unmount

# 5. The image: a FAT boot partition (RASPIFIRM) and an ext4 root (RASPIROOT), made without mounting.
mkdir -p "$(dirname "$out")"
root_kb=$(du -sk --one-file-system --exclude=./boot/firmware "$root" | cut -f1)
root_mb=$(( root_kb * 12 / 10 / 1024 + 256 ))
rm -f "$work/boot.img" "$work/root.img"
mkfs.vfat -C -n RASPIFIRM -F 32 "$work/boot.img" $(( boot_mb * 1024 )) >/dev/null
(cd "$root/boot/firmware" && MTOOLS_SKIP_CHECK=1 mcopy -s -p -Q -i "$work/boot.img" ./* ::/)
mv "$root/boot/firmware" "$work/firmware" && mkdir -m 0755 "$root/boot/firmware"
mkfs.ext4 -q -L RASPIROOT -d "$root" "$work/root.img" "${root_mb}M" >/dev/null
rm -f "$out"
truncate -s $(( 4 + boot_mb + root_mb ))M "$out"
sfdisk -q "$out" <<EOF
label: dos
start=4MiB, size=${boot_mb}MiB, type=c, bootable
start=$(( 4 + boot_mb ))MiB, type=83
EOF
dd if="$work/boot.img" of="$out" bs=1M seek=4 conv=notrunc,sparse status=none
dd if="$work/root.img" of="$out" bs=1M seek=$(( 4 + boot_mb )) conv=notrunc,sparse status=none
took=$(( $(date +%s) - started ))
echo "image: $out ($(( $(stat -c %s "$out") / 1048576 )) MiB, $(du -m "$out" | cut -f1) MiB used; built in ${took} s)"
echo "flash it, copy mailiverse.conf.example to mailiverse.conf on the boot partition (RASPIFIRM) and set DOMAIN="
