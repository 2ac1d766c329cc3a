"""AES-256-GCM envelope encryption and the key-encryption-key (KEK) keyring.

Personal data at rest is sealed with AES-256-GCM under a random 256-bit data key (DEK) per unit of
erasure (a client's journal). DEKs are stored only wrapped by a KEK from a :class:`Keyring`
(RFC 5649 AES key wrap with padding), so rotating the KEK rewraps DEKs and never touches the data,
and destroying a DEK (crypto-shredding) makes everything sealed under it unreadable.

Every ciphertext is bound to its record by associated data (:class:`AssociatedData`): a ciphertext
copied to another row, another client, another key version or another schema version fails to
open. Any failure to open raises :class:`IntegrityError`; plaintext is never returned then.

Only the standard library and ``cryptography`` are imported here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap_with_padding,
    aes_key_wrap_with_padding,
)

from fortrolig.core.errors import ConfigError, Fault, FortroligError

KEY_BYTES = 32
"""AES-256: every DEK and KEK is 32 bytes."""
NONCE_BYTES = 12
"""96-bit random nonces; a client's journal stays far below the 2^32 messages-per-key limit."""
TAG_BYTES = 16
_AAD_MAGIC = b"fortrolig-aad/1"
_KEYRING_FORMAT = 1


class IntegrityError(FortroligError):
    """Stored data failed authentication: it was changed, moved, or the key is wrong or gone."""

    code = "integrity_error"
    status = 500
    fault: ClassVar[Fault] = "server"


def new_data_key() -> bytes:
    """Return a fresh random 256-bit data key."""
    return secrets.token_bytes(KEY_BYTES)


@dataclass(frozen=True, slots=True)
class AssociatedData:
    """What a ciphertext is bound to; encoded unambiguously (length-prefixed fields).

    ``tenant`` is the practitioner, ``client`` the client, ``record`` the row id, ``field`` which
    column of that row (so a name cannot be swapped with a contact), ``version`` the record
    version, ``key_version`` the DEK version, ``schema_version`` the plaintext format, and
    ``context`` any further plaintext metadata of the row that must not change (e.g. a note's
    author and time).
    """

    tenant: str
    client: str
    record: str
    field: str
    version: int
    key_version: int
    schema_version: int
    context: str = ""

    def encode(self) -> bytes:
        """Return the canonical byte encoding used as GCM associated data."""
        parts = [
            self.tenant,
            self.client,
            self.record,
            self.field,
            str(self.version),
            str(self.key_version),
            str(self.schema_version),
            self.context,
        ]
        out = bytearray(_AAD_MAGIC)
        for part in parts:
            raw = part.encode("utf-8")
            out += struct.pack(">I", len(raw)) + raw
        return bytes(out)


def seal(key: bytes, plaintext: bytes, aad: AssociatedData) -> bytes:
    """Encrypt ``plaintext`` under ``key``; returns ``nonce || ciphertext || tag``."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(_check_key(key)).encrypt(nonce, plaintext, aad.encode())


def open_sealed(key: bytes, blob: bytes, aad: AssociatedData) -> bytes:
    """Decrypt a :func:`seal` output; raises :class:`IntegrityError` on any mismatch."""
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise IntegrityError("ciphertext is truncated")
    try:
        return AESGCM(_check_key(key)).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad.encode())
    except InvalidTag:
        raise IntegrityError(
            f"ciphertext of {aad.field} {aad.record} failed authentication"
        ) from None


def _check_key(key: bytes) -> bytes:
    if len(key) != KEY_BYTES:
        # A short key would silently select AES-128/192 and break the AES-256 promise.
        raise IntegrityError(f"data key must be {KEY_BYTES} bytes, got {len(key)}")
    return key


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A DEK wrapped by one version of a KEK, as stored beside the data."""

    kek_id: str
    kek_version: int
    wrapped: bytes


class Keyring(Protocol):
    """Holds key-encryption keys; a file by default, a KMS or Vault Transit later."""

    @property
    def kek_id(self) -> str:
        """A stable identifier of this keyring (the same across rotations)."""
        ...

    @property
    def current_version(self) -> int:
        """The KEK version new wraps use."""
        ...

    def wrap(self, dek: bytes) -> WrappedKey:
        """Wrap ``dek`` with the current KEK version."""
        ...

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        """Return the DEK; raises :class:`IntegrityError` if it does not authenticate."""
        ...

    def rotate(self) -> int:
        """Add a new KEK version, make it current, and return its number."""
        ...


def wrap_key(kek: bytes, dek: bytes) -> bytes:
    """RFC 5649 AES key wrap of ``dek`` under ``kek``."""
    return aes_key_wrap_with_padding(_check_key(kek), dek)


