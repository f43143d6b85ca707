"""Authentication for modern accounts: user-name rule, SRP-6a login, pending logins, sessions, rate limits.

This package is the library the web layer builds on; it has no routes. See ``docs/auth.md``
for the login flow and what the server stores. The legacy Mailiverse SRP variant lives in
``mailiverse.compat``, not here.
"""

from mailiverse.auth.clock import TimeSource, as_clock
from mailiverse.auth.keys import MIN_SERVER_SECRET_BYTES, check_server_secret
from mailiverse.auth.pending import PendingLogins
from mailiverse.auth.ratelimit import (
    Budget,
    Decision,
    LoginThrottle,
    TokenBucketLimiter,
    address_key,
)
from mailiverse.auth.sessions import (
    SESSION_COOKIE,
    ISessionStore,
    MemorySessionStore,
    NewSession,
    SessionManager,
    SessionRecord,
    clear_session_cookie,
    new_token,
    session_cookie,
    token_hash,
)
from mailiverse.auth.srp6a import (
    SRP_GROUP,
    AuthFailed,
    ClientLogin,
    LoginChallenge,
    begin_login,
    client_login,
    create_verifier,
    decoy_credentials,
    start_login,
)
from mailiverse.auth.usernames import (
    RESERVED_USERNAMES,
    InvalidUsername,
    canonical_username,
    is_reserved,
    signup_username,
)

__all__ = [
    "MIN_SERVER_SECRET_BYTES",
    "RESERVED_USERNAMES",
    "SESSION_COOKIE",
    "SRP_GROUP",
    "AuthFailed",
    "Budget",
    "ClientLogin",
    "Decision",
    "ISessionStore",
    "InvalidUsername",
    "LoginChallenge",
    "LoginThrottle",
    "MemorySessionStore",
    "NewSession",
    "PendingLogins",
    "SessionManager",
    "SessionRecord",
    "TimeSource",
    "TokenBucketLimiter",
    "address_key",
    "as_clock",
    "begin_login",
    "canonical_username",
    "check_server_secret",
    "clear_session_cookie",
    "client_login",
    "create_verifier",
    "decoy_credentials",
    "is_reserved",
    "new_token",
    "session_cookie",
    "signup_username",
    "start_login",
    "token_hash",
]
