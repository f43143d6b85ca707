"""Spool one incoming message with bounded memory, never writing plaintext to disk.

Small messages stay in memory.  Past ``memory_limit`` bytes the message spills to an
anonymous temporary file (``O_TMPFILE`` where the platform has it, otherwise created and
unlinked at once; mode 0600) holding AES-256-CTR ciphertext under a random key and nonce
that live only in this process's memory.  Losing the process loses the key, so a crash
leaves nothing readable behind.  CTR mode lets every reader seek independently, so
``SpooledMessage.open()`` hands out any number of independent streams, usable from any
thread (they read with ``os.pread`` and never share a file position).  ``SpoolFile`` puts the
same spool behind a file object written once then read, for HTTP request bodies.
"""

from __future__ import annotations

import io
import os
import secrets
import tempfile
import threading
from pathlib import Path
from typing import BinaryIO, Self

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_BLOCK = 16
_WRITE_CHUNK = 64 * 1024
#: Bytes decrypted at a time when a spilled message is read whole.
_READ_ALL_CHUNK = 1024 * 1024


class SpoolError(Exception):
    """The spool was used out of order (write after finish, open after close)."""


def _ctr_cipher(key: bytes, nonce: bytes, offset: int) -> tuple[Cipher[modes.CTR], int]:
    """A CTR cipher positioned at the block holding ``offset``, and the bytes to skip in it."""
    block, skip = divmod(offset, _BLOCK)
    counter = (int.from_bytes(nonce, "big") + block) % (1 << 128)
    return Cipher(algorithms.AES(key), modes.CTR(counter.to_bytes(_BLOCK, "big"))), skip


class _DecryptingReader(io.RawIOBase):
    """A seekable raw stream over the encrypted spool file, decrypting on the fly."""

    def __init__(self, fd: int, size: int, key: bytes, nonce: bytes) -> None:
        super().__init__()
        self._fd = fd
        self._size = size
        self._key = key
        self._nonce = nonce
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        target = base + offset
        if target < 0:
            raise ValueError("negative seek position")
        self._pos = target
        return self._pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.closed:
            raise ValueError("I/O operation on closed spool reader")
        want = min(len(buffer), max(0, self._size - self._pos))
        if want == 0:
            return 0
        ciphertext = os.pread(self._fd, want, self._pos)
        if len(ciphertext) != want:
            raise OSError("spool file is shorter than expected")
        cipher, skip = _ctr_cipher(self._key, self._nonce, self._pos)
        decryptor = cipher.decryptor()
        plaintext = decryptor.update(bytes(skip) + ciphertext)[skip:]
        memoryview(buffer)[:want] = plaintext
        self._pos += want
        return want


