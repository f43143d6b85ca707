"""``mailiverse-client``: the command line over :mod:`mailiverse.client`; one login per run, nothing kept on disk.

    mailiverse-client --server URL --user NAME [--ca FILE | --fingerprint SHA256] COMMAND

Commands: ``signup [--invite CODE]``, ``login``, ``ls [--folder F] [--via ADDR]``, ``read ID``,
``send --to ADDR [--cc ADDR] [--from ALIAS] --subject S`` (body on stdin), ``passwd``, ``export DIR``,
``spam ID`` and ``not-spam ID`` (train the appliance's spam filter with the message, then move it
to Spam or back to the Inbox), ``upgrade-legacy [--legacy-keyserver HOST:PORT [--legacy-plain]]``
(a legacy account moves to the modern login, same keys) and ``import-mailiverse DIR`` (an original
store dump, bytes unchanged), and ``alias new [--label TEXT] [--chosen LOCAL@DOMAIN] [--domain DOMAIN]
[--known-senders]`` (prints the new address alone), ``alias list``, ``alias disable|enable|delete ADDRESS``
and ``alias limit ADDRESS --senders any|known|known-domains``, and the screener for first-time senders:
``screener status|on|off``, ``approve ID`` / ``block ID`` (a message in ``ls --folder screener``: its sender
approved and the message moved to the Inbox, or its sender blocked and the message deleted) and
``approve-sender|block-sender|forget-sender ADDRESS``; ``send --hashcash`` stamps each recipient.
``send`` seals the message on this device when every recipient has a verified key (docs/e2e.md; ``--require-e2e``
refuses otherwise, ``--no-e2e`` lets the appliance seal it), and ``read`` says whether such a message's
signature verified. ``move --to URL`` takes the account's mail and keys to another appliance, ``move --status``
and ``move --finish-delete`` follow up (``cli_move.py``, docs/moving.md). ``bridge`` serves IMAP and SMTP on
this machine until stopped (``bridge/service.py``, docs/bridge.md).

``ls`` prints ``ID<TAB>DATE<TAB>SENDER<TAB>SUBJECT``, and for mail the appliance judged (mail from
outside) one more column: ``verified``, ``unverified`` or ``failed``, then ``,spam`` when it is spam.
``read`` prints a line about the sender (and one about spam) before such a message, and ``Via: ADDRESS``
before mail that came in on one of the user's aliases. ``alias list`` prints
``ADDRESS<TAB>STATE<TAB>KIND<TAB>SENDERS<TAB>RECEIVED<TAB>LAST-USED<TAB>LABEL`` (``?`` for what cannot be read).

The password comes from ``MAILIVERSE_PASSWORD`` or a prompt; the new one for ``passwd`` from
``MAILIVERSE_NEW_PASSWORD`` or a second prompt. An account with a second factor (passkeys, docs/passkeys.md)
also needs one of its recovery codes, as this client has no authenticator: ``--recovery-code CODE``,
``MAILIVERSE_RECOVERY_CODE`` or a prompt, asked only when the appliance asks for it (each code works once).

Exit status 0 on success (also for ``spam`` and
``not-spam`` when the appliance has no spam filter: the message is moved and the output says it was
not trained); otherwise one line on stderr and 1 (failure, e.g. the spam filter or the move failed),
2 (usage, e.g. an unknown ID or a message in Sent; an unknown alias, or an ID not in the screener for
``approve``/``block``, is 1), 3 (wrong user name or password) or 4 (server
identity).
"""

from __future__ import annotations

import argparse
import datetime
import email.parser
import email.policy
import getpass
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any, NoReturn

from mailiverse.client import aliases, cli_keys, cli_move, cli_screener, e2e, groups
from mailiverse.client.api import ALREADY_LEARNED, LEARNED, NO_SPAM_FILTER, Client, MessageInfo, delivered_to_of
from mailiverse.client.bridge import service as bridge_service
from mailiverse.client.errors import (
    ApiError,
    AuthenticationFailed,
    ClientError,
    ServerIdentityError,
    UsageError,
)
from mailiverse.client.export import export_maildir
from mailiverse.client.importer import import_dump
from mailiverse.client.legacy import KeyServerAddress, account_name, parse_host_port, upgrade_legacy
from mailiverse.client.training import FOLDER_NAMES, Marked, mark
from mailiverse.client.transport import HttpsTransport, Transport
from mailiverse.client.verdicts import NONE, Verdicts, listing_words, read_verdicts, sender_line, spam_line
from mailiverse.contracts import canonical_local

