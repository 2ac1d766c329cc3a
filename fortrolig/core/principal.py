"""The authenticated caller, as the authentication middleware hands it to the domain.

The middleware keeps it under an aiohttp ``RequestKey`` of its own (``signaling.http.PRINCIPAL``);
other packages get it through a lookup function passed in by the composition root.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: ``subject`` is the stable account id, ``role`` e.g. ``"practitioner"``."""

    subject: str
    role: str
    issued_at: float | None = None  # the token's iat: tokens from before a revocation are refused
