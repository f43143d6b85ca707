"""Homes on two separate PostgreSQL servers (private clusters the test starts with initdb and pg_ctl), the
metabase on the shared server: mail over SMTP reaches accounts on both; one server stopped for real
(``pg_ctl stop -m immediate``) gives 451 to its accounts only while the other's mail is stored, ``mailiverse-admin
homes`` reports it down; started again, a sender's retry delivers and nothing is lost; ``user move-home`` moves an
account from one server to the other."""

from __future__ import annotations

import re
import smtplib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mailiverse.testing_db import create_postgres_database, drop_postgres_database, require_postgres
from tests.support.harness import DOMAIN, Appliance, stored, tls_context
from tests.support.pgcluster import Cluster, require_pg_binaries, running_cluster
from tests.support.smtp import make_message

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.postgres]

USERS = ("alice", "bob", "carol", "dave")
#: How long a sender keeps retrying after a 451 (the router answers a failed home "down" for 2 s).
RETRY_FOR_S = 30


@dataclass
class TwoServers:
    app: Appliance
    clusters: dict[str, Cluster]


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[TwoServers]:
    """home1 on cluster A, home2 on cluster B, the metabase on the shared server; an appliance using them."""
    require_postgres()
    bin_dir = require_pg_binaries()
    metabase = create_postgres_database("mv_meta")
    try:
        with running_cluster(bin_dir) as first, running_cluster(bin_dir) as second:
            clusters = {"home1": first, "home2": second}
            args = ["--metabase", metabase]
            for name, cluster in clusters.items():
                args += ["--home", f"{name}={cluster.create_database('mv_' + name)}"]
            app = Appliance(tmp_path / "appliance", extra_args=args)
            app.start()
            try:
                yield TwoServers(app, clusters)
            finally:
                app.stop()
    finally:
        drop_postgres_database(metabase)


def _homes(app: Appliance, *args: str) -> list[list[str]]:
    return [line.split("\t") for line in app.admin("homes", *args).stdout.decode().splitlines() if line]


def _objects(app: Appliance) -> dict[str, int]:
    return {line[0]: int(line[2].split()[0]) for line in _homes(app)}


def _send(app: Appliance, rcpts: list[str], subject: str) -> dict[str, tuple[int, bytes]]:
    """Refused recipients by address (empty: all accepted); every recipient refused raises as smtplib does."""
    with smtplib.SMTP("127.0.0.1", app.smtp_port, local_hostname="client.test", timeout=30) as smtp:
        smtp.starttls(context=tls_context(app))
        try:
            return smtp.sendmail("bob@remote.test", rcpts, make_message(subject, f"{subject}\n", to=", ".join(rcpts)))
        except smtplib.SMTPRecipientsRefused as error:
            return dict(error.recipients)


def test_a_stopped_server_holds_its_accounts_mail_and_a_retry_delivers_after_restart(two_servers: TwoServers) -> None:
    app, clusters = two_servers.app, two_servers.clusters
    for name in USERS:
        app.add_user(name, "v2")
    home_of = {line[0]: line[1] for line in _homes(app, "--users")}
    assert sorted(home_of.values()) == ["home1", "home1", "home2", "home2"], home_of
    on_a = [f"{name}@{DOMAIN}" for name in USERS if home_of[name] == "home1"]
    on_b = [f"{name}@{DOMAIN}" for name in USERS if home_of[name] == "home2"]

    assert _send(app, on_a + on_b, "both servers up") == {}
    assert _objects(app) == {"home1": 4, "home2": 4}  # 2 accounts x (original + twin) each

    clusters["home2"].stop("immediate")
    assert not clusters["home2"].running()
    refused = _send(app, on_a + on_b, "server B stopped")
    assert sorted(refused) == sorted(on_b), refused
    assert {code for code, _ in refused.values()} == {451}, refused
    for address in on_a:
        assert len(stored(app, address.split("@")[0], "Mail/In/")) == 2, address
    health = {line[0]: line for line in _homes(app)}
    assert health["home2"][-1].startswith("down"), health
    assert health["home1"][-1].startswith("up"), health
    assert int(health["home1"][2].split()[0]) == 8, health

    clusters["home2"].start()
    # The sender retries after the 451, as senders do; the router asks a failed home again after 2 s.
    deadline = time.monotonic() + RETRY_FOR_S
    retries = 0
    while True:
        refused = _send(app, on_b, "server B stopped")
        assert all(code == 451 for code, _ in refused.values()), refused
        if not refused or time.monotonic() > deadline:
            break
        retries += 1
        time.sleep(0.5)
    assert refused == {}, f"still refused after {retries} retries over {RETRY_FOR_S} s"
    for name in USERS:
        assert len(stored(app, name, "Mail/In/")) == 2, name
        assert len(stored(app, name, "Mail/In_Json/")) == 2, name
    assert _objects(app) == {"home1": 8, "home2": 8}
    assert all(line[-1].startswith("up") for line in _homes(app))


def test_move_home_moves_an_account_between_servers(two_servers: TwoServers) -> None:
    app = two_servers.app
    for name in USERS:
        app.add_user(name, "v2")
    home_of = {line[0]: line[1] for line in _homes(app, "--users")}
    mover = next(name for name in USERS if home_of[name] == "home1")
    for i in range(5):
        assert _send(app, [f"{mover}@{DOMAIN}"], f"before the move {i}") == {}
    assert _objects(app) == {"home1": 10, "home2": 0}

    moved = app.admin("user", "move-home", mover, "home2").stdout.decode()
    summary = re.search(r"moved (\S+) from (\S+) to (\S+): (\d+) object\(s\)", moved)
    assert summary is not None, moved
    assert summary.group(1, 2, 3, 4) == (mover, "home1", "home2", "10")
    assert {line[0]: line[1] for line in _homes(app, "--users")}[mover] == "home2"
    assert _objects(app) == {"home1": 0, "home2": 10}
    assert len(stored(app, mover, "Mail/In/")) == 5

    # New mail follows the account to the other server (once the front end's map entry expires, 2 s).
    deadline = time.monotonic() + RETRY_FOR_S
    while (refused := _send(app, [f"{mover}@{DOMAIN}"], "after the move")) and time.monotonic() < deadline:
        assert all(code == 451 for code, _ in refused.values()), refused
        time.sleep(0.5)
    assert refused == {}
    assert len(stored(app, mover, "Mail/In/")) == 6
    assert _objects(app) == {"home1": 0, "home2": 12}
