"""``mailiverse-client bridge``: log in, then serve IMAP and SMTP on this machine until SIGINT or SIGTERM.

The account password is used for the login and then dropped; only the keys derived from it are kept, in memory, so
the bridge logs in again by itself when the appliance ends its session (``Client.keep_logged_in``). Mail apps get a
random local password made for this run, printed once (or written to ``--password-file``, 0600). The only files
written are the bridge's own certificate pair in ``--cert-dir``, that password file and, with ``--cache``, sealed
copies of messages: nothing readable.

The servers and TLS are imported only when the bridge runs. The Client blocks and keeps one HTTPS connection;
IMAP and SMTP call it from the reactor's thread pool, so its transport takes one request at a time
(``serialized``).
"""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from mailiverse.client.api import Client, LoginRefused
from mailiverse.client.bridge.localauth import LocalLogin, Throttle, new_local_password
from mailiverse.client.errors import ClientError, UsageError
from mailiverse.client.transport import Response, Transport
from mailiverse.privatefile import write_private

DEFAULT_CERT_DIR = Path("~/.config/mailiverse/bridge")
DEFAULTS = {"imap": "tcp:1143", "imaps": "tcp:1993", "smtp": "tcp:1025", "smtps": "tcp:1465"}
KEYRING_SERVICE = "mailiverse"
KEYRING_BRIDGE_SERVICE = "mailiverse-bridge"
MIN_POLL, MAX_POLL, DEFAULT_POLL = 1.0, 3600.0, 10.0
#: ``--cache-size``: the default, and the smallest that makes sense (a few messages).
DEFAULT_CACHE_SIZE, MIN_CACHE_SIZE = "1G", 1024 * 1024
_PORT = re.compile(r"^[0-9]{1,5}$")
_SIZE = re.compile(r"^([0-9]{1,15})([KMG]?)(?:I?B)?$")
#: The one line on stderr when the appliance refuses the bridge's new login.
LOGIN_REFUSED_LINE = "mailiverse-client: the appliance refused the login: restart the bridge ({reason})\n"


def add_command(commands: Any) -> None:
    """Register ``bridge`` and its options (names are the contract of issue 23)."""
    bridge = commands.add_parser("bridge", help="serve IMAP and SMTP on this machine for any mail app")
    for name, default in DEFAULTS.items():
        kind = "STARTTLS" if name in ("imap", "smtp") else "TLS from the first byte"
        bridge.add_argument(
            f"--{name}",
            metavar="ENDPOINT",
            default=default,
            help=f"{name.upper()} ({kind}); default {default}, none: off",
        )
    bridge.add_argument(
        "--listen", metavar="ADDRESS", default="127.0.0.1", help="the address a bare tcp:PORT binds (127.0.0.1)"
    )
    bridge.add_argument("--password-file", metavar="FILE", help="write the local password here (0600), not on stdout")
    bridge.add_argument("--keyring", action="store_true", help="also keep the local password in the system keyring")
    bridge.add_argument("--cert-dir", metavar="DIR", default=str(DEFAULT_CERT_DIR), help="the bridge's certificate")
    bridge.add_argument(
        "--poll", metavar="SECONDS", type=float, default=DEFAULT_POLL, help="how often IDLE looks for new mail"
    )
    bridge.add_argument("--cache", metavar="DIR", help="an encrypted local cache of messages (safe to delete)")
    bridge.add_argument(
        "--cache-size",
        metavar="SIZE",
        default=DEFAULT_CACHE_SIZE,
        help=f"at most this much in --cache, oldest removed first (bytes, or 500M, 2G); default {DEFAULT_CACHE_SIZE}",
    )


# -- the transport --------------------------------------------------------------------------------


@dataclass
class _Serialized:
    """A transport taking one request at a time, whichever thread asks."""

    inner: Transport
    lock: threading.Lock

    def request(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]) -> Response:
        with self.lock:
            return self.inner.request(method, path, body, headers)

    def close(self) -> None:
        with self.lock:
            self.inner.close()


def serialized(transport: Transport) -> Transport:
    """``transport`` made safe to share between the reactor's threads."""
    return _Serialized(transport, threading.Lock())


