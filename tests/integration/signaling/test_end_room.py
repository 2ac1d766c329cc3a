"""`end_room`: a practitioner in the room ends the consultation for everyone over the WebSocket."""

from __future__ import annotations

from fortrolig.loadtests.participant import Participant
from tests.conftest import Server


async def test_client_cannot_end_the_room_and_practitioner_can(server: Server) -> None:
    session = server.session()
    practitioner = Participant(server.ws_url, session["practitioner_token"])
    client = Participant(server.ws_url, session["client_token"])
    try:
        for p in (practitioner, client):
            assert (await p.connect())["type"] == "welcome"
            assert (await p.join())["type"] == "joined"
        await client.send({"type": "end_room"})
        err = await client.expect("error")
        assert (err["code"], err["ref"]) == ("practitioner_only", "end_room")
        assert server.metric("fortrolig_participants") >= 2  # nothing changed

        await practitioner.send({"type": "end_room"})
        for p in (practitioner, client):
            assert (await p.expect("bye"))["reason"] == "room_ended"
            assert (await p.expect("closed"))["code"] == 1000
    finally:
        await practitioner.close()
        await client.close()
    assert server.metric("fortrolig_rooms") == 0
    assert server.metric("fortrolig_participants") == 0
