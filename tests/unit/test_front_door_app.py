"""The front door as the app wires it (issue 8): request targets, encoded bodies, the allow-list, the settings.

Raw sockets against the real app with the in-memory adapter (issuer ``/realms/mcp``, so its allow-list is
everything under ``/realms/mcp/``); what Keycloak and Hydra need is proved in tests/integration/test_front_door.py.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from gateway_factory import ISSUER, ISSUER_PATH, REGISTER, Gateways
from pydantic import ValidationError

from adapters.hydra.adapter import HydraAdapter
from adapters.keycloak.adapter import KeycloakAdapter
from adapters.memory.adapter import MemoryAdapter
from gateway.app import front_door_allow_list
from gateway.settings import Settings

Client = TestClient[Any, Any]
Factory = Callable[..., Awaitable[tuple[Client, MemoryAdapter]]]
NATIVE = {"redirect_uris": ["http://127.0.0.1:3000/callback"], "token_endpoint_auth_method": "none"}
DOCUMENT = {
    "issuer": ISSUER,
    "authorization_endpoint": f"{ISSUER}/protocol/openid-connect/auth",
    "token_endpoint": f"{ISSUER}/protocol/openid-connect/token",
    "jwks_uri": f"{ISSUER}/protocol/openid-connect/certs",
    "response_types_supported": ["code"],
    "subject_types_supported": ["public"],
    "id_token_signing_alg_values_supported": ["RS256"],
}


@pytest.fixture
def make_gateway(gateways: Gateways) -> Factory:
    async def factory(**settings: Any) -> tuple[Client, MemoryAdapter]:
        return await gateways.start(DOCUMENT, proxy_everything=True, **settings)

    return factory


async def raw(client: Client, request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
    finally:
        writer.close()
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        ("OPTIONS * HTTP/1.1", 400),
        ("GET http://marker-host.example:8081 HTTP/1.1", 404),
        ("GET http://marker-host.example HTTP/1.1", 404),
        ("GET https://marker-host.example/marker-path HTTP/1.1", 404),
        ("GET ftp://marker-host.example/realms/mcp/x HTTP/1.1", 400),
        ("CONNECT marker-host.example:443 HTTP/1.1", 405),
        ("GET /marker-path HTTP/1.1", 404),
    ],
)
async def test_odd_request_targets_get_a_json_4xx_that_reflects_nothing(
    make_gateway: Factory, request_line: str, status: int
) -> None:
    # before: OPTIONS *, the absolute-form without a path and CONNECT got a plain-text 500
    client, _ = await make_gateway()
    answer_status, headers, body = await raw(client, f"{request_line}\r\nHost: x\r\n\r\n".encode())
    assert answer_status == status
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"] in ("invalid_request", "not_found")
    assert b"marker" not in body


async def test_absolute_form_with_a_path_is_served_like_the_origin_form(make_gateway: Factory) -> None:
    client, _ = await make_gateway()
    status, _, body = await raw(
        client,
        f"GET http://elsewhere.example{ISSUER_PATH}/protocol/openid-connect/certs HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
    )
    assert status == 200
    assert json.loads(body) == {"proxied": f"{ISSUER_PATH}/protocol/openid-connect/certs"}


@pytest.mark.parametrize("path", [REGISTER, f"{ISSUER_PATH}/protocol/openid-connect/token"])
async def test_encoded_request_bodies_get_415_everywhere(make_gateway: Factory, path: str) -> None:
    client, adapter = await make_gateway()
    body = gzip.compress(json.dumps(NATIVE).encode())
    response = await client.post(
        path, data=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )
    assert response.status == 415
    assert response.headers["Accept-Encoding"] == "identity"
    assert (await response.json())["error"] == "invalid_request"
    assert adapter.clients["default"] == {}
    # the same body sent as is still registers
    assert (await client.post(REGISTER, json=NATIVE)).status == 201


async def test_a_brotli_body_is_415_not_a_plain_text_parser_error(make_gateway: Factory) -> None:
    # the server no longer decodes request bodies, so an encoding it cannot decode reaches the app as well
    client, _ = await make_gateway()
    status, headers, body = await raw(
        client,
        f"POST {ISSUER_PATH}/protocol/openid-connect/token HTTP/1.1\r\nHost: x\r\nContent-Encoding: br\r\n"
        "Content-Length: 4\r\n\r\nabcd".encode(),
    )
    assert status == 415
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"] == "invalid_request"


async def test_only_the_allow_list_is_proxied(make_gateway: Factory) -> None:
    client, _ = await make_gateway()
    response = await client.get(f"{ISSUER_PATH}/protocol/openid-connect/certs")
    assert await response.json() == {"proxied": f"{ISSUER_PATH}/protocol/openid-connect/certs"}
    for path in ("/realms/master/protocol/openid-connect/token", "/", "/realms/mcpx", "/health/alive"):
        response = await client.get(path)
        assert response.status == 404, path
        assert await response.json() == {"error": "not_found", "error_description": "no resource at this path"}


@pytest.mark.parametrize(
    "raw_path",
    [
        f"{ISSUER_PATH}/protocol/../../master/protocol/openid-connect/token",
        f"{ISSUER_PATH}/protocol/%2e%2e/%2e%2e/master/x",
        f"{ISSUER_PATH}/x/..;/..;/master/x",
        f"{ISSUER_PATH}//x",
        f"{ISSUER_PATH}/./x",
    ],
)
async def test_paths_not_in_normal_form_are_not_proxied(make_gateway: Factory, raw_path: str) -> None:
    client, _ = await make_gateway()
    status, _, body = await raw(client, f"GET {raw_path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status == 404
    assert json.loads(body)["error"] == "not_found"


async def test_an_operator_widens_the_allow_list(make_gateway: Factory) -> None:
    client, _ = await make_gateway(front_door={"allowed_paths": ["/realms/master/protocol/openid-connect/certs"]})
    response = await client.get("/realms/master/protocol/openid-connect/certs")
    assert await response.json() == {"proxied": "/realms/master/protocol/openid-connect/certs"}
    assert (await client.get("/realms/master/protocol/openid-connect/token")).status == 404


async def test_blocked_paths_stay_closed_inside_the_allow_list(make_gateway: Factory) -> None:
    client, _ = await make_gateway(blocked_paths=[f"{ISSUER_PATH}/protocol/openid-connect/certs"])
    assert (await client.get(f"{ISSUER_PATH}/protocol/openid-connect/certs")).status == 404
    assert (await client.get(f"{ISSUER_PATH}/protocol/openid-connect/token")).status == 200


def test_keycloak_issuers_name_what_clients_and_browsers_need() -> None:
    adapter = KeycloakAdapter(
        server_url="http://kc:8080",
        public_url="http://kc:8080",
        realms=["mcp", "b2b"],
        client_id="g",
        client_secret="s",
    )
    settings = Settings(provider="keycloak")
    allowed = front_door_allow_list(settings, adapter.issuers())
    for path in (
        "/realms/mcp/protocol/openid-connect/auth",
        "/realms/b2b/protocol/openid-connect/token",
        "/realms/mcp/login-actions/authenticate",
        "/realms/mcp/broker/github/endpoint",
        "/realms/mcp/device",
        "/resources/x1y2z/login/keycloak.v2/css/styles.css",
    ):
        assert allowed.allows(path), path
    for path in (
        "/realms/master/protocol/openid-connect/token",
        "/realms/mcp/clients-registrations/openid-connect",
        "/realms/mcp/account",
        "/realms/mcp",
        "/admin/realms/mcp/clients",
        "/js/keycloak.js",
    ):
        assert not allowed.allows(path), path
    with_account = front_door_allow_list(Settings(front_door={"account_pages": True}), adapter.issuers())
    assert with_account.allows("/realms/mcp/account/")
    native = front_door_allow_list(Settings(block_native_registration=False), adapter.issuers())
    assert native.allows("/realms/mcp/clients-registrations/openid-connect")


def test_hydra_issuer_names_its_public_endpoints_only() -> None:
    adapter = HydraAdapter(public_url="http://hydra:4444", admin_url="http://hydra:4445", issuer_path="/hydra")
    allowed = front_door_allow_list(Settings(), adapter.issuers())
    for path in ("/oauth2/auth", "/oauth2/token", "/oauth2/revoke", "/userinfo", "/.well-known/jwks.json"):
        assert allowed.allows("/hydra" + path), path
    for path in ("/hydra/oauth2/register", "/hydra/health/alive", "/hydra/version", "/oauth2/token", "/hydra/"):
        assert not allowed.allows(path), path


def test_front_door_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCR_FRONT_DOOR__ALLOWED_PATHS", '["/realms/master/protocol/openid-connect/certs"]')
    monkeypatch.setenv("DCR_FRONT_DOOR__MAX_BODY_BYTES", "1000")
    monkeypatch.setenv("DCR_FRONT_DOOR__POOL_SIZE", "7")
    settings = Settings()
    assert settings.front_door.allowed_paths == ["/realms/master/protocol/openid-connect/certs"]
    assert settings.front_door.max_body_bytes == 1000
    assert settings.front_door.pool_size == 7
    assert settings.front_door.body_timeout_seconds == 10.0
    with pytest.raises(ValidationError, match="must start with '/'"):
        Settings(front_door={"allowed_paths": ["realms/master"]})
    with pytest.raises(ValidationError):
        Settings(front_door={"pool_size": 0})
