"""The eID relying party against an in-memory broker whose keys and tokens the test controls.

The full flow against a real OpenID Provider is in
tests/integration/signaling/test_eid_provider.py; here every tampered-token class is built by
hand (signed with keys of a JWKS the test serves).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fortrolig.core.clock import FakeClock
from fortrolig.core.config import EidConfig
from fortrolig.core.errors import ConfigError, RateLimited
from fortrolig.signaling.eid import (
    EID_ERROR_CODES,
    ID_TOKEN_REASONS,
    NSIS_LEVELS,
    ClientSecretBasic,
    EidClient,
    EidRejected,
    EidTransportError,
    EidUnavailable,
    HttpResponse,
    MemoryPendingStore,
    PendingLogin,
    PrivateKeyJwt,
    pkce_challenge,
)
from fortrolig.signaling.eid.keyfiles import load_client_auth

ISSUER = "https://broker.example"
CLIENT_ID = "fortrolig-test"
SECRET = "client-secret-that-is-long-enough-0123456789"
REDIRECT = "https://fortrolig.example/eid/callback"
LOW, SUBSTANTIAL, HIGH = NSIS_LEVELS
T0 = 1_700_000_000.0


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    return {
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "rsa2": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ec": ec.generate_private_key(ec.SECP256R1()),
    }


def _jwk(key: Any, kid: str, alg: str | None = None) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    else:
        data = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    data.update(kid=kid, use="sig")
    if alg:
        data["alg"] = alg
    return dict(data)


class Broker:
    """An in-memory broker: discovery, JWKS and a token endpoint, with call counts."""

    def __init__(self, keys: dict[str, Any]) -> None:
        self.metadata: dict[str, Any] = {
            "issuer": ISSUER,
            "authorization_endpoint": ISSUER + "/auth",
            "token_endpoint": ISSUER + "/token",
            "jwks_uri": ISSUER + "/jwks",
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
            "id_token_signing_alg_values_supported": ["RS256", "PS256", "ES256"],
            "authorization_response_iss_parameter_supported": True,
        }
        self.jwks: dict[str, Any] = {"keys": [_jwk(keys["rsa"], "rsa-1"), _jwk(keys["ec"], "ec-1")]}
        self.token_reply: Callable[[dict[str, str], dict[str, str]], HttpResponse] | None = None
        self.id_token = ""
        self.gets: list[str] = []
        self.posts: list[tuple[str, dict[str, str], dict[str, str]]] = []
        self.fail_transport = False

    @staticmethod
    def json(status: int, body: object) -> HttpResponse:
        return HttpResponse(status, "application/json", json.dumps(body).encode())

    async def get(self, url: str) -> HttpResponse:
        self.gets.append(url)
        if self.fail_transport:
            raise EidTransportError("down")
        if url == ISSUER + "/.well-known/openid-configuration":
            return self.json(200, self.metadata)
        if url == ISSUER + "/jwks":
            return self.json(200, self.jwks)
        return self.json(404, {})

    async def post_form(
        self, url: str, form: dict[str, str], headers: dict[str, str]
    ) -> HttpResponse:
        self.posts.append((url, dict(form), dict(headers)))
        if self.fail_transport:
            raise EidTransportError("down")
        if self.token_reply is not None:
            return self.token_reply(form, headers)
        return self.json(
            200, {"access_token": "at", "token_type": "Bearer", "id_token": self.id_token}
        )

    def count(self, suffix: str) -> int:
        return sum(url.endswith(suffix) for url in self.gets)


def settings(**overrides: Any) -> EidConfig:
    base: dict[str, Any] = {
        "issuer": ISSUER,
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "client_secret_file": Path("/nonexistent"),
        "scopes": ("profile",),
        "acr_values": (SUBSTANTIAL,),
    }
    base.update(overrides)
    return EidConfig(**base)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(now=T0)


@pytest.fixture
def broker(keys: dict[str, Any]) -> Broker:
    return Broker(keys)


@pytest.fixture
def client(broker: Broker, clock: FakeClock) -> EidClient:
    return EidClient(settings(), REDIRECT, broker, clock, ClientSecretBasic(SECRET))


def claims_for(pending: PendingLogin, clock: FakeClock, **overrides: Any) -> dict[str, Any]:
    now = int(clock.now())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": CLIENT_ID,
        "sub": "pseudonym-7f3a",
        "iat": now,
        "exp": now + 300,
        "auth_time": now - 5,
        "nonce": pending.nonce,
        "acr": SUBSTANTIAL,
        "name": "Anna Testesen",
        "dk.cpr": "0101901234",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign(
    claims: dict[str, Any],
    key: Any,
    *,
    alg: str = "RS256",
    kid: str | None = "rsa-1",
    headers: dict[str, Any] | None = None,
) -> str:
    hdr: dict[str, Any] = {"typ": "JWT"}
    if kid is not None:
        hdr["kid"] = kid
    hdr.update(headers or {})
    return jwt.encode(claims, key, algorithm=alg, headers=hdr)


def unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."


async def started(client: EidClient) -> tuple[str, PendingLogin]:
    return await client.start("/room/abc", "consultation-1")


# --- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"id_token_algs": ("none",)},
        {"id_token_algs": ("RS256", "HS256")},
        {"id_token_algs": ()},
        {"issuer": "http://broker.example"},
        {"issuer": "http://127.0.0.1:9000"},  # loopback still needs the explicit flag
        {"issuer": "http://10.0.0.1", "allow_insecure_loopback": True},
        {"redirect_uri": "http://fortrolig.example/cb"},
        {"scopes": ("profile", "ssn")},  # the CPR scope without allow_cpr
        {"min_acr": "urn:unknown"},
        {"client_auth": "client_secret_post"},
        {"client_auth": "private_key_jwt", "private_key_file": None},
    ],
)
def test_settings_refuse_unsafe_configuration(overrides: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        settings(**overrides)


def test_settings_scope_and_required_acr() -> None:
    s = settings(scopes=("profile", "openid"), acr_values=(HIGH, SUBSTANTIAL))
    assert s.scope == "openid profile"
    assert s.required_acr == SUBSTANTIAL  # the lowest level requested
    assert settings(acr_values=()).required_acr is None
    assert settings(acr_values=(), min_acr=HIGH).required_acr == HIGH
    cpr = settings(scopes=("profile", "ssn"), allow_cpr=True)
    assert cpr.scope == "openid profile ssn"
    loop = settings(issuer="http://127.0.0.1:9000", allow_insecure_loopback=True)
    assert loop.issuer.startswith("http://")


def test_credentials_must_match_method(broker: Broker, clock: FakeClock) -> None:
    with pytest.raises(ConfigError):
        EidClient(
            settings(),
            REDIRECT,
            broker,
            clock,
            PrivateKeyJwt.from_key(ec.generate_private_key(ec.SECP256R1()), "ES256"),
        )


def test_load_client_auth_from_private_files(tmp_path: Path, keys: dict[str, Any]) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    creds = load_client_auth(settings(client_secret_file=secret_file))
    assert creds == ClientSecretBasic(SECRET) and SECRET not in repr(creds)
    secret_file.chmod(0o644)
    with pytest.raises(ConfigError):
        load_client_auth(settings(client_secret_file=secret_file))

    pem_file = tmp_path / "client.pem"
    pem_file.write_bytes(
        keys["ec"].private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(pem_file, 0o600)
    pk = load_client_auth(
        settings(client_auth="private_key_jwt", client_secret_file=None, private_key_file=pem_file)
    )
    assert isinstance(pk, PrivateKeyJwt) and pk.alg == "ES256"
    jwk = pk.public_jwk()
    assert jwk["kid"] == pk.kid and "d" not in jwk
    # RFC 7638 thumbprint, computed independently.
    members = {m: jwk[m] for m in ("crv", "kty", "x", "y")}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    assert pk.kid == _b64(hashlib.sha256(canonical).digest())
    with pytest.raises(ConfigError):
        PrivateKeyJwt.from_key(keys["ec"], "RS256")


# --- start -----------------------------------------------------------------------------------


async def test_start_builds_a_pkce_authorization_request(client: EidClient, broker: Broker) -> None:
    url, pending = await started(client)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == ISSUER + "/auth"
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert q["response_type"] == "code" and q["client_id"] == CLIENT_ID
    assert q["redirect_uri"] == REDIRECT
    assert q["scope"] == "openid profile"
    assert q["acr_values"] == SUBSTANTIAL and q["prompt"] == "login"
    assert q["state"] == pending.state and q["nonce"] == pending.nonce
    assert q["code_challenge_method"] == "S256"
    assert q["code_challenge"] == pkce_challenge(pending.code_verifier)
    assert "code_verifier" not in q
    # 256 random bits each, base64url: 43 characters; verifier 64 characters (43..128 allowed).
    for value in (pending.state, pending.nonce):
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", value)
    assert re.fullmatch(r"[A-Za-z0-9_-]{64}", pending.code_verifier)
    assert pending.expires_at - pending.created_at == 600
    assert pending.nonce not in repr(pending) and pending.code_verifier not in repr(pending)
    _, other = await started(client)
    assert len({pending.state, other.state, pending.nonce, other.nonce}) == 4


def test_pkce_challenge_matches_rfc7636_example() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


async def test_cpr_scope_is_requested_only_when_allowed(broker: Broker, clock: FakeClock) -> None:
    plain = EidClient(settings(), REDIRECT, broker, clock, ClientSecretBasic(SECRET))
    url, _ = await started(plain)
    assert "ssn" not in parse_qs(urlsplit(url).query)["scope"][0].split()
    allowed = settings(scopes=("profile", "ssn"), allow_cpr=True)
    url, _ = await started(EidClient(allowed, REDIRECT, broker, clock, ClientSecretBasic(SECRET)))
    assert parse_qs(urlsplit(url).query)["scope"][0] == "openid profile ssn"


@pytest.mark.parametrize(
    "return_to", ["//evil.example/x", "https://evil.example/", "room", "/a\\b", "/a b", ""]
)
async def test_start_refuses_foreign_return_to(client: EidClient, return_to: str) -> None:
    with pytest.raises(EidRejected) as info:
        await client.start(return_to, "consultation-1")
    assert info.value.code == "eid_return_to_invalid"


async def test_pending_logins_are_bounded(broker: Broker, clock: FakeClock) -> None:
    c = EidClient(settings(max_pending=2), REDIRECT, broker, clock, ClientSecretBasic(SECRET))
    await started(c)
    await started(c)
    with pytest.raises(RateLimited) as info:
        await started(c)
    assert info.value.code == "eid_too_many_pending"
    clock.advance(600 + 600)  # expired and past the grace period: purged
    await started(c)


# --- discovery -------------------------------------------------------------------------------


async def test_discovery_is_cached_for_its_ttl(
    client: EidClient, broker: Broker, clock: FakeClock
) -> None:
    await started(client)
    await started(client)
    assert broker.count("/.well-known/openid-configuration") == 1
    clock.advance(3600)
    await started(client)
    assert broker.count("/.well-known/openid-configuration") == 2


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"issuer": ISSUER + "/"}, "issuer_mismatch"),
        ({"issuer": "https://other.example"}, "issuer_mismatch"),
        ({"token_endpoint": "http://broker.example/token"}, "insecure_endpoint"),
        ({"jwks_uri": None}, "insecure_endpoint"),
        ({"code_challenge_methods_supported": ["plain"]}, "unsupported"),
        ({"id_token_signing_alg_values_supported": ["HS256"]}, "unsupported"),
        ({"token_endpoint_auth_methods_supported": ["client_secret_post"]}, "unsupported"),
    ],
)
async def test_discovery_refuses_bad_metadata(
    client: EidClient, broker: Broker, change: dict[str, Any], reason: str
) -> None:
    broker.metadata.update(change)
    with pytest.raises(EidUnavailable) as info:
        await started(client)
    assert (info.value.code, info.value.reason, info.value.status) == (
        "eid_discovery_failed",
        reason,
        502,
    )


async def test_discovery_unreachable(client: EidClient, broker: Broker) -> None:
    broker.fail_transport = True
    with pytest.raises(EidUnavailable) as info:
        await started(client)
    assert (info.value.code, info.value.reason) == ("eid_discovery_failed", "unreachable")


# --- finish: the happy paths -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("alg", "key_name", "kid"),
    [("RS256", "rsa", "rsa-1"), ("PS256", "rsa", "rsa-1"), ("ES256", "ec", "ec-1")],
)
async def test_finish_returns_the_verified_identity(
    client: EidClient,
    broker: Broker,
    clock: FakeClock,
    keys: dict[str, Any],
    alg: str,
    key_name: str,
    kid: str,
) -> None:
    _, pending = await started(client)
    broker.id_token = sign(claims_for(pending, clock), keys[key_name], alg=alg, kid=kid)
    identity = await client.finish("the-code", pending.state, iss=ISSUER)
    assert identity.subject == "pseudonym-7f3a" and identity.issuer == ISSUER
    assert identity.name == "Anna Testesen" and identity.acr == SUBSTANTIAL
    assert identity.consultation_ref == "consultation-1" and identity.return_to == "/room/abc"
    assert identity.auth_time == int(T0) - 5
    assert identity.cpr is None  # present in the token, dropped: allow_cpr is off
    assert "Anna" not in repr(identity) and "0101901234" not in repr(identity)
    url, form, headers = broker.posts[-1]
    assert url == ISSUER + "/token"
    assert form == {
        "grant_type": "authorization_code",
        "code": "the-code",
        "redirect_uri": REDIRECT,
        "code_verifier": pending.code_verifier,
    }
    expected = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    assert headers["Authorization"] == f"Basic {expected}"


async def test_cpr_is_kept_only_with_allow_cpr(
    broker: Broker, clock: FakeClock, keys: dict[str, Any]
) -> None:
    s = settings(scopes=("profile", "ssn"), allow_cpr=True)
    c = EidClient(s, REDIRECT, broker, clock, ClientSecretBasic(SECRET))
    _, pending = await started(c)
    broker.id_token = sign(claims_for(pending, clock), keys["rsa"])
    identity = await c.finish("code", pending.state, iss=ISSUER)
    assert identity.cpr == "0101901234" and "0101901234" not in repr(identity)


async def test_name_from_given_and_family_name(
    client: EidClient, broker: Broker, clock: FakeClock, keys: dict[str, Any]
) -> None:
    _, pending = await started(client)
    claims = claims_for(pending, clock, name=None, given_name="Bo", family_name="Prøvesen")
    broker.id_token = sign(claims, keys["rsa"])
    assert (await client.finish("code", pending.state, iss=ISSUER)).name == "Bo Prøvesen"


async def test_private_key_jwt_client_assertion(
    broker: Broker, clock: FakeClock, keys: dict[str, Any]
) -> None:
    creds = PrivateKeyJwt.from_key(keys["ec"], "ES256")
    s = settings(
        client_auth="private_key_jwt", client_secret_file=None, private_key_file=Path("/x")
    )
    c = EidClient(s, REDIRECT, broker, clock, creds)
    _, pending = await started(c)
    broker.id_token = sign(claims_for(pending, clock), keys["rsa"])
    await c.finish("code", pending.state, iss=ISSUER)
    _, form, headers = broker.posts[-1]
    assert "Authorization" not in headers and form["client_id"] == CLIENT_ID
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assertion = form["client_assertion"]
    assert jwt.get_unverified_header(assertion)["kid"] == creds.kid
    body = jwt.decode(
        assertion,
        keys["ec"].public_key(),
        algorithms=["ES256"],
        audience=ISSUER,
        options={"verify_exp": False, "verify_iat": False},  # signed at the fake clock's time
    )
    assert body["iss"] == body["sub"] == CLIENT_ID and body["exp"] - body["iat"] == 60


# --- finish: state ---------------------------------------------------------------------------


async def test_state_unknown_and_replayed(
    client: EidClient, broker: Broker, clock: FakeClock, keys: dict[str, Any]
) -> None:
    with pytest.raises(EidRejected) as info:
        await client.finish("code", "A" * 43, iss=ISSUER)
    assert info.value.code == "eid_state_unknown"
    with pytest.raises(EidRejected) as info:
        await client.finish("code", "not a state!", iss=ISSUER)
    assert info.value.code == "eid_state_unknown"
    _, pending = await started(client)
    broker.id_token = sign(claims_for(pending, clock), keys["rsa"])
    await client.finish("code", pending.state, iss=ISSUER)
    with pytest.raises(EidRejected) as info:
        await client.finish("code", pending.state, iss=ISSUER)
    assert info.value.code == "eid_state_unknown"
    assert len(broker.posts) == 1  # the replay never reached the broker


async def test_state_is_spent_even_when_the_login_fails(
    client: EidClient, broker: Broker, clock: FakeClock, keys: dict[str, Any]
) -> None:
    _, pending = await started(client)
    broker.id_token = sign(claims_for(pending, clock, aud="someone-else"), keys["rsa"])
    with pytest.raises(EidRejected):
        await client.finish("code", pending.state, iss=ISSUER)
    broker.id_token = sign(claims_for(pending, clock), keys["rsa"])
    with pytest.raises(EidRejected) as info:
        await client.finish("code", pending.state, iss=ISSUER)
    assert info.value.code == "eid_state_unknown"


async def test_state_expires_after_ten_minutes(
    client: EidClient, broker: Broker, clock: FakeClock
) -> None:
    _, pending = await started(client)
    clock.advance(600)
    with pytest.raises(EidRejected) as info:
        await client.finish("code", pending.state, iss=ISSUER)
    assert info.value.code == "eid_state_expired"
    assert broker.posts == []


async def test_abort_spends_the_state(client: EidClient) -> None:
    _, pending = await started(client)
    error = await client.abort(pending.state, "access_denied")
    assert (error.code, error.reason) == ("eid_authorization_denied", "access_denied")
    assert (await started(client))[1].state != pending.state
    with pytest.raises(EidRejected) as info:
        await client.abort(pending.state, "<script>")
    assert info.value.code == "eid_state_unknown"


@pytest.mark.parametrize("iss", [None, "https://other.example"])
async def test_authorization_response_issuer_must_match(
    client: EidClient, broker: Broker, iss: str | None
) -> None:
    _, pending = await started(client)
    with pytest.raises(EidRejected) as info:
        await client.finish("code", pending.state, iss=iss)
    assert info.value.code == "eid_issuer_mismatch"
    assert broker.posts == []


# --- finish: token endpoint ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "cls", "reason"),
    [
        ((400, {"error": "invalid_grant"}), EidRejected, "invalid_grant"),
        ((401, {"error": "invalid_client"}), EidRejected, "invalid_client"),
        ((400, {"error": "Not a code <b>"}), EidRejected, "http_400"),
        ((500, {}), EidUnavailable, "http_500"),
        ((302, {}), EidUnavailable, "http_302"),
        ((200, {"access_token": "x"}), EidUnavailable, "no_id_token"),
        ((200, ["not", "an", "object"]), EidUnavailable, "bad_response"),
    ],
)
async def test_token_request_failures(
    client: EidClient,
    broker: Broker,
    reply: tuple[int, Any],
    cls: type[Exception],
    reason: str,
) -> None:
    broker.token_reply = lambda form, headers: Broker.json(*reply)
    _, pending = await started(client)
    with pytest.raises(cls) as info:
        await client.finish("code", pending.state, iss=ISSUER)
    assert getattr(info.value, "code", None) == "eid_token_request_failed"
    assert getattr(info.value, "reason", None) == reason


async def test_token_endpoint_unreachable(client: EidClient, broker: Broker) -> None:
    _, pending = await started(client)
    broker.fail_transport = True
    with pytest.raises(EidUnavailable) as info:
        await client.finish("code", pending.state, iss=ISSUER)
    assert (info.value.code, info.value.reason) == ("eid_token_request_failed", "unreachable")


# --- finish: the ID token --------------------------------------------------------------------

Tamper = Callable[[PendingLogin, FakeClock, dict[str, Any]], str]


def _claims(**overrides: Any) -> Tamper:
    return lambda p, c, k: sign(claims_for(p, c, **overrides), k["rsa"])


TAMPERED: dict[str, tuple[Tamper, str, str | None]] = {
    "wrong aud": (_claims(aud="another-client"), "eid_id_token_invalid", "audience"),
    "aud list without us": (_claims(aud=["a", "b"]), "eid_id_token_invalid", "audience"),
    "several aud, no azp": (_claims(aud=[CLIENT_ID, "b"]), "eid_id_token_invalid", "azp"),
    "several aud, wrong azp": (
        _claims(aud=[CLIENT_ID, "b"], azp="b"),
        "eid_id_token_invalid",
        "azp",
    ),
    "wrong azp": (_claims(azp="b"), "eid_id_token_invalid", "azp"),
    "wrong iss": (_claims(iss="https://evil.example"), "eid_id_token_invalid", "issuer"),
    "iss with trailing slash": (_claims(iss=ISSUER + "/"), "eid_id_token_invalid", "issuer"),
    "expired": (
        lambda p, c, k: sign(
            claims_for(p, c, iat=int(c.now()) - 400, exp=int(c.now()) - 61), k["rsa"]
        ),
        "eid_id_token_invalid",
        "expired",
    ),
    "issued in the future": (
        lambda p, c, k: sign(claims_for(p, c, iat=int(c.now()) + 120), k["rsa"]),
        "eid_id_token_invalid",
        "not_yet_valid",
    ),
    "nbf in the future": (
        lambda p, c, k: sign(claims_for(p, c, nbf=int(c.now()) + 120), k["rsa"]),
        "eid_id_token_invalid",
        "not_yet_valid",
    ),
    "stale iat": (
        lambda p, c, k: sign(
            claims_for(p, c, iat=int(c.now()) - 3600, exp=int(c.now()) + 60), k["rsa"]
        ),
        "eid_id_token_invalid",
        "stale",
    ),
    "exp as string": (_claims(exp="never"), "eid_id_token_invalid", "claims"),
    "no sub": (_claims(sub=None), "eid_id_token_invalid", "claims"),
    "empty sub": (_claims(sub=""), "eid_id_token_invalid", "claims"),
    "alg none": (
        lambda p, c, k: unsigned(claims_for(p, c), {"alg": "none", "kid": "rsa-1"}),
        "eid_id_token_invalid",
        "algorithm",
    ),
    "alg none, no kid": (
        lambda p, c, k: unsigned(claims_for(p, c), {"alg": "none"}),
        "eid_id_token_invalid",
        "algorithm",
    ),
    "HS256 with the client secret": (
        lambda p, c, k: sign(claims_for(p, c), SECRET.encode(), alg="HS256"),
        "eid_id_token_invalid",
        "algorithm",
    ),
    "HS256 with the client secret, naming the RSA kid": (
        lambda p, c, k: sign(claims_for(p, c), SECRET.encode(), alg="HS256", kid="rsa-1"),
        "eid_id_token_invalid",
        "algorithm",
    ),
    "RS512 (not configured)": (
        lambda p, c, k: sign(claims_for(p, c), k["rsa"], alg="RS512"),
        "eid_id_token_invalid",
        "algorithm",
    ),
    "unknown kid": (
        lambda p, c, k: sign(claims_for(p, c), k["rsa2"], kid="rotated-2"),
        "eid_id_token_invalid",
        "key_unknown",
    ),
    "RS256 token naming the EC key": (
        lambda p, c, k: sign(claims_for(p, c), k["rsa"], kid="ec-1"),
        "eid_id_token_invalid",
        "key_unknown",
    ),
    "signed by another key under a known kid": (
        lambda p, c, k: sign(claims_for(p, c), k["rsa2"], kid="rsa-1"),
        "eid_id_token_invalid",
        "signature",
    ),
    "jku header": (
        lambda p, c, k: sign(claims_for(p, c), k["rsa"], headers={"jku": "https://evil/jwks"}),
        "eid_id_token_invalid",
        "header_forbidden",
    ),
    "jwk header": (
        lambda p, c, k: sign(claims_for(p, c), k["rsa"], headers={"jwk": _jwk(k["rsa2"], "x")}),
        "eid_id_token_invalid",
        "header_forbidden",
    ),
    "crit header": (
        lambda p, c, k: sign(claims_for(p, c), k["rsa"], headers={"crit": ["exp"]}),
        "eid_id_token_invalid",
        "header_forbidden",
    ),
    "access token typ": (
        lambda p, c, k: sign(claims_for(p, c), k["rsa"], headers={"typ": "at+jwt"}),
        "eid_id_token_invalid",
        "malformed",
    ),
    "not a JWS": (lambda p, c, k: "abc.def", "eid_id_token_invalid", "malformed"),
    "garbage header": (lambda p, c, k: "!!!.e30.", "eid_id_token_invalid", "malformed"),
    "truncated signature": (
        lambda p, c, k: sign(claims_for(p, c), k["rsa"])[:-10],
        "eid_id_token_invalid",
        "signature",
    ),
    "wrong nonce": (_claims(nonce="a-different-nonce"), "eid_nonce_mismatch", None),
    "no nonce": (_claims(nonce=None), "eid_nonce_mismatch", None),
    "acr too low": (_claims(acr=LOW), "eid_acr_insufficient", None),
    "acr missing": (_claims(acr=None), "eid_acr_insufficient", None),
    "acr unknown": (_claims(acr="urn:made-up"), "eid_acr_insufficient", None),
    "name not a string": (_claims(name=["A"]), "eid_id_token_invalid", "claims"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
async def test_tampered_id_tokens_are_refused(
    client: EidClient, broker: Broker, clock: FakeClock, keys: dict[str, Any], case: str
) -> None:
    make, code, reason = TAMPERED[case]
    _, pending = await started(client)
    broker.id_token = make(pending, clock, keys)
    with pytest.raises(EidRejected) as info:
        await client.finish("code", pending.state, iss=ISSUER)
    assert (info.value.code, info.value.reason) == (code, reason)
    assert info.value.code in EID_ERROR_CODES and info.value.status == 401
    assert reason is None or reason in ID_TOKEN_REASONS


async def test_acr_higher_than_required_is_accepted(
    client: EidClient, broker: Broker, clock: FakeClock, keys: dict[str, Any]
) -> None:
    _, pending = await started(client)
    broker.id_token = sign(claims_for(pending, clock, acr=HIGH), keys["rsa"])
    assert (await client.finish("code", pending.state, iss=ISSUER)).acr == HIGH


async def test_skew_tolerates_a_slightly_fast_broker(
    client: EidClient, broker: Broker, clock: FakeClock, keys: dict[str, Any]
) -> None:
    _, pending = await started(client)
    broker.id_token = sign(claims_for(pending, clock, iat=int(clock.now()) + 50), keys["rsa"])
    await client.finish("code", pending.state, iss=ISSUER)


async def test_weak_rsa_key_in_jwks_is_refused(
    client: EidClient, broker: Broker, clock: FakeClock
) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    broker.jwks["keys"].append(_jwk(weak, "weak"))
    _, pending = await started(client)
    with pytest.warns(jwt.warnings.InsecureKeyLengthWarning):
        broker.id_token = sign(claims_for(pending, clock), weak, kid="weak")
    with pytest.raises(EidRejected) as info:
        await client.finish("code", pending.state, iss=ISSUER)
    assert (info.value.code, info.value.reason) == ("eid_id_token_invalid", "key_invalid")


async def test_jwks_is_fetched_again_once_for_an_unknown_kid(
    client: EidClient, broker: Broker, clock: FakeClock, keys: dict[str, Any]
) -> None:
    # A first login caches the JWKS.
    _, pending = await started(client)
    broker.id_token = sign(claims_for(pending, clock), keys["rsa"])
    await client.finish("code", pending.state, iss=ISSUER)
    assert broker.count("/jwks") == 1

    # The broker rotates: a token with the new kid makes the client fetch the JWKS again once.
    clock.advance(31)
    broker.jwks["keys"].append(_jwk(keys["rsa2"], "rsa-2"))
    _, pending = await started(client)
    broker.id_token = sign(claims_for(pending, clock), keys["rsa2"], kid="rsa-2")
    await client.finish("code", pending.state, iss=ISSUER)
    assert broker.count("/jwks") == 2

    # A kid the broker never published costs one fetch, then none within jwks_min_refresh_s.
    clock.advance(31)
    for expected_fetches in (3, 3):
        _, pending = await started(client)
        broker.id_token = sign(claims_for(pending, clock), keys["rsa2"], kid="bogus")
        with pytest.raises(EidRejected) as info:
            await client.finish("code", pending.state, iss=ISSUER)
        assert info.value.reason == "key_unknown"
        assert broker.count("/jwks") == expected_fetches


async def test_jwks_unusable(
    client: EidClient, broker: Broker, clock: FakeClock, keys: dict[str, Any]
) -> None:
    broker.jwks = {"not": "a jwks"}
    _, pending = await started(client)
    broker.id_token = sign(claims_for(pending, clock), keys["rsa"])
    with pytest.raises(EidUnavailable) as info:
        await client.finish("code", pending.state, iss=ISSUER)
    assert (info.value.code, info.value.reason) == ("eid_jwks_failed", "bad_response")


async def test_memory_pending_store_take_is_single_use(clock: FakeClock) -> None:
    store = MemoryPendingStore(clock, max_entries=5, grace_s=60)
    p = PendingLogin("s" * 43, "n", "v" * 64, "/", "c", REDIRECT, None, T0, T0 + 600)
    await store.put(p)
    assert len(store) == 1
    clock.advance(610)  # expired but within grace: still returned, so "expired" can be said
    assert await store.take(p.state) == p
    assert await store.take(p.state) is None
    await store.put(dataclasses.replace(p, state="t" * 43, expires_at=clock.now() + 1))
    clock.advance(62)
    assert await store.take("t" * 43) is None  # past the grace period: purged


async def test_token_without_kid_needs_exactly_one_fitting_key(
    client: EidClient, broker: Broker, clock: FakeClock, keys: dict[str, Any]
) -> None:
    _, pending = await started(client)
    broker.id_token = sign(claims_for(pending, clock), keys["rsa"], kid=None)
    await client.finish("code", pending.state, iss=ISSUER)  # one RSA key: used
    broker.jwks["keys"].append(_jwk(keys["rsa2"], "rsa-2"))
    clock.advance(3600)  # JWKS cache expires with the discovery TTL
    _, pending = await started(client)
    broker.id_token = sign(claims_for(pending, clock), keys["rsa"], kid=None)
    with pytest.raises(EidRejected) as info:
        await client.finish("code", pending.state, iss=ISSUER)
    assert info.value.reason == "key_unknown"  # two RSA keys: ambiguous, refused


def test_the_client_checks_what_it_derives(broker: Broker, clock: FakeClock) -> None:
    """EidConfig is validated when it loads; the client checks only the redirect URI derived
    from the public URL, and that eID is configured at all."""
    creds = ClientSecretBasic(SECRET)
    with pytest.raises(ConfigError, match="redirect_uri"):
        EidClient(settings(), "http://fortrolig.example/eid/callback", broker, clock, creds)
    with pytest.raises(ConfigError, match="not configured"):
        EidClient(EidConfig(), REDIRECT, broker, clock, creds)
    loop = settings(issuer="http://127.0.0.1:9000", allow_insecure_loopback=True)
    assert EidClient(loop, "http://127.0.0.1:8080/eid/callback", broker, clock, creds)
