"""The relying party: an OIDC client for one eID broker (the flow is in the package docstring).

Pure: HTTP is injected (:class:`~.ports.EidHttp`), time comes from the clock, credentials are
read by the composition root (:mod:`.keyfiles`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

import jwt

from fortrolig.core.clock import Clock
from fortrolig.core.config_eid import EidConfig, eid_url_ok
from fortrolig.core.errors import ConfigError
from fortrolig.core.ids import random_token

from .client_auth import ClientAuth, ClientSecretBasic
from .errors import EidRejected, EidUnavailable, safe_reason, token_invalid
from .id_token import (
    check_id_token_claims,
    check_id_token_signature,
    is_int,
    parse_id_token_header,
    select_key,
)
from .pending import MemoryPendingStore, PendingLogin, PendingStore
from .ports import EidHttp, EidTransportError, json_object

MAX_PARAM_CHARS: Final = 2_048
MAX_NAME_CHARS: Final = 256
ASSERTION_TTL_S: Final = 60
STATE_BYTES: Final = 32
NONCE_BYTES: Final = 32
VERIFIER_BYTES: Final = 48
"""48 random bytes make a 64-character code verifier (RFC 7636 asks for 43 to 128)."""
_STATE_RE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
_CPR_RE = re.compile(r"^[0-9]{10}$")


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


class EidClient:
    """An OIDC relying party for one broker. See the module docstring for the flow."""

    def __init__(
        self,
        config: EidConfig,
        redirect_uri: str,
        http: EidHttp,
        clock: Clock,
        credentials: ClientAuth,
        *,
        pending: PendingStore | None = None,
    ) -> None:
        """``config`` is the validated ``[eid]`` section (it must be enabled); ``redirect_uri``
        is derived from it and the public URL (:meth:`EidConfig.callback_url`) and checked here.
        """
        if not config.enabled:
            raise ConfigError("config key eid.issuer: eID is not configured")
        if not eid_url_ok(redirect_uri, config.allow_insecure_loopback):
            raise ConfigError("config key eid.redirect_uri: must be an https URL")
        if credentials.method != config.client_auth:
            raise ConfigError(
                f"eid.client_auth is {config.client_auth} but the credentials are for "
                f"{credentials.method}"
            )
        self._config = config
        self._redirect_uri = redirect_uri
        self._http = http
        self._clock = clock
        self._credentials = credentials
        if pending is None:  # not `or`: an empty MemoryPendingStore is falsy (it has __len__)
            pending = MemoryPendingStore(
                clock, max_entries=config.max_pending, grace_s=config.pending_ttl_s
            )
        self._pending: PendingStore = pending
        self._metadata: ProviderMetadata | None = None
        self._metadata_at = 0.0
        self._jwks: dict[str, Any] | None = None
        self._jwks_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def config(self) -> EidConfig:
        """The ``[eid]`` configuration this client runs with."""
        return self._config

    @property
    def redirect_uri(self) -> str:
        """The redirect URI registered at the broker."""
        return self._redirect_uri

    # -- discovery and keys --

    async def discovery(self) -> ProviderMetadata:
        """The broker's metadata, fetched from ``/.well-known/openid-configuration`` and cached
        for ``discovery_ttl_s``; raises ``eid_discovery_failed``."""
        async with self._lock:
            now = self._clock.monotonic()
            if self._metadata is None or now - self._metadata_at >= self._config.discovery_ttl_s:
                self._metadata = await self._fetch_metadata()
                self._metadata_at = now
            return self._metadata

    async def _fetch_metadata(self) -> ProviderMetadata:
        s = self._config
        url = s.issuer.rstrip("/") + "/.well-known/openid-configuration"

        def fail(reason: str, message: str) -> EidUnavailable:
            return EidUnavailable(message, code="eid_discovery_failed", reason=reason)

        try:
            response = await self._http.get(url)
        except EidTransportError:
            raise fail("unreachable", "eID broker discovery unreachable") from None
        if response.status != 200:
            raise fail(f"http_{response.status}", "eID broker discovery failed")
        doc = json_object(response)
        if doc is None:
            raise fail("bad_response", "eID broker discovery is not a JSON object")
        if doc.get("issuer") != s.issuer:
            raise fail("issuer_mismatch", "eID broker discovery names another issuer")
        endpoints = {}
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = doc.get(key)
            if not isinstance(value, str) or not eid_url_ok(value, s.allow_insecure_loopback):
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
        doc = json_object(response) if response.status == 200 else None
        if doc is None or not isinstance(doc.get("keys"), list):
            raise EidUnavailable(
                "eID broker keys unusable", code="eid_jwks_failed", reason="bad_response"
            )
        return doc

    async def _key_for(self, header: Mapping[str, Any], metadata: ProviderMetadata) -> jwt.PyJWK:
        """The verification key; the JWKS is fetched again once when the key is not in it (at
        most every ``jwks_min_refresh_s``), and when the cache is older than the discovery TTL."""
        s = self._config
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
            raise token_invalid("key_unknown", "ID token signed with an unknown key")
        return key

    # -- the flow --

    async def start(self, return_to: str, consultation_ref: str) -> tuple[str, PendingLogin]:
        """Begin a login: return the broker's authorization URL and the pending login kept
        server-side (only its ``state`` travels, in the URL)."""
        s = self._config
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
            redirect_uri=self._redirect_uri,
            required_acr=s.required_acr,
            created_at=now,
            expires_at=now + s.pending_ttl_s,
        )
        params = {
            "response_type": "code",
            "client_id": s.client_id,
            "redirect_uri": self._redirect_uri,
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
        reason = safe_reason(error, "error")
        return EidRejected(
            "eID login was not completed", code="eid_authorization_denied", reason=reason
        )

    async def finish(self, code: str, state: str, *, iss: str | None = None) -> VerifiedIdentity:
        """Complete a login from the broker's redirect (``code``, ``state``, and ``iss`` when the
        broker sends it). The pending login is spent whether this succeeds or not."""
        s = self._config
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
        s = self._config
        name = claims.get(s.name_claim)
        if name is None and s.name_claim == "name":
            given, family = claims.get("given_name"), claims.get("family_name")
            if isinstance(given, str) and isinstance(family, str):
                name = f"{given} {family}"
        if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME_CHARS):
            raise token_invalid("claims", "ID token name is not a string")
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
            auth_time=auth_time if is_int(auth_time) else None,
            consultation_ref=pending.consultation_ref,
            return_to=pending.return_to,
            verified_at=self._clock.now(),
            cpr=cpr,
        )

    async def _redeem(self, code: str, pending: PendingLogin, metadata: ProviderMetadata) -> str:
        """Exchange ``code`` at the token endpoint; return the raw ID token."""
        s = self._config
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
        body = json_object(response)
        if response.status in (400, 401):
            reason = safe_reason(body.get("error") if body else None, f"http_{response.status}")
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