PROG = "mailiverse-client"
PASSWORD_ENV = "MAILIVERSE_PASSWORD"  # noqa: S105 - a variable name, not a password
NEW_PASSWORD_ENV = "MAILIVERSE_NEW_PASSWORD"  # noqa: S105 - a variable name
RECOVERY_CODE_ENV = "MAILIVERSE_RECOVERY_CODE"
#: The largest message body `send` reads from stdin.
MAX_BODY_BYTES = 10 * 1024 * 1024
EXIT_FAILURE, EXIT_USAGE, EXIT_AUTH, EXIT_IDENTITY = 1, 2, 3, 4
#: Commands that take the legacy ``NAME@DOMAIN`` form of --user (the account is the local part).
LEGACY_COMMANDS = frozenset({"upgrade-legacy", "import-mailiverse"})

#: What `alias limit` says each sender policy lets through.
SENDERS_SHOWN = {
    "any": "any sender",
    "known": "known senders only",
    "known-domains": "known sender domains only",
}

TransportFactory = Callable[[argparse.Namespace], Transport]
Prompt = Callable[[str], str]


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the contract (names and flags are fixed)."""
    parser = _Parser(prog=PROG, description="Mailiverse client: nothing is stored on this device.")
    parser.add_argument("--server", required=True, help="https://HOST[:PORT] of the appliance")
    parser.add_argument("--user", required=True, help="your user name")
    parser.add_argument(
        "--recovery-code",
        metavar="CODE",
        help=f"for an account with a second factor: one of its recovery codes (or set {RECOVERY_CODE_ENV})",
    )
    pin = parser.add_mutually_exclusive_group()
    pin.add_argument("--ca", metavar="FILE", help="trust only this CA or self-signed certificate (PEM)")
    pin.add_argument("--fingerprint", metavar="SHA256", help="trust only the certificate with this SHA-256 (hex)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    signup = commands.add_parser("signup", help="create the account (keys are made here)")
    signup.add_argument("--invite", metavar="CODE", help="invite code from the operator")
    commands.add_parser("login", help="check the password")
    ls = commands.add_parser("ls", help="list a folder: ID, date, sender, subject[, verdict]")
    ls.add_argument(
        "--folder",
        default="Inbox",
        help="Inbox (Mail/In), Spam (Mail/Spam), Screener (Mail/Screener), Sent (Mail/Sent) or Mail/<name>",
    )
    ls.add_argument("--via", metavar="ADDRESS", help="only mail delivered to this address (one of your aliases)")
    read = commands.add_parser("read", help="decrypt and print one message")
    read.add_argument("id", metavar="ID")
    read.add_argument("--raw", action="store_true", help="print the RFC 5322 bytes unchanged")
    send = commands.add_parser("send", help="send a message; the body is read from stdin")
    send.add_argument("--to", action="append", default=[], metavar="ADDR", required=True)
    send.add_argument("--cc", action="append", default=[], metavar="ADDR")
    send.add_argument("--subject", required=True, metavar="S")
    send.add_argument("--from", dest="from_address", metavar="ALIAS", help="send from one of your addresses or aliases")
    send.add_argument(
        "--hashcash", action="store_true", help="stamp it for each recipient (X-Hashcash) to pass their screener"
    )
    sealing = send.add_mutually_exclusive_group()
    sealing.add_argument(
        "--require-e2e", action="store_true", help="refuse to send unless it can be sealed here for every recipient"
    )
    sealing.add_argument("--no-e2e", action="store_true", help="let the appliance seal it (ordinary mail)")
    commands.add_parser("passwd", help="change the password")
    spam = commands.add_parser("spam", help="train the spam filter with this message and move it to Spam")
    spam.add_argument("id", metavar="ID")
    not_spam = commands.add_parser("not-spam", help="train the spam filter: not spam; move it back to the Inbox")
    not_spam.add_argument("id", metavar="ID")
    export = commands.add_parser("export", help="decrypt all mail into a local Maildir")
    export.add_argument("dir", metavar="DIR")
    upgrade = commands.add_parser(
        "upgrade-legacy", help="move a legacy Mailiverse account to the modern login (same password, same keys)"
    )
    upgrade.add_argument(
        "--legacy-keyserver", metavar="HOST:PORT", help="use the KeyServer's TCP port instead of WebSocket on --server"
    )
    upgrade.add_argument(
        "--legacy-plain", action="store_true", help="the TCP KeyServer speaks plain TCP (no TLS; not recommended)"
    )
    imported = commands.add_parser("import-mailiverse", help="import a dump of an original Mailiverse store")
    imported.add_argument("dir", metavar="DIR")
    _add_alias_commands(commands)
    cli_screener.add_commands(commands)
    cli_keys.add_commands(commands, _Parser)
    cli_move.add_command(commands)
    bridge_service.add_command(commands)
    return parser


def _add_alias_commands(commands: Any) -> None:
    alias = commands.add_parser("alias", help="your aliases: new, list, disable, enable, delete, limit")
    actions = alias.add_subparsers(dest="alias_command", required=True, metavar="ACTION", parser_class=_Parser)
    new = actions.add_parser("new", help="make an alias and print its address (a shield alias unless --chosen)")
    new.add_argument("--label", metavar="TEXT", help="a note for you (encrypted here to your own key)")
    where = new.add_mutually_exclusive_group()
    where.add_argument("--chosen", metavar="LOCAL@DOMAIN", help="this address instead of a random shield one")
    where.add_argument("--domain", metavar="DOMAIN", help="the shield alias's domain (default: the appliance's first)")
    new.add_argument("--known-senders", action="store_true", help="accept mail only from senders that wrote before")
    actions.add_parser("list", help="ADDRESS, STATE, KIND, SENDERS, RECEIVED, LAST-USED, LABEL, tab-separated")
    for action, text in (
        ("disable", "refuse mail to the alias (550) until enabled"),
        ("enable", "accept mail to the alias again"),
        ("delete", "delete the alias for good: refused from now on, never issued again"),
    ):
        actions.add_parser(action, help=text).add_argument("address", metavar="ADDRESS")
    limit = actions.add_parser("limit", help="which senders the alias accepts")
    limit.add_argument("address", metavar="ADDRESS")
    limit.add_argument("--senders", required=True, choices=aliases.SENDER_POLICIES)


def default_transport(args: argparse.Namespace) -> Transport:
    """The real HTTPS transport for the parsed options."""
    return HttpsTransport(args.server, ca_file=args.ca, fingerprint=args.fingerprint)


def clean(text: str, *, multiline: bool = False) -> str:
    """Text from a message made safe for a terminal: control characters (escape sequences) are replaced."""
    keep = "\n\t" if multiline else ""
    return "".join(
        c if c in keep or not (ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or c in "\u2028\u2029") else "\ufffd" for c in text
    )


def format_listing(info: MessageInfo) -> str:
    """One `ls` line: ID, date (UTC ISO 8601), sender, subject, separated by tabs; then, only for mail
    with a verdict, the verdict words (the four columns scripts split on stay as they were)."""
    if info.date_ms is None:
        date = "-"
    else:
        try:
            moment = datetime.datetime.fromtimestamp(info.date_ms / 1000, datetime.UTC)
            date = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        except (OverflowError, OSError, ValueError):
            date = "-"
    fields = [info.id, date, clean(info.sender) or "-", clean(info.subject) or "(no subject)"]
    words = listing_words(info.verdicts, info.spam)
    if words:
        fields.append(words)
    return "\t".join(f.replace("\t", " ") for f in fields)


#: The longest sender address a warning quotes.
MAX_SHOWN_ADDRESS = 254


def shown_address(value: object) -> str:
    """The address of a From header for a warning: its one addr-spec, else the header as text; terminal-safe."""
    if value is None:
        return ""
    try:
        addresses: Any = getattr(value, "addresses", ())
        text = addresses[0].addr_spec if len(addresses) == 1 else str(value)
    except (LookupError, ValueError, TypeError, AttributeError):
        text = ""
    text = clean(" ".join(text.split()))
    return text if len(text) <= MAX_SHOWN_ADDRESS else text[: MAX_SHOWN_ADDRESS - 1] + "\u2026"


def verdict_lines(verdicts: Verdicts, from_address: str) -> list[str]:
    """The lines `read` prints before a message the appliance judged (none for internal mail)."""
    lines = [sender_line(verdicts, from_address), spam_line(verdicts)]
    return [line for line in lines if line is not None]


def same_address(address: str) -> str:
    """``address`` as the appliance matches aliases: lower case, and in the local part 1/i/l, 0/o and v/w
    as one character (mail sent to a look-alike spelling records that spelling as ``delivered_to``)."""
    local, at, domain = address.lower().rpartition("@")
    return f"{canonical_local(local)}{at}{domain}" if at else address.lower()


def via_address(delivered_to: str, own_addresses: Sequence[str]) -> str:
    """The alias a message came in on: its twin's ``delivered_to`` (already a plain address), unless that is
    one of the account's own name addresses (any case); "" when there is none."""
    if not delivered_to or delivered_to.lower() in {a.lower() for a in own_addresses}:
        return ""
    return delivered_to


