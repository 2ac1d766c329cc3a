"""Seeds and mutations for fuzzing the media parsers with real Chromium traffic.

The seeds are the plaintext packets and SDP captured from Chromium (tests/fixtures/chromium/,
see its README). A mutation is a short list of operations chosen by a ``pick(low, high)``
function: hypothesis's ``data.draw(st.integers(low, high))`` in the unit tests (so failures
shrink), ``random.Random.randint`` in the live-call test (bounded, seeded, no hypothesis). The
operations aim at what has broken SFUs' parsers: bit flips, truncation, CSRC counts, the
padding bit and byte, extension headers and their length, RTCP length words and report counts,
and compound chaining.

Independent reference checks (RFC 3550 header arithmetic, written without the native code's
help) tell which mutants are still well formed.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "chromium"

Pick = Callable[[int, int], int]
"""``pick(low, high)``: an integer in [low, high], from hypothesis or from a seeded Random."""


@dataclass(frozen=True)
class Seed:
    """One captured packet and what the manifest says of it."""

    name: str
    kind: str  # vp8-key, vp8-delta, opus, rtx, rtx-padding; or the RTCP packet kinds
    data: bytes
    info: dict[str, Any]

    @property
    def pt(self) -> int:
        return self.data[1] & 0x7F


@cache
def manifest() -> dict[str, Any]:
    return dict(json.loads((FIXTURES / "manifest.json").read_text()))


@cache
def seeds(protocol: str) -> tuple[Seed, ...]:
    """Every captured packet of ``protocol`` ("rtp" or "rtcp"), in manifest order."""
    return tuple(
        Seed(f["file"], f["kind"], (FIXTURES / f["file"]).read_bytes(), f)
        for f in manifest()["files"]
        if f["protocol"] == protocol
    )


def sdp(name: str) -> str:
    """A captured SDP (``offer`` or ``answer``), CRLF line ends as sent."""
    return (FIXTURES / f"{name}.sdp").read_bytes().decode("ascii")


# -- reference checks ---------------------------------------------------------------------


@dataclass(frozen=True)
class RtpLayout:
    """Where a well-formed RTP packet's parts are (RFC 3550 5.1, RFC 8285)."""

    csrcs: bytes
    header_end: int  # after the CSRCs and the extension
    padding: int  # trailing padding bytes (0 without the P bit)


def rtp_layout(d: bytes) -> RtpLayout | None:
    """The packet's layout, or None when its header lies about its length."""
    if len(d) < 12 or d[0] >> 6 != 2:
        return None
    pos = 12 + 4 * (d[0] & 0x0F)
    if pos > len(d):
        return None
    csrcs = d[12:pos]
    if d[0] & 0x10:
        if pos + 4 > len(d):
            return None
        pos += 4 + 4 * struct.unpack_from("!H", d, pos + 2)[0]
        if pos > len(d):
            return None
    padding = 0
    if d[0] & 0x20:
        padding = d[-1]
        if padding == 0 or pos + padding > len(d):
            return None
    return RtpLayout(csrcs, pos, padding)


def rtcp_well_formed(d: bytes) -> bool:
    """A compound RTCP packet whose headers are version 2 and whose length words add up to
    exactly the datagram (RFC 3550 6.1)."""
    pos = 0
    if len(d) < 4:
        return False
    while pos + 4 <= len(d):
        if d[pos] >> 6 != 2:
            return False
        pos += 4 * (struct.unpack_from("!H", d, pos + 2)[0] + 1)
    return pos == len(d)


def rtcp_offsets(d: bytes) -> list[int]:
    """Where each packet of a compound starts, as far as the length words can be followed."""
    out, pos = [], 0
    while pos + 4 <= len(d):
        out.append(pos)
        pos += 4 * (struct.unpack_from("!H", d, pos + 2)[0] + 1)
    return out


def named_ssrcs(data: bytes) -> set[int]:
    """The SSRCs a captured compound speaks about (report blocks, feedback targets, REMB)."""
    out = set()
    for at in rtcp_offsets(data):
        count, pt = data[at] & 0x1F, data[at + 1]
        end = min(len(data), at + 4 * (struct.unpack_from("!H", data, at + 2)[0] + 1))
        first = {200: 28, 201: 8}.get(pt)
        if first is not None:
            for b in range(at + first, end - 23, 24):
                out.add(struct.unpack_from("!I", data, b)[0])
        elif pt in (205, 206) and end >= at + 12:
            out.add(struct.unpack_from("!I", data, at + 8)[0])
            if pt == 206 and count == 15 and end >= at + 20:
                n = data[at + 16]
                for b in range(at + 20, min(end, at + 20 + 4 * n) - 3, 4):
                    out.add(struct.unpack_from("!I", data, b)[0])
    return out


def renamed(data: bytes, names: dict[int, int]) -> bytes:
    """``data`` with every 4-byte occurrence of each SSRC in ``names`` replaced by its new one."""
    for old, new in names.items():
        data = data.replace(struct.pack("!I", old), struct.pack("!I", new))
    return data


