"""Signing keys on disk: creation, permissions, rotation, refusal of bad files."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fortrolig.core.errors import ConfigError
from fortrolig.core.keys import (
    KeySet,
    SigningKey,
    key_id,
    load_or_create_signing_keys,
    rotate_signing_key,
)


def key_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "keys").glob("signing-*.pem"))


def test_first_start_creates_a_private_key(tmp_path: Path) -> None:
    signing, keyset = load_or_create_signing_keys(tmp_path)
    (path,) = key_files(tmp_path)
    assert path.name == f"signing-{signing.kid}.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert list(keyset) == [signing.kid]
    assert not list((tmp_path / "keys").glob(".*"))  # no temp file left behind


def test_second_start_loads_the_same_key(tmp_path: Path) -> None:
    first, _ = load_or_create_signing_keys(tmp_path)
    again, keyset = load_or_create_signing_keys(tmp_path)
    assert again.kid == first.kid and len(keyset) == 1
    assert len(key_files(tmp_path)) == 1


def test_kid_is_sha256_of_raw_public_key() -> None:
    key = SigningKey.generate()
    raw = key.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key.kid == key_id(key.public_key) == hashlib.sha256(raw).hexdigest()[:16]
    assert len(key.kid) == 16


def test_signature_round_trip(tmp_path: Path) -> None:
    signing, keyset = load_or_create_signing_keys(tmp_path)
    signature = signing.private_key.sign(b"data")
    keyset[signing.kid].verify(signature, b"data")


def test_rotation_newest_signs_all_verify(tmp_path: Path) -> None:
    old, _ = load_or_create_signing_keys(tmp_path)
    new = rotate_signing_key(tmp_path)
    newer = rotate_signing_key(tmp_path)
    signing, keyset = load_or_create_signing_keys(tmp_path)
    assert signing.kid == newer.kid
    assert set(keyset) == {old.kid, new.kid, newer.kid}
    assert len({old.kid, new.kid, newer.kid}) == 3


def test_rotation_survives_equal_timestamps(tmp_path: Path) -> None:
    load_or_create_signing_keys(tmp_path)
    for path in key_files(tmp_path):
        os.utime(path, ns=(2_000_000_000 * 10**9, 2_000_000_000 * 10**9))
    new = rotate_signing_key(tmp_path)  # written "now", which is earlier than the old key
    assert load_or_create_signing_keys(tmp_path)[0].kid == new.kid


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_key_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    load_or_create_signing_keys(tmp_path)
    (path,) = key_files(tmp_path)
    os.chmod(path, mode)
    with pytest.raises(ConfigError, match="group/others"):
        load_or_create_signing_keys(tmp_path)


def test_group_writable_keys_folder_is_refused(tmp_path: Path) -> None:
    load_or_create_signing_keys(tmp_path)
    os.chmod(tmp_path / "keys", 0o770)
    with pytest.raises(ConfigError, match="chmod 700"):
        load_or_create_signing_keys(tmp_path)


def write_key_file(tmp_path: Path, name: str, data: bytes) -> None:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(keys / name, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def test_garbage_key_file_is_refused(tmp_path: Path) -> None:
    write_key_file(tmp_path, "signing-0123456789abcdef.pem", b"not a key")
    with pytest.raises(ConfigError, match="not an unencrypted PEM"):
        load_or_create_signing_keys(tmp_path)


def test_non_ed25519_key_is_refused(tmp_path: Path) -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_key_file(tmp_path, "signing-0123456789abcdef.pem", pem)
    with pytest.raises(ConfigError, match="not an Ed25519"):
        load_or_create_signing_keys(tmp_path)


def test_renamed_key_file_is_refused(tmp_path: Path) -> None:
    signing, _ = load_or_create_signing_keys(tmp_path)
    (path,) = key_files(tmp_path)
    path.rename(path.with_name("signing-0123456789abcdef.pem"))
    with pytest.raises(ConfigError, match=signing.kid):
        load_or_create_signing_keys(tmp_path)


def test_symlinked_key_file_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    load_or_create_signing_keys(other)
    (target,) = key_files(other)
    (tmp_path / "keys").mkdir(mode=0o700)
    (tmp_path / "keys" / target.name).symlink_to(target)
    with pytest.raises(ConfigError, match="cannot open"):
        load_or_create_signing_keys(tmp_path)


def test_other_files_are_ignored(tmp_path: Path) -> None:
    write_key_file(tmp_path, "README", b"hello")
    write_key_file(tmp_path, ".signing-0123456789abcdef.pem.tmp", b"half written")
    signing, keyset = load_or_create_signing_keys(tmp_path)
    assert list(keyset) == [signing.kid]


def test_keyset_is_read_only() -> None:
    key = SigningKey.generate()
    keyset = KeySet.of(key.public_key)
    assert key.kid in keyset and "nope" not in keyset
    with pytest.raises(TypeError):
        keyset._keys["x"] = key.public_key  # type: ignore[index]
    assert key.kid in repr(keyset)
