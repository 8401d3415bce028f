"""Hydra's storage serialization conflicts (a 400 naming the failed transaction) are tried again, a few times.

Hydra's SQLite and PostgreSQL back ends roll a transaction back when a concurrent one wins, and answer 400; the
gateway's own concurrent writes (two authorizations admitting a loopback port, adoption, a document client) hit
it. The request changed nothing, so it is sent again; past the attempts it is ``ProviderUnavailable`` (503).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.base import NewClient, ProviderUnavailable
from adapters.hydra.adapter import TRANSIENT_ATTEMPTS, HydraAdapter
from gateway.oauth.metadata import ClientMetadata

CONFLICT = {
    "error": "invalid_request",
    "error_description": "ERROR: could not serialize access (SQLSTATE 40001) unable to serialize access",
}


@pytest.fixture
async def admin(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, list[int]]]:
    """A fake admin API answering ``conflicts`` storage conflicts before it creates the client."""
    conflicts: int = request.param
    posts: list[int] = []

    async def create(request: web.Request) -> web.Response:
        posts.append(1)
        if len(posts) <= conflicts:
            return web.json_response(CONFLICT, status=400)
        body = await request.json()
        return web.json_response(body, status=201)

    app = web.Application()
    app.router.add_post("/admin/clients", create)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/"), posts
    await server.close()


def new_client() -> NewClient:
    metadata = ClientMetadata(redirect_uris=["http://127.0.0.1/cb"], token_endpoint_auth_method="none")
    return NewClient("c1", None, 0, 0, metadata)


@pytest.mark.parametrize("admin", [TRANSIENT_ATTEMPTS - 1], indirect=True)
async def test_a_conflict_is_tried_again(admin: tuple[str, list[int]]) -> None:
    url, posts = admin
    adapter = HydraAdapter(admin_url=url, public_url="http://127.0.0.1:1")
    async with aiohttp.ClientSession() as session:
        await adapter.start(session)
        created = await adapter.create_client("default", new_client())
    assert created.client_id == "c1"
    assert len(posts) == TRANSIENT_ATTEMPTS


@pytest.mark.parametrize("admin", [TRANSIENT_ATTEMPTS], indirect=True)
async def test_conflicts_past_the_attempts_are_provider_unavailable(admin: tuple[str, list[int]]) -> None:
    url, posts = admin
    adapter = HydraAdapter(admin_url=url, public_url="http://127.0.0.1:1")
    async with aiohttp.ClientSession() as session:
        await adapter.start(session)
        with pytest.raises(ProviderUnavailable, match="transient storage conflict"):
            await adapter.create_client("default", new_client())
    assert len(posts) == TRANSIENT_ATTEMPTS