# -- options --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    """One port to open: which option asked for it, the endpoint string, and whether it may be reached from
    other machines."""

    option: str
    endpoint: str
    host: str
    exposed: bool


def _split(description: str) -> list[str]:
    """An endpoint string's fields (``\\:`` escapes a colon, as Twisted's endpoint syntax has it)."""
    return [part.replace("\0", ":") for part in description.replace("\\:", "\0").split(":")]


def _escaped(host: str) -> str:
    return host.replace(":", "\\:")


def _exposed(host: str) -> bool:
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host != "localhost"


def listener(option: str, value: str, listen: str) -> Listener | None:
    """The port ``--option value`` asks for: ``none``, ``tcp:PORT`` (on ``--listen``) or
    ``tcp:PORT:interface=ADDRESS``; anything else is a UsageError naming the option."""
    if value.strip().lower() == "none":
        return None
    fields = _split(value.strip())
    if fields[0] != "tcp" or len(fields) < 2:
        raise UsageError(f"--{option} {value}: use tcp:PORT, tcp:PORT:interface=ADDRESS or none")
    port = fields[1][len("port=") :] if fields[1].startswith("port=") else fields[1]
    host = listen
    for extra in fields[2:]:
        key, _, setting = extra.partition("=")
        if key == "interface" and setting:
            host = setting
        elif key != "backlog":
            raise UsageError(f"--{option} {value}: unknown endpoint field {key!r} (TLS is the bridge's own)")
    if not _PORT.match(port) or int(port) > 65535:
        raise UsageError(f"--{option} {value}: the port must be a number from 0 to 65535")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise UsageError(f"--{option}/--listen: {host!r} is not an IP address") from None
        host = "127.0.0.1"
    return Listener(option, f"tcp:{port}:interface={_escaped(host)}", host, _exposed(host))


@dataclass(frozen=True)
class Plan:
    """What the options ask for, checked before anything is opened or the account logged in to."""

    imap: Listener | None
    imaps: Listener | None
    smtp: Listener | None
    smtps: Listener | None
    cert_dir: Path
    password_file: Path | None
    keyring: bool
    poll: float
    cache: Path | None
    cache_size: int = 1024**3

    @property
    def listeners(self) -> list[Listener]:
        return [x for x in (self.imap, self.imaps, self.smtp, self.smtps) if x is not None]


def plan(args: argparse.Namespace) -> Plan:
    """Check the bridge's options (UsageError names the option and the fix)."""
    ports = {name: listener(name, getattr(args, name), args.listen) for name in DEFAULTS}
    if not any(ports.values()):
        raise UsageError("every port is off: keep at least one of --imap, --imaps, --smtp, --smtps")
    if not MIN_POLL <= args.poll <= MAX_POLL:
        raise UsageError(f"--poll must be from {MIN_POLL:g} to {MAX_POLL:g} seconds")
    if args.keyring and keyring_module() is None:
        raise UsageError("--keyring needs the Python package 'keyring', which is not installed here")
    cache = Path(args.cache).expanduser() if args.cache else None
    if cache is not None and cache.exists() and not cache.is_dir():
        raise UsageError(f"--cache {cache}: that is not a directory; name a directory (it is made if absent)")
    cache_size = cache_bytes(getattr(args, "cache_size", DEFAULT_CACHE_SIZE))
    password_file = Path(args.password_file).expanduser() if args.password_file else None
    if password_file is not None and not password_file.parent.is_dir():
        raise UsageError(f"--password-file {password_file}: the directory {password_file.parent} does not exist")
    return Plan(
        ports["imap"],
        ports["imaps"],
        ports["smtp"],
        ports["smtps"],
        Path(args.cert_dir).expanduser(),
        password_file,
        bool(args.keyring),
        float(args.poll),
        cache,
        cache_size,
    )


def cache_bytes(text: str) -> int:
    """``--cache-size``: bytes, or a number with K, M or G (powers of 1024); at least 1 MiB."""
    found = _SIZE.match(str(text).strip().upper())
    if found is None:
        raise UsageError(f"--cache-size {text}: give bytes, or a number with K, M or G (500M, 2G)")
    size = int(found.group(1)) << (10 * " KMG".index(found.group(2) or " "))
    if size < MIN_CACHE_SIZE:
        raise UsageError(f"--cache-size {text}: at least 1M")
    return size


def keyring_module() -> Any | None:
    """The ``keyring`` package when it is installed (it is optional; nothing here depends on it)."""
    try:
        return importlib.import_module("keyring")
    except ImportError:
        return None


# -- running --------------------------------------------------------------------------------------


class Console(Protocol):
    """What the CLI run gives the bridge: the account password (environment or prompt), its streams."""

    stdout: IO[str]
    stderr: IO[str]
    environ: Mapping[str, str]
    args: argparse.Namespace

    def password(self) -> str: ...


def account_password(console: Console, server: str, user: str) -> str:
    """``MAILIVERSE_PASSWORD``, else the system keyring's entry for this account (when keyring is installed),
    else the prompt: the CLI's rules, with the keyring between them."""
    if not console.environ.get("MAILIVERSE_PASSWORD"):
        found = keyring_module()
        if found is not None:
            try:
                stored = found.get_password(KEYRING_SERVICE, f"{user}@{server}")
            except Exception:  # noqa: BLE001 - a locked or absent keyring backend: ask instead
                stored = None
            if isinstance(stored, str) and stored:
                return stored
    return console.password()


def log_in(console: Console, client: Client) -> None:
    """Log in, keeping the keys derived from the password (never the password) to log in again when the appliance
    ends the session; when it refuses that login, one line on stderr says to restart the bridge."""

    def refused(error: LoginRefused) -> None:
        console.stderr.write(LOGIN_REFUSED_LINE.format(reason=error.reason))
        console.stderr.flush()

    client.keep_logged_in(on_refused=refused)
    client.login(account_password(console, console.args.server, client.user))


