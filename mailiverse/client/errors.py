"""The errors the client library raises: each carries a stable ``code`` and a one-line message a person can act on."""

from __future__ import annotations


class ClientError(Exception):
    """Base of every client failure; ``str(error)`` is one line and never holds a secret."""

    code = "client_error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(" ".join(message.split()))
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self)


class UsageError(ClientError):
    """The caller gave a bad argument (address, folder, ID, directory)."""

    code = "usage"


class ConnectionFailed(ClientError):
    """The server could not be reached, or the connection broke."""

    code = "connection_failed"


class ServerIdentityError(ClientError):
    """The server is not the one we pinned (certificate) or could not prove it holds our verifier (HAMK)."""

    code = "server_identity"


class AuthenticationFailed(ClientError):
    """Wrong user name or password (the server never says which)."""

    code = "auth_failed"


class SecondFactorRequired(AuthenticationFailed):
    """The password was right, but the account also needs its second factor (docs/passkeys.md): this client has no
    authenticator, so a recovery code; none was given, or the one given was refused."""

    code = "second_factor_required"


class DecryptionFailed(ClientError):
    """A key block or message could not be decrypted; deliberately says nothing more."""

    code = "decryption_failed"


class ProtocolError(ClientError):
    """The server answered something that breaks docs/api.md (bad JSON, missing field, oversized body)."""

    code = "protocol_error"


class ApiError(ClientError):
    """The server refused a request with a JSON error ``{"error", "message"}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} ({code}, HTTP {status})", code)
        self.status = status
