"""Check an ``--lmtp`` endpoint and turn it into the Twisted endpoint string the appliance listens on.

LMTP has no authentication: whatever can connect to the listener delivers mail to any local
recipient, with the trust given to the MTA in front (docs/running.md). So only two kinds of
endpoint are accepted, both reachable from this host alone:

* ``unix:PATH`` (optionally ``:mode=0660`` or ``:mode=0600``, ``:lockfile=0|1``): a socket whose
  permissions say who may deliver. Mode 0660 by default (Twisted's own default, 0666, would let every
  local user deliver), and a lock file by default, so a socket left behind by a crashed appliance is
  replaced at start while one still in use by a running appliance stops this one from starting.
* ``tcp:PORT`` or ``tcp:PORT:interface=127.x.y.z``: TCP on a loopback address only (127.0.0.1 when
  none is given, whatever ``--listen`` says).

Anything else (another interface, TLS, a mode that lets other users in) is a ``ConfigError`` at start.
"""

from __future__ import annotations

import ipaddress

from mailiverse.config import ConfigError

#: The socket modes allowed: the owner, and the group the MTA runs in, at most.
ALLOWED_MODES = {0o660, 0o600}
DEFAULT_MODE = 0o660


def _split(description: str) -> list[str]:
    """The colon-separated parts of an endpoint string, ``\\:`` kept as a literal colon."""
    parts, current, escaped = [], [], False
    for char in description:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:")


def _options(parts: list[str], allowed: tuple[str, ...], description: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or key not in allowed or key in found:
            raise ConfigError(
                f"--lmtp {description!r}: unknown or repeated setting {part!r} (allowed: {', '.join(allowed)})"
            )
        found[key] = value
    return found


def _unix(parts: list[str], description: str) -> str:
    path, settings = parts[0], _options(parts[1:], ("mode", "lockfile"), description)
    if path.startswith("address="):
        path = path[len("address=") :]
    if not path.startswith("/") or "\0" in path:
        raise ConfigError(
            f"--lmtp {description!r}: give the socket as an absolute path, e.g. unix:/run/mailiverse/lmtp.sock"
        )
    try:
        mode = int(settings.get("mode", oct(DEFAULT_MODE)[2:]), 8)
    except ValueError:
        mode = -1
    if mode not in ALLOWED_MODES:
        raise ConfigError(
            f"--lmtp {description!r}: mode must be 0660 (the MTA's group may deliver) or 0600 (its owner only): "
            "anything that can connect to the socket delivers mail"
        )
    lockfile = settings.get("lockfile", "1")
    if lockfile not in ("0", "1"):
        raise ConfigError(f"--lmtp {description!r}: lockfile is 0 or 1")
    return f"unix:{_escape(path)}:mode={mode:o}:lockfile={lockfile}"


def _tcp(parts: list[str], description: str) -> str:
    port_text = parts[0]
    if port_text.startswith("port="):
        port_text = port_text[len("port=") :]
    settings = _options(parts[1:], ("interface", "backlog"), description)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"--lmtp {description!r}: tcp:PORT needs a port number from 1 to 65535")
    interface = settings.get("interface", "127.0.0.1")
    try:
        loopback = ipaddress.IPv4Address(interface) in ipaddress.IPv4Network("127.0.0.0/8")
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(
            f"--lmtp {description!r}: LMTP listens on a loopback address only (interface=127.0.0.1): "
            "it has no authentication, so anyone who can reach it delivers mail"
        )
    backlog = settings.get("backlog", "50")
    if not backlog.isdigit() or not 0 < int(backlog) <= 4096:
        raise ConfigError(f"--lmtp {description!r}: backlog is a number from 1 to 4096")
    return f"tcp:{int(port_text)}:interface={interface}:backlog={backlog}"


def lmtp_endpoint(description: str) -> str:
    """The Twisted server endpoint string of one ``--lmtp`` value; ``ConfigError`` naming the fix otherwise."""
    kind, _, rest = description.partition(":")
    parts = _split(rest)
    if kind == "unix" and rest:
        return _unix(parts, description)
    if kind == "tcp" and rest:
        return _tcp(parts, description)
    raise ConfigError(
        f"--lmtp {description!r}: use unix:PATH (e.g. unix:/run/mailiverse/lmtp.sock) or tcp:PORT "
        "(on 127.0.0.1); LMTP is for an MTA on this host"
    )