def format_message(raw: bytes, verdicts: Verdicts = NONE, via: str = "") -> str:
    """A readable rendering of a message: what the appliance found about its sender and spam (if it
    judged it) and the alias it came in on (``via``, if any), the main headers, then the text body, then
    attachment names."""
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    lines = verdict_lines(verdicts, shown_address(message.get("From"))) if verdicts.known else []
    if via:
        lines.append(f"Via: {clean(via)}")
    for name in ("From", "To", "Cc", "Date", "Subject"):
        value = message.get(name)
        if value is not None:
            lines.append(f"{name}: {clean(str(value))}")
    lines.append("")
    try:
        body = message.get_body(preferencelist=("plain", "html"))
        text = body.get_content() if body is not None else "(no text part)"
    except (LookupError, ValueError, KeyError, AttributeError):
        text = "(the text part cannot be decoded)"
    text = text if isinstance(text, str) else "(no text part)"
    lines.append(clean(text.replace("\r\n", "\n"), multiline=True).rstrip("\n"))
    attachments = (
        [clean(part.get_filename() or "(unnamed)") for part in message.iter_attachments()]
        if message.is_multipart()
        else []
    )
    for name in attachments:
        lines.append(f"[attachment: {name}]")
    return "\n".join(lines) + "\n"


def describe_marked(marked: Marked) -> str:
    """The one line `spam` and `not-spam` print: whether the filter was trained, and where the message is."""
    where = FOLDER_NAMES[marked.folder]
    if marked.learned == LEARNED:
        trained = "trained"
    elif marked.learned == ALREADY_LEARNED:
        trained = "already learned"
    elif marked.learned == NO_SPAM_FILTER:
        trained = "the appliance has no spam filter"
    else:
        trained = "too large for the spam filter"
    if marked.learned in (LEARNED, ALREADY_LEARNED):
        moved = f"moved to {where}" if marked.moved else f"already in {where}"
    else:
        moved = f"moved only (to {where})" if marked.moved else f"not trained; already in {where}"
    return f"{marked.message_id}: {trained}; {moved}"


