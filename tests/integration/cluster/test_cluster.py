"""Three nodes in two regions on a real Redis and PostgreSQL: redirects, placement by region,
failover when the owner dies or freezes, and a Redis outage.

Programmatic participants (aiortc) publish real VP8/Opus; "media back" means frames from the
other side grow again after the event.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fortrolig.loadtests.participant import Participant
from fortrolig.loadtests.sources import PatternVideoTrack, ToneAudioTrack
from tests.conftest import FORTROLIG
from tests.support.cluster import Node, TestCluster, new_cluster
from tests.support.polling import eventually

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TestCluster]:
    async with new_cluster(request, tmp_path) as c:
        yield c


def participant(ws_url: str, token: str, colour: tuple[int, int, int]) -> Participant:
    return Participant(
        ws_url,
        token,
        tracks=[PatternVideoTrack(*colour, 320, 240, 15), ToneAudioTrack()],
        auto_resume=True,
    )


async def media_flows(a: Participant, b: Participant, limit: float = 20) -> float:
    """Seconds until each side's frames from the other grew by 10 from now."""
    start = time.monotonic()
    base_a = a.frames_from(b.participant_id or "", "video")
    base_b = b.frames_from(a.participant_id or "", "video")
    await eventually(
        lambda: (
            a.frames_from(b.participant_id or "", "video") > base_a + 10
            and b.frames_from(a.participant_id or "", "video") > base_b + 10
        ),
        limit,
        "video both ways",
    )
    return time.monotonic() - start


def owner_node(c: TestCluster, room_id: str, via: Node) -> Node:
    name = c.owner_of(room_id, via)
    assert name is not None
    return c.node(name)


async def test_a_client_on_the_wrong_node_is_sent_to_the_owner_in_an_allowed_region(
    cluster: TestCluster,
) -> None:
    n1 = cluster.add("n1", "eu-north")
    n2 = cluster.add("n2", "eu-north")
    n3 = cluster.add("n3", "eu-west")
    room = cluster.create_room(n3, regions=["eu-north"])  # any node's API creates any room
    a = participant(n3.ws_url, cluster.join_token(n3, room, "practitioner"), (82, 90, 240))
    b = participant(n1.ws_url, cluster.join_token(n2, room, "client"), (145, 54, 34))
    try:
        await a.start()
        await b.start()
        owner = owner_node(cluster, room, n3)
        assert owner in (n1, n2) and owner.region == "eu-north"
        assert a.redirects == [owner.base_url]  # n3 never serves an eu-north room
        assert b.redirects == ([] if owner is n1 else [owner.base_url])
        await media_flows(a, b)
        assert owner.metric("fortrolig_rooms") == 1
        assert n3.metric("fortrolig_rooms") == 0
        assert n3.metric("fortrolig_ws_redirects_total") >= 1
        # Placement is by load: a second room goes to the other eu-north node.
        room2 = cluster.create_room(n1)
        c = participant(n1.ws_url, cluster.join_token(n1, room2, "practitioner"), (1, 2, 3))
        try:
            await c.start()
            assert owner_node(cluster, room2, n1) not in (owner, n3)
        finally:
            await c.close()
    finally:
        await a.close()
        await b.close()


async def test_no_node_in_the_allowed_regions_is_a_clear_refusal_never_a_move(
    cluster: TestCluster,
) -> None:
    n1 = cluster.add("n1", "eu-north")
    n3 = cluster.add("n3", "eu-west")
    west = cluster.create_room(n1, regions=["eu-west"])
    token = cluster.join_token(n1, west, "practitioner")
    cluster.kill(n3)
    await asyncio.sleep(2.5)  # its registry entry expires (node TTL 2 s)
    status, body = n1.post("/api/v1/rooms", {"regions": ["eu-west"]}, cluster.access_token())
    assert (status, body["error"]["code"]) == (503, "no_node_in_region")
    p = Participant(n1.ws_url, token)
    try:
        first = await p.connect()
        assert (first["type"], first.get("code")) == ("error", "no_node_in_region")
        closed = await p.expect("closed")
        assert closed["code"] == 1013  # try again later: the client keeps its token
        assert n1.metric("fortrolig_rooms") == 0
    finally:
        await p.close()
    # The token was not spent: once an eu-west node is back, the same token joins there.
    cluster.start(n3)
    p = Participant(n1.ws_url, token)
    try:
        await eventually(lambda: n3.get("/readyz")[0] == 200, 10, "n3 ready")
        welcome = await p.connect()
        assert welcome["type"] == "welcome" and p.redirects == [n3.base_url]
    finally:
        await p.close()


