"""Pure helpers on serialized RTP packets and sequence numbers (no aiortc objects)."""

from __future__ import annotations

import struct

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32


def seq_newer(a: int, b: int) -> bool:
    """True if 16-bit sequence number ``a`` is after ``b`` (RFC 3550 wrap-around)."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000


def header_length(packet: bytes) -> int:
    """Length of the fixed header, CSRCs and header extension; -1 if the packet is malformed."""
    n = len(packet)
    if n < 12 or (packet[0] >> 6) != 2:
        return -1
    length = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:
        if n < length + 4:
            return -1
        words = struct.unpack_from("!H", packet, length + 2)[0]
        length += 4 + 4 * words
    return length if length <= n else -1


def wrap_rtx_bytes(packet: bytes, rtx_pt: int, rtx_seq: int, rtx_ssrc: int) -> bytes | None:
    """Build an RFC 4588 retransmission of ``packet`` on the RTX stream.

    The RTX payload is the original sequence number followed by the original payload; padding
    is dropped. Returns None for a malformed packet.
    """
    hl = header_length(packet)
    if hl < 0:
        return None
    end = len(packet)
    if packet[0] & 0x20:  # padding: the last byte says how many bytes to drop
        pad = packet[-1]
        if pad == 0 or hl + pad > end:
            return None
        end -= pad
    header = bytearray(packet[:hl])
    header[0] &= ~0x20 & 0xFF
    header[1] = (packet[1] & 0x80) | (rtx_pt & 0x7F)
    struct.pack_into("!HI", header, 2, rtx_seq & 0xFFFF, struct.unpack_from("!I", packet, 4)[0])
    struct.pack_into("!I", header, 8, rtx_ssrc)
    return bytes(header) + packet[2:4] + packet[hl:end]


def packet_seq(packet: bytes) -> int:
    """Sequence number of a serialized RTP packet (caller checked the length)."""
    return (packet[2] << 8) | packet[3]
