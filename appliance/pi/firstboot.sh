#!/bin/sh
# First-boot set-up of the mailiverse Raspberry Pi image (run once by mailiverse-firstboot.service,
# whose output goes to the console and the journal).
#  - new SSH host keys (the image ships none), the root partition and file system grown to the card;
#  - if the boot partition holds mailiverse.conf (DOMAIN=..., optional HOSTNAME=, ACME_EMAIL=, ACME=no,
#    SSH_KEY="ssh-ed25519 ..." for root's authorized_keys), `mailiverse-admin setup` from it, its output
#    (the DNS records to publish) on the console and in mailiverse-dns.txt on the boot partition, and
#    the service enabled and started; otherwise a message for the first login.
set -u
say() { echo "mailiverse first boot: $*"; }

# SSH host keys of this machine, not of the image
ssh-keygen -A >/dev/null 2>&1 || true

# Grow the root partition to the end of the card, then its ext4 file system.
rootdev=$(findmnt -no SOURCE / || true)
if [ -n "$rootdev" ] && [ -b "$rootdev" ]; then
  name=$(basename "$(readlink -f "$rootdev")")
  disk=$(lsblk -no PKNAME "/dev/$name" 2>/dev/null | head -n1)
  part=$(cat "/sys/class/block/$name/partition" 2>/dev/null || true)
  if [ -n "$disk" ] && [ -n "$part" ]; then
    if growpart "/dev/$disk" "$part" >/dev/null 2>&1; then
      resize2fs "/dev/$name" >/dev/null 2>&1 && say "root file system grown to $(df -h --output=size / | tail -n1 | tr -d ' ')"
    fi
  fi
fi

boot=/boot/firmware
conf=""
for c in "$boot/mailiverse.conf" /boot/mailiverse.conf; do
  [ -f "$c" ] && { conf=$c; break; }
done
note=/etc/motd.d/mailiverse
mkdir -p /etc/motd.d
if [ -z "$conf" ]; then
  cat > "$note" <<'MSG'
mailiverse is installed but not configured.  Set it up with:
    sudo mailiverse-admin setup --domain YOUR.DOMAIN
    sudo systemctl enable --now mailiverse
then publish the DNS records it prints.
MSG
  say "no $boot/mailiverse.conf: log in and run mailiverse-admin setup --domain YOUR.DOMAIN"
  exit 0
fi

# KEY=value lines, read (not run): the file is on a FAT partition anyone with the card can write.
DOMAIN=""; HOST=""; ACME_EMAIL=""; ACME="yes"; SSH_KEY=""
while IFS= read -r line || [ -n "$line" ]; do
  line=$(printf '%s' "$line" | tr -d '\r')
  case "$line" in ''|'#'*) continue ;; esac
  key=${line%%=*}; value=${line#*=}
  value=${value#\"}; value=${value%\"}; value=${value#\'}; value=${value%\'}
  case "$key" in
    DOMAIN) DOMAIN=$value ;;
    HOSTNAME) HOST=$value ;;
    ACME_EMAIL) ACME_EMAIL=$value ;;
    ACME) ACME=$value ;;
    SSH_KEY) SSH_KEY=$value ;;
  esac
done < "$conf"
[ -n "$DOMAIN" ] || { say "$conf has no DOMAIN=; nothing set up"; exit 1; }

if [ -n "$SSH_KEY" ]; then
  install -d -m 0700 /root/.ssh
  printf '%s\n' "$SSH_KEY" >> /root/.ssh/authorized_keys
  chmod 0600 /root/.ssh/authorized_keys
fi
if [ -n "$HOST" ]; then
  short=${HOST%%.*}
  echo "$short" > /etc/hostname
  hostname "$short" 2>/dev/null || true
  sed -i "s/^127\.0\.1\.1.*/127.0.1.1\t$HOST $short/" /etc/hosts
fi

set -- setup --domain "$DOMAIN" --listen 0.0.0.0 --production-ports
[ -n "$HOST" ] && set -- "$@" --hostname "$HOST"
[ -n "$ACME_EMAIL" ] && set -- "$@" --acme-email "$ACME_EMAIL"
[ "$ACME" = no ] && set -- "$@" --no-acme
out=/var/lib/mailiverse/first-boot-setup.txt
if ! /usr/sbin/mailiverse-admin "$@" > "$out" 2>&1; then
  cat "$out"; say "mailiverse-admin setup failed (output in $out)"; exit 1
fi
cat "$out"
# on the boot partition too, to read on another computer
cp "$out" "$boot/mailiverse-dns.txt" 2>/dev/null || true
rm -f "$note"
systemctl enable mailiverse.service >/dev/null 2>&1 || true
systemctl restart --no-block mailiverse.service
say "done; the DNS records above are also in mailiverse-dns.txt on the boot partition"