class _Run:
    """One invocation: its streams, environment and password prompts."""

    def __init__(
        self,
        args: argparse.Namespace,
        stdin: IO[bytes],
        stdout: IO[str],
        environ: Mapping[str, str],
        prompt: Prompt,
        stderr: IO[str] | None = None,
    ) -> None:
        self.args = args
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr if stderr is not None else sys.stderr
        self.environ = environ
        self.prompt = prompt

    def password(self, variable: str = PASSWORD_ENV, label: str = "Password", confirm: bool = False) -> str:
        value = self.environ.get(variable)
        if value:
            return value
        try:
            value = self.prompt(f"{label} for {self.args.user}: ")
            if confirm and self.prompt(f"{label} again: ") != value:
                raise UsageError("the two passwords differ")
        except EOFError:
            raise UsageError(f"no password: set {variable} or run on a terminal") from None
        if not value:
            raise UsageError("the password is empty")
        return value

    def recovery_code(self) -> str | None:
        """A recovery code for the second factor: ``--recovery-code``, the environment, or a prompt; None if none."""
        value = self.args.recovery_code or self.environ.get(RECOVERY_CODE_ENV)
        if value:
            return str(value)
        try:
            return self.prompt(f"Recovery code for {self.args.user} (the account has a second factor): ") or None
        except EOFError:
            return None

    def out(self, text: str) -> None:
        self.stdout.write(text + "\n")

    def execute(self, client: Client) -> None:
        command = self.args.command
        if command == "upgrade-legacy":
            self.upgrade_legacy(client)
            return
        if command == "import-mailiverse":
            self.import_mailiverse(client)
            return
        if command == "signup":
            password = self.password(confirm=True)
            addresses = client.signup(password, invite=self.args.invite)
            self.out(f"signed up {client.user}: {', '.join(addresses) or client.user}")
            return
        if command == "passwd":
            old = self.password(label="Current password")
            new = self.password(NEW_PASSWORD_ENV, "New password", confirm=True)
            client.change_password(old, new)
            self.out(f"password changed for {client.user}")
            return
        if command == "bridge":
            bridge_service.run(self, client)
            return
        if command == "send":
            body = self.stdin.read(MAX_BODY_BYTES + 1)
            if len(body) > MAX_BODY_BYTES:
                raise UsageError(f"the message body is larger than {MAX_BODY_BYTES} bytes")
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                raise UsageError("the message body on stdin is not UTF-8") from None
            password = self.password()
            client.login(password)
            cli_keys.watch(client, self.stderr, PROG)
            cli_move.notify_moved(client, [*self.args.to, *self.args.cc], self.stderr)
            sender = self.args.from_address
            mode = e2e.OFF if self.args.no_e2e else e2e.REQUIRE if self.args.require_e2e else e2e.AUTO
            try:
                result = e2e.send(
                    client,
                    self.args.to,
                    self.args.subject,
                    text,
                    cc=self.args.cc,
                    from_address=sender,
                    hashcash_stamps=self.args.hashcash,
                    mode=mode,
                    notify=lambda line: self.stderr.write(f"{PROG}: {clean(line)}\n"),
                )
            except ApiError as error:
                if error.code == "sender_not_allowed" and sender is not None:
                    raise ClientError(
                        f"{clean(sender)} is not one of your addresses or active aliases (sender_not_allowed)"
                    ) from None
                raise
            where = []
            if result.local:
                where.append("delivered to " + ", ".join(result.local))
            if result.remote:
                where.append(f"queued for {', '.join(result.remote)} (queue {result.queue_id})")
            where.append("end-to-end encrypted" if result.end_to_end else "not end-to-end encrypted")
            self.out(f"sent {result.sent_path.rsplit('/', 1)[-1]}: {'; '.join(where)}")
            return
        client.login(self.password())
        cli_keys.watch(client, self.stderr, PROG)
        account = client  # the user's own session, whose directory state checks signatures
        if command == "group" and self.args.group_command in cli_keys.GROUP_READING:
            # A group's mail, listed and read as your own, with the group's keys from its store.
            client = groups.reader(client, self.args.group)
            command = self.args.group_command
            self.args.via = None
        if command == "login":
            self.out(f"logged in as {client.user} ({', '.join(client.addresses) or 'no addresses'})")
        elif command == "ls":
            via = same_address(aliases.checked_address(self.args.via)) if self.args.via is not None else None
            for info in client.list_messages(self.args.folder):
                if via is None or same_address(info.delivered_to) == via:
                    self.out(format_listing(info))
        elif command == "read":
            path = client.resolve_message(self.args.id)
            raw = client.open_mail(path)
            if self.args.raw:
                self.stdout.flush()
                buffer = getattr(self.stdout, "buffer", None)
                if buffer is not None:
                    buffer.write(raw)
                    buffer.flush()
                else:
                    self.stdout.write(raw.decode("utf-8", "replace"))
            else:
                twin = client.read_twin(path)
                sealed = e2e.seal_of(account, raw, twin)
                if sealed is not None:
                    self.out(clean(sealed.line()))
                via = via_address(delivered_to_of(twin), client.addresses)
                self.stdout.write(format_message(raw, read_verdicts(twin), via))
        elif command in ("spam", "not-spam"):
            self.out(describe_marked(mark(client, self.args.id, spam=command == "spam")))
        elif command == "alias":
            self.alias(client)
        elif command in cli_screener.COMMANDS:
            cli_screener.run(client, self.args, self.out)
        elif command in cli_keys.COMMANDS:
            cli_keys.run(client, self.args, self.out)
        elif command == cli_move.COMMAND:
            mover = cli_move.MoveRun(self.args, self.out, self.stderr, self.password, self.prompt)
            mover.check_usage()
            mover.run(client)
        elif command == "export":
            exported = export_maildir(client, self.args.dir)
            detail = ", ".join(f"{name}: {count}" for name, count in exported.written.items())
            self.out(f"exported {exported.total} message(s) to {self.args.dir}" + (f" ({detail})" if detail else ""))

    def alias(self, client: Client) -> None:
        args = self.args
        action = args.alias_command
        if action == "new":
            self.out(
                aliases.new_alias(
                    client,
                    label=args.label,
                    chosen=args.chosen,
                    domain=args.domain,
                    known_senders=args.known_senders,
                )
            )
        elif action == "list":
            for alias in aliases.list_aliases(client):
                self.out(aliases.format_alias(alias))
        elif action in ("disable", "enable"):
            aliases.set_state(client, args.address, "disabled" if action == "disable" else "active")
            self.out(f"{aliases.checked_address(args.address)}: {action}d")
        elif action == "delete":
            aliases.delete_alias(client, args.address)
            self.out(f"{aliases.checked_address(args.address)}: deleted for good")
        elif action == "limit":
            aliases.limit_senders(client, args.address, args.senders)
            self.out(f"{aliases.checked_address(args.address)}: accepts mail from {SENDERS_SHOWN[args.senders]}")

    def upgrade_legacy(self, client: Client) -> None:
        args = self.args
        if args.legacy_plain and args.legacy_keyserver is None:
            raise UsageError("--legacy-plain needs --legacy-keyserver HOST:PORT")
        address = KeyServerAddress(
            args.server,
            ca_file=args.ca,
            fingerprint=args.fingerprint,
            tcp=parse_host_port(args.legacy_keyserver) if args.legacy_keyserver is not None else None,
            plain=args.legacy_plain,
        )
        password = self.password()
        result = upgrade_legacy(address, args.user, password)
        # The proof that it worked: the modern login, and the private key decrypted from the key block.
        client.login(password)
        self.out(
            f"upgraded {result.account} to the modern login (key SHA-256 {result.public_key_sha256[:16]}); "
            "legacy logins are now refused"
        )

    def import_mailiverse(self, client: Client) -> None:
        directory = self.args.dir
        if not os.path.isdir(directory):
            raise UsageError(f"{directory} is not a directory")
        client.login(self.password())
        result = import_dump(client, directory)
        for failure in result.failures:
            self.out("failed " + clean(failure))
        self.out(result.summary())
        if result.failed:
            raise ClientError(f"{result.failed} object(s) were not imported: {result.summary()}")


