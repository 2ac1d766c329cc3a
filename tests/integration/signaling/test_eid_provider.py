"""The eID relying party against a real OpenID Provider (panva/oidc-provider on Node.js).

The fixture installs tests/oidc with `npm ci` when its node_modules is missing, starts
tests/oidc/provider.js on a free 127.0.0.1 port, waits for its discovery document and stops it
by PID. A "browser" (an aiohttp session with its own cookie jar) follows the authorization URL
through the provider's login and consent forms, as a user would, up to the redirect to our
callback; the relying party then finishes the login with the code.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from fortrolig.core.clock import FakeClock
from fortrolig.core.config import EidConfig
from fortrolig.signaling.eid import (
    NSIS_LEVELS,
    ClientSecretBasic,
    EidClient,
    EidRejected,
    EidUnavailable,
    MemoryPendingStore,
    PendingLogin,
    PrivateKeyJwt,
)
from fortrolig.signaling.eid.http import AiohttpEidHttp
from tests.support.npm import npm_ci

OIDC_DIR = Path(__file__).resolve().parents[2] / "oidc"
LOW, SUBSTANTIAL, HIGH = NSIS_LEVELS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Provider:
    issuer: str
    redirect_uri: str
    secret: str
    es_key: Any


@contextmanager
def run_provider(work: Path, port: int, clients: list[dict[str, Any]]) -> Iterator[str]:
    """tests/oidc/provider.js on 127.0.0.1:``port`` with ``clients`` (metadata as the provider
    takes it); yields its issuer once it serves discovery, stops it by PID afterwards."""
    npm_ci(OIDC_DIR, "oidc-provider")
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed to run the test OpenID Provider")
    issuer = f"http://127.0.0.1:{port}"
    (work / "config.json").write_text(json.dumps({"port": port, "clients": clients}))
    log = (work / "provider.log").open("wb")
    proc = subprocess.Popen(
        [node, str(OIDC_DIR / "provider.js"), str(work / "config.json")],
        cwd=OIDC_DIR,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                pytest.fail(f"OpenID Provider exited: {(work / 'provider.log').read_text()}")
            try:
                url = issuer + "/.well-known/openid-configuration"
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if json.load(resp)["issuer"] == issuer:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("OpenID Provider did not serve its discovery document in 20 s")
                time.sleep(0.1)
        yield issuer
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    # Nothing listens on the callback: the browser stops at the redirect to it.
    redirect_uri = f"http://127.0.0.1:{_free_port()}/eid/callback"
    secret = secrets.token_urlsafe(36)
    es_key = PrivateKeyJwt.from_key(ec.generate_private_key(ec.SECP256R1()), "ES256")
    common = {
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "subject_type": "pairwise",
    }
    clients = [
        {
            **common,
            "client_id": "fortrolig-basic",
            "client_secret": secret,
            "token_endpoint_auth_method": "client_secret_basic",
        },
        {
            **common,
            "client_id": "fortrolig-pkjwt",
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "ES256",
            "id_token_signed_response_alg": "ES256",
            "jwks": {"keys": [es_key.public_jwk()]},
        },
    ]
    work = tmp_path_factory.mktemp("oidc")
    with run_provider(work, _free_port(), clients) as issuer:
        yield Provider(issuer, redirect_uri, secret, es_key.key)


class _Form(HTMLParser):
    """The first form of a page: its action and its fields' names and default values."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = a.get("action", "")
        elif tag in ("input", "select") and "name" in a:
            self.fields.setdefault(a["name"], a.get("value", ""))


async def browse_login(
    auth_url: str, redirect_uri: str, *, account: str = "anna", acr: str = SUBSTANTIAL
) -> dict[str, str]:
    """Follow ``auth_url`` like a browser: log in as ``account`` at level ``acr``, consent, and
    return the query of the redirect to ``redirect_uri`` (code, state, iss)."""
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for an IP-address host
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        method, url, data = "GET", auth_url, None
        for _ in range(12):
            async with browser.request(method, url, data=data, allow_redirects=False) as resp:
                body = await resp.text()
                if resp.status in (302, 303):
                    url = urljoin(url, resp.headers["Location"])
                    if url.startswith(redirect_uri):
                        return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
                    method, data = "GET", None
                    continue
                assert resp.status == 200, f"{resp.status} at {url}: {body[:500]}"
            form = _Form()
            form.feed(body)
            assert form.action, f"no form at {url}"
            fields = dict(form.fields)
            if "login" in fields:
                fields.update(login=account, acr=acr)
            method, url, data = "POST", urljoin(url, form.action), fields
    raise AssertionError("the login did not come back to the callback")


@pytest.fixture
async def http() -> AsyncIterator[AiohttpEidHttp]:
    async with aiohttp.ClientSession() as session:
        yield AiohttpEidHttp(session, timeout_s=5)


