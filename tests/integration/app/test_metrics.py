"""`/metrics` exposes every metric docs/operations.md lists; `/readyz` refuses when not ready."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from fortrolig.app.server import LOOP_LAG_KEY, build_app
from fortrolig.core.config import Config, load_config
from fortrolig.loadtests.participant import Participant
from tests.conftest import ROOT, Server

DOC = ROOT / "docs" / "operations.md"


def documented_metrics() -> dict[str, str]:
    """{metric name: type} from the table of the "## Metrics" section."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    found = {}
    for line in section.splitlines():
        m = re.match(
            r"^\| (fortrolig_[a-z0-9_]+)(\{[a-z_,]+\})? \| (counter|gauge|histogram) \|", line
        )
        if m:
            found[m.group(1)] = m.group(3)
    return found


def scrape(server: Server) -> str:
    with urllib.request.urlopen(server.base_url + "/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def test_the_table_is_parsed() -> None:
    metrics = documented_metrics()
    # Issue 6's list: peers by state, forwarded packets/bytes, NACK/PLI/FIR, SRTP failures,
    # join latency, WebSocket messages and errors, event-loop lag.
    for name in (
        "fortrolig_rooms",
        "fortrolig_participants",
        "fortrolig_media_peers",
        "fortrolig_media_forwarded_packets_total",
        "fortrolig_media_forwarded_bytes_total",
        "fortrolig_media_nack_received_total",
        "fortrolig_media_pli_received_total",
        "fortrolig_media_fir_received_total",
        "fortrolig_media_srtp_refused_total",
        "fortrolig_join_latency_seconds",
        "fortrolig_ws_messages_total",
        "fortrolig_ws_errors_total",
        "fortrolig_event_loop_lag_seconds",
    ):
        assert name in metrics, name


async def test_metrics_exposes_every_documented_metric(server: Server) -> None:
    # Labelled families appear once they have a sample: make one message and one error.
    session = server.session()
    p = Participant(server.ws_url, session["client_token"])
    try:
        assert (await p.connect())["type"] == "welcome"
        assert (await p.join())["type"] == "joined"
    finally:
        await p.close()
    bad = Participant(server.ws_url, "not-a-token")
    try:
        assert (await bad.connect())["type"] == "error"
    finally:
        await bad.close()

    text = scrape(server)
    exposed = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.MULTILINE))
    missing = {n: t for n, t in documented_metrics().items() if exposed.get(n) != t}
    assert not missing, f"documented but not exposed with that type: {missing}"
    # Every sample carries the region label.
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert 'region="' in line, line
    assert re.search(r'^fortrolig_join_latency_seconds_bucket\{le="\+Inf",', text, re.MULTILINE)


def test_readyz_is_ready_on_a_running_node(server: Server) -> None:
    with urllib.request.urlopen(server.base_url + "/readyz", timeout=5) as resp:
        assert resp.status == 200
    assert server.metric("fortrolig_ready") == 1.0


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(None, {}, {"server.data_dir": tmp_path / "data", "media.workers": 2})


async def test_readyz_refuses_while_lagging_and_shutting_down(config: Config) -> None:
    # In-process: a real `fortrolig serve` closes its listening socket before on_shutdown runs,
    # so only a kept-alive connection could see the 503; here the app is shut down under a
    # test server that keeps serving.
    app = build_app(config)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/readyz")
        assert resp.status == 200
        assert (await resp.json())["status"] == "ready"

        app[LOOP_LAG_KEY][0] = 5.0  # an overloaded loop
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert (await resp.json()) == {"status": "not_ready", "reasons": ["event_loop_lag"]}
        metrics = await (await client.get("/metrics")).text()
        assert re.search(r"^fortrolig_ready\{[^}]*\} 0\.0$", metrics, re.MULTILINE)
        app[LOOP_LAG_KEY][0] = 0.0

        await app.shutdown()  # what SIGTERM triggers
        resp = await client.get("/readyz")
        assert resp.status == 503
        assert (await resp.json())["reasons"] == ["shutting_down", "draining"]
        resp = await client.get("/healthz")
        assert resp.status == 200  # still alive while it drains


def test_the_grafana_dashboard_covers_every_documented_metric() -> None:
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    assert dashboard["schemaVersion"] >= 36  # Grafana 9/10 JSON model
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    exprs = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        exprs += [t["expr"] for t in panel["targets"]]
    text = "\n".join(exprs)
    uncovered = [n for n in documented_metrics() if n not in text]
    assert not uncovered, uncovered
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