def main(
    argv: Sequence[str] | None = None,
    *,
    transport_factory: TransportFactory = default_transport,
    stdin: IO[bytes] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    environ: Mapping[str, str] | None = None,
    prompt: Prompt = getpass.getpass,
) -> int:
    """Run one command; return the exit status (0 ok, 1 failure, 2 usage, 3 auth, 4 server identity)."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    client: Client | None = None
    try:
        parser = build_parser()
        if argv is None:
            argv = sys.argv[1:]
        try:
            args = parser.parse_args(argv)
        except SystemExit as done:  # --help printed the usage
            return int(done.code or 0)
        run = _Run(
            args,
            stdin if stdin is not None else sys.stdin.buffer,
            out,
            environ if environ is not None else os.environ,
            prompt,
            err,
        )
        user = account_name(args.user) if args.command in LEGACY_COMMANDS else args.user
        transport = transport_factory(args)
        # The bridge calls the client from several threads; one request at a time on its one connection.
        client = Client(bridge_service.serialized(transport) if args.command == "bridge" else transport, user)
        client.recovery_code = run.recovery_code
        run.execute(client)
        return 0
    except AuthenticationFailed as error:
        err.write(f"{PROG}: {error}\n")
        return EXIT_AUTH
    except ServerIdentityError as error:
        err.write(f"{PROG}: {error}\n")
        return EXIT_IDENTITY
    except UsageError as error:
        err.write(f"{PROG}: {error}\n")
        return EXIT_USAGE
    except ClientError as error:
        err.write(f"{PROG}: {error}\n")
        return EXIT_FAILURE
    except KeyboardInterrupt:
        err.write(f"{PROG}: interrupted\n")
        return 130
    except Exception as error:  # noqa: BLE001 - one line, never a traceback that could hold message text
        err.write(f"{PROG}: internal error ({type(error).__name__})\n")
        return EXIT_FAILURE
    finally:
        if client is not None:
            try:
                client.logout()
            except ClientError:
                pass
            client.close()
