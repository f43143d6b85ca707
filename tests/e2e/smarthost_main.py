"""Run the test smarthost (``tests.support.smarthost``) as its own process for the end-to-end tests.

Usage: ``python -m tests.e2e.smarthost_main DIR USER PASSWORD``.  Prints one JSON line
``{"port", "ca"}`` once listening (STARTTLS with a throwaway CA, AUTH required), then writes each
received message to ``DIR/received/<n>.json`` (envelope, TLS and AUTH facts, base64 data).
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

from twisted.internet import reactor, task

from tests.support.smarthost import start_server


def main(directory: str, user: str, password: str) -> None:
    root = Path(directory)
    out = root / "received"
    out.mkdir(parents=True, exist_ok=True)
    server = start_server(root / "pki", users={user: password}, names=("localhost",))
    written = 0

    def dump() -> None:
        nonlocal written
        while written < len(server.state.received):
            item = server.state.received[written]
            record = {
                "mail_from": item.mail_from,
                "recipient": item.recipient,
                "tls": item.tls,
                "authenticated_as": item.authenticated_as,
                "data": base64.b64encode(item.data).decode("ascii"),
            }
            temporary = out / f".{written}.tmp"
            temporary.write_text(json.dumps(record))
            temporary.rename(out / f"{written}.json")
            written += 1

    task.LoopingCall(dump).start(0.05)
    print(json.dumps({"port": server.number, "ca": str(server.ca_cert)}), flush=True)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(*sys.argv[1:4])
