"""Measure the server's CPU time for one SRP-6a login (challenge plus check), for real and unknown users.

Run from the repository root: ``.venv/bin/python -m bench.srp_login [rounds]``.
Client work is done outside the timed parts.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from mailiverse.auth.srp6a import ClientLogin, begin_login, create_verifier


def measure(rounds: int) -> dict[str, list[float]]:
    """Return per-round server seconds for the two halves of a login, real and decoy."""
    secret = os.urandom(32)
    key = os.urandom(32)
    stored = create_verifier("bench", key)
    times: dict[str, list[float]] = {
        "start (real)": [],
        "verify (real)": [],
        "start (unknown)": [],
        "total (real)": [],
    }
    for _ in range(rounds):
        login = ClientLogin("bench", key)
        began = time.perf_counter()
        challenge = begin_login(secret, "bench", stored)
        started = time.perf_counter()
        proof = login.process_challenge(challenge.salt, challenge.B)
        checking = time.perf_counter()
        login.verify_session(challenge.verify(login.A, proof))
        done = time.perf_counter()
        times["start (real)"].append(started - began)
        times["verify (real)"].append(done - checking)
        times["total (real)"].append((started - began) + (done - checking))
        began = time.perf_counter()
        begin_login(secret, "nobody", None)
        times["start (unknown)"].append(time.perf_counter() - began)
    return times


def main(argv: list[str]) -> None:
    """Print median and 90th-percentile milliseconds per step."""
    rounds = int(argv[1]) if len(argv) > 1 else 50
    for name, samples in measure(rounds).items():
        samples.sort()
        p90 = samples[min(len(samples) - 1, int(len(samples) * 0.9))]
        print(f"{name:16} median {statistics.median(samples) * 1000:7.2f} ms   p90 {p90 * 1000:7.2f} ms")


if __name__ == "__main__":
    main(sys.argv)
