"""National eID (MitID through an OIDC broker): a relying party. Pure: HTTP is injected.

The flow is the OpenID Connect authorization code flow with PKCE (S256), ``state`` and ``nonce``:

1. :meth:`EidClient.start` makes a fresh ``state`` (256 bits), ``nonce`` (256 bits) and PKCE code
   verifier (64 chars), keeps them server-side in a :class:`PendingStore` keyed by ``state``
   (single use, ``pending_ttl_s`` = 10 minutes), and returns the broker's authorization URL.
2. The broker redirects back with ``code``, ``state`` (and ``iss``, RFC 9207).
   :meth:`EidClient.finish` takes the pending login (gone afterwards, whatever happens next),
   redeems the code at the token endpoint with the code verifier and client authentication
   (``client_secret_basic`` or ``private_key_jwt``), and verifies the ID token: header (``alg``
   pinned to the configured asymmetric list; ``crit``, ``jku``, ``jwk``, ``x5u`` refused), key by
   ``kid`` from the broker's JWKS (fetched again once on an unknown ``kid``, at most every
   ``jwks_min_refresh_s``), signature, ``iss``, ``aud`` (and ``azp``), ``exp``/``iat``/``nbf`` with
   ``skew_s``, ``nonce``, ``acr``.
3. The result is a :class:`VerifiedIdentity`: the broker's pseudonymous ``sub``, the verified name
   and the ``acr``. The CPR number is neither requested nor kept unless ``allow_cpr`` is set.

Every failure raises :class:`EidRejected` (the login is refused: HTTP 401) or
:class:`EidUnavailable` (the broker cannot be used right now or is misconfigured: HTTP 502), each
with a stable ``code`` from :data:`EID_ERROR_CODES` and, where useful, a ``reason`` that narrows
it (for ``eid_id_token_invalid``: one of :data:`ID_TOKEN_REASONS`).

Only the standard library, PyJWT and cryptography are imported here; the aiohttp implementation of
:class:`EidHttp` lives in :mod:`fortrolig.signaling.eid_http`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import heapq
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Final, Protocol, TypeGuard
from urllib.parse import quote, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.types import Options

from fortrolig.core.clock import Clock
from fortrolig.core.config import EidConfig, read_private_file, read_secret_file
from fortrolig.core.errors import ConfigError, FortroligError, RateLimited, Unauthenticated
from fortrolig.core.ids import random_token

from .auth import SIGNATURE_ONLY

# Signature only (claims are checked below), and refuse weak broker keys.
_ID_TOKEN_SIGNATURE: Final[Options] = {**SIGNATURE_ONLY, "enforce_minimum_key_length": True}

# --- constants -------------------------------------------------------------------------------

NSIS_LOA: Final = "https://data.gov.dk/concept/core/nsis/loa"
"""Prefix of the Danish NSIS levels of assurance, the ``acr`` values MitID brokers use."""
NSIS_LEVELS: Final = (f"{NSIS_LOA}/Low", f"{NSIS_LOA}/Substantial", f"{NSIS_LOA}/High")
"""The NSIS levels from lowest to highest: the default ``acr_order``."""

ASYMMETRIC_ALGS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
"""The only ID token algorithms that may be configured (never ``none`` nor ``HS*``)."""
CLIENT_AUTH_METHODS: Final = frozenset({"client_secret_basic", "private_key_jwt"})
FORBIDDEN_HEADERS: Final = frozenset({"crit", "jku", "jwk", "x5u"})
MAX_TOKEN_CHARS: Final = 16_384
MAX_PARAM_CHARS: Final = 2_048
MAX_SUB_CHARS: Final = 255
MAX_NAME_CHARS: Final = 256
ASSERTION_TTL_S: Final = 60
STATE_BYTES: Final = 32
NONCE_BYTES: Final = 32
VERIFIER_BYTES: Final = 48
"""48 random bytes make a 64-character code verifier (RFC 7636 asks for 43 to 128)."""

EID_ERROR_CODES: Final = frozenset(
    {
        "eid_state_unknown",
        "eid_state_expired",
        "eid_callback_invalid",
        "eid_authorization_denied",
        "eid_issuer_mismatch",
        "eid_token_request_failed",
        "eid_id_token_invalid",
        "eid_nonce_mismatch",
        "eid_acr_insufficient",
        "eid_discovery_failed",
        "eid_jwks_failed",
        "eid_return_to_invalid",
        "eid_too_many_pending",
    }
)
ID_TOKEN_REASONS: Final = frozenset(
    {
        "malformed",
        "header_forbidden",
        "algorithm",
        "key_unknown",
        "key_invalid",
        "signature",
        "issuer",
        "audience",
        "azp",
        "expired",
        "not_yet_valid",
        "stale",
        "claims",
    }
)
_CURVES: Final = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_B64URL_RE = re.compile(r"^[A-Za-z0-9_-]*$")
_STATE_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_REASON_RE = re.compile(r"^[a-z0-9_]{1,40}$")
_SCOPE_RE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")
_CPR_RE = re.compile(r"^[0-9]{10}$")


# --- errors ----------------------------------------------------------------------------------


class EidRejected(Unauthenticated):
    """The eID login is refused (bad state, bad token, too low a level): HTTP 401."""

    code = "eid_rejected"

    def __init__(self, message: str, *, code: str, reason: str | None = None) -> None:
        super().__init__(message, code=code)
        self.reason = reason

    def __repr__(self) -> str:
        return f"EidRejected(code={self.code!r}, reason={self.reason!r}, message={self.message!r})"


class EidUnavailable(FortroligError):
    """The broker cannot be used (unreachable, misbehaving, misconfigured): HTTP 502."""

    code = "eid_unavailable"
    status = 502

    def __init__(self, message: str, *, code: str, reason: str | None = None) -> None:
        super().__init__(message, code=code)
        self.reason = reason

    def __repr__(self) -> str:
        return (
            f"EidUnavailable(code={self.code!r}, reason={self.reason!r}, message={self.message!r})"
        )


def _token_invalid(reason: str, message: str) -> EidRejected:
    return EidRejected(message, code="eid_id_token_invalid", reason=reason)


def _safe_reason(value: object, fallback: str) -> str:
    """An OAuth error code from the broker, if it looks like one (never free text)."""
    if isinstance(value, str) and _REASON_RE.match(value):
        return value
    return fallback


# --- settings and credentials ----------------------------------------------------------------


def _url_ok(url: str, allow_insecure_loopback: bool) -> bool:
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        return False
    del port
    if parts.username is not None or parts.password is not None or parts.fragment:
        return False
    if not parts.hostname:
        return False
    if parts.scheme == "https":
        return True
    return (
        parts.scheme == "http"
        and allow_insecure_loopback
        and parts.hostname in ("127.0.0.1", "::1")
    )


@dataclass(frozen=True, slots=True)
class EidSettings:
    """Configuration of the relying party; see docs/eid.md for the proposed ``[eid]`` keys.

    ``min_acr`` is the lowest acceptable ``acr`` (by ``acr_order``, lowest first); when empty, the
    lowest of the requested ``acr_values`` found in ``acr_order`` is required, and when both are
    empty the ``acr`` is not checked. ``allow_insecure_loopback`` lets ``http://127.0.0.1`` (or
    ``[::1]``) stand for the issuer, its endpoints and the redirect URI: tests only.
    """

    issuer: str
    client_id: str
    redirect_uri: str
    client_auth: str = "client_secret_basic"
    client_secret_file: Path | None = None
    private_key_file: Path | None = None
    private_key_alg: str = "ES256"
    scopes: tuple[str, ...] = ()
    acr_values: tuple[str, ...] = ()
    min_acr: str = ""
    acr_order: tuple[str, ...] = NSIS_LEVELS
    id_token_algs: tuple[str, ...] = ("RS256", "PS256", "ES256")
    allow_cpr: bool = False
    cpr_scope: str = "ssn"
    cpr_claim: str = "dk.cpr"
    name_claim: str = "name"
    prompt_login: bool = True
    ui_locales: str = ""
    allow_insecure_loopback: bool = False
    skew_s: float = 60.0
    id_token_max_age_s: float = 600.0
    pending_ttl_s: float = 600.0
    max_pending: int = 10_000
    discovery_ttl_s: float = 3600.0
    jwks_min_refresh_s: float = 30.0
    http_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        def require(ok: bool, key: str, problem: str) -> None:
            if not ok:
                raise ConfigError(f"config key eid.{key}: {problem}")

        loopback = self.allow_insecure_loopback
        require(_url_ok(self.issuer, loopback), "issuer", "must be an https URL")
        require(_url_ok(self.redirect_uri, loopback), "redirect_uri", "must be an https URL")
        require(0 < len(self.client_id) <= 255, "client_id", "must be set")
        require(self.client_auth in CLIENT_AUTH_METHODS, "client_auth", "unsupported method")
        require(
            self.client_auth != "client_secret_basic" or self.client_secret_file is not None,
            "client_secret_file",
            "is required for client_secret_basic",
        )
        require(
            self.client_auth != "private_key_jwt" or self.private_key_file is not None,
            "private_key_file",
            "is required for private_key_jwt",
        )
        require(
            self.private_key_alg in ("RS256", "PS256", "ES256"),
            "private_key_alg",
            "must be RS256, PS256 or ES256",
        )
        require(bool(self.id_token_algs), "id_token_algs", "must not be empty")
        require(
            ASYMMETRIC_ALGS.issuperset(self.id_token_algs),
            "id_token_algs",
            f"only {', '.join(sorted(ASYMMETRIC_ALGS))} are allowed (never none or HS*)",
        )
        require(all(_SCOPE_RE.match(s) for s in self.scopes), "scopes", "not valid scope tokens")
        require(
            self.allow_cpr or self.cpr_scope not in self.scopes,
            "scopes",
            f"{self.cpr_scope!r} (the CPR scope) needs allow_cpr = true",
        )
        require(bool(_SCOPE_RE.match(self.cpr_scope)), "cpr_scope", "not a valid scope token")
        require(all(_SCOPE_RE.match(v) for v in self.acr_values), "acr_values", "not valid tokens")
        require(
            not self.min_acr or self.min_acr in self.acr_order,
            "min_acr",
            "must be one of acr_order",
        )
        require(bool(self.name_claim), "name_claim", "must be set")
        for key in ("skew_s", "id_token_max_age_s", "jwks_min_refresh_s"):
            require(getattr(self, key) >= 0, key, "must not be negative")
        for key in ("pending_ttl_s", "discovery_ttl_s", "http_timeout_s"):
            require(getattr(self, key) > 0, key, "must be positive")
        require(self.max_pending > 0, "max_pending", "must be positive")

    @property
    def scope(self) -> str:
        """The ``scope`` parameter: ``openid``, the configured scopes, and the CPR scope only if
        ``allow_cpr``."""
        names = ["openid"]
        for name in self.scopes:
            if name not in names and (self.allow_cpr or name != self.cpr_scope):
                names.append(name)
        return " ".join(names)

    @property
    def required_acr(self) -> str | None:
        """The lowest ``acr`` that is accepted, or None when the level is not checked."""
        if self.min_acr:
            return self.min_acr
        ranked = [v for v in self.acr_values if v in self.acr_order]
        if not ranked:
            return None
        return min(ranked, key=self.acr_order.index)


@dataclass(frozen=True, slots=True)
class ClientSecretBasic:
    """``client_secret_basic``: the client id and secret in an HTTP Basic header."""

    secret: str = field(repr=False)

    method: ClassVar[str] = "client_secret_basic"


@dataclass(frozen=True, slots=True)
class PrivateKeyJwt:
    """``private_key_jwt``: a short signed assertion (RFC 7523) with our private key."""

    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = field(repr=False)
    alg: str
    kid: str

    method: ClassVar[str] = "private_key_jwt"

    @classmethod
    def from_key(
        cls, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, alg: str
    ) -> PrivateKeyJwt:
        """Wrap ``key`` for ``alg``; the kid is the RFC 7638 thumbprint of its public key."""
        if alg in ("RS256", "PS256"):
            if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 2048:
                raise ConfigError(f"{alg} needs an RSA key of at least 2048 bits")
        elif alg == "ES256":
            if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
                raise ConfigError("ES256 needs a P-256 key")
        else:
            raise ConfigError(f"unsupported client assertion algorithm {alg}")
        return cls(key=key, alg=alg, kid=_thumbprint(_public_jwk(key)))

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK (with ``kid``, ``alg``, ``use``) to register at the broker."""
        return {**_public_jwk(self.key), "kid": self.kid, "alg": self.alg, "use": "sig"}