# -- mutations ----------------------------------------------------------------------------


def _flip(d: bytearray, pick: Pick) -> None:
    if d:
        d[pick(0, len(d) - 1)] ^= 1 << pick(0, 7)


def _set_byte(d: bytearray, pick: Pick) -> None:
    if d:
        d[pick(0, len(d) - 1)] = pick(0, 255)


def _truncate(d: bytearray, pick: Pick) -> None:
    del d[pick(0, len(d)) :]


def _append(d: bytearray, pick: Pick) -> None:
    d.extend(bytes(pick(0, 255) for _ in range(pick(1, 12))))


def _csrc_count(d: bytearray, pick: Pick) -> None:
    if d:
        d[0] = (d[0] & 0xF0) | pick(0, 15)


def _padding(d: bytearray, pick: Pick) -> None:
    if d:
        d[0] ^= 0x20
        if pick(0, 1):
            d[-1] = pick(0, 255)  # the padding count, lying or not


def _extension_bit(d: bytearray, pick: Pick) -> None:
    if d:
        d[0] ^= 0x10


def _extension_field(d: bytearray, pick: Pick) -> None:
    """Rewrite the extension's profile or length word, or one byte of its elements."""
    if len(d) < 12:
        return
    pos = 12 + 4 * (d[0] & 0x0F)
    if pos + 4 > len(d):
        return
    which = pick(0, 2)
    if which == 0:
        profile = (0xBEDE, 0x1000, 0x1001, 0x100F, pick(0, 0xFFFF))[pick(0, 4)]
        struct.pack_into("!H", d, pos, profile)
    elif which == 1:
        words = struct.unpack_from("!H", d, pos + 2)[0]
        struct.pack_into("!H", d, pos + 2, (words + pick(-3, 3)) & 0xFFFF)
        if pick(0, 3) == 0:
            struct.pack_into("!H", d, pos + 2, pick(0, 0xFFFF))
    elif pos + 4 < len(d):
        # An element header: one-byte (id << 4 | len - 1) or two-byte (id, len) ids, 0 and 15.
        d[pick(pos + 4, min(len(d) - 1, pos + 20))] = (0x00, 0xF0, 0x0F, 0xFF, pick(0, 255))[
            pick(0, 4)
        ]


def _version(d: bytearray, pick: Pick) -> None:
    if d:
        d[0] = (d[0] & 0x3F) | (pick(0, 3) << 6)


def _payload_type(d: bytearray, pick: Pick) -> None:
    if len(d) > 1:
        d[1] = (d[1] & 0x80) | pick(0, 127)


RTP_OPERATIONS: tuple[Callable[[bytearray, Pick], None], ...] = (
    _flip,
    _set_byte,
    _truncate,
    _append,
    _csrc_count,
    _padding,
    _extension_bit,
    _extension_field,
    _version,
    _payload_type,
)


def mutate_rtp(data: bytes, pick: Pick, max_ops: int = 3) -> bytes:
    """``data`` with up to ``max_ops`` operations applied (none: the real packet itself)."""
    d = bytearray(data)
    for _ in range(pick(0, max_ops)):
        RTP_OPERATIONS[pick(0, len(RTP_OPERATIONS) - 1)](d, pick)
    return bytes(d)


def _rtcp_target(d: bytearray, pick: Pick) -> int | None:
    offsets = rtcp_offsets(bytes(d))
    return offsets[pick(0, len(offsets) - 1)] if offsets else None


def _rtcp_length(d: bytearray, pick: Pick) -> None:
    """A lying length word: a little off, or anything."""
    at = _rtcp_target(d, pick)
    if at is None:
        return
    words = struct.unpack_from("!H", d, at + 2)[0]
    value = words + pick(-2, 2) if pick(0, 2) else pick(0, 0xFFFF)
    struct.pack_into("!H", d, at + 2, value & 0xFFFF)


def _rtcp_count(d: bytearray, pick: Pick) -> None:
    """Report count / feedback type (the low five bits): more reports than the packet holds,
    or another feedback message type."""
    at = _rtcp_target(d, pick)
    if at is not None:
        d[at] = (d[at] & 0xE0) | pick(0, 31)


def _rtcp_type(d: bytearray, pick: Pick) -> None:
    at = _rtcp_target(d, pick)
    if at is not None:
        d[at + 1] = (200, 201, 202, 203, 204, 205, 206, 207, pick(0, 255))[pick(0, 8)]


def _rtcp_header_bits(d: bytearray, pick: Pick) -> None:
    """Version or padding bit of one packet of the compound."""
    at = _rtcp_target(d, pick)
    if at is not None:
        d[at] ^= (0x20, 0x40, 0x80, 0xC0)[pick(0, 3)]


