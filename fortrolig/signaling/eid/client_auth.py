"""How the relying party authenticates to the broker's token endpoint. Pure: the credentials
are built from bytes; reading them from private files is :mod:`.keyfiles`."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fortrolig.core.errors import ConfigError


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


def secret_basic_from_bytes(secret: bytes) -> ClientSecretBasic:
    """``client_secret_basic`` credentials from the secret file's content (UTF-8)."""
    try:
        return ClientSecretBasic(secret.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError("eid client secret is not UTF-8") from None


def private_key_jwt_from_pem(pem: bytes, alg: str) -> PrivateKeyJwt:
    """``private_key_jwt`` credentials from an unencrypted PEM private key (RSA or EC P-256)."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise ConfigError("eid private key file is not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigError("eid private key must be RSA or EC P-256")
    return PrivateKeyJwt.from_key(key, alg)
