"""Chromium in a cluster: the page is served by a node that does not own the room; its
WebSocket is redirected to the owner (in the room's region) and the consultation runs there."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Browsers
from tests.e2e.test_browser_consultation import decodes_video_from
from tests.support.cluster import TestCluster, new_cluster

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TestCluster]:
    async with new_cluster(request, tmp_path) as c:
        yield c


async def test_a_page_on_the_wrong_node_follows_the_redirect_to_the_owner(
    cluster: TestCluster, browsers: Browsers, tmp_path: Path
) -> None:
    north = cluster.add("north-1", "eu-north")
    west = cluster.add("west-1", "eu-west")
    room = cluster.create_room(north, regions=["eu-west"])
    practitioner_url = _room_url(cluster, north, room, "practitioner")  # served by north
    client_url = _room_url(cluster, west, room, "client")
    practitioner = await browsers.open(practitioner_url, "Dr. Ørsted")
    client = await browsers.open(client_url, "Klient", viewport=(390, 844))
    await practitioner.wait_state("in_session", within=30)
    await client.wait_state("in_session", within=30)
    assert await practitioner.page.evaluate("window.fortrolig.redirects") == 1
    assert await client.page.evaluate("window.fortrolig.redirects") == 0
    assert practitioner.server_messages("redirect")[0]["url"] == west.base_url
    pid_p, pid_c = await practitioner.participant_id(), await client.participant_id()
    await decodes_video_from(client, pid_p)
    await decodes_video_from(practitioner, pid_c)
    assert cluster.owner_of(room, north) == "west-1"
    assert north.metric("fortrolig_rooms") == 0 and west.metric("fortrolig_rooms") == 1
    await practitioner.screenshot(tmp_path, "redirected")
    await client.screenshot(tmp_path, "owner")


def _room_url(cluster: TestCluster, via: object, room: str, role: str) -> str:
    from tests.support.cluster import Node

    assert isinstance(via, Node)
    status, body = via.post(f"/api/v1/rooms/{room}/tokens", {"role": role}, cluster.access_token())
    assert status == 201, body
    return str(body["url"])
