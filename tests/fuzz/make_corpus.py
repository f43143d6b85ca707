"""Regenerate the seed corpus in tests/fuzz/corpus (run by hand: python -m tests.fuzz.make_corpus).

Seeds are valid inputs of every target (sealed with the committed fuzz-only key) plus the MIME
messages of the mime_json vectors, so the fuzzers start from deep inside each parser.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from pathlib import Path

from mailiverse.compat import blocks
from mailiverse.compat.packets import MESSAGE_GET, MESSAGE_PUT, encode_line
from mailiverse.crypto import aes, envelope, lenient, rsaaes
from mailiverse.crypto.formats import seal_mail_object
from tests.support.fuzz_targets import AES_KEY, CORPUS, fuzz_key

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "mime_json.json"

MIME_SEEDS = [
    b"From: a@b.test\r\nTo: c@d.test\r\nSubject: hi\r\n\r\nbody\r\n",
    b"Subject: =?utf-8?B?w6k=?=\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n"
    b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"caf=E9\r\n--x\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\ninner body\r\n--x--\r\n",
    b'Content-Type: multipart/alternative; boundary="a"\r\n\r\n--a\r\nContent-Type: text/html\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\nPGI+aGk8L2I+\r\n--a--\r\n",
]


def _write(target: str, name: str, data: bytes) -> None:
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}-{hashlib.sha256(data).hexdigest()[:12]}").write_bytes(data)


def _vector_messages() -> list[bytes]:
    try:
        doc = json.loads(VECTORS.read_text())
    except (OSError, ValueError):
        return []
    found: list[bytes] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "mime_b64" and isinstance(value, str):
                    try:
                        found.append(base64.b64decode(value, validate=True))
                    except binascii.Error:
                        pass  # the schema's description of the field, not a case
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(doc)
    return found[:40]


def main() -> None:
    key = fuzz_key()
    public = key.public_key()
    mail = MIME_SEEDS[1]
    for i, seed in enumerate(MIME_SEEDS + _vector_messages()):
        _write("mime_twin", f"mime{i}", seed)
    for fmt in ("v1", "v2"):
        _write("mail_object", fmt, seal_mail_object(fmt, public, mail))
    _write("v2_envelope", "small", envelope.seal(public, b"hello"))
    _write("v2_envelope", "chunks", envelope.seal(public, mail * 3, chunk_size=64))
    _write("v1_rsaaes", "v1", rsaaes.encrypt_v1(public, b"hello v1"))
    _write("aes_embediv", "blob", aes.encrypt_embediv(AES_KEY, b"embed iv", iv=bytes(16)))
    _write("inflate", "deflated", lenient.deflate(mail))
    environment = {"name": "fuzz", "key": "value \u00e9 \U0001f600"}
    _write("key_block", "block", blocks.encrypt_key_block(AES_KEY, environment, iv=bytes(16)))
    _write("environment", "env", blocks.environment_bytes(environment))
    _write("legacy_line", "get", encode_line(MESSAGE_GET, {}))
    _write("legacy_line", "put", encode_line(MESSAGE_PUT, {"block": "QUJD"}))


if __name__ == "__main__":
    main()
