"""TOTP against the RFC 6238 test vectors, the otpauth URI, and sealing secrets at rest."""

from __future__ import annotations

import base64
import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from fortrolig.accounts.totp import (
    KeyringSealer,
    StaticKeySealer,
    hotp,
    matching_step,
    new_secret,
    normalize_code,
    provisioning_uri,
    secret_base32,
    time_step,
    totp,
)
from fortrolig.core.aead import FileKeyring, IntegrityError

RFC_SECRET = b"12345678901234567890"  # RFC 6238 appendix B, SHA-1 seed
# (time, T as hex, 8-digit TOTP) from RFC 6238 appendix B, SHA-1 rows.
RFC6238_SHA1 = [
    (59, "0000000000000001", "94287082"),
    (1111111109, "00000000023523EC", "07081804"),
    (1111111111, "00000000023523ED", "14050471"),
    (1234567890, "000000000273EF07", "89005924"),
    (2000000000, "0000000003F940AA", "69279037"),
    (20000000000, "0000000027BC86AA", "65353130"),
]
# RFC 4226 appendix D: HOTP values for counters 0..9.
RFC4226 = [
    "755224", "287082", "359152", "969429", "338314",
    "254676", "287922", "162583", "399871", "520489",
]  # fmt: skip


@pytest.mark.parametrize(("unix_time", "step_hex", "expected"), RFC6238_SHA1)
def test_rfc6238_sha1_vectors(unix_time: int, step_hex: str, expected: str) -> None:
    assert time_step(unix_time) == int(step_hex, 16)
    assert totp(RFC_SECRET, unix_time, digits=8) == expected
    # Six digits are the same truncated value modulo 10^6: the last six of the eight.
    assert totp(RFC_SECRET, unix_time) == expected[-6:]


def test_rfc4226_hotp_vectors() -> None:
    assert [hotp(RFC_SECRET, counter) for counter in range(10)] == RFC4226


def test_window_is_one_step_either_side() -> None:
    now = 1_700_000_015.0  # mid-step
    step = time_step(now)
    for offset in (-1, 0, 1):
        code = hotp(RFC_SECRET, step + offset)
        assert matching_step(RFC_SECRET, code, now) == step + offset
    assert matching_step(RFC_SECRET, hotp(RFC_SECRET, step - 2), now) is None
    assert matching_step(RFC_SECRET, hotp(RFC_SECRET, step + 2), now) is None


def test_code_format() -> None:
    assert normalize_code(" 123 456 ") == "123456"
    for bad in ("12345", "1234567", "12345a", "١٢٣٤٥٦", ""):
        assert normalize_code(bad) is None
        assert matching_step(RFC_SECRET, bad, 59.0) is None


def test_provisioning_uri() -> None:
    secret = new_secret()
    assert len(secret) == 20
    uri = provisioning_uri(secret, "mette@klinik.dk", "Fortrolig")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "otpauth",
        "totp",
        "/Fortrolig:mette@klinik.dk",
    )
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query == {
        "secret": secret_base32(secret),
        "issuer": "Fortrolig",
        "algorithm": "SHA1",
        "digits": "6",
        "period": "30",
    }
    padded = query["secret"] + "=" * (-len(query["secret"]) % 8)
    assert base64.b32decode(padded) == secret


def test_keyring_sealer_round_trip_binding_and_rotation(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "accounts-keyring.json"
    keyring = FileKeyring.open(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sealer = KeyringSealer(keyring)
    secret = new_secret()
    sealed = sealer.seal("prac_a", secret)
    assert secret not in sealed
    assert sealer.open("prac_a", sealed) == secret
    with pytest.raises(IntegrityError):
        sealer.open("prac_b", sealed)  # moved to another account
    flipped = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(IntegrityError):
        sealer.open("prac_a", flipped)
    with pytest.raises(IntegrityError):
        sealer.open("prac_a", sealed[:5])
    keyring.rotate()
    assert KeyringSealer(FileKeyring.open(path)).open("prac_a", sealed) == secret
    path.chmod(0o644)
    with pytest.raises(Exception, match="0600"):
        FileKeyring.open(path)


def test_static_key_sealer() -> None:
    sealer = StaticKeySealer(b"k" * 32)
    sealed = sealer.seal("prac_a", b"s" * 20)
    assert sealer.open("prac_a", sealed) == b"s" * 20
    with pytest.raises(IntegrityError):
        StaticKeySealer(b"j" * 32).open("prac_a", sealed)
    with pytest.raises(IntegrityError):
        StaticKeySealer(b"short").seal("prac_a", b"s")