class SpooledMessage:
    """A finished spooled message: ``size`` bytes readable any number of times until ``close()``."""

    def __init__(
        self,
        *,
        size: int,
        memory: bytes | None = None,
        fd: int | None = None,
        key: bytes = b"",
        nonce: bytes = b"",
        path: Path | None = None,
    ) -> None:
        self.size = size
        self._memory = memory
        self._fd = fd
        self._key = key
        self._nonce = nonce
        self._path = path
        self._closed = False
        self._lock = threading.Lock()

    @property
    def in_memory(self) -> bool:
        """Whether the message never spilled to disk."""
        return self._fd is None

    def open(self) -> BinaryIO:
        """A fresh readable binary stream positioned at the start of the message."""
        with self._lock:
            if self._closed:
                raise SpoolError("spooled message already closed")
            if self._memory is not None:
                return io.BytesIO(self._memory)
            assert self._fd is not None
            raw = _DecryptingReader(self._fd, self.size, self._key, self._nonce)
        return io.BufferedReader(raw, buffer_size=_WRITE_CHUNK)

    def read_all(self) -> bytes:
        """The whole message as one bytes object, never holding a second copy of it on the way."""
        with self.open() as stream:
            if self.in_memory:
                # BytesIO hands back the bytes it wraps when read whole: no copy.
                return stream.read()
            return _read_in_place(stream, self.size)

    def close(self) -> None:
        """Discard the message: drop the memory copy, the key and the temp file."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._memory = None
            self._key = b""
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        if self._path is not None:
            try:
                self._path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _read_in_place(stream: BinaryIO, size: int) -> bytes:
    """Exactly ``size`` bytes of ``stream``, decrypted straight into the bytes object returned.

    Joining pieces, or converting a bytearray, briefly needs the message twice (a 50 MB message
    would peak at 100 MB). ``BytesIO.getvalue()`` returns the bytes object BytesIO writes into once
    no view of it is left, so filling a pre-sized BytesIO through a memoryview needs it once; were
    that ever to change, getvalue() would copy and the result would still be right.
    """
    buffer = io.BytesIO()
    if size:
        buffer.seek(size - 1)
        buffer.write(b"\0")
    view = buffer.getbuffer()
    try:
        pos = 0
        while pos < size:
            piece = view[pos : min(pos + _READ_ALL_CHUNK, size)]
            count = stream.readinto(piece)  # type: ignore[attr-defined]
            piece.release()
            if not count:
                raise SpoolError("the spooled message is shorter than its size")
            pos += count
    finally:
        view.release()
    return buffer.getvalue()


class SpoolWriter:
    """Receives a message incrementally; ``finish()`` turns it into a ``SpooledMessage``.

    ``max_size`` is the enforcement hook for size limits: once more than ``max_size`` bytes
    have been written, everything is dropped, later writes are only counted and
    ``oversized`` becomes true; ``finish()`` then raises ``SpoolError``.  ``keep_name`` leaves
    the temp file visible in ``directory`` until close, so tests can inspect its bytes.
    """

    def __init__(
        self,
        directory: Path,
        *,
        memory_limit: int = 256 * 1024,
        max_size: int | None = None,
        keep_name: bool = False,
    ) -> None:
        if memory_limit < 0:
            raise ValueError("memory_limit must not be negative")
        self._directory = Path(directory)
        self._memory_limit = memory_limit
        self._max_size = max_size
        self._keep_name = keep_name
        self._memory: list[bytes] | None = []
        self._memory_size = 0
        self._fd: int | None = None
        self._path: Path | None = None
        self._key = b""
        self._nonce = b""
        self._encryptor: object | None = None
        # Plaintext waiting to be encrypted and written: SMTP hands over a line at a time, and one
        # AES call and one write(2) per line cost more than the rest of the spool together.
        self._pending = bytearray()
        self.size = 0
        self.oversized = False
        self._done = False

    @property
    def spilled(self) -> bool:
        """Whether the message went to the encrypted temp file."""
        return self._fd is not None

    def write(self, data: bytes) -> None:
        """Append ``data``; over ``max_size`` the message is dropped and only counted."""
        if self._done:
            raise SpoolError("write after finish or abort")
        if not data:
            return
        self.size += len(data)
        if self.oversized:
            return
        if self._max_size is not None and self.size > self._max_size:
            self.oversized = True
            self._discard()
            return
        if self._fd is None:
            assert self._memory is not None
            self._memory.append(bytes(data))
            self._memory_size += len(data)
            if self._memory_size > self._memory_limit:
                self._spill()
        else:
            self._pending += data
            if len(self._pending) >= _WRITE_CHUNK:
                self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._write_encrypted(self._pending)
            self._pending.clear()

    def finish(self) -> SpooledMessage:
        """Close the writer and return the message; raises ``SpoolError`` when oversized."""
        if self._done:
            raise SpoolError("spool already finished or aborted")
        self._done = True
        if self.oversized:
            raise SpoolError("message exceeded the size limit")
        if self._fd is None:
            assert self._memory is not None
            memory = b"".join(self._memory)
            self._memory = None
            return SpooledMessage(size=len(memory), memory=memory)
        self._flush()
        fd, self._fd = self._fd, None
        path, self._path = self._path, None
        message = SpooledMessage(size=self.size, fd=fd, key=self._key, nonce=self._nonce, path=path)
        self._key = b""
        self._encryptor = None
        return message

    def abort(self) -> None:
        """Throw the message away."""
        self._done = True
        self._discard()

    def _discard(self) -> None:
        self._pending.clear()
        self._memory = None
        self._memory_size = 0
        self._key = b""
        self._encryptor = None
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        path, self._path = self._path, None
        if path is not None:
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def _open_temp_file(self) -> int:
        self._directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self._keep_name:
            fd, name = tempfile.mkstemp(dir=self._directory, prefix="spool-")
            self._path = Path(name)
            return fd
        flags = os.O_RDWR | getattr(os, "O_CLOEXEC", 0)
        o_tmpfile = getattr(os, "O_TMPFILE", 0)
        if o_tmpfile:
            try:
                return os.open(self._directory, flags | o_tmpfile, 0o600)
            except OSError:
                pass  # filesystem without O_TMPFILE support: fall back to create-and-unlink
        fd, name = tempfile.mkstemp(dir=self._directory, prefix="spool-")
        os.unlink(name)
        return fd

    def _spill(self) -> None:
        assert self._memory is not None
        self._key = secrets.token_bytes(32)
        self._nonce = secrets.token_bytes(_BLOCK)
        cipher, _ = _ctr_cipher(self._key, self._nonce, 0)
        self._encryptor = cipher.encryptor()
        self._fd = self._open_temp_file()
        pending, self._memory = self._memory, None
        self._memory_size = 0
        self._write_encrypted(b"".join(pending))

    def _write_encrypted(self, data: bytes | bytearray) -> None:
        assert self._fd is not None and self._encryptor is not None
        ciphertext = memoryview(self._encryptor.update(data))  # type: ignore[attr-defined]
        while ciphertext:
            written = os.write(self._fd, ciphertext[:_WRITE_CHUNK])
            ciphertext = ciphertext[written:]


class SpoolFile:
    """A file object over the spool: written front to back, then sought and read like any file.

    Made for bodies that arrive in pieces and are read afterwards (an HTTP request's ``content``):
    writes go to a ``SpoolWriter``; the first ``seek`` or ``read`` finishes it, and from then on the
    file reads the ``SpooledMessage`` (writes are refused). Memory stays bounded and what spills to
    disk is ciphertext, exactly as for a spooled message. ``close()`` discards everything.
    """

    def __init__(self, directory: Path, *, memory_limit: int = 256 * 1024) -> None:
        self._writer: SpoolWriter | None = SpoolWriter(directory, memory_limit=memory_limit)
        self._message: SpooledMessage | None = None
        self._reader: BinaryIO | None = None
        self.closed = False

    @property
    def spilled(self) -> bool:
        """Whether the body went to the encrypted temp file."""
        if self._writer is not None:
            return self._writer.spilled
        return self._message is not None and not self._message.in_memory

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return self._writer is not None

    def write(self, data: bytes) -> int:
        """Append ``data``; only before the first seek or read."""
        if self.closed:
            raise ValueError("I/O operation on closed spool file")
        if self._writer is None:
            raise SpoolError("the spool file is being read; it takes no more writes")
        self._writer.write(bytes(data))
        return len(data)

    def tell(self) -> int:
        """While written: the bytes written so far; then the read position."""
        if self._writer is not None and not self.closed:
            return self._writer.size
        return self._reading().tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._reading().seek(offset, whence)

    def read(self, size: int | None = -1) -> bytes:
        return self._reading().read(-1 if size is None else size)

    def _reading(self) -> BinaryIO:
        if self.closed:
            raise ValueError("I/O operation on closed spool file")
        if self._reader is None:
            writer, self._writer = self._writer, None
            assert writer is not None
            self._message = writer.finish()
            self._reader = self._message.open()
        return self._reader

    def close(self) -> None:
        """Discard the body: the memory copy, the key and the temp file."""
        if self.closed:
            return
        self.closed = True
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.abort()
        if self._reader is not None:
            self._reader.close()
        if self._message is not None:
            self._message.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
