"""Tamper evidence of the authenticated v2 format: any flipped bit in a stored object is a DecryptionError."""

from __future__ import annotations

import os
import random
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from mailiverse.crypto.errors import GENERIC_DECRYPTION_MESSAGE, DecryptionError
from mailiverse.crypto.formats import open_mail_object
from tests.support.appliance_state import read_store
from tests.support.harness import DOMAIN, Appliance
from tests.support.smtp import make_message, send_starttls

pytestmark = pytest.mark.integration

QUICK_POSITIONS = 300


@pytest.fixture(scope="module")
def stored_v2(tmp_path_factory: pytest.TempPathFactory):
    """A real appliance that received one message for a v2 user; yields (app, key, {path: blob})."""
    app = Appliance(tmp_path_factory.mktemp("tamper") / "app")
    app.start()
    try:
        key = app.add_user("carol", "v2")
        sent = make_message("Tamper target", "Secret body for carol.\n" * 300, to=f"carol@{DOMAIN}")
        assert send_starttls(app, [f"carol@{DOMAIN}"], sent) == {}
        objects = read_store(app, "carol")
        assert len(objects) == 2 and all(b[0] == 2 for b in objects.values())
        yield app, key, objects
    finally:
        app.stop()


def _flips(size: int) -> list[tuple[int, int]]:
    """Every bit in the long run; in the quick run the header bytes, the tail, and a random sample of the rest."""
    if os.environ.get("LONG"):
        return [(i, b) for i in range(size) for b in range(8)]
    rng = random.Random(size)
    fixed = [(i, rng.randrange(8)) for i in [*range(min(size, 300)), *range(max(0, size - 40), size)]]
    return fixed + [(rng.randrange(size), rng.randrange(8)) for _ in range(QUICK_POSITIONS)]


def test_untampered_objects_open(stored_v2) -> None:
    """The stored v2 objects decrypt with the user's key before any tampering (the control case)."""
    _, key, objects = stored_v2
    for blob in objects.values():
        assert open_mail_object(key, blob)


def test_every_flipped_bit_is_a_decryption_error(stored_v2, record_property) -> None:
    """Flipping any single bit of a stored v2 original or twin raises the one generic DecryptionError."""
    _, key, objects = stored_v2
    tried = 0
    for blob in objects.values():
        for index, bit in _flips(len(blob)):
            tampered = bytearray(blob)
            tampered[index] ^= 1 << bit
            with pytest.raises(DecryptionError) as caught:
                open_mail_object(key, bytes(tampered))
            assert str(caught.value) == GENERIC_DECRYPTION_MESSAGE
            tried += 1
    record_property("flips", tried)
    print(f"tamper: {tried} single-bit flips over {len(objects)} v2 objects, all DecryptionError")


@pytest.mark.parametrize("change", ["truncate-chunk", "truncate-tag", "append", "drop-final", "empty"])
def test_truncation_and_extension_are_decryption_errors(stored_v2, change: str) -> None:
    """Cutting, extending or emptying a v2 object is a DecryptionError, never a shorter plaintext."""
    _, key, objects = stored_v2
    for blob in objects.values():
        tampered = {
            "truncate-chunk": blob[: len(blob) // 2],
            "truncate-tag": blob[:-1],
            "append": blob + b"\0",
            "drop-final": blob[:-17],
            "empty": b"",
        }[change]
        with pytest.raises(DecryptionError):
            open_mail_object(key, tampered)


def test_tampered_row_in_the_database_is_refused_by_admin(stored_v2, tmp_path: Path) -> None:
    """A bit flipped inside the SQLite database makes `store cat --private-key` refuse, showing no plaintext."""
    app, key, objects = stored_v2
    path = sorted(p for p in objects if p.startswith("Mail/In/"))[0]
    keyfile = tmp_path / "carol.key"
    keyfile.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    os.chmod(keyfile, 0o600)
    assert b"Secret body" in app.admin("store", "cat", "carol", path, "--private-key", str(keyfile)).stdout
    db = sqlite3.connect(next(app.data_dir.glob("*.sqlite3")))
    try:
        rows = db.execute("select rowid, data from object_chunks").fetchall()
        for rowid, value in rows:  # every stored chunk of carol's two objects
            changed = bytearray(value)
            changed[len(changed) // 2] ^= 0x10
            db.execute("update object_chunks set data=? where rowid=?", (bytes(changed), rowid))
        flipped = len(rows)
        db.commit()
    finally:
        db.close()
    assert flipped > 0
    shown = app.admin("store", "cat", "carol", path, "--private-key", str(keyfile), check=False)
    assert shown.returncode != 0
    assert b"Secret body" not in shown.stdout + shown.stderr
    assert b"tampered" in shown.stderr
