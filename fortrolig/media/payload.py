"""Codec payload inspection the SFU needs without depacketizing: where keyframes start.

Parsers are defensive: every length is checked before it is read (codec payload parsing is a
classic SFU crash, see research/security.md), and malformed input is "not a keyframe".
"""

from __future__ import annotations

from collections.abc import Callable

KeyframeTest = Callable[[bytes], bool]


def vp8_is_keyframe_start(payload: bytes) -> bool:
    """True if this VP8 RTP payload (RFC 7741) begins a keyframe.

    The payload descriptor's S bit and partition index 0 mark the start of a frame; bit 0 of the
    first byte of the VP8 payload header is 0 for a keyframe.
    """
    n = len(payload)
    if n < 1:
        return False
    b0 = payload[0]
    if not (b0 & 0x10) or (b0 & 0x07):  # S=1 and PID=0
        return False
    i = 1
    if b0 & 0x80:  # X: extended control bits present
        if n < 2:
            return False
        x = payload[1]
        i = 2
        if x & 0x80:  # I: PictureID
            if n <= i:
                return False
            i += 2 if payload[i] & 0x80 else 1
        if x & 0x40:  # L: TL0PICIDX
            i += 1
        if x & 0x30:  # T or K: TID/Y/KEYIDX
            i += 1
    if n <= i:
        return False
    return not (payload[i] & 0x01)


_H264_IDR = 5
_H264_SPS = 7


def h264_is_keyframe_start(payload: bytes) -> bool:
    """True if this H.264 RTP payload (RFC 6184) carries an SPS or the start of an IDR slice."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in (_H264_IDR, _H264_SPS):
        return True
    if nal_type == 24:  # STAP-A: 16-bit size, NAL unit, ...
        i = 1
        while i + 2 < len(payload):
            size = (payload[i] << 8) | payload[i + 1]
            i += 2
            if size == 0 or i + size > len(payload):
                return False
            if payload[i] & 0x1F in (_H264_IDR, _H264_SPS):
                return True
            i += size
        return False
    if nal_type == 28:  # FU-A: start bit and original type in the FU header
        return len(payload) > 1 and bool(payload[1] & 0x80) and (payload[1] & 0x1F) == _H264_IDR
    return False


def keyframe_detector(mime_type: str) -> KeyframeTest | None:
    """The keyframe-start test for a codec, or None for audio / unknown codecs."""
    mime = mime_type.lower()
    if mime == "video/vp8":
        return vp8_is_keyframe_start
    if mime == "video/h264":
        return h264_is_keyframe_start
    return None
