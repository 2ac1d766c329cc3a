"""Argon2id hashing, rehash on parameter change, and the password policy."""

from __future__ import annotations

import pytest

from fortrolig.accounts.passwords import (
    BASELINE,
    DEFAULT_PARAMETERS,
    INSECURE_TEST_PARAMETERS,
    Argon2Parameters,
    PasswordHasher,
    WeakPassword,
    check_password_policy,
)

FAST = INSECURE_TEST_PARAMETERS
FASTER_BUT_DIFFERENT = Argon2Parameters(time_cost=2, memory_kib=128, parallelism=1)


def test_defaults_meet_the_baseline_and_test_parameters_do_not() -> None:
    assert BASELINE.memory_kib == 19 * 1024 and BASELINE.time_cost == 2
    assert DEFAULT_PARAMETERS.meets_baseline()
    assert DEFAULT_PARAMETERS.memory_kib >= 19 * 1024 and DEFAULT_PARAMETERS.time_cost >= 2
    assert not FAST.meets_baseline()


def test_default_hash_is_argon2id_with_the_default_parameters() -> None:
    hashed = PasswordHasher().hash("a long enough passphrase")
    assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=1$")


def test_hash_verifies_only_the_right_password_and_is_salted() -> None:
    hasher = PasswordHasher(FAST)
    first, second = hasher.hash("kaffe og kanelsnegle"), hasher.hash("kaffe og kanelsnegle")
    assert first != second  # random salt
    assert hasher.verify(first, "kaffe og kanelsnegle")
    assert not hasher.verify(first, "kaffe og kanelsnegl")
    assert not hasher.verify("not a hash", "kaffe og kanelsnegle")
    assert not hasher.needs_rehash(first)


def test_composed_and_decomposed_unicode_are_the_same_password() -> None:
    hasher = PasswordHasher(FAST)
    hashed = hasher.hash("blåbærgrød med fløde")  # NFC
    assert hasher.verify(hashed, "bla\u030abærgrød med flo\u0308de".replace("o\u0308", "ø"))


def test_changed_parameters_require_a_rehash() -> None:
    old = PasswordHasher(FAST).hash("kaffe og kanelsnegle")
    newer = PasswordHasher(FASTER_BUT_DIFFERENT)
    assert newer.needs_rehash(old)
    assert newer.verify(old, "kaffe og kanelsnegle")  # old hashes still verify
    assert not newer.needs_rehash(newer.hash("kaffe og kanelsnegle"))
    assert newer.needs_rehash("$2b$12$bcrypt-is-not-argon2")


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short12345!", "at least 12"),
        ("x" * 257, "at most 256"),
        ("Password1234", "too common"),
        ("correct horse battery staple", "too common"),
        ("KODEORD123456", "too common"),
        ("my-Mette.Hansen-secret", "e-mail"),
    ],
)
def test_policy_refuses(password: str, reason: str) -> None:
    with pytest.raises(WeakPassword, match=reason) as info:
        check_password_policy(password, "mette.hansen@klinik.dk")
    assert info.value.code == "weak_password" and info.value.status == 400


def test_policy_accepts_good_passwords_and_ignores_tiny_local_parts() -> None:
    check_password_policy("trætte tøjdyr danser tango", "mette.hansen@klinik.dk")
    check_password_policy("x" * 256, "mette@klinik.dk")
    check_password_policy("a perfectly fine passphrase", "a@klinik.dk")  # 'a' is not checked
