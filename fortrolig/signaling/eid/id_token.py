"""ID token checks (pure): header, key selection, signature, claims (OIDC Core §3.1.3.7)."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any, Final, TypeGuard

import jwt
from jwt.types import Options

from ..auth import SIGNATURE_ONLY
from .errors import EidRejected, token_invalid

# Signature only (claims are checked below), and refuse weak broker keys.
_ID_TOKEN_SIGNATURE: Final[Options] = {**SIGNATURE_ONLY, "enforce_minimum_key_length": True}

FORBIDDEN_HEADERS: Final = frozenset({"crit", "jku", "jwk", "x5u"})
MAX_TOKEN_CHARS: Final = 16_384
MAX_SUB_CHARS: Final = 255
_CURVES: Final = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_B64URL_RE = re.compile(r"^[A-Za-z0-9_-]*$")


def is_int(value: object) -> TypeGuard[int]:
    """A JSON integer (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _b64url_decode(segment: str) -> bytes:
    if not _B64URL_RE.match(segment):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def parse_id_token_header(token: object, algs: tuple[str, ...]) -> dict[str, Any]:
    """Return the header of a compact JWS whose ``alg`` is in ``algs``; refuse extension headers
    (``crit``, ``jku``, ``jwk``, ``x5u``) and a ``typ`` other than JWT."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise token_invalid("malformed", "ID token is not a compact JWS")
    try:
        header = json.loads(_b64url_decode(token.split(".", 1)[0]))
    except (ValueError, binascii.Error, RecursionError):
        raise token_invalid("malformed", "bad ID token header") from None
    if not isinstance(header, dict):
        raise token_invalid("malformed", "ID token header is not an object")
    if FORBIDDEN_HEADERS.intersection(header):
        raise token_invalid("header_forbidden", "ID token header has forbidden fields")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algs:
        raise token_invalid("algorithm", "ID token algorithm not allowed")
    typ = header.get("typ")
    if typ is not None and (
        not isinstance(typ, str) or typ.lower() not in ("jwt", "application/jwt")
    ):
        raise token_invalid("malformed", "ID token typ must be JWT")
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or not kid):
        raise token_invalid("malformed", "ID token kid must be a string")
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
        raise token_invalid("key_invalid", "the broker's key cannot be used") from None


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
        raise token_invalid("signature", "bad ID token signature") from None
    except jwt.InvalidAlgorithmError:
        raise token_invalid("algorithm", "ID token algorithm not allowed") from None
    except jwt.InvalidKeyError:
        raise token_invalid("key_invalid", "the broker's key is too weak") from None
    except jwt.PyJWTError:
        raise token_invalid("malformed", "ID token cannot be decoded") from None
    if not isinstance(payload, dict):  # pragma: no cover - PyJWT rejects non-object payloads
        raise token_invalid("malformed", "ID token payload is not an object")
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
        raise token_invalid("issuer", "wrong ID token issuer")
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise token_invalid("audience", "ID token audience missing")
    if client_id not in audiences:
        raise token_invalid("audience", "ID token is not for this client")
    azp = claims.get("azp")
    if (len(audiences) > 1 or azp is not None) and azp != client_id:
        raise token_invalid("azp", "ID token authorized party is not this client")
    exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf", 0)
    if not is_int(exp) or not is_int(iat) or not is_int(nbf):
        raise token_invalid("claims", "ID token exp/iat/nbf must be integers")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > MAX_SUB_CHARS:
        raise token_invalid("claims", "ID token sub missing or too long")
    if exp <= now - skew_s:
        raise token_invalid("expired", "ID token expired")
    if iat > now + skew_s or nbf > now + skew_s:
        raise token_invalid("not_yet_valid", "ID token issued in the future")
    if iat < now - skew_s - max_age_s:
        raise token_invalid("stale", "ID token issued too long ago")
    got_nonce = claims.get("nonce")
    if not isinstance(got_nonce, str) or not hmac.compare_digest(
        got_nonce.encode("utf-8"), nonce.encode("utf-8")
    ):
        raise EidRejected("ID token nonce does not match the login", code="eid_nonce_mismatch")
    acr = claims.get("acr")
    if acr is not None and not isinstance(acr, str):
        raise token_invalid("claims", "ID token acr must be a string")
    if required_acr is not None and (
        acr not in acr_order or acr_order.index(acr) < acr_order.index(required_acr)
    ):
        raise EidRejected("level of assurance too low", code="eid_acr_insufficient")
