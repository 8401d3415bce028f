"""The HTTP layer of the gateway, driven through the real app with the in-memory reference adapter.

Fast checks of parsing, error shapes, headers and logging. What providers do is proved in tests/integration.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from gateway_factory import ISSUER, ISSUER_PATH, PUBLIC, REGISTER, Gateways

from adapters.base import ProviderRejected
from adapters.memory.adapter import MemoryAdapter
from gateway.app import normalized_path
from gateway.settings import Mode

NATIVE = {"redirect_uris": ["http://127.0.0.1:3000/callback"], "token_endpoint_auth_method": "none"}

Factory = Callable[..., Awaitable[tuple[TestClient[Any, Any], MemoryAdapter]]]


def provider_document() -> dict[str, Any]:
    return {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/protocol/openid-connect/auth",
        "token_endpoint": f"{ISSUER}/protocol/openid-connect/token",
        "jwks_uri": f"{ISSUER}/protocol/openid-connect/certs",
        "registration_endpoint": f"{ISSUER}/clients-registrations/openid-connect",
        "response_types_supported": ["code", "id_token", "code id_token"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", "password"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "code_challenge_methods_supported": ["plain"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }


@pytest.fixture
def make_gateway(gateways: Gateways) -> Factory:
    async def factory(**overrides: Any) -> tuple[TestClient[Any, Any], MemoryAdapter]:
        return await gateways.start(
            provider_document(),
            adapter_options={"native_registration_paths": (f"{ISSUER_PATH}/clients-registrations/",)},
            proxy_everything=True,
            **overrides,
        )

    return factory


# ------------------------------------------------------------------------------------- discovery


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/oauth-authorization-server/realms/mcp",
        "/.well-known/openid-configuration/realms/mcp",
        "/realms/mcp/.well-known/openid-configuration",
        "/realms/mcp/.well-known/oauth-authorization-server",
    ],
)
async def test_discovery_advertises_the_gateway_registration_endpoint(make_gateway: Factory, path: str) -> None:
    client, _ = await make_gateway()
    response = await client.get(path)
    assert response.status == 200
    document = await response.json()
    assert document["issuer"] == ISSUER
    assert document["registration_endpoint"] == PUBLIC + REGISTER
    assert document["code_challenge_methods_supported"] == ["plain", "S256"]


async def test_unknown_issuer_discovery_path_is_404_in_front_door_mode(make_gateway: Factory) -> None:
    client, _ = await make_gateway()
    response = await client.get("/.well-known/oauth-authorization-server/realms/other")
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"


async def test_front_door_proxies_other_paths(make_gateway: Factory) -> None:
    client, _ = await make_gateway()
    response = await client.get("/realms/mcp/protocol/openid-connect/certs")
    assert response.status == 200
    assert await response.json() == {"proxied": "/realms/mcp/protocol/openid-connect/certs"}


async def test_path_routing_mode_does_not_proxy(make_gateway: Factory) -> None:
    client, _ = await make_gateway(mode=Mode.PATH_ROUTING)
    response = await client.get("/realms/mcp/protocol/openid-connect/certs")
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"
    assert (await client.get("/realms/mcp/.well-known/openid-configuration")).status == 200


async def test_readiness_reports_issuers_with_metadata(make_gateway: Factory) -> None:
    client, _ = await make_gateway()
    assert (await client.get("/healthz")).status == 200
    response = await client.get("/readyz")
    assert response.status == 200
    assert (await response.json())["status"] == "ready"


# ---------------------------------------------------------------------------------- registration


async def test_registration_returns_201_with_credentials_and_no_store(make_gateway: Factory) -> None:
    client, adapter = await make_gateway()
    response = await client.post(REGISTER, json={**NATIVE, "client_name": "CLI", "frobnicate": True})
    assert response.status == 201
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    body = await response.json()
    assert set(body) == {
        "client_id",
        "client_id_issued_at",
        "redirect_uris",
        "token_endpoint_auth_method",
        "grant_types",
        "response_types",
        "client_name",
        "registration_client_uri",
        "registration_access_token",
    }
    assert body["registration_client_uri"] == f"{PUBLIC}{REGISTER}/{body['client_id']}"
    assert body["grant_types"] == ["authorization_code"]
    assert body["response_types"] == ["code"]
    assert body["client_id"] in adapter.clients["default"]


async def test_confidential_registration_gets_a_secret_and_its_expiry(make_gateway: Factory) -> None:
    client, adapter = await make_gateway()
    response = await client.post(REGISTER, json={"redirect_uris": ["https://app.example/cb"]})
    body = await response.json()
    assert response.status == 201
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    assert len(body["client_secret"]) >= 43
    assert body["client_secret_expires_at"] == 0
    assert adapter.clients["default"][body["client_id"]].client_secret == body["client_secret"]


async def test_auth_methods_follow_the_providers_metadata(make_gateway: Factory) -> None:
    client, _ = await make_gateway()
    response = await client.post(
        REGISTER, json={"redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "client_secret_jwt"}
    )
    assert response.status == 400
    body = await response.json()
    assert body["error"] == "invalid_client_metadata"
    assert "client_secret_jwt" in body["error_description"]


@pytest.mark.parametrize(
    ("data", "headers", "status", "fragment"),
    [
        (b"not json", {"Content-Type": "application/json"}, 400, "not valid JSON"),
        (b"null", {"Content-Type": "application/json"}, 400, "not null"),
        (b"[]", {"Content-Type": "application/json"}, 400, "not list"),
        (b'"x"', {"Content-Type": "application/json"}, 400, "not str"),
        (b"", {"Content-Type": "application/json"}, 400, "empty"),
        (b"redirect_uris=x", {"Content-Type": "application/x-www-form-urlencoded"}, 400, "Content-Type"),
        (b"[" * 100_000, {"Content-Type": "application/json"}, 413, "exceeds"),
    ],
    ids=["not-json", "null", "array", "string", "empty", "form", "oversized"],
)
async def test_unparseable_bodies_get_rfc_errors(
    make_gateway: Factory, data: bytes, headers: dict[str, str], status: int, fragment: str
) -> None:
    client, adapter = await make_gateway()
    response = await client.post(REGISTER, data=data, headers=headers)
    assert response.status == status
    body = await response.json()
    assert body["error"] == "invalid_client_metadata"
    assert fragment in body["error_description"]
    assert adapter.clients["default"] == {}


async def test_oversized_chunked_body_is_413(make_gateway: Factory) -> None:
    client, _ = await make_gateway(max_body_bytes=1024)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"client_name": "'
        for _ in range(10):
            yield b"x" * 512
        yield b'"}'

    response = await client.post(REGISTER, data=chunks(), headers={"Content-Type": "application/json"})
    assert response.status == 413


async def test_deeply_nested_json_is_a_400_not_a_500(make_gateway: Factory) -> None:
    client, _ = await make_gateway()
    response = await client.post(
        REGISTER, data=b"[" * 30_000 + b"]" * 30_000, headers={"Content-Type": "application/json"}
    )
    assert response.status == 400


async def test_provider_down_gives_503_with_retry_after(make_gateway: Factory) -> None:
    client, adapter = await make_gateway()
    adapter.unavailable = True
    response = await client.post(REGISTER, json=NATIVE)
    assert response.status == 503
    assert response.headers["Retry-After"] == "5"
    assert (await response.json())["error"] == "temporarily_unavailable"


async def test_unexpected_failure_is_an_rfc_shaped_500_without_internals(
    make_gateway: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, adapter = await make_gateway()

    async def boom(*_: Any) -> None:
        raise RuntimeError("secret internal detail at /srv/app.py line 3")

    monkeypatch.setattr(adapter, "create_client", boom)
    response = await client.post(REGISTER, json=NATIVE)
    assert response.status == 500
    text = await response.text()
    assert json.loads(text) == {"error": "server_error", "error_description": "an internal error occurred"}
    assert "secret internal detail" not in text


async def test_cors_preflight_and_headers_on_errors(make_gateway: Factory) -> None:
    client, _ = await make_gateway()
    preflight = await client.options(
        REGISTER, headers={"Origin": "http://localhost:6274", "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status == 204
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    response = await client.post(REGISTER, json={"redirect_uris": []}, headers={"Origin": "http://localhost:6274"})
    assert response.status == 400
    assert response.headers["Access-Control-Allow-Origin"] == "*"


async def test_no_secret_reaches_the_logs(make_gateway: Factory, json_logs: io.StringIO) -> None:
    client, _ = await make_gateway()
    response = await client.post(
        REGISTER, json={"redirect_uris": ["https://app.example/cb"], "client_secret": "client-chosen-secret-value"}
    )
    body = await response.json()
    assert response.status == 201
    logged = json_logs.getvalue()
    assert "client.registered" in logged
    assert body["client_id"] in logged
    assert body["client_secret"] not in logged
    assert "client-chosen-secret-value" not in logged
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    assert any(line.get("request_id") for line in lines)


async def test_other_methods_on_the_registration_endpoint_are_405_not_proxied(make_gateway: Factory) -> None:
    client, _ = await make_gateway()
    response = await client.get(REGISTER)
    assert response.status == 405
    assert response.headers["Allow"] == "POST, OPTIONS"
    assert (await response.json())["error"] == "invalid_request"


async def test_front_door_closes_the_providers_own_registration_endpoint(make_gateway: Factory) -> None:
    client, _ = await make_gateway()
    response = await client.post("/realms/mcp/clients-registrations/openid-connect", json=NATIVE)
    assert response.status == 404
    assert PUBLIC + REGISTER in (await response.json())["error_description"]
    client, _ = await make_gateway(block_native_registration=False)
    response = await client.post("/realms/mcp/clients-registrations/openid-connect", json=NATIVE)
    assert response.status == 200
    assert await response.json() == {"proxied": "/realms/mcp/clients-registrations/openid-connect"}


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
async def test_non_json_number_constants_are_rejected(make_gateway: Factory, constant: bytes) -> None:
    client, adapter = await make_gateway()
    body = b'{"redirect_uris": ["https://app.example/cb"], "software_version": ' + constant + b"}"
    response = await client.post(REGISTER, data=body, headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert "not valid JSON" in (await response.json())["error_description"]
    assert adapter.clients["default"] == {}


async def test_provider_rejections_do_not_leak_the_providers_words(
    make_gateway: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, adapter = await make_gateway()

    async def refuse(*_: Any) -> None:
        raise ProviderRejected("hydra: go-jose/go-jose: invalid RSA key at db column X", field_name=None)

    monkeypatch.setattr(adapter, "create_client", refuse)
    response = await client.post(REGISTER, json=NATIVE)
    assert response.status == 400
    body = await response.json()
    assert body == {
        "error": "invalid_client_metadata",
        "error_description": "the authorization server refused this client metadata",
    }


async def test_blocked_paths_are_not_proxied(make_gateway: Factory) -> None:
    client, _ = await make_gateway(blocked_paths=["/admin"])
    assert (await client.get("/admin/realms/mcp/users")).status == 404
    assert (await client.get("/admin/")).status == 404
    for sneaky in ("/realms/../admin/realms", "/./admin/x"):
        response = await client.get(sneaky)
        assert response.status == 404, sneaky
    response = await client.get("/realms/mcp/account")
    assert response.status == 200
    assert await response.json() == {"proxied": "/realms/mcp/account"}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("//admin/x", "/admin/x"),
        ("/a/./b/../admin/", "/a/admin/"),
        ("/x/../admin", "/admin"),
        ("/", "/"),
        ("/realms/mcp", "/realms/mcp"),
    ],
)
def test_normalized_path(path: str, expected: str) -> None:
    assert normalized_path(path) == expected


async def test_a_body_arriving_in_several_segments_is_read_whole(make_gateway: Factory) -> None:
    """``StreamReader.read(n)`` returns what has arrived so far: a registration sent in pieces must still parse."""
    client, adapter = await make_gateway()
    body = json.dumps({**NATIVE, "client_name": "slow sender"}).encode()

    async def pieces() -> AsyncIterator[bytes]:
        yield body[:20]
        await asyncio.sleep(0.2)
        yield body[20:]

    response = await client.post(REGISTER, data=pieces(), headers={"Content-Type": "application/json"})
    registered = await response.json()
    assert response.status == 201, registered
    assert registered["client_name"] == "slow sender"
    assert registered["client_id"] in adapter.clients["default"]
