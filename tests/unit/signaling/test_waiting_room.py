"""The waiting room in the signaling state machine: nobody reaches the media path before admission.

Sessions run against a media backend that records every call (the one fake here: the test is
about what signaling asks of the SFU, not about media).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from fortrolig.core.clock import FakeClock
from fortrolig.core.config import Config
from fortrolig.core.errors import FortroligError
from fortrolig.core.keys import KeySet, SigningKey
from fortrolig.signaling import protocol as p
from fortrolig.signaling.auth import (
    MemoryJtiStore,
    Role,
    TokenIssuer,
    TokenKind,
    TokenVerifier,
    VerificationMode,
)
from fortrolig.signaling.ports import MediaEvents
from fortrolig.signaling.records import RoomRecord
from fortrolig.signaling.service import Session, SignalingService

NOW = 1_700_000_000.0


@dataclass
class RecordingMedia:
    """A MediaBackend that only records which participant asked for what."""

    calls: list[tuple[str, str]] = field(default_factory=list)

    def touched(self, participant_id: str) -> list[str]:
        return [op for op, pid in self.calls if pid == participant_id]

    async def open_peer(self, room_id: str, participant_id: str, events: MediaEvents) -> None:
        self.calls.append(("open_peer", participant_id))

    async def publish(self, room_id: str, participant_id: str, offer_sdp: str) -> str:
        self.calls.append(("publish", participant_id))
        return "v=0\r\n"

    async def answer(self, room_id: str, participant_id: str, answer_sdp: str) -> None:
        self.calls.append(("answer", participant_id))

    async def add_candidate(
        self,
        room_id: str,
        participant_id: str,
        candidate: str,
        sdp_mid: str | None,
        sdp_mline_index: int | None,
    ) -> None:
        self.calls.append(("add_candidate", participant_id))

    async def close_peer(self, room_id: str, participant_id: str) -> None:
        self.calls.append(("close_peer", participant_id))

    async def close_room(self, room_id: str) -> None:
        self.calls.append(("close_room", room_id))


@dataclass
class Out:
    """An Outbound that keeps messages and the close."""

    sent: list[p.ServerMessage] = field(default_factory=list)
    closed: tuple[int, str] | None = None

    def send(self, msg: p.ServerMessage) -> None:
        self.sent.append(msg)

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def of(self, kind: type[Any]) -> list[Any]:
        return [m for m in self.sent if isinstance(m, kind)]


@dataclass
class World:
    service: SignalingService
    media: RecordingMedia
    issuer: TokenIssuer
    room: RoomRecord

    async def connect(
        self,
        role: Role,
        verification: VerificationMode | None = None,
        verified: str | None = None,
        name: str | None = None,
    ) -> tuple[Session, Out]:
        token = self.issuer.issue(
            TokenKind.JOIN,
            "sub",
            role,
            ttl_s=300,
            room=self.room.id,
            verification=verification,
            verified=verified,
        )
        out = Out()
        session = self.service.new_session(out)
        await session.hello(p.Hello(v=1, token=token))
        await session.handle(p.Join(name=name))
        return session, out


async def make_world(size: int, *, has_waiting_room: bool) -> World:
    """A signaling service on a fake clock with one room of ``dr-a``."""
    clock = FakeClock(now=NOW)
    key = SigningKey.generate()
    issuer = TokenIssuer(key, "fortrolig", clock)
    verifier = TokenVerifier(
        KeySet.of(key.public_key), "fortrolig", clock, 30, MemoryJtiStore(clock)
    )
    media = RecordingMedia()
    service = SignalingService(Config(), media, issuer, verifier, clock)
    room = await service.create_room("dr-a", size, has_waiting_room=has_waiting_room)
    return World(service, media, issuer, room)


@pytest.fixture
async def world() -> World:
    return await make_world(2, has_waiting_room=True)


def pid(session: Session) -> str:
    assert session.participant is not None
    return session.participant.id


async def refused(session: Session, msg: p.ClientMessage) -> str:
    with pytest.raises(FortroligError) as info:
        await session.handle(msg)
    return info.value.code


async def test_client_waits_without_any_media_call_until_admitted(world: World) -> None:
    doctor, d_out = await world.connect(Role.PRACTITIONER)
    assert d_out.of(p.WaitingRoom) == [p.WaitingRoom(clients=())]
    client, c_out = await world.connect(
        Role.CLIENT, VerificationMode.EMAIL_CODE, "klient@example.eu", name="Klient"
    )
    assert c_out.of(p.Waiting) == [p.Waiting()] and not c_out.of(p.Joined)
    assert d_out.of(p.WaitingRoom)[-1].clients == (
        p.WaitingClient(pid(client), "email_code", "Klient", "klient@example.eu"),
    )
    assert not d_out.of(p.ParticipantJoined)  # the practitioner's room has not changed
    # Every media message is refused while waiting, and none reaches the SFU.
    for msg in (
        p.Offer(sdp="v=0\r\n"),
        p.Answer(sdp="v=0\r\n"),
        p.Candidate(candidate=""),
        p.Chat(text="hej", id="1"),
        p.MediaState(audio=True, video=False),
        p.EndRoom(),
        p.Admit(participant_id=pid(client)),
    ):
        assert await refused(client, msg) == "not_admitted"
    assert world.media.touched(pid(client)) == []
    assert world.service.rooms.participant_count() == 1
    assert world.service.rooms.waiting_count() == 1

    await doctor.handle(p.Admit(participant_id=pid(client)))
    assert world.media.touched(pid(client)) == ["open_peer"]
    joined = c_out.of(p.Joined)
    assert len(joined) == 1 and [x.id for x in joined[0].participants] == [pid(doctor)]
    assert d_out.of(p.ParticipantJoined)[-1].participant.id == pid(client)
    assert d_out.of(p.WaitingRoom)[-1].clients == ()
    await client.handle(p.Offer(sdp="v=0\r\n"))  # now the media path is open
    assert world.media.touched(pid(client)) == ["open_peer", "publish"]


async def test_deny_sends_bye_denied_and_a_denied_client_cannot_wait_again(world: World) -> None:
    doctor, d_out = await world.connect(Role.PRACTITIONER)
    client, c_out = await world.connect(Role.CLIENT, VerificationMode.ANONYMOUS, "Anonym K7QF")
    assert d_out.of(p.WaitingRoom)[-1].clients[0].verification == "anonymous"
    resume = client._resume_token()
    await doctor.handle(p.Deny(participant_id=pid(client)))
    assert c_out.sent[-1] == p.Bye(reason="denied") and c_out.closed == (1000, "denied")
    assert client.closed and d_out.of(p.WaitingRoom)[-1].clients == ()
    assert world.media.touched(pid(client)) == []
    # Its resume token still authenticates, but it cannot queue again.
    again = world.service.new_session(Out())
    await again.hello(p.Hello(v=1, token=resume))
    assert await refused(again, p.Join()) == "denied"
    assert world.service.rooms.waiting_count() == 0


async def test_admitted_client_resumes_straight_into_the_room(world: World) -> None:
    doctor, _ = await world.connect(Role.PRACTITIONER)
    client, _ = await world.connect(Role.CLIENT, VerificationMode.ANONYMOUS, "Anonym AAAA")
    await doctor.handle(p.Admit(participant_id=pid(client)))
    resume = client._resume_token()
    await client.close("disconnected")
    out = Out()
    back = world.service.new_session(out)
    await back.hello(p.Hello(v=1, token=resume))
    await back.handle(p.Join())
    assert out.of(p.Joined) and not out.of(p.Waiting)
    assert back.participant is not None and back.participant.verification == "anonymous"


async def test_waiting_client_leaving_updates_the_list_and_touches_no_media(world: World) -> None:
    _doctor, d_out = await world.connect(Role.PRACTITIONER)
    client, _ = await world.connect(Role.CLIENT)
    assert d_out.of(p.WaitingRoom)[-1].clients[0].verification == "none"
    await client.handle(p.Leave())
    assert d_out.of(p.WaitingRoom)[-1].clients == ()
    assert world.media.touched(pid(client)) == []


async def test_admit_and_deny_errors_change_nothing(world: World) -> None:
    doctor, _ = await world.connect(Role.PRACTITIONER)
    first, _ = await world.connect(Role.CLIENT)
    second, s_out = await world.connect(Role.CLIENT)
    assert await refused(doctor, p.Admit(participant_id="p_nobody")) == "not_waiting"
    assert await refused(doctor, p.Deny(participant_id=pid(doctor))) == "not_waiting"
    await doctor.handle(p.Admit(participant_id=pid(first)))
    # The room (2) is full: the second client keeps waiting, the practitioner stays connected.
    assert await refused(doctor, p.Admit(participant_id=pid(second))) == "room_at_capacity"
    live = world.service.rooms.find(world.room.id)
    assert live is not None and pid(second) in live.waiting and not s_out.of(p.Joined)
    assert await refused(first, p.Admit(participant_id=pid(second))) == "practitioner_only"
    assert await refused(first, p.Deny(participant_id=pid(second))) == "practitioner_only"
    assert world.media.touched(pid(second)) == []


async def test_ending_the_room_ends_waiting_clients_too(world: World) -> None:
    doctor, _ = await world.connect(Role.PRACTITIONER)
    client, c_out = await world.connect(Role.CLIENT)
    await doctor.handle(p.EndRoom())
    assert c_out.sent[-1] == p.Bye(reason="room_ended") and c_out.closed == (1000, "room_ended")
    assert client.closed and world.service.rooms.waiting_count() == 0


async def test_rooms_without_a_waiting_room_admit_clients_directly(world: World) -> None:
    world.room = await world.service.create_room("dr-a", 2)  # POST /api/v1/rooms, session create
    _doctor, _ = await world.connect(Role.PRACTITIONER)
    client, out = await world.connect(Role.CLIENT)
    assert out.of(p.Joined) and not out.of(p.Waiting)
    assert world.media.touched(pid(client)) == ["open_peer"]


async def test_an_empty_room_is_unloaded_after_a_while_and_placed_again_by_its_next_hello(
    world: World,
) -> None:
    clock = world.service.clock
    assert isinstance(clock, FakeClock)
    doctor, _ = await world.connect(Role.PRACTITIONER)
    client, _ = await world.connect(Role.CLIENT)
    await doctor.handle(p.Admit(participant_id=pid(client)))
    assert world.service.cluster.holds(world.room.id)
    for session in (doctor, client):
        await session.close("left")
    for _ in range(30):  # heartbeats every 10 s keep the lease (20 s) for 5 minutes
        await world.service.cluster_tick()
        clock.advance(10)
    assert world.service.rooms.find(world.room.id) is not None  # idle 290 s: not yet
    clock.advance(10)
    await world.service.cluster_tick()
    assert world.service.rooms.find(world.room.id) is None
    assert not world.service.cluster.holds(world.room.id)
    assert ("close_room", world.room.id) in world.media.calls
    # Still open in the records: the admitted client comes back without waiting.
    _again, out = await world.connect(Role.PRACTITIONER)
    assert out.of(p.Joined) and world.service.cluster.holds(world.room.id)
