"""The ``user`` (add, list, quota, reset-second-factor), ``store``, ``invite``, ``keygen`` and ``legacy`` commands
of ``mailiverse-admin``.

Each ``cmd_*(args)`` reads ``args.data_dir`` and ``args.db`` from the main parser and raises
:class:`~mailiverse.admin.errors.AdminError` for a failure the operator can act on.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path
from typing import Any

from mailiverse.admin.database import ApplianceHomes, appliance_database, appliance_homes
from mailiverse.admin.errors import AdminError
from mailiverse.config import DataDir
from mailiverse.privatefile import create_private, private_dir, private_writer

#: Objects are listed a page at a time, so a large store never sits in memory at once.
_PAGE = 1000


def _iso(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _canonical_name(name: str) -> str:
    from mailiverse.auth.usernames import InvalidUsername, canonical_username

    try:
        return canonical_username(name)
    except InvalidUsername as e:
        raise AdminError(str(e)) from None


def _require_user_txn(conn: Any, name: str) -> Any:
    from mailiverse.store.users import get_user_txn

    user = get_user_txn(conn, name)
    if user is None:
        raise AdminError(f"no user named {name!r}")
    return user


def cmd_user_add(args: argparse.Namespace) -> None:
    from mailiverse.crypto.keys import load_public_key, public_key_der, public_key_fingerprint
    from mailiverse.store.errors import UserExists
    from mailiverse.store.users import add_user_txn

    name = _canonical_name(args.name)
    try:
        key = load_public_key(Path(args.public_key).read_bytes())
    except OSError as e:
        raise AdminError(f"cannot read --public-key {args.public_key}: {e.strerror}") from None
    except (ValueError, TypeError):
        raise AdminError(f"--public-key {args.public_key} is not an RSA public key (PEM or DER)") from None
    if key.key_size < 2048:
        raise AdminError(f"--public-key is a {key.key_size}-bit key; use 2048 bits or more")
    try:
        with appliance_homes(args) as homes:
            user = homes.meta.transact_sync(add_user_txn, name, public_key_der(key), args.format)
            home = _place(homes, user.id)
    except UserExists:
        raise AdminError(f"a user named {name!r} exists already") from None
    where = f", home {home}" if home else ""
    print(f"added {user.name} ({user.envelope_format}, key {public_key_fingerprint(key)[:16]}{where})")


def _place(homes: ApplianceHomes, user_id: int, *, undo: bool = True) -> str | None:
    """Give a new account its home (as the appliance does at sign-up); None with one database. If the home does
    not take it, the account is deleted again (``undo``), or stays in the metabase, its home until moved."""
    from sqlalchemy.exc import SQLAlchemyError

    from mailiverse.store.homes import ACTIVE, account_row_txn, add_copy_txn, choose_home, home_counts_txn, set_home_txn
    from mailiverse.store.users import delete_user_txn

    if not homes.multi:
        return None
    name = choose_home(homes.weights, homes.meta.run_sync(home_counts_txn))
    try:
        account = homes.meta.run_sync(account_row_txn, user_id)
        homes.homes[name].transact_sync(add_copy_txn, account, ACTIVE)
        homes.meta.transact_sync(set_home_txn, user_id, name, ACTIVE)
    except SQLAlchemyError:
        if not undo:
            print(f"home {name} did not answer: the account lives in the metabase until 'user move-home' moves it")
            return None
        homes.meta.transact_sync(delete_user_txn, user_id)
        raise AdminError(f"home {name} did not take the new account (is it up?); nothing was added") from None
    return name


def cmd_user_list(args: argparse.Namespace) -> None:
    from mailiverse.store.users import list_users_txn

    with appliance_database(args) as db:
        users = db.run_sync(list_users_txn)
    for user in users:
        print(f"{user.name}\t{user.envelope_format}\t{_iso(user.created_ms)}")


def cmd_user_reset_second_factor(args: argparse.Namespace) -> None:
    """The account's passkeys, recovery codes and second steps under way go (docs/passkeys.md): for a user who lost
    every authenticator and code. They are account-level rows, so they live in the metabase."""
    from mailiverse.store.secondfactor import reset_second_factor_txn

    name = _canonical_name(args.name)

    def reset_txn(conn: Any) -> tuple[int, int]:
        return reset_second_factor_txn(conn, _require_user_txn(conn, name).id)

    with appliance_homes(args) as homes:
        passkeys, codes = homes.meta.transact_sync(reset_txn)
    print(
        f"{name}: second factor reset ({passkeys} passkey(s) and {codes} recovery code(s) removed); "
        "the password alone logs in now"
    )


def _default_quota(args: argparse.Namespace) -> int:
    """The --default-quota the appliance last ran with (recorded in its data dir), else the built-in default."""
    from mailiverse.config import DEFAULT_QUOTA_BYTES, read_recorded

    recorded = read_recorded(DataDir(Path(args.data_dir).expanduser())).get("default_quota")
    return recorded if isinstance(recorded, int) and not isinstance(recorded, bool) else DEFAULT_QUOTA_BYTES


def cmd_user_quota(args: argparse.Namespace) -> None:
    from mailiverse.config import format_size, parse_size
    from mailiverse.store.quota import Usage, get_usage_txn, set_quota_txn

    name = _canonical_name(args.name)
    change = args.size is not None
    new_quota: int | None = None
    if change and args.size.strip().lower() != "default":
        try:
            new_quota = parse_size(args.size)
        except ValueError as e:
            raise AdminError(f"SIZE {e}, or 'default'") from None

    def quota_txn(conn: Any) -> Usage:
        user = _require_user_txn(conn, name)
        return set_quota_txn(conn, user.id, new_quota) if change else get_usage_txn(conn, user.id)

    with appliance_homes(args) as homes:
        _home, db = homes.home_of(name)
        if change and db is not homes.meta:
            homes.meta.transact_sync(quota_txn)  # the directory's copy, for listings
        usage = db.transact_sync(quota_txn) if change else db.run_sync(quota_txn)
    if usage.quota_bytes is None:
        quota = f"quota {format_size(_default_quota(args))} (appliance default)"
    else:
        quota = f"quota {format_size(usage.quota_bytes)}"
    print(f"{name}\t{usage.used_bytes} bytes used\t{quota}")


def cmd_store_ls(args: argparse.Namespace) -> None:
    from mailiverse.store.objects import list_objects_txn

    def listing_txn(conn: Any) -> list[Any]:
        user = _require_user_txn(conn, _canonical_name(args.name))
        found: list[Any] = []
        after = None
        while True:
            page = list_objects_txn(conn, user.id, args.prefix, after=after, limit=_PAGE)
            found.extend(page)
            if len(page) < _PAGE:
                return found
            after = page[-1].path

    with appliance_homes(args) as homes:
        _home, db = homes.home_of(_canonical_name(args.name))
        for info in db.run_sync(listing_txn):
            print(f"{info.path}\t{info.size}\t{info.version}\t{_iso(info.modified_ms)}")


def cmd_store_cat(args: argparse.Namespace) -> None:
    from mailiverse.store.objects import get_object_info_txn, iter_object_chunks_txn

    def read_txn(conn: Any) -> bytes:
        user = _require_user_txn(conn, _canonical_name(args.name))
        if get_object_info_txn(conn, user.id, args.path) is None:
            raise AdminError(f"{args.name} has no object {args.path!r}")
        return b"".join(iter_object_chunks_txn(conn, user.id, args.path))

    with appliance_homes(args) as homes:
        _home, db = homes.home_of(_canonical_name(args.name))
        data = db.run_sync(read_txn)
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
    from mailiverse.store.objects import iter_object_chunks_txn, list_objects_txn

    target = private_dir(Path(args.dir))
    root = target.resolve()

    def dump_txn(conn: Any) -> int:
        user = _require_user_txn(conn, _canonical_name(args.name))
        count = 0
        after = None
        while True:
            page = list_objects_txn(conn, user.id, args.prefix, after=after, limit=_PAGE)
            for info in page:
                dest = (root / info.path).resolve()
                if root not in dest.parents:
                    raise AdminError(f"refusing to write {info.path!r} outside {root}")
                private_dir(dest.parent)
                with private_writer(dest) as f:
                    for chunk in iter_object_chunks_txn(conn, user.id, info.path):
                        f.write(chunk)
                count += 1
            if len(page) < _PAGE:
                return count
            after = page[-1].path

    with appliance_homes(args) as homes:
        _home, db = homes.home_of(_canonical_name(args.name))
        count = db.run_sync(dump_txn)
    print(f"wrote {count} object(s) to {target}")


def cmd_invite_create(args: argparse.Namespace) -> None:
    from mailiverse.store.accounts import create_invite_txn

    if args.expires is not None and not 0 < args.expires <= 3650:
        raise AdminError("--expires must be a number of days between 1 and 3650")
    now_ms = int(datetime.datetime.now(datetime.UTC).timestamp() * 1000)
    expires_ms = None if args.expires is None else now_ms + int(args.expires * 86_400_000)
    with appliance_database(args) as db:
        code, invite = db.transact_sync(create_invite_txn, expires_ms=expires_ms, now_ms=now_ms)
    until = "never expires" if invite.expires_ms is None else f"expires {_iso(invite.expires_ms)}"
    print(code)
    print(f"invite {invite.ref} ({until}); give the code above to one person, it works once", file=sys.stderr)


def cmd_invite_list(args: argparse.Namespace) -> None:
    from mailiverse.store.accounts import list_invites_txn

    with appliance_database(args) as db:
        invites = db.run_sync(list_invites_txn)
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
        raise AdminError(f"no server keys in {data_dir.keys_dir}; start the appliance once with --legacy first")
    print(legacy_keys_text(data_dir), end="")


def cmd_domain_policy(args: argparse.Namespace) -> None:
    """Show ``DOMAIN``'s encryption policy, or append a new one to the key log (docs/keys.md)."""
    from mailiverse.accounts.policy import PolicyError, set_policy_txn
    from mailiverse.config import DataDir, read_recorded
    from mailiverse.store.groups import current_policy_txn
    from mailiverse.store.keylog import KeyLog, load_log_key

    domain = args.domain.strip().lower()
    data_dir = DataDir(Path(args.data_dir).expanduser())
    recorded = read_recorded(data_dir).get("domains")
    domains = [str(d) for d in recorded] if isinstance(recorded, list) else [domain]
    if domain not in domains:
        raise AdminError(f"{domain} is not a domain of this appliance ({', '.join(domains)})")
    with appliance_homes(args) as homes:
        db = homes.meta
        if args.policy is None:
            current = db.transact_sync(current_policy_txn, domain)
            if current is None:
                print(f"{domain}: personal (never changed)")
            else:
                officers = f"; officers {', '.join(current.officers)}" if current.officers else ""
                print(f"{domain}: {current.policy} (entry {current.seq}, log leaf {current.leaf_index}){officers}")
            return
        log_key = load_log_key(data_dir.log_key_file)
        try:
            change = db.transact_sync(
                set_policy_txn,
                KeyLog(log_key),
                log_key,
                domain,
                args.policy,
                officers=args.officer or (),
                account=args.account,
                domains=domains,
            )
        except PolicyError as error:
            raise AdminError(str(error)) from None
        if change.key_id:
            _place(
                homes, db.run_sync(_holder_of_txn, change.key_id), undo=False
            )  # the organisation's account gets a home
    detail = f"; key {change.key_id}, readable by {', '.join(change.officers)}" if change.key_id else ""
    print(f"{domain}: {change.policy} (entry {change.seq}, log leaf {change.leaf_index}){detail}")


