"""Issue 23, shown with IMAP clients nobody here wrote: ``mbsync`` (isync) and ``offlineimap`` sync every mailbox
of a real ``mailiverse-client bridge`` to a Maildir and back, Python's ``imaplib`` drives what they do not (IDLE,
MOVE, SEARCH, partial FETCH), and two bridges and the web client's state agree on ``\\Seen``.

One real appliance for the module; each test signs up its own user and starts its own bridge subprocess.
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import json
import re
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailiverse.client import Client, HttpsTransport
from mailiverse.client.bridge.model import MAILBOXES
from mailiverse.compat.cache_keys import decrypt_cache_file
from tests.support.bridge import (
    ACCOUNT_PASSWORD,
    Bridge,
    World,
    message,
    require_tool,
    running_bridge,
    start_world,
    wait_until,
    without_tuid,
)

pytestmark = pytest.mark.integration
#: The store's mailboxes as the clients see them (IMAP names).
FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")
UID = re.compile(rb"UID (\d+)")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One appliance for the module."""
    running = start_world(tmp_path_factory.mktemp("bridge-clients"))
    try:
        yield running
    finally:
        running.appliance.stop()


def _client(world: World, user: str) -> Client:
    client = Client(HttpsTransport(world.url, ca_file=str(world.ca)), user)
    client.login(ACCOUNT_PASSWORD)
    return client


def _user_with_mail(world: World, user: str, count: int) -> list[bytes]:
    """Sign ``user`` up and deliver ``count`` distinct messages to their inbox; the bytes sent."""
    world.signup(user)
    sent = [
        message(f"{user} message {n}", f"Line one of {n}.\n.leading dot\nFrom the start\n", n, f"{user}@example.org")
        for n in range(count)
    ]
    world.deliver(user, sent)
    return sent


def _maildir_files(folder: Path) -> list[Path]:
    return sorted(p for sub in ("cur", "new") for p in (folder / sub).glob("*") if p.is_file())


def _maildir_flags(path: Path) -> str:
    return path.name.rpartition(":2,")[2] if ":2," in path.name else ""


def _uids_and_flags(bridge: Bridge, mailbox: str) -> dict[bytes, tuple[int, set[bytes]]]:
    """Through a fresh IMAP connection: Subject header → (UID, flags) of every message in ``mailbox``."""
    imap = bridge.imap()
    try:
        status, _ = imap.select(mailbox, readonly=True)
        assert status == "OK"
        status, data = imap.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert status == "OK", data
        found: dict[bytes, tuple[int, set[bytes]]] = {}
        for item in data:
            if not isinstance(item, tuple):
                continue
            meta, header = item
            subject = header.strip().partition(b":")[2].strip()
            flags = FLAGS.search(meta)
            uid = UID.search(meta)
            assert flags and uid, meta
            found[subject] = (int(uid.group(1)), set(flags.group(1).split()))
        return found
    finally:
        imap.logout()


def _fetch_full(bridge: Bridge, mailbox: str) -> list[bytes]:
    imap = bridge.imap()
    try:
        assert imap.select(mailbox, readonly=True)[0] == "OK"
        status, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[])")
        assert status == "OK", data
        return [item[1] for item in data if isinstance(item, tuple)]
    finally:
        imap.logout()


def _run(argv: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=timeout)
    assert done.returncode == 0, f"{argv[0]} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return done


def write_mbsyncrc(bridge: Bridge, directory: Path, *, implicit: bool = False) -> Path:
    """An isync 1.4 configuration syncing every mailbox of ``bridge`` both ways into ``directory/mail``."""
    mail = directory / "mail"
    mail.mkdir(parents=True, exist_ok=True)
    port, ssl_type = (bridge.imaps_port, "IMAPS") if implicit else (bridge.imap_port, "STARTTLS")
    config = directory / "mbsyncrc"
    config.write_text(
        f"""IMAPAccount bridge
Host 127.0.0.1
Port {port}
User {bridge.user}
PassCmd "cat {bridge.password_file}"
SSLType {ssl_type}
CertificateFile {bridge.certificate}
PipelineDepth 8

IMAPStore bridge-remote
Account bridge

MaildirStore bridge-local
Path {mail}/
Inbox {mail}/INBOX
SubFolders Verbatim

Channel bridge
Far :bridge-remote:
Near :bridge-local:
Patterns *
Create Both
SyncState *
Expunge Both
"""
    )
    return config


def mbsync(config: Path) -> subprocess.CompletedProcess[str]:
    """``mbsync -a -c CONFIG``, which must succeed."""
    return _run([require_tool("mbsync"), "-a", "-c", str(config)], config.parent)


