"""Header extension ids stay those of the publish offer in the SFU's later offers."""

from __future__ import annotations

from fortrolig.media.extmap import align_extmap_ids, extmap_ids

CHROMIUM_OFFER = "\r\n".join(
    [
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "a=extmap:14 urn:ietf:params:rtp-hdrext:toffset",
        "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    ]
)

AIORTC_OFFER = "\r\n".join(
    [
        "m=audio 9 UDP/TLS/RTP/SAVPF 96",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "m=video 9 UDP/TLS/RTP/SAVPF 97",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "a=extmap:5/sendonly urn:example:unknown-to-the-publisher",
        "a=extmap:7 urn:example:also-unknown",
        "",
    ]
)


def test_ids_follow_the_publish_offer_and_others_avoid_collisions() -> None:
    ids = extmap_ids(CHROMIUM_OFFER)
    assert ids["urn:ietf:params:rtp-hdrext:sdes:mid"] == 4
    out = align_extmap_ids(AIORTC_OFFER, ids)
    lines = out.split("\r\n")
    assert lines.count("a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid") == 2
    assert "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level" in lines
    assert "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time" in lines
    # 5 is free and kept (with its direction); 7 is free too.
    assert "a=extmap:5/sendonly urn:example:unknown-to-the-publisher" in lines
    assert "a=extmap:7 urn:example:also-unknown" in lines
    # Every id names one URI across the whole description (one BUNDLE group).
    seen: dict[str, str] = {}
    for line in lines:
        if line.startswith("a=extmap:"):
            ident, uri = line[len("a=extmap:") :].split(" ", 1)
            assert seen.setdefault(ident.split("/")[0], uri) == uri
    assert out.endswith("\r\n")


def test_an_unknown_extension_whose_id_is_taken_gets_a_free_one() -> None:
    ids = {f"urn:taken:{i}": i for i in range(1, 14)}
    sdp = "a=extmap:1 urn:new:a\r\na=extmap:1 urn:new:b\r\n"
    # b finds no free one-byte id: it is left out (extensions are optional).
    assert align_extmap_ids(sdp, ids) == "a=extmap:14 urn:new:a\r\n"


def test_no_publish_offer_changes_nothing() -> None:
    assert align_extmap_ids(AIORTC_OFFER, {}) == AIORTC_OFFER


def test_extension_ids_a_browser_cannot_mean_are_ignored() -> None:
    """0, over 255, or a number too long for int() (5,000 digits raised ValueError)."""
    sdp = "\r\n".join(
        [
            "a=extmap:" + "1" * 5000 + " urn:huge",
            "a=extmap:0 urn:zero",
            "a=extmap:256 urn:too-big",
            "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
        ]
    )
    assert extmap_ids(sdp) == {"urn:ietf:params:rtp-hdrext:sdes:mid": 4}
