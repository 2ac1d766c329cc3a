"""Plain integer counters of the media path, read by the metrics collector at scrape time."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class MediaCounters:
    """Totals since start; increments are single attribute additions on the hot path."""

    ingress_packets: int = 0
    forwarded_packets: int = 0
    forwarded_bytes: int = 0
    gated_drops: int = 0
    rtx_received: int = 0
    unknown_payload_type: int = 0
    nack_received: int = 0
    nack_sent: int = 0
    nack_unanswered: int = 0
    retransmitted: int = 0
    pli_received: int = 0
    fir_received: int = 0
    pli_sent: int = 0
    pli_suppressed: int = 0
    remb_received: int = 0
    remb_sent: int = 0
    rr_sent: int = 0
    sr_sent: int = 0
    handler_errors: int = 0
    srtp_refused: int = 0
    srtp_failures: int = 0
    peers_failed: int = 0

    def as_dict(self) -> dict[str, int]:
        """Every counter by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
