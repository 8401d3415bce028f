"""When the provider fails, clients get RFC-shaped answers, never a 5xx on discovery or a leaked credential, and
the operator gets one line naming the setting (issue 8 items 10 and 11).

The gateway runs in-process here (so its log stream can be read) against the session's real providers,
misconfigured on purpose; one test runs ``dcr-gateway serve`` itself for its exit status and message. A
configuration the provider refuses (credentials, role, realm) stops the start; an unreachable admin API is waited
for with ``/readyz`` answering 503.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from adapters.base import IssuerMissing, NewClient, ProviderUnavailable
from adapters.keycloak.adapter import KeycloakAdapter
from devstack.process import free_port
from devstack.providers import REALM_FILE, HydraProvider, KeycloakProvider, gateway_command
from gateway.app import StartupRefused
from gateway.oauth.metadata import ClientMetadata
from gateway.settings import Settings
from tests.integration.conftest import (
    InProcessGateways,
    hydra_options,
    keycloak_admin_headers,
    keycloak_options,
    master_admin_headers,
)

NATIVE = {"redirect_uris": ["http://127.0.0.1:3000/callback"], "token_endpoint_auth_method": "none"}

Start = InProcessGateways


async def test_keycloak_refusing_the_admin_credentials_stops_the_start_naming_the_setting(
    keycloak_provider: KeycloakProvider, start: Start, info_logs: io.StringIO
) -> None:
    """Issue 8 item 10: a wrong admin secret used to start a gateway that reported ready and answered 503 to every
    registration, blaming a missing role in its log."""
    wrong_secret = "wrong-secret-that-must-never-be-logged"
    options = keycloak_options(keycloak_provider, "http://127.0.0.1:1")
    settings = Settings(**{**options, "keycloak": {**options["keycloak"], "client_secret": wrong_secret}})
    with pytest.raises(StartupRefused) as refused:
        await start(settings)
    message = str(refused.value)
    assert message.startswith("the provider refuses the configuration: credentials refused: ")
    assert "DCR_KEYCLOAK__CLIENT_SECRET" in message
    assert "manage-clients" not in message  # not a missing role
    assert wrong_secret not in message
    assert wrong_secret not in info_logs.getvalue()


@pytest.mark.parametrize("roles", [(), ("view-clients",)], ids=["no-role", "view-clients-only"])
async def test_keycloak_service_account_without_manage_clients_stops_the_start(
    keycloak_provider: KeycloakProvider, start: Start, http: aiohttp.ClientSession, roles: tuple[str, ...]
) -> None:
    """A confidential client with a service account but no ``realm-management`` role (the admin API answers 403), or
    only ``view-clients`` (it can read clients but not create them), made for this test."""
    client_id, secret = f"no-role-{secrets.token_hex(4)}", secrets.token_urlsafe(24)
    admin = await keycloak_admin_headers(http, keycloak_provider)
    representation = {
        "clientId": client_id,
        "secret": secret,
        "publicClient": False,
        "serviceAccountsEnabled": True,
        "standardFlowEnabled": False,
    }
    async with http.post(f"{keycloak_provider.admin_realm_url}/clients", json=representation, headers=admin) as made:
        assert made.status == 201, await made.text()
        internal_id = made.headers["Location"].rsplit("/", 1)[1]
    try:
        if roles:
            await grant_realm_management_roles(http, keycloak_provider, internal_id, roles)
        options = keycloak_options(keycloak_provider, "http://127.0.0.1:1")
        keycloak = {**options["keycloak"], "client_id": client_id, "client_secret": secret}
        with pytest.raises(StartupRefused) as refused:
            await start(Settings(**{**options, "keycloak": keycloak}))
        message = str(refused.value)
        assert message.startswith("the provider refuses the configuration: role missing: ")
        assert "realm-management/manage-clients" in message
        assert repr(client_id) in message
        assert secret not in message
    finally:
        async with http.delete(f"{keycloak_provider.admin_realm_url}/clients/{internal_id}", headers=admin) as gone:
            assert gone.status == 204


async def grant_realm_management_roles(
    http: aiohttp.ClientSession, keycloak: KeycloakProvider, client_uuid: str, roles: tuple[str, ...]
) -> None:
    """Map ``realm-management`` ``roles`` to the service account of the client ``client_uuid`` (master admin)."""
    admin = await master_admin_headers(http, keycloak)
    base = keycloak.admin_realm_url
    async with http.get(f"{base}/clients/{client_uuid}/service-account-user", headers=admin) as response:
        assert response.status == 200, await response.text()
        user_id = (await response.json())["id"]
    async with http.get(f"{base}/clients", params={"clientId": "realm-management"}, headers=admin) as response:
        [management] = await response.json()
    representations = []
    for role in roles:
        async with http.get(f"{base}/clients/{management['id']}/roles/{role}", headers=admin) as response:
            assert response.status == 200, await response.text()
            representations.append(await response.json())
    async with http.post(
        f"{base}/users/{user_id}/role-mappings/clients/{management['id']}", json=representations, headers=admin
    ) as response:
        assert response.status == 204, await response.text()


async def test_keycloak_realm_missing_stops_the_start_naming_the_realm(
    keycloak_provider: KeycloakProvider, start: Start
) -> None:
    options = keycloak_options(keycloak_provider, "http://127.0.0.1:1")
    keycloak = {**options["keycloak"], "realms": [keycloak_provider.realm, "nosuch"]}
    with pytest.raises(StartupRefused) as refused:
        await start(Settings(**{**options, "keycloak": keycloak}))
    message = str(refused.value)
    assert message.startswith("the provider refuses the configuration: realm missing: ")
    assert "'nosuch'" in message
    assert "DCR_KEYCLOAK__REALMS" in message


def test_dcr_gateway_serve_with_a_wrong_keycloak_secret_exits_2_with_one_line(
    keycloak_provider: KeycloakProvider,
) -> None:
    wrong_secret = "wrong-secret-that-must-never-be-printed"
    env = {
        **{name: value for name, value in os.environ.items() if not name.upper().startswith("DCR_")},
        **keycloak_provider.gateway_env(free_port()),
        "DCR_KEYCLOAK__CLIENT_SECRET": wrong_secret,
    }
    result = subprocess.run(
        gateway_command(), env=env, capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert wrong_secret not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("dcr-gateway: the provider refuses the configuration: credentials refused: ")
    assert "DCR_KEYCLOAK__CLIENT_SECRET" in line


async def test_keycloak_adapter_maps_a_missing_realm_to_issuer_missing_never_client_not_found(
    keycloak_provider: KeycloakProvider,
) -> None:
    """Issue 8 item 11: Keycloak's "Realm does not exist" became ``ClientNotFound`` and registration a 500. Every
    admin operation of a realm that is not there is :class:`IssuerMissing`, a :class:`ProviderUnavailable` (503)."""
    adapter = KeycloakAdapter(
        server_url=keycloak_provider.base_url,
        public_url=keycloak_provider.base_url,
        realms=["nosuch"],
        client_id=keycloak_provider.admin_client_id,
        client_secret=keycloak_provider.admin_client_secret,
    )
    new = NewClient(
        client_id="c-" + secrets.token_hex(4),
        client_secret=None,
        client_id_issued_at=0,
        client_secret_expires_at=0,
        metadata=ClientMetadata.model_validate(NATIVE),
    )
    async with aiohttp.ClientSession() as session:
        await adapter.start(session)
        try:
            operations: dict[str, Callable[[], Awaitable[object]]] = {
                "create": lambda: adapter.create_client("nosuch", new),
                "read": lambda: adapter.read_client("nosuch", new.client_id),
                "delete": lambda: adapter.delete_client("nosuch", new.client_id),
                "scopes": lambda: adapter.registrable_scopes("nosuch"),
                "check": adapter.check,
            }
            for name, operation in operations.items():
                with pytest.raises(IssuerMissing) as missing:
                    await operation()
                if name == "create":  # the realm's scopes are read first and failed: the create was never sent
                    assert missing.value.request_sent is False
                assert isinstance(missing.value, ProviderUnavailable)
        finally:
            await adapter.close()


@pytest.fixture
async def temporary_realm(keycloak_provider: KeycloakProvider, http: aiohttp.ClientSession) -> AsyncIterator[str]:
    """A copy of the ``mcp`` realm (deploy/keycloak/realm-mcp.json: the ``dcr-gateway`` service account with
    ``manage-clients``, same secret) under a new name, created with the master realm's admin and deleted after."""
    name = f"tmp-{secrets.token_hex(4)}"
    representation = json.loads(REALM_FILE.read_text())
    representation.pop("id", None)
    representation["realm"] = name
    headers = await master_admin_headers(http, keycloak_provider)
    async with http.post(f"{keycloak_provider.base_url}/admin/realms", json=representation, headers=headers) as made:
        assert made.status == 201, await made.text()
    yield name
    headers = await master_admin_headers(http, keycloak_provider)
    async with http.delete(f"{keycloak_provider.base_url}/admin/realms/{name}", headers=headers) as gone:
        assert gone.status in (204, 404)


