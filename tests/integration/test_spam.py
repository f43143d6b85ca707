"""Spam, judged in the one moment the appliance can read a message: a real twistd with a real rspamd
(``--rspamd``, its own configuration and Redis, DNS from the test's server only), and the built-in check
(GTUBE, ``--dnsbl`` zones of the test's DNS server) without one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mailiverse.delivery.spamcheck import GTUBE
from tests.support.dnsserver import DnsProcess, Zone, start_dns_process
from tests.support.e2e import Device
from tests.support.harness import DOMAIN, Appliance, free_port, stored
from tests.support.independent import open_mail
from tests.support.rspamd import RspamdProcess, start_rspamd
from tests.support.smtp import SmtpSession

pytestmark = pytest.mark.integration

BOB = f"bob@{DOMAIN}"
#: A DNS blocklist of the test's: it lists 127.0.0.1, the address the test's SMTP client connects from.
BLOCKLIST = "bl.dnsbl.test"


@dataclass
class Setup:
    app: Appliance
    bob: rsa.RSAPrivateKey
    rspamd: RspamdProcess | None


def mail(subject: str, body: str = "Shall we meet for lunch on Thursday at the usual place?") -> bytes:
    return (
        f"From: Ann <ann@friends.test>\r\nTo: {BOB}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@friends.test>\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\n\r\n"
        f"{body}\r\n"
    ).encode()


def send(app: Appliance, message: bytes) -> tuple[int, bytes]:
    session = SmtpSession(app.smtp_port, timeout=60)
    try:
        session.hello()
        session.envelope([BOB], sender="ann@friends.test")
        return session.send_data(message)
    finally:
        session.close()


def twin_of(setup: Setup, folder: str, subject: str) -> dict[str, Any]:
    """The twin of the message with ``subject`` in bob's ``folder`` (AssertionError when it is not there)."""
    for path in stored(setup.app, "bob", f"{folder}/"):
        original = open_mail(setup.bob, setup.app.admin("store", "cat", "bob", path).stdout)
        if f"Subject: {subject}\r\n".encode() in original:
            twin_path = path.replace(f"{folder}/", f"{folder}_Json/", 1)
            return dict(json.loads(open_mail(setup.bob, setup.app.admin("store", "cat", "bob", twin_path).stdout)))
    raise AssertionError(f"no message {subject!r} in {folder}")


