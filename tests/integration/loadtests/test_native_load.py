"""`fortrolig-load --engine native` against a real node: its counts equal the node's /metrics.

The native participant (fortrolig/loadtests/native/) sends and counts every packet in C. At the
scheduled end every sender stops at the same instant and the counts are read 0.4 s later, so on
loopback nothing is in flight: what the participants sent is what the node took in, and what
they received is what it forwarded, to the packet and to the byte.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from fortrolig.loadtests import native
from tests.conftest import Server
from tests.integration.loadtests.test_load import load, read_report

pytestmark = pytest.mark.skipif(not native.available(), reason="the C extension is not built")

COUNTERS = (
    "fortrolig_media_ingress_packets_total",
    "fortrolig_media_forwarded_packets_total",
    "fortrolig_media_forwarded_bytes_total",
    "fortrolig_media_retransmitted_total",
    "fortrolig_media_srtp_refused_total",
)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clip-cache")


def _pairs(participants: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(sender, receiver) for both directions of every room of two."""
    rooms: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in participants:
        rooms[p["room_id"]].append(p)
    out = []
    for members in rooms.values():
        assert len(members) == 2
        a, b = members
        out += [(a, b), (b, a)]
    return out


def _assert_frames_match(sender: dict[str, Any], receiver: dict[str, Any]) -> None:
    """The receiver got every frame from one of the sender's keyframes on (the node's keyframe
    gate opens a new subscriber there), and every packet of those frames."""
    frames = receiver["video_frames"]
    assert frames == receiver["video_ts_frames"]  # marker bits and timestamp changes agree
    starts = {
        (sender["video_frames_sent"] - f, sender["video_packets_sent"] - n)
        for f, n in sender["keyframes_sent"]
    }
    assert (frames, receiver["video_packets_received"]) in starts, (frames, starts)
    assert receiver["audio_packets"] <= sender["audio_packets_sent"]


@pytest.mark.timeout(60)
def test_native_counts_match_server_metrics_exactly(
    server: Server, tmp_path: Path, cache_dir: Path
) -> None:
    before = {name: server.metric(name) for name in COUNTERS}
    joins0 = server.metric("fortrolig_joins_total")
    run = load(
        server,
        tmp_path / "r",
        cache_dir,
        "--engine",
        "native",
        "--rooms",
        "2",
        "--participants-per-room",
        "2",
        "--duration",
        "8s",
        "--max-loss",
        "0%",
        "--max-join-p95",
        "5s",
        "--max-freezes",
        "0",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    report = read_report(tmp_path / "r")
    delta = {name: server.metric(name) - before[name] for name in COUNTERS}
    s = report["summary"]
    assert report["load_generator"]["engine"] == "native"
    assert s["participants"] == s["joined"] == s["reached_media"] == 4
    assert server.metric("fortrolig_joins_total") - joins0 == 4

    # Exactly: packets sent = taken in, packets and bytes received = forwarded.
    assert s["packets_sent"] > 0
    assert s["packets_sent"] == delta["fortrolig_media_ingress_packets_total"]
    assert s["packets_received"] == delta["fortrolig_media_forwarded_packets_total"]
    assert s["bytes_received"] == delta["fortrolig_media_forwarded_bytes_total"]
    assert delta["fortrolig_media_retransmitted_total"] == 0
    assert delta["fortrolig_media_srtp_refused_total"] == 0
    # ... and the tool's own scrape says the same.
    tool = report["server"]["delta"]
    assert tool["fortrolig_media_forwarded_packets_total"] == s["packets_received"]
    assert tool["fortrolig_media_ingress_packets_total"] == s["packets_sent"]

    for sender, receiver in _pairs(report["participants"]):
        _assert_frames_match(sender, receiver)
    for p in report["participants"]:
        assert p["engine"] == "native"
        assert p["remote_tracks"] == 2
        assert p["video_frames"] > 7 * 15 * 0.9
        assert p["packets_lost"] == 0
        assert p["rtt_ms"] is not None  # the node's receiver reports answered our SRs
        bad = p["receive_counters"]
        for kind in ("malformed", "truncated", "garbage", "srtp_failures", "unknown_pt"):
            assert bad[kind] == 0, (kind, bad)
    assert s["freezes"] == 0
    assert report["load_generator"]["cpu_pct_per_participant"] > 0


def test_native_refuses_decode_sample(tmp_path: Path, server: Server, cache_dir: Path) -> None:
    run = load(server, tmp_path / "r", cache_dir, "--engine", "native", "--decode-sample")
    assert run.returncode == 2
    assert "decode_sample needs engine python" in run.stderr
