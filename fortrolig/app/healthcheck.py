"""`python -m fortrolig.app.healthcheck`: exit 0 if this node answers ``/healthz``, else 1.

The container image's HEALTHCHECK. It reads the same configuration as ``fortrolig serve``
(``FORTROLIG_CONFIG`` and ``FORTROLIG_*`` variables) to find the port, so it needs no curl and
follows a changed port. Standard library only: it runs every 30 s and must start fast.

A node that serves TLS itself is probed over https without checking its certificate: the probe
talks to its own node on loopback, where the certificate's names (the public host) never match,
and it asks only whether the node answers.
"""

from __future__ import annotations

import os
import ssl
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
    return f"{'https' if server.tls else 'http'}://{host}:{server.port}/healthz"


def _loopback_tls_context() -> ssl.SSLContext:
    """TLS without certificate checks, for the probe of this node only (see module doc)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def main(env: Mapping[str, str] | None = None, timeout_s: float = 4.0) -> int:
    """Probe ``/healthz`` once; print why on failure."""
    try:
        url = healthz_url(os.environ if env is None else env)
    except ConfigError as exc:
        print(f"healthcheck: configuration error: {exc}", file=sys.stderr)
        return 1
    try:
        tls = _loopback_tls_context() if url.startswith("https:") else None
        with urllib.request.urlopen(url, timeout=timeout_s, context=tls) as resp:
            ok = resp.status == 200
    except OSError as exc:  # URLError and HTTPError (a 5xx) are OSErrors
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
