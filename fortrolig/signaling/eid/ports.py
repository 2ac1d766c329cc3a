"""The HTTP port of the relying party: the two requests it makes of the broker. The aiohttp
implementation is :mod:`.http`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


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


def json_object(response: HttpResponse) -> dict[str, Any] | None:
    """The JSON object the response carries (a JSON media type), or None."""
    if response.content_type not in ("application/json", "application/jwk-set+json"):
        return None
    try:
        value = json.loads(response.body)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
