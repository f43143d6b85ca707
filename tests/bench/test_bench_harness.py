"""Smoke tests of the benchmark harness itself: a tiny profile runs end to end and reports real figures."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from bench import peer_mta, procmem, report, smtpload
from bench.__main__ import PROFILES, run_profile
from bench.messages import make_message


@pytest.mark.parametrize("size", [5_000, 75_000, 1_000_000])
def test_messages_have_the_exact_size_and_are_safe_to_send_raw(size: int) -> None:
    """Bench messages are exactly the asked size, CRLF-only, end in CRLF and need no dot-stuffing."""
    message = make_message(size)
    assert len(message) == size
    assert message.endswith(b"\r\n")
    assert b"\r\n." not in message
    assert b"\n" not in message.replace(b"\r\n", b"") and b"\r" not in message.replace(b"\r\n", b"")


def test_percentile_uses_nearest_rank() -> None:
    """p50 and p99 of 1..100 are 50 and 99; an empty list gives NaN."""
    values = [float(v) for v in range(1, 101)]
    assert smtpload.percentile(values, 50) == 50.0
    assert smtpload.percentile(values, 99) == 99.0
    assert smtpload.percentile([], 50) != smtpload.percentile([], 50)


def test_proc_readers_see_this_process() -> None:
    """RSS, peak RSS and CPU time of the current process are positive and consistent."""
    pid = os.getpid()
    assert procmem.rss_bytes(pid) > 0
    assert procmem.peak_rss_bytes(pid) >= procmem.rss_bytes(pid) - 4096 * 64
    assert procmem.cpu_seconds(pid) > 0


def test_cpu_split_counts_live_and_ended_children_apart_from_the_main_process() -> None:
    """A child's CPU counts as the workers', a child that ended and was reaped too; none of it as the main's."""
    import subprocess
    import sys

    burn = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
    pid = os.getpid()
    live = subprocess.Popen([sys.executable, "-c", burn + "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    ended = subprocess.Popen([sys.executable, "-c", burn])
    try:
        before = procmem.cpu_snapshot(pid)
        assert {live.pid, ended.pid} <= set(procmem.child_pids(pid))
        ended.wait(30)
        deadline = time.monotonic() + 30
        while procmem.cpu_snapshot(pid).children_s.get(live.pid, 0.0) < 0.3 and time.monotonic() < deadline:
            time.sleep(0.05)
        after = procmem.cpu_snapshot(pid)
    finally:
        assert live.stdin is not None
        live.stdin.close()
        live.wait(30)
    main, children = procmem.cpu_split(before, after)
    assert live.pid in after.children_s and ended.pid not in after.children_s
    # Both children burn 0.3 s; what they had used before the first snapshot is not counted.
    spent_before = sum(before.children_s.values())
    assert children >= 0.6 - spent_before - 0.05, (children, spent_before)
    assert 0 <= main < children


def test_document_section_is_replaced_not_duplicated(tmp_path: Path) -> None:
    """Updating a profile's section twice keeps one copy and leaves other text alone."""
    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\nhand-written findings\n")
    report.update_document(doc, "quick", "first\n")
    report.update_document(doc, "quick", "second\n")
    text = doc.read_text()
    assert "hand-written findings" in text
    assert text.count("<!-- bench:quick:begin -->") == 1
    assert "second" in text and "first" not in text


@pytest.mark.integration
def test_tiny_profile_runs_end_to_end(tmp_path: Path) -> None:
    """The tiny profile drives the real twistd and a baseline, and writes JSON, plots and a markdown table."""
    pytest.importorskip("matplotlib", reason="plots need the bench dependency matplotlib")
    results = run_profile(
        PROFILES["tiny"],
        results_dir=tmp_path / "results",
        document=tmp_path / "docs" / "performance.md",
        plots_dir=tmp_path / "docs" / "performance",
        log=lambda _: None,
    )
    points = results["ingest"]["points"]
    servers = {p["server"] for p in points}
    assert servers == {"appliance", "twisted-discard"}
    for point in points:
        # On a starved machine the short window may see no completion, but the run as a whole must.
        assert point["messages_total"] > 0, point
        assert point["errors"] == 0, point
        if point["messages"]:
            assert 0 < point["p50_ms"] <= point["p99_ms"]
        assert point["server_peak_rss_mb"] > 1
        split = point["server_cpu_main_s"] + point["server_cpu_workers_s"]
        assert abs(point["server_cpu_s"] - split) <= 0.002, point
    appliance = [p for p in points if p["server"] == "appliance"]
    # The appliance's delivery workers are child processes: their CPU is measured, and the baseline has none.
    assert sum(p["server_cpu_workers_s"] for p in appliance) > 0, appliance
    assert all(p["server_cpu_workers_s"] == 0 for p in points if p["server"] != "appliance")
    assert all(check["ok"] for check in results["ingest"]["store_checks"])
    saved = json.loads((tmp_path / "results" / f"tiny-{results['date']}.json").read_text())
    assert saved["ingest"]["points"] == json.loads(json.dumps(points))
    assert results["breakdown"][0]["median_ms"]["commit"] > 0
    assert results["listing"][0]["newest50_inbox"]["p50_ms"] > 0
    assert results["login"]["total_median_ms"] > 0
    text = (tmp_path / "docs" / "performance.md").read_text()
    assert "| 5 KB | 2 |" in text
    assert sorted(p.name for p in (tmp_path / "docs" / "performance").iterdir()) == [
        "tiny-breakdown.png",
        "tiny-ingest-p99.png",
        "tiny-ingest-throughput.png",
    ]


@pytest.mark.integration
@pytest.mark.skipif(peer_mta.unavailable() is not None, reason=f"peer: {peer_mta.unavailable()}")
def test_peer_drains_every_accepted_message_into_an_encrypted_maildir() -> None:
    """The Postfix and Dovecot peer stores every message it accepted, mail_crypt-encrypted, and reports CPU."""
    point = peer_mta.measure(make_message(5_000), 2, duration_s=0.5, warmup_s=0.2, reply_timeout_s=30)
    assert point["errors"] == 0, point
    assert point["messages_total"] > 0
    assert point["delivered"] == point["messages_total"]
    assert point["msgs_per_s"] > 0 and point["server_cpu_s"] > 0
    assert point["alive"]


@pytest.mark.integration
@pytest.mark.skipif(peer_mta.unavailable() is not None, reason=f"peer: {peer_mta.unavailable()}")
def test_peer_that_stores_plaintext_is_refused() -> None:
    """A mail in the peer's maildir without the mail_crypt header makes the check fail, so no figure is reported."""
    with peer_mta.Peer() as peer:
        samples = smtpload.run(
            smtpload.Load("127.0.0.1", peer.smtp_port, True, make_message(5_000), 1, duration_s=5, max_messages=1)
        )
        assert samples.summary()["messages_total"] == 1
        peer.wait_drained(1, timeout=60)
        assert peer.check_encrypted() == 1
        (peer.maildir / "new" / "planted.plaintext").write_bytes(make_message(5_000))
        with pytest.raises(peer_mta.PeerFailed, match="plaintext"):
            peer.check_encrypted()
    assert not peer.root.exists()
