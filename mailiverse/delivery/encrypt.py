"""Seal a byte stream for one recipient: zlib, then the recipient's envelope format.

The output goes to a spooled temporary file.  It is ciphertext only, so it may
spill to disk; memory stays bounded whatever the message size.
"""

from __future__ import annotations

import tempfile
import zlib
from collections.abc import Iterable, Iterator
from typing import IO

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from mailiverse.crypto.formats import stream_encryptor
from mailiverse.crypto.lenient import Deflater

CHUNK = 1024 * 1024
#: Ciphertext of up to this size stays in memory.
IN_MEMORY = 1024 * 1024


def seal_chunks(
    fmt: str,
    public_key: RSAPublicKey,
    chunks: Iterable[bytes],
    tmp_dir: str | None = None,
    strategy: int = zlib.Z_DEFAULT_STRATEGY,
) -> IO[bytes]:
    """Return a rewound file holding ``envelope(fmt, zlib(b"".join(chunks)))``, zlib with ``strategy``."""
    out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY, dir=tmp_dir)  # noqa: SIM115
    seal_into(out, fmt, public_key, chunks, strategy)
    out.seek(0)
    return out


def seal_into(
    out: IO[bytes],
    fmt: str,
    public_key: RSAPublicKey,
    chunks: Iterable[bytes],
    strategy: int = zlib.Z_DEFAULT_STRATEGY,
) -> None:
    """Write ``envelope(fmt, zlib(b"".join(chunks)))`` to ``out`` as it is produced."""
    encryptor = stream_encryptor(fmt, public_key)
    deflater = Deflater(strategy=strategy)
    for chunk in chunks:
        if chunk:
            out.write(encryptor.update(deflater.update(chunk)))
    out.write(encryptor.update(deflater.finalize()))
    out.write(encryptor.finalize())


def read_chunks(f: IO[bytes], size: int = CHUNK) -> Iterator[bytes]:
    while True:
        chunk = f.read(size)
        if not chunk:
            return
        yield chunk
