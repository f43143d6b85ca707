"""The store's tables as SQLAlchemy Core metadata; Alembic revisions create and evolve them."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.types import TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def path_type() -> TypeEngine[str]:
    """Text compared by code point on every backend, so prefix ranges match Python's ordering."""
    # PostgreSQL's default collation may be linguistic (ignoring punctuation), which would break
    # range-based prefix listing; "C" compares bytes. SQLite's default BINARY already does.
    return Text().with_variant(Text(collation="C"), "postgresql")


metadata = MetaData(naming_convention=NAMING_CONVENTION)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("envelope_format", Text, nullable=False),
    Column("public_key", LargeBinary, nullable=False),
    Column("legacy", Boolean, nullable=False, server_default=false()),
    Column("srp_salt", LargeBinary, nullable=True),
    Column("srp_verifier", LargeBinary, nullable=True),
    Column("srp_group", Text, nullable=True),
    Column("key_block", LargeBinary, nullable=True),
    Column("key_block_version", Integer, nullable=False, server_default=text("0")),
    Column("disabled", Boolean, nullable=False, server_default=false()),
    # Revision 0006: the public description of the account's password KDF (compact JSON, docs/auth.md);
    # NULL is the original fixed-salt PBKDF2 rule of legacy accounts and of modern ones not yet upgraded.
    Column("kdf", Text, nullable=True),
    # Revision 0007: the bytes of the account's objects (the sum of objects.size), changed in the
    # transaction of every put and delete (store/quota.py), and its quota; NULL is the appliance default.
    Column("used_bytes", BigInteger, nullable=False, server_default=text("0")),
    Column("quota_bytes", BigInteger, nullable=True),
    # Revision 0008: whether the account's screener for first-time senders is on (store/screener.py).
    Column("screener", Boolean, nullable=False, server_default=false()),
    # Revision 0010: the account moved to another appliance (store/moving.py, docs/moving.md): the new address,
    # when, until when its mail is forwarded, and the log leaf of its signed moved record; NULL: not moved.
    Column("moved_to", Text, nullable=True),
    Column("moved_ms", BigInteger, nullable=True),
    Column("forward_until_ms", BigInteger, nullable=True),
    Column("moved_leaf_index", BigInteger, nullable=True),
    # Revision 0011: whether this database's copy of the account takes writes (store/homes.py): ``active``,
    # ``arriving`` (a home being copied to by ``user move-home``) or ``leaving`` (the home being moved from).
    Column("home_state", Text, nullable=False, server_default="active"),
    # Revision 0013: the account's store change sequence (store/changes.py): the number of its latest write, and
    # the newest number of a tombstone forgotten (a client that synced before it lists everything again).
    Column("store_seq", BigInteger, nullable=False, server_default=text("0")),
    Column("tombstone_floor", BigInteger, nullable=False, server_default=text("0")),
    UniqueConstraint("name"),
)

objects = Table(
    "objects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("path", path_type(), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("modified_ms", BigInteger, nullable=False),
    Column("size", BigInteger, nullable=False),
    # Revision 0013: the account's change number of the write that made this version (store/changes.py).
    Column("seq", BigInteger, nullable=False, server_default=text("0")),
    # Serves lookups by path and prefix listing in name order (a range on path). An index rather
    # than a constraint so that SQLite queries can name it.
    Index("ix_objects_user_id_path", "user_id", "path", unique=True),
    # Serves newest-first listing: a backwards scan on (user_id, modified_ms, path).
    Index("ix_objects_user_id_modified_ms_path", "user_id", "modified_ms", "path"),
    # Serves "changes since": a range on (user_id, seq).
    Index("ix_objects_user_id_seq", "user_id", "seq"),
)

