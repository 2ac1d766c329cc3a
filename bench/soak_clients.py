"""One synthetic consultation of the soak, as docs/protocol.md has it, over a real node.

A practitioner and a client (``fortrolig-load``'s :class:`LoadParticipant`: the pre-encoded
clip replayed, received packets counted, never decoded) join a room with a waiting room; the
client waits and the practitioner admits it; media flows both ways; they chat; on some
consultations the client's connection drops mid-call and it resumes with its newest resume
token (straight back in, no waiting room); the practitioner writes a journal note over the
journal API; then both leave (or the practitioner ends the room). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from fortrolig.loadtests.clip import Clip
from fortrolig.loadtests.worker import LoadParticipant

MEDIA_TIMEOUT_S = 20.0
STEP_TIMEOUT_S = 15.0
LEAVE_TIMEOUT_S = 5.0
MIN_FRAMES = 10  # video frames from the other side that count as "media flows"


class SoakParticipant(LoadParticipant):
    """A load participant that keeps the newest resume token and counts chat lines."""

    chats_received: int = 0
    leaving = False  # set before ``leave``: a renegotiation racing the close is expected then

    async def _answer(self, sdp: str) -> None:
        try:
            await super()._answer(sdp)
        except (aiohttp.ClientConnectionResetError, ConnectionResetError):
            if not self.leaving:
                raise

    def _on_message(self, msg: dict[str, Any]) -> None:
        super()._on_message(msg)
        kind = msg["type"]
        if kind == "resume_token":
            self.resume_token = str(msg["token"])
        elif kind == "chat":
            self.chats_received += 1

    def video_frames_from(self, other: SoakParticipant) -> int:
        owner = other.participant_id or ""
        return sum(s.frames for s in self.stats if s.kind == "video" and s.owner == owner)

    def trim(self) -> None:
        """Forget what was already read (a consultation's messages only matter to itself)."""
        self.messages.clear()


@dataclass
class Plan:
    """What each consultation does."""

    base_url: str
    access_token: str
    journal_client_ids: tuple[str, ...]
    call_s: float = 45.0
    chats: int = 4  # lines each side sends
    reconnect_every: int = 2  # every n-th consultation's client reconnects mid-call (0: never)
    end_room_every: int = 3  # every n-th consultation ends by end_room instead of leave


@dataclass
class Tally:
    """Counts over the whole soak."""

    consultations_started: int = 0
    consultations_done: int = 0
    joins: int = 0
    admits: int = 0
    reconnects: int = 0
    chats_sent: int = 0
    chats_received: int = 0
    notes: int = 0
    leaves: int = 0
    room_ends: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)

    def error(self, stage: str, exc: BaseException) -> None:
        self.errors[stage] += 1
        if len(self.error_samples) < 50:
            self.error_samples.append(f"{time.strftime('%H:%M:%S')} {stage}: {exc!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "consultations_started": self.consultations_started,
            "consultations_done": self.consultations_done,
            "joins": self.joins,
            "admits": self.admits,
            "reconnects": self.reconnects,
            "chats_sent": self.chats_sent,
            "chats_received": self.chats_received,
            "notes": self.notes,
            "leaves": self.leaves,
            "room_ends": self.room_ends,
            "errors": dict(self.errors),
            "error_count": sum(self.errors.values()),
            "error_samples": self.error_samples,
        }


class Api:
    """The node's HTTP API as the practitioner's dashboard calls it."""

    def __init__(self, http: aiohttp.ClientSession, base_url: str, access_token: str) -> None:
        self._http = http
        self._base = base_url
        self._auth = {"Authorization": f"Bearer {access_token}"}

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with asyncio.timeout(STEP_TIMEOUT_S):
            async with self._http.post(self._base + path, json=body, headers=self._auth) as r:
                answer = await r.json()
                if r.status not in (200, 201):
                    raise RuntimeError(f"POST {path}: {r.status} {answer}")
                return dict(answer)

    async def room_with_tokens(self) -> tuple[str, str, str]:
        room = await self.post("/api/v1/rooms", {"waiting_room": True})
        room_id = str(room["room_id"])
        tokens = [
            str((await self.post(f"/api/v1/rooms/{room_id}/tokens", {"role": role}))["token"])
            for role in ("practitioner", "client")
        ]
        return room_id, tokens[0], tokens[1]

    async def new_journal_client(self, name: str) -> str:
        return str((await self.post("/api/journal/clients", {"name": name}))["id"])

    async def note(self, client_id: str, text: str, consultation_id: str) -> None:
        body = {"text": text, "consultation_id": consultation_id}
        await self.post(f"/api/journal/clients/{client_id}/notes", body)