def _holder_of_txn(conn: Any, key_id: str) -> int:
    from sqlalchemy import select

    from mailiverse.store.schema import key_records

    return int(conn.execute(select(key_records.c.user_id).where(key_records.c.key_id == key_id)).scalar_one())


def cmd_homes(args: argparse.Namespace) -> None:
    """One line per home: its name, its accounts, objects, stored bytes, database size and health; with
    ``--users``, each account and the name of its home."""
    from mailiverse.store.homes import ACTIVE, METABASE_HOME, home_counts_txn, homes_of_users_txn

    with appliance_homes(args) as homes:
        if args.users:
            for name, home, state in homes.meta.run_sync(homes_of_users_txn):
                print(f"{name}\t{home}" + ("" if state == ACTIVE else f"\t{state}"))
            return
        counts = homes.meta.run_sync(home_counts_txn)
        for name, database in homes.homes.items():
            if name == METABASE_HOME and homes.multi and not counts.get(name):
                continue  # the metabase is a home only for accounts from before the homes
            users = counts.get(name, 0)
            try:
                objects, stored, size = database.run_sync(_home_stats_txn)
            except Exception as error:  # noqa: BLE001 - a home that does not answer is reported, not fatal
                print(f"{name}\t{users}\t-\t-\t-\tdown ({type(error).__name__})")
                continue
            weight = f" weight {homes.weights[name]}" if name in homes.weights else ""
            print(f"{name}\t{users}\t{objects} objects\t{stored} bytes stored\t{size} bytes on disk\tup{weight}")


