"""Peak RSS growth of a fresh appliance while it receives, encrypts and commits one large message."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench import procmem, servers, smtpload
from bench.messages import make_message

_SETTLE_S = 1.0


def measure_one(workdir: Path, size: int, timeout_s: float = 300) -> dict[str, Any]:
    """Start an appliance, send one message of ``size`` bytes over STARTTLS, report RSS before and at peak."""
    server = servers.start_appliance(workdir)
    try:
        message = make_message(size)
        # Let start-up garbage settle, so the baseline is the idle server.
        time.sleep(_SETTLE_S)
        before = procmem.rss_bytes(server.pid)
        exact = procmem.reset_peak(server.pid)
        load = smtpload.Load(
            "127.0.0.1",
            server.port,
            True,
            message,
            connections=1,
            duration_s=timeout_s,
            max_messages=1,
            reply_timeout_s=timeout_s,
        )
        samples = smtpload.run(load)
        if len(samples.latencies) != 1:
            raise RuntimeError(f"the {size}-byte message was not accepted: {samples.error_kinds}")
        peak = procmem.peak_rss_bytes(server.pid)
        return {
            "size": size,
            "rss_before_mb": before / 1e6,
            "peak_rss_mb": peak / 1e6,
            "growth_mb": (peak - before) / 1e6,
            "growth_ratio": (peak - before) / size,
            "latency_s": samples.latencies[0],
            # Without clear_refs the peak includes start-up, so growth is an upper bound.
            "peak_reset": exact,
        }
    finally:
        server.stop()


def run(workdir: Path, sizes: list[int]) -> list[dict[str, Any]]:
    """One fresh appliance per size, so one message's garbage cannot hide another's growth."""
    return [measure_one(workdir / f"memory-{size}", size) for size in sizes]
