"""At rest: a canary never appears in plaintext anywhere on the server, modes are private, no user key is held."""

from __future__ import annotations

import base64
import os
import quopri
import stat
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailiverse.config import DataDir
from mailiverse.crypto.errors import CryptoError
from mailiverse.crypto.formats import open_mail_object
from tests.support.appliance_state import read_store
from tests.support.harness import DOMAIN, Appliance
from tests.support.independent import open_mail
from tests.support.smtp import SmtpSession

pytestmark = pytest.mark.integration

CANARY = "CANARY-d41e7b05-at-rest-must-never-leak"


def _needles() -> list[bytes]:
    raw = CANARY.encode()
    return [
        raw,
        raw.lower(),
        CANARY.encode("utf-16-le"),
        quopri.encodestring(raw),
        *(base64.b64encode(b"x" * shift + raw)[4:28] for shift in range(3)),
    ]


def _canary_message() -> bytes:
    msg = EmailMessage()
    msg["From"] = "bob@remote.test"
    msg["To"] = f"alice@{DOMAIN}, dave@{DOMAIN}"
    msg["Subject"] = f"subject {CANARY}"
    msg.set_content(f"body {CANARY}\n" * 20)
    msg.add_attachment(
        f"attachment {CANARY}\n".encode() * 50, maintype="application", subtype="octet-stream", filename=f"{CANARY}.bin"
    )
    msg.add_attachment(f"text attachment {CANARY}\n" * 50, subtype="plain", filename="a.txt", cte="quoted-printable")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def _scan(paths: Iterator[Path]) -> list[str]:
    hits = []
    for path in paths:
        if path.is_file() and not path.is_symlink():
            content = path.read_bytes()
            hits += [f"{path}: {needle[:12]!r}" for needle in _needles() if needle in content]
    return hits


def _server_files(app: Appliance, tmp: Path) -> Iterator[Path]:
    yield from app.data_dir.rglob("*")
    yield from tmp.rglob("*")
    yield app.log_path


def _open_spool_files(app: Appliance) -> list[Path]:
    """The server's open files under its tmp dir, reached through /proc (O_TMPFILE files have no name)."""
    assert app.process is not None
    tmp_dir = str(DataDir(app.data_dir).tmp_dir)
    found = []
    for fd in Path(f"/proc/{app.process.pid}/fd").iterdir():
        try:
            if os.readlink(fd).startswith(tmp_dir):
                found.append(fd)
        except OSError:
            pass
    return found


def _deliver_with_check_midway(app: Appliance, tmp: Path) -> None:
    """Send the canary mail with a 2 MB canary-laden preamble; scan spool and temp files before the final dot."""
    s = SmtpSession(app.smtp_port, timeout=60)
    try:
        s.starttls(app)
        s.envelope([f"alice@{DOMAIN}", f"dave@{DOMAIN}"])
        filler = f"X-Filler: {CANARY}\r\n".encode() * 50_000  # far past the in-memory spool limit
        s.sock.sendall(filler)
        spilled: list[Path] = []
        for _ in range(200):  # wait for the spool's unnamed temp file to pass 1 MB
            spilled = _open_spool_files(app)
            if any(p.stat().st_size > 1_000_000 for p in spilled):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the spool never spilled to a temp file")
        assert _scan(iter(spilled)) == [], "canary in the open spool file"
        assert _scan(_server_files(app, tmp)) == [], "canary in a spool or temp file during DATA"
        assert s.send_data(_canary_message())[0] == 250
    finally:
        s.close()


def _run(app: Appliance, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, rsa.RSAPrivateKey]:
    monkeypatch.setenv("TMPDIR", str(tmp))
    tmp.mkdir(parents=True, exist_ok=True)
    app.start()
    keys = {"alice": app.add_user("alice", "v2"), "dave": app.add_user("dave", "v1")}
    _deliver_with_check_midway(app, tmp)
    return keys


