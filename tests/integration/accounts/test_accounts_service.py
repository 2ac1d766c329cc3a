"""Practitioner accounts on real SQLite and PostgreSQL: one suite, both backends."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest
from accounts_support import EMAIL, PASSWORD, IssuerMinter, code_for, enrolled, make_service

from fortrolig.accounts.account_service import AccountService, LockoutPolicy
from fortrolig.accounts.account_store import open_account_store
from fortrolig.accounts.passwords import INSECURE_TEST_PARAMETERS, Argon2Parameters
from fortrolig.accounts.practitioners import (
    AccountState,
    BackoffPolicy,
    EmailTaken,
    EnrolmentRequired,
    InvalidCredentials,
    InvalidRefreshToken,
    LoginThrottled,
    NoPendingEnrolment,
)
from fortrolig.accounts.totp import KeyringSealer, StaticKeySealer
from fortrolig.core.aead import FileKeyring
from fortrolig.core.clock import FakeClock
from fortrolig.core.errors import ConfigError
from fortrolig.signaling.auth import Role, TokenKind, TokenVerifier

NEW_PASSWORD = "syv sovende svaner i sneen"


async def test_migrations_use_their_own_version_table_and_are_idempotent(
    service: AccountService, store_url: str
) -> None:
    assert await service.store.schema_version() == 1
    again = open_account_store(store_url)
    await again.open()
    try:
        assert await again.schema_version() == 1
    finally:
        await again.close()
    tables = await _tables(store_url)
    assert "account_schema_version" in tables and "schema_version" not in tables
    assert all(t.startswith("account_") for t in tables)


async def _tables(url: str) -> set[str]:
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite://"))
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        conn.close()
        return {r[0] for r in rows}
    pg = await asyncpg.connect(url)
    try:
        rows = await pg.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await pg.close()
    return {r[0] for r in rows}


async def test_signup_enrol_confirm_login_and_tokens_verify(
    service: AccountService, clock: FakeClock, verifier: TokenVerifier
) -> None:
    created = await service.sign_up(" mette.HANSEN@klinik.dk ", "Mette Hansen", PASSWORD)
    assert created.email == "mette.hansen@klinik.dk"
    assert created.state is AccountState.ENROLMENT_REQUIRED
    with pytest.raises(EnrolmentRequired):  # right password, but no second factor yet
        await service.login(EMAIL, PASSWORD, "000000")
    with pytest.raises(NoPendingEnrolment):
        await service.confirm_totp(EMAIL, PASSWORD, "000000")
    enrolment = await service.enrol_totp(EMAIL, PASSWORD)
    assert enrolment.otpauth_uri.startswith("otpauth://totp/Fortrolig:mette.hansen@klinik.dk?")
    with pytest.raises(InvalidCredentials):
        await service.confirm_totp(EMAIL, PASSWORD, code_for(enrolment.secret, clock, 3))
    code = code_for(enrolment.secret, clock)
    assert await service.confirm_totp(EMAIL, PASSWORD, code) is AccountState.ACTIVE
    with pytest.raises(InvalidCredentials):  # enrolled: no password oracle without the code
        await service.enrol_totp(EMAIL, PASSWORD)
    with pytest.raises(InvalidCredentials):
        await service.confirm_totp(EMAIL, PASSWORD, code)
    with pytest.raises(InvalidCredentials):  # the confirmation code is spent
        await service.login(EMAIL, PASSWORD, code)
    clock.advance(30)
    session = await service.login(EMAIL, PASSWORD, code_for(enrolment.secret, clock))
    assert session.practitioner_id == created.practitioner_id
    assert session.expires_at == int(clock.now()) + 900
    assert session.refresh_expires_at == int(clock.now()) + 14 * 86_400
    claims = await verifier.verify(session.access_token, TokenKind.ACCESS, consume=False)
    assert (claims.sub, claims.role) == (created.practitioner_id, Role.PRACTITIONER)
    assert await service.revoked_after(created.practitioner_id) is None


async def test_totp_secret_is_stored_sealed(service: AccountService, clock: FakeClock) -> None:
    secret = await enrolled(service, clock)
    row = await service.store.find_by_email("mette.hansen@klinik.dk")
    assert row is not None and row.totp_sealed is not None
    raw = base64.b32decode(secret + "=" * (-len(secret) % 8))
    assert raw not in row.totp_sealed and secret.encode() not in row.totp_sealed


async def test_one_account_per_email_case_insensitively(service: AccountService) -> None:
    await service.sign_up(EMAIL, "Mette Hansen", PASSWORD)
    with pytest.raises(EmailTaken) as info:
        await service.sign_up("METTE.hansen@klinik.DK", "Another Mette", PASSWORD)
    assert info.value.status == 409


async def test_a_code_is_single_use_within_its_window(
    service: AccountService, clock: FakeClock
) -> None:
    secret = await enrolled(service, clock)
    code = code_for(secret, clock)
    await service.login(EMAIL, PASSWORD, code)
    with pytest.raises(InvalidCredentials):  # same step, same code: replay
        await service.login(EMAIL, PASSWORD, code)
    clock.advance(20)  # still within the ±1 step window of that code
    with pytest.raises(InvalidCredentials):
        await service.login(EMAIL, PASSWORD, code)
    with pytest.raises(InvalidCredentials):  # an older code after a newer one
        await service.login(EMAIL, PASSWORD, code_for(secret, clock, -1))
    clock.advance(30)
    await service.login(EMAIL, PASSWORD, code_for(secret, clock))


async def test_twenty_concurrent_logins_with_one_code_exactly_one_succeeds(
    store_url: str, tmp_path: Path, clock: FakeClock, minter: IssuerMinter
) -> None:
    # A lenient throttle, so that all twenty reach the TOTP check and race on the step.
    lenient = BackoffPolicy(threshold=100)
    service = make_service(store_url, tmp_path, clock, minter, LockoutPolicy(lenient, lenient))
    await service.start()
    try:
        code = code_for(await enrolled(service, clock), clock)
        results = await asyncio.gather(
            *(service.login(EMAIL, PASSWORD, code, client_ip="192.0.2.1") for _ in range(20)),
            return_exceptions=True,
        )
    finally:
        await service.close()
    wins = [r for r in results if not isinstance(r, BaseException)]
    assert len(wins) == 1
    losers = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(r, InvalidCredentials) for r in losers), [
        repr(r)[:60] for r in losers if not isinstance(r, InvalidCredentials)
    ]


async def test_store_spends_a_step_once_under_concurrency(
    service: AccountService, clock: FakeClock
) -> None:
    await enrolled(service, clock)
    row = await service.store.find_by_email("mette.hansen@klinik.dk")
    assert row is not None and row.totp_last_step is not None
    step = row.totp_last_step + 1
    spent = await asyncio.gather(
        *(service.store.consume_totp_step(row.id, step) for _ in range(20))
    )
    assert spent.count(True) == 1
    assert not await service.store.consume_totp_step(row.id, step - 1)


async def test_backoff_per_account_doubles_then_resets_on_success(
    service: AccountService, clock: FakeClock
) -> None:
    secret = await enrolled(service, clock)
    for _ in range(5):
        with pytest.raises(InvalidCredentials):
            await service.login(EMAIL, "wrong password!", "000000")
    # Locked now, even with the right credentials, and without running Argon2.
    with pytest.raises(LoginThrottled) as info:
        await service.login(EMAIL, PASSWORD, code_for(secret, clock))
    assert info.value.retry_after_s == 1 and info.value.status == 429
    clock.advance(1)
    with pytest.raises(InvalidCredentials):  # 6th failure: 2 s
        await service.login(EMAIL, "wrong password!", "000000")
    clock.advance(1.5)
    with pytest.raises(LoginThrottled):
        await service.login(EMAIL, PASSWORD, code_for(secret, clock))
    clock.advance(0.5)
    with pytest.raises(InvalidCredentials):  # 7th failure: 4 s
        await service.login(EMAIL, PASSWORD, "000000")
    with pytest.raises(LoginThrottled) as info:
        await service.login(EMAIL, PASSWORD, code_for(secret, clock))
    assert info.value.retry_after_s == 4
    clock.advance(4)
    await service.login(EMAIL, PASSWORD, code_for(secret, clock))  # success clears the counter
    for _ in range(4):
        with pytest.raises(InvalidCredentials):
            await service.login(EMAIL, "wrong password!", "000000")
    clock.advance(30)
    await service.login(EMAIL, PASSWORD, code_for(secret, clock))  # 5th attempt: allowed


async def test_backoff_is_capped_at_fifteen_minutes(
    service: AccountService, clock: FakeClock
) -> None:
    await enrolled(service, clock)
    delays = []
    for _ in range(60):
        try:
            await service.login(EMAIL, "wrong password!", "000000")
        except LoginThrottled as exc:
            delays.append(exc.retry_after_s)
            if exc.retry_after_s == 900:
                break
            clock.advance(exc.retry_after_s)
        except InvalidCredentials:
            pass
    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900]
    with pytest.raises(LoginThrottled) as info:
        await service.login(EMAIL, PASSWORD, "000000")
    assert info.value.retry_after_s == 900


async def test_strangers_cannot_lock_the_owner_out_and_she_is_alerted(
    store_url: str, tmp_path: Path, clock: FakeClock, minter: IssuerMinter
) -> None:
    sent: list[tuple[str, str, str]] = []

    async def send(to: str, subject: str, body: str) -> None:
        sent.append((to, subject, body))

    service = make_service(store_url, tmp_path, clock, minter, send_mail=send)
    await service.start()
    try:
        secret = await enrolled(service, clock)
        for n in range(5):  # five wrong passwords from five addresses
            with pytest.raises(InvalidCredentials):
                await service.login(EMAIL, "wrong password!", "000000", client_ip=f"203.0.113.{n}")
        assert [to for to, _, _ in sent] == [EMAIL.lower()]  # alerted when the backoff began
        # During the account's backoff nothing short of both factors passes, from anywhere,
        # and a right password alone gets the same answer as a wrong one.
        for password, totp in (("wrong password!", "000000"), (PASSWORD, "000000")):
            with pytest.raises(LoginThrottled):
                await service.login(EMAIL, password, totp, client_ip="198.51.100.7")
        # The owner from another address, with password and code: in (and the counter cleared).
        await service.login(EMAIL, PASSWORD, code_for(secret, clock), client_ip="198.51.100.4")
        clock.advance(30)
        with pytest.raises(InvalidCredentials):  # a fresh start, not login_throttled
            await service.login(EMAIL, "wrong password!", "000000", client_ip="198.51.100.8")
        assert len(sent) == 1
    finally:
        await service.close()


async def test_backoff_per_client_address_across_accounts(
    service: AccountService, clock: FakeClock
) -> None:
    secret = await enrolled(service, clock)
    # Password spraying: one address, five different (unknown) accounts.
    for n in range(5):
        with pytest.raises(InvalidCredentials):
            await service.login(f"victim{n}@klinik.dk", PASSWORD, "000000", client_ip="203.0.113.9")
    with pytest.raises(LoginThrottled):
        await service.login(EMAIL, PASSWORD, code_for(secret, clock), client_ip="203.0.113.9")
    # The same account from another address is not locked out by the attacker.
    await service.login(EMAIL, PASSWORD, code_for(secret, clock), client_ip="198.51.100.4")
    clock.advance(1)
    clock.advance(30)
    await service.login(EMAIL, PASSWORD, code_for(secret, clock), client_ip="203.0.113.9")


async def test_unknown_email_gets_the_same_error_and_the_same_lockout(
    service: AccountService, clock: FakeClock
) -> None:
    await enrolled(service, clock)
    errors = []
    for email in (EMAIL, "nobody@klinik.dk", "not an e-mail"):
        with pytest.raises(InvalidCredentials) as info:
            await service.login(email, "wrong password!", "123456")
        errors.append((info.value.code, info.value.status, info.value.message))
    assert len(set(errors)) == 1 and errors[0][:2] == ("invalid_credentials", 401)
    for email in (EMAIL, "nobody@klinik.dk"):
        for _ in range(4):
            with pytest.raises(InvalidCredentials):
                await service.login(email, "wrong password!", "123456")
        with pytest.raises(LoginThrottled) as throttled:
            await service.login(email, "wrong password!", "123456")
        assert throttled.value.retry_after_s == 1
    # Enrolment and confirmation answer unknown e-mails exactly like a wrong password too.
    with pytest.raises(InvalidCredentials):
        await service.enrol_totp("someone@klinik.dk", PASSWORD)
    with pytest.raises(InvalidCredentials):
        await service.confirm_totp("someone@klinik.dk", PASSWORD, "123456")


async def test_refresh_rotates_and_reuse_revokes_the_family(
    service: AccountService, clock: FakeClock
) -> None:
    secret = await enrolled(service, clock)
    first = await service.login(EMAIL, PASSWORD, code_for(secret, clock))
    clock.advance(60)
    second = await service.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert second.refresh_expires_at == first.refresh_expires_at  # the login's lifetime
    assert second.expires_at == int(clock.now()) + 900
    third = await service.refresh(second.refresh_token)
    # An attacker replays the stolen first token: the whole family dies, the thief's and ours.
    with pytest.raises(InvalidRefreshToken):
        await service.refresh(first.refresh_token)
    with pytest.raises(InvalidRefreshToken):
        await service.refresh(third.refresh_token)
    # Another login (another family) is unaffected.
    clock.advance(30)
    other = await service.login(EMAIL, PASSWORD, code_for(secret, clock))
    assert (await service.refresh(other.refresh_token)).practitioner_id == other.practitioner_id
    for junk in ("", "frt_" + "A" * 43, "eyJ.x.y"):
        with pytest.raises(InvalidRefreshToken):
            await service.refresh(junk)


async def test_concurrent_refreshes_of_one_token_revoke_the_family(
    service: AccountService, clock: FakeClock
) -> None:
    secret = await enrolled(service, clock)
    session = await service.login(EMAIL, PASSWORD, code_for(secret, clock))
    results = await asyncio.gather(
        *(service.refresh(session.refresh_token) for _ in range(10)), return_exceptions=True
    )
    wins = [r for r in results if not isinstance(r, BaseException)]
    assert len(wins) == 1
    with pytest.raises(InvalidRefreshToken):  # the race itself was reuse
        await service.refresh(wins[0].refresh_token)


async def test_refresh_tokens_expire_after_fourteen_days(
    service: AccountService, clock: FakeClock
) -> None:
    secret = await enrolled(service, clock)
    session = await service.login(EMAIL, PASSWORD, code_for(secret, clock))
    clock.advance(13 * 86_400)
    session = await service.refresh(session.refresh_token)
    clock.advance(86_400)
    with pytest.raises(InvalidRefreshToken):
        await service.refresh(session.refresh_token)


async def test_logout_revokes_the_family(service: AccountService, clock: FakeClock) -> None:
    secret = await enrolled(service, clock)
    session = await service.login(EMAIL, PASSWORD, code_for(secret, clock))
    rotated = await service.refresh(session.refresh_token)
    await service.logout(rotated.refresh_token)
    await service.logout(rotated.refresh_token)  # idempotent
    await service.logout("frt_unknown-token-is-fine-too-xxxxxxxxxxxxxxxxxxxxx")
    with pytest.raises(InvalidRefreshToken):
        await service.refresh(rotated.refresh_token)


async def test_password_change_revokes_sessions_and_sets_the_cutoff(
    service: AccountService, clock: FakeClock
) -> None:
    secret = await enrolled(service, clock)
    a = await service.login(EMAIL, PASSWORD, code_for(secret, clock))
    clock.advance(30)
    b = await service.login(EMAIL, PASSWORD, code_for(secret, clock))
    clock.advance(30.5)
    with pytest.raises(InvalidCredentials):  # the current password is required
        await service.change_password(
            EMAIL, "wrong password!", code_for(secret, clock), NEW_PASSWORD
        )
    with pytest.raises(InvalidCredentials):  # and a valid code
        await service.change_password(EMAIL, PASSWORD, "000000", NEW_PASSWORD)
    with pytest.raises(Exception, match="at least 12"):
        await service.change_password(EMAIL, PASSWORD, code_for(secret, clock), "short")
    clock.advance(30)
    await service.change_password(EMAIL, PASSWORD, code_for(secret, clock), NEW_PASSWORD)
    cutoff = await service.revoked_after(a.practitioner_id)
    assert cutoff == int(clock.now())
    assert a.expires_at > cutoff  # still unexpired: the node must refuse it by iat < cutoff
    for session in (a, b):
        with pytest.raises(InvalidRefreshToken):
            await service.refresh(session.refresh_token)
    clock.advance(30)
    with pytest.raises(InvalidCredentials):
        await service.login(EMAIL, PASSWORD, code_for(secret, clock))
    clock.advance(30)
    fresh = await service.login(EMAIL, NEW_PASSWORD, code_for(secret, clock))
    assert fresh.expires_at - 900 >= cutoff  # issued at/after the cut-off: accepted


async def test_login_rehashes_when_parameters_change(
    store_url: str, tmp_path: Path, clock: FakeClock, minter: IssuerMinter
) -> None:
    old = make_service(store_url, tmp_path, clock, minter)
    await old.start()
    secret = await enrolled(old, clock)
    await old.close()
    before = await _hash_of(store_url, tmp_path, clock)
    assert "m=64,t=1" in before
    stronger = Argon2Parameters(time_cost=2, memory_kib=128, parallelism=1)
    new = AccountService(
        open_account_store(store_url),
        KeyringSealer(FileKeyring.open(tmp_path / "keys" / "accounts-keyring.json")),
        minter,
        clock,
        hash_parameters=stronger,
        allow_weak_hashing=True,
    )
    await new.start()
    try:
        await new.login(EMAIL, PASSWORD, code_for(secret, clock))
        row = await new.store.find_by_email("mette.hansen@klinik.dk")
        assert row is not None and "m=128,t=2,p=1" in row.password_hash
        clock.advance(30)
        await new.login(EMAIL, PASSWORD, code_for(secret, clock))  # the new hash verifies
    finally:
        await new.close()


async def _hash_of(url: str, tmp_path: Path, clock: FakeClock) -> str:
    svc = make_service(url, tmp_path, clock, None)
    await svc.start()
    try:
        row = await svc.store.find_by_email("mette.hansen@klinik.dk")
        assert row is not None
        return row.password_hash
    finally:
        await svc.close()


async def test_admin_totp_reset_revokes_and_requires_reenrolment(
    service: AccountService, clock: FakeClock
) -> None:
    secret = await enrolled(service, clock)
    session = await service.login(EMAIL, PASSWORD, code_for(secret, clock))
    clock.advance(30)
    await service.reset_totp(EMAIL)
    with pytest.raises(InvalidRefreshToken):
        await service.refresh(session.refresh_token)
    with pytest.raises(EnrolmentRequired):
        await service.login(EMAIL, PASSWORD, code_for(secret, clock))
    enrolment = await service.enrol_totp(EMAIL, PASSWORD)
    assert enrolment.secret != secret
    await service.confirm_totp(EMAIL, PASSWORD, code_for(enrolment.secret, clock))


async def test_signup_probing_is_throttled_per_address(service: AccountService) -> None:
    await service.sign_up(EMAIL, "Mette Hansen", PASSWORD)
    for _ in range(10):
        with pytest.raises(EmailTaken):
            await service.sign_up(EMAIL, "Probe", PASSWORD, client_ip="203.0.113.7")
    with pytest.raises(LoginThrottled):
        await service.sign_up(EMAIL, "Probe", PASSWORD, client_ip="203.0.113.7")


async def test_weak_parameters_and_missing_minter_are_refused(
    store_url: str, tmp_path: Path, clock: FakeClock, minter: IssuerMinter
) -> None:
    svc = make_service(store_url, tmp_path, clock, None)
    with pytest.raises(ConfigError):
        AccountService(
            svc.store,
            StaticKeySealer(bytes(32)),
            minter,
            clock,
            hash_parameters=INSECURE_TEST_PARAMETERS,
        )
    await svc.start()
    try:
        secret = await enrolled(svc, clock)
        with pytest.raises(ConfigError):
            await svc.login(EMAIL, PASSWORD, code_for(secret, clock))
    finally:
        await svc.close()
