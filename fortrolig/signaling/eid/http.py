"""The aiohttp implementation of :class:`fortrolig.signaling.eid.ports.EidHttp`.

Redirects are never followed, every request has a total timeout, and bodies larger than
``max_body_bytes`` are refused, so a misbehaving broker cannot make the server wait or buffer
without bound. Every failure to get an answer becomes
:class:`~fortrolig.signaling.eid.ports.EidTransportError`.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from .ports import EidTransportError, HttpResponse

MAX_BODY_BYTES = 1 << 20


class AiohttpEidHttp:
    """Talks to the broker through a caller-owned :class:`aiohttp.ClientSession`."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        timeout_s: float = 10.0,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._max_body = max_body_bytes

    async def get(self, url: str) -> HttpResponse:
        """GET ``url`` accepting JSON."""
        return await self._request("GET", url, headers={"Accept": "application/json"})

    async def post_form(
        self, url: str, form: Mapping[str, str], headers: Mapping[str, str]
    ) -> HttpResponse:
        """POST ``form`` url-encoded with ``headers``."""
        return await self._request("POST", url, headers=dict(headers), data=dict(form))

    async def _request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        data: dict[str, str] | None = None,
    ) -> HttpResponse:
        try:
            async with self._session.request(
                method,
                url,
                headers=headers,
                data=data,
                allow_redirects=False,
                timeout=self._timeout,
            ) as response:
                if (response.content_length or 0) > self._max_body:
                    raise EidTransportError("response too large")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > self._max_body:
                        raise EidTransportError("response too large")
                    chunks.append(chunk)
                body = b"".join(chunks)
                return HttpResponse(response.status, response.content_type.lower(), body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise EidTransportError(f"{method} {url}: {type(exc).__name__}") from None
