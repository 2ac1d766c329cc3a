"""The access log never records query strings (eID callbacks carry one-time codes)."""

from __future__ import annotations

import time
import urllib.request

from tests.conftest import Server


def test_query_strings_stay_out_of_the_access_log(server: Server) -> None:
    with urllib.request.urlopen(
        server.base_url + "/healthz?code=s3cr3t-code&state=st4te", timeout=5
    ):
        pass
    deadline = time.monotonic() + 5
    while "GET /healthz" not in server.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = server.log_path.read_text()
    assert '"GET /healthz" 200' in log
    assert "s3cr3t-code" not in log and "st4te" not in log