def _home_stats_txn(conn: Any) -> tuple[int, int, int]:
    """(objects, their bytes, the database's size on disk) of one home."""
    from sqlalchemy import func, select, text

    from mailiverse.store.schema import objects

    count, stored = conn.execute(select(func.count(), func.coalesce(func.sum(objects.c.size), 0))).one()
    if conn.dialect.name == "postgresql":
        size = conn.execute(text("SELECT pg_database_size(current_database())")).scalar()
    else:
        size = conn.execute(text("SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()")).scalar()
    return int(count), int(stored), int(size or 0)


def cmd_user_move_home(args: argparse.Namespace) -> None:
    """Move an account's mail to another home: copied, verified (counts and hashes), flipped, the old copy deleted."""
    from mailiverse.store.homemove import HomeMoveError, move_home

    name = _canonical_name(args.name)
    with appliance_homes(args) as homes:
        if not homes.multi:
            raise AdminError("this appliance has one database: run it with --metabase and --home to have homes")
        try:
            report = move_home(homes.meta, homes.homes, name, args.home, say=print)
        except HomeMoveError as e:
            raise AdminError(str(e)) from None
    print(
        f"moved {name} from {report.source} to {report.target}: {report.objects} object(s), {report.bytes} bytes, "
        f"sha256 {report.digest}, mail held {report.held_s:.1f} s"
    )
