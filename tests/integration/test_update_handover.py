"""An RFC 7592 update whose 200 never reaches the client leaves the client's access as it was, in front of the
real Hydra: the provider's update is applied (its answer held back by a slow pass-through to the admin API, as a
provider that committed while its answer is still on its way), the client goes away, and the gateway writes the
previous registration back: the registration access token the client holds works again (rotation on), its client
secret still authenticates at Hydra's token endpoint, and the metadata is the old one.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from devstack.providers import HydraProvider
from gateway.app import create_app
from gateway.settings import Settings
from tests.integration.conftest import client_record, hydra_options

pytestmark = pytest.mark.integration

HELD = 1.0
"""Seconds the pass-through holds Hydra's answer to an update (after Hydra applied it)."""


class SlowUpdates:
    """A pass-through to Hydra's admin API that holds the answer to the first ``PUT`` for :data:`HELD` seconds."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.put_applied = asyncio.Event()
        self.puts = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with (
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.request(
                request.method, f"{self.upstream}{request.path_qs}", headers=headers, data=await request.read()
            ) as upstream,
        ):
            body = await upstream.read()
            status, content_type = upstream.status, upstream.content_type
        if request.method == "PUT":
            self.puts += 1
            if self.puts == 1:
                self.put_applied.set()
                await asyncio.sleep(HELD)
        return web.Response(status=status, body=body, content_type=content_type)


async def test_an_update_whose_answer_is_not_handed_over_is_undone_in_hydra(
    hydra_provider: HydraProvider, http: aiohttp.ClientSession
) -> None:
    slow = SlowUpdates(hydra_provider.admin_url)
    admin_app = web.Application()
    admin_app.router.add_route("*", "/{tail:.*}", slow.handle)
    admin = TestServer(admin_app, host="127.0.0.1")
    await admin.start_server()
    options: dict[str, Any] = hydra_options(hydra_provider)
    options["hydra"] = {"admin_url": str(admin.make_url("")).rstrip("/")}
    options["rotate_registration_access_token"] = True
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(Settings(**options)), host="127.0.0.1"))
    await client.start_server()
    try:
        metadata = {
            "redirect_uris": ["http://127.0.0.1:3000/cb"],
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["authorization_code"],
            "client_name": "Before",
        }
        response = await client.post("/register", json=metadata)
        assert response.status == 201, await response.text()
        registered = await response.json()
        client_id, secret = registered["client_id"], registered["client_secret"]
        token = registered["registration_access_token"]
        path = registered["registration_client_uri"][len(options["public_url"]) :]

        # the update drops the secret (auth method none), renames, rotates the token; the client leaves before
        # its 200 arrives
        update = json.dumps(
            {**metadata, "client_id": client_id, "token_endpoint_auth_method": "none", "client_name": "After"}
        ).encode()
        assert client.server.port is not None
        _, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
        writer.write(
            (
                f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {token}\r\nContent-Length: {len(update)}\r\n\r\n"
            ).encode()
            + update
        )
        await writer.drain()
        await asyncio.wait_for(slow.put_applied.wait(), 15)
        record = await client_record(hydra_provider, http, client_id)
        assert record is not None and record["client_name"] == "After"  # applied in Hydra
        writer.close()

        for _ in range(100):  # the restore: a second PUT, answered at once
            record = await client_record(hydra_provider, http, client_id)
            if slow.puts >= 2 and record is not None and record["client_name"] == "Before":
                break
            await asyncio.sleep(0.1)
        assert record is not None and record["client_name"] == "Before", record
        assert record["token_endpoint_auth_method"] == "client_secret_basic"

        # the registration access token the client holds works again
        read = await client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert read.status == 200, await read.text()
        assert (await read.json())["client_name"] == "Before"
        # and its secret still authenticates at Hydra (a wrong one is invalid_client; this one gets past that)
        async with http.post(
            f"{hydra_provider.public_url}/oauth2/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": aiohttp.encode_basic_auth(client_id, secret)},
        ) as answer:
            refused = await answer.json()
        assert refused.get("error") != "invalid_client", refused
        async with http.post(
            f"{hydra_provider.public_url}/oauth2/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": aiohttp.encode_basic_auth(client_id, secret + "x")},
        ) as answer:
            assert (await answer.json()).get("error") == "invalid_client"
    finally:
        await client.close()
        await admin.close()
