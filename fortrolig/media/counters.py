"""Counters of the media path, read by the metrics collector at scrape time."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ._fastpath import Counters as NativeCounters
from ._fastpath import Pump

# Maintained by the native data plane for every packet (fortrolig/media/native/).
NATIVE_COUNTERS = (
    "ingress_packets",
    "forwarded_packets",
    "forwarded_bytes",
    "gated_drops",
    "rtx_received",
    "rtx_discarded",
    "unknown_payload_type",
    "srtp_failures",
    "retransmitted",
    "nack_unanswered",
    "nack_given_up",
    "malformed",
    "send_errors",
    "native_datagrams",
    "rtcp_received",
    "nack_received",
    "pli_received",
    "fir_received",
    "remb_received",
)


@dataclass
class MediaCounters:
    """Totals since start. Python keeps the rare events (feedback, failures) as plain integer
    fields; per-packet totals live in ``native``, shared with every native object of the SFU."""

    nack_sent: int = 0
    pli_sent: int = 0
    pli_suppressed: int = 0
    remb_sent: int = 0
    rr_sent: int = 0
    sr_sent: int = 0
    handler_errors: int = 0
    srtp_refused: int = 0
    peers_failed: int = 0
    # Datagrams dropped at a media port before any parser, by kind (media/datagrams.py).
    dropped_empty: int = 0
    dropped_stun: int = 0
    dropped_dtls: int = 0
    dropped_rtp: int = 0
    dropped_rtcp: int = 0
    dropped_garbage: int = 0
    native: NativeCounters = field(default_factory=NativeCounters, repr=False, compare=False)
    pump: Pump | None = field(default=None, repr=False, compare=False)

    def count_drop(self, kind: str) -> None:
        """One datagram dropped as ``kind`` (one of ``datagrams.DROP_KINDS``)."""
        name = "dropped_" + kind
        setattr(self, name, getattr(self, name) + 1)

    def as_dict(self) -> dict[str, int]:
        """Every counter by name."""
        out = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("native", "pump")
        }
        for name in NATIVE_COUNTERS:
            out[name] = int(getattr(self.native, name))
        # The I/O thread's epoll wake-ups, and events it had to drop (queue full): 0 without it.
        out["io_thread_wakeups"] = self.pump.wakeups if self.pump is not None else 0
        out["io_thread_dropped_events"] = self.pump.dropped_events if self.pump is not None else 0
        return out