@pytest.fixture(scope="module")
def dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsProcess]:
    zone = Zone()
    zone.update({f"1.0.0.127.{BLOCKLIST}": {"A": ["127.0.0.2"], "TXT": ["listed for testing"]}})
    server = start_dns_process(zone, tmp_path_factory.mktemp("dns"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def filtered(tmp_path_factory: pytest.TempPathFactory, dns: DnsProcess) -> Iterator[Setup]:
    """An appliance (one worker) whose received mail goes through a real rspamd with the test rules."""
    tmp = tmp_path_factory.mktemp("filtered")
    rspamd = start_rspamd(tmp / "rspamd", dns.address, test_rules=True)
    host, port = dns.address
    app = Appliance(
        tmp / "appliance", extra_args=["--workers", "1", "--dns-server", f"{host}:{port}", "--rspamd", rspamd.url]
    )
    app.start()
    try:
        yield Setup(app, app.add_user("bob", "v2"), rspamd)
    finally:
        app.stop()
        rspamd.stop()


@pytest.fixture(scope="module", params=["1", "0"], ids=["workers", "no-workers"])
def builtin(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, dns: DnsProcess
) -> Iterator[Setup]:
    """An appliance without rspamd, asking the test's blocklist."""
    host, port = dns.address
    app = Appliance(
        tmp_path_factory.mktemp("builtin") / "appliance",
        extra_args=["--workers", request.param, "--dns-server", f"{host}:{port}", "--dnsbl", BLOCKLIST],
    )
    app.start()
    try:
        yield Setup(app, app.add_user("bob", "v2"), None)
    finally:
        app.stop()


def test_rspamd_rejects_gtube_with_554_and_nothing_is_stored(filtered: Setup) -> None:
    before = stored(filtered.app, "bob", "Mail/")
    code, reply = send(filtered.app, mail("gtube", GTUBE.decode()))
    assert (code, reply[:9]) == (554, b"554 5.7.1"), reply
    assert stored(filtered.app, "bob", "Mail/") == before
    assert "refused with 554: spam" in filtered.app.log()


def test_ham_is_delivered_with_rspamds_report_in_the_twin(filtered: Setup) -> None:
    code, reply = send(filtered.app, mail("lunch on thursday"))
    assert code == 250, reply
    spam = twin_of(filtered, "Mail/In", "lunch on thursday")["spam"]
    assert (spam["spam"], spam["checker"], spam["action"]) == (False, "rspamd", "no action")
    assert spam["threshold"] == 15 and spam["score"] < 4
    assert spam["symbols"] and all(symbol.isupper() for symbol in spam["symbols"])


def test_rspamds_add_header_files_the_message_in_the_spam_folder(filtered: Setup) -> None:
    code, reply = send(filtered.app, mail("offer MV-TEST-ADD-HEADER"))
    assert code == 250, reply
    twin = twin_of(filtered, "Mail/Spam", "offer MV-TEST-ADD-HEADER")
    assert twin["spam"]["action"] == "add header" and "MV_TEST_ADD_HEADER" in twin["spam"]["symbols"]
    assert twin["authentication"]["quarantined"] is True
    assert twin["original"].startswith("Mail/Spam/")
    assert "filed as spam (spam-quarantine)" in filtered.app.log()


@pytest.mark.parametrize("word", ["MV-TEST-GREYLIST", "MV-TEST-SOFT-REJECT"])
def test_rspamds_greylist_and_soft_reject_defer_with_451(filtered: Setup, word: str) -> None:
    before = stored(filtered.app, "bob", "Mail/")
    code, reply = send(filtered.app, mail(f"later {word}"))
    assert (code, reply[:9]) == (451, b"451 4.7.1"), reply
    assert stored(filtered.app, "bob", "Mail/") == before


def test_with_rspamd_down_mail_is_delivered_unchecked_and_the_log_says_so(tmp_path: Path, dns: DnsProcess) -> None:
    host, port = dns.address
    nowhere = f"http://127.0.0.1:{free_port()}"
    app = Appliance(
        tmp_path / "appliance", extra_args=["--workers", "1", "--dns-server", f"{host}:{port}", "--rspamd", nowhere]
    )
    app.start()
    try:
        bob = app.add_user("bob", "v2")
        code, reply = send(app, mail("while rspamd sleeps"))
        assert code == 250, reply
        twin = twin_of(Setup(app, bob, None), "Mail/In", "while rspamd sleeps")
        assert twin["spam"]["checker"] == "built-in"
        log = app.log()
        assert "spam filter: no report (ConnectionRefusedError); message" in log and "delivered unchecked" in log
        assert "while rspamd sleeps" not in log and "ann@friends.test" not in log
    finally:
        app.stop()


def test_the_builtin_check_refuses_gtube(builtin: Setup) -> None:
    code, reply = send(builtin.app, mail("gtube builtin", f"Test: {GTUBE.decode()}"))
    assert (code, reply[:9]) == (554, b"554 5.7.1"), reply


def test_a_sender_on_a_configured_blocklist_goes_to_the_spam_folder(builtin: Setup) -> None:
    """127.0.0.1 is listed in the test's zone: the message is stored, in Mail/Spam, the listing named."""
    code, reply = send(builtin.app, mail("from a listed address"))
    assert code == 250, reply
    twin = twin_of(builtin, "Mail/Spam", "from a listed address")
    assert twin["spam"] == {
        "spam": True,
        "checker": "built-in",
        "action": "add header",
        "score": 5,
        "threshold": 5,
        "symbols": ["DNSBL_LISTED"],
    }


TRAINING_TEXT = (
    "Congratulations, your address was selected in our international lottery draw. Claim your cash prize "
    "today by sending your bank details and a small processing fee to our agent before the offer expires."
)


def test_the_clients_spam_buttons_train_the_real_rspamd_and_move_the_message(filtered: Setup, tmp_path: Path) -> None:
    """``mailiverse-client spam ID`` hands the decrypted message to the appliance, which has rspamd learn it
    (its learned count goes up) and moves it to Spam; ``not-spam`` learns it as ham and moves it back."""
    assert filtered.rspamd is not None
    device = Device(tmp_path, filtered.app)
    password = "carol's spam training password"
    invite = filtered.app.admin("invite", "create").stdout.decode().strip()
    assert device.cli("carol", "signup", "--invite", invite, password=password).returncode == 0
    message = mail("lottery win", TRAINING_TEXT).replace(BOB.encode(), f"carol@{DOMAIN}".encode())
    session = SmtpSession(filtered.app.smtp_port, timeout=60)
    try:
        session.hello()
        session.envelope([f"carol@{DOMAIN}"], sender="ann@friends.test")
        assert session.send_data(message)[0] == 250
    finally:
        session.close()
    listed = device.cli("carol", "ls", password=password)
    (row,) = [line.split("\t") for line in listed.stdout.splitlines() if "lottery win" in line]
    before = filtered.rspamd.learned()
    marked = device.cli("carol", "spam", row[0], password=password)
    assert marked.returncode == 0, marked.stderr
    assert "trained" in marked.stdout and "moved to Spam" in marked.stdout
    assert filtered.rspamd.learned() == before + 1
    assert [p for p in stored(filtered.app, "carol", "Mail/") if p.startswith("Mail/Spam/")]
    unmarked = device.cli("carol", "not-spam", row[0], password=password)
    assert unmarked.returncode == 0, unmarked.stderr
    assert "trained" in unmarked.stdout
    assert filtered.rspamd.learned() == before + 2
    assert not [p for p in stored(filtered.app, "carol", "Mail/") if p.startswith("Mail/Spam")]
    log = filtered.app.log()
    assert "learned as spam (ok)" in log and "learned as ham (ok)" in log
    assert "lottery" not in log and "carol@" not in log
