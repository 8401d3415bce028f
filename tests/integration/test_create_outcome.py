"""A registration whose create never reached the provider is not an "unknown outcome" (issue 8 item 13).

A create whose answer was lost may have stored a client, so the gateway deletes it again and logs
``client.rollback_failed ... create_outcome_unknown`` when that clean-up fails too. A connection the provider
refused carried nothing: the answer is the same ``503 temporarily_unavailable``, without a clean-up attempt or an
unknown-outcome line. Proved with provider addresses that refuse connections, reading the gateway's log.
"""

from __future__ import annotations

import asyncio
import io
import json
import time

import aiohttp
import pytest

from adapters.base import NewClient, ProviderUnavailable
from adapters.hydra.adapter import HydraAdapter
from devstack.process import free_port
from devstack.providers import HydraProvider, KeycloakProvider
from gateway.oauth.metadata import ClientMetadata
from gateway.settings import Settings
from tests.integration.conftest import InProcessGateways, keycloak_adapter_for

NATIVE = {"redirect_uris": ["http://127.0.0.1:3000/callback"], "token_endpoint_auth_method": "none"}


def events(logs: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]


def assert_refused_create_logged_plainly(logs: io.StringIO) -> None:
    logged = events(logs)
    assert any(entry["event"] == "provider.unavailable" for entry in logged), logged  # the log was captured
    assert not [entry for entry in logged if str(entry["event"]).startswith("client.rollback")], logged
    assert "create_outcome_unknown" not in logs.getvalue()


def new_client() -> NewClient:
    return NewClient(
        client_id=f"refused-{time.monotonic_ns()}",
        client_secret=None,
        client_id_issued_at=int(time.time()),
        client_secret_expires_at=0,
        metadata=ClientMetadata.model_validate(
            {**NATIVE, "grant_types": ["authorization_code"], "response_types": ["code"]}
        ),
    )


async def test_hydra_admin_refusing_connections_is_no_unknown_create(
    hydra_provider: HydraProvider, start: InProcessGateways, info_logs: io.StringIO
) -> None:
    settings = Settings(
        public_url=hydra_provider.issuer,
        provider="hydra",
        provider_url=hydra_provider.public_url,
        hydra={"admin_url": f"http://127.0.0.1:{free_port()}"},
    )
    client = await start(settings)
    response = await client.post("/register", json=NATIVE)
    assert response.status == 503
    assert (await response.json())["error"] == "temporarily_unavailable"
    assert_refused_create_logged_plainly(info_logs)


async def test_keycloak_refusing_connections_is_no_unknown_create(
    keycloak_provider: KeycloakProvider, start: InProcessGateways, info_logs: io.StringIO
) -> None:
    settings = Settings(
        public_url="http://127.0.0.1:1",
        provider="keycloak",
        provider_url=keycloak_provider.base_url,
        keycloak={
            "admin_url": f"http://127.0.0.1:{free_port()}",
            "realms": [keycloak_provider.realm],
            "client_id": keycloak_provider.admin_client_id,
            "client_secret": keycloak_provider.admin_client_secret,
        },
    )
    client = await start(settings)
    response = await client.post(f"/realms/{keycloak_provider.realm}/register", json=NATIVE)
    assert response.status == 503
    assert (await response.json())["error"] == "temporarily_unavailable"
    assert_refused_create_logged_plainly(info_logs)


async def test_keycloak_create_refused_after_the_realm_scopes_were_read_was_not_sent(
    keycloak_provider: KeycloakProvider,
) -> None:
    """The create request itself meets a refused connection (realm scopes and admin token already cached)."""
    adapter = keycloak_adapter_for(keycloak_provider)
    async with aiohttp.ClientSession() as session:
        await adapter.start(session)
        try:
            await adapter.realm_scopes(keycloak_provider.realm)
            adapter._admin(keycloak_provider.realm).connection.base_url = f"http://127.0.0.1:{free_port()}/"
            with pytest.raises(ProviderUnavailable) as refused:
                await adapter.create_client(keycloak_provider.realm, new_client())
            assert refused.value.request_sent is False
        finally:
            await adapter.close()


async def test_hydra_create_refused_was_not_sent_and_an_answer_lost_may_have_been(
    hydra_provider: HydraProvider,
) -> None:
    """The distinction itself: a refused connection is ``request_sent=False``; a request that went out and whose
    answer never came (a listener on 127.0.0.1 that reads it and stays silent, past the provider timeout) is
    ``request_sent=True``: a create there may have happened."""
    received = asyncio.Event()

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        received.set()
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, aiohttp.ClientSession() as session:
        refused = HydraAdapter(admin_url=f"http://127.0.0.1:{free_port()}", public_url=hydra_provider.public_url)
        await refused.start(session)
        with pytest.raises(ProviderUnavailable) as caught:
            await refused.create_client("default", new_client())
        assert caught.value.request_sent is False

        silent = HydraAdapter(admin_url=f"http://127.0.0.1:{port}", public_url=hydra_provider.public_url, timeout=0.5)
        await silent.start(session)
        with pytest.raises(ProviderUnavailable) as caught:
            await silent.create_client("default", new_client())
        assert received.is_set()
        assert caught.value.request_sent is True
        server.close()
