"""Ed25519 signing keys for JWTs, kept as PKCS8 PEM files in ``<data_dir>/keys``.

The newest key file signs; every key file in the folder verifies, which is how rotation works:
:func:`rotate_signing_key` adds a key, and old files are removed by hand once the longest token
lifetime has passed. Key files are created mode 0600 inside a 0700 folder and refused when group
or others may access them.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fortrolig.core.config import read_private_file
from fortrolig.core.errors import ConfigError

KEYS_DIR = "keys"
_KEY_FILE_RE = re.compile(r"^signing-([0-9a-f]{16})\.pem$")


def key_id(public_key: Ed25519PublicKey) -> str:
    """Return the kid: the first 16 hex characters of SHA-256 over the raw public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private Ed25519 key and its kid."""

    kid: str
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The matching public key."""
        return self.private_key.public_key()

    @classmethod
    def generate(cls) -> SigningKey:
        """Return a fresh key (not stored anywhere)."""
        private_key = Ed25519PrivateKey.generate()
        return cls(key_id(private_key.public_key()), private_key)


class KeySet(Mapping[str, Ed25519PublicKey]):
    """The pinned, read-only set of verification keys, by kid."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey]) -> None:
        self._keys: Mapping[str, Ed25519PublicKey] = MappingProxyType(dict(keys))

    @classmethod
    def of(cls, *public_keys: Ed25519PublicKey) -> KeySet:
        """Build a keyset from public keys, computing each kid."""
        return cls({key_id(key): key for key in public_keys})

    def __getitem__(self, kid: str) -> Ed25519PublicKey:
        return self._keys[kid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeySet({sorted(self._keys)})"


def load_or_create_signing_keys(data_dir: Path) -> tuple[SigningKey, KeySet]:
    """Load every key in ``data_dir/keys`` (creating one on first start).

    Returns the newest key (by file modification time) for signing and a keyset of all keys for
    verifying. Raises :class:`ConfigError` for a key file accessible by group/others, a file that
    is not an Ed25519 PKCS8 PEM key, or a file whose name does not match its key.
    """
    keys_dir = _keys_dir(data_dir)
    loaded = _load_all(keys_dir)
    if not loaded:
        _write_key(keys_dir, SigningKey.generate())
        loaded = _load_all(keys_dir)
    newest = max(loaded, key=lambda item: (item[0], item[1].kid))[1]
    return newest, KeySet.of(*(key.public_key for _, key in loaded))


def rotate_signing_key(data_dir: Path) -> SigningKey:
    """Add a new key to ``data_dir/keys``; it becomes the signing key on the next load."""
    keys_dir = _keys_dir(data_dir)
    newest_before = max((mtime for mtime, _ in _load_all(keys_dir)), default=0)
    key = SigningKey.generate()
    path = _write_key(keys_dir, key)
    if path.stat().st_mtime_ns <= newest_before:
        # Coarse filesystem timestamps must not make the new key look older than the old one.
        os.utime(path, ns=(newest_before + 1, newest_before + 1))
    return key


def _keys_dir(data_dir: Path) -> Path:
    keys_dir = data_dir / KEYS_DIR
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = keys_dir.stat().st_mode
    if mode & 0o022:
        # Whoever can write here could plant a key that verifies tokens.
        raise ConfigError(f"key folder {keys_dir} is writable by group/others; chmod 700 it")
    return keys_dir


def _load_all(keys_dir: Path) -> list[tuple[int, SigningKey]]:
    result = []
    for path in sorted(keys_dir.iterdir()):
        match = _KEY_FILE_RE.match(path.name)
        if match:
            result.append(_load_key(path, match.group(1)))
    return result


def _load_key(path: Path, expected_kid: str) -> tuple[int, SigningKey]:
    data = read_private_file(path, "key file")
    key = _parse_key(path, data)
    if key.kid != expected_kid:
        raise ConfigError(f"key file {path} holds key {key.kid}, not {expected_kid}")
    return os.stat(path).st_mtime_ns, key


def _parse_key(path: Path, data: bytes) -> SigningKey:
    try:
        private_key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"key file {path} is not an unencrypted PEM key: {exc}") from None
    if not isinstance(private_key, Ed25519PrivateKey):
        raise ConfigError(f"key file {path} is not an Ed25519 key")
    return SigningKey(key_id(private_key.public_key()), private_key)


def _write_key(keys_dir: Path, key: SigningKey) -> Path:
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    final = keys_dir / f"signing-{key.kid}.pem"
    temp = keys_dir / f".signing-{key.kid}.pem.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, final)  # atomic: a crash never leaves a half-written key file
    return final
