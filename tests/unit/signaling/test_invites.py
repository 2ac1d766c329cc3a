"""Consultations, invites and e-mail codes: the pure service on a fake clock.

Time is the one fake (expiry); the store is the real in-memory store, the mailer a recorder (the
real SMTP path is tested in tests/integration/signaling/test_invites.py).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from fortrolig.core.clock import FakeClock
from fortrolig.core.config import Config
from fortrolig.core.errors import FortroligError
from fortrolig.core.keys import KeySet, SigningKey
from fortrolig.core.slot import Slot
from fortrolig.signaling import verification as v
from fortrolig.signaling.auth import (
    MemoryJtiStore,
    TokenIssuer,
    TokenKind,
    TokenVerifier,
    VerificationMode,
)
from fortrolig.signaling.eid import VerifiedIdentity
from fortrolig.signaling.invites import (
    CODE_RESEND_S,
    CodeSent,
    EidRedirect,
    InviteService,
    JoinGrant,
    MemoryInviteStore,
    eid_label,
    parse_consultation_request,
)
from fortrolig.signaling.mailer import Attachment, EmailFailed
from fortrolig.signaling.service import SignalingService
from tests.unit.signaling.test_waiting_room import RecordingMedia

NOW = 1_700_000_000.0
EMAIL = "klient@example.eu"
TTL = 3600


@dataclass
class RecordingMailer:
    sent: list[tuple[str, str, str]] = field(default_factory=list)
    attached: list[list[Attachment]] = field(default_factory=list)
    fail: bool = False

    async def send(
        self, to: str, subject: str, body: str, attachments: Sequence[Attachment] = ()
    ) -> None:
        if self.fail:
            raise EmailFailed("down")
        self.sent.append((to, subject, body))
        self.attached.append(list(attachments))

    def last_code(self) -> str:
        found = re.search(r"\b([0-9]{6})\b", self.sent[-1][2])
        assert found
        return found.group(1)


@dataclass
class World:
    clock: FakeClock
    service: InviteService
    mailer: RecordingMailer
    verifier: TokenVerifier
    store: MemoryInviteStore
    eid: Slot[Any]

    async def consultation(self, mode: str, **extra: Any) -> str:
        body = {"verification": mode, **extra}
        if mode == "email_code":
            body.setdefault("client_email", EMAIL)
        _, invite = await self.service.create_consultation(
            "dr-a", parse_consultation_request(body, self.clock.now())
        )
        return invite.url.split("#", 1)[1]

    async def code_sent(self) -> CodeSent:
        result = await self.service.redeem(await self.consultation("email_code"))
        assert isinstance(result, CodeSent)
        return result


@pytest.fixture
def world() -> World:
    clock = FakeClock(now=NOW)
    key = SigningKey.generate()
    issuer = TokenIssuer(key, "fortrolig", clock)
    verifier = TokenVerifier(
        KeySet.of(key.public_key), "fortrolig", clock, 30, MemoryJtiStore(clock)
    )
    signaling = SignalingService(Config(), RecordingMedia(), issuer, verifier, clock)
    mailer = RecordingMailer()
    store = MemoryInviteStore(clock)
    eid: Slot[Any] = Slot()
    service = InviteService(
        signaling,
        store,
        mailer,
        clock,
        invite_ttl_s=TTL,
        public_url="https://f.example.eu/",
        eid=eid,
    )
    return World(clock, service, mailer, verifier, store, eid)


async def code_of(awaitable: Any) -> str:
    with pytest.raises(FortroligError) as info:
        await awaitable
    return info.value.code


def test_secrets_codes_and_hints() -> None:
    secret = v.new_secret()
    assert v.is_secret(secret) and len(secret) == 43  # 256 bits
    assert not v.is_secret(secret[:-1]) and not v.is_secret(secret + "=")
    assert len(v.digest(secret)) == 64 and v.digest(secret) != secret
    codes = {v.new_code() for _ in range(200)}
    assert all(v.is_code(c) for c in codes) and len(codes) > 150
    salt = v.new_salt()
    stored = v.code_digest(salt, "012345")
    assert v.code_matches(salt, stored, "012345") and not v.code_matches(salt, stored, "012346")
    assert v.email_hint("klient@example.eu") == "k***@example.eu"
    assert re.fullmatch(r"Anonym [A-Z2-9]{4}", v.pseudonym())


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "verification_required"),
        ({"verification": "sms"}, "bad_field"),
        ({"verification": 3}, "bad_field"),
        ({"verification": "anonymous", "extra": 1}, "bad_field"),
        ({"verification": "email_code"}, "client_email_required"),
        ({"verification": "email_code", "client_email": "not-an-address"}, "bad_email"),
        ({"verification": "email_code", "client_email": "a@b.eu\r\nBcc: x@y.eu"}, "bad_email"),
        ({"verification": "eid", "client_phone": "call me"}, "bad_phone"),
        ({"verification": "eid", "client_name": "x" * 65}, "bad_field"),
        ({"verification": "eid", "client_name": "a\u0007b"}, "bad_field"),
        ({"verification": "eid", "client_name": ""}, "bad_field"),
        ({"verification": "eid", "send_invite": "yes"}, "bad_field"),
        ({"verification": "eid", "send_invite": True}, "client_email_required"),
        ({"verification": "eid", "max_participants": "2"}, "bad_field"),
        ({"verification": "anonymous", "client_name": "Anna"}, "anonymous_identity"),
        ({"verification": "anonymous", "client_phone": "+45 12345678"}, "anonymous_identity"),
        ({"verification": "anonymous", "client_email": EMAIL}, "anonymous_identity"),
        ({"verification": "anonymous", "journal_client_id": "cli_1"}, "anonymous_identity"),
        ({"verification": "eid", "journal_client_id": "../x"}, "bad_field"),
        ({"verification": "eid", "journal_client_id": 7}, "bad_field"),
        ({"verification": "eid", "scheduled_at": "tomorrow"}, "bad_time"),
        ({"verification": "eid", "scheduled_at": True}, "bad_time"),
        ({"verification": "eid", "scheduled_at": NOW - 2 * 86_400}, "bad_time"),
        ({"verification": "eid", "scheduled_at": NOW + 401 * 86_400}, "bad_time"),
        ({"verification": "eid", "scheduled_at": float("nan")}, "bad_time"),
    ],
)
def test_bad_consultation_requests_are_typed(body: dict[str, Any], code: str) -> None:
    with pytest.raises(FortroligError) as info:
        parse_consultation_request(body, NOW)
    assert info.value.code == code and info.value.status == 400


async def test_anonymous_invite_gives_a_token_without_identity(world: World) -> None:
    secret = await world.consultation("anonymous", client_email=EMAIL, send_invite=True)
    assert world.mailer.sent[0][0] == EMAIL and secret in world.mailer.sent[0][2]
    consultation = next(iter(world.store._consultations.values()))
    assert consultation.client_email is None  # used for the invite only
    grant = await world.service.redeem(secret)
    assert isinstance(grant, JoinGrant) and grant.verification is VerificationMode.ANONYMOUS
    claims = await world.verifier.verify(grant.token, TokenKind.JOIN, consume=True)
    assert claims.verification is VerificationMode.ANONYMOUS and claims.name is None
    assert claims.verified is not None and claims.verified.startswith("Anonym ")
    assert claims.room == grant.room_id and EMAIL not in grant.token
    assert grant.room_url == f"/room/{grant.room_id}#role=client&token={grant.token}"
    assert claims.returning is False
    # The link works again (a closed tab): a new pseudonym, marked as returning.
    again = await world.service.redeem(secret)
    assert isinstance(again, JoinGrant) and again.token != grant.token
    again_claims = await world.verifier.verify(again.token, TokenKind.JOIN, consume=True)
    assert again_claims.returning is True


async def test_email_code_flow_and_single_use(world: World) -> None:
    sent = await world.code_sent()
    assert sent.email_hint == "k***@example.eu" and sent.attempts_left == 5
    assert sent.expires_at == NOW + 600
    grant = await world.service.verify_code(sent.handle, world.mailer.last_code())
    claims = await world.verifier.verify(grant.token, TokenKind.JOIN, consume=False)
    assert (claims.verification, claims.verified) == (VerificationMode.EMAIL_CODE, EMAIL)
    assert await code_of(world.service.verify_code(sent.handle, world.mailer.last_code())) == (
        "code_used"
    )


async def test_attempts_run_out_after_five(world: World) -> None:
    sent = await world.code_sent()
    right = world.mailer.last_code()
    wrong = f"{(int(right) + 1) % 10**6:06d}"
    for left in (4, 3, 2, 1, 0):
        with pytest.raises(FortroligError) as info:
            await world.service.verify_code(sent.handle, wrong)
        assert info.value.code == "code_invalid"
        assert info.value.details == {"attempts_left": left}  # type: ignore[attr-defined]
    assert await code_of(world.service.verify_code(sent.handle, wrong)) == "code_attempts_exhausted"
    assert await code_of(world.service.verify_code(sent.handle, right)) == "code_attempts_exhausted"


async def test_malformed_codes_cost_no_attempt(world: World) -> None:
    sent = await world.code_sent()
    for bad in ("12345", "1234567", "12a456", " 123456", 123456, None):
        assert await code_of(world.service.verify_code(sent.handle, bad)) == "code_malformed"
    assert await code_of(world.service.verify_code("x", "123456")) == "verification_malformed"
    assert await code_of(world.service.verify_code(v.new_secret(), "123456")) == (
        "verification_not_found"
    )
    challenge = await world.store.challenge(v.digest(sent.handle))
    assert challenge is not None and challenge.attempts_left == 5


async def test_expired_code_is_refused(world: World) -> None:
    sent = await world.code_sent()
    world.clock.advance(600)
    assert await code_of(world.service.verify_code(sent.handle, world.mailer.last_code())) == (
        "code_expired"
    )


async def test_expired_invite_is_refused_and_stays_unredeemed(world: World) -> None:
    secret = await world.consultation("anonymous")
    world.clock.advance(TTL)
    assert await code_of(world.service.redeem(secret)) == "invite_expired"
    invite = await world.store.invite(v.digest(secret))
    assert invite is not None and invite.redeemed_at is None


async def test_eid_invite_is_unavailable_and_not_consumed(world: World) -> None:
    secret = await world.consultation("eid")
    for _ in range(2):  # still not consumed the second time
        assert await code_of(world.service.redeem(secret)) == "verification_unavailable"


async def test_failed_code_email_releases_the_invite(world: World) -> None:
    secret = await world.consultation("email_code")
    world.mailer.fail = True
    assert await code_of(world.service.redeem(secret)) == "email_failed"
    assert not world.store._challenges
    world.mailer.fail = False
    assert isinstance(await world.service.redeem(secret), CodeSent)


async def test_failed_invite_email_creates_nothing(world: World) -> None:
    world.mailer.fail = True
    with pytest.raises(EmailFailed):
        await world.consultation("email_code", send_invite=True)
    assert not world.store._consultations and not world.store._invites
    assert len(world.service.signaling.rooms) == 0


async def test_email_needs_a_mailer(world: World) -> None:
    world.service.mailer = None
    assert await code_of(world.consultation("email_code")) == "email_not_configured"
    assert len(world.service.signaling.rooms) == 0


async def test_reissue_revokes_the_older_invite(world: World) -> None:
    old = await world.consultation("anonymous")
    consultation = next(iter(world.store._consultations.values()))
    assert await code_of(world.service.reissue("dr-b", consultation.id, False)) == (
        "consultation_not_found"
    )
    new = await world.service.reissue("dr-a", consultation.id, False)
    assert await code_of(world.service.redeem(old)) == "invite_revoked"
    assert isinstance(await world.service.redeem(new.url.split("#")[1]), JoinGrant)


async def test_ended_consultation_refuses_its_invite(world: World) -> None:
    secret = await world.consultation("anonymous")
    consultation = next(iter(world.store._consultations.values()))
    await world.service.signaling.end_room(consultation.room_id, "room_ended")
    assert await code_of(world.service.redeem(secret)) == "consultation_ended"


async def test_concurrent_redemptions_one_wins(world: World) -> None:
    secret = await world.consultation("email_code")
    results = await asyncio.gather(
        *(world.service.redeem(secret) for _ in range(100)), return_exceptions=True
    )
    wins = [r for r in results if isinstance(r, CodeSent)]
    losses = [r for r in results if isinstance(r, FortroligError)]
    assert len(wins) == 1 and {r.code for r in losses} == {"invite_throttled"}
    assert len(world.mailer.sent) == 1
    assert all(r.status == 429 and getattr(r, "retry_after_s", 0) >= 1 for r in losses)


async def test_a_used_email_code_invite_sends_a_new_code_after_the_resend_interval(
    world: World,
) -> None:
    secret = await world.consultation("email_code")
    first = await world.service.redeem(secret)
    assert isinstance(first, CodeSent)
    grant = await world.service.verify_code(first.handle, world.mailer.last_code())
    claims = await world.verifier.verify(grant.token, TokenKind.JOIN, consume=False)
    assert claims.returning is False
    # At once again: refused with the wait, and no second e-mail.
    refused = await code_of(world.service.redeem(secret))
    assert refused == "invite_throttled" and len(world.mailer.sent) == 1
    world.clock.advance(CODE_RESEND_S)
    second = await world.service.redeem(secret)
    assert isinstance(second, CodeSent) and second.handle != first.handle
    regrant = await world.service.verify_code(second.handle, world.mailer.last_code())
    reclaims = await world.verifier.verify(regrant.token, TokenKind.JOIN, consume=False)
    assert (reclaims.verification, reclaims.verified) == (VerificationMode.EMAIL_CODE, EMAIL)
    assert reclaims.returning is True


@dataclass
class FakeEid:
    """Stands for EidClient: records start(); the tests build the identity finish() would."""

    started: list[tuple[str, str]] = field(default_factory=list)

    async def start(self, return_to: str, consultation_ref: str) -> tuple[str, None]:
        self.started.append((return_to, consultation_ref))
        return f"https://broker.example.eu/authorize?state={len(self.started)}", None


def identity(ref: str, name: str | None = "Anna Testesen", subject: str = "p" * 64) -> Any:
    return VerifiedIdentity(
        subject=subject,
        issuer="https://broker.example.eu",
        name=name,
        acr=None,
        auth_time=None,
        consultation_ref=ref,
        return_to="/invite",
        verified_at=NOW,
        cpr="0101901234",
    )


async def test_eid_redeem_starts_a_login_and_the_callback_claims_once(world: World) -> None:
    eid = FakeEid()
    world.eid.fill(cast(Any, eid))
    secret = await world.consultation("eid")
    ref = v.digest(secret)
    for _ in range(2):  # starting a login claims nothing
        result = await world.service.redeem(secret)
        assert isinstance(result, EidRedirect) and result.url.startswith("https://broker.")
    assert eid.started == [("/invite", ref)] * 2  # the digest, never the secret
    invite = await world.store.invite(ref)
    assert invite is not None and invite.redeemed_at is None

    grant = await world.service.complete_eid(identity(ref))
    assert grant.verification is VerificationMode.EID and grant.verified == "Anna Testesen"
    claims = await world.verifier.verify(grant.token, TokenKind.JOIN, consume=False)
    assert claims.verification is VerificationMode.EID and claims.name == "Anna Testesen"
    assert "0101901234" not in repr(claims) and "p" * 64 not in repr(claims)
    assert claims.returning is False
    # The client comes back: a new eID login through the same invite, returning.
    assert isinstance(await world.service.redeem(secret), EidRedirect)
    back = await world.service.complete_eid(identity(ref))
    back_claims = await world.verifier.verify(back.token, TokenKind.JOIN, consume=False)
    assert back_claims.returning is True and back_claims.name == "Anna Testesen"


async def test_eid_callback_after_expiry_or_reissue_is_refused(world: World) -> None:
    world.eid.fill(cast(Any, FakeEid()))
    secret = await world.consultation("eid")
    await world.service.redeem(secret)
    consultation = next(iter(world.store._consultations.values()))
    await world.service.reissue("dr-a", consultation.id, False)
    assert await code_of(world.service.complete_eid(identity(v.digest(secret)))) == (
        "invite_revoked"
    )
    other = await world.consultation("eid")
    world.clock.advance(TTL)
    assert await code_of(world.service.complete_eid(identity(v.digest(other)))) == (
        "invite_expired"
    )
    assert await code_of(world.service.complete_eid(identity("0" * 64))) == "invite_not_found"


def test_eid_label_is_the_verified_name_or_a_pseudonym_label() -> None:
    assert eid_label(identity("r", name=" Bo Prøvesen\u0007 ")) == "Bo Prøvesen"
    long = eid_label(identity("r", name="Ø" * 100))
    assert len(long.encode("utf-8")) <= 64 and set(long) == {"Ø"}
    label = eid_label(identity("r", name=None))
    assert re.fullmatch(r"MitID [0-9A-F]{8}", label) and label == eid_label(identity("x", None))
    assert eid_label(identity("r", name=None, subject="q")) != label
