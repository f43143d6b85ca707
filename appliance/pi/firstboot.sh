#!/bin/sh
# First-boot set-up of a mailiverse appliance image (run once by mailiverse-firstboot.service).
# If the boot partition holds mailiverse.conf (DOMAIN=..., optional HOSTNAME=, ACME_EMAIL=, ACME=no),
# configure the appliance from it and start the service; otherwise leave a message for the first login.
set -eu
conf=""
for c in /boot/firmware/mailiverse.conf /boot/mailiverse.conf; do
  [ -f "$c" ] && { conf=$c; break; }
done
note=/etc/motd.d/mailiverse
mkdir -p /etc/motd.d
if [ -z "$conf" ]; then
  cat > "$note" <<'MSG'
mailiverse is installed but not configured.  Set it up with:
    sudo mailiverse-admin setup --domain YOUR.DOMAIN
then publish the DNS records it prints.
MSG
  exit 0
fi
DOMAIN=""; HOSTNAME=""; ACME_EMAIL=""; ACME="yes"
# shellcheck disable=SC1090
. "$conf"
[ -n "$DOMAIN" ] || { echo "mailiverse firstboot: $conf has no DOMAIN=" >&2; exit 1; }
set -- setup --domain "$DOMAIN" --listen 0.0.0.0 --production-ports
[ -n "$HOSTNAME" ] && set -- "$@" --hostname "$HOSTNAME"
[ -n "$ACME_EMAIL" ] && set -- "$@" --acme-email "$ACME_EMAIL"
[ "$ACME" = no ] && set -- "$@" --no-acme
/usr/sbin/mailiverse-admin "$@" | tee /var/lib/mailiverse/first-boot-setup.txt
rm -f "$note"
systemctl restart mailiverse.service
