"""The dependency rules: minimums that exclude known CVEs, an exact hashed lock covering setup.cfg, a matching venv."""

from __future__ import annotations

import configparser
import importlib.metadata
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
SETUP_CFG = ROOT / "setup.cfg"
LOCK = ROOT / "requirements.lock"
CONSTRAINTS = ROOT / "constraints.txt"
EXTRAS = ("test", "bench")

# (name, the lowest release with the fix, the last release without it, the advisory)
CVE_MINIMUMS = [
    ("idna", "3.7", "3.6", "CVE-2024-3651"),
    ("cryptography", "42.0.4", "42.0.3", "CVE-2024-26130"),
    ("cryptography", "46.0.5", "46.0.4", "CVE-2026-26007"),
    ("cryptography", "46.0.6", "46.0.5", "CVE-2026-34073"),
    ("pyopenssl", "26.0", "25.3.0", "CVE-2026-27459"),
    ("pynacl", "1.6.2", "1.6.1", "CVE-2025-69277"),
]
# Werkzeug comes in through klein only; constraints.txt holds its floor.
WERKZEUG_MINIMUM = ("3.1.6", "3.1.5", "CVE-2026-27199")

_HASH_OPTION = re.compile(r"\s--hash=\S+")


def _requirement_lines(text: str) -> list[str]:
    """Requirement lines of a setup.cfg value or a requirements file: comments, blanks and options dropped."""
    joined = re.sub(r"\\\n", " ", text)
    lines = []
    for raw in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def _setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(SETUP_CFG, encoding="utf-8")
    return parser


def _install_requires() -> list[Requirement]:
    return [Requirement(line) for line in _requirement_lines(_setup_cfg()["options"]["install_requires"])]


def _declared() -> list[Requirement]:
    """install_requires and the test and bench extras: everything `make install` installs."""
    extras = _setup_cfg()["options.extras_require"]
    declared = _install_requires()
    for extra in EXTRAS:
        declared += [Requirement(line) for line in _requirement_lines(extras[extra])]
    return [req for req in declared if req.marker is None or req.marker.evaluate()]


def _lock_entries() -> list[tuple[Requirement, int]]:
    """Each requirement in the lock with how many hashes it carries."""
    assert LOCK.is_file(), f"{LOCK.name} is missing: run `make lock` (docs/dependencies.md)"
    entries = []
    for line in _requirement_lines(LOCK.read_text(encoding="utf-8")):
        hashes = len(_HASH_OPTION.findall(" " + line))
        entries.append((Requirement(_HASH_OPTION.sub("", " " + line).strip()), hashes))
    return entries


def _pins() -> dict[NormalizedName, Version]:
    pins: dict[NormalizedName, Version] = {}
    for req, _ in _lock_entries():
        if req.marker is not None and not req.marker.evaluate():
            continue
        (spec,) = req.specifier
        assert spec.operator == "==", f"{req} in {LOCK.name} is not an exact pin"
        pins[canonicalize_name(req.name)] = Version(spec.version)
    return pins


def _lower_bound(req: Requirement) -> Version | None:
    floors = [Version(spec.version) for spec in req.specifier if spec.operator in (">=", "~=", "==")]
    floors += [Version(spec.version) for spec in req.specifier if spec.operator == ">"]
    return max(floors, default=None)


def _by_name(requirements: list[Requirement]) -> dict[NormalizedName, Requirement]:
    return {canonicalize_name(req.name): req for req in requirements}


@pytest.mark.parametrize(("name", "fixed", "vulnerable", "advisory"), CVE_MINIMUMS, ids=[m[3] for m in CVE_MINIMUMS])
def test_minimums_exclude_the_known_cves(name: str, fixed: str, vulnerable: str, advisory: str) -> None:
    """setup.cfg's install_requires admits no release of idna, cryptography, pyOpenSSL or PyNaCl before its CVE fix."""
    req = _by_name(_install_requires()).get(canonicalize_name(name))
    assert req is not None, f"{name} is not in install_requires"
    floor = _lower_bound(req)
    assert floor is not None and floor >= Version(fixed), f"{req}: needs >= {fixed} ({advisory})"
    assert not req.specifier.contains(vulnerable, prereleases=True), f"{req} admits {vulnerable} ({advisory})"


def test_werkzeug_has_a_cve_floor_as_a_constraint() -> None:
    """constraints.txt holds Werkzeug (klein's dependency, not ours) to a release after its last known CVE."""
    fixed, vulnerable, advisory = WERKZEUG_MINIMUM
    constraints = _by_name([Requirement(line) for line in _requirement_lines(CONSTRAINTS.read_text(encoding="utf-8"))])
    werkzeug = constraints.get(canonicalize_name("werkzeug"))
    assert werkzeug is not None, f"{CONSTRAINTS.name} does not constrain Werkzeug"
    floor = _lower_bound(werkzeug)
    assert floor is not None and floor >= Version(fixed), f"{werkzeug}: needs >= {fixed} ({advisory})"
    assert not werkzeug.specifier.contains(vulnerable, prereleases=True)


def test_lock_pins_every_requirement_exactly_with_hashes() -> None:
    """Every line of requirements.lock is name==version with at least one sha256 hash (pip --require-hashes)."""
    entries = _lock_entries()
    assert entries, f"{LOCK.name} pins nothing"
    for req, hashes in entries:
        assert [spec.operator for spec in req.specifier] == ["=="], f"{req} is not an exact pin"
        assert not req.extras, f"{req}: a lock line carries no extras (it doubles as a constraints file)"
        assert hashes > 0, f"{req} has no --hash"


def test_lock_covers_setup_cfg_and_satisfies_its_specifiers() -> None:
    """The lock pins every requirement of install_requires, test and bench, each within setup.cfg's range."""
    pins = _pins()
    for req in _declared():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} (setup.cfg) is not in {LOCK.name}: run `make lock`"
        assert req.specifier.contains(pins[name], prereleases=True), f"{LOCK.name} pins {name}=={pins[name]}: {req}"


def test_lock_pins_werkzeug_within_the_constraints() -> None:
    """Werkzeug is pinned in the lock, and every pin satisfies constraints.txt."""
    pins = _pins()
    assert canonicalize_name("werkzeug") in pins, f"Werkzeug is not pinned in {LOCK.name}"
    for line in _requirement_lines(CONSTRAINTS.read_text(encoding="utf-8")):
        constraint = Requirement(line)
        name = canonicalize_name(constraint.name)
        if name in pins:
            assert constraint.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]}: {constraint}"


def test_installed_runtime_packages_match_the_lock() -> None:
    """The venv runs exactly the locked runtime packages: a stale venv (make install not rerun) fails here."""
    pins = _pins()
    runtime = [canonicalize_name(req.name) for req in _install_requires()] + [canonicalize_name("werkzeug")]
    stale = {}
    for name in runtime:
        try:
            installed = Version(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            stale[name] = "not installed"
            continue
        if installed != pins.get(name):
            stale[name] = f"{installed} installed, {pins.get(name)} locked"
    assert not stale, f"the venv does not match {LOCK.name} (`make install`; after a hand-made change, "
    f"`rm .venv/.stamp-install` first): {stale}"
