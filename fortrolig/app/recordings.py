"""The node's recording port: signaling's consent decisions, the journal's storage, the media
side's recorder, wired together (:class:`~fortrolig.signaling.ports.Recordings`).

Order of each step, so that nothing acknowledged is lost and nothing unconsented is kept:

- **start**: the journal stores the recording first (its key sealed by the client's data key,
  audited), then a marker file ``<id>.active`` is written in the recording directory, then the
  media side attaches the recorder. If the media side fails, the recording is ended at once
  (``failed``) and the error goes back to the practitioner.
- **stop**: the recorder is detached and closed (its files finished), each file is
  authenticated in full and stored in the journal, then deleted; the end is recorded; the marker
  goes last. A part that fails authentication is not stored (and counted).
- **recovery** (at start-up): a marker left by a crash names a recording this node was making;
  whatever complete files it left are stored, incomplete ones (the streaming AEAD writes its
  first segment last) are deleted, and the recording is ended ``recovered``. Markers are local,
  so a node never finishes another live node's recording.

The files on disk are ciphertext only, mode 0600 in a 0700 directory; the key never touches disk.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from fortrolig.core.errors import NotFound
from fortrolig.core.metrics import Sample
from fortrolig.journal.recordings_model import RecordingPartInfo
from fortrolig.journal.service import JournalService
from fortrolig.media.backend import MediaBackend
from fortrolig.media.subscriber import RecordedPart
from fortrolig.recording.recorder import part_file_name
from fortrolig.recording.stream_aead import StreamIntegrityError

log = logging.getLogger(__name__)

MARKER_SUFFIX = ".active"
_PART_FILE = re.compile(r"(?P<rid>[A-Za-z0-9_-]{1,64})\.(?P<index>\d{1,6})\.webm\.enc")


class RecordingBridge:
    """Implements signaling's ``Recordings`` port on one node."""

    def __init__(
        self, journal: Callable[[], JournalService], media: MediaBackend, directory: Path
    ) -> None:
        self._journal = journal
        self._media = media
        self.directory = directory
        self.started = 0
        self.parts_stored = 0
        self.parts_rejected = 0
        self.recovered = 0

    # -- the port ---------------------------------------------------------------------------

    async def check_recordable(self, owner: str, client_id: str) -> None:
        """Refuse unless the client journal exists and belongs to ``owner``."""
        await self._journal().recordings.check_recordable(owner, client_id)

    async def audit(
        self, owner: str, client_id: str, action: str, recording_id: str, who: str
    ) -> None:
        """One consent step into the audit chain."""
        await self._journal().recordings.audit_consent(owner, client_id, action, recording_id, who)

    async def start(
        self,
        owner: str,
        client_id: str,
        room_id: str,
        recording_id: str,
        consented_by: tuple[str, ...],
        participants: tuple[str, ...],
    ) -> None:
        """Journal first, then the marker, then the recorder."""
        journal = self._journal().recordings
        key = await journal.begin(owner, client_id, room_id, recording_id, consented_by)
        try:
            self._write_marker(recording_id, room_id)
            await self._media.start_recording(room_id, recording_id, key, participants)
        except BaseException:
            await journal.finish(recording_id, "failed", consented_by)
            self._marker(recording_id).unlink(missing_ok=True)
            raise
        self.started += 1

    async def include(self, room_id: str, recording_id: str, participant_id: str) -> None:
        """A participant who came later consented: the recorder adds their tracks."""
        await self._media.include_in_recording(room_id, recording_id, participant_id)

    async def stop(
        self,
        owner: str,
        room_id: str,
        recording_id: str,
        reason: str,
        consented_by: tuple[str, ...],
    ) -> None:
        """Close the recorder, store its files, record the end, drop the marker."""
        try:
            parts: tuple[RecordedPart, ...] = await self._media.stop_recording(
                room_id, recording_id
            )
        except NotFound:
            parts = ()  # the worker restarted or the room closed: its files are on disk
        await self._store_parts(recording_id, [_info(p) for p in parts])
        await self._store_parts(recording_id, list(self._leftovers(recording_id)))
        await self._journal().recordings.finish(recording_id, reason, consented_by)
        self._marker(recording_id).unlink(missing_ok=True)

    # -- start-up recovery ------------------------------------------------------------------

    async def recover(self) -> int:
        """Finish the recordings a crash left (see the module docstring); returns how many."""
        count = 0
        for marker in sorted(self.directory.glob("*" + MARKER_SUFFIX)):
            recording_id = marker.name.removesuffix(MARKER_SUFFIX)
            try:
                part_file_name(recording_id, 0)
                await self._store_parts(recording_id, list(self._leftovers(recording_id)))
                await self._journal().recordings.finish(recording_id, "recovered", ())
            except NotFound:
                log.warning(
                    "recording %s: not in the journal (erased?); files dropped", recording_id
                )
                for path in self._files_of(recording_id):
                    path.unlink(missing_ok=True)
            marker.unlink(missing_ok=True)
            count += 1
        self.recovered += count
        return count

    # -- internals --------------------------------------------------------------------------

    async def _store_parts(self, recording_id: str, parts: list[RecordingPartInfo]) -> None:
        journal = self._journal().recordings
        for info in parts:
            path = self.directory / part_file_name(recording_id, info.index)
            if not path.exists():
                continue
            try:
                if await journal.add_part(recording_id, info, path):
                    self.parts_stored += 1
            except StreamIntegrityError:
                # Never complete (a crash before the recorder closed it) or damaged on disk:
                # it is ciphertext nobody can read; keeping it would only keep a secret around.
                self.parts_rejected += 1
                log.warning("recording %s part %d failed authentication", recording_id, info.index)
            path.unlink(missing_ok=True)

    def _files_of(self, recording_id: str) -> list[Path]:
        return [
            p
            for p in self.directory.glob(f"{recording_id}.*.webm.enc")
            if (m := _PART_FILE.fullmatch(p.name)) and m["rid"] == recording_id
        ]

    def _leftovers(self, recording_id: str) -> Iterator[RecordingPartInfo]:
        """Files of a recording whose description was lost (timeline unknown: 0 s)."""
        for path in sorted(self._files_of(recording_id), key=lambda p: p.name):
            match = _PART_FILE.fullmatch(path.name)
            assert match is not None
            yield RecordingPartInfo(int(match["index"]), 0.0, 0.0, 0, 0)

    def _marker(self, recording_id: str) -> Path:
        return self.directory / (recording_id + MARKER_SUFFIX)

    def _write_marker(self, recording_id: str, room_id: str) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        part_file_name(recording_id, 0)  # the id names a file: refuse anything unsafe
        fd = os.open(self._marker(recording_id), flags, 0o600)
        with os.fdopen(fd, "w") as file:
            json.dump({"room_id": room_id}, file)
            file.flush()
            os.fsync(file.fileno())

    def samples(self) -> Iterator[Sample]:
        """Counters for /metrics."""
        for name, help_text, value in (
            ("started", "Recordings started on this node", self.started),
            (
                "parts_stored",
                "Recording files authenticated and stored in the journal",
                self.parts_stored,
            ),
            (
                "parts_rejected",
                "Recording files that failed authentication (not stored)",
                self.parts_rejected,
            ),
            ("recovered", "Recordings finished at start-up after a crash", self.recovered),
        ):
            yield Sample(f"fortrolig_recordings_{name}_total", help_text, "counter", float(value))


def _info(part: RecordedPart) -> RecordingPartInfo:
    return RecordingPartInfo(
        part.index, part.starts_at_s, part.duration_s, part.frames, len(part.tracks)
    )
