"""Rate limits and the quota at the HTTP layer: the real app with the in-memory reference adapter.

What the answers look like (429 and 403, headers, CORS, JSON); that the counters are shared by instances and
that the quota holds on the real providers is proved in tests/integration/test_limits.py.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from gateway_factory import ISSUER_PATH, PUBLIC, REGISTER, Gateways

from adapters.base import NewClient
from adapters.memory.adapter import MemoryAdapter
from gateway.app import LIMITS
from gateway.limits.settings import LimitSettings
from gateway.oauth.metadata import ClientMetadata

NATIVE = {"redirect_uris": ["http://127.0.0.1:3000/callback"], "token_endpoint_auth_method": "none"}
ORIGIN = "https://inspector.example"

Factory = Callable[..., Awaitable[tuple[TestClient[Any, Any], MemoryAdapter]]]


def provider_document() -> dict[str, Any]:
    issuer = PUBLIC + ISSUER_PATH
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/auth",
        "token_endpoint": f"{issuer}/token",
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
    }


@pytest.fixture
def make_gateway(gateways: Gateways) -> Factory:
    async def factory(**limits: Any) -> tuple[TestClient[Any, Any], MemoryAdapter]:
        return await gateways.start(
            provider_document(),
            cors_allowed_origins=[ORIGIN],
            trust_forwarded_for=True,
            limits=LimitSettings(**limits),
        )

    return factory


async def register(client: TestClient[Any, Any], source: str, body: Any = None) -> tuple[int, Any, Any]:
    response = await client.post(
        REGISTER, json=NATIVE if body is None else body, headers={"X-Forwarded-For": source, "Origin": ORIGIN}
    )
    return response.status, response.headers, await response.json()


async def test_past_the_per_source_limit_a_registration_gets_429_shaped_like_every_registration_error(
    make_gateway: Factory,
) -> None:
    client, adapter = await make_gateway(per_source_limit=2, per_source_window_seconds=30, global_limit=0)
    assert [(await register(client, "198.51.100.1"))[0] for _ in range(2)] == [201, 201]

    status, headers, body = await register(client, "198.51.100.1")

    assert status == 429
    assert body == {
        "error": "temporarily_unavailable",
        "error_description": "too many registration requests from this address: at most 2 per 30 seconds; "
        "retry after 30 seconds",
    }
    assert headers["Retry-After"] == "30"
    assert headers["Content-Type"].startswith("application/json")
    assert headers["Cache-Control"] == "no-store"
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Retry-After" in headers["Access-Control-Expose-Headers"]
    assert "X-Request-Id" in headers
    assert len(adapter.clients["default"]) == 2  # nothing created by the refused request
    assert (await register(client, "198.51.100.2"))[0] == 201  # another address has its own budget


async def test_past_the_global_limit_every_source_gets_429(make_gateway: Factory) -> None:
    client, _ = await make_gateway(per_source_limit=10, global_limit=3, global_window_seconds=60)
    assert [(await register(client, f"198.51.100.{n}"))[0] for n in range(3)] == [201, 201, 201]
    status, headers, body = await register(client, "203.0.113.77")
    assert status == 429
    assert "all clients together" in body["error_description"]
    assert 1 <= int(headers["Retry-After"]) <= 60


async def test_rejected_registrations_count_too(make_gateway: Factory) -> None:
    """Limits run before the body is read, so invalid requests cannot be used to probe without limit."""
    client, _ = await make_gateway(per_source_limit=2, global_limit=0)
    bad = {"redirect_uris": ["javascript:alert(1)"]}
    assert (await register(client, "198.51.100.1", bad))[0] == 400
    assert (await register(client, "198.51.100.1", bad))[0] == 400
    assert (await register(client, "198.51.100.1"))[0] == 429


async def test_other_endpoints_are_not_limited(make_gateway: Factory) -> None:
    client, _ = await make_gateway(per_source_limit=1, global_limit=1)
    for _ in range(5):
        response = await client.get(f"{ISSUER_PATH}/.well-known/openid-configuration")
        assert response.status == 200
        preflight = await client.options(REGISTER, headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
        assert preflight.status in (200, 204)


async def test_past_the_quota_a_registration_gets_403_access_denied(make_gateway: Factory) -> None:
    client, adapter = await make_gateway(max_clients_per_issuer=2)
    assert (await register(client, "198.51.100.1"))[0] == 201
    assert (await register(client, "198.51.100.1", {"redirect_uris": ["ftp://x"]}))[0] == 400  # no slot taken
    assert (await register(client, "198.51.100.2"))[0] == 201

    status, headers, body = await register(client, "198.51.100.3")

    assert status == 403
    assert body["error"] == "access_denied"
    assert "maximum of 2 registered clients" in body["error_description"]
    assert headers["Cache-Control"] == "no-store"
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert len(adapter.clients["default"]) == 2


async def test_a_client_deleted_through_the_hook_frees_its_quota_slot(make_gateway: Factory) -> None:
    client, adapter = await make_gateway(max_clients_per_issuer=1)
    status, _, body = await register(client, "198.51.100.1")
    assert status == 201
    assert (await register(client, "198.51.100.1"))[0] == 403
    await adapter.delete_client("default", body["client_id"])
    client.app[LIMITS].quota.client_deleted("default")  # what the RFC 7592 DELETE does
    assert (await register(client, "198.51.100.1"))[0] == 201


async def test_the_quota_counts_clients_that_exist_already(make_gateway: Factory) -> None:
    client, _ = await make_gateway(max_clients_per_issuer=2)
    assert (await register(client, "198.51.100.1"))[0] == 201
    # a second instance in front of the same provider sees the existing client through list_clients
    quota = client.app[LIMITS].quota
    assert await quota.refresh("default") == 1


async def test_the_quota_counts_document_clients_too(make_gateway: Factory) -> None:
    """Before: clients made from metadata documents were left out of the count, so new document URLs could add
    provider clients past the quota."""
    client, adapter = await make_gateway(max_clients_per_issuer=1)
    metadata = ClientMetadata(redirect_uris=["http://127.0.0.1:4000/cb"], token_endpoint_auth_method="none")
    await adapter.put_document_client("default", NewClient("https://app.example/c.json", None, 0, 0, metadata))
    status, _, body = await register(client, "198.51.100.1")
    assert status == 403, body
    assert body["error"] == "access_denied"


async def test_a_provider_down_at_the_first_count_gives_the_providers_503_not_500(make_gateway: Factory) -> None:
    client, adapter = await make_gateway(max_clients_per_issuer=1)
    adapter.unavailable = True
    status, headers, body = await register(client, "198.51.100.1")
    assert status == 503
    assert body["error"] == "temporarily_unavailable"
    assert headers["Retry-After"]
    adapter.unavailable = False
    client.app[LIMITS].quota._counts["default"].failed_at = float("-inf")  # skip the retry pause
    assert (await register(client, "198.51.100.1"))[0] == 201
    assert (await register(client, "198.51.100.1"))[0] == 403


async def test_limits_disabled_admit_everything(make_gateway: Factory) -> None:
    client, adapter = await make_gateway(enabled=False, per_source_limit=1, global_limit=1, max_clients_per_issuer=1)
    assert [(await register(client, "198.51.100.1"))[0] for _ in range(4)] == [201] * 4
    assert len(adapter.clients["default"]) == 4


async def test_the_start_up_log_names_the_limits_but_never_the_redis_password(
    make_gateway: Factory, info_logs: io.StringIO
) -> None:
    await make_gateway(backend="redis", redis_url="redis://:hunter2-secret@127.0.0.1:1/0", on_backend_failure="open")
    lines = [json.loads(line) for line in info_logs.getvalue().splitlines()]
    configured = next(line for line in lines if line["event"] == "limits.configured")
    assert configured["backend"] == "redis"
    assert configured["per_source"] == "20/60s"
    assert "hunter2-secret" not in info_logs.getvalue()


async def test_a_registration_body_that_never_arrives_holds_no_quota_slot_and_gets_408(gateways: Gateways) -> None:
    """Before, the slot was reserved before the body was read (with no deadline): two idle sockets sending one
    byte of a body filled a quota of one and every registration got 403 for as long as they stayed open."""
    client, adapter = await gateways.start(
        provider_document(), body_timeout_seconds=1, limits=LimitSettings(max_clients_per_issuer=1)
    )
    assert client.server.host is not None and client.server.port is not None
    stalled = []
    for _ in range(2):
        reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
        writer.write(
            f"POST {REGISTER} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 100\r\n\r\n{".encode()
        )
        await writer.drain()
        stalled.append((reader, writer))
    try:
        await asyncio.sleep(0.3)  # both are in the handler, waiting for their bodies
        status, _, body = await register(client, "198.51.100.1")
        assert status == 201, body
        assert len(adapter.clients["default"]) == 1
        for reader, _ in stalled:
            async with asyncio.timeout(5):
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                payload = await reader.readexactly(length)
            assert head.startswith(b"HTTP/1.1 408"), head
            assert json.loads(payload)["error"] == "invalid_request"
    finally:
        for _, writer in stalled:
            writer.close()
