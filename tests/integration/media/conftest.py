"""Fixtures of the media integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fortrolig.loadtests.participant import Participant
from tests.conftest import Server
from tests.integration.media.test_media_session import GREEN, RED, make


@pytest.fixture
async def call(server: Server) -> AsyncIterator[tuple[Participant, Participant]]:
    """A practitioner (red) and a client (green) in a room, media flowing both ways."""
    session = server.session()
    a = make(server, session["practitioner_token"], RED)
    b = make(server, session["client_token"], GREEN)
    await a.start()
    await b.start()
    yield a, b
    await a.close()
    await b.close()
