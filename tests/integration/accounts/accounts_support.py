"""Helpers shared by the account tests (fixtures live in conftest.py)."""

from __future__ import annotations

import base64
from pathlib import Path

from fortrolig.accounts.account_service import AccountService, LockoutPolicy, SendMail
from fortrolig.accounts.account_store import open_account_store
from fortrolig.accounts.passwords import INSECURE_TEST_PARAMETERS
from fortrolig.accounts.totp import KeyringSealer, hotp, time_step
from fortrolig.core.aead import FileKeyring
from fortrolig.core.clock import FakeClock
from fortrolig.signaling.auth import Role, TokenIssuer, TokenKind

ISSUER = "fortrolig-test"
PASSWORD = "trætte tøjdyr danser tango"
EMAIL = "Mette.Hansen@Klinik.dk"


class IssuerMinter:
    """The app's adapter: signaling's TokenIssuer as the accounts' AccessTokenMinter."""

    def __init__(self, issuer: TokenIssuer) -> None:
        self._issuer = issuer

    def mint_access(self, subject: str, ttl_s: int) -> tuple[str, int]:
        token, claims = self._issuer.mint(TokenKind.ACCESS, subject, Role.PRACTITIONER, ttl_s=ttl_s)
        return token, claims.exp


def make_service(
    url: str,
    tmp_path: Path,
    clock: FakeClock,
    minter: IssuerMinter | None,
    lockout: LockoutPolicy | None = None,
    send_mail: SendMail | None = None,
) -> AccountService:
    keyring = FileKeyring.open(tmp_path / "keys" / "accounts-keyring.json")
    return AccountService(
        open_account_store(url),
        KeyringSealer(keyring),
        minter,
        clock,
        hash_parameters=INSECURE_TEST_PARAMETERS,
        allow_weak_hashing=True,
        lockout=lockout or LockoutPolicy(),
        max_parallel_hashes=4,
        send_mail=send_mail,
    )


def code_for(secret_b32: str, clock: FakeClock, offset_steps: int = 0) -> str:
    """The code an authenticator app shows now (or ``offset_steps`` away)."""
    secret = base64.b32decode(secret_b32 + "=" * (-len(secret_b32) % 8))
    return hotp(secret, time_step(clock.now()) + offset_steps)


async def enrolled(service: AccountService, clock: FakeClock, email: str = EMAIL) -> str:
    """Sign up, enrol and confirm an account; returns its base32 TOTP secret.

    Moves the clock to the next TOTP step, so the confirmation code is spent and login needs a
    fresh one.
    """
    await service.sign_up(email, "Mette Hansen", PASSWORD)
    enrolment = await service.enrol_totp(email, PASSWORD)
    await service.confirm_totp(email, PASSWORD, code_for(enrolment.secret, clock))
    clock.advance(30)
    return enrolment.secret
