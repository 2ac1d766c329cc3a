"""The SFU: rooms of peers, wiring each publisher's tracks to every other participant.

:class:`Sfu` is the in-process :class:`~fortrolig.media.backend.MediaBackend` (and what each media
worker process runs); the signaling side calls it structurally, through its own Protocol.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

from fortrolig.core.errors import BadRequest, Conflict, NotFound
from fortrolig.core.metrics import Sample

from . import _fastpath
from . import aiortc_hooks as hooks
from .backend import PeerEvents
from .counters import MediaCounters
from .forwarding import PublishedTrack
from .peer import Peer
from .settings import MediaSettings
from .subscriber import RecordedPart, RecorderFactory, RecordingSubscriber, Subscriber

DROPPED = "dropped_"  # counters of datagrams dropped by kind: one labelled metric family

log = logging.getLogger(__name__)


class Sfu:
    """Selective forwarding unit for the rooms of this process."""

    def __init__(self, settings: MediaSettings, recorders: RecorderFactory | None = None) -> None:
        self.settings = settings
        # Recording needs a recorder factory from the composition root (media does not import
        # the recording package): without one, start_recording says recording_unavailable.
        self._recorder_factory = recorders
        self._recordings: dict[tuple[str, str], RecordingSubscriber] = {}
        self.counters = MediaCounters()
        self.codec_guard = hooks.CodecGuard()
        self._rooms: dict[str, dict[str, Peer]] = {}
        self._subscribers: dict[str, list[Subscriber]] = {}  # room id -> Python subscribers
        self._closed = False
        self._pump: _fastpath.Pump | None = None
        hooks.restrict_host_addresses(settings.ice_host_addresses)
        if settings.forbid_transcoding:
            self.codec_guard.install()

    # -- MediaBackend --------------------------------------------------------------------

    async def start(self) -> None:
        """Nothing to start: the native I/O thread starts with the first peer."""

    async def open_peer(self, room_id: str, participant_id: str, events: PeerEvents) -> None:
        """Create the peer of a participant admitted to ``room_id`` (replacing a stale one)."""
        self._check_open()
        room = self._rooms.setdefault(room_id, {})
        stale = room.get(participant_id)
        if stale is not None:
            await self.close_peer(room_id, participant_id)
            room = self._rooms.setdefault(room_id, {})
        room[participant_id] = Peer(
            participant_id, self.settings, self.counters, events, self._io_pump()
        )

    async def publish(self, room_id: str, participant_id: str, offer_sdp: str) -> str:
        """Apply the participant's publishing offer, subscribe everyone; returns the answer."""
        peer = self._peer(room_id, participant_id)
        answer = await peer.publish(offer_sdp)
        for other in self._rooms.get(room_id, {}).values():
            if other is peer or not other.has_published or other.closed:
                continue
            for track in peer.published:
                other.subscribe(track)
            for track in other.published:
                peer.subscribe(track)
        for subscriber in self._subscribers.get(room_id, ()):
            for track in peer.published:
                _add_subscriber(track, subscriber)
        return answer

    def attach_subscriber(self, room_id: str, subscriber: Subscriber) -> None:
        """Give ``subscriber`` every track of ``room_id``, present and future, through the
        same fan-out that feeds the forwarding legs (media/subscriber.py). The room need not
        have peers yet; it is told of every existing track at once."""
        self._check_open()
        attached = self._subscribers.setdefault(room_id, [])
        if subscriber in attached:
            return
        attached.append(subscriber)
        for peer in self._rooms.get(room_id, {}).values():
            if not peer.closed:
                for track in peer.published:
                    _add_subscriber(track, subscriber)

    def detach_subscriber(self, room_id: str, subscriber: Subscriber) -> None:
        """Stop delivering ``room_id``'s packets to ``subscriber``; idempotent. It is not told
        of track removals after this."""
        attached = self._subscribers.get(room_id, [])
        if subscriber in attached:
            attached.remove(subscriber)
        if not attached:
            self._subscribers.pop(room_id, None)
        for peer in self._rooms.get(room_id, {}).values():
            for track in peer.published:
                track.remove_subscriber(subscriber)

    # -- recording (a subscriber like any other) ------------------------------------------

    async def start_recording(
        self, room_id: str, recording_id: str, key: bytes, participants: tuple[str, ...]
    ) -> None:
        """Attach a recorder of ``participants``' tracks to ``room_id``, its files encrypted
        under ``key`` (``recording_unavailable`` without a recorder factory,
        ``recording_running`` if this recording is already attached)."""
        self._check_open()
        if self._recorder_factory is None:
            raise Conflict("this node does not record", code="recording_unavailable")
        if len(key) != 32:
            raise BadRequest("a recording key is 32 bytes", code="bad_field")
        if (room_id, recording_id) in self._recordings:
            raise Conflict("this recording is already running", code="recording_running")
        recorder = self._recorder_factory(recording_id, key, participants)
        self._recordings[(room_id, recording_id)] = recorder
        self.attach_subscriber(room_id, recorder)

    async def include_in_recording(
        self, room_id: str, recording_id: str, participant_id: str
    ) -> None:
        """``participant_id`` consented to the running recording: record them too."""
        self._recording(room_id, recording_id).include(participant_id)

    async def stop_recording(self, room_id: str, recording_id: str) -> tuple[RecordedPart, ...]:
        """Detach and close the recorder; returns its finished files (``no_recording``)."""
        recorder = self._recording(room_id, recording_id)
        del self._recordings[(room_id, recording_id)]
        self.detach_subscriber(room_id, recorder)
        return tuple(recorder.close())

    def _recording(self, room_id: str, recording_id: str) -> RecordingSubscriber:
        recorder = self._recordings.get((room_id, recording_id))
        if recorder is None:
            raise NotFound("no such recording in this room", code="no_recording")
        return recorder

    def _close_recordings(self, room_id: str | None) -> None:
        # A room that closes while recording (signaling stops recordings first; this is the
        # worker shutting down): the files are finished, so start-up recovery can import them.
        for (room, rid), recorder in list(self._recordings.items()):
            if room_id is None or room == room_id:
                del self._recordings[(room, rid)]
                try:
                    recorder.close()
                except Exception:
                    log.exception("recording %s did not close cleanly", rid)

    async def answer(self, room_id: str, participant_id: str, answer_sdp: str) -> None:
        """Apply the participant's answer to the SFU's renegotiation offer."""
        await self._peer(room_id, participant_id).answer(answer_sdp)

    async def add_candidate(
        self,
        room_id: str,
        participant_id: str,
        candidate: str,
        sdp_mid: str | None,
        sdp_mline_index: int | None,
    ) -> None:
        """A trickled ICE candidate from the participant."""
        await self._peer(room_id, participant_id).add_candidate(candidate, sdp_mid, sdp_mline_index)

    async def close_peer(self, room_id: str, participant_id: str) -> None:
        """Remove a participant: its legs in other peers go inactive; idempotent."""
        room = self._rooms.get(room_id)
        if room is None:
            return
        peer = room.pop(participant_id, None)
        if peer is None:
            return
        for other in room.values():
            other.unsubscribe(participant_id)
        await peer.close()
        if not room:
            self._rooms.pop(room_id, None)

    async def close_room(self, room_id: str) -> None:
        """Close every peer of the room and forget its subscribers; idempotent."""
        self._close_recordings(room_id)
        for pid in list(self._rooms.get(room_id, {})):
            await self.close_peer(room_id, pid)
        self._rooms.pop(room_id, None)
        self._subscribers.pop(room_id, None)

    async def close(self) -> None:
        """Close every room; afterwards every call raises. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for room_id in list(self._rooms):
            await self.close_room(room_id)
        self._close_recordings(None)  # recordings of rooms without peers left
        if self._pump is not None:
            asyncio.get_running_loop().remove_reader(self._pump.notify_fd)
            self._pump.stop()

    def _io_pump(self) -> _fastpath.Pump | None:
        """The native I/O thread of this SFU, started with the first peer (needs the loop)."""
        if not self.settings.io_thread:
            return None
        if self._pump is None:
            self._pump = _fastpath.Pump()
            asyncio.get_running_loop().add_reader(self._pump.notify_fd, self._pump.dispatch)
            self.counters.pump = self._pump
        return self._pump

    async def srtp_profile(self, room_id: str, participant_id: str) -> str | None:
        """The SRTP profile negotiated with a participant (None until connected)."""
        return self._peer(room_id, participant_id).srtp_profile()

    # -- observability -------------------------------------------------------------------

    async def refresh(self) -> None:
        """Nothing to fetch: :meth:`samples` reads this process's state at scrape time."""

    def peer_count(self) -> int:
        return sum(len(r) for r in self._rooms.values())

    def snapshot(self) -> dict[str, Any]:
        """Plain-data state for metrics (also sent by media workers to the signaling process)."""
        states: dict[str, int] = {}
        legs = 0
        for room in self._rooms.values():
            for peer in room.values():
                st = peer.pc.connectionState
                states[st] = states.get(st, 0) + 1
                legs += len(peer.slots)
        return {
            "peers_by_state": states,
            "peers": self.peer_count(),
            "rooms": len(self._rooms),
            "legs": legs,
            "counters": self.counters.as_dict(),
            "codec_instances": self.codec_guard.decoders + self.codec_guard.encoders,
        }

    def samples(self) -> Iterator[Sample]:
        """Metric samples read at scrape time (see core.metrics)."""
        return samples_from_snapshots([self.snapshot()])

    def _peer(self, room_id: str, participant_id: str) -> Peer:
        self._check_open()
        peer = self._rooms.get(room_id, {}).get(participant_id)
        if peer is None:
            raise NotFound("no media peer for this participant", code="no_peer")
        return peer

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("SFU is closed")


