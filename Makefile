# The front door: `make run` and `make test` do all set-up on a fresh Debian machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= ./mailiverse-data
DOMAIN ?= example.org
STAMP := $(VENV)/.stamp-install
# Every dependency's exact version and sha256 hashes (make lock refreshes it; docs/dependencies.md).
LOCK := requirements.lock
# Floors for packages that come in indirectly (Werkzeug through klein); make lock resolves within them.
CONSTRAINTS := constraints.txt
# Debian packages the full test suite drives for real (peers, tools).
SYSTEM_PACKAGES := $(shell cat appliance/test-packages.txt 2>/dev/null)
# Debian packages `make bench` drives: smtp-sink, and the peer it is measured against (Postfix into Dovecot).
BENCH_PACKAGES := $(shell cat appliance/bench-packages.txt 2>/dev/null)

.PHONY: run test test-long install lock sysdeps bench-sysdeps lint bench clean conformance pi-image test-image

$(STAMP): setup.cfg pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# the dependencies (test and bench too) at the locked versions, every file checked against its hash
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK) 2>$(VENV)/pip-install.log \
	  || { cat $(VENV)/pip-install.log; exit 1; }
	@# the checkout itself after them: an editable install has no single file to hash, so it cannot join the
	@# hash-checked step; no dependencies of its own (they are all above) and built by the locked setuptools.
	@# compat mode puts the checkout on sys.path, which twistd's plugin discovery needs
	$(PY) -m pip install --quiet --no-deps --no-build-isolation --config-settings editable_mode=compat -e . \
	  2>>$(VENV)/pip-install.log || { cat $(VENV)/pip-install.log; exit 1; }
	@# a requirement setup.cfg gained but the lock lacks stops here: run make lock
	$(PY) -m pip check
	touch $(STAMP)

install: $(STAMP)

# Refresh $(LOCK) in a throwaway venv with pip-tools: keeps the pins that still fit setup.cfg and
# $(CONSTRAINTS) and adds what is new; UPGRADE=1 moves everything to the newest release they allow.
lock:
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PYTHON) -m venv "$$tmp" && "$$tmp/bin/pip" install --quiet 'pip-tools >= 7.5' && \
	CUSTOM_COMPILE_COMMAND="make lock" "$$tmp/bin/pip-compile" --quiet $(if $(UPGRADE),--upgrade) \
	  --generate-hashes --allow-unsafe --all-build-deps --strip-extras --no-emit-index-url --no-emit-find-links \
	  --extra test --extra bench --constraint $(CONSTRAINTS) --output-file $(LOCK) setup.cfg

sysdeps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing system packages:$$missing"; \
	    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null || \
	      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; }; \
	  else echo "the tests need these Debian packages; install them as root:$$missing"; exit 1; fi; \
	fi

# As sysdeps, for the benchmark; the bench starts its own private instances, so the system services the
# packages come with are stopped and disabled. Not root: the bench runs and skips the peer.
bench-sysdeps:
	@missing=""; for p in $(BENCH_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing system packages:$$missing"; \
	    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null || \
	      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; } \
	      || exit 1; \
	    for service in postfix dovecot; do case "$$missing" in *" $$service"*) \
	      service $$service stop >/dev/null 2>&1; \
	      systemctl disable $$service >/dev/null 2>&1 || update-rc.d $$service disable >/dev/null 2>&1; \
	    esac; done; true; \
	  else echo "the benchmark's peer needs these Debian packages (skipped without them); as root:$$missing"; fi; \
	fi

run: install
	$(VENV)/bin/twistd -n mailiverse --data-dir $(DATA) --domain $(DOMAIN)

# One pytest worker per core (pytest-xdist), each taking whole files, so a module's appliance starts once;
# WORKERS=0 runs in this process (for a debugger or -x).
WORKERS ?= auto
test: install sysdeps
	$(PY) -m pytest -q -n $(WORKERS) --dist loadfile $(PYTEST_ARGS)

test-long: install sysdeps
	LONG=1 $(PY) -m pytest -q -n $(WORKERS) --dist loadfile $(PYTEST_ARGS)

# The Raspberry Pi image (docs/appliance.md): bookworm arm64 from Debian packages, the package built for arm64
# under qemu-user-static. Root; never part of make test. test-image boots it in qemu-system-aarch64.
PI_IMAGE ?= build/pi/mailiverse-pi-bookworm-arm64.img
PI_TOOLS := debootstrap qemu-user-static binfmt-support qemu-system-arm dosfstools mtools fdisk e2fsprogs openssh-client

pi-image:
	@missing=""; for p in $(PI_TOOLS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; fi
	@# a new machine may have binfmt_misc unmounted, or the emulator registered but not enabled
	@if [ "$$(dpkg --print-architecture)" != arm64 ] && ! grep -qs enabled /proc/sys/fs/binfmt_misc/qemu-aarch64; then \
	  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; \
	  update-binfmts --enable qemu-aarch64; \
	fi
	OUT=$(PI_IMAGE) appliance/pi/build-image.sh $(DEB)

test-image: install
	@[ -f $(PI_IMAGE) ] || $(MAKE) pi-image
	LONG=1 MAILIVERSE_PI_IMAGE=$(abspath $(PI_IMAGE)) $(PY) -m pytest -q -s -p no:xdist tests/appliance/test_pi_image.py

conformance: install
	$(PY) -m mailiverse.conformance tests/vectors

# Lint, format, types (Twisted's strictness, setup.cfg [mypy]) and the import layering of docs/architecture.md.
lint: install
	$(VENV)/bin/ruff check mailiverse tests twisted bench
	$(VENV)/bin/ruff format --check mailiverse tests twisted bench
	$(VENV)/bin/mypy mailiverse twisted
	$(VENV)/bin/lint-imports --no-cache .importlinter

bench: install bench-sysdeps
	$(PY) -m bench

clean:
	rm -rf $(VENV) build dist *.egg-info .hypothesis