def _as_maildir(sent: bytes) -> bytes:
    """What mbsync writes for a message it fetched: isync stores Maildir files with LF line ends (its
    documented CRLF translation between IMAP and Maildir), every other byte unchanged."""
    return sent.replace(b"\r\n", b"\n")


def test_mbsync_syncs_every_mailbox_and_changes_flow_back(world: World, tmp_path: Path) -> None:
    """mbsync (STARTTLS, the bridge's certificate) makes a Maildir of every mailbox whose messages end with the
    exact bytes sent; a seen mark, a deletion and a new draft made in the Maildir reach the store."""
    require_tool("mbsync")
    sent = _user_with_mail(world, "mbsa", 3)
    with running_bridge(world, "mbsa", tmp_path / "bridge") as bridge:
        config = write_mbsyncrc(bridge, tmp_path)
        mbsync(config)
        mail = tmp_path / "mail"
        for mailbox in MAILBOXES:
            assert (mail / mailbox / "cur").is_dir(), (mailbox, sorted(p.name for p in mail.iterdir()))
        inbox = _maildir_files(mail / "INBOX")
        assert len(inbox) == 3
        by_subject: dict[int, Path] = {}
        for path in inbox:
            data = without_tuid(path.read_bytes())
            matches = [n for n, original in enumerate(sent) if data.endswith(_as_maildir(original))]
            assert len(matches) == 1, data[:400]
            by_subject[matches[0]] = path
            assert _maildir_flags(path) == ""
        # over IMAP itself, the decrypted original ends with exactly the bytes sent (CRLF and all)
        fetched = _fetch_full(bridge, "INBOX")
        assert sorted(n for n, original in enumerate(sent) for got in fetched if got.endswith(original)) == [0, 1, 2]

        seen, deleted = by_subject[0], by_subject[1]
        seen.rename(seen.parent.parent / "cur" / (seen.name.partition(":2,")[0] + ":2,S"))
        deleted.rename(deleted.parent.parent / "cur" / (deleted.name.partition(":2,")[0] + ":2,T"))
        draft = b"From: mbsa@example.org\nTo: someone@remote.test\nSubject: draft from the Maildir\n\nNot sent yet.\n"
        (mail / "Drafts" / "cur" / f"{int(time.time())}.draft1.device:2,D").write_bytes(draft)
        mbsync(config)

        state = _uids_and_flags(bridge, "INBOX")
        assert set(state) == {b"mbsa message 0", b"mbsa message 2"}, state
        assert b"\\Seen" in state[b"mbsa message 0"][1]
        assert b"\\Seen" not in state[b"mbsa message 2"][1]
        drafts = _fetch_full(bridge, "Drafts")
        # mbsync may add its own X-TUID header to what it uploads; everything of the file arrives, in CRLF
        assert len(drafts) == 1, drafts
        head, body = draft.replace(b"\n", b"\r\n").split(b"\r\n\r\n", 1)
        assert drafts[0].endswith(b"\r\n\r\n" + body)
        assert all(line in drafts[0].split(b"\r\n\r\n", 1)[0].split(b"\r\n") for line in head.split(b"\r\n"))

        client = _client(world, "mbsa")
        try:
            assert len([o for o in client.iter_objects("Mail/In/")]) == 2
            assert len([o for o in client.iter_objects("Mail/Drafts/")]) == 1
        finally:
            client.logout()
        # a third run changes nothing and still succeeds
        mbsync(config)
        assert len(_maildir_files(mail / "INBOX")) == 2


def test_mbsync_over_implicit_tls(world: World, tmp_path: Path) -> None:
    """mbsync with SSLType IMAPS on the bridge's implicit-TLS port, trusting only its certificate, syncs the inbox."""
    require_tool("mbsync")
    sent = _user_with_mail(world, "mbsb", 2)
    with running_bridge(world, "mbsb", tmp_path / "bridge") as bridge:
        mbsync(write_mbsyncrc(bridge, tmp_path, implicit=True))
        files = [without_tuid(p.read_bytes()) for p in _maildir_files(tmp_path / "mail" / "INBOX")]
        assert sorted(n for n, s in enumerate(sent) for f in files if f.endswith(_as_maildir(s))) == [0, 1]


