"""A page's connection quality and audio-only fallback, as everyone in the room sees them.

The page grades its own getStats (quality.js) and says so in ``media_state``; the server keeps
the latest value on the participant, relays it in ``participant_updated`` and in a newcomer's
``joined``, and forgets it when the connection drops (it is measured afresh on return).
"""

from __future__ import annotations

import pytest

from fortrolig.signaling import protocol as p
from fortrolig.signaling.auth import Role
from tests.unit.signaling.test_waiting_room import World, make_world, pid


@pytest.fixture
async def world() -> World:
    return await make_world(8, has_waiting_room=False)


def quality(info: p.ParticipantInfo) -> tuple[str, str, bool]:
    return info.id, info.quality, info.audio_only


async def test_quality_and_audio_only_reach_everyone_and_a_newcomer(world: World) -> None:
    doctor, d_out = await world.connect(Role.PRACTITIONER)
    anna, a_out = await world.connect(Role.CLIENT, name="Anna")
    assert quality(a_out.of(p.Joined)[-1].participants[0]) == (pid(doctor), "unknown", False)
    await anna.handle(p.MediaState(audio=True, video=True, quality="poor", audio_only=True))
    for out in (d_out, a_out):
        assert quality(out.of(p.ParticipantUpdated)[-1].participant) == (pid(anna), "poor", True)
    _bo, b_out = await world.connect(Role.CLIENT, name="Bo")
    roster = {quality(x) for x in b_out.of(p.Joined)[-1].participants}
    assert roster == {(pid(doctor), "unknown", False), (pid(anna), "poor", True)}
    # Its camera stays on: audio-only is the network's doing, not "camera off".
    assert b_out.of(p.Joined)[-1].participants[-1].video is True
    await anna.handle(p.MediaState(audio=True, video=True, quality="good"))
    assert quality(d_out.of(p.ParticipantUpdated)[-1].participant) == (pid(anna), "good", False)


async def test_a_dropped_connection_forgets_its_quality(world: World) -> None:
    await world.connect(Role.PRACTITIONER)
    anna, _ = await world.connect(Role.CLIENT, name="Anna")
    await anna.handle(p.MediaState(audio=True, video=True, quality="poor", audio_only=True))
    await anna.close("dropped", hold=True)
    held = world.service.rooms.get(world.room.id).away[pid(anna)]
    assert (held.quality, held.audio_only) == ("unknown", False)
