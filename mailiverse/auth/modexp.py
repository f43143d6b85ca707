"""Modular exponentiation for SRP: GMP's side-channel-hardened ``mpz_powm_sec`` when gmpy2 is installed.

A 2048-bit exponentiation with a 256-bit exponent takes about 2 ms in CPython's ``pow`` and
about 0.4 ms in ``gmpy2.powmod_sec`` (measured on the benchmark machine, docs/performance.md);
a login needs four of them. ``powmod_sec`` also runs in time independent of the exponent's
value, which CPython's ``pow`` does not promise. gmpy2 is a declared dependency; the plain
``pow`` path remains so that a platform without a gmpy2 build still runs, only slower.
"""

from __future__ import annotations

try:
    import gmpy2
except ImportError:  # pragma: no cover - exercised only where gmpy2 cannot be installed
    gmpy2 = None

#: True when exponentiations run in GMP.
ACCELERATED = gmpy2 is not None


def powmod(base: int, exponent: int, modulus: int) -> int:
    """Return ``base ** exponent % modulus`` for a non-negative exponent and an odd modulus > 1."""
    if exponent < 0 or modulus < 3 or not modulus & 1:
        raise ValueError("powmod needs a non-negative exponent and an odd modulus > 1")
    if gmpy2 is None or exponent == 0:
        return pow(base, exponent, modulus)
    return int(gmpy2.powmod_sec(base % modulus, exponent, modulus))
