"""A node inside the server namespace of an impaired link (tests/support/impaired_net.py).

The poor-network and Firefox tests run the node on 198.18.0.1, where plain http off loopback
must be allowed (this is a lab) and /metrics needs a scraper's secret; browsers there treat the
node's plain-http origin as secure, as they would 127.0.0.1.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from tests.conftest import Server, start_server
from tests.support.impaired_net import SERVER_ADDR


def start_lab_node(tmp: Path) -> Server:
    """A node in ``tmp / "node"`` on the link's server address (the caller's namespace)."""
    (tmp / "node").mkdir()
    token = tmp / "node" / "metrics-token"  # /metrics answers loopback only, or a scraper
    token.write_text(secrets.token_urlsafe(24))
    token.chmod(0o600)
    # Plain http on a non-loopback address is refused unless allowed: this is a lab.
    env = {
        "FORTROLIG_MEDIA__ICE_HOST_ADDRESSES": SERVER_ADDR,
        "FORTROLIG_SERVER__ALLOW_INSECURE_HTTP": "true",
        "FORTROLIG_METRICS__TOKEN_FILE": str(token),
    }
    return start_server(tmp / "node", env, host=SERVER_ADDR)


def secure(node: Server) -> list[str]:
    """Chromium switches: the node's plain-http origin counts as secure (camera, WebCrypto)."""
    return [f"--unsafely-treat-insecure-origin-as-secure={node.base_url}"]
