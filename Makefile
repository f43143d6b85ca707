# The front door: `make run` and `make test` do all set-up on a fresh Debian machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= ./mailiverse-data
DOMAIN ?= example.org
STAMP := $(VENV)/.stamp-install
# Debian packages the full test suite drives for real (peers, tools).
SYSTEM_PACKAGES := $(shell cat appliance/test-packages.txt 2>/dev/null)

.PHONY: run test test-long install sysdeps lint bench clean conformance

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# compat mode puts the checkout on sys.path, which twistd's plugin discovery needs
	$(PY) -m pip install --quiet --config-settings editable_mode=compat -e '.[test,bench]' 2>$(VENV)/pip-install.log \
	  || { cat $(VENV)/pip-install.log; exit 1; }
	touch $(STAMP)

install: $(STAMP)

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

run: install
	$(VENV)/bin/twistd -n mailiverse --data-dir $(DATA) --domain $(DOMAIN)

test: install sysdeps
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-long: install sysdeps
	LONG=1 $(PY) -m pytest -q $(PYTEST_ARGS)

conformance: install
	$(PY) -m mailiverse.conformance tests/vectors

# Lint, format, types (Twisted's strictness, setup.cfg [mypy]) and the import layering of docs/architecture.md.
lint: install
	$(VENV)/bin/ruff check mailiverse tests twisted bench
	$(VENV)/bin/ruff format --check mailiverse tests twisted bench
	$(VENV)/bin/mypy mailiverse twisted
	$(VENV)/bin/lint-imports --no-cache .importlinter

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) build dist *.egg-info .hypothesis
