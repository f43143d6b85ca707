"""Assemble the web app with its collaborators: server secret, database sessions, accounts, sending."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.application.internet import TimerService
from twisted.application.service import IService
from twisted.internet.defer import Deferred

from mailiverse.accounts.pending import DatabasePendingLogins
from mailiverse.accounts.service import AccountService, SignupPolicy, thread_runner
from mailiverse.accounts.sessions import DatabaseSessionStore
from mailiverse.auth.sessions import SessionManager
from mailiverse.smtp.interfaces import IInbox
from mailiverse.store import accounts as repo
from mailiverse.store.db import Database
from mailiverse.web.app import WebApp
from mailiverse.web.interfaces import IOutbound
from mailiverse.web.send import Sender

#: Name of the server secret (in the ``server_secrets`` table) behind CSRF tokens and decoy salts.
AUTH_SECRET_NAME = "auth"  # noqa: S105 - a row name, not a secret
#: How often expired sessions and pending logins are deleted, in seconds.
PURGE_INTERVAL = 600.0


def load_server_secret(database: Database) -> bytes:
    """The auth server secret, created on first use; shared by every front end of the database.

    Blocking: call it at start-up (it runs on the calling thread).
    """
    with database.blocking_allowed():
        return database.transact_sync(repo.ensure_secret, AUTH_SECRET_NAME, 32)


def build_web_app(
    database: Database,
    *,
    hostname: str,
    domains: Sequence[str],
    inbox: IInbox,
    reactor: Any,
    tls: bool = True,
    outbound: IOutbound | None = None,
    tmp_dir: Path | None = None,
    open_signup: bool = False,
    max_message_size: int = 50 * 1024 * 1024,
    static_dir: Path | None = None,
) -> tuple[WebApp, IService]:
    """Return the web app and a service that purges expired sessions and pending logins while it runs.

    Login challenges wait in the database (``DatabasePendingLogins``), so front ends sharing it
    need no sticky sessions: round trip 2 may reach another process than round trip 1.
    """
    secret = load_server_secret(database)
    sessions = SessionManager(DatabaseSessionStore(database), secret, clock=reactor)
    run_cpu = thread_runner(reactor)
    pending = DatabasePendingLogins(database, secret, clock=reactor)
    accounts = AccountService(
        database,
        secret,
        sessions,
        clock=reactor,
        policy=SignupPolicy(open_signup=open_signup),
        pending=pending,
        run_cpu=run_cpu,
    )
    sender = Sender(
        database,
        inbox,
        domains,
        hostname=hostname,
        outbound=outbound,
        tmp_dir=tmp_dir,
        max_message_size=max_message_size,
        run_cpu=run_cpu,
    )
    extra: dict[str, Any] = {} if static_dir is None else {"static_dir": static_dir}
    app = WebApp(
        hostname=hostname,
        domains=tuple(domains),
        tls=tls,
        database=database,
        accounts=accounts,
        sender=sender,
        max_message_size=max_message_size,
        **extra,
    )

    async def purge_both() -> int:
        return await sessions.purge_expired() + await pending.purge_expired()

    def purge() -> Deferred[int]:
        return Deferred.fromCoroutine(purge_both())

    purger = TimerService(PURGE_INTERVAL, purge)
    purger.clock = reactor
    purger.setName("session-purge")
    return app, purger


__all__ = ["AUTH_SECRET_NAME", "build_web_app", "load_server_secret"]