def _add_subscriber(track: PublishedTrack, subscriber: Subscriber) -> None:
    """Tell ``subscriber`` of ``track`` first, then start its packets."""
    if track.closed:
        return
    subscriber.track_added(track)
    track.add_subscriber(subscriber)


def samples_from_snapshots(snapshots: list[dict[str, Any]]) -> Iterator[Sample]:
    """Metric samples summed over one or more SFU snapshots (one per media worker)."""
    states: dict[str, int] = {}
    counters: dict[str, int] = {name: 0 for name in MediaCounters().as_dict()}
    rooms = legs = codecs = 0
    for snap in snapshots:
        for st, n in snap["peers_by_state"].items():
            states[st] = states.get(st, 0) + n
        for name, value in snap["counters"].items():
            counters[name] = counters.get(name, 0) + value
        rooms += snap["rooms"]
        legs += snap["legs"]
        codecs += snap["codec_instances"]
    for st in ("new", "connecting", "connected", "failed", "closed"):
        yield Sample(
            "fortrolig_media_peers",
            "Peer connections by state",
            "gauge",
            states.get(st, 0),
            {"state": st},
        )
    yield Sample("fortrolig_media_rooms", "Rooms with media peers", "gauge", rooms)
    yield Sample("fortrolig_media_legs", "Forwarding legs (track x subscriber)", "gauge", legs)
    for name, value in counters.items():
        if name.startswith(DROPPED):
            yield Sample(
                "fortrolig_media_dropped_datagrams_total",
                "Datagrams dropped at a media port before parsing, by kind",
                "counter",
                value,
                {"kind": name.removeprefix(DROPPED)},
            )
            continue
        yield Sample(
            f"fortrolig_media_{name}_total", f"Media path counter: {name}", "counter", value
        )
    yield Sample(
        "fortrolig_media_codec_instances_total",
        "Decoders and encoders created by the SFU (must stay 0: no transcoding)",
        "counter",
        codecs,
    )