def make_client(
    provider: Provider,
    http: AiohttpEidHttp,
    clock: Any = None,
    *,
    pkjwt: bool = False,
    **overrides: Any,
) -> EidClient:
    clock = clock or FakeClock(now=time.time())
    base: dict[str, Any] = {
        "issuer": provider.issuer,
        "client_id": "fortrolig-pkjwt" if pkjwt else "fortrolig-basic",
        "redirect_uri": provider.redirect_uri,
        "scopes": ("profile",),
        "acr_values": (SUBSTANTIAL,),
        "allow_insecure_loopback": True,
    }
    if pkjwt:
        base.update(client_auth="private_key_jwt", private_key_file=Path("/unused"))
        creds: Any = PrivateKeyJwt.from_key(provider.es_key, "ES256")
    else:
        base.update(client_secret_file=Path("/unused"))
        creds = ClientSecretBasic(provider.secret)
    base.update(overrides)
    return EidClient(EidConfig(**base), provider.redirect_uri, http, clock, creds)


async def test_full_flow_client_secret_basic(provider: Provider, http: AiohttpEidHttp) -> None:
    client = make_client(provider, http)
    url, pending = await client.start("/c/room-1", "consultation-1")
    query = parse_qs(urlsplit(url).query)
    assert query["scope"] == ["openid profile"] and query["code_challenge_method"] == ["S256"]
    callback = await browse_login(url, provider.redirect_uri)
    assert callback["state"] == pending.state and callback["iss"] == provider.issuer

    identity = await client.finish(callback["code"], callback["state"], iss=callback["iss"])
    assert identity.name == "Anna Testesen"
    assert identity.acr == SUBSTANTIAL
    assert identity.issuer == provider.issuer
    assert identity.consultation_ref == "consultation-1" and identity.return_to == "/c/room-1"
    assert identity.cpr is None
    # Pairwise: a pseudonym, not the account id, and stable for the same person and client.
    assert identity.subject != "anna" and len(identity.subject) == 64
    url, _ = await client.start("/c/room-2", "consultation-2")
    callback = await browse_login(url, provider.redirect_uri, acr=HIGH)
    again = await client.finish(callback["code"], callback["state"], iss=callback["iss"])
    assert again.subject == identity.subject and again.acr == HIGH


async def test_full_flow_private_key_jwt_es256(provider: Provider, http: AiohttpEidHttp) -> None:
    client = make_client(provider, http, pkjwt=True, id_token_algs=("ES256",))
    url, _ = await client.start("/c/room-1", "consultation-1")
    callback = await browse_login(url, provider.redirect_uri, account="bo")
    identity = await client.finish(callback["code"], callback["state"], iss=callback["iss"])
    assert identity.name == "Bo Prøvesen" and identity.acr == SUBSTANTIAL
    # Pairwise subjects are per sector (here: the redirect URI's host), not per client: another
    # client of the same service sees the same pseudonym, which is still not the account id.
    basic = make_client(provider, http)
    url, _ = await basic.start("/c/room-1", "consultation-1")
    callback = await browse_login(url, provider.redirect_uri, account="bo")
    other = await basic.finish(callback["code"], callback["state"], iss=callback["iss"])
    assert other.name == identity.name and other.subject == identity.subject != "bo"


async def test_cpr_only_when_configured(provider: Provider, http: AiohttpEidHttp) -> None:
    client = make_client(provider, http, scopes=("profile", "ssn"), allow_cpr=True)
    url, _ = await client.start("/c/room-1", "consultation-1")
    callback = await browse_login(url, provider.redirect_uri)
    identity = await client.finish(callback["code"], callback["state"], iss=callback["iss"])
    assert identity.cpr == "0101901234" and "0101901234" not in repr(identity)


async def test_state_is_single_use(provider: Provider, http: AiohttpEidHttp) -> None:
    client = make_client(provider, http)
    url, _ = await client.start("/c/room-1", "consultation-1")
    callback = await browse_login(url, provider.redirect_uri)
    await client.finish(callback["code"], callback["state"], iss=callback["iss"])
    with pytest.raises(EidRejected) as info:
        await client.finish(callback["code"], callback["state"], iss=callback["iss"])
    assert info.value.code == "eid_state_unknown"
    with pytest.raises(EidRejected) as info:
        await client.finish(callback["code"], "x" * 43, iss=callback["iss"])
    assert info.value.code == "eid_state_unknown"


async def test_state_expires(provider: Provider, http: AiohttpEidHttp) -> None:
    clock = FakeClock(now=time.time())
    client = make_client(provider, http, clock)
    url, _ = await client.start("/c/room-1", "consultation-1")
    callback = await browse_login(url, provider.redirect_uri)
    clock.advance(601)
    with pytest.raises(EidRejected) as info:
        await client.finish(callback["code"], callback["state"], iss=callback["iss"])
    assert info.value.code == "eid_state_expired"


