"""Issue 19's aliases against a real ``twistd mailiverse``: created over the real HTTPS API by a client logged in
with ``mailiverse.client.Client``, then used over real SMTP (delivered and attributed; disabled, enabled, deleted;
look-alike spellings; limited to known senders), a reply sent from one through a real smarthost with a DKIM
signature dkimpy verifies, and a canary alias found nowhere: not in the SQLite file, a ``pg_dump``, the log
or a backup archive.
"""

from __future__ import annotations

import base64
import re
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy.engine import make_url

from tests.support.alias_api import Account, sign_up
from tests.support.backup_reader import open_backup
from tests.support.e2e import Smarthost, start_appliance, start_smarthost
from tests.support.harness import DOMAIN, Appliance
from tests.support.smtp import SmtpSession

pytestmark = pytest.mark.integration
PASSWORD = "alias tests: a long enough password"
PASSPHRASE = "alias tests backup passphrase"
#: The module makes more than the default 10 new aliases per 15 minutes (up to 30 shields in one test).
ALIAS_RATE = "100"
#: Every appliance here: open sign-up (the tests sign up with the client library) at that alias rate.
OPEN = ("--open-signup", "--alias-rate", ALIAS_RATE)


@pytest.fixture(scope="module")
def smarthost(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Smarthost]:
    """The module's smarthost: the remote peer that captures what the appliance sends out."""
    host = start_smarthost(tmp_path_factory.mktemp("smarthost"))
    try:
        yield host
    finally:
        host.stop()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, smarthost: Smarthost) -> Iterator[Appliance]:
    """One appliance on SQLite for the module's alias tests."""
    appliance = start_appliance(tmp_path_factory.mktemp("aliases"), smarthost, *OPEN)
    try:
        yield appliance
    finally:
        appliance.stop()


@pytest.fixture(scope="module")
def alice(app: Appliance) -> Iterator[Account]:
    """Alice, signed up and logged in over HTTPS."""
    account = sign_up(app, "alice", PASSWORD)
    try:
        yield account
    finally:
        account.client.close()


def rcpt(app: Appliance, address: str, sender: str = "someone@remote.test") -> tuple[int, bytes]:
    """The MX listener's answer to ``RCPT TO:<address>`` after ``MAIL FROM:<sender>``."""
    session = SmtpSession(app.smtp_port, timeout=60)
    try:
        session.hello()
        assert session.command(f"MAIL FROM:<{sender}>\r\n".encode())[0] == 250
        answer = session.command(f"RCPT TO:<{address}>\r\n".encode())
        session.command(b"QUIT\r\n")
        return answer
    finally:
        session.close()


def deliver(app: Appliance, address: str, subject: str, sender: str = "someone@remote.test") -> None:
    """One message from ``sender`` to ``address`` over SMTP, accepted at the end of DATA."""
    message = (
        f"From: Sender <{sender}>\r\nTo: <{address}>\r\nSubject: {subject}\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@remote.test>\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\n\r\n"
        f"Hello, this is {subject}.\r\n"
    ).encode()
    session = SmtpSession(app.smtp_port, timeout=60)
    try:
        session.hello()
        session.envelope([address], sender=sender)
        code, reply = session.send_data(message)
        assert code == 250, reply
    finally:
        session.close()


def twin_of(account: Account, subject: str) -> dict[str, Any]:
    """The one twin in the inbox of the message whose subject is ``subject``."""
    found = [twin for twin in account.twins().values() if subject in repr(twin)]
    assert len(found) == 1, (subject, len(found))
    return found[0]


