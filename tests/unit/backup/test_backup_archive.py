"""The backup file format: round trip, and every way a file can be wrong is refused, typed."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fortrolig.backup import archive
from fortrolig.backup.errors import (
    BackupCorrupt,
    BackupExists,
    BackupNotFound,
    BackupUnsupported,
    BackupWrongKey,
)
from fortrolig.core.errors import ConfigError
from fortrolig.recording.stream_aead import SEGMENT_BYTES

CONTENT = [os.urandom(5000), b"", os.urandom(3 * SEGMENT_BYTES + 17)]


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "backup.key"
    archive.new_key_file(path)
    return path


@pytest.fixture
def backup(tmp_path: Path, key_path: Path) -> Path:
    out = tmp_path / "journal.fbak"
    key = archive.read_key_file(key_path)
    archive.write_backup(out, CONTENT, key=key, source_kind="sqlite", created_at="2026-12-04")
    return out


def test_round_trip_and_manifest(backup: Path, key_path: Path) -> None:
    key = archive.read_key_file(key_path)
    manifest, data = archive.read_all(backup, key)
    assert data == b"".join(CONTENT)
    assert (manifest.format_version, manifest.source_kind) == (1, "sqlite")
    assert manifest.content_bytes == len(data) and manifest.created_at == "2026-12-04"
    assert archive.verify(backup, key) == manifest
    assert backup.stat().st_mode & 0o777 == 0o600
    assert key_path.stat().st_mode & 0o777 == 0o600
    # Nothing of the contents is in the clear.
    assert CONTENT[0][:64] not in backup.read_bytes()


def test_empty_contents_round_trip(tmp_path: Path, key_path: Path) -> None:
    key = archive.read_key_file(key_path)
    out = tmp_path / "empty.fbak"
    archive.write_backup(out, [], key=key, source_kind="postgresql", created_at="t")
    assert archive.read_all(out, key)[1] == b""


def test_wrong_key_is_told_apart(tmp_path: Path, backup: Path) -> None:
    other = tmp_path / "other.key"
    archive.new_key_file(other)
    with pytest.raises(BackupWrongKey):
        archive.verify(backup, archive.read_key_file(other))


@pytest.mark.parametrize("cut", [1, 100, SEGMENT_BYTES, 3000])
def test_truncated_is_corrupt(backup: Path, key_path: Path, cut: int) -> None:
    data = backup.read_bytes()
    backup.write_bytes(data[:-cut])
    with pytest.raises(BackupCorrupt):
        archive.verify(backup, archive.read_key_file(key_path))


def test_truncated_into_manifest_is_corrupt(backup: Path, key_path: Path) -> None:
    backup.write_bytes(backup.read_bytes()[:500])
    with pytest.raises(BackupCorrupt):
        archive.verify(backup, archive.read_key_file(key_path))


@pytest.mark.parametrize("where", [-1, -5000, archive._PREFIX + 3, archive._PREFIX + 9000])
def test_flipped_ciphertext_byte_is_corrupt(backup: Path, key_path: Path, where: int) -> None:
    data = bytearray(backup.read_bytes())
    data[where] ^= 0x01
    backup.write_bytes(bytes(data))
    with pytest.raises(BackupCorrupt):
        archive.verify(backup, archive.read_key_file(key_path))


def _edit_manifest(backup: Path, **changes: object) -> None:
    data = backup.read_bytes()
    start = len(archive.MAGIC)
    doc = json.loads(data[start : start + archive.MANIFEST_BYTES])
    doc.update(changes)
    raw = json.dumps(doc).encode().ljust(archive.MANIFEST_BYTES, b" ")
    backup.write_bytes(data[:start] + raw + data[start + archive.MANIFEST_BYTES :])


@pytest.mark.parametrize(
    "changes",
    [{"created_at": "2020-01-01"}, {"source_kind": "postgresql"}, {"content_sha256": "0" * 64}],
)
def test_changed_manifest_is_corrupt(backup: Path, key_path: Path, changes: dict[str, str]) -> None:
    _edit_manifest(backup, **changes)
    with pytest.raises(BackupCorrupt):
        archive.verify(backup, archive.read_key_file(key_path))


def test_unknown_format_version(backup: Path, key_path: Path) -> None:
    _edit_manifest(backup, format_version=2)
    with pytest.raises(BackupUnsupported, match="version 2"):
        archive.verify(backup, archive.read_key_file(key_path))


def test_not_a_backup(tmp_path: Path, key_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"SQLite format 3\0" + b"\0" * 4000)
    with pytest.raises(BackupCorrupt):
        archive.verify(junk, archive.read_key_file(key_path))


def test_missing_files(tmp_path: Path, key_path: Path) -> None:
    with pytest.raises(BackupNotFound):
        archive.verify(tmp_path / "nope.fbak", archive.read_key_file(key_path))
    with pytest.raises(BackupNotFound):
        archive.read_key_file(tmp_path / "nope.key")


def test_key_file_must_be_private(key_path: Path) -> None:
    key_path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        archive.read_key_file(key_path)


def test_never_overwrites(backup: Path, key_path: Path) -> None:
    before = backup.read_bytes()
    key = archive.read_key_file(key_path)
    with pytest.raises(BackupExists):
        archive.write_backup(backup, [b"x"], key=key, source_kind="sqlite", created_at="t")
    with pytest.raises(BackupExists):
        archive.new_key_file(key_path)
    assert backup.read_bytes() == before


def test_failed_write_leaves_nothing(tmp_path: Path, key_path: Path) -> None:
    def chunks() -> Iterator[bytes]:
        yield os.urandom(10_000)
        raise ConfigError("pg_dump failed")

    out = tmp_path / "x.fbak"
    key = archive.read_key_file(key_path)
    with pytest.raises(ConfigError):
        archive.write_backup(out, chunks(), key=key, source_kind="sqlite", created_at="t")
    assert list(tmp_path.glob("*x.fbak*")) == []
