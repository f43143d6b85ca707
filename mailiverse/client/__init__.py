"""The Mailiverse Python client: a library and the ``mailiverse-client`` CLI that keep nothing on the device.

See ``docs/client.md``.  ``Client`` does all crypto locally (keys from the password with Argon2id, or PBKDF2
for accounts not yet upgraded; SRP-6a login, RSA key pair made at sign-up, key block and mail decrypted in memory).
"""

from mailiverse.client.api import Client, MessageInfo, PasswordKeys, SendResult, StoredObject, folder_path
from mailiverse.client.errors import (
    ApiError,
    AuthenticationFailed,
    ClientError,
    ConnectionFailed,
    DecryptionFailed,
    ProtocolError,
    ServerIdentityError,
    UsageError,
)
from mailiverse.client.export import ExportResult, export_maildir
from mailiverse.client.transport import HttpsTransport, RecordingTransport, Response, SentRequest, Transport

__all__ = [
    "ApiError",
    "AuthenticationFailed",
    "Client",
    "ClientError",
    "ConnectionFailed",
    "DecryptionFailed",
    "ExportResult",
    "HttpsTransport",
    "MessageInfo",
    "PasswordKeys",
    "ProtocolError",
    "RecordingTransport",
    "Response",
    "SendResult",
    "SentRequest",
    "ServerIdentityError",
    "StoredObject",
    "Transport",
    "UsageError",
    "export_maildir",
    "folder_path",
]
