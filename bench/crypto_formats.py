"""Time encryption and decryption of a 10 MiB message in the v1 and v2 mail formats.

Run: ``.venv/bin/python bench/crypto_formats.py [--size-mib N] [--repeat R]``.
Reports the best of R runs for each of: v1 one-shot, v1 streaming, v2 one-shot, v2 streaming,
plus plain AES-CBC as a baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from collections.abc import Callable

from mailiverse.crypto import aes, envelope, keys, rsaaes


def _best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _stream(enc: object, data: bytes, piece: int = 64 * 1024) -> bytes:
    out = [enc.update(data[i : i + piece]) for i in range(0, len(data), piece)]  # type: ignore[attr-defined]
    out.append(enc.finalize())  # type: ignore[attr-defined]
    return b"".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = os.urandom(args.size_mib * 1024 * 1024)
    key = keys.generate_private_key()
    pub = key.public_key()
    aes_key = os.urandom(32)
    v1 = rsaaes.encrypt_v1(pub, data)
    v2 = envelope.seal(pub, data)
    rows = [
        ("baseline AES-CBC encrypt", lambda: aes.encrypt_embediv(aes_key, data)),
        ("v1 encrypt (one-shot)", lambda: rsaaes.encrypt_v1(pub, data)),
        ("v1 decrypt (one-shot)", lambda: rsaaes.decrypt(key, v1)),
        (
            "v1 encrypt (streaming 64 KiB)",
            lambda: _stream(rsaaes.V1StreamEncryptor(pub), data),
        ),
        (
            "v1 decrypt (streaming 64 KiB)",
            lambda: _stream(rsaaes.V1StreamDecryptor(key), v1),
        ),
        ("v2 seal (one-shot)", lambda: envelope.seal(pub, data)),
        ("v2 open (one-shot)", lambda: envelope.open_sealed(key, v2)),
        (
            "v2 seal (streaming 64 KiB)",
            lambda: _stream(envelope.SealEncryptor(pub), data),
        ),
        (
            "v2 open (streaming 64 KiB)",
            lambda: _stream(envelope.SealDecryptor(key), v2),
        ),
        (
            "v2 open_stream (file objects)",
            lambda: envelope.open_stream(key, io.BytesIO(v2), io.BytesIO()),
        ),
    ]
    print(f"{args.size_mib} MiB, best of {args.repeat}")
    for name, fn in rows:
        t = _best(fn, args.repeat)
        print(f"  {name:34s} {t * 1000:8.1f} ms  {args.size_mib / t:8.1f} MiB/s")
    print(f"  size overhead: v1 {len(v1) - len(data)} bytes, v2 {len(v2) - len(data)} bytes")


if __name__ == "__main__":
    main()
