"""AES-256-GCM envelope encryption and the file keyring."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fortrolig.core.aead import (
    KEY_BYTES,
    AssociatedData,
    FileKeyring,
    IntegrityError,
    WrappedKey,
    new_data_key,
    open_sealed,
    seal,
    unwrap_key,
    wrap_key,
)
from fortrolig.core.errors import ConfigError

KEY = bytes(range(32))
texts = st.binary(max_size=512)
names = st.text(max_size=12)


def _aad(record: str = "note_1", key_version: int = 1, **kw: object) -> AssociatedData:
    fields: dict[str, object] = dict(
        tenant="prac_a",
        client="cli_a",
        record=record,
        field="note",
        version=1,
        key_version=key_version,
        schema_version=1,
        context="",
    )
    fields.update(kw)
    return AssociatedData(**fields)  # type: ignore[arg-type]


@given(texts, names, names)
def test_round_trip(plaintext: bytes, tenant: str, record: str) -> None:
    aad = _aad(record=record, tenant=tenant)
    assert open_sealed(KEY, seal(KEY, plaintext, aad), aad) == plaintext


@settings(max_examples=50)
@given(st.binary(min_size=1, max_size=64), st.data())
def test_every_single_bit_flip_is_detected(plaintext: bytes, data: st.DataObject) -> None:
    aad = _aad()
    blob = seal(KEY, plaintext, aad)
    bit = data.draw(st.integers(0, len(blob) * 8 - 1))
    flipped = bytearray(blob)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(IntegrityError):
        open_sealed(KEY, bytes(flipped), aad)


def test_every_bit_flip_exhaustively_for_one_ciphertext() -> None:
    aad = _aad()
    blob = seal(KEY, b"Klienten sov d\xc3\xa5rligt", aad)
    for bit in range(len(blob) * 8):
        flipped = bytearray(blob)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(IntegrityError):
            open_sealed(KEY, bytes(flipped), aad)


@given(texts, texts, names, names)
def test_row_swap_is_detected(a: bytes, b: bytes, id_a: str, id_b: str) -> None:
    if id_a == id_b:
        return
    blob_a = seal(KEY, a, _aad(record=id_a))
    with pytest.raises(IntegrityError):
        open_sealed(KEY, blob_a, _aad(record=id_b))


@given(texts, st.integers(2, 1000), st.integers(1, 999))
def test_key_version_downgrade_is_detected(plaintext: bytes, version: int, lower: int) -> None:
    lower = min(lower, version - 1)
    blob = seal(KEY, plaintext, _aad(key_version=version))
    with pytest.raises(IntegrityError):
        open_sealed(KEY, blob, _aad(key_version=lower))


@pytest.mark.parametrize(
    "change",
    [
        {"tenant": "prac_b"},
        {"client": "cli_b"},
        {"field": "client.name"},
        {"version": 2},
        {"schema_version": 2},
        {"context": "x"},
    ],
)
def test_every_bound_field_matters(change: dict[str, Any]) -> None:
    blob = seal(KEY, b"text", _aad())
    with pytest.raises(IntegrityError):
        open_sealed(KEY, blob, _aad(**change))


def test_associated_data_is_unambiguous() -> None:
    assert _aad(tenant="a|b", client="c").encode() != _aad(tenant="a", client="b|c").encode()


def test_truncated_wrong_key_and_short_key_fail_closed() -> None:
    blob = seal(KEY, b"text", _aad())
    with pytest.raises(IntegrityError):
        open_sealed(KEY, blob[:20], _aad())
    with pytest.raises(IntegrityError):
        open_sealed(new_data_key(), blob, _aad())
    with pytest.raises(IntegrityError):
        seal(KEY[:16], b"aes-128 is not allowed", _aad())


def test_key_wrap_round_trip_and_wrong_kek() -> None:
    dek = new_data_key()
    wrapped = wrap_key(KEY, dek)
    assert unwrap_key(KEY, wrapped) == dek and len(dek) == KEY_BYTES
    with pytest.raises(IntegrityError):
        unwrap_key(new_data_key(), wrapped)


def test_file_keyring_is_created_private_and_rotates(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "ring.json"
    ring = FileKeyring.open(path)
    assert path.stat().st_mode & 0o777 == 0o600
    dek = new_data_key()
    old = ring.wrap(dek)
    assert ring.rotate() == 2
    reloaded = FileKeyring.open(path, create=False)
    assert reloaded.current_version == 2 and reloaded.versions == (1, 2)
    assert reloaded.unwrap(old) == dek
    new = reloaded.wrap(dek)
    assert new.kek_version == 2 and reloaded.unwrap(new) == dek
    with pytest.raises(IntegrityError):
        reloaded.unwrap(WrappedKey(new.kek_id, 1, new.wrapped))  # version downgrade
    with pytest.raises(IntegrityError):
        reloaded.unwrap(WrappedKey("file-other", 2, new.wrapped))
    with pytest.raises(IntegrityError):
        reloaded.unwrap(WrappedKey(new.kek_id, 9, new.wrapped))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_file_keyring_refuses_readable_files(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "ring.json"
    FileKeyring.open(path)
    os.chmod(path, mode)
    with pytest.raises(ConfigError, match="0600"):
        FileKeyring.open(path)


def test_file_keyring_refuses_malformed_and_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        FileKeyring.open(tmp_path / "absent.json", create=False)
    path = tmp_path / "ring.json"
    FileKeyring.open(path)
    doc = json.loads(path.read_text())
    doc["keks"]["1"] = "c2hvcnQ="  # "short"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="malformed"):
        FileKeyring.open(path)