def unwrap_key(kek: bytes, wrapped: bytes) -> bytes:
    """Inverse of :func:`wrap_key`; raises :class:`IntegrityError` on a wrong KEK or tampering."""
    try:
        dek = aes_key_unwrap_with_padding(_check_key(kek), wrapped)
    except (InvalidUnwrap, ValueError):
        raise IntegrityError("wrapped data key failed authentication") from None
    return _check_key(dek)


class FileKeyring:
    """KEKs kept in one JSON file (mode 0600), all versions retained so old wraps still open.

    The file is rewritten atomically (temporary file, fsync, rename, directory fsync), so a crash
    during :meth:`rotate` leaves either the old or the new keyring, never a partial one.
    """

    def __init__(self, path: Path, kek_id: str, versions: dict[int, bytes], current: int) -> None:
        self._path = path
        self._kek_id = kek_id
        self._versions = dict(versions)
        self._current = current

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> FileKeyring:
        """Load the keyring at ``path``; create it (one fresh KEK) when absent and ``create``."""
        if not path.exists():
            if not create:
                raise ConfigError(f"keyring {path} does not exist")
            kek_id = "file-" + secrets.token_hex(8)
            ring = cls(path, kek_id, {1: secrets.token_bytes(KEY_BYTES)}, 1)
            ring._save(exclusive=True)
            return ring
        return cls._load(path)

    @property
    def path(self) -> Path:
        """Where the keyring lives."""
        return self._path

    @property
    def kek_id(self) -> str:
        """The keyring's stable identifier."""
        return self._kek_id

    @property
    def current_version(self) -> int:
        """The KEK version used for new wraps."""
        return self._current

    @property
    def versions(self) -> tuple[int, ...]:
        """Every KEK version held, oldest first."""
        return tuple(sorted(self._versions))

    def wrap(self, dek: bytes) -> WrappedKey:
        """Wrap ``dek`` with the current KEK."""
        kek = self._versions[self._current]
        return WrappedKey(self._kek_id, self._current, wrap_key(kek, dek))

    def unwrap(self, wrapped: WrappedKey) -> bytes:
        """Unwrap with the KEK version the wrap names; unknown ids/versions are integrity errors."""
        if wrapped.kek_id != self._kek_id:
            raise IntegrityError(
                f"data key was wrapped by keyring {wrapped.kek_id!r}, not this one"
            )
        kek = self._versions.get(wrapped.kek_version)
        if kek is None:
            raise IntegrityError(f"keyring has no KEK version {wrapped.kek_version}")
        return unwrap_key(kek, wrapped.wrapped)

    def rotate(self) -> int:
        """Add a fresh KEK version and persist it before making it current."""
        new_version = max(self._versions) + 1
        self._versions[new_version] = secrets.token_bytes(KEY_BYTES)
        previous = self._current
        self._current = new_version
        try:
            self._save(exclusive=False)
        except BaseException:
            self._current = previous
            del self._versions[new_version]
            raise
        return new_version

    def fingerprint(self) -> str:
        """A short, non-secret digest of the current KEK, for logs."""
        return hashlib.sha256(b"fortrolig-kek-fp" + self._versions[self._current]).hexdigest()[:16]

    @classmethod
    def _load(cls, path: Path) -> FileKeyring:
        data = _read_private_file(path)
        try:
            doc = json.loads(data)
            if doc["format"] != _KEYRING_FORMAT:
                raise ValueError(f"unsupported keyring format {doc['format']!r}")
            versions = {int(v): base64.b64decode(k, validate=True) for v, k in doc["keks"].items()}
            current = int(doc["current"])
            kek_id = str(doc["kek_id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"keyring {path} is malformed: {exc}") from None
        if current not in versions or any(len(k) != KEY_BYTES for k in versions.values()):
            raise ConfigError(f"keyring {path} is malformed: bad current version or key length")
        return cls(path, kek_id, versions, current)

    def _save(self, *, exclusive: bool) -> None:
        doc = {
            "format": _KEYRING_FORMAT,
            "kek_id": self._kek_id,
            "current": self._current,
            "keks": {
                str(v): base64.b64encode(k).decode("ascii") for v, k in self._versions.items()
            },
        }
        _write_private_file(self._path, json.dumps(doc, indent=1).encode("ascii"), exclusive)


def _read_private_file(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise ConfigError(f"cannot open keyring {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_mode & 0o077:
            raise ConfigError(
                f"keyring {path} must be a regular file of mode 0600 "
                f"(is {stat.S_IMODE(info.st_mode):04o})"
            )
        return handle.read()


def _write_private_file(path: Path, data: bytes, exclusive: bool) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if exclusive and path.exists():
        raise ConfigError(f"keyring {path} already exists")
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself must survive a power cut
    finally:
        os.close(dir_fd)