async def readyz_until(client: TestClient[Any, Any], status: int, seconds: float) -> dict[str, Any]:
    """The ``/readyz`` body once it answers ``status``, polled for up to ``seconds``."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        response = await client.get("/readyz")
        body: dict[str, Any] = await response.json()
        if response.status == status:
            return body
        assert asyncio.get_running_loop().time() < deadline, (response.status, body)
        await asyncio.sleep(0.25)


async def test_keycloak_realm_deleted_while_serving_gives_503_never_500_and_readyz_names_it(
    keycloak_provider: KeycloakProvider, start: Start, http: aiohttp.ClientSession, temporary_realm: str
) -> None:
    options = keycloak_options(keycloak_provider, "http://127.0.0.1:1")
    settings = Settings(
        **{**options, "keycloak": {**options["keycloak"], "realms": [temporary_realm]}},
        discovery_refresh_seconds=1,
        discovery_retry_seconds=1,
    )
    client = await start(settings)
    await readyz_until(client, 200, 30)
    register = f"/realms/{temporary_realm}/register"
    created = await client.post(register, json=NATIVE)
    assert created.status == 201, await created.text()
    registered = await created.json()

    headers = await master_admin_headers(http, keycloak_provider)
    async with http.delete(f"{keycloak_provider.base_url}/admin/realms/{temporary_realm}", headers=headers) as gone:
        assert gone.status == 204

    response = await client.post(register, json=NATIVE)
    assert response.status == 503, await response.text()
    assert response.headers["Retry-After"]
    assert (await response.json())["error"] == "temporarily_unavailable"
    read = await client.get(
        f"{register}/{registered['client_id']}",
        headers={"Authorization": f"Bearer {registered['registration_access_token']}"},
    )
    assert read.status == 503, await read.text()
    # While Keycloak deletes the realm a check racing it may read a half-deleted realm (HTTP 500: unreachable, or
    # its clients already gone); once not ready, every answer is a 503 naming no secret, and it settles on the realm.
    await readyz_until(client, 503, 10)
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        probe = await client.get("/readyz")
        body = await probe.json()
        assert probe.status == 503, body
        assert keycloak_provider.admin_client_secret not in json.dumps(body)
        if body["admin_api"].startswith("realm missing: "):
            break
        assert asyncio.get_running_loop().time() < deadline, body
        await asyncio.sleep(0.25)
    assert repr(temporary_realm) in body["admin_api"]


async def test_hydra_admin_unreachable_gives_503_and_readiness_follows_once_it_is_reachable(
    hydra_provider: HydraProvider, start: Start
) -> None:
    """Unreachable is transient: the gateway starts, ``/readyz`` answers 503 naming it (no address), registrations
    503; once the admin API answers (a forwarder to the real Hydra admin appears on that port) it is ready and
    registers."""
    port = free_port()
    settings = Settings(
        **{**hydra_options(hydra_provider), "hydra": {"admin_url": f"http://127.0.0.1:{port}"}},
        discovery_retry_seconds=0.5,
    )
    client = await start(settings)
    body = await readyz_until(client, 503, 10)
    assert body["admin_api"].startswith("provider unreachable")
    assert str(port) not in json.dumps(body)
    assert (await client.post("/register", json=NATIVE)).status == 503
    admin = urlsplit(hydra_provider.admin_url)
    async with forwarder(port, admin.hostname or "127.0.0.1", admin.port or 80):
        await readyz_until(client, 200, 15)
        created = await client.post("/register", json=NATIVE)
        assert created.status == 201, await created.text()


@asynccontextmanager
async def forwarder(port: int, host: str, target_port: int) -> AsyncIterator[None]:
    """A TCP forwarder on 127.0.0.1:``port`` to ``host:target_port``, closed on exit."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    tasks: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(host, target_port)
        for task in (
            asyncio.create_task(pipe(reader, upstream_writer)),
            asyncio.create_task(pipe(upstream_reader, writer)),
        ):
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await server.wait_closed()