ClientAuth = ClientSecretBasic | PrivateKeyJwt


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _public_jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> dict[str, str]:
    if isinstance(key, rsa.RSAPrivateKey):
        numbers = key.public_key().public_numbers()
        return {"kty": "RSA", "n": _b64url_uint(numbers.n), "e": _b64url_uint(numbers.e)}
    point = key.public_key().public_numbers()
    size = (key.curve.key_size + 7) // 8

    def coord(v: int) -> str:
        return base64.urlsafe_b64encode(v.to_bytes(size, "big")).rstrip(b"=").decode("ascii")

    return {"kty": "EC", "crv": "P-256", "x": coord(point.x), "y": coord(point.y)}


def _thumbprint(jwk: Mapping[str, str]) -> str:
    members = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def settings_from_config(config: EidConfig, base_url: str) -> EidSettings:
    """The relying party's settings from the ``[eid]`` section (which must be ``enabled``); an
    unset ``redirect_uri`` is ``<base_url>/eid/callback``. Raises ``ConfigError``."""
    if not config.enabled:
        raise ConfigError("config key eid.issuer: eID is not configured")
    # Every setting is a key of the [eid] section with the same name (tests/unit/test_eid.py
    # checks it), so the copy is by field; only the callback URL is derived.
    values = {f.name: getattr(config, f.name) for f in fields(EidSettings)}
    values["redirect_uri"] = config.callback_url(base_url)
    return EidSettings(**values)


