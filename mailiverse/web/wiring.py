"""Assemble the web app with its collaborators: server secret, database sessions, accounts, the submission service.

The appliance and the tests build the app through ``build_web_app``, so what the tests exercise
is what runs; tests give a settable ``clock`` and, where they sign up many users from one
address, a roomier ``signup_policy``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.application.internet import TimerService
from twisted.application.service import IService
from twisted.internet.defer import Deferred
from twisted.web.resource import IResource

from mailiverse.accounts.pending import DatabasePendingLogins
from mailiverse.accounts.service import AccountService, SignupPolicy, thread_runner
from mailiverse.accounts.sessions import DatabaseSessionStore
from mailiverse.auth.clock import TimeSource, as_clock
from mailiverse.auth.ratelimit import IRateLimits, LoginLimits
from mailiverse.auth.sessions import SessionManager
from mailiverse.config import DEFAULT_QUOTA_BYTES
from mailiverse.delivery.rspamd import RspamdClient
from mailiverse.federation.discovery import Discovery
from mailiverse.store import accounts as repo
from mailiverse.store.db import Database
from mailiverse.store.homes import Homes
from mailiverse.store.keylog import KeyLog
from mailiverse.store.pending import purge_expired_pending_txn
from mailiverse.submission import Submission
from mailiverse.web.app import WebApp
from mailiverse.web.routes.aliases import AliasSettings

#: Name of the server secret (in the ``server_secrets`` table) behind CSRF tokens and decoy salts.
AUTH_SECRET_NAME = "auth"  # noqa: S105 - a row name, not a secret
#: How often expired sessions and pending logins are deleted, in seconds.
PURGE_INTERVAL = 600.0


def load_server_secret(database: Database) -> bytes:
    """The auth server secret, created on first use; shared by every front end of the database.

    Blocking: call it at start-up (it runs on the calling thread).
    """
    with database.blocking_allowed():
        return database.transact_sync(repo.ensure_secret_txn, AUTH_SECRET_NAME, 32)


def build_web_app(
    database: Database,
    *,
    hostname: str,
    domains: Sequence[str],
    submission: Submission,
    reactor: Any,
    clock: TimeSource = None,
    tls: bool = True,
    open_signup: bool = False,
    signup_policy: SignupPolicy | None = None,
    max_message_size: int = 50 * 1024 * 1024,
    static_dir: Path | None = None,
    legacy_resource: IResource | None = None,
    mta_sts_policy: str | None = None,
    default_quota: int = DEFAULT_QUOTA_BYTES,
    spool_dir: Path | None = None,
    spam_filter: RspamdClient | None = None,
    alias_settings: AliasSettings | None = None,
    key_log: KeyLog | None = None,
    discovery: Discovery | None = None,
    rate_limits: IRateLimits | None = None,
    homes: Homes | None = None,
) -> tuple[WebApp, IService]:
    """Return the web app and a service that purges expired sessions and pending logins while it runs.

    ``clock`` (seconds; the reactor when not given) times sessions, throttles and pending logins.
    Login challenges wait in the database (``DatabasePendingLogins``), so front ends sharing it
    need no sticky sessions: round trip 2 may reach another process than round trip 1.
    ``spool_dir`` (the data directory's ``tmp/``) takes request bodies too large for memory, encrypted;
    ``WebApp.site()`` needs it. ``spam_filter`` (``--rspamd``) learns from the clients' spam buttons.
    ``rate_limits`` holds the routes' limiters (in memory by default); shared ones are purged with the sessions.
    """
    time_source: TimeSource = reactor if clock is None else clock
    now = as_clock(time_source)
    secret = load_server_secret(database)
    sessions = SessionManager(DatabaseSessionStore(database), secret, clock=time_source)
    pending = DatabasePendingLogins(database, secret, clock=time_source)
    accounts = AccountService(
        database,
        secret,
        sessions,
        clock=time_source,
        policy=signup_policy or SignupPolicy(open_signup=open_signup),
        pending=pending,
        run_cpu=thread_runner(reactor),
        homes=homes,
        # Front ends of one metabase share the failed-login, login-start and sign-up budgets.
        throttle=LoginLimits.shared(rate_limits) if rate_limits is not None else None,
        rate_limits=rate_limits,
    )
    app = WebApp(
        hostname=hostname,
        domains=tuple(domains),
        database=database,
        homes=homes,
        accounts=accounts,
        submission=submission,
        tls=tls,
        static_dir=static_dir,
        max_message_size=max_message_size,
        legacy_resource=legacy_resource,
        mta_sts_policy=mta_sts_policy,
        default_quota=default_quota,
        spool_dir=spool_dir,
        spam_filter=spam_filter,
        alias_settings=alias_settings,
        key_log=key_log,
        discovery=discovery,
        rate_limits=rate_limits,
    )

    async def purge_both() -> int:
        purged = await sessions.purge_expired() + await pending.purge_expired()
        purged += await database.transact(purge_expired_pending_txn, int(now() * 1000))
        # Shared buckets (store/ratebuckets.py, front ends of one metabase) are rows to purge; in-memory ones are not.
        purge_buckets = getattr(rate_limits, "purge", None)
        if purge_buckets is not None:
            purged += int(await purge_buckets())
        return purged

    def purge() -> Deferred[int]:
        return Deferred.fromCoroutine(purge_both())

    purger = TimerService(PURGE_INTERVAL, purge)
    purger.clock = reactor
    purger.setName("session-purge")
    return app, purger


__all__ = ["AUTH_SECRET_NAME", "build_web_app", "load_server_secret"]
