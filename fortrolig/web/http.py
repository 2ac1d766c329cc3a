"""Serves the browser client: the room page (opened from a join link) and its static files.

The join token travels in the URL fragment, so these routes never see it; the page reads it in
the browser and speaks docs/protocol.md over /ws.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).parent / "static"

# No caching of the page (it is tiny and must follow deployments); strict headers for a page
# that handles health data: no referrer, no framing, only our own scripts.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self' ws: wss:; media-src 'self' blob: mediastream:; "
        "img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
    ),
    "Permissions-Policy": "camera=(self), microphone=(self)",
}


def web_routes() -> list[web.AbstractRouteDef]:
    """The room page at /room/{room_id}, the invite page at /invite, /login, /practice, assets."""

    async def room_page(request: web.Request) -> web.StreamResponse:
        page = STATIC_DIR / "room.html"
        if not page.is_file():
            raise web.HTTPNotFound(text="the browser client is not installed")
        return web.FileResponse(page, headers=PAGE_HEADERS)

    async def invite_page(request: web.Request) -> web.StreamResponse:
        # The invite secret is in the fragment (/invite#<secret>): this request never carries it.
        page = STATIC_DIR / "invite.html"
        if not page.is_file():
            raise web.HTTPNotFound(text="the browser client is not installed")
        return web.FileResponse(page, headers=PAGE_HEADERS)

    def page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            path = STATIC_DIR / name
            if not path.is_file():
                raise web.HTTPNotFound(text="the browser client is not installed")
            return web.FileResponse(path, headers=PAGE_HEADERS)

        return handler

    return [
        web.get("/room/{room_id}", room_page),
        web.get("/invite", invite_page),
        # The practitioner's login and dashboard; tokens stay in the tab's sessionStorage.
        web.get("/login", page("login.html")),
        web.get("/practice", page("practice.html")),
        # Onboarding and the account: link tokens travel in the fragment (/confirm#…).
        web.get("/", page("index.html")),
        web.get("/signup", page("signup.html")),
        web.get("/confirm", page("confirm.html")),
        web.get("/forgot", page("forgot.html")),
        web.get("/reset", page("reset.html")),
        web.get("/settings", page("settings.html")),
        web.static("/static", STATIC_DIR, follow_symlinks=False),
    ]
