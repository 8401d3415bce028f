"""Hydra's admin client listing: Ory keyset pagination, as Hydra v2.3.0 really answers it.

Hydra links a ``rel="next"`` page from every page, the empty last one included; a listing that followed it
blindly never ended (every registration hung once the quota counted clients).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.hydra.adapter import HydraAdapter, _next_page_token
from adapters.hydra.mapping import METADATA_KEY


def hydra_client(client_id: str, *, managed: bool) -> dict[str, Any]:
    metadata = {METADATA_KEY: {"managed": True, "metadata": {}, "gateway": {}}} if managed else {"owner": "shim"}
    return {"client_id": client_id, "redirect_uris": ["http://127.0.0.1/cb"], "metadata": metadata}


CLIENTS = [hydra_client(f"c{i}", managed=i % 3 != 0) for i in range(7)]


@pytest.fixture
async def admin() -> AsyncIterator[tuple[str, list[str | None]]]:
    """A fake admin API paging :data:`CLIENTS` three at a time, always linking a next page (as Hydra does)."""
    seen: list[str | None] = []

    async def list_clients(request: web.Request) -> web.Response:
        token = request.query.get("page_token")
        seen.append(token)
        if len(seen) > 20:
            raise web.HTTPInternalServerError(text="the listing does not stop")
        start = int(token or 0)
        page = CLIENTS[start : start + 3]
        link = f'</admin/clients?page_size=3&page_token={start + 3}>; rel="next"'
        return web.json_response(page, headers={"Link": link})

    app = web.Application()
    app.router.add_get("/admin/clients", list_clients)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/"), seen
    await server.close()


async def test_listing_follows_next_links_and_stops_at_the_empty_page(admin: tuple[str, list[str | None]]) -> None:
    url, seen = admin
    adapter = HydraAdapter(admin_url=url, public_url="http://127.0.0.1:1")
    async with aiohttp.ClientSession() as session:
        await adapter.start(session)
        managed = [client.client_id async for client in adapter.list_clients("default")]
        unmanaged = [client.client_id async for client in adapter.list_unmanaged("default")]
    assert managed == ["c1", "c2", "c4", "c5"]
    assert unmanaged == ["c0", "c3", "c6"]
    assert seen == [None, "3", "6", "9"] * 2  # three pages with clients, one empty page, for each listing


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ('</admin/clients?page_size=500&page_token=abc>; rel="next"', "abc"),
        ('</admin/clients?page_token=abc&page_size=500>; rel="next"', "abc"),
        ('</admin/clients?page_token=first>; rel="first", </admin/clients?page_token=n2>; rel="next"', "n2"),
        ('</admin/clients?page_token=first>; rel="first"', None),
        ("", None),
    ],
)
def test_next_page_token(header: str, token: str | None) -> None:
    assert _next_page_token(header) == token


ENCRYPTED = "qL0+f/Zx9w==.Ab/c+d="
"""A page token as Hydra v25.4 and later write it: encrypted, base64 (``+``, ``/``, ``=``), percent-encoded in the
``Link`` header, refused with 400 when it comes back altered in any way."""


async def test_an_encrypted_page_token_comes_back_exactly_as_hydra_wrote_it() -> None:
    seen: list[str | None] = []

    async def list_clients(request: web.Request) -> web.Response:
        token = request.query.get("page_token")
        seen.append(token)
        if token is None:
            link = f'</admin/clients?page_size=500&page_token={quote(ENCRYPTED, safe="")}>; rel="next"'
            return web.json_response(CLIENTS[:3], headers={"Link": link})
        if token != ENCRYPTED:
            return web.json_response({"error": "invalid_request"}, status=400)
        return web.json_response(CLIENTS[3:])  # the last page: no next link (v25.4 and later)

    app = web.Application()
    app.router.add_get("/admin/clients", list_clients)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        adapter = HydraAdapter(admin_url=str(server.make_url("")).rstrip("/"), public_url="http://127.0.0.1:1")
        async with aiohttp.ClientSession() as session:
            await adapter.start(session)
            managed = [client.client_id async for client in adapter.list_clients("default")]
    finally:
        await server.close()
    assert seen == [None, ENCRYPTED]
    assert managed == ["c1", "c2", "c4", "c5"]


def test_a_percent_encoded_token_is_decoded_once() -> None:
    header = f'</admin/clients?page_token={quote(ENCRYPTED, safe="")}&page_size=500>; rel="next"'
    assert _next_page_token(header) == ENCRYPTED
