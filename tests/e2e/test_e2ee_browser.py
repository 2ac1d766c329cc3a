"""End-to-end encrypted media in real Chromium (docs/protocol.md, "End-to-end encrypted media").

The node runs in the test's event loop (tests/e2e/inprocess.py) so that the test can take the
frames the SFU itself holds and show that they are ciphertext: the VP8 header the SFU needs is
readable, the picture is not, and the pages' keys open exactly the frames they should.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import pytest

from tests.e2e.conftest import Browsers, RoomPage, eventually
from tests.e2e.inprocess import Capture, InProcessNode, inprocess_node
from tests.e2e.test_browser_consultation import (
    decodes_video_from,
    frames_from,
    receives_audio_from,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[InProcessNode]:
    async with inprocess_node(tmp_path) as n:
        yield n


async def e2ee(page: RoomPage) -> dict[str, Any]:
    return dict(await page.page.evaluate("window.fortrolig.e2ee()") or {})


async def try_open(page: RoomPage, participant_id: str, frame: bytes, kind: str, key: bool) -> bool:
    return bool(
        await page.page.evaluate(
            "([id, f, k, key]) => window.fortrolig.tryOpen(id, f, k, key)",
            [participant_id, base64.b64encode(frame).decode(), kind, key],
        )
    )


def decodable(frames: list[bytes]) -> int:
    """How many of ``frames`` (a VP8 stream from a keyframe) libvpx decodes without error."""
    codec = av.CodecContext.create("vp8", "r")
    good = 0
    for data in frames:
        try:
            good += len(codec.decode(av.Packet(data)))
        except av.error.FFmpegError:
            pass
    return good


def from_keyframe(frames: list[Any]) -> list[bytes]:
    first = next(i for i, f in enumerate(frames) if f.keyframe)
    return [f.data for f in frames[first:]]


async def captured_consultation(
    node: InProcessNode, browsers: Browsers, client: str, max_participants: int | None = None
) -> tuple[dict[str, Any], Capture, RoomPage, RoomPage]:
    """A room whose media the test captures inside the SFU, with the practitioner and one
    client in session."""
    session = await node.session(max_participants=max_participants)
    capture = Capture()
    node.sfu.attach_subscriber(session["room_id"], capture)
    practitioner = await browsers.open(session["practitioner_url"], "Dr. Ørsted")
    page = await browsers.open(session["client_url"], client)
    await practitioner.wait_state("in_session")
    await page.wait_state("in_session")
    return session, capture, practitioner, page


async def test_two_pages_decode_each_other_and_the_server_holds_only_ciphertext(
    node: InProcessNode, browsers: Browsers, tmp_path: Path
) -> None:
    _, capture, practitioner, client = await captured_consultation(node, browsers, "Klient")
    pid_p, pid_c = await practitioner.participant_id(), await client.participant_id()

    await decodes_video_from(practitioner, pid_c)
    await decodes_video_from(client, pid_p)
    await receives_audio_from(practitioner, pid_c)
    await receives_audio_from(client, pid_p)
    for page, other in ((practitioner, pid_c), (client, pid_p)):
        state = await e2ee(page)
        assert state["api"] in ("script", "streams") and state["mode"] == "on", state
        frames = state["frames"]
        assert frames["encrypted"] > 100 and frames["sentClear"] == 0, state
        assert frames["received"][other]["decrypted"] > 100, state
        assert frames["received"][other]["clear"] == 0, state
        assert await page.page.locator("#e2ee-badge").get_attribute("data-state") == "on"
    await practitioner.screenshot(tmp_path, "e2ee")

    # The safety codes (which cover the media keys) match.
    codes_p = await practitioner.page.evaluate("window.fortrolig.safetyCodes()")
    codes_c = await client.page.evaluate("window.fortrolig.safetyCodes()")
    assert codes_p[pid_c] == codes_c[pid_p]

    # Inside the server: the VP8 header an SFU reads is there (keyframes found, with the
    # camera's size), the picture is not: libvpx decodes nothing of it...
    video = capture.vp8_frames(pid_c)
    keyframes = [f for f in video if f.keyframe]
    assert keyframes and all(f.width > 0 and f.height > 0 for f in keyframes), len(video)
    assert decodable(from_keyframe(video)[:60]) == 0
    # ... while the practitioner's page opens the very same frames, and audio likewise: those
    # sent since the page holds the client's key (a keyframe asked for now; frames from before
    # the keys were exchanged are the page's to drop, and a loaded machine may see a rekey).
    since = time.monotonic()
    source = capture.sources[capture.track_of(pid_c, "video")]

    async def keyframe_and_ten_after() -> bool:
        source.request_keyframe()  # rate-limited by the SFU
        frames = capture.vp8_frames(pid_c, since)
        return any(f.keyframe for f in frames) and len(from_keyframe(frames)) > 10

    await eventually(keyframe_and_ten_after, 10, "a keyframe asked for, and frames after it")
    sealed = from_keyframe(capture.vp8_frames(pid_c, since))
    assert decodable(sealed) == 0
    for i, frame in enumerate(sealed[:6]):
        opened = await try_open(practitioner, pid_c, frame, "video", i == 0)
        assert opened, (i, "key index", frame[-1], await e2ee(practitioner))
    opus = capture.opus_frames(pid_c, since)
    assert await try_open(practitioner, pid_c, opus[-1], "audio", False)
    # A frame altered inside the server does not open (its header is authenticated too).
    altered = bytearray(sealed[0])
    altered[1] ^= 0x01
    assert not await try_open(practitioner, pid_c, bytes(altered), "video", True)
    (tmp_path / "figures.json").write_text(
        json.dumps({"captured_video_frames": len(video), "keyframes": len(keyframes)})
    )


async def test_late_joiner_sees_video_and_a_leaver_cannot_read_what_follows(
    node: InProcessNode, browsers: Browsers, tmp_path: Path
) -> None:
    session, capture, practitioner, anna = await captured_consultation(node, browsers, "Anna", 3)
    pid_p, pid_a = await practitioner.participant_id(), await anna.participant_id()
    await decodes_video_from(anna, pid_p)
    before_join = time.monotonic()

    # A late joiner: it gets keys ratcheted past what was sent before it came.
    ben = await browsers.open(await node.client_url(session), "Ben")
    await ben.wait_state("in_session")
    pid_b = await ben.participant_id()
    figures: dict[str, float] = {"ben_in_session_s": round(time.monotonic() - before_join, 2)}
    for name, other in (("practitioner", pid_p), ("anna", pid_a)):
        # Seconds from Ben's in_session to his first decoded frame: written down, not asserted.
        waited = await eventually(lambda o=other: _decoded_any(ben, o), 15, "Ben's first frame")
        figures[f"ben_first_frame_from_{name}_s"] = round(waited, 2)
        await decodes_video_from(ben, other)
    await decodes_video_from(anna, pid_b)
    await decodes_video_from(practitioner, pid_b)
    # What the practitioner sent while Anna was there and Ben not yet.
    early = capture.vp8_frames(pid_p, since=before_join - 1.0, until=before_join)[-3:]
    assert early, "frames before Ben joined"
    assert not await try_open(ben, pid_p, early[0].data, "video", early[0].keyframe), "before Ben"
    assert await try_open(anna, pid_p, early[0].data, "video", early[0].keyframe)

    # Anna leaves: the practitioner and Ben change their keys, and Anna's page cannot open
    # what follows (it still can open what came before: the check is not blind).
    await anna.page.click("#leave-btn")
    await anna.wait_state("ended")
    left_at = time.monotonic()
    await eventually(lambda: _key_changed(capture, pid_p, left_at + 1.0), 10, "frames after leave")
    await decodes_video_from(ben, pid_p)
    await decodes_video_from(practitioner, pid_b)
    after = capture.vp8_frames(pid_p, since=left_at + 1.0)
    after_key = next(f for f in after if f.keyframe) if any(f.keyframe for f in after) else None
    for frame in after[:20]:
        assert not await try_open(anna, pid_p, frame.data, "video", frame.keyframe)
        assert await try_open(ben, pid_p, frame.data, "video", frame.keyframe)
    if after_key is not None:
        assert not await try_open(anna, pid_p, after_key.data, "video", True)
    assert await try_open(anna, pid_p, early[0].data, "video", early[0].keyframe)
    await ben.screenshot(tmp_path, "three")
    (tmp_path / "figures.json").write_text(json.dumps(figures))


async def _key_changed(capture: Capture, participant_id: str, since: float) -> bool:
    return len(capture.vp8_frames(participant_id, since=since)) >= 20


async def _decoded_any(page: RoomPage, participant_id: str) -> bool:
    return await frames_from(page, participant_id) > 0


# A browser without encoded transforms (as an old one would be): both APIs removed before the
# page's scripts run.
WITHOUT_TRANSFORMS = """
delete window.RTCRtpScriptTransform;
delete RTCRtpSender.prototype.createEncodedStreams;
delete RTCRtpReceiver.prototype.createEncodedStreams;
"""


async def test_a_browser_without_e2ee_is_told_and_the_practitioner_decides(
    node: InProcessNode, browsers: Browsers, tmp_path: Path
) -> None:
    session = await node.session()
    capture = Capture()
    node.sfu.attach_subscriber(session["room_id"], capture)
    practitioner = await browsers.open(session["practitioner_url"], "Dr. Ørsted")
    client = await browsers.new_page("Klient")
    await client.page.add_init_script(WITHOUT_TRANSFORMS)
    await client.page.goto(session["client_url"])
    await browsers.prejoin(client, join=False)
    # Told before joining, plainly.
    assert await client.page.locator("#e2ee-unsupported").is_visible()
    await client.screenshot(tmp_path, "prejoin-unsupported")
    await client.page.click("#join-btn")
    await client.wait_state("in_session")
    pid_p, pid_c = await practitioner.participant_id(), await client.participant_id()

    # The practitioner is told and decides; until then nothing clear is accepted.
    notice = practitioner.page.locator("#e2ee-notice")
    await notice.wait_for(state="visible")
    assert "Klient" in (await notice.inner_text())
    assert (await e2ee(client))["mode"] == "off"
    await eventually(lambda: _failed_from(practitioner, pid_c), 15, "clear frames refused")
    assert (await e2ee(practitioner))["frames"]["received"][pid_c]["clear"] == 0
    await practitioner.screenshot(tmp_path, "unsupported-notice")
    clicked_at = time.monotonic()
    await practitioner.page.click("#e2ee-continue")

    # Going on without it: both see each other, both pages say so, the server sees clear video.
    await decodes_video_from(practitioner, pid_c)
    await decodes_video_from(client, pid_p)
    await notice.wait_for(state="hidden")
    for page in (practitioner, client):
        assert await page.page.locator("#e2ee-badge").get_attribute("data-state") == "off"
    assert (await e2ee(practitioner))["clear"]["all"] is True
    # The client's decoder asked for a keyframe once clear frames came: from it on, the
    # frames the server holds decode (the check that found none of the sealed ones).
    await eventually(lambda: _frames_since(capture, pid_p, clicked_at), 15, "clear frames")
    clear = capture.vp8_frames(pid_p, since=clicked_at)
    assert any(f.keyframe for f in clear), len(clear)
    assert decodable(from_keyframe(clear)) > 10
    await practitioner.screenshot(tmp_path, "unsupported-continued")


async def _failed_from(page: RoomPage, participant_id: str) -> bool:
    received = (await e2ee(page))["frames"]["received"]
    return int(received.get(participant_id, {}).get("failed", 0)) > 10


async def _frames_since(capture: Capture, participant_id: str, since: float) -> bool:
    return len(capture.vp8_frames(participant_id, since=since)) >= 30
