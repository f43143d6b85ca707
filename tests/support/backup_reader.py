"""Open a ``mailiverse-admin backup`` archive from its documented layout alone (mailiverse/admin/backup_archive.py's
docstring and docs/appliance.md), sharing no code with the appliance, so the tests see what the archive really holds.

The members are returned in memory: nothing of the archive's plaintext is written to disk.
"""

from __future__ import annotations

import hashlib
import io
import struct
import tarfile
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_MAGIC = b"MVBACKUP"
#: magic, version, kdf, log2(N), r, p, salt (16), nonce prefix (7).
_HEADER = len(_MAGIC) + 5 + 16 + 7


def open_backup(path: Path, passphrase: str) -> dict[str, bytes]:
    """Every member of the archive's tar, by name, after checking every chunk's tag and the last-chunk flag."""
    blob = path.read_bytes()
    header = blob[:_HEADER]
    assert header.startswith(_MAGIC), header[:16]
    version, kdf, log2_n, r, p = header[len(_MAGIC) : len(_MAGIC) + 5]
    assert (version, kdf) == (1, 1), (version, kdf)
    salt, prefix = header[len(_MAGIC) + 5 : -7], header[-7:]
    key = hashlib.scrypt(passphrase.encode(), salt=salt, n=1 << log2_n, r=r, p=p, maxmem=1 << 30, dklen=32)
    aead = AESGCM(key)
    plain, position, index = [], _HEADER, 0
    while True:
        (length,) = struct.unpack(">I", blob[position : position + 4])
        sealed = blob[position + 4 : position + 4 + length]
        position += 4 + length
        final = position == len(blob)
        nonce = prefix + struct.pack(">I", index) + (b"\x01" if final else b"\x00")
        plain.append(aead.decrypt(nonce, sealed, header))
        index += 1
        if final:
            break
    members: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(b"".join(plain)), mode="r:") as tar:
        for member in tar.getmembers():
            extracted = tar.extractfile(member)
            assert extracted is not None, member.name
            members[member.name] = extracted.read()
    return members
