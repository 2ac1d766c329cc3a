"""Consent to record, driven through real signaling sessions (the journal and the recorder
behind the Recordings port are a fake here: they are tested with their own real stores)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from fortrolig.core.clock import FakeClock
from fortrolig.core.config import Config
from fortrolig.core.keys import KeySet, SigningKey
from fortrolig.signaling import protocol as p
from fortrolig.signaling.auth import (
    MemoryJtiStore,
    Role,
    TokenIssuer,
    TokenVerifier,
    VerificationMode,
)
from fortrolig.signaling.service import SignalingService
from tests.unit.signaling.test_waiting_room import NOW, RecordingMedia, World, pid, refused


@dataclass
class FakeRecordings:
    """The Recordings port, keeping every call in order."""

    calls: list[tuple[object, ...]] = field(default_factory=list)

    def ops(self) -> list[object]:
        return [c[0] for c in self.calls]

    async def check_recordable(self, owner: str, client_id: str) -> None:
        self.calls.append(("check", owner, client_id))

    async def audit(self, owner: str, client_id: str, action: str, rid: str, who: str) -> None:
        self.calls.append(("audit", action, who))

    async def start(
        self,
        owner: str,
        client_id: str,
        room_id: str,
        rid: str,
        consented_by: tuple[str, ...],
        participants: tuple[str, ...],
    ) -> None:
        self.calls.append(("start", participants))

    async def include(self, room_id: str, rid: str, participant_id: str) -> None:
        self.calls.append(("include", participant_id))

    async def stop(
        self, owner: str, room_id: str, rid: str, reason: str, consented_by: tuple[str, ...]
    ) -> None:
        self.calls.append(("stop", reason))


async def _world(recordings: FakeRecordings | None) -> World:
    clock = FakeClock(now=NOW)
    key = SigningKey.generate()
    issuer = TokenIssuer(key, "fortrolig", clock)
    verifier = TokenVerifier(
        KeySet.of(key.public_key), "fortrolig", clock, 30, MemoryJtiStore(clock)
    )
    service = SignalingService(
        Config(), RecordingMedia(), issuer, verifier, clock, recordings=recordings
    )
    room = await service.create_room("dr-a", 3, has_waiting_room=False)
    return World(service, RecordingMedia(), issuer, room)


@pytest.fixture
def port() -> FakeRecordings:
    return FakeRecordings()


async def test_nothing_starts_until_everyone_accepted(port: FakeRecordings) -> None:
    w = await _world(port)
    doctor, d_out = await w.connect(Role.PRACTITIONER)
    client, c_out = await w.connect(Role.CLIENT, VerificationMode.EMAIL_CODE, "k@example.eu")
    await doctor.handle(p.RecordRequest(client_id="cli_1"))
    asked = c_out.of(p.Recording)[-1]
    assert asked.state == "asking" and asked.waiting_for == (pid(client),)
    assert "start" not in port.ops()
    await client.handle(p.RecordConsent(recording_id=asked.recording_id, accept=True))
    assert port.calls[-1] == ("start", (pid(doctor), pid(client)))
    for out in (d_out, c_out):
        assert out.of(p.Recording)[-1].state == "recording"
    assert [c[1] for c in port.calls if c[0] == "audit"] == ["request", "accept"]
    # Withdrawal stops it at once, for everyone.
    await client.handle(p.RecordStop(recording_id=asked.recording_id))
    assert port.calls[-1] == ("stop", "withdrawn")
    assert d_out.of(p.Recording)[-1].state == "stopped"
    assert d_out.of(p.Recording)[-1].reason == "withdrawn"


async def test_a_refusal_records_nothing(port: FakeRecordings) -> None:
    w = await _world(port)
    doctor, d_out = await w.connect(Role.PRACTITIONER)
    client, _ = await w.connect(Role.CLIENT, VerificationMode.EMAIL_CODE, "k@example.eu")
    await doctor.handle(p.RecordRequest(client_id="cli_1"))
    rid = d_out.of(p.Recording)[-1].recording_id
    await client.handle(p.RecordConsent(recording_id=rid, accept=False))
    assert "start" not in port.ops() and "stop" not in port.ops()
    assert d_out.of(p.Recording)[-1].reason == "refused"
    assert w.service.rooms.find(w.room.id).recording is None  # type: ignore[union-attr]


async def test_a_latecomer_is_asked_and_recorded_only_after_accepting(
    port: FakeRecordings,
) -> None:
    w = await _world(port)
    doctor, _ = await w.connect(Role.PRACTITIONER)
    await doctor.handle(p.RecordRequest(client_id="cli_1"))  # alone: it starts at once
    assert port.calls[-1] == ("start", (pid(doctor),))
    late, l_out = await w.connect(Role.CLIENT, VerificationMode.EMAIL_CODE, "k@example.eu")
    msg = l_out.of(p.Recording)[-1]
    assert msg.state == "recording" and msg.waiting_for == (pid(late),)
    await late.handle(p.RecordConsent(recording_id=msg.recording_id, accept=True))
    assert port.calls[-1] == ("include", pid(late))


async def test_bad_requests_are_refused_and_change_nothing(port: FakeRecordings) -> None:
    w = await _world(port)
    doctor, _ = await w.connect(Role.PRACTITIONER)
    client, _ = await w.connect(Role.CLIENT, VerificationMode.EMAIL_CODE, "k@example.eu")
    assert await refused(client, p.RecordRequest(client_id="cli_1")) == "practitioner_only"
    assert await refused(client, p.RecordConsent(recording_id="rec_x", accept=True)) == (
        "no_recording"
    )
    assert await refused(doctor, p.RecordStop(recording_id="rec_x")) == "no_recording"
    await doctor.handle(p.RecordRequest(client_id="cli_1"))
    assert await refused(doctor, p.RecordRequest(client_id="cli_1")) == "recording_busy"
    assert port.ops().count("start") == 0


async def test_anonymous_consultations_and_nodes_without_recording_refuse() -> None:
    port = FakeRecordings()
    w = await _world(port)
    doctor, _ = await w.connect(Role.PRACTITIONER)
    await w.connect(Role.CLIENT, VerificationMode.ANONYMOUS, "Anonym K7QF")
    assert await refused(doctor, p.RecordRequest(client_id="cli_1")) == "recording_not_allowed"
    assert port.calls == []
    bare = await _world(None)
    doctor, _ = await bare.connect(Role.PRACTITIONER)
    assert await refused(doctor, p.RecordRequest(client_id="cli_1")) == "recording_unavailable"
