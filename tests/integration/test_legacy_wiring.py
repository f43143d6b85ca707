"""``--legacy`` on the real twistd: warning logged, listeners up over TLS, routes mounted, keys printable."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_der_public_key

from tests.support.harness import DOMAIN, Appliance, free_port, https_get, tls_context

pytestmark = pytest.mark.integration


def test_legacy_mode_is_opt_in_and_wired(tmp_path: Path) -> None:
    """Without --legacy no routes and no legacy keys; with it the warning is logged and both listeners speak TLS."""
    plain = Appliance(tmp_path / "modern")
    plain.start()
    try:
        code, body = https_get(plain, "/Mailiverse/StoreList?prefix=Mail/")
        assert code == 404 and json.loads(body)["error"] == "not_found"
        assert not (plain.data_dir / "keys" / "mail-auth.key.pem").exists()
        assert not (plain.data_dir / "keys" / "send.key.pem").exists()
    finally:
        plain.stop()
    keyserver, mailserver = free_port(), free_port()
    app = Appliance(
        tmp_path / "legacy",
        extra_args=["--legacy", "--legacy-keyserver", f"tcp:{keyserver}", "--legacy-mailserver", f"tcp:{mailserver}"],
    )
    app.start()
    try:
        assert "257 bits and breakable" in app.log()
        for port in (keyserver, mailserver):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with tls_context(app).wrap_socket(raw, server_hostname=f"mail.{DOMAIN}") as tls:
                    assert tls.version() in ("TLSv1.2", "TLSv1.3")
        code, _ = https_get(app, "/Mailiverse/StoreList?prefix=Mail/")
        assert code in (400, 401, 403)
        printed = app.admin("legacy", "keys").stdout.decode()
        lines = [line for line in printed.splitlines() if line.strip()]
        assert len(lines) == 2
        for line in lines:
            b64 = line.split('"')[3]
            assert load_der_public_key(base64.b64decode(b64)).key_size >= 2048
    finally:
        app.stop()


def test_legacy_plain_tcp_needs_the_flag(tmp_path: Path) -> None:
    """--legacy-plain serves the line protocol without TLS: a hello line gets a line back."""
    keyserver = free_port()
    app = Appliance(
        tmp_path / "legacy",
        extra_args=[
            "--legacy",
            "--legacy-plain",
            "--legacy-keyserver",
            f"tcp:{keyserver}",
            "--legacy-mailserver",
            f"tcp:{free_port()}",
        ],
    )
    app.start()
    try:
        hello = 'core.srp.SRPPackets$Packet1_ClientSendsHello!{"user":"nobody@example.org","version":"2.0"}'
        with socket.create_connection(("127.0.0.1", keyserver), timeout=10) as s:
            s.sendall(base64.b64encode(hello.encode()) + b"\n")
            data = s.recv(4096)
        assert data.endswith(b"\n")
        base64.b64decode(data.strip(), validate=True)
    finally:
        app.stop()


def test_legacy_listeners_cap_connections_per_client(tmp_path: Path) -> None:
    """The KeyServer and MailServer listeners count connections as the HTTPS ones do: one client address
    holding 32 open connections has its 33rd closed before any TLS handshake; another address still gets in."""
    from mailiverse.web.listeners import WebLimits

    keyserver, mailserver = free_port(), free_port()
    app = Appliance(
        tmp_path / "legacy",
        extra_args=["--legacy", "--legacy-keyserver", f"tcp:{keyserver}", "--legacy-mailserver", f"tcp:{mailserver}"],
    )
    app.start()
    held: list[socket.socket] = []
    try:
        cap = WebLimits().max_connections_per_address
        for n in range(cap):
            port = keyserver if n % 2 else mailserver  # the two listeners share one count
            held.append(socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.7", 0)))
        for sock in held:  # each accepted and waiting for a ClientHello: nothing comes back
            sock.settimeout(0.2)
            with pytest.raises(TimeoutError):
                sock.recv(1)
        with socket.create_connection(("127.0.0.1", keyserver), timeout=10, source_address=("127.0.0.7", 0)) as over:
            over.settimeout(10)
            assert over.recv(1) == b""  # closed by the server, unread
        with socket.create_connection(("127.0.0.1", keyserver), timeout=10, source_address=("127.0.0.8", 0)) as raw:
            with tls_context(app).wrap_socket(raw, server_hostname=f"mail.{DOMAIN}") as tls:
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        for sock in held:
            sock.close()
        app.stop()
