"""``mailiverse-admin``: the operator's command line.

It works on the same data directory and database as the running appliance
(the database URL is read from ``<data-dir>/appliance.json`` unless ``--db``
is given).  It never needs, and never sees, a user's private key, except
when an operator passes their own to ``store cat --private-key`` to read
their own mail locally.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path
from typing import Any

from mailiverse.config import DEFAULT_DATA_DIR, ConfigError, DataDir, read_recorded
from mailiverse.crypto.formats import FORMAT_V1, FORMAT_V2
from mailiverse.privatefile import create_private, private_dir, private_writer


class AdminError(Exception):
    """A failure to report in one line, with exit status 1."""


def _iso(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _open_database(args: argparse.Namespace) -> Any:
    from mailiverse.store.db import Database

    data_dir = DataDir(Path(args.data_dir).expanduser())
    url = args.db
    if not url:
        recorded = read_recorded(data_dir)
        url = str(recorded.get("db_url") or "")
    if not url:
        if not data_dir.root.is_dir():
            raise AdminError(f"{data_dir.root} is not an appliance data dir; start the appliance once or pass --db URL")
        url = data_dir.default_db_url
    return Database.open(url, reactor=None, migrate=True)


def _canonical_name(name: str) -> str:
    from mailiverse.auth.usernames import InvalidUsername, canonical_username

    try:
        return canonical_username(name)
    except InvalidUsername as e:
        raise AdminError(str(e)) from None


def _require_user(conn: Any, name: str) -> Any:
    from mailiverse.store.users import get_user

    user = get_user(conn, name)
    if user is None:
        raise AdminError(f"no user named {name!r}")
    return user


def cmd_user_add(args: argparse.Namespace) -> None:
    from mailiverse.crypto.keys import load_public_key, public_key_der, public_key_fingerprint
    from mailiverse.store.users import UserExists, add_user

    name = _canonical_name(args.name)
    try:
        key = load_public_key(Path(args.public_key).read_bytes())
    except OSError as e:
        raise AdminError(f"cannot read --public-key {args.public_key}: {e.strerror}") from None
    except (ValueError, TypeError):
        raise AdminError(f"--public-key {args.public_key} is not an RSA public key (PEM or DER)") from None
    if key.key_size < 2048:
        raise AdminError(f"--public-key is a {key.key_size}-bit key; use 2048 bits or more")
    db = _open_database(args)
    try:
        user = db.transact_sync(add_user, name, public_key_der(key), args.format)
    except UserExists:
        raise AdminError(f"a user named {name!r} exists already") from None
    finally:
        db.close()
    print(f"added {user.name} ({user.envelope_format}, key {public_key_fingerprint(key)[:16]})")


def cmd_user_list(args: argparse.Namespace) -> None:
    from mailiverse.store.users import list_users

    db = _open_database(args)
    try:
        users = db.run_sync(list_users)
    finally:
        db.close()
    for user in users:
        print(f"{user.name}\t{user.envelope_format}\t{_iso(user.created_ms)}")


def cmd_store_ls(args: argparse.Namespace) -> None:
    from mailiverse.store.objects import list_objects

    def listing(conn: Any) -> list[Any]:
        user = _require_user(conn, _canonical_name(args.name))
        found: list[Any] = []
        after = None
        while True:
            page = list_objects(conn, user.id, args.prefix, after=after, limit=1000)
            found.extend(page)
            if len(page) < 1000:
                return found
            after = page[-1].path

    db = _open_database(args)
    try:
        for info in db.run_sync(listing):
            print(f"{info.path}\t{info.size}\t{info.version}\t{_iso(info.modified_ms)}")
    finally:
        db.close()


def cmd_store_cat(args: argparse.Namespace) -> None:
    from mailiverse.store.objects import get_object_info, iter_object_chunks

    def read(conn: Any) -> bytes:
        user = _require_user(conn, _canonical_name(args.name))
        if get_object_info(conn, user.id, args.path) is None:
            raise AdminError(f"{args.name} has no object {args.path!r}")
        return b"".join(iter_object_chunks(conn, user.id, args.path))

    db = _open_database(args)
    try:
        data = db.run_sync(read)
    finally:
        db.close()
    if args.private_key:
        from mailiverse.crypto.errors import CryptoError
        from mailiverse.crypto.formats import open_mail_object
        from mailiverse.crypto.keys import load_private_key

        try:
            key = load_private_key(Path(args.private_key).read_bytes())
        except OSError as e:
            raise AdminError(f"cannot read --private-key {args.private_key}: {e.strerror}") from None
        except (ValueError, TypeError):
            raise AdminError(f"--private-key {args.private_key} is not an RSA private key") from None
        try:
            data = open_mail_object(key, data)
        except (CryptoError, ValueError):
            raise AdminError("the object does not decrypt with that key (wrong key, or it was tampered with)") from None
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def cmd_store_dump(args: argparse.Namespace) -> None:
    from mailiverse.store.objects import iter_object_chunks, list_objects

    target = private_dir(Path(args.dir))
    root = target.resolve()

    def dump(conn: Any) -> int:
        user = _require_user(conn, _canonical_name(args.name))
        count = 0
        after = None
        while True:
            page = list_objects(conn, user.id, args.prefix, after=after, limit=1000)
            for info in page:
                dest = (root / info.path).resolve()
                if root not in dest.parents:
                    raise AdminError(f"refusing to write {info.path!r} outside {root}")
                private_dir(dest.parent)
                with private_writer(dest) as f:
                    for chunk in iter_object_chunks(conn, user.id, info.path):
                        f.write(chunk)
                count += 1
            if len(page) < 1000:
                return count
            after = page[-1].path

    db = _open_database(args)
    try:
        count = db.run_sync(dump)
    finally:
        db.close()
    print(f"wrote {count} object(s) to {target}")


def cmd_invite_create(args: argparse.Namespace) -> None:
    from mailiverse.store.accounts import create_invite

    if args.expires is not None and not 0 < args.expires <= 3650:
        raise AdminError("--expires must be a number of days between 1 and 3650")
    now_ms = int(datetime.datetime.now(datetime.UTC).timestamp() * 1000)
    expires_ms = None if args.expires is None else now_ms + int(args.expires * 86_400_000)
    db = _open_database(args)
    try:
        code, invite = db.transact_sync(create_invite, expires_ms=expires_ms, now_ms=now_ms)
    finally:
        db.close()
    until = "never expires" if invite.expires_ms is None else f"expires {_iso(invite.expires_ms)}"
    print(code)
    print(f"invite {invite.ref} ({until}); give the code above to one person, it works once", file=sys.stderr)


def cmd_invite_list(args: argparse.Namespace) -> None:
    from mailiverse.store.accounts import list_invites

    db = _open_database(args)
    try:
        invites = db.run_sync(list_invites)
    finally:
        db.close()
    for invite in invites:
        expires = "-" if invite.expires_ms is None else _iso(invite.expires_ms)
        used = "unused" if invite.used_ms is None else f"used {_iso(invite.used_ms)} by {invite.used_by}"
        print(f"{invite.ref}\tcreated {_iso(invite.created_ms)}\texpires {expires}\t{used}")


def cmd_keygen(args: argparse.Namespace) -> None:
    from cryptography.hazmat.primitives import serialization

    from mailiverse.crypto.keys import generate_private_key

    private_path = Path(args.private_key)
    if private_path.exists():
        raise AdminError(f"{private_path} exists; refusing to overwrite a private key")
    key = generate_private_key(args.bits)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    try:
        create_private(private_path, pem)
    except FileExistsError:
        raise AdminError(f"{private_path} exists; refusing to overwrite a private key") from None
    public_path = Path(args.public_key) if args.public_key else private_path.with_suffix(".pub.pem")
    public_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    print(f"private key: {private_path} (keep it off the server)\npublic key:  {public_path}")


def cmd_legacy_keys(args: argparse.Namespace) -> None:
    from mailiverse.legacy.service import legacy_keys_text

    data_dir = DataDir(Path(args.data_dir).expanduser())
    if not data_dir.server_key_path("mail-auth").exists():
        raise AdminError(f"no server keys in {data_dir.keys_dir}; start the appliance once first")
    print(legacy_keys_text(data_dir), end="")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mailiverse-admin", description="Operate a mailiverse appliance.")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help=f"appliance data dir (default {DEFAULT_DATA_DIR})")
    parser.add_argument("--db", default=None, help="database URL (default: the one the appliance recorded)")
    sub = parser.add_subparsers(dest="command", required=True)

    user = sub.add_parser("user", help="accounts").add_subparsers(dest="user_command", required=True)
    add = user.add_parser("add", help="provision an account whose keys were made elsewhere")
    add.add_argument("name")
    add.add_argument("--public-key", required=True, metavar="FILE", help="RSA public key, PEM or DER")
    add.add_argument("--format", choices=[FORMAT_V1, FORMAT_V2], default=FORMAT_V1,
                     help="envelope format of stored mail (default v1, the Mailiverse format)")
    add.set_defaults(func=cmd_user_add)
    user.add_parser("list", help="list accounts").set_defaults(func=cmd_user_list)

    store = sub.add_parser("store", help="a user's stored objects").add_subparsers(dest="store_command", required=True)
    ls = store.add_parser("ls", help="list objects")
    ls.add_argument("name")
    ls.add_argument("prefix", nargs="?", default="")
    ls.set_defaults(func=cmd_store_ls)
    cat = store.add_parser("cat", help="write one object's stored bytes to stdout")
    cat.add_argument("name")
    cat.add_argument("path")
    cat.add_argument("--private-key", metavar="FILE", help="decrypt and inflate with this private key (yours, locally)")
    cat.set_defaults(func=cmd_store_cat)
    dump = store.add_parser("dump", help="write every object under PREFIX, raw, into DIR")
    dump.add_argument("name")
    dump.add_argument("prefix")
    dump.add_argument("dir")
    dump.set_defaults(func=cmd_store_dump)

    invite = sub.add_parser("invite", help="one-time sign-up invites").add_subparsers(dest="invite_command", required=True)
    create = invite.add_parser("create", help="make a one-time invite code and print it")
    create.add_argument("--expires", type=float, metavar="DAYS", help="days until the code expires (default: never)")
    create.set_defaults(func=cmd_invite_create)
    invite.add_parser("list", help="list invites (codes are stored hashed)").set_defaults(func=cmd_invite_list)

    keygen = sub.add_parser("keygen", help="make an RSA key pair for an account provisioned with 'user add'")
    keygen.add_argument("private_key", metavar="PRIVATE_KEY_FILE")
    keygen.add_argument("--public-key", metavar="FILE")
    keygen.add_argument("--bits", type=int, default=2048, choices=[2048, 3072, 4096])
    keygen.set_defaults(func=cmd_keygen)

    legacy = sub.add_parser("legacy", help="the original Mailiverse protocol").add_subparsers(
        dest="legacy_command", required=True
    )
    legacy.add_parser(
        "keys", help="print the mail-auth and send public keys in the form the original web client embeds"
    ).set_defaults(func=cmd_legacy_keys)

    from mailiverse.setup.cli import register_commands

    register_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (AdminError, ConfigError) as e:
        print(f"mailiverse-admin: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