def test_mail_to_a_new_alias_reaches_its_owner_and_names_the_alias(alice: Account, app: Appliance) -> None:
    """A chosen alias made over the API: its sealed address opens with alice's key to the address; mail to it over
    SMTP lands in alice's inbox, its twin (opened with her key) says ``delivered_to`` the alias, and the alias
    counts it."""
    created = alice.create_alias(kind="chosen", address=f"shop-one@{DOMAIN}")
    assert created["address"] == f"shop-one@{DOMAIN}" and created["state"] == "active"
    assert alice.open_sealed(created["sealed_address"]) == {"address": f"shop-one@{DOMAIN}"}
    deliver(app, f"shop-one@{DOMAIN}", "first via alias")
    assert twin_of(alice, "first via alias")["delivered_to"] == f"shop-one@{DOMAIN}"
    (listed,) = [a for a in alice.aliases() if a["id"] == created["id"]]
    assert listed["received"] == 1 and listed["last_used_ms"] is not None
    assert "address" not in listed  # only the creating answer shows it in clear
    # Mail to the account's own name says so too.
    deliver(app, f"alice@{DOMAIN}", "to the account name")
    assert twin_of(alice, "to the account name")["delivered_to"] == f"alice@{DOMAIN}"


def test_disable_enable_and_delete_answer_at_rcpt(alice: Account, app: Appliance) -> None:
    """Disabled: 550 5.1.1 at RCPT; enabled again: 250 and delivered; deleted: 550 5.1.1 from then on, and the
    address can never be chosen again (409 alias_taken)."""
    address = f"revocable@{DOMAIN}"
    alias = alice.create_alias(kind="chosen", address=address)
    assert rcpt(app, address)[0] == 250
    assert alice.change_alias(alias["id"], state="disabled")["state"] == "disabled"
    code, reply = rcpt(app, address)
    assert (code, reply[:9]) == (550, b"550 5.1.1"), reply
    assert alice.change_alias(alias["id"], state="active")["state"] == "active"
    assert rcpt(app, address)[0] == 250
    deliver(app, address, "after re-enabling")
    assert twin_of(alice, "after re-enabling")["delivered_to"] == address
    status, answer = alice.call("DELETE", f"/api/aliases/{alias['id']}")
    assert (status, answer) == (200, {"status": "deleted", "id": alias["id"]})
    for sender in ("someone@remote.test", "news@list.test", ""):
        code, reply = rcpt(app, address, sender)
        assert (code, reply[:9]) == (550, b"550 5.1.1"), (sender, reply)
    status, answer = alice.call("POST", "/api/aliases", {"kind": "chosen", "address": address})
    assert (status, answer["error"]) == (409, "alias_taken"), answer
    assert alias["id"] not in {a["id"] for a in alice.aliases()}
    status, _ = alice.call("PATCH", f"/api/aliases/{alias['id']}", {"state": "active"})
    assert status == 404
    assert rcpt(app, address)[0] == 550


def look_alikes(local: str) -> list[tuple[str, str]]:
    """Spellings of a shield local part that read the same, each with its rule: upper case, O for 0, l or I
    for 1, W for V."""
    spellings = [("upper case", local.upper())]
    for old, new in (("0", "O"), ("1", "l"), ("1", "I"), ("v", "W")):
        if old in local:
            spellings.append((f"{new} for {old}", local.replace(old, new)))
    return spellings


def test_a_look_alike_spelling_of_a_shield_alias_is_delivered(alice: Account, app: Appliance) -> None:
    """Shield aliases (16 characters of the alphabet without look-alikes) take mail sent to them in upper case,
    or with O for 0, l or I for 1 and W for V (one message per rule delivered, its twin naming the spelling
    it came to); an address one real character off is refused."""
    shields: list[str] = []
    # New shields until 0, 1 and v have each appeared in one, so every rule is exercised (a character is
    # missing from 30 random shields about once in 10^6 runs).
    while not {"0", "1", "v"} <= set("".join(shields)) and len(shields) < 30:
        address = alice.create_alias(kind="shield")["address"]
        local, domain = address.split("@")
        assert re.fullmatch(r"[0-9a-hjkmnp-vx-z]{16}", local) and domain == DOMAIN, address
        shields.append(local)
    assert {"0", "1", "v"} <= set("".join(shields)), shields
    by_rule: dict[str, str] = {}
    for local in shields:
        for rule, spelling in look_alikes(local):
            assert rcpt(app, f"{spelling}@{DOMAIN}")[0] == 250, (rule, spelling)
            by_rule.setdefault(rule, spelling)
    assert len(by_rule) == 5, by_rule
    for rule, spelling in by_rule.items():
        deliver(app, f"{spelling}@{DOMAIN}", f"look-alike, {rule}")
        assert twin_of(alice, f"look-alike, {rule}")["delivered_to"] == f"{spelling.lower()}@{DOMAIN}"
    local = shields[0]
    other = ("a" if local[0] != "a" else "b") + local[1:]
    assert rcpt(app, f"{other}@{DOMAIN}")[0] == 550


