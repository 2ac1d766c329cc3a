"""JWT issuing and verification (PyJWT, EdDSA only). Pure: no aiohttp, no I/O but the jti store.

Every failure raises :class:`~fortrolig.core.errors.Unauthenticated` with one of the stable codes
in :data:`TOKEN_ERROR_CODES`. Checks run in this order, so that nothing about an unsigned token's
claims is revealed: token shape and header (allowlisted fields ``alg``, ``typ``, ``kid`` only;
``alg`` must be EdDSA, ``typ`` JWT), key by ``kid`` from the pinned keyset, signature, claims
(types, ``iss``, ``aud``, ``tk``, times with ``skew_s`` of leeway), and finally the single-use
``jti`` when ``consume=True``.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from jwt.types import Options

from fortrolig.core.clock import Clock
from fortrolig.core.errors import Unauthenticated
from fortrolig.core.ids import random_token
from fortrolig.core.keys import KeySet, SigningKey

ALGORITHM: Final = "EdDSA"

# PyJWT checks only the signature; every claim is checked by our own code, on our clock, with our
# error codes (here and in eid/id_token.py).
SIGNATURE_ONLY: Final[Options] = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
}
MAX_TOKEN_CHARS: Final = 8192
ALLOWED_HEADERS: Final = frozenset({"alg", "typ", "kid"})
TOKEN_ERROR_CODES: Final = frozenset(
    {
        "token_malformed",
        "token_algorithm",
        "token_key_unknown",
        "token_header_forbidden",
        "token_expired",
        "token_not_yet_valid",
        "token_audience",
        "token_issuer",
        "token_signature",
        "token_replayed",
        "token_claims",
    }
)
_B64URL_RE = re.compile(r"^[A-Za-z0-9_-]*$")
_REQUIRED: Final = ("exp", "iat", "iss", "aud", "sub", "jti", "role", "tk")


class TokenKind(StrEnum):
    """What a token is for; carried both in ``aud`` and in the ``tk`` claim."""

    ACCESS = "access"
    JOIN = "join"
    RESUME = "resume"

    @property
    def audience(self) -> str:
        """The ``aud`` value for this kind."""
        return _AUDIENCES[self]


_AUDIENCES: Final = {
    TokenKind.ACCESS: "fortrolig-api",
    TokenKind.JOIN: "fortrolig-join",
    TokenKind.RESUME: "fortrolig-resume",
}


class Role(StrEnum):
    """Who the bearer is."""

    PRACTITIONER = "practitioner"
    CLIENT = "client"


class VerificationMode(StrEnum):
    """How a client proved who they are before its join token was issued (claim ``vm``)."""

    EMAIL_CODE = "email_code"
    ANONYMOUS = "anonymous"
    EID = "eid"


_ROLES: Final = frozenset(role.value for role in Role)
_KINDS: Final = frozenset(kind.value for kind in TokenKind)
_MODES: Final = frozenset(mode.value for mode in VerificationMode)


@dataclass(frozen=True, slots=True)
class Claims:
    """The verified content of a token. ``iat``/``exp`` are unix seconds."""

    sub: str
    role: Role
    room: str | None
    jti: str
    iat: int
    exp: int
    kind: TokenKind
    name: str | None
    # The client's verification (claims ``vm`` and ``vn``): the mode, and the verified e-mail
    # (email_code), the verified name (eid) or a pseudonym (anonymous). None on tokens that were
    # not issued through an invite (practitioners, direct links).
    verification: VerificationMode | None = None
    verified: str | None = None
    # Claim ``rt``: the client came in again through an invite it had used before (it waits in
    # the waiting room as a returning client).
    returning: bool = False


def _fail(code: str, message: str) -> Unauthenticated:
    return Unauthenticated(message, code=code)


class JtiStore(Protocol):
    """Remembers single-use token ids until they expire."""

    async def consume(self, jti: str, expires_at: float) -> bool:
        """Mark ``jti`` used; True the first time, False if it was already used."""
        ...


class MemoryJtiStore:
    """An in-process :class:`JtiStore`; entries are purged after ``expires_at`` on each insert."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    async def consume(self, jti: str, expires_at: float) -> bool:
        """Mark ``jti`` used; True the first time, False while it is remembered."""
        now = self._clock.now()
        self._purge(now)
        if jti in self._expiry:
            return False
        self._expiry[jti] = expires_at
        heapq.heappush(self._heap, (expires_at, jti))
        return True

    def _purge(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            _, jti = heapq.heappop(self._heap)
            self._expiry.pop(jti, None)


class TokenIssuer:
    """Signs tokens with the current signing key."""

    def __init__(self, signing_key: SigningKey, issuer: str, clock: Clock) -> None:
        self._key = signing_key
        self._issuer = issuer
        self._clock = clock

    def mint(
        self,
        kind: TokenKind,
        sub: str,
        role: Role,
        *,
        ttl_s: int,
        room: str | None = None,
        name: str | None = None,
        verification: VerificationMode | None = None,
        verified: str | None = None,
        returning: bool = False,
    ) -> tuple[str, Claims]:
        """Return a signed token and the claims it carries (for ``expires_at`` and the jti)."""
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        iat = int(self._clock.now())
        claims = Claims(
            sub,
            role,
            room,
            random_token(16),
            iat,
            iat + ttl_s,
            kind,
            name,
            verification,
            verified,
            returning,
        )
        payload: dict[str, Any] = {
            "iss": self._issuer,
            "sub": sub,
            "aud": kind.audience,
            "iat": claims.iat,
            "exp": claims.exp,
            "jti": claims.jti,
            "tk": kind.value,
            "role": role.value,
        }
        optional = (("room", room), ("name", name), ("vm", verification), ("vn", verified))
        payload.update({k: str(v) for k, v in optional if v is not None})
        if returning:
            payload["rt"] = "1"
        headers = {"kid": self._key.kid, "typ": "JWT"}
        token = jwt.encode(payload, self._key.private_key, algorithm=ALGORITHM, headers=headers)
        return token, claims

    def issue(
        self,
        kind: TokenKind,
        sub: str,
        role: Role,
        *,
        ttl_s: int,
        room: str | None = None,
        name: str | None = None,
        verification: VerificationMode | None = None,
        verified: str | None = None,
        returning: bool = False,
    ) -> str:
        """Return a signed token of ``kind`` for ``sub``, valid for ``ttl_s`` seconds."""
        return self.mint(
            kind,
            sub,
            role,
            ttl_s=ttl_s,
            room=room,
            name=name,
            verification=verification,
            verified=verified,
            returning=returning,
        )[0]


class TokenVerifier:
    """Verifies tokens against a pinned keyset; see the module docstring for the checks."""

    def __init__(
        self, keyset: KeySet, issuer: str, clock: Clock, skew_s: float, jti_store: JtiStore
    ) -> None:
        self._keyset = keyset
        self._issuer = issuer
        self._clock = clock
        self._skew = skew_s
        self._jti_store = jti_store

    async def verify(self, token: str, kind: TokenKind, *, consume: bool) -> Claims:
        """Return the claims of a valid ``kind`` token; with ``consume`` its jti is spent."""
        header = _parse_header(token)
        payload = _check_signature(token, self._key_for(header))
        claims = self._check_claims(payload, kind)
        if consume and not await self._jti_store.consume(claims.jti, claims.exp + self._skew):
            raise _fail("token_replayed", "token already used")
        return claims

    def _key_for(self, header: dict[str, Any]) -> Ed25519PublicKey:
        kid = header.get("kid")
        if not isinstance(kid, str) or kid not in self._keyset:
            raise _fail("token_key_unknown", "unknown signing key")
        return self._keyset[kid]

    def _check_claims(self, payload: dict[str, Any], kind: TokenKind) -> Claims:
        claims = _typed_claims(payload)
        if payload["iss"] != self._issuer:
            raise _fail("token_issuer", "wrong issuer")
        if payload["aud"] != kind.audience:
            raise _fail("token_audience", "wrong audience")
        if claims.kind is not kind:
            raise _fail("token_claims", "token kind does not match its audience")
        _check_times(claims, payload.get("nbf"), self._clock.now(), self._skew)
        return claims


def _b64url_decode(segment: str) -> bytes:
    if not _B64URL_RE.match(segment):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _parse_header(token: object) -> dict[str, Any]:
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise _fail("token_malformed", "not a compact JWS")
    try:
        header = json.loads(_b64url_decode(token.split(".", 1)[0]))
    except (ValueError, binascii.Error, RecursionError):
        raise _fail("token_malformed", "bad token header") from None
    if not isinstance(header, dict):
        raise _fail("token_malformed", "token header is not an object")
    if not ALLOWED_HEADERS.issuperset(header):
        raise _fail("token_header_forbidden", "token header has fields beyond alg, typ, kid")
    if header.get("alg") != ALGORITHM:
        raise _fail("token_algorithm", "algorithm not allowed")
    if header.get("typ") != "JWT":
        raise _fail("token_malformed", "token typ must be JWT")
    return header


def _check_signature(token: str, key: Ed25519PublicKey) -> dict[str, Any]:
    try:
        payload = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            options=SIGNATURE_ONLY,
        )
    except jwt.InvalidSignatureError:
        raise _fail("token_signature", "bad signature") from None
    except jwt.InvalidAlgorithmError:
        raise _fail("token_algorithm", "algorithm not allowed") from None
    except jwt.PyJWTError:
        raise _fail("token_malformed", "token cannot be decoded") from None
    if not isinstance(payload, dict):  # pragma: no cover - PyJWT rejects non-object payloads
        raise _fail("token_malformed", "token payload is not an object")
    return payload


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _typed_claims(payload: dict[str, Any]) -> Claims:
    missing = [name for name in _REQUIRED if name not in payload]
    if missing:
        raise _fail("token_claims", f"missing claims: {', '.join(missing)}")
    strings = ("iss", "aud", "sub", "jti", "role", "tk")
    optional = ("room", "name", "vm", "vn", "rt")
    if (
        not all(isinstance(payload[n], str) and payload[n] for n in strings)
        or not all(_is_int(payload[n]) for n in ("iat", "exp"))
        or not all(isinstance(payload.get(n), str | None) for n in optional)
        or payload["role"] not in _ROLES
        or payload["tk"] not in _KINDS
        or payload.get("vm", "email_code") not in _MODES
        or payload.get("rt", "1") != "1"
    ):
        raise _fail("token_claims", "claims have wrong types or values")
    return Claims(
        sub=payload["sub"],
        role=Role(payload["role"]),
        room=payload.get("room"),
        jti=payload["jti"],
        iat=payload["iat"],
        exp=payload["exp"],
        kind=TokenKind(payload["tk"]),
        name=payload.get("name"),
        verification=VerificationMode(payload["vm"]) if "vm" in payload else None,
        verified=payload.get("vn"),
        returning="rt" in payload,
    )


def _check_times(claims: Claims, nbf: object, now: float, skew: float) -> None:
    if claims.exp <= claims.iat:
        raise _fail("token_claims", "exp is not after iat")
    if claims.exp <= now - skew:
        raise _fail("token_expired", "token expired")
    if claims.iat > now + skew:
        raise _fail("token_not_yet_valid", "token issued in the future")
    if nbf is not None:
        if isinstance(nbf, bool) or not isinstance(nbf, int | float):
            raise _fail("token_claims", "nbf must be a number")
        if nbf > now + skew:
            raise _fail("token_not_yet_valid", "token not valid yet")
