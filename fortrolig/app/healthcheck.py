"""`python -m fortrolig.app.healthcheck`: exit 0 if this node answers ``/healthz``, else 1.

The container image's HEALTHCHECK. It reads the same configuration as ``fortrolig serve``
(``FORTROLIG_CONFIG`` and ``FORTROLIG_*`` variables) to find the port, so it needs no curl and
follows a changed port. Standard library only: it runs every 30 s and must start fast.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Mapping

from fortrolig.core.config import load_config
from fortrolig.core.errors import ConfigError

_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def healthz_url(env: Mapping[str, str]) -> str:
    """The ``/healthz`` URL on the address the node listens on (loopback for a wildcard)."""
    server = load_config(None, env).server
    host = _WILDCARDS.get(server.host, server.host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{server.port}/healthz"


def main(env: Mapping[str, str] | None = None, timeout_s: float = 4.0) -> int:
    """Probe ``/healthz`` once; print why on failure."""
    try:
        url = healthz_url(os.environ if env is None else env)
    except ConfigError as exc:
        print(f"healthcheck: configuration error: {exc}", file=sys.stderr)
        return 1
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            ok = resp.status == 200
    except OSError as exc:  # URLError and HTTPError (a 5xx) are OSErrors
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
