"""Idle memory (issue 9): what the server imports at start-up is what it needs to serve.

Each module kept out here cost the idle appliance resident memory for code it runs rarely or never:
the PostgreSQL dialect and its drivers on an SQLite appliance (~2 MB), ``twisted.names`` before the
first direct delivery, and ``email.policy`` with its header registry before the first composed send.
``argon2`` is never the server's: only clients derive password keys (docs/auth.md, "The password KDF").
The paths that use them are covered where they run: PostgreSQL stores (tests/store), direct MX
delivery (tests/outbound), composed sends (tests/web, tests/e2e).
"""

from __future__ import annotations

import json
import subprocess
import sys

LAZY = (
    "sqlalchemy.dialects.postgresql",
    "twisted.names.dns",
    "email.policy",
    "email.headerregistry",
    "argon2",
    # the receipt-time judge's libraries and the safe-HTML sanitiser: delivery workers only (issue 18)
    "authheaders",
    "dkim",
    "nacl",  # dkimpy's ed25519-sha256 verifier
    "spf",
    "nh3",
    "publicsuffix2",
    # loaded where they are used (issue 24): the second factor at the first login or account call needing it, the
    # LMTP receiver with --lmtp, the shared rate-limit buckets with --metabase, the sync's reads at the first sync
    "mailiverse.accounts.secondfactor",
    "mailiverse.store.secondfactor",
    "mailiverse.auth.recovery",
    "webauthn",
    "mailiverse.smtp.lmtp",
    "mailiverse.store.ratebuckets",
    "mailiverse.store.changes",
)

PROBE = """
import json, sys
import twisted.plugins.mailiverse_plugin
import mailiverse.appliance, mailiverse.tap
print(json.dumps(sorted(sys.modules)))
"""


def loaded_after_import() -> set[str]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


def test_the_server_modules_leave_the_rarely_used_ones_unloaded() -> None:
    loaded = loaded_after_import()
    assert {"mailiverse.appliance", "mailiverse.outbound.transport", "mailiverse.submission.service"} <= loaded
    assert not loaded & set(LAZY), sorted(loaded & set(LAZY))
