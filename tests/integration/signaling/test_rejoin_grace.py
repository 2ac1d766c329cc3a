"""A dropped participant's place is held for the rejoin grace (a reload, a crash, a network
change): the others see it away, its resume token brings it straight back, and after the grace it
has left. Real node, raw signaling connections."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import Server, start_server, stop_server
from tests.support.ws_client import NodeClient, WsClient

GRACE_S = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """This module's node holds places for GRACE_S seconds (resume tokens live long enough)."""
    env = {
        "FORTROLIG_ROOMS__REJOIN_GRACE_S": str(GRACE_S),
        "FORTROLIG_AUTH__RESUME_TOKEN_TTL_S": "60",
    }
    srv = start_server(tmp_path_factory.mktemp("grace"), env)
    yield srv
    stop_server(srv)


async def next_of(conn: WsClient, kind: str) -> dict[str, Any]:
    """The next message of type ``kind`` (others, e.g. resume tokens, are skipped)."""
    for _ in range(20):
        msg = await conn.recv()
        if msg["type"] == kind:
            return msg
    raise AssertionError(f"no {kind}")


async def drop(conn: WsClient) -> None:
    """The connection goes away without a leave, as when a tab reloads."""
    await conn.ws.close()


async def test_a_dropped_client_is_away_then_resumes_straight_back_in(
    node: NodeClient, server: Server
) -> None:
    room_id = await node.room()
    practitioner = await node.member(room_id, "practitioner")
    client = await node.member(room_id, "client", name="Anna")
    assert (await next_of(practitioner, "participant_joined"))["participant"]["id"] == client.id
    resume = client.welcome["resume_token"]

    await drop(client)
    away = await next_of(practitioner, "participant_away")
    assert away == {"type": "participant_away", "participant_id": client.id, "grace_s": GRACE_S}
    assert server.metric("fortrolig_participants_away") >= 1
    back = await node.hello(resume)
    assert back.id == client.id  # the same participant
    await back.send({"type": "join"})
    joined = await back.recv()
    assert joined["type"] == "joined"  # straight in: no waiting, no new invite
    assert [p["id"] for p in joined["participants"]] == [practitioner.id]
    returned = await next_of(practitioner, "participant_joined")
    assert returned["participant"]["id"] == client.id
    assert returned["participant"]["away"] is False


async def test_a_place_not_taken_back_within_the_grace_is_given_up(node: NodeClient) -> None:
    room_id = await node.room(max_participants=3)
    practitioner = await node.member(room_id, "practitioner")
    client = await node.member(room_id, "client")
    await next_of(practitioner, "participant_joined")
    await drop(client)
    await next_of(practitioner, "participant_away")

    # Someone joining meanwhile sees the away participant in the roster.
    third = await node.hello(await node.join_token(room_id, "client"))
    await third.send({"type": "join"})
    roster = {p["id"]: p["away"] for p in (await next_of(third, "joined"))["participants"]}
    assert roster == {practitioner.id: False, client.id: True}

    left = await next_of(practitioner, "participant_left")  # after GRACE_S (+ one heartbeat)
    assert (left["participant_id"], left["reason"]) == (client.id, "disconnected")
    assert [p["id"] for p in await node.participants(room_id)] == [practitioner.id, third.id]


async def test_a_leave_gives_the_place_up_at_once(node: NodeClient) -> None:
    _, practitioner, client = await node.pair()
    await client.send({"type": "leave"})
    left = await next_of(practitioner, "participant_left")
    assert (left["participant_id"], left["reason"]) == (client.id, "left")


async def test_a_held_place_counts_until_the_practitioner_admits_someone_else(
    node: NodeClient,
) -> None:
    status, made = await node.call("POST", "/api/v1/rooms", {"waiting_room": True})
    assert status == 201, made
    room_id = made["room_id"]
    practitioner = await node.member(room_id, "practitioner")
    first = await node.hello(await node.join_token(room_id, "client"))
    await first.send({"type": "join"})
    assert (await first.recv())["type"] == "waiting"
    await next_of(practitioner, "waiting_room")
    await practitioner.send({"type": "admit", "participant_id": first.id})
    assert (await next_of(first, "joined"))["type"] == "joined"
    await next_of(practitioner, "participant_joined")

    # The client closes the tab and comes back through its invite: a new participant, waiting.
    await drop(first)
    await next_of(practitioner, "participant_away")
    second = await node.hello(await node.join_token(room_id, "client"))
    await second.send({"type": "join"})
    assert (await second.recv())["type"] == "waiting"
    await next_of(practitioner, "waiting_room")
    # The room (2 places) is full with the held place; admitting gives that place up.
    await practitioner.send({"type": "admit", "participant_id": second.id})
    left = await next_of(practitioner, "participant_left")
    assert (left["participant_id"], left["reason"]) == (first.id, "replaced")
    assert (await next_of(second, "joined"))["participants"][0]["id"] == practitioner.id