def _rtcp_chain(d: bytearray, pick: Pick) -> None:
    """Another captured packet (or this one) appended, or a packet cut out of the middle."""
    others = seeds("rtcp")
    if pick(0, 2):
        d.extend(others[pick(0, len(others) - 1)].data if others else bytes(d))
        return
    offsets = rtcp_offsets(bytes(d))
    if len(offsets) > 1:
        i = pick(0, len(offsets) - 2)
        del d[offsets[i] : offsets[i + 1]]


RTCP_OPERATIONS: tuple[Callable[[bytearray, Pick], None], ...] = (
    _flip,
    _set_byte,
    _truncate,
    _append,
    _rtcp_length,
    _rtcp_count,
    _rtcp_type,
    _rtcp_header_bits,
    _rtcp_chain,
)


def mutate_rtcp(data: bytes, pick: Pick, max_ops: int = 3) -> bytes:
    d = bytearray(data)
    for _ in range(pick(0, max_ops)):
        RTCP_OPERATIONS[pick(0, len(RTCP_OPERATIONS) - 1)](d, pick)
    return bytes(d)


def _line_cut(lines: list[str], pick: Pick) -> None:
    if lines:
        del lines[pick(0, len(lines) - 1)]


def _line_duplicate(lines: list[str], pick: Pick) -> None:
    if lines:
        i = pick(0, len(lines) - 1)
        lines.insert(pick(0, len(lines)), lines[i])


def _line_edit(lines: list[str], pick: Pick) -> None:
    """One line with a character changed, a value made huge, or cut short."""
    if not lines:
        return
    i = pick(0, len(lines) - 1)
    line = lines[i]
    how = pick(0, 3)
    at = pick(0, len(line))
    if how == 0:
        lines[i] = line[:at] + chr(pick(32, 126)) + line[at + 1 :]
    elif how == 1:
        lines[i] = line[:at] + ("9" * pick(1, 6000)) + line[at:]
    elif how == 2:
        lines[i] = line[:at]
    else:
        lines[i] = line[:at] + (":", " ", "/", "=", "-1", "\t", "")[pick(0, 6)] + line[at:]


def _line_mline(lines: list[str], pick: Pick) -> None:
    """Another media section: a copy of one (too many m-lines, duplicate mids) or a bare one."""
    starts = [i for i, line in enumerate(lines) if line.startswith("m=")]
    if not starts:
        return
    i = starts[pick(0, len(starts) - 1)]
    end = next((s for s in starts if s > i), len(lines))
    block = lines[i:end] if pick(0, 1) else [lines[i]]
    for _ in range(pick(1, 3)):
        lines.extend(block)


def _line_attribute(lines: list[str], pick: Pick) -> None:
    """An attribute line the parsers care about, with odd values, somewhere."""
    choices = (
        f"a=extmap:{pick(0, 300)} urn:ietf:params:rtp-hdrext:sdes:mid",
        f"a=extmap:{'1' * pick(1, 5000)} urn:x",
        f"a=rtpmap:{pick(0, 300)} VP8/{pick(0, 99999)}",
        f"a=fmtp:{pick(0, 127)} apt={pick(0, 300)}",
        f"a=ssrc-group:FID {pick(0, 2**32)}",
        f"a=ssrc:{pick(0, 2**33)} cname:x",
        "a=mid:" + "m" * pick(0, 300),
        "a=setup:" + ("actpass", "active", "passive", "holdconn", "")[pick(0, 4)],
        "a=fingerprint:sha-256 " + "AB:" * pick(0, 40),
        "a=rtcp-fb:* nack",
        "a=candidate:1 1 udp 1 127.0.0.1 " + str(pick(0, 70000)) + " typ host",
    )
    lines.insert(pick(0, len(lines)), choices[pick(0, len(choices) - 1)])


SDP_OPERATIONS: tuple[Callable[[list[str], Pick], None], ...] = (
    _line_cut,
    _line_duplicate,
    _line_edit,
    _line_mline,
    _line_attribute,
)


def mutate_sdp(text: str, pick: Pick, max_ops: int = 3) -> str:
    lines = text.split("\r\n")
    for _ in range(pick(0, max_ops)):
        SDP_OPERATIONS[pick(0, len(SDP_OPERATIONS) - 1)](lines, pick)
    return "\r\n".join(lines)


# -- SRTP like a peer -----------------------------------------------------------------------


def srtp_key(label: str) -> bytes:
    """32-byte AES-256 key and 12-byte salt from a fixed label."""
    return hashlib.sha512(label.encode()).digest()[:44]


def srtp_pointer(session: Any) -> int:
    """The ``srtp_t`` of a pylibsrtp Session, for a native Transport built by a test."""
    from pylibsrtp._binding import ffi

    return int(ffi.cast("uintptr_t", session._srtp[0]))


def tx_session(pc: Any) -> Any:
    """The pylibsrtp Session protecting what the aiortc peer ``pc`` sends (bundled: one), to
    send packets keyed like that peer. aiortc's private state: kept here, not in fortrolig/."""
    from fortrolig.media import aiortc_hooks as hooks

    (dtls,) = hooks.dtls_transports(pc)
    return dtls._tx_srtp
