"""Baseline: an aiosmtpd server with STARTTLS whose handler accepts and drops every message.

Run: ``python -m bench.aiosmtpd_sink PORT CERT_PEM KEY_PEM``.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from typing import Any

from aiosmtpd.smtp import SMTP

#: Above the largest message the benchmark sends (aiosmtpd's default is 32 MiB).
DATA_SIZE_LIMIT = 64 * 1024 * 1024


class Sink:
    """An aiosmtpd handler that keeps nothing."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
        return "250 2.0.0 OK discarded"


async def serve(port: int, cert: str, key: str) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    handler = Sink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(
            handler,
            hostname="aiosmtpd.bench.test",
            tls_context=context,
            data_size_limit=DATA_SIZE_LIMIT,
            decode_data=False,
        ),
        host="127.0.0.1",
        port=port,
        backlog=512,
    )
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> None:
    asyncio.run(serve(int(argv[1]), argv[2], argv[3]))


if __name__ == "__main__":
    main(sys.argv)
