"""The appliance's systemd units: each service's sandbox scored by systemd itself (``systemd-analyze
security``, at most 4.0, "OK"), the scores docs/appliance.md shows are the ones measured, and the
privilege separation is wired as described: the listeners under one user, the workers under another,
reached only through a socket only the first may open."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.units import unit_settings

TOP = Path(__file__).resolve().parents[2]
APPLIANCE = TOP / "appliance"
SERVICES = {
    "mailiverse.service": APPLIANCE / "mailiverse.service",
    "mailiverse-worker@.service": APPLIANCE / "mailiverse-worker@.service",
    "mailiverse-firstboot.service": APPLIANCE / "pi" / "mailiverse-firstboot.service",
}
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze (package systemd) is missing")


def exposure(path: Path) -> float:
    assert ANALYZE is not None
    done = subprocess.run(  # noqa: S603
        [ANALYZE, "security", "--offline=yes", "--no-pager", str(path)], capture_output=True, text=True, check=False
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", done.stdout)
    assert match, done.stdout + done.stderr
    return float(match.group(1))


@needs_analyze
@pytest.mark.parametrize("name", sorted(SERVICES))
def test_each_service_scores_ok_or_better(name: str) -> None:
    """systemd's own exposure score of the unit file: at most 4.0 ("OK"); the threshold option agrees."""
    path = SERVICES[name]
    assert exposure(path) <= 4.0
    assert ANALYZE is not None
    within = subprocess.run(  # noqa: S603
        [ANALYZE, "security", "--offline=yes", "--threshold=40", "--no-pager", str(path)],
        capture_output=True,
        check=False,
    )
    assert within.returncode == 0


@needs_analyze
def test_the_docs_show_the_measured_scores() -> None:
    """docs/appliance.md's table of scores says what systemd-analyze says of today's units."""
    doc = (TOP / "docs" / "appliance.md").read_text()
    for name, path in SERVICES.items():
        row = re.search(rf"^\| `{re.escape(name)}` \|[^\n]*\| \*\*(\d+\.\d)\*\*", doc, re.M)
        assert row, f"docs/appliance.md has no score row for {name}"
        assert float(row.group(1)) == exposure(path), name


def test_the_listeners_and_the_workers_run_under_different_users() -> None:
    """The main service (every listener) runs as mailiverse; each worker as mailiverse-worker, started by
    the socket the main service is told to use, which only the main service's user may open; the workers
    have no network, no capability and create no socket, and the firstboot unit keeps only what it needs."""
    main = unit_settings(SERVICES["mailiverse.service"])
    worker = unit_settings(SERVICES["mailiverse-worker@.service"])
    socket = unit_settings(APPLIANCE / "mailiverse-worker.socket")
    (listen,) = socket["ListenStream"]
    assert f"--worker-socket {listen}" in main["ExecStart"][0]
    assert "mailiverse-worker.socket" in main["Requires"][0]
    assert main["User"] == ["mailiverse"] and worker["User"] == ["mailiverse-worker"]
    assert socket["SocketUser"] == main["User"] and socket["SocketMode"] == ["0600"] and socket["Accept"] == ["yes"]
    assert worker["StandardInput"] == ["socket"] and worker["StandardOutput"] == ["socket"]
    assert worker["ExecStart"] == ["/opt/mailiverse/bin/python -I -m mailiverse.delivery.worker"]
    for key, value in {
        "PrivateNetwork": "yes",
        "RestrictAddressFamilies": "none",
        "CapabilityBoundingSet": "",
        "ProtectSystem": "strict",
        "PrivateDevices": "yes",
        "NoNewPrivileges": "yes",
    }.items():
        assert worker[key] == [value], key
    for unit in (main, worker):
        assert "@system-service" in unit["SystemCallFilter"]
        assert unit["MemoryMax"] and unit["ProtectSystem"] == ["strict"] and unit["PrivateDevices"] == ["yes"]
    assert main["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]


def test_the_package_installs_and_wires_every_unit() -> None:
    """build-deb.sh installs the three units; postinst makes the workers' user and enables the socket;
    postrm removes that user on purge; the image enables the socket."""
    build = (APPLIANCE / "build-deb.sh").read_text()
    for unit in ("mailiverse.service", "mailiverse-worker.socket", "mailiverse-worker@.service"):
        assert f'"$here/{unit}" "$stage/lib/systemd/system/{unit}"' in build
    postinst = (APPLIANCE / "debian" / "postinst").read_text()
    assert "useradd --system --gid mailiverse-worker" in postinst
    assert "systemctl enable mailiverse-worker.socket mailiverse.service" in postinst
    assert "userdel mailiverse-worker" in (APPLIANCE / "debian" / "postrm").read_text()
    assert "systemctl enable mailiverse-worker.socket" in (APPLIANCE / "pi" / "build-image.sh").read_text()
