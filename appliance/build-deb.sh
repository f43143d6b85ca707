#!/bin/sh
# Build the mailiverse Debian package: ../dist/mailiverse_<version>_<arch>.deb
#
# A virtualenv made with this machine's /usr/bin/python3 (Debian's, so the package runs on the same
# Debian release and architecture) holds the wheel of this project and its dependencies from PyPI (at the versions of requirements.lock),
# and is installed under /opt/mailiverse.  Run from anywhere; needs python3-venv, dpkg-deb and network
# access to PyPI (or PIP_INDEX_URL / PIP_FIND_LINKS pointing at a mirror).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
python=${PYTHON:-/usr/bin/python3}
version=$(sed -n 's/^version *= *//p' "$top/setup.cfg" | head -n1)
arch=$(dpkg --print-architecture)
pyver=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
pynext=$("$python" -c 'import sys; print("%d.%d" % (sys.version_info[0], sys.version_info[1] + 1))')
dist=${DIST_DIR:-$top/dist}
out="$dist/mailiverse_${version}_${arch}.deb"

work=$(mktemp -d "${TMPDIR:-/tmp}/mailiverse-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage="$work/root"
venv=/opt/mailiverse

echo "building mailiverse $version for $arch (Python $pyver)"
"$python" -m venv "$stage$venv"
"$stage$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip wheel
# The wheel is built from a clean copy of the tree: setuptools puts whatever an old build/ holds into it.
mkdir "$work/src"
tar -C "$top" --exclude-vcs --exclude=./.venv --exclude=./build --exclude=./dist --exclude='*.egg-info' \
  --exclude=__pycache__ --exclude='.*cache' --exclude=.hypothesis --exclude=./mailiverse-data -cf - . \
  | tar -C "$work/src" -xf -
"$stage$venv/bin/python" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$work/wheel" "$work/src"
# Its dependencies at the versions and hashes of requirements.lock (docs/dependencies.md), read as constraints.
# A hash anywhere makes pip check every file, so the wheel just built comes with its own.
wheel=$(echo "$work"/wheel/mailiverse-*.whl)
echo "$wheel --hash=sha256:$(sha256sum "$wheel" | cut -d' ' -f1)" >"$work/wheel.txt"
"$stage$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile \
  -c "$top/requirements.lock" -r "$work/wheel.txt"
client="$stage$venv/lib/python$pyver/site-packages/mailiverse/webclient"
[ -f "$client/index.html" ] && [ -f "$client/js/main.js" ] \
  || { echo "build-deb.sh: the wheel carries no web client ($client); see setup.py and MANIFEST.in" >&2; exit 1; }
"$stage$venv/bin/python" -m pip uninstall --quiet --yes pip wheel setuptools
rm -f "$stage$venv"/bin/activate* "$stage$venv"/bin/pip*

# The virtualenv was made at $stage$venv; make it say /opt/mailiverse.
for f in "$stage$venv"/bin/*; do
  if [ -f "$f" ] && [ ! -L "$f" ] && head -c 2 "$f" | grep -q '^#!'; then
    sed -i "1s|^#!.*/python.*|#!$venv/bin/python|" "$f"
  fi
done
sed -i "s|$stage||g" "$stage$venv/pyvenv.cfg"
find "$stage$venv" -name '__pycache__' -type d -prune -exec rm -rf {} +
find "$stage$venv" -name 'dropin.cache' -delete
# Byte-compile now, with the final paths, so the read-only /opt needs no writes at run time.
"$python" -m compileall -q -j 0 -s "$stage" -p / "$stage$venv/lib" >/dev/null

install -D -m 0644 "$here/mailiverse.service" "$stage/lib/systemd/system/mailiverse.service"
install -D -m 0644 "$here/mailiverse-worker.socket" "$stage/lib/systemd/system/mailiverse-worker.socket"
install -D -m 0644 "$here/mailiverse-worker@.service" "$stage/lib/systemd/system/mailiverse-worker@.service"
install -D -m 0644 "$here/mailiverse.env" "$stage/etc/mailiverse/mailiverse.env"
install -D -m 0755 "$here/debian/mailiverse-admin" "$stage/usr/sbin/mailiverse-admin"
install -D -m 0644 "$top/docs/running.md" "$stage/usr/share/doc/mailiverse/running.md"
[ -f "$top/docs/appliance.md" ] && install -D -m 0644 "$top/docs/appliance.md" "$stage/usr/share/doc/mailiverse/appliance.md"
install -D -m 0755 "$here/pi/firstboot.sh" "$stage/usr/lib/mailiverse/firstboot.sh"

mkdir -p "$stage/DEBIAN"
install -m 0755 "$here/debian/postinst" "$here/debian/prerm" "$here/debian/postrm" "$stage/DEBIAN/"
echo /etc/mailiverse/mailiverse.env > "$stage/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: mailiverse
Version: $version
Architecture: $arch
Maintainer: mailiverse developers <mailiverse@localhost>
Installed-Size: $size
Depends: python3 (>= $pyver), python3 (<< $pynext), libpython$pyver-stdlib, passwd, util-linux
Recommends: systemd
Suggests: postgresql
Section: mail
Priority: optional
Homepage: https://github.com/timprepscius/mailiverse
Description: private mail appliance that encrypts mail on arrival
 mailiverse receives mail over SMTP, encrypts each message to its recipient's
 RSA public key at once and serves clients over HTTPS with SRP login.  This
 package runs it as the systemd service mailiverse; configure it with
 "mailiverse-admin setup --domain example.org".
CONTROL

mkdir -p "$dist"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$out" >/dev/null
echo "$out ($(du -k "$out" | cut -f1) KiB, installed $size KiB)"
