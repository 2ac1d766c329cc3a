"""The authenticated caller, as the authentication middleware hands it to the domain."""

from __future__ import annotations

from dataclasses import dataclass

PRINCIPAL_KEY = "fortrolig.principal"
"""The ``request`` key under which the authentication middleware stores the :class:`Principal`."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: ``subject`` is the stable account id, ``role`` e.g. ``"practitioner"``."""

    subject: str
    role: str
