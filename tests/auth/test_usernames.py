"""Tests for the user-name rule in mailiverse.auth.usernames: a table of cases and hypothesis properties."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailiverse.auth.usernames import (
    MAX_USERNAME_LENGTH,
    RESERVED_USERNAMES,
    InvalidUsername,
    canonical_username,
    is_reserved,
    signup_username,
)

RULE = re.compile(r"[a-z0-9](?:[a-z0-9_-]|\.(?!\.))*", re.ASCII)


@pytest.mark.parametrize(
    "text, canonical",
    [
        ("alice", "alice"),
        ("Alice", "alice"),
        ("ALICE.SMITH", "alice.smith"),
        ("a", "a"),
        ("7", "7"),
        ("j_doe-99", "j_doe-99"),
        ("a.b.c", "a.b.c"),
        ("a-", "a-"),
        ("x" * 64, "x" * 64),
    ],
)
def test_valid_names(text: str, canonical: str) -> None:
    """Names inside the rule are accepted and lower-cased."""
    assert canonical_username(text) == canonical


@pytest.mark.parametrize(
    "text, code",
    [
        ("", "username-empty"),
        ("x" * 65, "username-too-long"),
        ("al ice", "username-characters"),
        ("alice@example.org", "username-characters"),
        ("alice\n", "username-characters"),
        ("ålice", "username-characters"),
        ("\u212aelvin", "username-characters"),  # Kelvin sign lower-cases to ASCII 'k'
        ("\u0130nci", "username-characters"),  # dotted capital I
        ("ａlice", "username-characters"),  # fullwidth letter
        (".alice", "username-start"),
        ("_alice", "username-start"),
        ("-alice", "username-start"),
        ("al..ice", "username-dots"),
        ("alice.", "username-end"),
    ],
)
def test_invalid_names(text: str, code: str) -> None:
    """Names outside the rule raise InvalidUsername with a stable code and a readable message."""
    with pytest.raises(InvalidUsername) as caught:
        canonical_username(text)
    assert caught.value.code == code
    assert caught.value.message and str(caught.value) == caught.value.message


def test_non_text_is_refused() -> None:
    """Bytes or None are not user names."""
    with pytest.raises(InvalidUsername):
        canonical_username(b"alice")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name",
    [
        "postmaster",
        "Abuse",
        "ROOT",
        "admin",
        "mailer-daemon",
        "hostmaster",
        "webmaster",
    ],
)
def test_reserved_names_refused_at_signup(name: str) -> None:
    """Role and system names cannot be signed up for, in any case."""
    assert is_reserved(canonical_username(name))
    with pytest.raises(InvalidUsername) as caught:
        signup_username(name)
    assert caught.value.code == "username-reserved"


def test_reserved_names_are_still_valid_for_login() -> None:
    """A reserved name passes canonical_username, so login treats it like any unknown user."""
    assert canonical_username("Postmaster") == "postmaster"


def test_reserved_list_obeys_the_rule() -> None:
    """Every reserved name is itself canonical, so the check can match it."""
    for name in RESERVED_USERNAMES:
        assert canonical_username(name) == name


def test_ordinary_signup() -> None:
    """An ordinary name signs up in its canonical form."""
    assert signup_username("Bob.Jones") == "bob.jones"


valid_names = st.from_regex(RULE, fullmatch=True).filter(
    lambda name: len(name) <= MAX_USERNAME_LENGTH and not name.endswith(".")
)


@given(valid_names)
def test_valid_names_are_fixed_points(name: str) -> None:
    """Every name inside the rule is its own canonical form."""
    assert canonical_username(name) == name


@given(valid_names)
def test_case_is_ignored(name: str) -> None:
    """Upper-casing a valid name gives the same canonical name."""
    assert canonical_username(name.upper()) == name


@given(st.text(max_size=80))
def test_any_text_is_accepted_only_into_the_rule(text: str) -> None:
    """For any text, the result is either InvalidUsername or a name inside the rule, never anything else."""
    try:
        name = canonical_username(text)
    except InvalidUsername:
        return
    assert RULE.fullmatch(name) and len(name) <= MAX_USERNAME_LENGTH and not name.endswith(".")
    assert name.isascii() and canonical_username(name) == name
