"""Who may share a screen in a room, and what everyone sees of a share.

A share is the publish offer's second video track; ``media_state`` ``screen`` says it is on, so
that the others lay it out large. A practitioner may restrict sharing to practitioners: a
client's share then ends at once (everyone sees ``screen: false``, its page stops on
``screen_share``) and a client's ``screen: true`` is refused with nothing changed.
"""

from __future__ import annotations

import pytest

from fortrolig.signaling import protocol as p
from fortrolig.signaling.auth import Role
from tests.unit.signaling.test_waiting_room import World, make_world, pid, refused


@pytest.fixture
async def world() -> World:
    return await make_world(8, has_waiting_room=False)


def sharing(update: p.ParticipantUpdated) -> tuple[str, bool]:
    return update.participant.id, update.participant.screen


async def test_a_share_is_seen_by_everyone_and_a_newcomer(world: World) -> None:
    doctor, d_out = await world.connect(Role.PRACTITIONER)
    anna, a_out = await world.connect(Role.CLIENT, name="Anna")
    assert a_out.of(p.Joined)[-1].screen_share == "everyone"
    await anna.handle(p.MediaState(audio=True, video=True, screen=True))
    for out in (d_out, a_out):
        assert sharing(out.of(p.ParticipantUpdated)[-1]) == (pid(anna), True)
    _bo, b_out = await world.connect(Role.CLIENT, name="Bo")
    roster = {x.id: x.screen for x in b_out.of(p.Joined)[-1].participants}
    assert roster == {pid(doctor): False, pid(anna): True}
    await anna.handle(p.MediaState(audio=True, video=True, screen=False))
    assert sharing(b_out.of(p.ParticipantUpdated)[-1]) == (pid(anna), False)


async def test_restricting_ends_a_clients_share_and_refuses_the_next(world: World) -> None:
    doctor, d_out = await world.connect(Role.PRACTITIONER)
    anna, a_out = await world.connect(Role.CLIENT, name="Anna")
    await anna.handle(p.MediaState(audio=True, video=False, screen=True))
    await doctor.handle(p.SetScreenShare(allowed="practitioners"))
    for out in (d_out, a_out):
        assert out.of(p.ScreenShare)[-1] == p.ScreenShare(allowed="practitioners", by=pid(doctor))
        assert sharing(out.of(p.ParticipantUpdated)[-1]) == (pid(anna), False)

    updates = len(d_out.of(p.ParticipantUpdated))
    code = await refused(anna, p.MediaState(audio=False, video=False, screen=True))
    assert code == "screen_share_not_allowed"
    # Refused whole: not even the microphone change applied, nobody was told anything.
    assert len(d_out.of(p.ParticipantUpdated)) == updates
    assert world.service.rooms.get(world.room.id).participants[pid(anna)].audio is True

    # The practitioner still shares; a newcomer learns the rule in its joined.
    await doctor.handle(p.MediaState(audio=True, video=True, screen=True))
    assert sharing(a_out.of(p.ParticipantUpdated)[-1]) == (pid(doctor), True)
    _bo, b_out = await world.connect(Role.CLIENT, name="Bo")
    assert b_out.of(p.Joined)[-1].screen_share == "practitioners"

    await doctor.handle(p.SetScreenShare(allowed="everyone"))
    await anna.handle(p.MediaState(audio=True, video=False, screen=True))
    assert sharing(d_out.of(p.ParticipantUpdated)[-1]) == (pid(anna), True)


async def test_only_a_practitioner_decides_who_shares(world: World) -> None:
    await world.connect(Role.PRACTITIONER)
    anna, a_out = await world.connect(Role.CLIENT, name="Anna")
    code = await refused(anna, p.SetScreenShare(allowed="practitioners"))
    assert code == "practitioner_only"
    assert a_out.of(p.ScreenShare) == []
    await anna.handle(p.MediaState(audio=True, video=True, screen=True))  # still allowed


async def test_a_dropped_connection_ends_its_share(world: World) -> None:
    await world.connect(Role.PRACTITIONER)
    anna, _ = await world.connect(Role.CLIENT, name="Anna")
    await anna.handle(p.MediaState(audio=True, video=True, screen=True))
    await anna.close("dropped", hold=True)
    held = world.service.rooms.get(world.room.id).away[pid(anna)]
    assert held.screen is False
