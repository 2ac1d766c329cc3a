"""What arrives at a media port, sorted before anything parses it (pure, standard library only).

A media port is open to anyone who can reach it, before and after ICE and DTLS: whatever does
not look like the protocol its first byte announces (RFC 7983's demultiplexing) is dropped
here, counted by kind, and never logged (one log line per datagram would let anyone fill the
disk). Datagrams that pass go on to aioice, aiortc or the native data plane, which check the
rest (STUN attributes, DTLS records, SRTP authentication).
"""

from __future__ import annotations

from typing import Final

STUN_MAGIC: Final = b"\x21\x12\xa4\x42"
STUN_HEADER: Final = 20
DTLS_RECORD_HEADER: Final = 13
RTP_HEADER: Final = 12
RTCP_HEADER: Final = 8
DROP_KINDS: Final = ("empty", "stun", "dtls", "rtp", "rtcp", "garbage")
"""Every kind a dropped datagram is counted as (``fortrolig_media_dropped_datagrams_total``)."""


def _stun_ok(data: bytes) -> bool:
    length = int.from_bytes(data[2:4], "big") if len(data) >= 4 else -1
    return (
        len(data) >= STUN_HEADER
        and data[4:8] == STUN_MAGIC
        and length % 4 == 0
        and length + STUN_HEADER == len(data)
    )


def _dtls_ok(data: bytes) -> bool:
    # Content type 20..63 (the first byte), version 0xFEFD/0xFEFF, then epoch, sequence number
    # and the first record's length, which must fit in the datagram.
    if len(data) < DTLS_RECORD_HEADER or data[1] != 0xFE:
        return False
    return int.from_bytes(data[11:13], "big") + DTLS_RECORD_HEADER <= len(data)


def is_rtcp_type(data: bytes) -> bool:
    """RFC 5761: payload types 192..223 in the second byte are RTCP (aiortc's test too)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


def drop_kind(data: bytes) -> str | None:
    """The kind a datagram is dropped as, or None when it may be what its first byte says."""
    if not data:
        return "empty"
    first = data[0]
    if first <= 3:
        return None if _stun_ok(data) else "stun"
    if 20 <= first <= 63:
        return None if _dtls_ok(data) else "dtls"
    if 128 <= first <= 191:
        if is_rtcp_type(data):
            return None if len(data) >= RTCP_HEADER else "rtcp"
        return None if len(data) >= RTP_HEADER else "rtp"
    return "garbage"  # ZRTP, TURN channels (never ours: the SFU does not use TURN), the rest
