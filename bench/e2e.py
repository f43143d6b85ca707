"""What sealing on the sender's device costs (docs/e2e.md): ``mailiverse-client``'s work for one message.

Run from the repository root: ``.venv/bin/python -m bench.e2e [--runs 20]``.

For messages of 1 KiB, 100 KiB and 1 MiB of text, to 1, 10 and 50 recipients (RSA-2048 keys, envelope v2), the
device builds the RFC 5322 message, its JSON twin (``mime/twin.py``, as the appliance builds it), signs it
(RSA-PSS), and seals the original and the twin once per recipient and once for the Sent copy: exactly what
``client/e2e.py`` does before ``POST /api/send/sealed``. The key lookups (one verified directory answer per
recipient, a few milliseconds each on the network) are not included: their server side is ``bench.keylog``'s.
The median and the 95th percentile wall-clock times are printed as a markdown table and written to
``bench/results/e2e-<date>.json`` with the request size (base64 JSON) the appliance would receive.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from mailiverse.client.e2e import INBOX, SENT, Outgoing, compose_message, new_key_base, signature_member
from mailiverse.keylog.records import KeyRecord, key_record_fields, sign_key_record, verify_key_record
from mailiverse.mime.compose import Composed

SIZES = {"1 KiB": 1024, "100 KiB": 100 * 1024, "1 MiB": 1024 * 1024}
RECIPIENTS = (1, 10, 50)


def _text(size: int) -> str:
    line = "The quick brown fox jumps over the lazy dog while the appliance sees only ciphertext.\n"
    return (line * (size // len(line) + 1))[:size]


def _records(count: int) -> list[KeyRecord]:
    keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(min(count, 5))]
    records = []
    for index in range(count):
        key = keys[index % len(keys)]
        fields = key_record_fields(key.public_key(), [f"user{index}@example.org"], created_ms=1)
        records.append(verify_key_record(sign_key_record(fields, key)))
    return records


def one_send(text: str, recipients: list[KeyRecord], own: KeyRecord, private: rsa.RSAPrivateKey) -> int:
    """Build, sign and seal one message; the size of what would be uploaded (base64)."""
    now_ms = int(time.time() * 1000)
    to = tuple(f"user{i}@example.org" for i in range(len(recipients)))
    raw = compose_message(
        Composed(to=to, subject="A benchmark", text=text), default_from="alice@example.org", now_ms=now_ms
    )
    member = signature_member(raw, "alice@example.org", own.key_id, private)
    outgoing = Outgoing(raw, new_key_base(now_ms), now_ms, member, sent_key_base=new_key_base(now_ms))
    envelopes = [outgoing.seal(r, folder=INBOX, delivered_to=a, to=a) for r, a in zip(recipients, to, strict=True)]
    envelopes.append(outgoing.seal(own, folder=SENT, delivered_to="alice@example.org"))
    return sum(len(base64.b64encode(e.original)) + len(base64.b64encode(e.twin)) for e in envelopes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    own = verify_key_record(
        sign_key_record(key_record_fields(private.public_key(), ["alice@example.org"], created_ms=1), private)
    )
    everyone = _records(max(RECIPIENTS))
    rows = []
    for size_name, size in SIZES.items():
        text = _text(size)
        for count in RECIPIENTS:
            runs = max(3, args.runs // (count // 10 + 1) // (1 + size // (512 * 1024)))
            times, uploaded = [], 0
            for _ in range(runs):
                started = time.perf_counter()
                uploaded = one_send(text, everyone[:count], own, private)
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            rows.append(
                {
                    "message": size_name,
                    "recipients": count,
                    "runs": runs,
                    "median_ms": round(statistics.median(times), 1),
                    "p95_ms": round(times[min(len(times) - 1, int(len(times) * 0.95))], 1),
                    "uploaded_bytes": uploaded,
                }
            )
            print(rows[-1], flush=True)
    print("\n| message | recipients | median | p95 | uploaded |\n|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['message']} | {row['recipients']} | {row['median_ms']} ms | {row['p95_ms']} ms "
            f"| {row['uploaded_bytes'] / 1024:,.0f} KiB |"
        )
    out = Path(__file__).parent / "results" / f"e2e-{datetime.date.today().isoformat()}.json"
    out.write_text(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
