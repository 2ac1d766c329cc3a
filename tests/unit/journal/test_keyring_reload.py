"""The journal's reloading keyring and how the factory refuses a keyring that does not fit."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from fortrolig.core.aead import FileKeyring, IntegrityError, new_data_key
from fortrolig.core.errors import ConfigError
from fortrolig.core.principal import Principal
from fortrolig.journal.factory import default_keyring_path, open_journal
from fortrolig.journal.keyring import ReloadingKeyring


def test_sees_a_rotation_made_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    node = ReloadingKeyring(path)
    dek = new_data_key()
    old_wrap = node.wrap(dek)
    operator = FileKeyring.open(path, create=False)  # `fortrolig keys rotate`
    assert operator.rotate() == 2
    new_wrap = operator.wrap(dek)
    assert node.unwrap(new_wrap) == dek and node.unwrap(old_wrap) == dek
    assert node.current_version == 2 and node.wrap(dek).kek_version == 2


def test_rotate_through_it(tmp_path: Path) -> None:
    ring = ReloadingKeyring(tmp_path / "keyring.json")
    assert ring.rotate() == 2 and ring.rotate() == 3
    assert FileKeyring.open(ring.path, create=False).versions == (1, 2, 3)


def test_keeps_its_keys_when_the_file_goes_bad(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keyring.json"
    ring = ReloadingKeyring(path)
    dek = new_data_key()
    wrapped = ring.wrap(dek)
    os.chmod(path, 0o644)
    os.utime(path, ns=(1, 1))  # a visible change
    with caplog.at_level(logging.WARNING):
        assert ring.unwrap(wrapped) == dek
        assert ring.unwrap(wrapped) == dek
    assert sum("cannot be read" in r.getMessage() for r in caplog.records) == 1
    path.unlink()
    assert ring.unwrap(wrapped) == dek


def test_a_different_keyring_in_its_place_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "keyring.json"
    ring = ReloadingKeyring(path)
    wrapped = ring.wrap(new_data_key())
    path.unlink()
    FileKeyring.open(path)  # a fresh keyring with another id
    with pytest.raises(IntegrityError):
        ring.unwrap(wrapped)


def test_missing_keyring_is_not_created_when_asked_not_to(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        ReloadingKeyring(tmp_path / "keyring.json", create=False)
    assert not (tmp_path / "keyring.json").exists()


async def test_open_journal_refuses_a_keyring_that_does_not_fit(tmp_path: Path) -> None:
    service = await open_journal(tmp_path)
    await service.create_client(Principal("p1", "practitioner"), "A")
    await service.close()
    keyring = default_keyring_path(tmp_path)
    keyring.rename(tmp_path / "moved-away.json")
    with pytest.raises(ConfigError, match="cannot open the keys"):
        await open_journal(tmp_path)
    # The keyring made for the attempt is gone again, so the next start fails the same way.
    assert not keyring.exists()
    (tmp_path / "moved-away.json").rename(keyring)
    service = await open_journal(tmp_path)
    try:
        (client,) = await service.list_clients(Principal("p1", "practitioner"))
        assert client.name == "A"
    finally:
        await service.close()


async def test_operator_mode_needs_an_existing_database(tmp_path: Path) -> None:
    FileKeyring.open(default_keyring_path(tmp_path))
    with pytest.raises(ConfigError, match="no journal database"):
        await open_journal(tmp_path, create=False)
    assert not (tmp_path / "journal.db").exists()