def test_an_alias_limited_to_known_senders_refuses_a_new_one(alice: Account, app: Appliance) -> None:
    """After one message from news@list.test, ``senders: known``: news@list.test is still taken (250) and
    delivered, seller@spam.test (who bought the address) is refused with 550 5.1.1 at RCPT."""
    alias = alice.create_alias(kind="chosen", address=f"newsletter@{DOMAIN}")
    deliver(app, f"newsletter@{DOMAIN}", "issue one", sender="news@list.test")
    assert alice.change_alias(alias["id"], senders="known")["senders"] == "known"
    assert rcpt(app, f"newsletter@{DOMAIN}", "news@list.test")[0] == 250
    code, reply = rcpt(app, f"newsletter@{DOMAIN}", "seller@spam.test")
    assert (code, reply[:9]) == (550, b"550 5.1.1"), reply
    deliver(app, f"newsletter@{DOMAIN}", "issue two", sender="news@list.test")
    assert twin_of(alice, "issue two")["delivered_to"] == f"newsletter@{DOMAIN}"


def published_dkim_key(app: Appliance) -> bytes:
    """The DKIM key record ``mailiverse-admin dns`` would publish: the public half of the appliance's key file."""
    pem = (app.data_dir / "keys" / f"dkim-{DOMAIN}.key.pem").read_bytes()
    public = serialization.load_pem_private_key(pem, password=None).public_key()
    spki = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(spki)


def test_a_reply_from_an_alias_leaves_with_that_from_and_a_valid_dkim_signature(
    alice: Account, app: Appliance, smarthost: Smarthost
) -> None:
    """A raw message whose From is alice's alias, to a remote address, over ``POST /api/send``: the smarthost
    receives it with that From and a DKIM signature for example.org that dkimpy verifies against the
    appliance's key (and that fails once the body is changed)."""
    address = f"replies@{DOMAIN}"
    alice.create_alias(kind="chosen", address=address)
    raw = (
        f"From: Alice <{address}>\r\nTo: Dave <dave@remote.test>\r\nSubject: Re: your offer\r\n"
        f"Message-ID: <{secrets.token_hex(8)}@{DOMAIN}>\r\nDate: Sun, 06 Dec 2026 11:00:00 +0000\r\n\r\n"
        "Thanks, sent from my alias.\r\n"
    ).encode()
    before = len(smarthost.received())
    status, answer = alice.call("POST", "/api/send", {"message": base64.b64encode(raw).decode("ascii")})
    assert status == 200, answer
    assert answer["remote"] == ["dave@remote.test"], answer
    got = smarthost.wait_for(before + 1)[before]
    assert got["recipient"] == "dave@remote.test"
    data = base64.b64decode(str(got["data"]))
    head = data.split(b"\r\n\r\n", 1)[0]
    froms = re.findall(rb"(?im)^From:[ \t]*([^\r\n]*)", head)
    assert froms == [f"Alice <{address}>".encode()], head
    assert b"Thanks, sent from my alias." in data
    record = published_dkim_key(app)
    asked: list[bytes] = []

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        asked.append(name)
        return record

    assert re.search(rb"(?i)^DKIM-Signature:.*\bd=example\.org;", head, re.M | re.S), head
    assert dkim.verify(data, dnsfunc=lookup)
    assert asked and asked[0].startswith(b"mailiverse._domainkey.example.org")
    assert not dkim.verify(data.replace(b"sent from my alias", b"sent from elsewhere"), dnsfunc=lookup)


# -- the canary -------------------------------------------------------------------------------------


