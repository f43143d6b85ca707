"""The one user-name rule: what a mailiverse account name may be, and its canonical form.

An account name is the local part of the user's address (``alice`` in ``alice@example.org``)
and the identity used inside SRP. The rule:

* 1 to 64 characters (the SMTP limit for a local part, RFC 5321 §4.5.3.1.1);
* only ASCII letters, digits, ``.``, ``_`` and ``-``;
* starts with a letter or a digit;
* no two consecutive dots, and no dot at the end (a local part must be a dot-atom, RFC 5321 §4.1.2);
* case-insensitive: the canonical form is the lower-case one, and that is what is stored,
  compared and fed to SRP;
* some names are reserved for the system and role addresses and are refused at sign-up
  (they can still be typed at login, where they simply never match an account).

The check runs on the raw text *before* lower-casing, because ``str.lower`` maps some
non-ASCII characters (the Kelvin sign, dotted capital I) onto ASCII letters.
"""

from __future__ import annotations

import re

#: The longest account name, in characters.
MAX_USERNAME_LENGTH = 64

_ALLOWED = re.compile(r"[A-Za-z0-9._-]+", re.ASCII)

#: Names nobody may sign up with: RFC 2142 role mailboxes, system accounts, and the
#: accounts of the original Mailiverse deployment.
RESERVED_USERNAMES: frozenset[str] = frozenset(
    {
        "abuse",
        "admin",
        "administrator",
        "daemon",
        "ftp",
        "hostmaster",
        "info",
        "list",
        "list-request",
        "mail",
        "mail-key",
        "mail-user",
        "mail-auth",
        "mailer-daemon",
        "mailiverse",
        "marketing",
        "news",
        "noc",
        "nobody",
        "no-reply",
        "noreply",
        "operator",
        "postmaster",
        "root",
        "sales",
        "security",
        "support",
        "system",
        "usenet",
        "uucp",
        "webmaster",
        "www",
        "www-data",
    }
)


class InvalidUsername(ValueError):
    """A user name breaks the rule; ``code`` is a stable identifier for API errors."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def canonical_username(text: str) -> str:
    """Return the canonical (lower-case) form of ``text``, or raise ``InvalidUsername``."""
    if not isinstance(text, str):
        raise InvalidUsername("username-type", "a user name must be text")
    if not text:
        raise InvalidUsername("username-empty", "a user name must not be empty")
    if len(text) > MAX_USERNAME_LENGTH:
        raise InvalidUsername(
            "username-too-long",
            f"a user name must be at most {MAX_USERNAME_LENGTH} characters",
        )
    if _ALLOWED.fullmatch(text) is None:
        raise InvalidUsername(
            "username-characters",
            "a user name may contain only ASCII letters, digits, '.', '_' and '-'",
        )
    if not text[0].isalnum():
        raise InvalidUsername("username-start", "a user name must start with a letter or a digit")
    if ".." in text:
        raise InvalidUsername("username-dots", "a user name must not contain two dots in a row")
    if text.endswith("."):
        raise InvalidUsername("username-end", "a user name must not end with a dot")
    return text.lower()


def is_reserved(name: str) -> bool:
    """Tell whether the canonical ``name`` is kept back from sign-up."""
    return name in RESERVED_USERNAMES


def signup_username(text: str) -> str:
    """Return the canonical name for a new account, refusing reserved names too."""
    name = canonical_username(text)
    if is_reserved(name):
        raise InvalidUsername("username-reserved", "this user name is reserved; please choose another")
    return name
