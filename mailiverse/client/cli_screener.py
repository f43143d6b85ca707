"""The screener commands of ``mailiverse-client`` (``mailiverse.client.screener`` does the work), kept apart so
``cli.py`` stays one screen of argument handling.

``screener status|on|off`` prints ``on`` or ``off`` and the approved and blocked counts on one line;
``approve ID`` and ``block ID`` act on a message of ``ls --folder screener`` and its sender;
``approve-sender``, ``block-sender`` and ``forget-sender ADDRESS`` act on an address without a message.
Each prints one line; a failure is one line on stderr from ``cli.main`` (exit 1, or 2 for bad arguments).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from mailiverse.client import screener
from mailiverse.client.api import Client

#: What each by-address command sets, and the word it prints.
SENDER_COMMANDS = {
    "approve-sender": (screener.APPROVED, "approved"),
    "block-sender": (screener.BLOCKED, "blocked"),
    "forget-sender": (None, "forgotten"),
}
COMMANDS = frozenset({"screener", "approve", "block", *SENDER_COMMANDS})


def add_commands(commands: Any) -> None:
    """Add the screener commands to the CLI's sub-command parsers."""
    screen = commands.add_parser("screener", help="the screener for first-time senders: status, on, off")
    screen.add_argument("screener_command", choices=("status", "on", "off"), metavar="status|on|off")
    for command, text in (
        ("approve", "approve the sender of a screened message and move the message to the Inbox"),
        ("block", "block the sender of a screened message (550 5.7.1 from now on) and delete the message"),
    ):
        commands.add_parser(command, help=text).add_argument("id", metavar="ID")
    for command, text in (
        ("approve-sender", "mail from this address goes to the Inbox"),
        ("block-sender", "mail from this address is refused (550 5.7.1)"),
        ("forget-sender", "the screener treats this address as new again"),
    ):
        commands.add_parser(command, help=text).add_argument("address", metavar="ADDRESS")


def run(client: Client, args: argparse.Namespace, out: Callable[[str], None]) -> None:
    """Run one screener command for the logged-in ``client``; ``out`` prints its one line."""
    command = args.command
    if command == "screener":
        action = args.screener_command
        if action == "status":
            state = screener.screener_state(client)
        else:
            state = screener.set_screener(client, action == "on")
        out(state.line())
    elif command == "approve":
        screened = screener.approve_message(client, args.id)
        out(f"{screened.id}: approved {screened.sender}; moved to Inbox")
    elif command == "block":
        screened = screener.block_message(client, args.id)
        out(f"{screened.id}: blocked {screened.sender}; message deleted")
    else:
        verdict, word = SENDER_COMMANDS[command]
        out(f"{screener.set_sender(client, args.address, verdict)}: {word}")
