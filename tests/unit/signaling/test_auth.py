"""JWT issuing and verification: every failure class gets its own forged token."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from fortrolig.core.clock import FakeClock
from fortrolig.core.errors import Unauthenticated
from fortrolig.core.keys import KeySet, SigningKey
from fortrolig.signaling.auth import (
    Claims,
    MemoryJtiStore,
    Role,
    TokenIssuer,
    TokenKind,
    TokenVerifier,
    VerificationMode,
)

ISSUER = "fortrolig-test"
SKEW = 30
NOW = 1_700_000_000


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(obj: object) -> str:
    return b64(json.dumps(obj).encode())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(now=NOW)


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def verifier(key: SigningKey, clock: FakeClock) -> TokenVerifier:
    return TokenVerifier(KeySet.of(key.public_key), ISSUER, clock, SKEW, MemoryJtiStore(clock))


@pytest.fixture
def issuer(key: SigningKey, clock: FakeClock) -> TokenIssuer:
    return TokenIssuer(key, ISSUER, clock)


def claims(**changes: Any) -> dict[str, Any]:
    """A valid JOIN payload, with changes (a value of None removes the claim)."""
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "client-1",
        "aud": "fortrolig-join",
        "iat": NOW,
        "exp": NOW + 300,
        "jti": "jti-1",
        "tk": "join",
        "role": "client",
        "room": "room_abc",
    }
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not None}


def forge(key: SigningKey, payload: dict[str, Any], **header: Any) -> str:
    """Sign ``payload`` with raw base64 and a header we fully control."""
    head = {"alg": "EdDSA", "typ": "JWT", "kid": key.kid, **header}
    head = {k: v for k, v in head.items() if v is not None}
    signing_input = f"{b64json(head)}.{b64json(payload)}"
    return f"{signing_input}.{b64(key.private_key.sign(signing_input.encode()))}"


async def expect(verifier: TokenVerifier, token: str, code: str, **kw: Any) -> None:
    kind = kw.pop("kind", TokenKind.JOIN)
    with pytest.raises(Unauthenticated) as info:
        await verifier.verify(token, kind, consume=kw.pop("consume", False))
    assert info.value.code == code
    assert info.value.status == 401


# --- the good path ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(TokenKind))
async def test_issued_token_verifies(
    issuer: TokenIssuer, verifier: TokenVerifier, kind: TokenKind
) -> None:
    token, minted = issuer.mint(
        kind, "prac-1", Role.PRACTITIONER, ttl_s=60, room="room_x", name="Dr. Ø"
    )
    got = await verifier.verify(token, kind, consume=True)
    assert got == minted
    assert got == Claims(
        "prac-1", Role.PRACTITIONER, "room_x", got.jti, NOW, NOW + 60, kind, "Dr. Ø"
    )
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "EdDSA", "typ": "JWT", "kid": issuer._key.kid}


async def test_optional_claims_absent(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    token = issuer.issue(TokenKind.ACCESS, "prac-1", Role.PRACTITIONER, ttl_s=60)
    assert "room" not in jwt.decode(token, options={"verify_signature": False})
    got = await verifier.verify(token, TokenKind.ACCESS, consume=False)
    assert got.room is None and got.name is None


@pytest.mark.parametrize("mode", list(VerificationMode))
async def test_verification_claims_round_trip(
    issuer: TokenIssuer, verifier: TokenVerifier, mode: VerificationMode
) -> None:
    token, minted = issuer.mint(
        TokenKind.JOIN,
        "c-1",
        Role.CLIENT,
        ttl_s=60,
        room="room_x",
        verification=mode,
        verified="anna@example.eu",
    )
    payload = jwt.decode(token, options={"verify_signature": False})
    assert (payload["vm"], payload["vn"]) == (mode.value, "anna@example.eu")
    got = await verifier.verify(token, TokenKind.JOIN, consume=True)
    assert got == minted and got.verification is mode and got.verified == "anna@example.eu"


async def test_verification_claims_absent(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    token = issuer.issue(TokenKind.JOIN, "c-1", Role.CLIENT, ttl_s=60, room="room_x")
    assert {"vm", "vn"}.isdisjoint(jwt.decode(token, options={"verify_signature": False}))
    got = await verifier.verify(token, TokenKind.JOIN, consume=False)
    assert got.verification is None and got.verified is None


def test_issue_rejects_nonpositive_ttl(issuer: TokenIssuer) -> None:
    with pytest.raises(ValueError):
        issuer.issue(TokenKind.JOIN, "c", Role.CLIENT, ttl_s=0)


async def test_forged_helper_makes_valid_tokens(key: SigningKey, verifier: TokenVerifier) -> None:
    got = await verifier.verify(forge(key, claims()), TokenKind.JOIN, consume=True)
    assert got.jti == "jti-1" and got.role is Role.CLIENT


async def test_skew_tolerates_small_clock_differences(
    key: SigningKey, verifier: TokenVerifier
) -> None:
    late = forge(key, claims(iat=NOW - 400, exp=NOW - SKEW + 1))
    early = forge(key, claims(iat=NOW + SKEW, nbf=NOW + SKEW, exp=NOW + 300))
    await verifier.verify(late, TokenKind.JOIN, consume=False)
    await verifier.verify(early, TokenKind.JOIN, consume=False)


async def test_rotated_keys_all_verify(clock: FakeClock) -> None:
    old, new = SigningKey.generate(), SigningKey.generate()
    keyset = KeySet.of(old.public_key, new.public_key)
    verifier = TokenVerifier(keyset, ISSUER, clock, SKEW, MemoryJtiStore(clock))
    for key in (old, new):
        await verifier.verify(forge(key, claims()), TokenKind.JOIN, consume=False)


# --- malformed -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b",
        "a.b.c.d",
        "!!!.e30.sig",
        f"{b64(b'not json')}.e30.sig",
        f"{b64json([1, 2])}.e30.sig",
        f"{b64json('x')}.e30.sig",
        "x" * 9000,
    ],
)
async def test_malformed(verifier: TokenVerifier, token: str) -> None:
    await expect(verifier, token, "token_malformed")


async def test_non_string_token(verifier: TokenVerifier) -> None:
    await expect(verifier, 42, "token_malformed")  # type: ignore[arg-type]


async def test_signed_payload_not_json(key: SigningKey, verifier: TokenVerifier) -> None:
    head = b64json({"alg": "EdDSA", "typ": "JWT", "kid": key.kid})
    signing_input = f"{head}.{b64(b'{not json')}"
    token = f"{signing_input}.{b64(key.private_key.sign(signing_input.encode()))}"
    await expect(verifier, token, "token_malformed")


@pytest.mark.parametrize("typ", ["at+jwt", "JWS", "jwt", 1, None])
async def test_wrong_typ(key: SigningKey, verifier: TokenVerifier, typ: object) -> None:
    await expect(verifier, forge(key, claims(), typ=typ), "token_malformed")


# --- algorithm -------------------------------------------------------------------------------


async def test_alg_none(key: SigningKey, verifier: TokenVerifier) -> None:
    for alg in ("none", "None", "NONE"):
        head = b64json({"alg": alg, "typ": "JWT", "kid": key.kid})
        await expect(verifier, f"{head}.{b64json(claims())}.", "token_algorithm")


def hs256(secret: bytes, header: dict[str, Any], payload: dict[str, Any]) -> str:
    signing_input = f"{b64json(header)}.{b64json(payload)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


@pytest.mark.parametrize("encoding", ["raw", "pem"])
async def test_hs256_signed_with_public_key(
    key: SigningKey, verifier: TokenVerifier, encoding: str
) -> None:
    if encoding == "raw":
        secret = key.public_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    else:
        secret = key.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    token = hs256(secret, {"alg": "HS256", "typ": "JWT", "kid": key.kid}, claims())
    await expect(verifier, token, "token_algorithm")


@pytest.mark.parametrize("alg", ["RS256", "ES256", "HS512", "PS256", "Ed25519", 0])
async def test_other_algorithms(key: SigningKey, verifier: TokenVerifier, alg: object) -> None:
    await expect(verifier, forge(key, claims(), alg=alg), "token_algorithm")


async def test_missing_alg(key: SigningKey, verifier: TokenVerifier) -> None:
    await expect(verifier, forge(key, claims(), alg=None), "token_algorithm")


# --- key id ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kid", [None, "0123456789abcdef", "", 7, ["x"]])
async def test_missing_or_unknown_kid(key: SigningKey, verifier: TokenVerifier, kid: Any) -> None:
    await expect(verifier, forge(key, claims(), kid=kid), "token_key_unknown")


async def test_token_from_unpinned_key(verifier: TokenVerifier) -> None:
    stranger = SigningKey.generate()
    await expect(verifier, forge(stranger, claims()), "token_key_unknown")


# --- forbidden headers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("crit", ["exp"]),
        ("crit", ["b64"]),
        ("b64", False),
        ("jku", "https://evil.example/jwks.json"),
        ("x5u", "https://evil.example/cert.pem"),
        ("jwk", {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}),
        ("x5c", ["MIIB"]),
        ("cty", "JWT"),
    ],
)
async def test_forbidden_headers(
    key: SigningKey, verifier: TokenVerifier, name: str, value: object
) -> None:
    await expect(verifier, forge(key, claims(), **{name: value}), "token_header_forbidden")


async def test_embedded_jwk_of_attacker_is_refused(verifier: TokenVerifier) -> None:
    attacker = SigningKey.generate()
    raw = attacker.public_key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64(raw)}
    await expect(verifier, forge(attacker, claims(), jwk=jwk), "token_header_forbidden")


# --- signature -------------------------------------------------------------------------------


async def test_tampered_signature(key: SigningKey, verifier: TokenVerifier) -> None:
    head, body, sig = forge(key, claims()).split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=="))
    raw[0] ^= 1
    await expect(verifier, f"{head}.{body}.{b64(bytes(raw))}", "token_signature")


async def test_tampered_payload(key: SigningKey, verifier: TokenVerifier) -> None:
    head, _, sig = forge(key, claims()).split(".")
    body = b64json(claims(role="practitioner"))
    await expect(verifier, f"{head}.{body}.{sig}", "token_signature")


async def test_other_key_claiming_a_pinned_kid(key: SigningKey, verifier: TokenVerifier) -> None:
    impostor = SigningKey(key.kid, SigningKey.generate().private_key)
    await expect(verifier, forge(impostor, claims()), "token_signature")


async def test_empty_signature(key: SigningKey, verifier: TokenVerifier) -> None:
    head, body, _ = forge(key, claims()).split(".")
    await expect(verifier, f"{head}.{body}.", "token_signature")


# --- time ------------------------------------------------------------------------------------


async def test_expired(key: SigningKey, verifier: TokenVerifier, clock: FakeClock) -> None:
    token = forge(key, claims(exp=NOW + 60))
    clock.advance(60 + SKEW)
    await expect(verifier, token, "token_expired")


async def test_issued_token_expires(
    issuer: TokenIssuer, verifier: TokenVerifier, clock: FakeClock
) -> None:
    token = issuer.issue(TokenKind.RESUME, "p", Role.CLIENT, ttl_s=120)
    clock.advance(120 + SKEW + 1)
    await expect(verifier, token, "token_expired", kind=TokenKind.RESUME)


async def test_iat_in_the_future(key: SigningKey, verifier: TokenVerifier) -> None:
    token = forge(key, claims(iat=NOW + SKEW + 1, exp=NOW + 300))
    await expect(verifier, token, "token_not_yet_valid")


async def test_nbf_in_the_future(key: SigningKey, verifier: TokenVerifier) -> None:
    token = forge(key, claims(nbf=NOW + SKEW + 1))
    await expect(verifier, token, "token_not_yet_valid")


async def test_nbf_wrong_type(key: SigningKey, verifier: TokenVerifier) -> None:
    await expect(verifier, forge(key, claims(nbf="soon")), "token_claims")


async def test_exp_not_after_iat(key: SigningKey, verifier: TokenVerifier) -> None:
    await expect(verifier, forge(key, claims(exp=NOW)), "token_claims")


# --- audience, issuer, kind ------------------------------------------------------------------


@pytest.mark.parametrize("aud", ["fortrolig-api", "someone-else", ["fortrolig-join"]])
async def test_wrong_audience(key: SigningKey, verifier: TokenVerifier, aud: object) -> None:
    code = "token_claims" if isinstance(aud, list) else "token_audience"
    await expect(verifier, forge(key, claims(aud=aud)), code)


async def test_wrong_issuer(key: SigningKey, verifier: TokenVerifier) -> None:
    await expect(verifier, forge(key, claims(iss="evil")), "token_issuer")


@pytest.mark.parametrize(
    ("minted", "expected"),
    [
        (TokenKind.JOIN, TokenKind.ACCESS),
        (TokenKind.RESUME, TokenKind.JOIN),
        (TokenKind.ACCESS, TokenKind.RESUME),
    ],
)
async def test_wrong_kind(
    issuer: TokenIssuer, verifier: TokenVerifier, minted: TokenKind, expected: TokenKind
) -> None:
    token = issuer.issue(minted, "s", Role.PRACTITIONER, ttl_s=60)
    await expect(verifier, token, "token_audience", kind=expected)


async def test_kind_claim_disagrees_with_audience(key: SigningKey, verifier: TokenVerifier) -> None:
    await expect(verifier, forge(key, claims(tk="access")), "token_claims")


# --- claims ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["exp", "iat", "iss", "aud", "sub", "jti", "role", "tk"])
async def test_missing_required_claim(key: SigningKey, verifier: TokenVerifier, name: str) -> None:
    await expect(verifier, forge(key, claims(**{name: None})), "token_claims")


@pytest.mark.parametrize(
    "change",
    [
        {"role": "admin"},
        {"tk": "refresh"},
        {"sub": ""},
        {"sub": 5},
        {"jti": ""},
        {"iat": "1700000000"},
        {"exp": 1.5e9},
        {"exp": True},
        {"room": 3},
        {"name": ["x"]},
        {"vm": "sms"},
        {"vm": 3},
        {"vn": 5},
    ],
)
async def test_bad_claim_values(
    key: SigningKey, verifier: TokenVerifier, change: dict[str, Any]
) -> None:
    await expect(verifier, forge(key, claims(**change)), "token_claims")


# --- replay ----------------------------------------------------------------------------------


async def test_replayed_jti(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    token = issuer.issue(TokenKind.JOIN, "c", Role.CLIENT, ttl_s=60, room="r")
    await verifier.verify(token, TokenKind.JOIN, consume=True)
    await expect(verifier, token, "token_replayed", consume=True)


async def test_replay_of_a_different_token_with_the_same_jti(
    key: SigningKey, verifier: TokenVerifier
) -> None:
    await verifier.verify(forge(key, claims(sub="a")), TokenKind.JOIN, consume=True)
    await expect(verifier, forge(key, claims(sub="b")), "token_replayed", consume=True)


async def test_verify_without_consume_does_not_spend(
    issuer: TokenIssuer, verifier: TokenVerifier
) -> None:
    token = issuer.issue(TokenKind.JOIN, "c", Role.CLIENT, ttl_s=60)
    for _ in range(3):
        await verifier.verify(token, TokenKind.JOIN, consume=False)
    await verifier.verify(token, TokenKind.JOIN, consume=True)


async def test_failed_token_does_not_spend_its_jti(
    key: SigningKey, verifier: TokenVerifier
) -> None:
    await expect(verifier, forge(key, claims(iss="evil")), "token_issuer", consume=True)
    await verifier.verify(forge(key, claims()), TokenKind.JOIN, consume=True)


async def test_memory_jti_store_forgets_after_expiry(clock: FakeClock) -> None:
    store = MemoryJtiStore(clock)
    assert await store.consume("a", NOW + 10)
    assert not await store.consume("a", NOW + 10)
    assert await store.consume("b", NOW + 100)
    clock.advance(11)
    assert await store.consume("c", NOW + 100)  # the insert purges "a"
    assert len(store) == 2
    assert await store.consume("a", NOW + 50)  # forgotten after its expiry: bounded memory


# --- nothing but Unauthenticated escapes -----------------------------------------------------


def _run(verify: Callable[[], Any]) -> None:
    try:
        asyncio.run(verify())
    except Unauthenticated as exc:
        assert exc.code.startswith("token_")


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.text(max_size=300),
        st.builds(
            lambda a, b, c: f"{a}.{b}.{c}",
            st.text(max_size=60),
            st.text(max_size=60),
            st.text(max_size=60),
        ),
        st.builds(
            lambda h, p: f"{b64json(h)}.{b64json(p)}.AAAA",
            st.dictionaries(st.sampled_from(["alg", "typ", "kid", "crit"]), st.text(max_size=8)),
            st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5)),
        ),
    )
)
def test_arbitrary_tokens_only_raise_unauthenticated(token: str) -> None:
    clock = FakeClock(now=NOW)
    key = SigningKey.generate()
    verifier = TokenVerifier(KeySet.of(key.public_key), ISSUER, clock, SKEW, MemoryJtiStore(clock))
    _run(lambda: verifier.verify(token, TokenKind.JOIN, consume=True))