def load_client_auth(settings: EidSettings) -> ClientAuth:
    """Read the client credentials that ``settings`` name (private files only, see
    :func:`fortrolig.core.config.read_private_file`)."""
    if settings.client_auth == "client_secret_basic":
        assert settings.client_secret_file is not None  # checked by EidSettings
        secret = read_secret_file(settings.client_secret_file)
        try:
            return ClientSecretBasic(secret.decode("utf-8"))
        except UnicodeDecodeError:
            raise ConfigError("eid client secret is not UTF-8") from None
    assert settings.private_key_file is not None  # checked by EidSettings
    pem = read_private_file(settings.private_key_file, "eid private key file")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise ConfigError("eid private key file is not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigError("eid private key must be RSA or EC P-256")
    return PrivateKeyJwt.from_key(key, settings.private_key_alg)


# --- HTTP port -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """What the broker answered: status, media type (lowercase, no parameters) and body."""

    status: int
    content_type: str
    body: bytes


class EidTransportError(Exception):
    """The request did not get an answer (connection, timeout, body too large)."""


class EidHttp(Protocol):
    """The two requests a relying party makes. Implementations must not follow redirects and
    raise :class:`EidTransportError` when no answer arrives."""

    async def get(self, url: str) -> HttpResponse:
        """GET ``url`` accepting JSON."""
        ...

    async def post_form(
        self, url: str, form: Mapping[str, str], headers: Mapping[str, str]
    ) -> HttpResponse:
        """POST ``form`` as application/x-www-form-urlencoded with extra ``headers``."""
        ...


def _json_object(response: HttpResponse) -> dict[str, Any] | None:
    if response.content_type not in ("application/json", "application/jwk-set+json"):
        return None
    try:
        value = json.loads(response.body)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


# --- pending logins --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingLogin:
    """A started login, kept server-side until the broker redirects back (or it expires)."""

    state: str
    nonce: str = field(repr=False)
    code_verifier: str = field(repr=False)
    return_to: str
    consultation_ref: str
    redirect_uri: str
    required_acr: str | None
    created_at: float
    expires_at: float


class PendingStore(Protocol):
    """Keeps pending logins by ``state``; each can be taken once."""

    async def put(self, pending: PendingLogin) -> None:
        """Remember ``pending``; raise ``RateLimited`` when too many are pending."""
        ...

    async def take(self, state: str) -> PendingLogin | None:
        """Remove and return the login for ``state`` (expired ones too, for a clear error)."""
        ...


class MemoryPendingStore:
    """An in-process :class:`PendingStore`. Expired entries are dropped ``grace_s`` after they
    expire (until then ``take`` returns them so the caller can say "expired" not "unknown")."""

    def __init__(self, clock: Clock, *, max_entries: int = 10_000, grace_s: float = 600.0) -> None:
        self._clock = clock
        self._max = max_entries
        self._grace = grace_s
        self._entries: dict[str, PendingLogin] = {}
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._entries)

    async def put(self, pending: PendingLogin) -> None:
        """Remember ``pending`` under its state."""
        self._purge(self._clock.now())
        if len(self._entries) >= self._max:
            raise RateLimited("too many eID logins pending", code="eid_too_many_pending")
        if pending.state in self._entries:  # pragma: no cover - 256 random bits
            raise ValueError("duplicate state")
        self._entries[pending.state] = pending
        heapq.heappush(self._heap, (pending.expires_at + self._grace, pending.state))

    async def take(self, state: str) -> PendingLogin | None:
        """Remove and return the login for ``state``, if it is still remembered."""
        self._purge(self._clock.now())
        return self._entries.pop(state, None)

    def _purge(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            _, state = heapq.heappop(self._heap)
            entry = self._entries.get(state)
            if entry is not None and entry.expires_at + self._grace <= now:
                del self._entries[state]


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """The parts of the broker's discovery document that the relying party uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    iss_parameter_supported: bool


@dataclass(frozen=True, slots=True)
class VerifiedIdentity:
    """Who the broker says logged in. ``subject`` is the broker's pseudonymous ``sub`` (stable per
    broker and client, not a national number); ``cpr`` is None unless ``allow_cpr``. Name and CPR
    are left out of ``repr`` so that they never reach a log line by accident."""

    subject: str
    issuer: str
    name: str | None = field(repr=False)
    acr: str | None
    auth_time: int | None
    consultation_ref: str
    return_to: str
    verified_at: float
    cpr: str | None = field(default=None, repr=False)


# --- PKCE and small helpers ------------------------------------------------------------------


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of ``verifier`` (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def check_return_to(return_to: str) -> str:
    """Accept only a local absolute path (``/...``, not ``//...``): no open redirect."""
    if (
        not isinstance(return_to, str)
        or not return_to.startswith("/")
        or return_to.startswith("//")
        or len(return_to) > MAX_PARAM_CHARS
        or "\\" in return_to
        or any(ord(c) < 0x21 or ord(c) == 0x7F for c in return_to)
    ):
        raise EidRejected("return_to must be a local path", code="eid_return_to_invalid")
    return return_to


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _b64url_decode(segment: str) -> bytes:
    if not _B64URL_RE.match(segment):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


# --- ID token verification (pure) ------------------------------------------------------------


def parse_id_token_header(token: object, algs: tuple[str, ...]) -> dict[str, Any]:
    """Return the header of a compact JWS whose ``alg`` is in ``algs``; refuse extension headers
    (``crit``, ``jku``, ``jwk``, ``x5u``) and a ``typ`` other than JWT."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise _token_invalid("malformed", "ID token is not a compact JWS")
    try:
        header = json.loads(_b64url_decode(token.split(".", 1)[0]))
    except (ValueError, binascii.Error, RecursionError):
        raise _token_invalid("malformed", "bad ID token header") from None
    if not isinstance(header, dict):
        raise _token_invalid("malformed", "ID token header is not an object")
    if FORBIDDEN_HEADERS.intersection(header):
        raise _token_invalid("header_forbidden", "ID token header has forbidden fields")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algs:
        raise _token_invalid("algorithm", "ID token algorithm not allowed")
    typ = header.get("typ")
    if typ is not None and (
        not isinstance(typ, str) or typ.lower() not in ("jwt", "application/jwt")
    ):
        raise _token_invalid("malformed", "ID token typ must be JWT")
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid):
        raise _token_invalid("malformed", "ID token kid must be a string")
    return header


def _key_fits(jwk: Mapping[str, Any], alg: str) -> bool:
    if jwk.get("use", "sig") != "sig" or jwk.get("alg", alg) != alg:
        return False
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return False
    kty = jwk.get("kty")
    if alg[:2] in ("RS", "PS"):
        return kty == "RSA"
    if alg in _CURVES:
        return kty == "EC" and jwk.get("crv") == _CURVES[alg]
    return kty == "OKP" and jwk.get("crv") == "Ed25519"


def select_key(header: Mapping[str, Any], jwks: Mapping[str, Any]) -> jwt.PyJWK | None:
    """The key of ``jwks`` that verifies a token with ``header``, or None if there is none.

    With a ``kid`` the key must carry that ``kid``; without one, exactly one key may fit the
    algorithm. A key whose ``alg``, ``use``, ``key_ops``, ``kty`` or curve does not fit is never
    used. Raises ``eid_id_token_invalid``/``key_invalid`` for an unusable matching key."""
    alg = header["alg"]
    kid = header.get("kid")
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        return None
    fitting = [
        k
        for k in keys
        if isinstance(k, dict) and (kid is None or k.get("kid") == kid) and _key_fits(k, alg)
    ]
    if len(fitting) != 1:
        return None
    try:
        return jwt.PyJWK(fitting[0], algorithm=alg)
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
        raise _token_invalid("key_invalid", "the broker's key cannot be used") from None


def check_id_token_signature(token: str, key: jwt.PyJWK, alg: str) -> dict[str, Any]:
    """Verify the signature of ``token`` with ``key`` (and only ``alg``); return the payload."""
    try:
        payload = jwt.decode(
            token,
            key,
            algorithms=[alg],
            options=_ID_TOKEN_SIGNATURE,
        )
    except jwt.InvalidSignatureError:
        raise _token_invalid("signature", "bad ID token signature") from None
    except jwt.InvalidAlgorithmError:
        raise _token_invalid("algorithm", "ID token algorithm not allowed") from None
    except jwt.InvalidKeyError:
        raise _token_invalid("key_invalid", "the broker's key is too weak") from None
    except jwt.PyJWTError:
        raise _token_invalid("malformed", "ID token cannot be decoded") from None
    if not isinstance(payload, dict):  # pragma: no cover - PyJWT rejects non-object payloads
        raise _token_invalid("malformed", "ID token payload is not an object")
    return payload


def check_id_token_claims(
    claims: Mapping[str, Any],
    *,
    issuer: str,
    client_id: str,
    nonce: str,
    now: float,
    skew_s: float,
    max_age_s: float,
    required_acr: str | None,
    acr_order: tuple[str, ...],
) -> None:
    """Check ``iss``, ``aud``/``azp``, ``sub``, times, ``nonce`` and ``acr`` (OIDC Core §3.1.3.7).

    ``max_age_s`` bounds how old ``iat`` may be (the token was just issued for this login)."""
    if claims.get("iss") != issuer:
        raise _token_invalid("issuer", "wrong ID token issuer")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise _token_invalid("audience", "ID token audience missing")
    if client_id not in audiences:
        raise _token_invalid("audience", "ID token is not for this client")
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != client_id:
        raise _token_invalid("azp", "ID token authorized party is not this client")
    exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf", 0)
    if not _is_int(exp) or not _is_int(iat) or not _is_int(nbf):
        raise _token_invalid("claims", "ID token exp/iat/nbf must be integers")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > MAX_SUB_CHARS:
        raise _token_invalid("claims", "ID token sub missing or too long")
    if exp <= now - skew_s:
        raise _token_invalid("expired", "ID token expired")
    if iat > now + skew_s or nbf > now + skew_s:
        raise _token_invalid("not_yet_valid", "ID token issued in the future")
    if iat < now - skew_s - max_age_s:
        raise _token_invalid("stale", "ID token issued too long ago")
    got_nonce = claims.get("nonce")
    if not isinstance(got_nonce, str) or not hmac.compare_digest(
        got_nonce.encode("utf-8"), nonce.encode("utf-8")
    ):
        raise EidRejected("ID token nonce does not match the login", code="eid_nonce_mismatch")
    acr = claims.get("acr")
    if acr is not None and not isinstance(acr, str):
        raise _token_invalid("claims", "ID token acr must be a string")
    if required_acr is not None and (
        acr not in acr_order or acr_order.index(acr) < acr_order.index(required_acr)
    ):
        raise EidRejected("level of assurance too low", code="eid_acr_insufficient")


# --- the relying party -----------------------------------------------------------------------


class EidClient:
    """An OIDC relying party for one broker. See the module docstring for the flow."""

    def __init__(
        self,
        settings: EidSettings,
        http: EidHttp,
        clock: Clock,
        credentials: ClientAuth,
        *,
        pending: PendingStore | None = None,
    ) -> None:
        if credentials.method != settings.client_auth:
            raise ConfigError(
                f"eid.client_auth is {settings.client_auth} but the credentials are for "
                f"{credentials.method}"
            )
        self._settings = settings
        self._http = http
        self._clock = clock
        self._credentials = credentials
        if pending is None:  # not `or`: an empty MemoryPendingStore is falsy (it has __len__)
            pending = MemoryPendingStore(
                clock, max_entries=settings.max_pending, grace_s=settings.pending_ttl_s
            )
        self._pending: PendingStore = pending
        self._metadata: ProviderMetadata | None = None
        self._metadata_at = 0.0
        self._jwks: dict[str, Any] | None = None
        self._jwks_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def settings(self) -> EidSettings:
        """The settings this client runs with."""
        return self._settings

    # -- discovery and keys --

    async def discovery(self) -> ProviderMetadata:
        """The broker's metadata, fetched from ``/.well-known/openid-configuration`` and cached
        for ``discovery_ttl_s``; raises ``eid_discovery_failed``."""
        async with self._lock:
            now = self._clock.monotonic()
            if self._metadata is None or now - self._metadata_at >= self._settings.discovery_ttl_s:
                self._metadata = await self._fetch_metadata()
                self._metadata_at = now
            return self._metadata

    async def _fetch_metadata(self) -> ProviderMetadata:
        s = self._settings
        url = s.issuer.rstrip("/") + "/.well-known/openid-configuration"

        def fail(reason: str, message: str) -> EidUnavailable:
            return EidUnavailable(message, code="eid_discovery_failed", reason=reason)

        try:
            response = await self._http.get(url)
        except EidTransportError:
            raise fail("unreachable", "eID broker discovery unreachable") from None
        if response.status != 200:
            raise fail(f"http_{response.status}", "eID broker discovery failed")
        doc = _json_object(response)
        if doc is None:
            raise fail("bad_response", "eID broker discovery is not a JSON object")
        if doc.get("issuer") != s.issuer:
            raise fail("issuer_mismatch", "eID broker discovery names another issuer")
        endpoints = {}
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = doc.get(key)
            if not isinstance(value, str) or not _url_ok(value, s.allow_insecure_loopback):
                raise fail("insecure_endpoint", f"eID broker {key} missing or not https")
            endpoints[key] = value
        for key, needed in (
            ("response_types_supported", "code"),
            ("code_challenge_methods_supported", "S256"),
            ("token_endpoint_auth_methods_supported", s.client_auth),
        ):
            listed = doc.get(key)
            if listed is not None and (not isinstance(listed, list) or needed not in listed):
                raise fail("unsupported", f"eID broker does not support {needed} ({key})")
        algs = doc.get("id_token_signing_alg_values_supported")
        if isinstance(algs, list) and not set(algs).intersection(s.id_token_algs):
            raise fail("unsupported", "eID broker signs ID tokens with no allowed algorithm")
        return ProviderMetadata(
            issuer=s.issuer,
            authorization_endpoint=endpoints["authorization_endpoint"],
            token_endpoint=endpoints["token_endpoint"],
            jwks_uri=endpoints["jwks_uri"],
            iss_parameter_supported=doc.get("authorization_response_iss_parameter_supported")
            is True,
        )

    async def _fetch_jwks(self, metadata: ProviderMetadata) -> dict[str, Any]:
        try:
            response = await self._http.get(metadata.jwks_uri)
        except EidTransportError:
            raise EidUnavailable(
                "eID broker keys unreachable", code="eid_jwks_failed", reason="unreachable"
            ) from None
        doc = _json_object(response) if response.status == 200 else None
        if doc is None or not isinstance(doc.get("keys"), list):
            raise EidUnavailable(
                "eID broker keys unusable", code="eid_jwks_failed", reason="bad_response"
            )
        return doc

    async def _key_for(self, header: Mapping[str, Any], metadata: ProviderMetadata) -> jwt.PyJWK:
        """The verification key; the JWKS is fetched again once when the key is not in it (at
        most every ``jwks_min_refresh_s``), and when the cache is older than the discovery TTL."""
        s = self._settings
        async with self._lock:
            now = self._clock.monotonic()
            fresh = False
            if self._jwks is None or now - self._jwks_at >= s.discovery_ttl_s:
                self._jwks, self._jwks_at, fresh = await self._fetch_jwks(metadata), now, True
            key = select_key(header, self._jwks)
            if key is None and not fresh and now - self._jwks_at >= s.jwks_min_refresh_s:
                self._jwks, self._jwks_at = await self._fetch_jwks(metadata), now
                key = select_key(header, self._jwks)
        if key is None:
            raise _token_invalid("key_unknown", "ID token signed with an unknown key")
        return key

    # -- the flow --

    async def start(self, return_to: str, consultation_ref: str) -> tuple[str, PendingLogin]:
        """Begin a login: return the broker's authorization URL and the pending login kept
        server-side (only its ``state`` travels, in the URL)."""
        s = self._settings
        check_return_to(return_to)
        if not isinstance(consultation_ref, str) or not 0 < len(consultation_ref) <= 200:
            raise ValueError("consultation_ref must be a non-empty string of ≤ 200 characters")
        metadata = await self.discovery()
        now = self._clock.now()
        pending = PendingLogin(
            state=random_token(STATE_BYTES),
            nonce=random_token(NONCE_BYTES),
            code_verifier=random_token(VERIFIER_BYTES),
            return_to=return_to,
            consultation_ref=consultation_ref,
            redirect_uri=s.redirect_uri,
            required_acr=s.required_acr,
            created_at=now,
            expires_at=now + s.pending_ttl_s,
        )
        params = {
            "response_type": "code",
            "client_id": s.client_id,
            "redirect_uri": s.redirect_uri,
            "scope": s.scope,
            "state": pending.state,
            "nonce": pending.nonce,
            "code_challenge": pkce_challenge(pending.code_verifier),
            "code_challenge_method": "S256",
        }
        if s.acr_values:
            params["acr_values"] = " ".join(s.acr_values)
        if s.prompt_login:
            params["prompt"] = "login"
        if s.ui_locales:
            params["ui_locales"] = s.ui_locales
        await self._pending.put(pending)
        endpoint = metadata.authorization_endpoint
        separator = "&" if urlsplit(endpoint).query else "?"
        return f"{endpoint}{separator}{urlencode(params, quote_via=quote)}", pending

    async def _take(self, state: object) -> PendingLogin:
        if not isinstance(state, str) or not _STATE_RE.match(state):
            raise EidRejected("unknown eID login", code="eid_state_unknown")
        pending = await self._pending.take(state)
        if pending is None:
            raise EidRejected("unknown or already used eID login", code="eid_state_unknown")
        if self._clock.now() >= pending.expires_at:
            raise EidRejected("eID login expired", code="eid_state_expired")
        return pending

    async def abort(self, state: str, error: object) -> EidRejected:
        """The broker redirected back with ``error`` (e.g. ``access_denied``): spend the pending
        login and return the error to raise (``eid_authorization_denied``, reason = the OAuth
        error code). Raises ``eid_state_*`` when ``state`` is not a live login."""
        await self._take(state)
        reason = _safe_reason(error, "error")
        return EidRejected(
            "eID login was not completed", code="eid_authorization_denied", reason=reason
        )

    async def finish(self, code: str, state: str, *, iss: str | None = None) -> VerifiedIdentity:
        """Complete a login from the broker's redirect (``code``, ``state``, and ``iss`` when the
        broker sends it). The pending login is spent whether this succeeds or not."""
        s = self._settings
        pending = await self._take(state)
        if not isinstance(code, str) or not 0 < len(code) <= MAX_PARAM_CHARS:
            raise EidRejected("authorization code missing", code="eid_callback_invalid")
        metadata = await self.discovery()
        if iss is not None or metadata.iss_parameter_supported:
            if iss != s.issuer:
                raise EidRejected("response from another issuer", code="eid_issuer_mismatch")
        id_token = await self._redeem(code, pending, metadata)
        header = parse_id_token_header(id_token, s.id_token_algs)
        key = await self._key_for(header, metadata)
        claims = check_id_token_signature(id_token, key, header["alg"])
        check_id_token_claims(
            claims,
            issuer=s.issuer,
            client_id=s.client_id,
            nonce=pending.nonce,
            now=self._clock.now(),
            skew_s=s.skew_s,
            max_age_s=s.id_token_max_age_s,
            required_acr=pending.required_acr,
            acr_order=s.acr_order,
        )
        return self._identity(claims, pending)

    def _identity(self, claims: Mapping[str, Any], pending: PendingLogin) -> VerifiedIdentity:
        s = self._settings
        name = claims.get(s.name_claim)
        if name is None and s.name_claim == "name":
            given, family = claims.get("given_name"), claims.get("family_name")
            if isinstance(given, str) and isinstance(family, str):
                name = f"{given} {family}"
        if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME_CHARS):
            raise _token_invalid("claims", "ID token name is not a string")
        auth_time = claims.get("auth_time")
        cpr = None
        if s.allow_cpr:
            value = claims.get(s.cpr_claim)
            cpr = value if isinstance(value, str) and _CPR_RE.match(value) else None
        return VerifiedIdentity(
            subject=claims["sub"],
            issuer=s.issuer,
            name=(name.strip() or None) if isinstance(name, str) else None,
            acr=claims.get("acr"),
            auth_time=auth_time if _is_int(auth_time) else None,
            consultation_ref=pending.consultation_ref,
            return_to=pending.return_to,
            verified_at=self._clock.now(),
            cpr=cpr,
        )

    async def _redeem(self, code: str, pending: PendingLogin, metadata: ProviderMetadata) -> str:
        """Exchange ``code`` at the token endpoint; return the raw ID token."""
        s = self._settings
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": pending.redirect_uri,
            "code_verifier": pending.code_verifier,
        }
        headers = {"Accept": "application/json"}
        creds = self._credentials
        if isinstance(creds, ClientSecretBasic):
            pair = f"{quote(s.client_id, safe='')}:{quote(creds.secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        else:
            now = int(self._clock.now())
            assertion = jwt.encode(
                {
                    "iss": s.client_id,
                    "sub": s.client_id,
                    "aud": metadata.issuer,
                    "jti": random_token(16),
                    "iat": now,
                    "exp": now + ASSERTION_TTL_S,
                },
                creds.key,
                algorithm=creds.alg,
                headers={"kid": creds.kid},
            )
            form["client_id"] = s.client_id
            form["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            form["client_assertion"] = assertion

        def unavailable(reason: str) -> EidUnavailable:
            return EidUnavailable(
                "eID token request failed", code="eid_token_request_failed", reason=reason
            )

        try:
            response = await self._http.post_form(metadata.token_endpoint, form, headers)
        except EidTransportError:
            raise unavailable("unreachable") from None
        body = _json_object(response)
        if response.status in (400, 401):
            reason = _safe_reason(body.get("error") if body else None, f"http_{response.status}")
            raise EidRejected(
                "eID broker refused the code", code="eid_token_request_failed", reason=reason
            )
        if response.status != 200:
            raise unavailable(f"http_{response.status}")
        if body is None:
            raise unavailable("bad_response")
        id_token = body.get("id_token")
        if not isinstance(id_token, str):
            raise unavailable("no_id_token")
        return id_token
