"""Fixtures of the signaling integration tests: a client of the shared node, and bystanders."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from fortrolig.core.keys import SigningKey
from tests.conftest import Server
from tests.support.ws_client import Bystanders, NodeClient, load_server_key


@pytest.fixture(scope="module")
def server_key(server: Server) -> SigningKey:
    return load_server_key(server)


@pytest.fixture
async def node(server: Server, server_key: SigningKey) -> AsyncIterator[NodeClient]:
    """The shared node as its dev practitioner; every connection it opened closed after."""
    async with aiohttp.ClientSession() as http:
        node = NodeClient(server, http, server_key)
        yield node
        await node.close()


@pytest.fixture
async def bystanders(node: NodeClient) -> Bystanders:
    return await Bystanders.of(node)