#: Revision 0013: a deleted (or moved-away) object's path with the change number of its deletion, so a client
#: syncing changes learns it is gone; kept 30 days (store/changes.py), then ``users.tombstone_floor`` moves up.
object_tombstones = Table(
    "object_tombstones",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("path", Text, nullable=False),
    Column("deleted_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "seq"),
    Index("ix_object_tombstones_deleted_ms", "deleted_ms"),
)

object_chunks = Table(
    "object_chunks",
    metadata,
    Column(
        "object_id",
        Integer,
        ForeignKey("objects.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("seq", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
    PrimaryKeyConstraint("object_id", "seq"),
)

# -- accounts (revision 0002): sessions, invites, shared server secrets -----------------------

sessions = Table(
    "sessions",
    metadata,
    # SHA-256 of the token; the token itself is never stored.
    Column("token_hash", LargeBinary, nullable=False),
    Column("session_id", Text, nullable=False),
    Column("username", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("last_seen", Double, nullable=False),
    PrimaryKeyConstraint("token_hash"),
    Index("ix_sessions_username", "username"),
    Index("ix_sessions_last_seen", "last_seen"),
)

invites = Table(
    "invites",
    metadata,
    # SHA-256 of the invite code; the code is shown once, when it is created.
    Column("code_hash", LargeBinary, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=True),
    Column("used_ms", BigInteger, nullable=True),
    Column("used_by", Text, nullable=True),
    PrimaryKeyConstraint("code_hash"),
)

server_secrets = Table(
    "server_secrets",
    metadata,
    Column("name", Text, nullable=False),
    Column("value", LargeBinary, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("name"),
)

# -- outbound queue (revision 0003): messages waiting for remote delivery ---------------------

outbound_messages = Table(
    "outbound_messages",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("queue_id", Text, nullable=False),
    Column("user_name", Text, nullable=False),
    Column("mail_from", Text, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("size", BigInteger, nullable=False),
    # AES-256-GCM under the queue key in the data dir; never the plaintext message.
    Column("body", LargeBinary, nullable=False),
    UniqueConstraint("queue_id"),
)

outbound_recipients = Table(
    "outbound_recipients",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "message_id",
        Integer,
        ForeignKey("outbound_messages.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("address", Text, nullable=False),
    Column("domain", Text, nullable=False),
    # pending -> sent | failed -> bounced | dropped
    Column("status", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_ms", BigInteger, nullable=False),
    Column("lease_until_ms", BigInteger, nullable=False, server_default=text("0")),
    Column("lease_owner", Text, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("status_code", Text, nullable=True),
    Column("remote_host", Text, nullable=True),
    # Serves the worker's "what is due" scan.
    Index("ix_outbound_recipients_status_next_attempt_ms", "status", "next_attempt_ms"),
    Index("ix_outbound_recipients_message_id", "message_id"),
)

# -- legacy Mailiverse protocol (revision 0004) ------------------------------------------------

legacy_pending = Table(
    "legacy_pending",
    metadata,
    # An account created by a legacy sign-up packet whose server environment (and so its public
    # key) has not arrived yet; it becomes a ``users`` row when the mail block is put.
    Column("name", Text, nullable=False),
    Column("srp_salt", LargeBinary, nullable=False),
    Column("srp_verifier", LargeBinary, nullable=False),
    Column("key_block", LargeBinary, nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("name"),
)

legacy_mail_blocks = Table(
    "legacy_mail_blocks",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("block", Text, nullable=False),
    Column("modified_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id"),
)

legacy_store_credentials = Table(
    "legacy_store_credentials",
    metadata,
    Column("key_id", Text, nullable=False),
    # The secret, AES-encrypted under a key derived from the legacy server secret.
    Column("secret", LargeBinary, nullable=False),
    Column("name", Text, nullable=False),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("key_id"),
    Index("ix_legacy_store_credentials_name", "name"),
    Index("ix_legacy_store_credentials_user_id", "user_id"),
)

legacy_captcha_tokens = Table(
    "legacy_captcha_tokens",
    metadata,
    Column("token_hash", LargeBinary, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Column("signup_used_ms", BigInteger, nullable=True),
    Column("store_used_ms", BigInteger, nullable=True),
    PrimaryKeyConstraint("token_hash"),
)

# -- pending SRP logins (revision 0005): challenges shared by every front end ------------------

pending_logins = Table(
    "pending_logins",
    metadata,
    # SHA-256 of the login handle; the handle itself is never stored.
    Column("handle_hash", LargeBinary, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    # The server's SRP state (secret exponent b included), AES-256-GCM under a key bound to the
    # handle; see docs/auth.md.
    Column("sealed_state", LargeBinary, nullable=False),
    PrimaryKeyConstraint("handle_hash"),
    # Serves the purge of expired rows and the eviction of the oldest at the cap.
    Index("ix_pending_logins_expires_ms", "expires_ms"),
)


# Revision 0008: the alias directory (store/aliases.py). Addresses only as keyed hashes; the address
# sealed to its owner's key; a deleted alias stays as a tombstone of its hash (no owner) for good.
aliases = Table(
    "aliases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("public_id", Text, nullable=False),
    Column("address_hash", LargeBinary, nullable=False),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    Column("kind", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("senders", Text, nullable=False, server_default="any"),
    Column("sealed_address", LargeBinary, nullable=True),
    Column("label", LargeBinary, nullable=True),
    Column("received", BigInteger, nullable=False, server_default=text("0")),
    Column("last_used_ms", BigInteger, nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    UniqueConstraint("address_hash"),
    UniqueConstraint("public_id"),
    Index("ix_aliases_user_id_created_ms", "user_id", "created_ms"),
)

#: The senders (and sender domains) that have written to an alias, as keyed hashes.
alias_senders = Table(
    "alias_senders",
    metadata,
    Column("alias_id", Integer, ForeignKey("aliases.id", ondelete="CASCADE"), nullable=False),
    Column("sender_hash", LargeBinary, nullable=False),
    PrimaryKeyConstraint("alias_id", "sender_hash"),
)

#: The senders an account approved (or wrote to) or blocked, as keyed hashes.
screened_senders = Table(
    "screened_senders",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("sender_hash", LargeBinary, nullable=False),
    Column("verdict", Text, nullable=False),
    PrimaryKeyConstraint("user_id", "sender_hash"),
)

#: Hashcash stamps spent (keyed hashes), so a replayed stamp does not skip the screener twice.
spent_stamps = Table(
    "spent_stamps",
    metadata,
    Column("stamp_hash", LargeBinary, nullable=False),
    Column("spent_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("stamp_hash"),
    Index("ix_spent_stamps_spent_ms", "spent_ms"),
)


# Revision 0009: the key directory and its transparency log (store/keylog.py, docs/keys.md).
#: The log's leaves in order: each the canonical JSON of one signed record (RFC 9162 leaf data).
key_log = Table(
    "key_log",
    metadata,
    Column("leaf_index", BigInteger, nullable=False, autoincrement=False),
    Column("leaf", LargeBinary, nullable=False),
    Column("leaf_hash", LargeBinary, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("leaf_index"),
)

#: Every signed tree head the log has issued (one per append), so an auditor checks each.
key_log_heads = Table(
    "key_log_heads",
    metadata,
    Column("tree_size", BigInteger, nullable=False, autoincrement=False),
    Column("root_hash", LargeBinary, nullable=False),
    Column("timestamp_ms", BigInteger, nullable=False),
    Column("signature", LargeBinary, nullable=False),
    PrimaryKeyConstraint("tree_size"),
)

#: Each key's latest record: who holds it (an account, or a group) and its leaf.
key_records = Table(
    "key_records",
    metadata,
    Column("key_id", Text, nullable=False),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    Column("group_id", Integer, ForeignKey("key_groups.id", ondelete="SET NULL"), nullable=True),
    Column("kind", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("leaf_index", BigInteger, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("key_id"),
    Index("ix_key_records_user_id", "user_id"),
)

#: Which address hashes each key serves (a key's record names them; history keeps every key).
key_bindings = Table(
    "key_bindings",
    metadata,
    Column("address_hash", LargeBinary, nullable=False),
    Column("key_id", Text, ForeignKey("key_records.key_id", ondelete="CASCADE"), nullable=False),
    PrimaryKeyConstraint("address_hash", "key_id"),
)

#: Group and organisation accounts (store/groups.py): ``local`` is the account's name, whose public key is the
#: group's current key; the private key exists only wrapped to each member's public key (key_group_members).
key_groups = Table(
    "key_groups",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("local", Text, nullable=False),
    Column("kind", Text, nullable=False),
    Column("key_id", Text, nullable=False),
    Column("owner_id", Integer, ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
    Column("created_ms", BigInteger, nullable=False),
    UniqueConstraint("local"),
)

#: A group's private key wrapped (sealed) to one member's public key, one row per group key the member
#: was given: a member removed keeps the rows of the keys they had and gets none after.
key_group_members = Table(
    "key_group_members",
    metadata,
    Column("group_id", Integer, ForeignKey("key_groups.id", ondelete="CASCADE"), nullable=False),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("key_id", Text, nullable=False),
    Column("wrapped", LargeBinary, nullable=False),
    PrimaryKeyConstraint("group_id", "user_id", "key_id"),
    Index("ix_key_group_members_user_id", "user_id"),
)

#: Each domain's encryption policies in order; the last is in force (a signed log entry each).
domain_policies = Table(
    "domain_policies",
    metadata,
    Column("domain", Text, nullable=False),
    Column("seq", Integer, nullable=False, autoincrement=False),
    Column("policy", Text, nullable=False),
    Column("group_id", Integer, ForeignKey("key_groups.id", ondelete="SET NULL"), nullable=True),
    # The officers' addresses as the policy names them (its record holds only their hashes), JSON.
    Column("officers", Text, nullable=False, server_default="[]"),
    Column("leaf_index", BigInteger, nullable=False),
    PrimaryKeyConstraint("domain", "seq"),
)


# Revision 0010: moving house (store/moving.py, docs/moving.md).
#: Keys an account brought from an appliance it moved from: envelopes sealed to them are stored for it (a carrier,
#: mail the old appliance forwards). ``signature`` is the key's own over the account's address and its id.
brought_keys = Table(
    "brought_keys",
    metadata,
    Column("key_id", Text, nullable=False),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("public_key", LargeBinary, nullable=False),
    Column("address", Text, nullable=False),
    Column("signature", LargeBinary, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("key_id"),
    Index("ix_brought_keys_user_id", "user_id"),
)

#: A moved account's received mail by key base: ``copied`` (the client copied it to the new appliance before
#: the switch), ``forwarding`` (claimed by a forwarder at ``changed_ms``), ``forwarded`` (queued to the new
#: address) or ``unforwardable`` (too large, or without its twin). Mail without a row is still to be forwarded.
moved_mail = Table(
    "moved_mail",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("key_base", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("changed_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "key_base"),
)

# -- homes (revision 0011): store/homes.py, docs/homes.md -------------------------------------------------

#: The metabase's map of accounts to homes. ``state`` is ``active`` or ``moving`` (``user move-home`` runs).
#: Without ``--metabase`` there is one home and no rows.
user_homes = Table(
    "user_homes",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("home", Text, nullable=False),
    Column("state", Text, nullable=False, server_default="active"),
    Column("changed_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id"),
    Index("ix_user_homes_home", "home"),
)

#: Token buckets shared by front ends (auth/ratelimit.py): ``bucket`` is a keyed hash of what is limited.
rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("bucket", LargeBinary, nullable=False),
    Column("tokens", Double, nullable=False),
    Column("updated", Double, nullable=False),
    PrimaryKeyConstraint("bucket"),
    Index("ix_rate_buckets_updated", "updated"),
)

#: HTTP-01 key authorizations any front end answers (acme/http01.py).
acme_challenges = Table(
    "acme_challenges",
    metadata,
    Column("token", Text, nullable=False),
    Column("key_authorization", Text, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("token"),
)

#: The certificate one front end obtained, for every front end to load (acme/service.py).
acme_certificates = Table(
    "acme_certificates",
    metadata,
    Column("name", Text, nullable=False),
    Column("chain_pem", LargeBinary, nullable=False),
    Column("key_pem", LargeBinary, nullable=False),
    Column("updated_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("name"),
)

#: Work one front end does at a time (certificate renewal): held by ``owner`` until ``until_ms``.
service_leases = Table(
    "service_leases",
    metadata,
    Column("name", Text, nullable=False),
    Column("owner", Text, nullable=False),
    Column("until_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("name"),
)

#: Mail from outside already stored for an account, by a keyed hash of the message as its sender sent it: a sender
#: that retries after a reply lost with a front end (killed between the commit and the 250) stores nothing twice.
#: In each home, beside the objects; rows older than a week (longer than senders retry) are purged.
received_digests = Table(
    "received_digests",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("digest", LargeBinary, nullable=False),
    Column("key_base", Text, nullable=False),
    Column("received_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "digest"),
    Index("ix_received_digests_received_ms", "received_ms"),
)

# -- a second factor (revision 0012): store/secondfactor.py, docs/passkeys.md ------------------------------
# Account-level tables: in the metabase, beside sessions and pending_logins.

#: An account's passkeys (WebAuthn credentials): the credential id, its COSE public key, the signature counter.
passkey_credentials = Table(
    "passkey_credentials",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("credential_id", LargeBinary, nullable=False),
    Column("public_key", LargeBinary, nullable=False),
    Column("sign_count", BigInteger, nullable=False, server_default=text("0")),
    Column("name", Text, nullable=False),
    # The authenticator's transports as it reported them (a JSON list), handed back in allowCredentials.
    Column("transports", Text, nullable=False, server_default="[]"),
    Column("created_ms", BigInteger, nullable=False),
    Column("last_used_ms", BigInteger, nullable=True),
    UniqueConstraint("credential_id"),
    Index("ix_passkey_credentials_user_id", "user_id"),
)

#: An account's recovery codes as keyed hashes (HMAC-SHA-256 under a subkey of the server secret); each
#: works once (``used_ms``). Shown once, when they are made; making new ones deletes the old.
recovery_codes = Table(
    "recovery_codes",
    metadata,
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("code_hash", LargeBinary, nullable=False),
    Column("created_ms", BigInteger, nullable=False),
    Column("used_ms", BigInteger, nullable=True),
    PrimaryKeyConstraint("user_id", "code_hash"),
)

#: WebAuthn ceremonies under way: a login that passed SRP and waits for its second factor (``login``), or a
#: passkey being registered (``register``). SHA-256 of the single-use handle; the handle itself is never stored.
pending_second_factors = Table(
    "pending_second_factors",
    metadata,
    Column("handle_hash", LargeBinary, nullable=False),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("purpose", Text, nullable=False),
    Column("challenge", LargeBinary, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    # JSON: a login's device id and the rate-limit keys its pending failure was charged to (docs/passkeys.md).
    Column("state", Text, nullable=False, server_default="{}"),
    PrimaryKeyConstraint("handle_hash"),
    Index("ix_pending_second_factors_expires_ms", "expires_ms"),
    Index("ix_pending_second_factors_user_id", "user_id"),
)
