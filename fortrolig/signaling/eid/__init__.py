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

The package:

- :mod:`.client`: :class:`EidClient`, the flow above;
- :mod:`.id_token`: the ID token checks (header, key, signature, claims);
- :mod:`.client_auth`: ``client_secret_basic`` and ``private_key_jwt`` credentials;
- :mod:`.pending`: pending logins (:class:`PendingStore`, in memory; the records database has
  another);
- :mod:`.errors`: :class:`EidRejected`, :class:`EidUnavailable` and their codes;
- :mod:`.ports`: the HTTP port (:class:`EidHttp`);
- I/O adapters, outside the pure modules: :mod:`.http` (aiohttp, the :class:`EidHttp` the node
  uses) and :mod:`.keyfiles` (reads the credentials from private files).

The configuration is :class:`fortrolig.core.config.EidConfig`, validated when it loads.
"""

from __future__ import annotations

from fortrolig.core.config_eid import EID_ID_TOKEN_ALGS as ASYMMETRIC_ALGS
from fortrolig.core.config_eid import NSIS_LEVELS, NSIS_LOA

from .client import (
    ASSERTION_TTL_S,
    MAX_NAME_CHARS,
    MAX_PARAM_CHARS,
    NONCE_BYTES,
    STATE_BYTES,
    VERIFIER_BYTES,
    EidClient,
    ProviderMetadata,
    VerifiedIdentity,
    check_return_to,
    pkce_challenge,
)
from .client_auth import (
    ClientAuth,
    ClientSecretBasic,
    PrivateKeyJwt,
    private_key_jwt_from_pem,
    secret_basic_from_bytes,
)
from .errors import (
    EID_ERROR_CODES,
    ID_TOKEN_REASONS,
    EidRejected,
    EidUnavailable,
)
from .id_token import (
    FORBIDDEN_HEADERS,
    MAX_SUB_CHARS,
    MAX_TOKEN_CHARS,
    check_id_token_claims,
    check_id_token_signature,
    parse_id_token_header,
    select_key,
)
from .pending import (
    MemoryPendingStore,
    PendingLogin,
    PendingStore,
)
from .ports import (
    EidHttp,
    EidTransportError,
    HttpResponse,
)

__all__ = [
    "ASSERTION_TTL_S",
    "ASYMMETRIC_ALGS",
    "EID_ERROR_CODES",
    "FORBIDDEN_HEADERS",
    "ID_TOKEN_REASONS",
    "MAX_NAME_CHARS",
    "MAX_PARAM_CHARS",
    "MAX_SUB_CHARS",
    "MAX_TOKEN_CHARS",
    "NONCE_BYTES",
    "NSIS_LEVELS",
    "NSIS_LOA",
    "STATE_BYTES",
    "VERIFIER_BYTES",
    "ClientAuth",
    "ClientSecretBasic",
    "EidClient",
    "EidHttp",
    "EidRejected",
    "EidTransportError",
    "EidUnavailable",
    "HttpResponse",
    "MemoryPendingStore",
    "PendingLogin",
    "PendingStore",
    "PrivateKeyJwt",
    "ProviderMetadata",
    "VerifiedIdentity",
    "check_id_token_claims",
    "check_id_token_signature",
    "check_return_to",
    "parse_id_token_header",
    "pkce_challenge",
    "private_key_jwt_from_pem",
    "secret_basic_from_bytes",
    "select_key",
]