async def test_tampered_nonce_is_refused(provider: Provider, http: AiohttpEidHttp) -> None:
    clock = FakeClock(now=time.time())
    store = MemoryPendingStore(clock)
    client = EidClient(
        make_client(provider, http).config,
        provider.redirect_uri,
        http,
        clock,
        ClientSecretBasic(provider.secret),
        pending=store,
    )
    url, pending = await client.start("/c/room-1", "consultation-1")
    callback = await browse_login(url, provider.redirect_uri)
    # The provider signed the nonce it was sent; the login we remember expects another one.
    taken = await store.take(pending.state)
    assert isinstance(taken, PendingLogin)
    await store.put(replace(taken, nonce="a-different-nonce-" + "x" * 30))
    with pytest.raises(EidRejected) as info:
        await client.finish(callback["code"], callback["state"], iss=callback["iss"])
    assert info.value.code == "eid_nonce_mismatch"


async def test_insufficient_acr_is_refused(provider: Provider, http: AiohttpEidHttp) -> None:
    client = make_client(provider, http)
    url, _ = await client.start("/c/room-1", "consultation-1")
    callback = await browse_login(url, provider.redirect_uri, acr=LOW)
    with pytest.raises(EidRejected) as info:
        await client.finish(callback["code"], callback["state"], iss=callback["iss"])
    assert info.value.code == "eid_acr_insufficient"


async def test_code_is_bound_to_its_pkce_verifier(provider: Provider, http: AiohttpEidHttp) -> None:
    client = make_client(provider, http)
    url_a, _ = await client.start("/c/room-1", "consultation-1")
    _, pending_b = await client.start("/c/room-1", "consultation-1")
    callback = await browse_login(url_a, provider.redirect_uri)
    # A code injected into another login: the provider refuses B's verifier for A's code.
    with pytest.raises(EidRejected) as info:
        await client.finish(callback["code"], pending_b.state, iss=callback["iss"])
    assert (info.value.code, info.value.reason) == ("eid_token_request_failed", "invalid_grant")


async def test_response_from_another_issuer_is_refused(
    provider: Provider, http: AiohttpEidHttp
) -> None:
    client = make_client(provider, http)
    url, _ = await client.start("/c/room-1", "consultation-1")
    callback = await browse_login(url, provider.redirect_uri)
    with pytest.raises(EidRejected) as info:
        await client.finish(callback["code"], callback["state"], iss="https://evil.example")
    assert info.value.code == "eid_issuer_mismatch"


async def test_wrong_client_secret_is_refused(provider: Provider, http: AiohttpEidHttp) -> None:
    good = make_client(provider, http)
    bad = EidClient(
        good.config,
        good.redirect_uri,
        http,
        FakeClock(now=time.time()),
        ClientSecretBasic("nope"),
    )
    url, _ = await bad.start("/c/room-1", "consultation-1")
    callback = await browse_login(url, provider.redirect_uri)
    with pytest.raises(EidRejected) as info:
        await bad.finish(callback["code"], callback["state"], iss=callback["iss"])
    assert (info.value.code, info.value.reason) == ("eid_token_request_failed", "invalid_client")


async def test_id_token_algorithm_not_allowed(provider: Provider, http: AiohttpEidHttp) -> None:
    # The provider signs this client's ID tokens with RS256; a client pinned to ES256 refuses.
    client = make_client(provider, http, id_token_algs=("ES256",))
    url, _ = await client.start("/c/room-1", "consultation-1")
    callback = await browse_login(url, provider.redirect_uri)
    with pytest.raises(EidRejected) as info:
        await client.finish(callback["code"], callback["state"], iss=callback["iss"])
    assert (info.value.code, info.value.reason) == ("eid_id_token_invalid", "algorithm")


async def test_discovery_issuer_must_match_exactly(
    provider: Provider, http: AiohttpEidHttp
) -> None:
    client = make_client(provider, http, issuer=provider.issuer + "/")
    with pytest.raises(EidUnavailable) as info:
        await client.start("/c/room-1", "consultation-1")
    assert (info.value.code, info.value.reason) == ("eid_discovery_failed", "issuer_mismatch")


async def test_provider_jwks_really_verifies(provider: Provider, http: AiohttpEidHttp) -> None:
    """A token signed with a key the provider never published is refused (kid unknown)."""
    client = make_client(provider, http)
    url, pending = await client.start("/c/room-1", "consultation-1")
    callback = await browse_login(url, provider.redirect_uri)
    # Swap the token endpoint's answer for a self-signed token with the right claims.
    forged_key = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    forged = jwt.encode(
        {
            "iss": provider.issuer,
            "aud": "fortrolig-basic",
            "sub": "x",
            "iat": now,
            "exp": now + 60,
            "nonce": pending.nonce,
            "acr": SUBSTANTIAL,
        },
        forged_key,
        algorithm="ES256",
        headers={"kid": "ec-1"},  # the provider's own kid: the signature must fail
    )
    real_post = http.post_form

    async def forged_post(url: str, form: Any, headers: Any) -> Any:
        response = await real_post(url, form, headers)
        body = json.loads(response.body)
        body["id_token"] = forged
        return replace(response, body=json.dumps(body).encode())

    http.post_form = forged_post  # type: ignore[method-assign]
    with pytest.raises(EidRejected) as info:
        await client.finish(callback["code"], callback["state"], iss=callback["iss"])
    assert (info.value.code, info.value.reason) == ("eid_id_token_invalid", "signature")
