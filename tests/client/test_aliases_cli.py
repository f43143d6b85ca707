"""``mailiverse-client alias ...``, ``ls --via``, ``read``'s ``Via:`` line and ``send --from ALIAS`` (issue 19).

The integration tests run the installed console script against a real ``twistd mailiverse`` and send mail to
it over real SMTP: an alias is made and listed with its label (opened on the device), receives mail that
``ls --via`` and ``read`` attribute to it, is refused at RCPT when disabled or deleted and accepted again when
enabled, takes look-alike spellings, limits its senders, and is a From a user may send with. The malformed
answers are served by the web app of tests/client/conftest.py with the alias list swapped for a hostile one
on its way to the CLI, which runs in-process.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_twisted
from cryptography.hazmat.primitives.asymmetric import rsa

from mailiverse.crypto.formats import seal_mail_object
from mailiverse.crypto.keys import load_public_key, public_key_der
from mailiverse.store.aliases import SHIELD_ALPHABET, SHIELD_LENGTH
from mailiverse.store.users import get_user_txn
from tests.support.client import Served, run_cli, run_swapped
from tests.support.e2e import Device
from tests.support.harness import DOMAIN, Appliance
from tests.support.smtp import SmtpSession

PASSWORD = "alice's long alias password"
BOB_PASSWORD = "bob's long alias password"
SHIELD = re.compile(rf"[{SHIELD_ALPHABET}]{{{SHIELD_LENGTH}}}@{re.escape(DOMAIN)}")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
HOSTILE = "\x1b]0;owned\x07\x1b[2J\u009b31m"


# -- a real appliance ------------------------------------------------------------------------------------


@dataclass
class World:
    """The appliance and the CLI's device directory; alice and bob have signed up."""

    app: Appliance
    device: Device

    def cli(self, *command: str, user: str = "alice", stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
        password = PASSWORD if user == "alice" else BOB_PASSWORD
        return self.device.cli(user, *command, password=password, stdin=stdin)

    def ok(self, *command: str, user: str = "alice", stdin: bytes = b"") -> str:
        done = self.cli(*command, user=user, stdin=stdin)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        return done.stdout

    def new_alias(self, *options: str) -> str:
        """`alias new`: its stdout is the address alone, on one line."""
        out = self.ok("alias", "new", *options)
        assert out.count("\n") == 1 and out.endswith("\n"), out
        return out[:-1]

    def aliases(self) -> dict[str, list[str]]:
        """`alias list` rows by address; every row has the seven columns."""
        rows = [line.split("\t") for line in self.ok("alias", "list").splitlines()]
        assert all(len(row) == 7 for row in rows), rows
        return {row[0]: row for row in rows}

    def rows(self, *options: str, user: str = "alice") -> dict[str, list[str]]:
        """`ls` rows by subject."""
        return {row[3]: row for row in (line.split("\t") for line in self.ok("ls", *options, user=user).splitlines())}

    def rcpt(self, address: str, sender: str = "ann@remote.test") -> tuple[int, bytes]:
        """The reply to RCPT TO:<address> after MAIL FROM:<sender>."""
        session = SmtpSession(self.app.smtp_port, timeout=60)
        try:
            session.hello()
            assert session.command(f"MAIL FROM:<{sender}>\r\n".encode())[0] == 250
            return session.command(f"RCPT TO:<{address}>\r\n".encode())
        finally:
            session.close()

    def mail(self, address: str, subject: str, sender: str = "ann@remote.test") -> None:
        """A message from ``sender`` to ``address`` over SMTP, accepted at the end of DATA."""
        message = (
            f"From: Ann <{sender}>\r\nTo: {address}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@remote.test>\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\n\r\n"
            f"Hello, this is {subject}.\r\n"
        ).encode()
        session = SmtpSession(self.app.smtp_port, timeout=60)
        try:
            session.hello()
            session.envelope([address], sender=sender)
            code, reply = session.send_data(message)
        finally:
            session.close()
        assert code == 250, reply


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """An appliance (one delivery worker; a generous alias rate, so the look-alike test may try a few
    shield aliases) where alice and bob sign up with the CLI."""
    root = tmp_path_factory.mktemp("aliases")
    app = Appliance(root / "appliance", extra_args=["--workers", "1", "--alias-rate", "100"])
    try:
        app.start()
        home = root / "device"
        home.mkdir()
        world = World(app, Device(home, app))
        world.ok("signup")
        world.ok("signup", "--invite", app.admin("invite", "create").stdout.decode().strip(), user="bob")
        yield world
    finally:
        app.stop()


def _read_head(world: World, message_id: str, user: str = "alice") -> list[str]:
    """The lines `read` prints before the From header."""
    lines = world.ok("read", message_id, user=user).split("\n")
    return lines[: next(i for i, line in enumerate(lines) if line.startswith("From: "))]


@pytest.mark.integration
def test_new_alias_is_listed_with_its_label_and_receives_mail(world: World) -> None:
    """`alias new --label` prints a shield address alone; `alias list` shows it active with the label opened
    on the device (control characters stripped); mail to it over SMTP is delivered, counted, found by
    `ls --via` (any case) and `read` says `Via:` it; mail to alice's own name gets no `Via:`."""
    address = world.new_alias("--label", "shop X")
    assert SHIELD.fullmatch(address), address
    chosen = world.new_alias("--chosen", f"Shop.Y@{DOMAIN}", "--label", f"news{HOSTILE}letter\tY")
    assert chosen == f"shop.y@{DOMAIN}"
    listed = world.aliases()
    assert listed[address] == [address, "active", "shield", "any", "0", "-", "shop X"]
    assert listed[chosen][1:6] == ["active", "chosen", "any", "0", "-"]
    assert not CONTROL.search(listed[chosen][6]) and listed[chosen][6].startswith("news")
    assert listed[chosen][6].endswith("letterY")

    world.mail(address, "to the shield")
    world.mail(f"alice@{DOMAIN}", "to alice herself")
    via = world.rows("--via", address.upper())
    assert list(via) == ["to the shield"], via
    assert set(world.rows()) >= {"to the shield", "to alice herself"}
    assert world.rows("--via", chosen) == {}
    # The existing columns are unchanged: ID, date, sender, subject, then the verdict of mail from outside.
    row = via["to the shield"]
    assert row[2] == "Ann <ann@remote.test>" and row[4:] == ["unverified"], row

    head = _read_head(world, row[0])
    assert head[-1] == f"Via: {address}" and head[0] == "Sender: not verified", head
    assert [line for line in head if line.startswith("Via:")] == [head[-1]]
    own = _read_head(world, world.rows()["to alice herself"][0])
    assert own[0] == "Sender: not verified" and not [line for line in own if line.startswith("Via")], own
    received = world.aliases()[address]
    assert received[4] == "1" and re.fullmatch(r"\d{4}-\d\d-\d\d", received[5]), received


@pytest.mark.integration
def test_disable_enable_delete_answer_at_rcpt(world: World) -> None:
    """`alias disable` makes RCPT answer 550, `enable` 250 again, `delete` 550 for good and the alias leaves
    `alias list`; each prints one confirmation line; an address that is not one's alias exits 1."""
    address = world.new_alias("--label", "to revoke")
    assert world.rcpt(address)[0] == 250

    assert world.ok("alias", "disable", address) == f"{address}: disabled\n"
    code, reply = world.rcpt(address)
    assert code == 550 and b"5.1.1" in reply, reply
    assert world.aliases()[address][1] == "disabled"

    assert world.ok("alias", "enable", address.upper()) == f"{address.upper()}: enabled\n"
    assert world.rcpt(address)[0] == 250
    assert world.aliases()[address][1] == "active"

    assert world.ok("alias", "delete", address) == f"{address}: deleted for good\n"
    code, reply = world.rcpt(address)
    assert code == 550 and b"5.1.1" in reply, reply
    assert address not in world.aliases()

    for unknown in (address, f"nobody-here@{DOMAIN}", "bob@elsewhere.test"):
        for action in ("disable", "enable", "delete"):
            refused = world.cli("alias", action, unknown)
            assert refused.returncode == 1, (action, unknown, refused.stderr)
            assert refused.stdout == "" and refused.stderr.count("\n") == 1
            assert "is not one of your aliases" in refused.stderr
    # Bob cannot touch alice's alias either.
    theirs = world.new_alias()
    refused = world.cli("alias", "disable", theirs, user="bob")
    assert refused.returncode == 1 and "is not one of your aliases" in refused.stderr
    assert world.rcpt(theirs)[0] == 250


@pytest.mark.integration
def test_a_look_alike_spelling_of_a_shield_alias_is_delivered(world: World) -> None:
    """Mail to a shield alias written in upper case, with O for 0, l for 1 and W for v, is delivered to it and
    counted on it."""
    for _ in range(20):
        address = world.new_alias()
        local = address.split("@")[0]
        if set(local) & set("01v"):
            break
    else:
        pytest.fail("no shield alias with 0, 1 or v in twenty")
    spelled = local.upper().replace("0", "O").replace("1", "l").replace("V", "W") + "@" + DOMAIN
    assert spelled.lower() != address
    assert world.rcpt(spelled)[0] == 250
    world.mail(spelled, "look-alike spelling")
    assert "look-alike spelling" in world.rows()
    assert world.aliases()[address][4] == "1"


@pytest.mark.integration
def test_a_limited_alias_refuses_new_senders(world: World) -> None:
    """`alias limit --senders known`: a sender that wrote before still gets 250, a new one 550; `any` opens it."""
    address = world.new_alias("--label", "list")
    world.mail(address, "first from the list", sender="list@news.test")
    assert (
        world.ok("alias", "limit", address, "--senders", "known")
        == f"{address}: accepts mail from known senders only\n"
    )
    assert world.aliases()[address][3] == "known"
    assert world.rcpt(address, "list@news.test")[0] == 250
    code, reply = world.rcpt(address, "buyer@spam.test")
    assert code == 550 and b"5.1.1" in reply, reply
    world.ok("alias", "limit", address, "--senders", "any")
    assert world.rcpt(address, "buyer@spam.test")[0] == 250
    bad = world.cli("alias", "limit", address, "--senders", "everyone")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


@pytest.mark.integration
def test_send_from_an_alias(world: World) -> None:
    """`send --from ALIAS` reaches bob with From = the alias; `--from` someone else's address exits 1 with one
    line naming sender_not_allowed, and nothing reaches bob."""
    address = world.new_alias("--label", "to bob")
    sent = world.ok(
        "send", "--to", f"bob@{DOMAIN}", "--from", address, "--subject", "from an alias", stdin=b"Hi Bob.\n"
    )
    assert sent.startswith("sent ") and f"bob@{DOMAIN}" in sent
    row = world.rows(user="bob")["from an alias"]
    assert address in row[2], row
    shown = world.ok("read", row[0], user="bob").split("\n")
    assert next(line for line in shown if line.startswith("From: ")) == f"From: {address}", shown

    for other in (f"bob@{DOMAIN}", f"someone-else@{DOMAIN}", "alice@elsewhere.test"):
        refused = world.cli("send", "--to", f"bob@{DOMAIN}", "--from", other, "--subject", "forged", stdin=b"x\n")
        assert refused.returncode == 1, (other, refused.stdout, refused.stderr)
        assert refused.stdout == "" and refused.stderr.count("\n") == 1
        assert "sender_not_allowed" in refused.stderr and "is not one of your addresses" in refused.stderr
    assert "forged" not in world.rows(user="bob")


# -- malformed answers -----------------------------------------------------------------------------------


def _sealed(public_key: bytes, value: Any, *, raw: bytes | None = None) -> str:
    data = raw if raw is not None else json.dumps(value).encode()
    return base64.b64encode(seal_mail_object("v2", load_public_key(public_key), data)).decode()


def _hostile_entries(public_key: bytes) -> list[tuple[Any, list[str]]]:
    """Alias entries that break the contract, each with the row `alias list` must print for it."""
    other_key = public_key_der(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    good = {
        "id": "a1",
        "kind": "chosen",
        "state": "active",
        "senders": "known-domains",
        "sealed_address": _sealed(public_key, {"address": f"fine@{DOMAIN}"}),
        "label": _sealed(public_key, {"label": "fine"}),
        "received": 3,
        "last_used_ms": 1_790_000_000_000,
        "created_ms": 0,
    }
    unknown_row = ["?"] * 7
    return [
        (good, [f"fine@{DOMAIN}", "active", "chosen", "known-domains", "3", "2026-09-21", "fine"]),
        (5, unknown_row),
        ("alias", unknown_row),
        (None, unknown_row),
        ([good], unknown_row),
        (
            {
                "id": 7,
                "kind": ["shield"],
                "state": True,
                "senders": {},
                "sealed_address": 12,
                "label": 3,
                "received": True,
                "last_used_ms": "yesterday",
            },
            ["?"] * 7,
        ),
        (
            {**good, "sealed_address": "AAAA", "label": "not base64!!", "received": -1, "last_used_ms": 10**30},
            ["?", "active", "chosen", "known-domains", "?", "?", "?"],
        ),
        (
            {**good, "sealed_address": _sealed(other_key, {"address": "x@y.test"}), "label": None},
            ["?", "active", "chosen", "known-domains", "3", "2026-09-21", ""],
        ),
        (
            {
                **good,
                "sealed_address": _sealed(public_key, {"address": f"eve@{DOMAIN}{HOSTILE}"}),
                "label": _sealed(public_key, {"label": f"ok{HOSTILE}\tTab\nline"}),
                "state": "deleted",
                "kind": "shield" + HOSTILE,
            },
            ["?", "?", "?", "known-domains", "3", "2026-09-21", "ok]0;owned[2J31mTabline"],
        ),
        (
            {
                **good,
                "sealed_address": _sealed(public_key, ["x"]),
                "label": _sealed(public_key, {"label": 5}),
                "last_used_ms": None,
            },
            ["?", "active", "chosen", "known-domains", "3", "-", "?"],
        ),
        (
            # A zlib bomb: 20 MB of zeros that seal to a few kilobytes.
            {**good, "sealed_address": _sealed(public_key, None, raw=b"0" * 20_000_000), "label": "", "id": "../x"},
            ["?", "active", "chosen", "known-domains", "3", "2026-09-21", "?"],
        ),
    ]


@pytest_twisted.ensureDeferred
async def test_alias_list_survives_malformed_answers(served: Served) -> None:
    """An alias list whose entries have wrong types, unknown words, undecryptable or hostile sealed values (a
    stranger's key, escape sequences, a zlib bomb) prints one clean row per entry, `?` for what cannot be
    opened, and exits 0; a list that is not a list, or a lookup answer without an ID, exits 1 in one line."""
    assert (await run_cli(served.argv("alice", "signup"))).status == 0
    user = await served.api.database.run(get_user_txn, "alice")
    assert user is not None
    entries = _hostile_entries(user.public_key)
    answer = json.dumps({"aliases": [entry for entry, _row in entries]}).encode()
    status, out, err = await run_swapped(served, {("GET", "/api/aliases"): answer}, "alias", "list")
    assert status == 0, err
    assert not CONTROL.search(out.replace("\n", "").replace("\t", ""))
    rows = [line.split("\t") for line in out.split("\n")[:-1]]
    assert rows == [row for _entry, row in entries]

    for broken in (b'{"aliases": {"a": 1}}', b"[]", b"not json", b'{"aliases": null}'):
        status, out, err = await run_swapped(served, {("GET", "/api/aliases"): broken}, "alias", "list")
        assert status == 1 and out == "" and err.count("\n") == 1, (broken, err)
        assert "internal error" not in err

    created = await run_cli(served.argv("alice", "alias", "new"))
    assert created.status == 0, created.stderr
    for lookup in (b'{"id": 5}', b'{"id": "../../account"}', b"{}"):
        swapped = {("POST", "/api/aliases/lookup"): lookup}
        status, out, err = await run_swapped(served, swapped, "alias", "disable", created.stdout.strip())
        assert status == 1 and out == "" and err.count("\n") == 1, (lookup, err)
        assert "malformed" in err
    listed = await run_cli(served.argv("alice", "alias", "list"))
    assert listed.status == 0 and listed.stdout.split("\t")[:2] == [created.stdout.strip(), "active"]

    for broken_new in (b'{"address": 5}', b'{"address": "x\\u001b@example.org"}', b"{}"):
        status, out, err = await run_swapped(served, {("POST", "/api/aliases"): broken_new}, "alias", "new")
        assert status == 1 and out == "" and err.count("\n") == 1, (broken_new, err)


@pytest_twisted.ensureDeferred
async def test_alias_usage_errors(served: Served) -> None:
    """Bad alias arguments are usage errors (exit 2, one line): a non-address, --chosen with --domain, an
    empty or over-long label, `ls --via` of a non-address."""
    assert (await run_cli(served.argv("alice", "signup"))).status == 0
    for command in (
        ("alias", "disable", "not-an-address"),
        ("alias", "delete", "a b@example.org"),
        ("alias", "new", "--chosen", f"x@{DOMAIN}", "--domain", DOMAIN),
        ("alias", "new", "--label", "\x1b\x07"),
        ("alias", "new", "--label", "x" * 257),
        ("alias", "frobnicate"),
        ("ls", "--via", "nobody"),
        ("send", "--to", f"bob@{DOMAIN}", "--from", "no address", "--subject", "s"),
    ):
        done = await run_cli(served.argv("alice", *command))
        assert done.status == 2, (command, done.stdout, done.stderr)
        assert done.stdout == "" and done.stderr.count("\n") == 1
    listed = await run_cli(served.argv("alice", "alias", "list"))
    assert listed.status == 0 and listed.stdout == ""
