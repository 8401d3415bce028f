"""Start-up check and ``/readyz`` through the real app with the memory adapter (issue 8 item 10): a configuration
the provider refuses stops the start; an unreachable admin API keeps the gateway up, not ready, and checked again
until it works; a refusal that appears while serving shows in ``/readyz`` at the next check."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from rfc8414_fakes import openid_configuration_server

from adapters.base import CredentialsRefused, IssuerMissing, ProviderMisconfigured, ProviderUnavailable, RoleMissing
from adapters.memory.adapter import MemoryAdapter
from gateway.app import StartupRefused, create_app
from gateway.settings import Settings

Client = TestClient[Any, Any]
INTERVAL = 0.1


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    async with openid_configuration_server() as origin:
        yield origin


Start = Callable[[MemoryAdapter], Awaitable[Client]]


@pytest.fixture
async def start(upstream: str) -> AsyncIterator[Start]:
    clients: list[Client] = []

    async def run(adapter: MemoryAdapter) -> Client:
        settings = Settings(
            public_url="http://gateway.test",
            provider="memory",
            provider_url=upstream,
            discovery_retry_seconds=INTERVAL,
            discovery_refresh_seconds=INTERVAL,
        )
        client: Client = TestClient(TestServer(create_app(settings, adapter=adapter), host="127.0.0.1"))
        clients.append(client)
        await client.start_server()
        return client

    yield run
    for client in clients:
        await client.close()


def memory(upstream: str) -> MemoryAdapter:
    return MemoryAdapter(public_url=upstream)


async def ready_within(client: Client, seconds: float) -> dict[str, Any]:
    """The ``/readyz`` body once it answers 200, polled for up to ``seconds``."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        response = await client.get("/readyz")
        body: dict[str, Any] = await response.json()
        if response.status == 200 or asyncio.get_running_loop().time() > deadline:
            return {"status_code": response.status, **body}
        await asyncio.sleep(INTERVAL / 2)


async def unready_within(client: Client, seconds: float) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        response = await client.get("/readyz")
        body: dict[str, Any] = await response.json()
        if (response.status == 503 and "admin_api" in body) or asyncio.get_running_loop().time() > deadline:
            return {"status_code": response.status, **body}
        await asyncio.sleep(INTERVAL / 2)


@pytest.mark.parametrize(
    "refusal",
    [
        CredentialsRefused("realm 'mcp' refused client 'dcr-gateway'", setting="DCR_KEYCLOAK__CLIENT_SECRET"),
        RoleMissing("lacks realm-management/manage-clients", setting="DCR_KEYCLOAK__CLIENT_ID"),
        IssuerMissing("Keycloak has no realm 'nosuch'; set DCR_KEYCLOAK__REALMS", setting="DCR_KEYCLOAK__REALMS"),
    ],
)
async def test_a_configuration_the_provider_refuses_stops_the_start(
    upstream: str, start: Start, refusal: ProviderMisconfigured
) -> None:
    adapter = memory(upstream)
    adapter.refusal = refusal
    with pytest.raises(StartupRefused) as refused:
        await start(adapter)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"the provider refuses the configuration: {refusal.problem}: ")
    assert str(refusal) in message


async def test_an_unreachable_admin_api_is_retried_until_it_works(upstream: str, start: Start) -> None:
    adapter = memory(upstream)
    adapter.unavailable = True
    client = await start(adapter)  # no exit: a provider starting after the gateway is normal
    body = await unready_within(client, 5)
    assert body["status_code"] == 503
    assert body["admin_api"].startswith("provider unreachable")
    assert upstream not in str(body)  # no internal address on the public origin
    assert (await client.get("/.well-known/openid-configuration")).status == 200  # discovery works meanwhile
    adapter.unavailable = False
    assert (await ready_within(client, 5))["status_code"] == 200


async def test_a_refusal_while_serving_shows_at_the_next_check(upstream: str, start: Start) -> None:
    adapter = memory(upstream)
    client = await start(adapter)
    assert (await ready_within(client, 5))["status_code"] == 200
    adapter.refusal = IssuerMissing("Keycloak has no realm 'mcp'; set DCR_KEYCLOAK__REALMS", setting="x")
    body = await unready_within(client, 5)
    assert body["status_code"] == 503
    assert body["admin_api"] == "realm missing: Keycloak has no realm 'mcp'; set DCR_KEYCLOAK__REALMS"
    adapter.refusal = None
    assert (await ready_within(client, 5))["status_code"] == 200


def test_a_missing_realm_is_a_temporary_unavailability_for_clients() -> None:
    """Registrations map it to ``503 temporarily_unavailable`` (as :class:`ProviderUnavailable`), never a 500."""
    assert issubclass(IssuerMissing, ProviderUnavailable)
