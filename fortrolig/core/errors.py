"""Error taxonomy shared by every package.

Errors are sorted by who is at fault (``client``, ``protocol`` or ``server``) and carry a stable
snake_case ``code`` plus the HTTP ``status`` the transport layers map them to. Only the standard
library is imported here.
"""

from __future__ import annotations

from typing import ClassVar, Literal

Fault = Literal["client", "protocol", "server"]


class FortroligError(Exception):
    """Base of all domain errors: a stable code, an HTTP status and who is at fault."""

    code: str = "internal_error"
    status: int = 500
    fault: ClassVar[Fault] = "server"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class ProtocolError(FortroligError):
    """The peer broke the wire protocol (bad JSON, unknown message type, bad field)."""

    code = "protocol_error"
    status = 400
    fault = "protocol"


class BadRequest(FortroligError):
    """The request is well formed but its content is invalid."""

    code = "bad_request"
    status = 400
    fault = "client"


class Unauthenticated(FortroligError):
    """No valid credentials were presented."""

    code = "unauthenticated"
    status = 401
    fault = "client"


class Forbidden(FortroligError):
    """The caller is known but may not do this."""

    code = "forbidden"
    status = 403
    fault = "client"


class NotFound(FortroligError):
    """The named resource does not exist (or the caller may not know that it does)."""

    code = "not_found"
    status = 404
    fault = "client"


class Conflict(FortroligError):
    """The request conflicts with the current state of the resource."""

    code = "conflict"
    status = 409
    fault = "client"


class RequestTimeout(FortroligError):
    """The client did not send its request (headers or body) within the deadline; the
    connection is closed after the answer."""

    code = "request_timeout"
    status = 408
    fault = "client"


class PayloadTooLarge(FortroligError):
    """The request or message exceeds a size limit."""

    code = "too_large"
    status = 413
    fault = "client"


class RateLimited(FortroligError):
    """The caller sent too much too fast; ``retry_after_s`` (whole seconds), when known, becomes
    the HTTP ``Retry-After`` header."""

    code = "rate_limited"
    status = 429
    fault = "client"
    retry_after_s: int | None = None


class ConfigError(FortroligError):
    """Configuration or key material is missing or invalid; the server must not start."""

    code = "config_error"
    status = 500
    fault = "server"


class Unavailable(FortroligError):
    """Something the request needs is down or absent for now (HTTP 503); trying later may work.

    Not the caller's fault, but not a bug either: e.g. no live node in the consultation's
    regions (``no_node_in_region``) or the coordination store unreachable
    (``coordination_unavailable``). The message is safe to show.
    """

    code = "unavailable"
    status = 503
    fault = "client"