def pg_dump(url: str) -> bytes:
    """A plain ``pg_dump`` of the appliance's PostgreSQL database, held in memory."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"), reverse=True) + [Path("/usr/bin/pg_dump")]
    binary = next(path for path in candidates if path.exists())
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    return subprocess.run([str(binary), "--dbname", libpq], check=True, capture_output=True, timeout=120).stdout


def found_in(data: bytes, needles: list[str]) -> list[str]:
    """Which of ``needles`` occur in ``data``, bytes compared without regard to case."""
    lowered = data.lower()
    return [needle for needle in needles if needle.lower().encode() in lowered]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def canary_app(request: pytest.FixtureRequest, tmp_path: Path, smarthost: Smarthost) -> Iterator[Appliance]:
    """A fresh appliance logging at debug level, on SQLite or on a fresh PostgreSQL database."""
    db_url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    appliance = start_appliance(tmp_path / "canary", smarthost, *OPEN, "--log-level", "debug", db_url=db_url)
    try:
        yield appliance
    finally:
        appliance.stop()


def test_a_canary_alias_is_nowhere_in_the_database_the_log_or_a_backup(canary_app: Appliance) -> None:
    """A chosen ``canary-<random>`` alias and a shield alias, each sent mail (and the canary, once disabled,
    refused): neither local part is in the SQLite file and its WAL or a ``pg_dump``, the debug-level log, or any
    member of a backup archive; the backup holds the address key ``keys/address-hash.key``."""
    app = canary_app
    account = sign_up(app, "carol", PASSWORD)
    canary = f"canary-{secrets.token_hex(8)}"
    chosen = account.create_alias(kind="chosen", address=f"{canary}@{DOMAIN}")
    shield = account.create_alias(kind="shield")
    locals_ = [canary, shield["address"].split("@")[0]]
    deliver(app, f"{canary}@{DOMAIN}", "canary mail one")
    deliver(app, shield["address"], "shield mail one")
    assert twin_of(account, "canary mail one")["delivered_to"] == f"{canary}@{DOMAIN}"
    assert twin_of(account, "shield mail one")["delivered_to"] == shield["address"]
    account.change_alias(chosen["id"], state="disabled")
    assert rcpt(app, f"{canary}@{DOMAIN}")[0] == 550
    account.client.close()

    if app.db_url is None:
        database = app.data_dir / "mailiverse.sqlite3"
        files = [path for path in (database, database.with_name(database.name + "-wal")) if path.exists()]
        stored = b"".join(path.read_bytes() for path in files)
        # The account's own name is in the clear (the operator may see it): the grep sees what is there.
        assert found_in(stored, ["carol"]) == ["carol"]
        for path in files:
            assert found_in(path.read_bytes(), locals_) == [], path
    else:
        dump = pg_dump(app.db_url)
        assert b"CREATE TABLE public.aliases" in dump, dump[:200]
        assert found_in(dump, ["carol"]) == ["carol"]
        assert found_in(dump, locals_) == []

    backup = app.workdir / "canary.mvb"
    passphrase_file = app.workdir / "backup.pw"
    passphrase_file.write_text(PASSPHRASE)
    passphrase_file.chmod(0o600)
    app.admin("backup", str(backup), "--passphrase-file", str(passphrase_file))
    assert found_in(backup.read_bytes(), locals_) == []
    members = open_backup(backup, PASSPHRASE)
    database_member = "database.sqlite3" if app.db_url is None else "database.jsonl"
    assert database_member in members, sorted(members)
    assert b"aliases" in members[database_member] and found_in(members[database_member], ["carol"]) == ["carol"]
    for name, content in members.items():
        assert found_in(content, locals_) == [], name
    key_file = app.data_dir / "keys" / "address-hash.key"
    assert members.get("keys/address-hash.key") == key_file.read_bytes(), sorted(members)

    app.stop()  # every log line is written by the time twistd exits
    log = app.log_path.read_bytes()
    assert b"stored message" in log, log[-2000:]  # the debug lines were written
    assert found_in(log, locals_) == []
    for path in sorted(app.data_dir.rglob("*")):
        if path.is_file():
            assert found_in(path.read_bytes(), locals_) == [], path