async def test_owner_killed_participants_resume_on_another_node_still_admitted(
    cluster: TestCluster,
) -> None:
    n1 = cluster.add("n1", "eu-north")
    n2 = cluster.add("n2", "eu-north")
    room = cluster.create_room(n1, waiting_room=True)
    doctor = participant(n1.ws_url, cluster.join_token(n1, room, "practitioner"), (82, 90, 240))
    client = participant(n2.ws_url, cluster.join_token(n1, room, "client"), (145, 54, 34))
    doctor.doors = client.doors = [n1.ws_url, n2.ws_url]  # what a load balancer would give
    try:
        await doctor.start()
        welcome = await client.connect()
        assert welcome["type"] == "welcome"
        await client.send({"type": "join"})
        await client.expect("waiting")
        await doctor.send({"type": "admit", "participant_id": client.participant_id})
        await client.expect("joined")
        await client.publish(welcome)
        await media_flows(doctor, client)
        owner = owner_node(cluster, room, n1)
        survivor = n2 if owner is n1 else n1

        killed_at = time.monotonic()
        cluster.kill(owner)
        await eventually(lambda: doctor.resumes == 1 and client.resumes == 1, 30, "both resumed")
        back = await media_flows(doctor, client)
        media_back_s = time.monotonic() - killed_at
        assert owner_node(cluster, room, survivor) is survivor
        # Admitted before the failure: straight back in, never the waiting room again.
        kinds = [m["type"] for m in client.messages]
        second_welcome = kinds.index("welcome", kinds.index("welcome") + 1)
        assert "joined" in kinds[second_welcome:] and "waiting" not in kinds[second_welcome:]
        assert doctor.resume_failures == client.resume_failures == 0
        print(f"media back {media_back_s:.1f} s after the owner's SIGKILL ({back:.1f} s flow)")
    finally:
        await doctor.close()
        await client.close()


async def test_a_frozen_owner_ends_its_copy_when_it_wakes(cluster: TestCluster) -> None:
    n1 = cluster.add("n1", "eu-north")
    n2 = cluster.add("n2", "eu-north")
    room = cluster.create_room(n1)
    a = participant(n1.ws_url, cluster.join_token(n1, room, "practitioner"), (82, 90, 240))
    b = participant(n1.ws_url, cluster.join_token(n1, room, "client"), (145, 54, 34))
    try:
        await a.start()
        await b.start()
        owner = owner_node(cluster, room, n1)
        other = n2 if owner is n1 else n1
        a.doors = b.doors = [n1.ws_url, n2.ws_url]  # what a load balancer would give
        await media_flows(a, b)
        cluster.freeze(owner)
        try:
            await eventually(lambda: a.resumes >= 1 and b.resumes >= 1, 30, "both resumed")
            await media_flows(a, b)
            assert owner_node(cluster, room, other) is other
            await asyncio.sleep(4.5)  # frozen past its lease (4 s by its own clock)
        finally:
            cluster.thaw(owner)
        # Awake, it finds its lease lapsed and ends its copy: one room, served once.
        await eventually(lambda: owner.metric("fortrolig_rooms") == 0, 10, "stale copy ended")
        await eventually(lambda: owner.metric("fortrolig_media_peers") == 0, 10, "peers closed")
        assert other.metric("fortrolig_rooms") == 1
        await media_flows(a, b)
        assert owner_node(cluster, room, owner) is other
    finally:
        await a.close()
        await b.close()


async def test_redis_down_for_15_s_keeps_sessions_and_the_cluster_recovers(
    cluster: TestCluster,
) -> None:
    slow_lease = {"FORTROLIG_COORDINATION__LEASE_TTL_S": "20"}
    n1 = cluster.add("n1", "eu-north", **slow_lease)
    n2 = cluster.add("n2", "eu-north", **slow_lease)
    room = cluster.create_room(n1)
    a = participant(n1.ws_url, cluster.join_token(n1, room, "practitioner"), (82, 90, 240))
    b = participant(n1.ws_url, cluster.join_token(n1, room, "client"), (145, 54, 34))
    try:
        await a.start()
        await b.start()
        await media_flows(a, b)
        late_room = cluster.create_room(n2)
        late_token = cluster.join_token(n2, late_room, "client")
        cluster.redis.stop()
        down_at = time.monotonic()
        await eventually(lambda: n1.get("/readyz")[0] == 503, 5, "readyz fails")
        _, body = n1.get("/readyz")
        assert "coordination_unavailable" in body["reasons"]
        assert n1.get("/healthz")[0] == 200 and n2.get("/healthz")[0] == 200
        # What needs Redis is refused with a clear error ...
        late = Participant(n2.ws_url, late_token)
        try:
            first = await late.connect()
            assert first.get("code") == "coordination_unavailable"
        finally:
            await late.close()
        # ... while the established session keeps its media the whole time.
        while time.monotonic() - down_at < 15:
            await media_flows(a, b, limit=5)
        cluster.redis.start()  # back, and empty
        for node in (n1, n2):
            await eventually(lambda n=node: n.get("/readyz")[0] == 200, 10, f"{node.name} ready")
        assert a.resumes == b.resumes == 0
        await media_flows(a, b)
        c = Participant(n2.ws_url, late_token)  # refused during the outage: not spent
        try:
            assert (await c.connect())["type"] == "welcome"
        finally:
            await c.close()
    finally:
        await a.close()
        await b.close()


