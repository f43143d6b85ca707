"""The one rule for domains and plain addresses that every part of the appliance applies."""

from __future__ import annotations

import re

import idna

#: Longest address accepted (RFC 5321 path limit).
MAX_ADDRESS_LENGTH = 254
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_ADDRESS_UNSAFE = frozenset('<>,;()[]\\"')


class InvalidDomain(ValueError):
    """A domain is not a usable host name; the message says why."""


class InvalidAddress(ValueError):
    """An address is not a plain ``local@domain``."""


def normalise_domain(name: str) -> str:
    """The lower-case A-label form of ``name`` (IDNA 2008 with UTS 46, no trailing dot); InvalidDomain otherwise."""
    text = name.strip().rstrip(".")
    if not text:
        raise InvalidDomain("not a valid domain name (it is empty)")
    try:
        ascii_name = idna.encode(text, uts46=True).decode("ascii").lower()
    except idna.IDNAError as e:
        raise InvalidDomain(f"not a valid domain name ({e})") from None
    if not _HOSTNAME.match(ascii_name):
        raise InvalidDomain("not a valid domain name; use a name like example.org")
    return ascii_name


def split_address(address: str) -> tuple[str, str] | None:
    """Split ``local@domain`` (surrounding ``<>`` allowed); ``None`` when it is not a plain address."""
    local, sep, domain = address.strip().strip("<>").rpartition("@")
    if not sep or not local or not domain:
        return None
    return local, domain


def normalise_address(text: object) -> str:
    """``local@domain`` with a lower-case domain: ASCII, no spaces, quotes or brackets; InvalidAddress otherwise."""
    if not isinstance(text, str):
        raise InvalidAddress("an address must be a string")
    address = text.strip()
    local, at, domain = address.rpartition("@")
    if (
        not at
        or not local
        or not domain
        or len(address) > MAX_ADDRESS_LENGTH
        or not address.isascii()
        or any(c.isspace() or c in _ADDRESS_UNSAFE or ord(c) < 32 for c in address)
    ):
        raise InvalidAddress("not a plain address like name@example.org")
    return f"{local}@{domain.lower()}"


#: Characters that look alike in an address, and the one each stands for when aliases are compared.
LOOK_ALIKES = (("i", "1"), ("l", "1"), ("o", "0"), ("w", "v"))
_LOOK_ALIKE_TABLE = str.maketrans(dict(LOOK_ALIKES))


def canonical_local(local: str) -> str:
    """A local part as aliases are compared (the alias directory, the clients' "via" filter): lower case,
    1/i/l as 1, 0/o as 0, v/w as v."""
    return local.lower().translate(_LOOK_ALIKE_TABLE)


__all__ = [
    "LOOK_ALIKES",
    "MAX_ADDRESS_LENGTH",
    "canonical_local",
    "InvalidAddress",
    "InvalidDomain",
    "normalise_address",
    "normalise_domain",
    "split_address",
]
