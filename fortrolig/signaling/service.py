"""The signaling state machine: one Session per WebSocket, rooms, and the media backend.

No transport here: a Session receives parsed messages and emits messages through an
:class:`Outbound` (the WebSocket layer owns ordering and size limits). User errors are raised as
:class:`FortroligError`; the transport turns them into ``error`` messages, or closes the
connection for the fatal ones. Where the service ends a connection on its own initiative (the
room ended, a denial, a move, a redirect, a replaced connection) it names the
:class:`~fortrolig.signaling.closes.Ending`; the close code comes from that one mapping.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fortrolig.coordination.base import CoordinationUnavailable
from fortrolig.coordination.local import LocalCoordination
from fortrolig.core.clock import Clock
from fortrolig.core.config import Config
from fortrolig.core.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    ProtocolError,
    RateLimited,
    Unauthenticated,
)
from fortrolig.core.ids import new_id
from fortrolig.core.metrics import Histogram, Sample
from fortrolig.core.slot import Slot

from . import protocol as p
from .auth import Claims, Role, TokenIssuer, TokenKind, TokenVerifier, VerificationMode
from .closes import Ending, Outbound, end_connection
from .cluster import Cluster, ThisNode
from .ports import MediaBackend, Recordings
from .recording_session import RecordingControl
from .recording_session import handlers as recording_handlers
from .records import ADMITTED, DENIED, MemoryRoomStore, RoomRecord, RoomStore
from .rooms import Participant, Room, RoomRegistry, TokenBucket, chat_burst
from .turn import ice_servers_for

log = logging.getLogger(__name__)

AccessGate = Callable[[str], Awaitable[None]]
"""Checks that a room owner may hold sessions now; raises ``subscription_required`` if not."""

# Join latency (hello received → the participant's peer connected), in seconds.
JOIN_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0)

ROOM_IDLE_S = 300.0

"""A live room with nobody in it (or a lease without a live room) is given up after this."""


@dataclass
class Counters:
    """Signaling totals for /metrics."""

    sessions_opened: int = 0
    joins: int = 0
    chats: int = 0
    redirects: int = 0


class SignalingService:
    """Rooms, sessions and the media backend of this node."""

    def __init__(
        self,
        config: Config,
        media: MediaBackend,
        issuer: TokenIssuer,
        verifier: TokenVerifier,
        clock: Clock,
        turn_secret: bytes | None = None,
        *,
        room_store: RoomStore | None = None,
        cluster: Cluster | None = None,
        access_gate: Slot[AccessGate] | None = None,
        recordings: Recordings | None = None,
    ) -> None:
        self.config = config
        self.media = media
        self.issuer = issuer
        self.verifier = verifier
        self.clock = clock
        self.turn_secret = turn_secret
        # Unit tests get in-memory records and a one-node cluster; a node gets the database's
        # records and the configured coordination (app/server.py).
        self.room_store: RoomStore = room_store or MemoryRoomStore()
        self.cluster = cluster or standalone_cluster(config, clock)
        self._idle_since: dict[str, float] = {}  # room id -> monotonic time it became idle
        # Filled by the composition root while subscriptions are enforced (and open): raises
        # (Forbidden, code subscription_required) unless the practitioner may hold sessions.
        self._access_gate: Slot[AccessGate] = access_gate if access_gate is not None else Slot()
        self.rooms = RoomRegistry(
            config.rooms.default_max_participants, config.rooms.max_participants_limit
        )
        self.sessions: dict[str, Session] = {}
        # Without a Recordings port (unit tests, a node that does not record) every recording
        # request is refused with recording_unavailable.
        self.recording = RecordingControl(recordings, self._send_to)
        self.counters = Counters()
        self.errors_by_code: dict[str, int] = {}
        self.messages_by_type: dict[str, int] = {}
        self.join_latency = Histogram(JOIN_LATENCY_BUCKETS)

    @property
    def offers_turn(self) -> bool:
        """Whether ``welcome`` carries TURN servers (URLs configured and the secret read)."""
        return bool(self.config.media.turn_urls) and self.turn_secret is not None

    def check_force_relay(self, force_relay: bool) -> None:
        """Refuse ``force_relay`` (``turn_not_configured``) on a node without TURN.

        A relay-only browser without a TURN server gathers no candidate at all: refusing now
        beats handing out a room nobody can connect to.
        """
        if force_relay and not self.offers_turn:
            raise Conflict(
                "force_relay needs TURN (media.turn_urls and media.turn_secret_file)",
                code="turn_not_configured",
            )

    def ice_servers(self, participant_id: str) -> list[dict[str, Any]]:
        """STUN as configured and TURN with credentials minted for this participant."""
        media = self.config.media
        return ice_servers_for(
            media.stun_urls,
            media.turn_urls,
            self.turn_secret,
            participant_id,
            self.clock.now(),
            media.turn_credential_ttl_s,
        )

    def new_session(self, out: Outbound) -> Session:
        """A session for a new connection (it must say hello first)."""
        self.counters.sessions_opened += 1
        return Session(self, out)

    async def check_owner_access(self, owner: str) -> None:
        """Refuse (typed error) when the room owner's subscription does not allow sessions."""
        gate = self._access_gate.get()
        if gate is not None:
            await gate(owner)

    async def end_rooms_of(self, owner: str, reason: str) -> int:
        """End the live rooms of ``owner`` on this node (suspension, subscription end); how
        many. Every node's subscription sweep does the same for the rooms it serves."""
        ended = 0
        for room in self.rooms.owned_by(owner):
            await self.end_room(room.id, reason)
            ended += 1
        return ended

    def room_owners(self) -> set[str]:
        """Practitioners with at least one live room."""
        return {room.owner for room in self.rooms.all()}

    async def create_room(
        self,
        owner: str,
        max_participants: int | None,
        has_waiting_room: bool = False,
        regions: tuple[str, ...] | None = None,
        force_relay: bool = False,
    ) -> RoomRecord:
        """A new room record for ``owner`` (placed on a node at its first ``hello``); with
        ``has_waiting_room``, clients wait to be let in; with ``force_relay`` every browser uses
        TURN relay candidates only (``turn_not_configured`` when this node hands out no TURN).
        ``no_node_in_region`` when no live node of its regions (default:
        ``coordination.default_regions`` or this node's) takes rooms."""
        size = self.rooms.check_size(max_participants)
        self.check_force_relay(force_relay)
        allowed = (
            regions or self.config.coordination.default_regions or (self.config.server.region,)
        )
        await self.cluster.check_placeable(allowed)
        record = RoomRecord(
            new_id("room"),
            owner,
            size,
            has_waiting_room,
            self.clock.now(),
            tuple(allowed),
            force_relay=force_relay,
        )
        await self.room_store.add_room(record)
        return record

    async def room_record(self, room_id: str) -> RoomRecord:
        """The open room ``room_id`` as stored (``room_not_found`` if unknown or ended)."""
        record = await self.room_store.room(room_id) if room_id else None
        if record is None or record.closed:
            raise NotFound("no such room", code="room_not_found")
        return record

    async def live_room(self, record: RoomRecord) -> Room:
        """This node's live copy of ``record`` (loaded with who was admitted or denied)."""
        room = self.rooms.find(record.id)
        if room is None:
            members = await self.room_store.members(record.id)
            # Another hello may have loaded it meanwhile: one live copy, or sessions split.
            room = self.rooms.find(record.id)
        if room is None:
            room = self.rooms.add(
                Room(
                    record.id,
                    record.owner,
                    record.max_participants,
                    record.created_at,
                    has_waiting_room=record.has_waiting_room,
                    admitted=set(members.admitted),
                    denied=set(members.denied),
                )
            )
        return room

    async def serving_node(self, room_id: str) -> str | None:
        """The id of the node holding the room's lease, if any (None when Redis is down)."""
        try:
            lease = await self.cluster.coordination.lease(room_id)
        except CoordinationUnavailable:
            return None
        return None if lease is None else lease.node_id

    async def remember_member(self, room: Room, participant_id: str, admitted: bool) -> None:
        """Store an admission or denial, so that it holds on any node after a restart."""
        await self.room_store.set_member(room.id, participant_id, ADMITTED if admitted else DENIED)

    def issue_join_token(
        self, room: Room | RoomRecord, role: Role, name: str | None
    ) -> tuple[str, Claims]:
        """A single-use join token for ``room``."""
        return self.issuer.mint(
            TokenKind.JOIN,
            new_id("sub"),
            role,
            ttl_s=self.config.auth.join_token_ttl_s,
            room=room.id,
            name=name,
        )

    def issue_client_token(
        self,
        room: Room | RoomRecord,
        verification: VerificationMode,
        verified: str | None,
        name: str | None,
        returning: bool = False,
    ) -> tuple[str, Claims]:
        """A single-use client join token carrying how the client was verified (and whether it
        comes back through an invite it had used before)."""
        return self.issuer.mint(
            TokenKind.JOIN,
            new_id("sub"),
            Role.CLIENT,
            ttl_s=self.config.auth.join_token_ttl_s,
            room=room.id,
            name=name,
            verification=verification,
            verified=verified,
            returning=returning,
        )

    def _send_to(self, participant_id: str, msg: p.ServerMessage) -> None:
        session = self.sessions.get(participant_id)
        if session is not None and not session.closed:
            session.out.send(msg)

    def notify_waiting(self, room: Room) -> None:
        """Tell every practitioner in ``room`` who waits now (the ``waiting_room`` message)."""
        if not room.has_waiting_room or room.closed:
            return
        msg = p.WaitingRoom(clients=tuple(_waiting_info(x) for x in room.waiting.values()))
        for participant in room.participants.values():
            session = self.sessions.get(participant.id)
            if participant.role == Role.PRACTITIONER.value and session and not session.closed:
                session.out.send(msg)

    async def end_room(self, room_id: str, reason: str) -> None:
        """End a room for everyone (waiting clients too): stored as ended first, then ``bye``
        and close 1000 on this node, media closed. A room served by another node is ended there
        at its next heartbeat (it sees the record closed)."""
        await self.room_store.close_room(room_id, self.clock.now())
        await self._end_live_copy(room_id, reason)

    async def _end_live_copy(self, room_id: str, reason: str) -> None:
        room = self.rooms.find(room_id)
        if room is None:
            return
        await self.recording.end_room(room, reason)
        self.rooms.close(room_id)
        for pid in [*room.participants, *room.waiting]:
            session = self.sessions.get(pid)
            if session is not None:
                end_connection(session.out, Ending.ROOM_ENDED, reason)
                await session.close(reason)
        await self.media.close_room(room_id)
        await self.cluster.release(room_id)

    async def lose_room(self, room_id: str, why: str) -> None:
        """Stop serving a room that another node serves now (lease lost) or that this node hands
        over (drain): every connection closes with 4503 and reconnects to its new owner."""
        room = self.rooms.find(room_id)
        if room is None:
            await self.cluster.release(room_id)
            return
        await self.recording.end_room(room, why)
        self.rooms.forget(room_id)
        for pid in [*room.participants, *room.waiting]:
            session = self.sessions.get(pid)
            if session is not None:
                end_connection(session.out, Ending.MOVED, why)
                await session.close(why)
        await self.media.close_room(room_id)
        await self.cluster.release(room_id)

    async def cluster_tick(self) -> None:
        """One heartbeat: renew leases (ending the copies of lost rooms), end rooms that another
        node marked ended in the records, and unload rooms idle for :data:`ROOM_IDLE_S`."""
        lost = await self.cluster.beat(len(self.rooms), self.rooms.participant_count())
        for room_id in lost:
            await self.lose_room(room_id, "lease_lost")
        live = [room.id for room in self.rooms.all()]
        for room_id in await self.room_store.ended_among(live) if live else ():
            await self._end_live_copy(room_id, "room_ended")
        self.expire_away()
        await self._unload_idle()

    @property
    def rejoin_grace_s(self) -> int:
        """How long a dropped participant's place is held: ``rooms.rejoin_grace_s``, but never
        longer than its last resume token surely lives (renewed every resume_token_ttl_s / 2)."""
        cfg = self.config
        return min(cfg.rooms.rejoin_grace_s, cfg.auth.resume_token_ttl_s // 2)

    def tell_room(self, room: Room, msg: p.ServerMessage) -> None:
        """Send ``msg`` to everyone present in ``room``."""
        for pid in list(room.participants):
            session = self.sessions.get(pid)
            if session is not None and not session.closed:
                session.out.send(msg)

    def tell_left(self, room: Room, participant_id: str, reason: str) -> None:
        """Tell everyone present that ``participant_id`` has left (for good)."""
        self.tell_room(room, p.ParticipantLeft(participant_id=participant_id, reason=reason))

    def expire_away(self) -> None:
        """Participants whose held place ran out have left (reason ``disconnected``)."""
        now = self.clock.monotonic()
        for room in self.rooms.all():
            for gone in room.expire_away(now):
                self.tell_left(room, gone.id, "disconnected")

    async def _unload_idle(self) -> None:
        """Give up rooms nobody is in (and leases of rooms never loaded here, e.g. a hello whose
        token was then refused) once idle for ROOM_IDLE_S: the room stays open in the records
        and is placed again by its next hello, so memory and leases do not grow without end."""
        now = self.clock.monotonic()
        busy = {r.id for r in self.rooms.all() if r.participants or r.waiting or r.away}
        held = set(self.cluster.held_rooms()) | {r.id for r in self.rooms.all()}
        for room_id in list(self._idle_since):
            if room_id in busy or room_id not in held:
                del self._idle_since[room_id]
        for room_id in held - busy:
            since = self._idle_since.setdefault(room_id, now)
            if now - since >= ROOM_IDLE_S:
                del self._idle_since[room_id]
                if self.rooms.forget(room_id) is not None:
                    await self.media.close_room(room_id)
                await self.cluster.release(room_id)

    def count_error(self, code: str) -> None:
        self.errors_by_code[code] = self.errors_by_code.get(code, 0) + 1

    def count_message(self, kind: str) -> None:
        self.messages_by_type[kind] = self.messages_by_type.get(kind, 0) + 1

    def samples(self) -> Iterator[Sample]:
        """Metric samples read at scrape time."""
        yield Sample("fortrolig_rooms", "Open rooms", "gauge", len(self.rooms))
        yield Sample(
            "fortrolig_participants",
            "Participants in rooms",
            "gauge",
            self.rooms.participant_count(),
        )
        yield Sample(
            "fortrolig_participants_away",
            "Participants whose connection dropped, their place held for the rejoin grace",
            "gauge",
            self.rooms.away_count(),
        )
        yield Sample(
            "fortrolig_ws_sessions", "Open signaling sessions", "gauge", len(self.sessions)
        )
        yield Sample(
            "fortrolig_waiting_clients",
            "Clients in waiting rooms (not yet admitted)",
            "gauge",
            self.rooms.waiting_count(),
        )
        yield Sample("fortrolig_joins_total", "Room joins", "counter", self.counters.joins)
        yield Sample(
            "fortrolig_chat_messages_total", "Chat lines relayed", "counter", self.counters.chats
        )
        yield Sample(
            "fortrolig_ws_redirects_total",
            "Hellos sent on to the node that serves the room",
            "counter",
            self.counters.redirects,
        )
        yield Sample(
            "fortrolig_leases_held",
            "Rooms whose lease this node holds",
            "gauge",
            len(self.cluster.held_rooms()),
        )
        yield Sample(
            "fortrolig_coordination_up",
            "1 while the coordination store answers this node's heartbeats, else 0",
            "gauge",
            1.0 if self.cluster.healthy else 0.0,
        )
        for kind, n in self.messages_by_type.items():
            yield Sample(
                "fortrolig_ws_messages_total",
                "WebSocket messages received by type",
                "counter",
                n,
                {"type": kind},
            )
        for code, n in self.errors_by_code.items():
            yield Sample(
                "fortrolig_ws_errors_total",
                "Errors sent or closes by code",
                "counter",
                n,
                {"code": code},
            )
        yield self.join_latency.sample(
            "fortrolig_join_latency_seconds",
            "Seconds from a participant's hello to its media peer connected",
        )


class Session:
    """One signaling connection: hello → welcome → join → offer/answer … → leave."""

    def __init__(self, service: SignalingService, out: Outbound) -> None:
        self.service = service
        self.out = out
        self.claims: Claims | None = None
        self.participant: Participant | None = None
        self.room: Room | None = None
        self.closed = False
        self._published = False
        self._hello_at: float | None = None  # for the join latency histogram
        now = service.clock.monotonic()
        cfg = service.config.signaling
        self._chat_bucket = TokenBucket(cfg.chat_rate_per_s, cfg.chat_burst, now)
        self._handlers: dict[type[Any], Callable[[Any], Any]] = {
            p.Join: self._on_join,
            p.Offer: self._on_offer,
            p.Answer: self._on_answer,
            p.Candidate: self._on_candidate,
            p.Chat: self._on_chat,
            p.MediaState: self._on_media_state,
            p.MuteParticipant: self._on_mute_participant,
            p.SetScreenShare: self._on_set_screen_share,
            p.RemoveParticipant: self._on_remove_participant,
            p.Leave: self._on_leave,
            p.Ping: self._on_ping,
            p.EndRoom: self._on_end_room,
            p.Admit: self._on_admit,
            p.Deny: self._on_deny,
            **recording_handlers(self),
        }

    @property
    def authenticated(self) -> bool:
        return self.claims is not None

    async def hello(self, msg: p.Hello) -> None:
        """Authenticate with a join or resume token; answers ``welcome``, or ``redirect`` when
        another node serves the room (then the session is over: the client goes there)."""
        self._hello_at = self.service.clock.monotonic()
        if msg.v != p.PROTOCOL_VERSION:
            raise ProtocolError(
                f"protocol version {msg.v} is not supported", code="unsupported_version"
            )
        # Checked first, consumed last: a client refused for a reason that may pass (no node up
        # in its region, Redis unreachable) keeps a token it can try again with.
        claims, kind = await self._verify(msg.token, consume=False)
        record = await self.service.room_record(claims.room or "")
        await self.service.check_owner_access(record.owner)
        owner = await self.service.cluster.owner_of(record.id, record.regions)
        await self.service.verifier.verify(msg.token, kind, consume=True)
        participant_id = new_id("p") if kind is TokenKind.JOIN else claims.sub
        self.claims = claims
        self.participant = Participant(
            participant_id,
            claims.role.value,
            claims.name,
            verification=claims.verification.value if claims.verification else None,
            verified=claims.verified,
            returning=claims.returning,
        )
        if owner.node_id != self.service.cluster.node.node_id:
            self._redirect(owner.url)
            return
        room = await self.service.live_room(record)
        self.room = room
        self.out.send(
            p.Welcome(
                v=p.PROTOCOL_VERSION,
                participant_id=participant_id,
                room_id=room.id,
                role=claims.role.value,
                ice_servers=tuple(self.service.ice_servers(participant_id)),
                ice_transport_policy="relay" if record.force_relay else "all",
                resume_token=self._resume_token(),
                limits={
                    "max_message_bytes": self.service.config.signaling.max_message_bytes,
                    "chat_max_bytes": self.service.config.signaling.chat_max_bytes,
                    "max_participants": room.max_participants,
                },
            )
        )

    def _redirect(self, url: str) -> None:
        """Send the client to the owner node with a resume token naming the same participant."""
        base = url.rstrip("/")
        ws_url = "wss://" + base[8:] if base.startswith("https://") else "ws://" + base[7:]
        self.service.counters.redirects += 1
        self.out.send(
            p.Redirect(url=base, ws_url=ws_url + "/ws", resume_token=self._resume_token())
        )
        end_connection(self.out, Ending.REDIRECTED, "served by another node")
        self.closed = True

    async def _verify(self, token: str, *, consume: bool) -> tuple[Claims, TokenKind]:
        verifier = self.service.verifier
        try:
            return await verifier.verify(token, TokenKind.JOIN, consume=consume), TokenKind.JOIN
        except Unauthenticated as exc:
            if exc.code != "token_audience":
                raise
        # A resume token names the participant it resumes (claims.sub).
        return await verifier.verify(token, TokenKind.RESUME, consume=consume), TokenKind.RESUME

    def refresh_resume_token(self) -> None:
        """Send a fresh resume token (the previous one keeps working until it expires)."""
        if not self.closed and self.claims is not None and self.participant is not None:
            self.out.send(p.ResumeToken(token=self._resume_token()))

    def _resume_token(self) -> str:
        assert self.claims is not None and self.participant is not None
        return self.service.issuer.issue(
            TokenKind.RESUME,
            self.participant.id,
            self.claims.role,
            ttl_s=self.service.config.auth.resume_token_ttl_s,
            room=self.claims.room,
            name=self.participant.name,
            verification=self.claims.verification,
            verified=self.claims.verified,
            returning=self.claims.returning,
        )

    async def handle(self, msg: p.ClientMessage) -> None:
        """Dispatch one parsed message of an authenticated session."""
        if isinstance(msg, p.Hello):
            raise Conflict("hello was already received", code="already_authenticated")
        await self._handlers[type(msg)](msg)

    # -- handlers ------------------------------------------------------------------------

    async def _on_join(self, msg: p.Join) -> None:
        room, me = self._authed()
        current = self.service.sessions.get(me.id)
        if current is self:
            raise Conflict("already joined", code="already_joined")
        if current is not None:  # a resumed participant replaces its silently dead connection
            end_connection(current.out, Ending.REPLACED, "replaced by a new connection")
            await current.close("replaced")
        if me.id in room.participants or me.id in room.waiting:
            raise Conflict("already joined", code="already_joined")
        room.come_back(me.id)  # its held place (if any) is taken back by entering below
        if msg.name:
            me.name = msg.name
        if room.must_wait(me):
            # Not the media path: no peer, no offer accepted until a practitioner admits.
            room.enqueue(me)
            self.service.sessions[me.id] = self
            self.out.send(p.Waiting())
            self.service.notify_waiting(room)
            return
        room.admit(me)
        self.service.sessions[me.id] = self
        await self._enter(room, me)
        if me.role == Role.PRACTITIONER.value and room.has_waiting_room:
            self.out.send(
                p.WaitingRoom(clients=tuple(_waiting_info(x) for x in room.waiting.values()))
            )

    async def _enter(self, room: Room, me: Participant) -> None:
        """The participant is in the room: open its media peer and tell everyone."""
        self.service.counters.joins += 1
        await self.service.media.open_peer(room.id, me.id, self)
        roster = tuple(_info(x) for x in room.roster(me.id))
        self.out.send(p.Joined(participants=roster, screen_share=room.screen_share))
        self._broadcast(p.ParticipantJoined(participant=_info(me)))
        await self.service.recording.entered(room, me)

    async def _on_offer(self, msg: p.Offer) -> None:
        room, me = self._joined()
        if self._published:  # the client's one publish offer was already made
            raise Conflict("already published; the client never re-offers", code="already_joined")
        answer = await self.service.media.publish(room.id, me.id, msg.sdp)
        self._published = True
        self.out.send(p.Answer(sdp=answer))

    async def _on_answer(self, msg: p.Answer) -> None:
        room, me = self._joined()
        await self.service.media.answer(room.id, me.id, msg.sdp)

    async def _on_candidate(self, msg: p.Candidate) -> None:
        room, me = self._joined()
        await self.service.media.add_candidate(
            room.id, me.id, msg.candidate, msg.sdpMid, msg.sdpMLineIndex
        )

    async def _on_chat(self, msg: p.Chat) -> None:
        _room, me = self._joined()
        size = len(msg.text.encode("utf-8"))
        limit = self.service.config.signaling.chat_max_bytes
        if size > limit:
            raise BadRequest(f"chat text is {size} bytes, limit {limit}", code="chat_too_long")
        if not msg.text.strip() or any(_is_control(c) for c in msg.text):
            raise BadRequest("chat text is empty or has control characters", code="chat_invalid")
        burst = chat_burst(self.service.config.signaling.chat_burst, _room.max_participants)
        self._chat_bucket.set_burst(burst)
        if not self._chat_bucket.allow(self.service.clock.monotonic()):
            raise RateLimited("too many chat messages", code="rate_limited")
        self.service.counters.chats += 1
        line = p.ChatMessage(
            id=msg.id, from_id=me.id, text=msg.text, ts=int(self.service.clock.now() * 1000)
        )
        self._broadcast(line, include_self=True)

    async def _on_media_state(self, msg: p.MediaState) -> None:
        room, me = self._joined()
        if msg.screen and not me.screen and not _may_share(room, me):
            raise Forbidden(
                "the practitioner allows only practitioners to share a screen",
                code="screen_share_not_allowed",
            )  # nothing of the message applies: the page sends it again without the screen
        me.audio, me.video = msg.audio, msg.video
        me.audio_blocked, me.video_blocked = msg.audio_blocked, msg.video_blocked
        me.screen = msg.screen
        me.quality, me.audio_only = msg.quality, msg.audio_only
        self._broadcast(p.ParticipantUpdated(participant=_info(me)), include_self=True)

    async def _on_leave(self, msg: p.Leave) -> None:
        end_connection(self.out, Ending.LEFT, "left")
        await self.close("left")

    async def _on_end_room(self, msg: p.EndRoom) -> None:
        room, me = self._joined()
        if me.role != Role.PRACTITIONER.value:
            raise Forbidden(
                "only a practitioner can end the consultation", code="practitioner_only"
            )
        await self.service.end_room(room.id, "room_ended")

    async def _on_admit(self, msg: p.Admit) -> None:
        room = self._practitioner_in_room("admit")
        target = self._waiting_session(room, msg.participant_id)
        self._free_held_place(room, msg.participant_id)
        room.check_let_in(msg.participant_id)  # room_full: nothing changes, it keeps waiting
        # Stored before it takes effect: after a restart or a move the client is still admitted.
        await self.service.remember_member(room, msg.participant_id, admitted=True)
        client = room.let_in(msg.participant_id)
        await target._enter(room, client)
        self.service.notify_waiting(room)

    async def _on_deny(self, msg: p.Deny) -> None:
        room = self._practitioner_in_room("deny")
        target = self._waiting_session(room, msg.participant_id)
        await self.service.remember_member(room, msg.participant_id, admitted=False)
        room.turn_away(msg.participant_id)
        end_connection(target.out, Ending.DENIED, "denied")
        await target.close("denied")  # leaves the waiting list; practitioners are told

    async def _on_set_screen_share(self, msg: p.SetScreenShare) -> None:
        room, me = self._joined()
        if me.role != Role.PRACTITIONER.value:
            raise Forbidden(
                "only a practitioner can decide who shares a screen", code="practitioner_only"
            )
        room.screen_share = msg.allowed
        self._broadcast(p.ScreenShare(allowed=msg.allowed, by=me.id), include_self=True)
        for x in room.participants.values():
            if x.screen and not _may_share(room, x):
                x.screen = False  # its page stops sharing on screen_share; seen at once
                self._broadcast(p.ParticipantUpdated(participant=_info(x)), include_self=True)

    async def _on_mute_participant(self, msg: p.MuteParticipant) -> None:
        room = self._practitioner_in_room("mute")
        target = self._member(room, msg.participant_id)
        session = self.service.sessions.get(target.id)
        target.audio = False  # seen at once; the page confirms with its own media_state
        if session is not None and not session.closed:
            assert self.participant is not None
            session.out.send(p.Muted(by=self.participant.id))
        self._broadcast(p.ParticipantUpdated(participant=_info(target)), include_self=True)

    async def _on_remove_participant(self, msg: p.RemoveParticipant) -> None:
        room = self._practitioner_in_room("remove")
        assert self.participant is not None
        if msg.participant_id == self.participant.id:
            raise BadRequest("leave instead of removing yourself", code="bad_target")
        self._member(room, msg.participant_id)
        # Stored before it takes effect: its resume token cannot bring it back, on any node.
        await self.service.remember_member(room, msg.participant_id, admitted=False)
        room.expel(msg.participant_id)
        session = self.service.sessions.get(msg.participant_id)
        if session is not None:
            end_connection(session.out, Ending.REMOVED, "removed")
            await session.close("removed")
        else:  # its place was held (away; its media already freed): give it up
            room.come_back(msg.participant_id)
            self.service.tell_left(room, msg.participant_id, "removed")

    def _member(self, room: Room, participant_id: str) -> Participant:
        found = room.participants.get(participant_id) or room.away.get(participant_id)
        if found is None:
            raise NotFound("no such participant in the room", code="not_in_room")
        return found

    def _free_held_place(self, room: Room, participant_id: str) -> None:
        """Admitting into a room full only because of a held place gives that place up: the
        practitioner's decision wins over a client who may not come back (e.g. the same client
        returning through the invite link after closing the tab)."""
        if room.occupied(participant_id) < room.max_participants:
            return
        held = room.oldest_away_client()
        if held is not None:
            room.come_back(held.id)
            self.service.tell_left(room, held.id, "replaced")

    def _practitioner_in_room(self, what: str) -> Room:
        room, me = self._joined()
        if me.role != Role.PRACTITIONER.value:
            raise Forbidden(f"only a practitioner can {what} clients", code="practitioner_only")
        return room

    def _waiting_session(self, room: Room, participant_id: str) -> Session:
        room.waiting_client(participant_id)  # not_waiting unless that client waits here
        session = self.service.sessions.get(participant_id)
        if session is None or session.closed:
            raise NotFound("no such client in the waiting room", code="not_waiting")
        return session

    async def _on_ping(self, msg: p.Ping) -> None:
        self.out.send(p.Pong())

    # -- MediaEvents ---------------------------------------------------------------------

    async def send_offer(self, participant_id: str, sdp: str) -> None:
        """The SFU renegotiates: forward its offer to the browser."""
        if not self.closed:
            self.out.send(p.Offer(sdp=sdp))

    async def media_connected(self, participant_id: str) -> None:
        """The participant's peer connected: that ends its join (observed once per hello)."""
        if self._hello_at is not None and not self.closed:
            self.service.join_latency.observe(self.service.clock.monotonic() - self._hello_at)
            self._hello_at = None

    async def media_failed(self, participant_id: str, reason: str) -> None:
        """The participant's peer connection failed: tell it, then close (it may resume)."""
        if self.closed:
            return
        self.service.count_error("media_failed")
        self.out.send(p.Error(code="media_failed", message=f"media connection failed: {reason}"))
        end_connection(self.out, Ending.MEDIA_FAILED, "media failed")
        await self.close("media_failed", hold=True)

    # -- helpers -------------------------------------------------------------------------

    def _authed(self) -> tuple[Room, Participant]:
        if self.room is None or self.participant is None:
            raise ProtocolError("say hello first", code="not_authenticated")
        return self.room, self.participant

    def _joined(self) -> tuple[Room, Participant]:
        room, me = self._authed()
        if me.id in room.waiting and self.service.sessions.get(me.id) is self:
            raise Conflict("wait until the practitioner lets you in", code="not_admitted")
        if me.id not in room.participants or self.service.sessions.get(me.id) is not self:
            raise Conflict("join the room first", code="not_joined")
        return room, me

    def _broadcast(self, msg: p.ServerMessage, include_self: bool = False) -> None:
        room, me = self._authed()
        for pid in list(room.participants):
            if pid == me.id and not include_self:
                continue
            session = self.service.sessions.get(pid)
            if session is not None and not session.closed:
                session.out.send(msg)

    async def close(self, reason: str, *, hold: bool = False) -> None:
        """Leave the room and free the media peer; idempotent.

        With ``hold`` (the connection went away without a ``leave``: a reload, a crash, a
        network change) an admitted participant's place is held for the rejoin grace.
        """
        if self.closed:
            return
        self.closed = True
        room, me = self.room, self.participant
        if room is None or me is None or self.service.sessions.get(me.id) is not self:
            return
        del self.service.sessions[me.id]
        if room.waiting.pop(me.id, None) is not None:  # it never reached the media path
            self.service.notify_waiting(room)
            return
        grace = self.service.rejoin_grace_s
        held = hold and grace > 0 and not room.closed
        if held:
            room.hold(me.id, self.service.clock.monotonic() + grace)
        else:
            room.remove(me.id)
        await self.service.recording.left(room, me)  # before its peer goes: tracks end cleanly
        await self.service.media.close_peer(room.id, me.id)
        if room.closed:  # the room ended: everyone gets `bye room_ended`, not participant_left
            return
        if held:
            self.service.tell_room(room, p.ParticipantAway(participant_id=me.id, grace_s=grace))
        else:
            self.service.tell_left(room, me.id, reason)


def standalone_cluster(config: Config, clock: Clock, node_id: str = "local") -> Cluster:
    """A one-node cluster with in-process coordination (the embedded default, unit tests)."""
    node = ThisNode(node_id, config.server.region, config.server.base_url, clock.now())
    return Cluster(LocalCoordination(clock), node, clock, config.coordination, standalone=True)


def _is_control(c: str) -> bool:
    """A control character (C0, DEL, C1) other than newline and tab."""
    return unicodedata.category(c) == "Cc" and c not in "\n\t"


def _info(x: Participant) -> p.ParticipantInfo:
    return p.ParticipantInfo(
        id=x.id,
        role=x.role,
        name=x.name,
        audio=x.audio,
        video=x.video,
        away=x.away_until is not None,
        audio_blocked=x.audio_blocked,
        video_blocked=x.video_blocked,
        screen=x.screen,
        quality=x.quality,
        audio_only=x.audio_only,
    )


def _may_share(room: Room, x: Participant) -> bool:
    """Whether ``x`` may share a screen in ``room`` now."""
    return room.screen_share == "everyone" or x.role == Role.PRACTITIONER.value


def _waiting_info(x: Participant) -> p.WaitingClient:
    return p.WaitingClient(
        id=x.id,
        verification=x.verification or "none",
        name=x.name,
        verified=x.verified,
        returning=x.returning,
    )
