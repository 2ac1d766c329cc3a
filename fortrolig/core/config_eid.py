"""The ``[eid]`` section: national eID (MitID through an OIDC broker), validated once, here.

Every rule the relying party depends on is checked when the configuration loads (an unsafe
setting stops the start with a :class:`~fortrolig.core.errors.ConfigError` naming the key); the
eID client (``fortrolig.signaling.eid``) takes this object as it is and checks only what it
derives (the redirect URI from the public URL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from fortrolig.core.config_rules import require

EID_CLIENT_AUTH = frozenset({"client_secret_basic", "private_key_jwt"})
EID_ID_TOKEN_ALGS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
"""The only ID token algorithms that may be configured (never ``none`` nor ``HS*``)."""
EID_ASSERTION_ALGS = ("RS256", "PS256", "ES256")
"""Algorithms of our own client assertion (``private_key_jwt``)."""
NSIS_LOA = "https://data.gov.dk/concept/core/nsis/loa"
"""Prefix of the Danish NSIS levels of assurance, the ``acr`` values MitID brokers use."""
NSIS_LEVELS = (f"{NSIS_LOA}/Low", f"{NSIS_LOA}/Substantial", f"{NSIS_LOA}/High")
"""The NSIS levels from lowest to highest: the default ``acr_order``."""
_SCOPE_RE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")
_HTTPS = "must be an https URL (http://127.0.0.1 only with allow_insecure_loopback, tests)"


def eid_url_ok(url: str, allow_insecure_loopback: bool) -> bool:
    """An https URL with a host and no user info or fragment; or, with
    ``allow_insecure_loopback`` (tests), ``http://127.0.0.1`` / ``http://[::1]``."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return False
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


def _tokens(values: tuple[str, ...]) -> bool:
    return all(_SCOPE_RE.match(v) for v in values)


@dataclass(frozen=True, slots=True)
class EidConfig:
    """National eID (MitID through an OIDC broker) for invites; docs/eid.md has every key.

    eID is available only when both ``issuer`` and ``client_id`` are set. An empty
    ``redirect_uri`` is ``<server public URL>/eid/callback``. ``min_acr`` is the lowest
    acceptable ``acr`` (by ``acr_order``, lowest first); when empty, the lowest of the requested
    ``acr_values`` found in ``acr_order`` is required, and when both are empty the ``acr`` is not
    checked. ``allow_insecure_loopback`` lets ``http://127.0.0.1`` (or ``[::1]``) stand for the
    issuer, its endpoints and the redirect URI: tests only.
    """

    issuer: str = ""
    client_id: str = ""
    redirect_uri: str = ""
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

    @property
    def enabled(self) -> bool:
        """Whether eID verification is available (issuer and client id configured)."""
        return bool(self.issuer and self.client_id)

    def __post_init__(self) -> None:
        require(
            bool(self.issuer) == bool(self.client_id),
            "eid.client_id" if self.issuer else "eid.issuer",
            "eid.issuer and eid.client_id go together",
        )
        require(
            self.client_auth in EID_CLIENT_AUTH,
            "eid.client_auth",
            f"one of {sorted(EID_CLIENT_AUTH)}",
        )
        require(
            EID_ID_TOKEN_ALGS.issuperset(self.id_token_algs) and bool(self.id_token_algs),
            "eid.id_token_algs",
            f"only {', '.join(sorted(EID_ID_TOKEN_ALGS))} are allowed (never none or HS*)",
        )
        require(
            self.allow_cpr or self.cpr_scope not in self.scopes,
            "eid.scopes",
            f"{self.cpr_scope!r} (the CPR scope) needs allow_cpr = true",
        )
        require(
            not self.min_acr or self.min_acr in self.acr_order,
            "eid.min_acr",
            "must be one of acr_order",
        )
        for name in ("skew_s", "id_token_max_age_s", "jwks_min_refresh_s"):
            require(getattr(self, name) >= 0, f"eid.{name}", "must not be negative")
        for name in ("pending_ttl_s", "discovery_ttl_s", "http_timeout_s", "max_pending"):
            require(getattr(self, name) > 0, f"eid.{name}", "must be positive")
        if self.enabled:
            self._check_relying_party()

    def _check_relying_party(self) -> None:
        """What a configured relying party needs besides the rules above."""
        loopback = self.allow_insecure_loopback
        require(eid_url_ok(self.issuer, loopback), "eid.issuer", _HTTPS)
        require(
            not self.redirect_uri or eid_url_ok(self.redirect_uri, loopback),
            "eid.redirect_uri",
            _HTTPS,
        )
        require(len(self.client_id) <= 255, "eid.client_id", "at most 255 characters")
        require(
            self.client_auth != "client_secret_basic" or self.client_secret_file is not None,
            "eid.client_secret_file",
            "required for client_auth = client_secret_basic",
        )
        require(
            self.client_auth != "private_key_jwt" or self.private_key_file is not None,
            "eid.private_key_file",
            "required for client_auth = private_key_jwt",
        )
        require(
            self.private_key_alg in EID_ASSERTION_ALGS,
            "eid.private_key_alg",
            "must be RS256, PS256 or ES256",
        )
        require(_tokens(self.scopes), "eid.scopes", "not valid scope tokens")
        require(_tokens((self.cpr_scope,)), "eid.cpr_scope", "not a valid scope token")
        require(_tokens(self.acr_values), "eid.acr_values", "not valid tokens")
        require(bool(self.name_claim), "eid.name_claim", "must be set")

    def callback_url(self, base_url: str) -> str:
        """The redirect URI: as configured, else ``<base_url>/eid/callback``."""
        return self.redirect_uri or f"{base_url.rstrip('/')}/eid/callback"

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