async def test_hydra_admin_url_that_is_not_the_admin_api_stops_the_start(
    hydra_provider: HydraProvider, start: Start
) -> None:
    """Hydra's public listener given as the admin URL: a configuration error, not a provider to wait for."""
    settings = Settings(**{**hydra_options(hydra_provider), "hydra": {"admin_url": hydra_provider.public_url}})
    with pytest.raises(StartupRefused) as refused:
        await start(settings)
    assert "DCR_HYDRA__ADMIN_URL" in str(refused.value)


async def test_provider_down_at_start_never_gives_a_5xx_on_discovery(start: Start, info_logs: io.StringIO) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    settings = Settings(
        public_url="http://127.0.0.1:1",
        provider="hydra",
        provider_url=closed,
        hydra={"admin_url": closed},
        discovery_retry_seconds=1,
        provider_timeout=2,
    )
    client = await start(settings)
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        response = await client.get(path)
        assert response.status == 404, path
        assert response.headers["Retry-After"]
    assert (await client.get("/readyz")).status == 503
    assert (await client.post("/register", json=NATIVE)).status == 503
    # front door: the provider's own pages are unreachable too, answered as a gateway error, not a crash
    response = await client.get("/oauth2/auth")
    assert response.status in (502, 504)
    assert (await response.json())["error"] == "temporarily_unavailable"
