"""``mailiverse-client move``: take the account's mail and keys to another appliance (``mailiverse.client.moving``).

    move --to URL [--to-user NAME] [--to-ca FILE | --to-fingerprint SHA256] [--grace-days N] [--yes]
    move --status
    move --finish-delete [--yes]

The first logs in to both appliances (the new account's password from ``MAILIVERSE_NEW_PASSWORD`` or a
prompt; ``--to-user`` defaults to the same name), copies and verifies everything, then switches the old account
to moved. Progress goes to stderr; the summary to stdout, one ``name: value`` line each (``moved to``,
``objects``, ``copied``, ``verified``, ``keys brought``, ``forwarding until``). ``--status`` prints the old
account's moved state; ``--finish-delete`` deletes every object of the moved account on this appliance.
Without ``--yes`` each asks first (and refuses without a terminal).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import IO, Any

from mailiverse.client import moving
from mailiverse.client.api import Client
from mailiverse.client.errors import ClientError, UsageError
from mailiverse.client.transport import HttpsTransport
from mailiverse.keylog.records import MAX_GRACE_DAYS

COMMAND = "move"
NEW_PASSWORD_ENV = "MAILIVERSE_NEW_PASSWORD"  # noqa: S105 - a variable name


def _grace_days(text: str) -> int:
    """``--grace-days``: a whole number of days from 0 to 365 (argparse reports anything else as a usage error)."""
    if not text.isascii() or not text.isdigit() or not 0 <= int(text) <= MAX_GRACE_DAYS:
        raise argparse.ArgumentTypeError(f"a whole number of days from 0 to {MAX_GRACE_DAYS}")
    return int(text)


def add_command(commands: Any) -> None:
    """Add ``move`` to the CLI's sub-command parsers."""
    parser = commands.add_parser(COMMAND, help="move your mail and keys to an account on another appliance")
    parser.add_argument("--to", metavar="URL", help="https://HOST[:PORT] of the appliance you signed up on")
    parser.add_argument("--to-user", metavar="NAME", help="your user name there (default: the same)")
    pin = parser.add_mutually_exclusive_group()
    pin.add_argument("--to-ca", metavar="FILE", help="trust only this CA or certificate for the new appliance")
    pin.add_argument("--to-fingerprint", metavar="SHA256", help="trust only this certificate for the new appliance")
    parser.add_argument(
        "--grace-days",
        type=_grace_days,
        default=moving.DEFAULT_GRACE_DAYS,
        metavar="N",
        help=f"forward mail to the new address for N days (0 to 365, default {moving.DEFAULT_GRACE_DAYS})",
    )
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--status", action="store_true", help="print whether this account moved, and where")
    what.add_argument(
        "--finish-delete", action="store_true", help="delete every object of this (moved) account on this appliance"
    )


class MoveRun:
    """One ``move`` invocation: the old account is logged in by the caller; this logs in to the new one."""

    def __init__(
        self,
        args: argparse.Namespace,
        out: Callable[[str], None],
        err: IO[str],
        password: Callable[[str, str], str],
        prompt: Callable[[str], str],
    ) -> None:
        self.args = args
        self.out = out
        self.err = err
        self._password = password
        self._prompt = prompt

    def check_usage(self) -> None:
        """Usage mistakes, before any password is asked."""
        args = self.args
        if args.status or args.finish_delete:
            if args.to is not None:
                raise UsageError("--to does not go with --status or --finish-delete")
            return
        if args.to is None:
            raise UsageError("move needs --to URL (or --status, or --finish-delete)")

    def confirm(self, question: str) -> None:
        if self.args.yes:
            return
        try:
            answer = self._prompt(f"{question} Type yes to go on: ")
        except EOFError:
            raise UsageError("confirm with --yes (no terminal to ask on)") from None
        if answer.strip().lower() != "yes":
            raise UsageError("not confirmed: nothing was changed")

    def run(self, old: Client) -> None:
        args = self.args
        if args.status:
            self.status(old)
        elif args.finish_delete:
            self.confirm(f"Delete every object of {old.user} on this appliance for good?")
            self.out(f"deleted: {moving.finish_delete(old)} object(s)")
        else:
            self.move(old)

    def status(self, old: Client) -> None:
        state = moving.move_status(old)
        if not state.get("moved"):
            self.out("moved: no")
            return
        self.out("moved: yes")
        self.out(f"moved to: {state.get('moved_to')}")
        until = state.get("forward_until_ms")
        if isinstance(until, int):
            self.out(f"forwarding until: {time.strftime('%Y-%m-%d', time.gmtime(until / 1000))}")
        self.out(f"waiting to be forwarded: {state.get('pending', 0)}")

    def move(self, old: Client) -> None:
        args = self.args
        transport = HttpsTransport(args.to, ca_file=args.to_ca, fingerprint=args.to_fingerprint)
        new = Client(transport, args.to_user or old.user)
        try:
            new.login(self._password(NEW_PASSWORD_ENV, f"Password at {args.to}"))
            target = new.addresses[0] if new.addresses else new.user
            self.confirm(
                f"Move {', '.join(old.addresses)} to {target}? Mail to the old address will then be refused with "
                f"551 naming {target}, and forwarded for {args.grace_days} day(s)."
            )
            report = moving.move(old, new, grace_days=args.grace_days, progress=self.progress)
        finally:
            try:
                new.logout()
            except ClientError:
                pass  # the move is done or failed already; a session that ends on its own is no news
            new.close()
        for line in report.summary():
            self.out(line)

    def progress(self, line: str) -> None:
        self.err.write(f"mailiverse-client: {line}\n")
        self.err.flush()


def notify_moved(client: Client, recipients: list[str], err: IO[str]) -> None:
    """Before a send: tell the user which recipients on this appliance moved, and where (docs/moving.md)."""
    for address, moved_to, until in moving.moved_recipients(client, recipients):
        shown = "".join(c if c.isprintable() else "?" for c in f"{address} has moved to {moved_to}")
        if until is not None and until > time.time() * 1000:
            when = time.strftime("%Y-%m-%d", time.gmtime(until / 1000))
            err.write(f"mailiverse-client: note: {shown}; the old address forwards there until {when}\n")
        else:
            err.write(f"mailiverse-client: note: {shown}; the old address no longer forwards: write there\n")


__all__ = ["COMMAND", "MoveRun", "add_command", "notify_moved"]
