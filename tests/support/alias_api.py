"""A real account on a running appliance: signed up and logged in with ``mailiverse.client.Client`` over HTTPS,
and the JSON API calls the client library has no method for yet (``/api/aliases``, a raw ``/api/send``).

The session token is the one the server handed the client at login: ``SessionTransport`` sees it pass, so the
extra calls ride the same logged-in session over the same kind of connection, without reaching into the client.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailiverse.client import Client, HttpsTransport, Response, Transport
from mailiverse.crypto.formats import open_mail_object
from tests.support.harness import Appliance

#: The answers that carry a new session token.
_TOKEN_PATHS = frozenset({"/api/login/finish", "/api/account/password"})


class SessionTransport:
    """Passes every request on, and keeps the session token of the last successful login."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.token: str | None = None

    def request(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]) -> Response:
        response = self.inner.request(method, path, body, headers)
        if path in _TOKEN_PATHS and response.status == 200:
            token = json.loads(response.body).get("token")
            if isinstance(token, str):
                self.token = token
        return response

    def close(self) -> None:
        self.inner.close()


@dataclass
class Account:
    """A logged-in user: the client (its private key in memory) and its session for direct API calls."""

    client: Client
    transport: SessionTransport

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One JSON request in the client's session: the status and the decoded answer (None if empty)."""
        assert self.transport.token, "not logged in"
        headers = {"Authorization": f"Bearer {self.transport.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        response = self.transport.request(method, path, data, headers)
        return response.status, json.loads(response.body) if response.body else None

    def create_alias(self, **fields: Any) -> dict[str, Any]:
        """``POST /api/aliases``: the new alias (with its address in clear)."""
        status, answer = self.call("POST", "/api/aliases", fields)
        assert status == 201, (status, answer)
        assert isinstance(answer, dict)
        return answer

    def change_alias(self, alias_id: str, **fields: Any) -> dict[str, Any]:
        """``PATCH /api/aliases/{id}``: the alias as changed."""
        status, answer = self.call("PATCH", f"/api/aliases/{alias_id}", fields)
        assert status == 200, (status, answer)
        assert isinstance(answer, dict)
        return answer

    def aliases(self) -> list[dict[str, Any]]:
        """``GET /api/aliases``."""
        status, answer = self.call("GET", "/api/aliases")
        assert status == 200, (status, answer)
        return list(answer["aliases"])

    def open_sealed(self, value: str) -> Any:
        """A value the server sealed to this account's key (base64), opened with the key as a mail object."""
        return json.loads(open_mail_object(self.client.private_key, base64.b64decode(value)))

    def twins(self, folder: str = "Mail/In_Json/") -> dict[str, dict[str, Any]]:
        """Every twin under ``folder``, by path, each decrypted here with the account's key."""
        return {o.path: json.loads(self.client.open_mail(o.path)) for o in self.client.iter_objects(folder)}


def sign_up(app: Appliance, user: str, password: str) -> Account:
    """Sign ``user`` up on ``app`` (which must allow it) and log in, over HTTPS trusting only its own certificate."""
    ca = str(app.data_dir / "tls" / "self-signed.crt")
    transport = SessionTransport(HttpsTransport(f"https://127.0.0.1:{app.web_port}", ca_file=ca))
    client = Client(transport, user)
    client.signup(password)
    client.login(password)
    return Account(client, transport)