def mount_imap(
    client: Client, login: LocalLogin, password: str, plan: Plan, tls: Any, reactor: Any
) -> tuple[Any | None, Any | None]:
    """The IMAP factories (STARTTLS, implicit TLS) over the mailbox state, or (None, None) when both are off.

    The one place that knows ``state.py`` and ``imap.py``; they are imported only when IMAP is wanted. The IMAP
    servers share the run's ``LocalLogin``, so one throttle counts failed logins on every port.
    """
    if plan.imap is None and plan.imaps is None:
        return None, None
    from mailiverse.client.bridge.imap import imap_factory
    from mailiverse.client.bridge.state import MailState

    try:
        state = MailState(client, cache_dir=plan.cache, cache_dir_bytes=plan.cache_size)
    except OSError as error:
        raise UsageError(
            f"--cache {plan.cache}: cannot use it ({error.strerror or error}); name another directory"
        ) from None
    made = []
    for wanted, implicit in ((plan.imap, False), (plan.imaps, True)):
        made.append(
            None
            if wanted is None
            else imap_factory(
                state,
                login.username,
                password,
                tls=tls,
                implicit_tls=implicit,
                reactor=reactor,
                poll_interval=plan.poll,
                login=login,
            )
        )
    return made[0], made[1]


def _described(listening: Mapping[str, tuple[str, int]], plain: str, implicit: str) -> str:
    shown = []
    for name, how in ((plain, "STARTTLS"), (implicit, "TLS")):
        if name in listening:
            host, port = listening[name]
            shown.append(f"{'[' + host + ']' if ':' in host else host}:{port} ({how})")
    return ", ".join(shown) or "off"


def ready_block(
    user: str, listening: Mapping[str, tuple[str, int]], password: str | None, where: Path | None, cert_path: Path
) -> str:
    """The lines printed once the ports are open (the contract of issue 23)."""
    lines = [
        f"bridge ready for {user}",
        f"IMAP  {_described(listening, 'imap', 'imaps')}",
        f"SMTP  {_described(listening, 'smtp', 'smtps')}",
        f"user  {user}",
        f"password  in {where}" if where is not None else f"password  {password}",
        f"certificate  {cert_path}",
    ]
    return "\n".join(lines) + "\n"


def run(console: Console, client: Client, *, reactor: Any = None, on_ready: Callable[[], object] | None = None) -> None:
    """Run the bridge until the reactor stops (SIGINT, SIGTERM); the caller logs out afterwards."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    # Imported here: every other command of the CLI would pay for TLS and the servers otherwise.
    from twisted.internet.endpoints import serverFromString

    from mailiverse.client.bridge.smtp import smtp_factory
    from mailiverse.client.bridge.submit import Submitter
    from mailiverse.client.bridge.tls import BridgeTLSError, ensure_certificate, server_context

    args = console.args
    checked = plan(args)
    log_in(console, client)
    try:
        certificate = ensure_certificate(checked.cert_dir)
        tls = server_context(certificate)
    except BridgeTLSError as error:
        raise UsageError(str(error)) from None
    local_password = new_local_password()
    login = LocalLogin(client.user, local_password, Throttle(reactor), addresses=client.addresses)
    imap, imaps = mount_imap(client, login, local_password, checked, tls, reactor)
    submitter = Submitter(client)
    factories = {
        "imap": imap,
        "imaps": imaps,
        "smtp": smtp_factory(submitter, login, tls=tls, implicit_tls=False, reactor=reactor) if checked.smtp else None,
        "smtps": smtp_factory(submitter, login, tls=tls, implicit_tls=True, reactor=reactor) if checked.smtps else None,
    }
    listening: dict[str, tuple[str, int]] = {}
    ports: list[Any] = []
    for wanted in checked.listeners:
        factory = factories[wanted.option]
        results: list[Any] = []
        serverFromString(reactor, wanted.endpoint).listen(factory).addBoth(results.append)
        if not results or not hasattr(results[0], "getHost"):
            for port in ports:
                port.stopListening()
            why = getattr(getattr(results[0], "value", None), "socketError", None) if results else None
            raise ClientError(
                f"--{wanted.option}: cannot listen on {wanted.host} ({why or 'failed'}); pick a free port"
            )
        ports.append(results[0])
        listening[wanted.option] = (wanted.host, int(results[0].getHost().port))
        if wanted.exposed:
            console.stderr.write(
                f"mailiverse-client: WARNING: --{wanted.option} listens on {wanted.host}, reachable from other "
                "machines; anyone who learns the local password there can read and send your mail\n"
            )
    if checked.keyring:
        keyring = keyring_module()
        assert keyring is not None
        keyring.set_password(KEYRING_BRIDGE_SERVICE, f"{client.user}@{args.server}", local_password)
    if checked.password_file is not None:
        write_private(checked.password_file, (local_password + "\n").encode("ascii"))
    console.stdout.write(
        ready_block(
            client.user,
            listening,
            None if checked.password_file is not None else local_password,
            checked.password_file,
            certificate.cert_path,
        )
    )
    console.stdout.flush()
    if on_ready is not None:
        on_ready()
    reactor.run()