def write_offlineimaprc(bridge: Bridge, directory: Path) -> Path:
    """An offlineimap configuration for ``bridge`` over implicit TLS (offlineimap checks a certificate only there,
    against ``sslcacertfile`` and the host name in it)."""
    names = _certificate_dns_names(bridge.certificate)
    host = "localhost" if "localhost" in names else (names[0] if names else "127.0.0.1")
    config = directory / "offlineimaprc"
    config.write_text(
        f"""[general]
accounts = bridge
metadata = {directory / "offlineimap-state"}
ui = basic

[Account bridge]
localrepository = device
remoterepository = bridge

[Repository device]
type = Maildir
localfolders = {directory / "oimail"}

[Repository bridge]
type = IMAP
remotehost = {host}
remoteport = {bridge.imaps_port}
ipv6 = no
remoteuser = {bridge.user}
remotepassfile = {bridge.password_file}
ssl = yes
sslcacertfile = {bridge.certificate}
maxconnections = 1
"""
    )
    return config


def _certificate_dns_names(path: Path) -> list[str]:
    from cryptography import x509

    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = list(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = []
    return names


def offlineimap(config: Path) -> subprocess.CompletedProcess[str]:
    return _run([require_tool("offlineimap", "offlineimap3"), "-o", "-c", str(config)], config.parent)


def test_offlineimap_syncs_and_a_seen_mark_reaches_the_store(world: World, tmp_path: Path) -> None:
    """offlineimap over implicit TLS syncs every mailbox; a message marked seen in its Maildir is seen in the store."""
    require_tool("offlineimap", "offlineimap3")
    sent = _user_with_mail(world, "oimap", 2)
    with running_bridge(world, "oimap", tmp_path / "bridge") as bridge:
        config = write_offlineimaprc(bridge, tmp_path)
        offlineimap(config)
        mail = tmp_path / "oimail"
        for mailbox in MAILBOXES:
            assert (mail / mailbox / "cur").is_dir(), (mailbox, sorted(p.name for p in mail.iterdir()))
        files = _maildir_files(mail / "INBOX")
        assert len(files) == 2
        matched = {}
        for path in files:
            data = path.read_bytes()
            hits = [n for n, s in enumerate(sent) if data.endswith(s) or data.endswith(_as_maildir(s))]
            assert len(hits) == 1, data[:400]
            matched[hits[0]] = path
        target = matched[1]
        target.rename(target.parent.parent / "cur" / (target.name.partition(":2,")[0] + ":2,S"))
        offlineimap(config)
        state = _uids_and_flags(bridge, "INBOX")
        assert b"\\Seen" in state[b"oimap message 1"][1]
        assert b"\\Seen" not in state[b"oimap message 0"][1]


def _idle_until_exists(bridge: Bridge, deliver: object, timeout: float) -> tuple[float, list[bytes]]:
    """IDLE on INBOX (imaplib has no IDLE before Python 3.14: the raw exchange on its socket), call ``deliver()``,
    and wait for an untagged EXISTS; the seconds it took and the lines the server sent."""
    imap = bridge.imap()
    try:
        assert imap.select("INBOX")[0] == "OK"
        assert b"IDLE" in b" ".join(c.encode() for c in imap.capabilities)
        tag = imap._new_tag()
        imap.send(tag + b" IDLE\r\n")
        assert imap.readline().startswith(b"+"), "no continuation for IDLE"
        started = time.monotonic()
        deliver()  # type: ignore[operator]
        lines: list[bytes] = []
        # one budget for the whole wait: a read that times out leaves imaplib's file unusable, which is fine here
        imap.socket().settimeout(timeout)
        try:
            while time.monotonic() - started < timeout:
                line = imap.readline()
                if not line:
                    raise AssertionError(f"the bridge closed the IDLE connection after {lines!r}")
                lines.append(line)
                if line.startswith(b"* ") and line.rstrip().endswith(b"EXISTS"):
                    waited = time.monotonic() - started
                    imap.send(b"DONE\r\n")
                    while not lines[-1].startswith(tag):
                        lines.append(imap.readline())
                    assert b" OK" in lines[-1], lines
                    return waited, lines
        except TimeoutError:
            pass
        raise AssertionError(f"no EXISTS during IDLE within {timeout} s: {lines!r}")
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            imap.logout()


def test_imaplib_idle_move_search_and_partial_fetch(world: World, tmp_path: Path) -> None:
    """IDLE announces mail delivered meanwhile within the poll interval (+ a few s); UID MOVE to Trash, SEARCH over
    headers and text, and partial FETCH (BODY[]<o.n>, BODY[TEXT]<o.n>) answer as RFC 3501/6851 say."""
    sent = _user_with_mail(world, "imapl", 3)
    poll = 2.0
    with running_bridge(world, "imapl", tmp_path / "bridge", poll=poll) as bridge:
        late = message("imapl arrives during IDLE", "Announced by IDLE.\n", 99, "imapl@example.org")
        waited, _lines = _idle_until_exists(bridge, lambda: world.deliver("imapl", [late]), poll + 10)
        assert waited <= poll + 10

        imap = bridge.imap()
        try:
            assert imap.select("INBOX")[0] == "OK"
            status, found = imap.uid("SEARCH", None, "SUBJECT", '"imapl message 1"')
            assert status == "OK" and len(found[0].split()) == 1, found
            uid_one = found[0].split()[0]
            status, found = imap.uid("SEARCH", None, "TEXT", '"Announced by IDLE"')
            assert status == "OK" and len(found[0].split()) == 1, found
            status, found = imap.uid("SEARCH", None, "FROM", '"bob@remote.test"')
            assert status == "OK" and len(found[0].split()) == 4, found
            status, found = imap.search(None, "UNSEEN")
            assert status == "OK" and len(found[0].split()) == 4, found

            status, whole = imap.uid("FETCH", uid_one, "(BODY.PEEK[])")
            assert status == "OK"
            full = whole[0][1]
            assert full.endswith(sent[1])
            status, part = imap.uid("FETCH", uid_one, "(BODY.PEEK[]<10.25>)")
            assert status == "OK" and part[0][1] == full[10:35], part
            assert b"BODY[]<10>" in part[0][0], part
            body = full.split(b"\r\n\r\n", 1)[1]
            status, part = imap.uid("FETCH", uid_one, "(BODY.PEEK[TEXT]<5.12>)")
            assert status == "OK" and part[0][1] == body[5:17], part
            status, part = imap.uid("FETCH", uid_one, f"(BODY.PEEK[]<{len(full) - 4}.100>)")
            assert status == "OK" and part[0][1] == full[-4:], part

            status, answer = imap.uid("MOVE", uid_one, "Trash")
            assert status == "OK", answer
            status, found = imap.uid("SEARCH", None, "SUBJECT", '"imapl message 1"')
            assert status == "OK" and found[0].split() == [], found
            assert imap.select("Trash")[0] == "OK"
            status, found = imap.uid("SEARCH", None, "SUBJECT", '"imapl message 1"')
            assert status == "OK" and len(found[0].split()) == 1, found
            status, moved = imap.uid("FETCH", found[0].split()[0], "(BODY.PEEK[])")
            assert moved[0][1] == full
        finally:
            imap.logout()


def _web_read_set(world: World, user: str) -> set[str]:
    """The web client's ``read`` set from ``Cache/W_state``, decrypted as webclient/js/mail/cache.js does."""
    client = _client(world, user)
    try:
        stored_der = base64.b64decode(client.key_environment["RSA-PrivateKey"])
        blob = client.get_object("Cache/W_state")
        document = json.loads(zlib.decompress(decrypt_cache_file("W_state", stored_der, blob)))
        return set(document.get("read", []))
    finally:
        client.logout()


def test_two_bridges_and_the_web_client_share_seen(world: World, tmp_path: Path) -> None:
    """\\Seen set through one bridge shows in a second bridge's FETCH FLAGS and in the web client's read set."""
    _user_with_mail(world, "twob", 2)
    with (
        running_bridge(world, "twob", tmp_path / "one") as first,
        running_bridge(world, "twob", tmp_path / "two", poll=2.0) as second,
    ):
        before = _uids_and_flags(second, "INBOX")
        assert all(b"\\Seen" not in flags for _, flags in before.values()), before
        uid, _ = _uids_and_flags(first, "INBOX")[b"twob message 1"]
        assert uid == before[b"twob message 1"][0], "UIDs differ between two bridges of one user"
        imap = first.imap()
        try:
            assert imap.select("INBOX")[0] == "OK"
            status, answer = imap.uid("STORE", str(uid), "+FLAGS", "(\\Seen)")
            assert status == "OK", answer
        finally:
            imap.logout()

        def seen_by_second() -> bool:
            return b"\\Seen" in _uids_and_flags(second, "INBOX")[b"twob message 1"][1]

        wait_until(seen_by_second, 15, "the second bridge seeing \\Seen")
        assert b"\\Seen" not in _uids_and_flags(second, "INBOX")[b"twob message 0"][1]

    client = _client(world, "twob")
    try:
        listed = {info.subject: info.id for info in client.list_messages("Inbox")}
    finally:
        client.logout()
    read = _web_read_set(world, "twob")
    assert read == {f"Mail/In_Json/{listed['twob message 1']}"}, (read, listed)