async def media_flows(a: SoakParticipant, b: SoakParticipant, limit_s: float) -> None:
    """Until each has MIN_FRAMES more video frames from the other than now."""
    start_ab, start_ba = a.video_frames_from(b), b.video_frames_from(a)
    deadline = time.monotonic() + limit_s
    while a.video_frames_from(b) < start_ab + MIN_FRAMES or (
        b.video_frames_from(a) < start_ba + MIN_FRAMES
    ):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no media within {limit_s:g} s")
        await asyncio.sleep(0.1)


class Consultation:
    """One consultation from room creation to leave; counts into the shared tally."""

    def __init__(self, plan: Plan, api: Api, clip: Clip, tally: Tally, index: int) -> None:
        self.plan, self.api, self.clip, self.tally, self.index = plan, api, clip, tally, index
        self.stage = "create"
        self.room_id = ""
        self.people: list[SoakParticipant] = []

    async def run(self, stop: asyncio.Event) -> bool:
        """True when every step worked; errors are counted by stage, never raised."""
        self.tally.consultations_started += 1
        try:
            await self._run(stop)
            self.tally.consultations_done += 1
            return True
        except Exception as exc:
            self.tally.error(self.stage, exc)
            return False
        finally:
            for p in self.people:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(LEAVE_TIMEOUT_S * 2):
                        await p.close()

    async def _run(self, stop: asyncio.Event) -> None:
        self.room_id, p_token, c_token = await self.api.room_with_tokens()
        ws = self.plan.base_url.replace("http://", "ws://") + "/ws"
        doctor = SoakParticipant(ws, p_token, self.clip, name="Dr. Soak")
        client = SoakParticipant(ws, c_token, self.clip, name=f"Klient {self.index}")
        self.people = [doctor, client]
        self.stage = "practitioner_join"
        async with asyncio.timeout(STEP_TIMEOUT_S):
            await doctor.start()
        self.tally.joins += 1
        await self._admit(doctor, client)
        self.stage = "media"
        await media_flows(doctor, client, MEDIA_TIMEOUT_S)
        await self._call(doctor, client, stop)
        self.stage = "note"
        journal = self.plan.journal_client_ids[self.index % len(self.plan.journal_client_ids)]
        text = f"Soak note {self.index}: session held, {self.plan.chats} lines each way."
        await self.api.note(journal, text, self.room_id)
        self.tally.notes += 1
        await self._leave(doctor, client)

    async def _admit(self, doctor: SoakParticipant, client: SoakParticipant) -> None:
        self.stage = "client_join"
        async with asyncio.timeout(STEP_TIMEOUT_S):
            welcome = await client.connect()
            if welcome["type"] != "welcome":
                raise RuntimeError(f"hello refused: {welcome}")
            await client.send({"type": "join", "name": client.name})
            await client.expect("waiting")
            self.tally.joins += 1
            self.stage = "admit"
            await doctor.send({"type": "admit", "participant_id": client.participant_id})
            joined = await client.expect("joined", "error", "bye")
            if joined["type"] != "joined":
                raise RuntimeError(f"not admitted: {joined}")
            self.tally.admits += 1
            self.stage = "client_publish"
            await client.publish(welcome)

    async def _call(
        self, doctor: SoakParticipant, client: SoakParticipant, stop: asyncio.Event
    ) -> None:
        """The call itself: chat lines spread over ``call_s``, a reconnect halfway on some."""
        plan = self.plan
        reconnect = plan.reconnect_every > 0 and self.index % plan.reconnect_every == 0
        steps = max(1, plan.chats)
        pause = plan.call_s / steps
        for k in range(steps):
            if stop.is_set():
                break
            self.stage = "chat"
            for who, p in (("p", doctor), ("c", client)):
                if k < plan.chats:
                    await p.send(
                        {"type": "chat", "text": f"linje {k} fra {who}", "id": f"{who}{k}"}
                    )
                    self.tally.chats_sent += 1
            if reconnect and k == steps // 2:
                self.stage = "reconnect"
                async with asyncio.timeout(STEP_TIMEOUT_S * 2):
                    await client.resume(within=STEP_TIMEOUT_S)
                self.tally.reconnects += 1
                self.stage = "media_after_reconnect"
                await media_flows(doctor, client, MEDIA_TIMEOUT_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), pause)
        self.tally.chats_received += doctor.chats_received + client.chats_received
        for p in (doctor, client):
            p.trim()

    async def _leave(self, doctor: SoakParticipant, client: SoakParticipant) -> None:
        self.stage = "leave"
        doctor.leaving = client.leaving = True
        async with asyncio.timeout(LEAVE_TIMEOUT_S * 2):
            await client.send({"type": "leave"})
            await client.expect("bye")
            self.tally.leaves += 1
            if self.plan.end_room_every > 0 and self.index % self.plan.end_room_every == 0:
                await doctor.send({"type": "end_room"})
                self.tally.room_ends += 1
            else:
                await doctor.send({"type": "leave"})
                self.tally.leaves += 1
            await doctor.expect("bye")
