"""Per-recording keys and how they are wrapped by a client's journal data key.

Every recording gets a fresh random 256-bit key; its file is encrypted under it
(:mod:`fortrolig.recording.stream_aead`). The key itself is stored only sealed by the client's
journal data key (AES-256-GCM, :func:`fortrolig.core.aead.seal`), bound by associated data to
the recording, so erasing the client's journal key (crypto-shredding) makes every recording of
that client unreadable, backups included. Wiring this to the journal is a later step: the
journal package is not imported here.
"""

from __future__ import annotations

from fortrolig.core.aead import AssociatedData, new_data_key, open_sealed, seal

KEY_SCHEMA = 1


def new_recording_key() -> bytes:
    """A fresh random 32-byte key for one recording."""
    return new_data_key()


def key_aad(tenant: str, client: str, recording_id: str, key_version: int) -> AssociatedData:
    """What a wrapped recording key is bound to: whose journal, which recording, which DEK."""
    return AssociatedData(
        tenant=tenant,
        client=client,
        record=recording_id,
        field="recording_key",
        version=1,
        key_version=key_version,
        schema_version=KEY_SCHEMA,
    )


def wrap_recording_key(journal_key: bytes, recording_key: bytes, aad: AssociatedData) -> bytes:
    """Seal ``recording_key`` under the client's journal data key."""
    return seal(journal_key, recording_key, aad)


def unwrap_recording_key(journal_key: bytes, wrapped: bytes, aad: AssociatedData) -> bytes:
    """Inverse of :func:`wrap_recording_key`; raises ``IntegrityError`` on any mismatch."""
    return open_sealed(journal_key, wrapped, aad)


def file_associated_data(recording_id: str, part: int) -> bytes:
    """The streaming AEAD's associated data of one file: a file cannot pass for another
    recording's, or for another part of the same recording."""
    return f"fortrolig-recording/1\x00{recording_id}\x00{part}".encode()