def _check_delivered(app: Appliance, keys: dict[str, rsa.RSAPrivateKey]) -> dict[str, dict[str, bytes]]:
    stored = {}
    for user, key in keys.items():
        objects = read_store(app, user)
        assert len(objects) == 2
        assert any(CANARY.encode() in open_mail(key, b) for b in objects.values())
        stored[user] = objects
    return stored


def _private_keys_on_server(app: Appliance) -> list[object]:
    """Every private key of any kind that can be loaded from any file (or PEM block in a file) in the data dir."""
    found = []
    for path in app.data_dir.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        candidates = [data]
        start = 0
        for _ in range(100):
            begin = data.find(b"-----BEGIN", start)
            if begin < 0:
                break
            end = data.find(b"-----END", begin)
            stop = data.find(b"-----", end + 8) + 5 if end >= 0 else len(data)
            candidates.append(data[begin:stop])
            start = stop
        for blob in candidates:
            for loader in (serialization.load_pem_private_key, serialization.load_der_private_key):
                try:
                    found.append(loader(blob, password=None))
                except (ValueError, TypeError):
                    pass
    return found


def test_canary_nowhere_in_plaintext_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Subject, body and attachment canaries reach no file in the data dir, database, log or TMPDIR."""
    app = Appliance(tmp_path / "app")
    try:
        keys = _run(app, tmp_path / "tmp", monkeypatch)
        _check_delivered(app, keys)
    finally:
        app.stop()
    assert _scan(_server_files(app, tmp_path / "tmp")) == []


@pytest.mark.postgres
def test_canary_nowhere_in_plaintext_postgres(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With PostgreSQL, no table holds the canary in any text or binary column, nor does any server file."""
    import psycopg
    from sqlalchemy.engine import make_url

    app = Appliance(tmp_path / "app", db_url=postgres_url)
    try:
        keys = _run(app, tmp_path / "tmp", monkeypatch)
        _check_delivered(app, keys)
    finally:
        app.stop()
    assert _scan(_server_files(app, tmp_path / "tmp")) == []
    libpq = make_url(postgres_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq) as conn:
        tables = [r[0] for r in conn.execute("select tablename from pg_tables where schemaname = 'public'")]
        assert "object_chunks" in tables
        for table in tables:
            rows = conn.execute(f'select * from "{table}"').fetchall()  # noqa: S608 - names from the catalogue
            for row in rows:
                for value in row:
                    data = bytes(value) if isinstance(value, (bytes, memoryview)) else str(value).encode()
                    assert not any(n in data for n in _needles()), f"canary in table {table}"


def test_modes_and_no_private_key_on_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Data files are 0600 and folders 0700; no key on the server opens stored mail, and no user key is held."""
    app = Appliance(tmp_path / "app")
    try:
        keys = _run(app, tmp_path / "tmp", monkeypatch)
        stored = _check_delivered(app, keys)
    finally:
        app.stop()
    assert stat.S_IMODE(app.data_dir.stat().st_mode) == 0o700
    for path in app.data_dir.rglob("*"):
        mode = stat.S_IMODE(path.lstat().st_mode)
        if path.is_dir():
            assert mode == 0o700, f"{path} is {oct(mode)}"
        elif path.is_file():
            assert mode == 0o600, f"{path} is {oct(mode)}"
    server_keys = _private_keys_on_server(app)
    assert server_keys, "expected at least the TLS key to be found by the scan"
    for server_key in server_keys:
        for objects in stored.values():
            for blob in objects.values():
                if isinstance(server_key, rsa.RSAPrivateKey):
                    with pytest.raises((CryptoError, ValueError)):
                        open_mail_object(server_key, blob)
    user_secrets = []
    for key in keys.values():
        numbers = key.private_numbers()
        user_secrets += [
            key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            numbers.p.to_bytes((numbers.p.bit_length() + 7) // 8, "big")[:64],
            numbers.d.to_bytes((numbers.d.bit_length() + 7) // 8, "big")[:64],
        ]
    for path in [*app.data_dir.rglob("*"), app.log_path]:
        if path.is_file():
            content = path.read_bytes()
            assert not any(secret in content for secret in user_secrets), f"a user's private key is in {path}"
