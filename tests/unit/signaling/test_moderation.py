"""A practitioner moderates a group session: mutes a participant or removes one.

Muting asks the participant's page to turn its microphone off (it alone may turn it on again);
everyone sees it as muted at once. Removing ends the participant's connection with ``bye
removed``; its resume token cannot bring it back, and its media peer is freed.
"""

from __future__ import annotations

import pytest

from fortrolig.signaling import protocol as p
from fortrolig.signaling.auth import Role
from tests.unit.signaling.test_waiting_room import Out, World, make_world, pid, refused


@pytest.fixture
async def world() -> World:
    return await make_world(8, has_waiting_room=False)


async def test_mute_tells_the_participant_and_everyone_sees_it_muted(world: World) -> None:
    doctor, d_out = await world.connect(Role.PRACTITIONER)
    anna, a_out = await world.connect(Role.CLIENT, name="Anna")
    _bo, b_out = await world.connect(Role.CLIENT, name="Bo")
    await doctor.handle(p.MuteParticipant(participant_id=pid(anna)))
    assert a_out.of(p.Muted) == [p.Muted(by=pid(doctor))]
    for out in (d_out, a_out, b_out):
        update = out.of(p.ParticipantUpdated)[-1].participant
        assert update.id == pid(anna) and update.audio is False
    # Only the participant turns it on again.
    await anna.handle(p.MediaState(audio=True, video=True))
    assert d_out.of(p.ParticipantUpdated)[-1].participant.audio is True
    assert b_out.of(p.Muted) == []


async def test_remove_ends_the_participant_and_its_resume_token_cannot_return(
    world: World,
) -> None:
    doctor, d_out = await world.connect(Role.PRACTITIONER)
    anna, a_out = await world.connect(Role.CLIENT, name="Anna")
    resume = anna._resume_token()
    await doctor.handle(p.RemoveParticipant(participant_id=pid(anna)))
    assert a_out.sent[-1] == p.Bye(reason="removed") and a_out.closed == (1000, "removed")
    assert d_out.of(p.ParticipantLeft)[-1] == p.ParticipantLeft(
        participant_id=pid(anna), reason="removed"
    )
    assert "close_peer" in world.media.touched(pid(anna))
    assert world.service.rooms.participant_count() == 1
    again = world.service.new_session(Out())
    await again.hello(p.Hello(v=1, token=resume))
    assert await refused(again, p.Join()) == "denied"


async def test_only_a_practitioner_moderates_and_bad_targets_change_nothing(
    world: World,
) -> None:
    doctor, d_out = await world.connect(Role.PRACTITIONER)
    anna, a_out = await world.connect(Role.CLIENT, name="Anna")
    bo, _ = await world.connect(Role.CLIENT, name="Bo")
    for msg in (
        p.MuteParticipant(participant_id=pid(bo)),
        p.RemoveParticipant(participant_id=pid(bo)),
    ):
        assert await refused(anna, msg) == "practitioner_only"
    for msg in (
        p.MuteParticipant(participant_id="p_nobody"),
        p.RemoveParticipant(participant_id="p_nobody"),
    ):
        assert await refused(doctor, msg) == "not_in_room"
    assert await refused(doctor, p.RemoveParticipant(participant_id=pid(doctor))) == "bad_target"
    assert world.service.rooms.participant_count() == 3
    assert a_out.closed is None and not a_out.of(p.Muted)
    assert not [m for m in d_out.of(p.ParticipantLeft)]


def test_the_messages_parse_and_refuse_bad_fields() -> None:
    assert p.parse('{"type":"mute_participant","participant_id":"p_1"}') == p.MuteParticipant(
        participant_id="p_1"
    )
    assert p.parse('{"type":"remove_participant","participant_id":"p_1"}') == (
        p.RemoveParticipant(participant_id="p_1")
    )
    assert p.parse_server('{"type":"muted","by":"p_2"}') == p.Muted(by="p_2")
    with pytest.raises(p.ProtocolError):
        p.parse('{"type":"mute_participant","participant_id":7}')
    with pytest.raises(p.ProtocolError):
        p.parse('{"type":"remove_participant"}')