def fortrolig_cli(cluster: TestCluster, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FORTROLIG_COORDINATION__REDIS_URL": cluster.redis.url}
    return subprocess.run(
        [*FORTROLIG, *args], capture_output=True, text=True, timeout=30, env=env, check=False
    )


async def test_operators_list_nodes_and_drain_one_whose_rooms_move(
    cluster: TestCluster,
) -> None:
    n1 = cluster.add("n1", "eu-north")
    n2 = cluster.add("n2", "eu-north")
    room = cluster.create_room(n1)
    a = participant(n1.ws_url, cluster.join_token(n1, room, "practitioner"), (82, 90, 240))
    b = participant(n1.ws_url, cluster.join_token(n1, room, "client"), (145, 54, 34))
    a.doors = b.doors = [n1.ws_url, n2.ws_url]
    try:
        await a.start()
        await b.start()
        await media_flows(a, b)
        owner = owner_node(cluster, room, n1)
        other = n2 if owner is n1 else n1
        listed = fortrolig_cli(cluster, "nodes", "--json")
        assert listed.returncode == 0, listed.stderr
        rows = {r["node_id"]: r for r in json.loads(listed.stdout)["nodes"]}
        assert set(rows) == {"n1", "n2"} and rows[owner.name]["participants"] == 2
        assert {r["region"] for r in rows.values()} == {"eu-north"}
        assert not any(r["draining"] for r in rows.values())

        drained = fortrolig_cli(cluster, "node", "drain", owner.name)
        assert drained.returncode == 0, drained.stderr
        await eventually(lambda: a.resumes >= 1 and b.resumes >= 1, 20, "moved")
        await media_flows(a, b)
        assert owner_node(cluster, room, other) is other
        again = json.loads(fortrolig_cli(cluster, "nodes", "--json").stdout)["nodes"]
        rows = {r["node_id"]: r for r in again}
        assert rows[owner.name]["draining"] and not rows[other.name]["draining"]
        assert owner.get("/readyz")[0] == 503 and owner.get("/healthz")[0] == 200
        unknown = fortrolig_cli(cluster, "node", "drain", "no-such-node")
        assert unknown.returncode == 1 and "node_not_found" in unknown.stderr
    finally:
        await a.close()
        await b.close()


@pytest.mark.timeout(150)
async def test_fortrolig_load_spreads_rooms_over_two_nodes_and_reports_per_node(
    cluster: TestCluster, tmp_path: Path
) -> None:
    n1 = cluster.add("n1", "eu-north")
    n2 = cluster.add("n2", "eu-north")
    out = tmp_path / "load"
    cmd = [
        sys.executable, "-m", "fortrolig.loadtests.cli",
        "--base-url", n1.base_url,
        "--data-dir", str(cluster.seed),
        "--cache-dir", str(tmp_path / "clips"),
        "--out", str(out),
        "--no-progress", "--workers", "1",
        "--resolution", "320x180", "--fps", "15", "--video-bitrate", "300k",
        "--rooms", "4", "--participants-per-room", "2", "--duration", "8s",
        "--max-loss", "2%", "--max-join-p95", "8s",
    ]  # fmt: skip
    run = await asyncio.to_thread(
        subprocess.run, cmd, capture_output=True, text=True, timeout=140, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((out / "report.json").read_text())
    nodes = report["summary"]["by_node"]
    assert set(nodes) == {n1.base_url, n2.base_url}, nodes
    assert all(n["rooms"] >= 1 and n["failed"] == 0 for n in nodes.values()), nodes
    assert sum(n["participants"] for n in nodes.values()) == 8
    assert "node " + n2.base_url in run.stdout  # the printed summary has a row per node


async def test_ending_a_room_on_another_node_ends_it_where_it_is_served(
    cluster: TestCluster,
) -> None:
    n1 = cluster.add("n1", "eu-north")
    n2 = cluster.add("n2", "eu-west")
    room = cluster.create_room(n1)  # served by n1 (its region)
    a = Participant(n2.ws_url, cluster.join_token(n1, room, "practitioner"))
    b = Participant(n1.ws_url, cluster.join_token(n1, room, "client"))
    try:
        for p in (a, b):
            assert (await p.connect())["type"] == "welcome"
            assert (await p.join())["type"] == "joined"
        assert a.redirects == [n1.base_url]
        status, body = _delete(n2, f"/api/v1/rooms/{room}", cluster.access_token())
        assert status == 204, body
        for p in (a, b):  # at n1's next heartbeat it sees the record ended
            assert (await p.expect("bye", within=5))["reason"] == "room_ended"
            assert (await p.expect("closed", within=5))["code"] == 1000
        assert n1.metric("fortrolig_rooms") == 0
        path = f"/api/v1/rooms/{room}/tokens"
        status, body = n2.post(path, {"role": "client"}, cluster.access_token())
        assert (status, body["error"]["code"]) == (404, "room_not_found")
    finally:
        await a.close()
        await b.close()


def _delete(node: Node, path: str, token: str) -> tuple[int, object]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        node.base_url + path, headers={"Authorization": f"Bearer {token}"}, method="DELETE"
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
