"""The backup file format: a plaintext manifest, then the contents in streaming AES-256-GCM.

    magic     "FORTROLIG-BACKUP\\n" (17 bytes)
    manifest  MANIFEST_BYTES of canonical JSON, space-padded: format_version, created_at,
              source_kind, key_id, content_sha256, content_bytes
    contents  the recording format (:mod:`fortrolig.recording.stream_aead`, Tink's
              AES256_GCM_HKDF_4KB), associated data = magic ‖ the manifest's fixed fields

The contents reuse the project's one streaming AEAD rather than a second format. Every segment
authenticates its index and whether it is last, so truncation, reordering or a changed byte fail;
the associated data binds format version, time, kind and key id, so they cannot be swapped. The
SHA-256 is checked after decryption: a changed checksum is caught as a mismatch. ``key_id`` is a
hash of the key, so a wrong key is told apart from a damaged file before anything is decrypted.
The manifest is written last, into its reserved space, because the checksum is known only then.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, cast

from fortrolig.backup.errors import (
    BackupCorrupt,
    BackupExists,
    BackupNotFound,
    BackupUnsupported,
    BackupWrongKey,
)
from fortrolig.core.aead import KEY_BYTES
from fortrolig.core.config import read_private_file
from fortrolig.core.errors import ConfigError
from fortrolig.recording.stream_aead import EncryptingWriter, SegmentReader, StreamIntegrityError

MAGIC = b"FORTROLIG-BACKUP\n"
MANIFEST_BYTES = 1024
FORMAT_VERSION = 1
SOURCE_KINDS = ("sqlite", "postgresql")
_PREFIX = len(MAGIC) + MANIFEST_BYTES


@dataclass(frozen=True)
class Manifest:
    """What ``verify`` reports and checks without restoring."""

    format_version: int
    created_at: str
    source_kind: str
    key_id: str
    content_sha256: str
    content_bytes: int

    def associated_data(self) -> bytes:
        """The fields the ciphertext is bound to (everything known before the contents)."""
        fixed = [self.format_version, self.created_at, self.source_kind, self.key_id]
        return MAGIC + json.dumps(fixed, separators=(",", ":")).encode("ascii")

    def encode(self) -> bytes:
        """Canonical JSON padded to :data:`MANIFEST_BYTES`."""
        raw = json.dumps(asdict(self), sort_keys=True).encode("ascii")
        return raw.ljust(MANIFEST_BYTES, b" ")


def key_id(key: bytes) -> str:
    """A public fingerprint of a backup key (SHA-256 under a label; reveals nothing of it)."""
    return hashlib.sha256(b"fortrolig backup key id\0" + key).hexdigest()[:32]


def new_key_file(path: Path) -> bytes:
    """Create a fresh 0600 key file (never overwriting one); return the key."""
    key = os.urandom(KEY_BYTES)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BackupExists(f"key file {path} exists already") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(base64.b64encode(key) + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    return key


def read_key_file(path: Path) -> bytes:
    """The key in a private (0600) key file; a missing file is :class:`BackupNotFound`."""
    if not path.exists():
        raise BackupNotFound(f"no backup key file at {path}")
    raw = read_private_file(path, "backup key file").strip()
    try:
        key = base64.b64decode(raw, validate=True)
    except ValueError:
        raise ConfigError(f"backup key file {path} is not base64") from None
    if len(key) != KEY_BYTES:
        raise ConfigError(f"backup key file {path} does not hold a {KEY_BYTES}-byte key")
    return key


class _Window(io.RawIOBase):
    """A file seen from ``base`` on: the streaming AEAD addresses its segments from offset 0."""

    def __init__(self, raw: BinaryIO, base: int) -> None:
        super().__init__()
        self._raw, self._base = raw, base

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            return self._raw.seek(self._base + offset) - self._base
        return self._raw.seek(offset, whence) - self._base

    def tell(self) -> int:
        return self._raw.tell() - self._base

    def read(self, size: int = -1) -> bytes:
        return self._raw.read(size)

    def write(self, data: Any) -> int:
        return self._raw.write(data)

    def flush(self) -> None:
        self._raw.flush()


def _window(raw: BinaryIO) -> BinaryIO:
    return cast(BinaryIO, _Window(raw, _PREFIX))


def write_backup(
    path: Path, chunks: Iterable[bytes], *, key: bytes, source_kind: str, created_at: str
) -> Manifest:
    """Encrypt ``chunks`` into a new backup file at ``path`` (0600, atomic by rename)."""
    if path.exists():
        raise BackupExists(f"{path} exists already; backups are never overwritten")
    temp = path.with_name(f".{path.name}.partial")
    draft = Manifest(FORMAT_VERSION, created_at, source_kind, key_id(key), "", 0)
    digest, size = hashlib.sha256(), 0
    fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w+b") as raw:
            raw.write(MAGIC + b" " * MANIFEST_BYTES)
            with EncryptingWriter(_window(raw), key, draft.associated_data()) as writer:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    writer.write(chunk)
            manifest = replace(draft, content_sha256=digest.hexdigest(), content_bytes=size)
            raw.seek(len(MAGIC))
            raw.write(manifest.encode())
            raw.flush()
            os.fsync(raw.fileno())
        os.rename(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return manifest


def read_manifest(raw: BinaryIO) -> Manifest:
    """Parse and check the manifest; the contents are not touched."""
    head = raw.read(_PREFIX)
    if len(head) < _PREFIX or not head.startswith(MAGIC):
        raise BackupCorrupt("not a Fortrolig backup (or truncated before its manifest)")
    try:
        doc = json.loads(head[len(MAGIC) :])
        version = doc["format_version"]
    except (ValueError, KeyError, TypeError):
        raise BackupCorrupt("the backup's manifest is unreadable") from None
    if version != FORMAT_VERSION:
        raise BackupUnsupported(
            f"backup format version {version!r}; this version reads {FORMAT_VERSION}"
        )
    try:
        manifest = Manifest(**doc)
    except TypeError:
        raise BackupCorrupt("the backup's manifest has unexpected fields") from None
    if manifest.source_kind not in SOURCE_KINDS:
        raise BackupUnsupported(f"unknown backup source kind {manifest.source_kind!r}")
    return manifest


def open_backup(path: Path) -> BinaryIO:
    """Open a backup file for reading; a missing file is :class:`BackupNotFound`."""
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise BackupNotFound(f"no backup file at {path}") from None
    except OSError as exc:
        raise BackupNotFound(f"cannot open backup {path}: {exc.strerror}") from None


def iter_contents(raw: BinaryIO, key: bytes) -> tuple[Manifest, Iterator[bytes]]:
    """The manifest and the authenticated plaintext, segment by segment.

    The iterator raises :class:`BackupCorrupt` on any failed segment and, at its end, when the
    SHA-256 or length disagree with the manifest: consume it fully before trusting any of it.
    """
    raw.seek(0)
    manifest = read_manifest(raw)
    if manifest.key_id != key_id(key):
        raise BackupWrongKey("this key file is not the key the backup was made with")
    try:
        reader = SegmentReader(_window(raw), key, manifest.associated_data())
    except StreamIntegrityError as exc:
        raise BackupCorrupt(f"backup contents fail authentication: {exc.message}") from None
    return manifest, _segments(reader, manifest)


def _segments(reader: SegmentReader, manifest: Manifest) -> Iterator[bytes]:
    digest, size = hashlib.sha256(), 0
    for index in range(reader.segments):
        try:
            plain = reader.segment(index)
        except StreamIntegrityError as exc:
            raise BackupCorrupt(f"backup contents fail authentication: {exc.message}") from None
        digest.update(plain)
        size += len(plain)
        yield plain
    if size != manifest.content_bytes or digest.hexdigest() != manifest.content_sha256:
        raise BackupCorrupt("backup contents do not match the manifest's SHA-256")


def verify(path: Path, key: bytes) -> Manifest:
    """Check a backup completely (manifest, every segment, checksum) without restoring it."""
    with open_backup(path) as raw:
        manifest, contents = iter_contents(raw, key)
        for _ in contents:
            pass
    return manifest


def read_all(path: Path, key: bytes) -> tuple[Manifest, bytes]:
    """The verified plaintext of a backup (held in memory; journals are small)."""
    with open_backup(path) as raw:
        manifest, contents = iter_contents(raw, key)
        return manifest, b"".join(contents)
