"""The key-directory commands of ``mailiverse-client`` (``mailiverse.client.keys`` does the work).

``keys verify ADDRESS`` prints one line per fact, ``name: value``: ``address``, ``key_id``, ``fingerprint``
(hex SHA-256 of the DER public key), ``status``, ``proof`` (``verified in tree of N entries, leaf I``),
``history`` (the earlier key ids, or ``-``) and ``policy`` (the domain's, and who else can read its mail);
any failed check exits 1 with ``KEY ALARM`` on stderr. ``keys rotate`` prints ``rotated KEY_ID -> KEY_ID``.
``log audit`` prints ``entries``, ``heads``, ``keys``, ``policies`` and ``audit: ok`` (or each problem, then
exit 1). ``group new|add|remove|list`` manage group keys (``mailiverse.client.groups``); ``group ls`` and
``group read`` are the main ``ls`` and ``read`` over the group's store (``cli.py``).

Every logged-in command first checks the user's own addresses in the directory (``watch``); what it finds is
written to stderr, loudly, and never changes what the command prints on stdout.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import IO, Any

from mailiverse.client import groups, keys
from mailiverse.client.api import Client
from mailiverse.client.errors import ApiError, ClientError

COMMANDS = frozenset({"keys", "log", "group"})
#: Group actions that read the group's mail through the main ``ls`` and ``read`` (``cli.py``).
GROUP_READING = frozenset({"ls", "read"})


def add_commands(commands: Any, parser_class: Any) -> None:
    """Add ``keys`` and ``log`` to the CLI's sub-command parsers."""
    key_parser = commands.add_parser("keys", help="the key directory: verify ADDRESS, rotate")
    actions = key_parser.add_subparsers(dest="keys_command", required=True, metavar="ACTION", parser_class=parser_class)
    verify = actions.add_parser("verify", help="check ADDRESS's key: signature, log inclusion, consistency")
    verify.add_argument("address", metavar="ADDRESS")
    rotate = actions.add_parser("rotate", help="make a new key pair; the old one stays for reading old mail")
    rotate.add_argument("--bits", type=int, choices=(2048, 3072, 4096), default=2048)
    group_parser = commands.add_parser("group", help="group keys: new, add, remove, list, ls, read")
    group_actions = group_parser.add_subparsers(
        dest="group_command", required=True, metavar="ACTION", parser_class=parser_class
    )
    group_actions.add_parser("new", help="make a group address with a key of its own").add_argument(
        "group", metavar="GROUP"
    )
    for action, text in (
        ("add", "wrap the group key to ADDRESS's verified key and add them"),
        ("remove", "make a new group key for everyone but ADDRESS"),
    ):
        changed = group_actions.add_parser(action, help=text)
        changed.add_argument("group", metavar="GROUP")
        changed.add_argument("address", metavar="ADDRESS")
    group_actions.add_parser("list", help="your groups: ADDRESS, KEY-ID, MEMBERS, tab-separated")
    group_ls = group_actions.add_parser("ls", help="list the group's mail (as ls)")
    group_ls.add_argument("group", metavar="GROUP")
    group_ls.add_argument("--folder", default="Inbox")
    group_read = group_actions.add_parser("read", help="decrypt and print one of the group's messages (as read)")
    group_read.add_argument("group", metavar="GROUP")
    group_read.add_argument("id", metavar="ID")
    group_read.add_argument("--raw", action="store_true")
    log_parser = commands.add_parser("log", help="the transparency log: audit")
    log_actions = log_parser.add_subparsers(
        dest="log_command", required=True, metavar="ACTION", parser_class=parser_class
    )
    log_actions.add_parser("audit", help="replay the whole log and check every record and signed head")


def run(client: Client, args: argparse.Namespace, out: Callable[[str], None]) -> None:
    if args.command == "keys" and args.keys_command == "verify":
        try:
            verified = keys.lookup(client, args.address)
        except keys.KeyAlarm as alarm:
            raise ClientError(f"KEY ALARM for {args.address}: {alarm.message}") from None
        except ApiError as error:
            if error.code == "not_found":
                raise ClientError(f"{args.address}: no key in this appliance's directory") from None
            raise
        record = verified.record
        out(f"address: {verified.address}")
        out(f"key_id: {record.key_id}")
        out(f"fingerprint: {record.fingerprint}")
        out(f"status: {record.status} ({record.kind}, RSA-{record.bits}, format {record.envelope_format})")
        out(f"proof: verified in tree of {verified.head.tree_size} entries, leaf {verified.leaf_index}")
        out("history: " + (", ".join(f"{r.key_id} ({r.status})" for r in verified.history) or "-"))
        out("policy: " + (verified.policy.describe() if verified.policy is not None else "personal"))
    elif args.command == "keys" and args.keys_command == "rotate":
        new, old = keys.rotate(client, bits=args.bits)
        out(f"rotated {old} -> {new.record.key_id} (SHA-256 {new.record.fingerprint[:16]})")
    elif args.command == "group":
        group_command(client, args, out)
    elif args.command == "log" and args.log_command == "audit":
        report = keys.audit(client)
        out(f"entries: {report.entries}")
        out(f"heads: {report.heads}")
        out(f"keys: {report.keys}")
        out(f"policies: {report.policies}")
        for problem in report.problems:
            out(f"problem: {problem}")
        if report.problems:
            raise ClientError(f"the log failed its audit ({len(report.problems)} problem(s))")
        out("audit: ok")


def group_command(client: Client, args: argparse.Namespace, out: Callable[[str], None]) -> None:
    action = args.group_command
    if action == "new":
        made = groups.create(client, args.group)
        out(f"made group {made.addresses[0] if made.addresses else made.name}: key {made.key_id}")
    elif action == "add":
        changed = groups.add_member(client, args.group, args.address)
        out(f"{args.address} added to {args.group}: members {', '.join(changed.members)}")
    elif action == "remove":
        changed = groups.remove_member(client, args.group, args.address)
        out(f"{args.address} removed from {args.group}: new key {changed.key_id}, members {', '.join(changed.members)}")
    elif action == "list":
        for group in groups.list_groups(client):
            addresses = group.get("addresses") or [group.get("name")]
            members = ",".join(str(m) for m in group.get("members", []))
            out(f"{addresses[0]}\t{group.get('key_id')}\t{members}")


def watch(client: Client, err: IO[str], prog: str) -> bool:
    """The login-time check of the user's own keys; alarms go to ``err``. False when there was one."""
    try:
        found = keys.check_own_keys(client)
    except ClientError as error:
        err.write(f"{prog}: warning: the key directory could not be checked ({error})\n")
        return True
    for address in found.published:
        err.write(f"{prog}: published your key for {address} in the key directory\n")
    for notice in found.notices:
        err.write(f"{prog}: note: {notice}\n")
    for alarm in found.alarms:
        err.write(f"{prog}: *** KEY ALARM *** {alarm}\n")
    return not found.alarms


__all__ = ["COMMANDS", "GROUP_READING", "add_commands", "group_command", "run", "watch"]
