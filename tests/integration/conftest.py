"""Fixtures for tests against the real providers (``hydra_provider``/``keycloak_provider`` are in tests/conftest.py).

- ``http``: an aiohttp session whose cookie jar accepts IP hosts, for the headless logins of
  :mod:`gateway.conformance.headless`.
- ``hydra_gateway`` / ``keycloak_gateway``: ``dcr-gateway serve`` subprocesses fronting the session's
  providers, configured exactly like the local stack's (see devstack/stack.py), one per session: they trust the
  session's document host (``cimd_host``) and protect the session's MCP server URL (``mcp_resource``).
- ``cimd_host``: the development Client ID Metadata Document host (``devstack.cimd_server``) on a free port with
  its own CA under pytest's temporary directory; ``cimd_host.publish(name, document)`` serves a document.
- ``mcp_resource``: the URL the session's MCP test servers listen on (a port chosen once), the gateways'
  RFC 8707 protected resource.
- ``target``: either session gateway as a client sees it (:class:`tests.integration.flows.Target`), once per
  provider.
- ``start``: in-process gateway apps (``create_app`` + aiohttp's test client) for given settings, closed after
  the test; ``hydra_options`` / ``keycloak_options`` are the settings that point one at a session provider.
- ``client_record`` / ``keycloak_admin_headers``: what a provider itself holds, read with its admin API.
"""

from __future__ import annotations

import functools
import json
import random
import socket
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.hydra.adapter import HydraAdapter
from adapters.keycloak.adapter import KeycloakAdapter
from devstack.cimd_server import ca_file, docs_dir, start_cimd_server
from devstack.cimd_server import origin as cimd_origin
from devstack.process import LOOPBACK, free_port
from devstack.providers import (
    DocumentTrust,
    HydraProvider,
    KeycloakProvider,
    management_url,
    start_gateway,
)
from gateway.app import create_app
from gateway.conformance.headless import hydra_accept_login_and_consent, keycloak_form_login
from gateway.settings import Settings
from tests.integration.flows import Target

GATEWAY_READY_TIMEOUT = 30.0
CIMD_READY_TIMEOUT = 30.0
_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session with a cookie jar that keeps cookies of IP hosts (127.0.0.1)."""
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        yield session


@dataclass(frozen=True)
class GatewayProcess:
    """A running ``dcr-gateway serve`` fronting one provider."""

    url: str
    """The gateway's origin (its ``DCR_PUBLIC_URL``)."""
    issuer: str
    log_path: Path
    management_url: str = ""
    """Its management listener (``/metrics``, ``/healthz``, ``/readyz``), on a free port."""


@dataclass(frozen=True)
class DocumentHost:
    """The session's Client ID Metadata Document host (``devstack.cimd_server``), as tests use it."""

    base_url: str
    """``https://localhost:{port}``: a development origin of the session gateways."""
    docs: Path
    """Files here are served at ``{base_url}/NAME.json``."""
    ca_file: Path
    """The development CA the session gateways trust (``DCR_CIMD__CA_FILE``)."""

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}.json"

    def publish(self, name: str, document: Mapping[str, object]) -> str:
        """Serve ``document`` (JSON) at ``{base_url}/{name}.json``; returns that URL (the client id)."""
        (self.docs / f"{name}.json").write_text(json.dumps(document))
        return self.url(name)


@pytest.fixture(scope="session")
def cimd_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocumentHost]:
    """The document host on a free port with a CA made for this session (under pytest's temporary directory)."""
    root = tmp_path_factory.mktemp("cimd")
    port = free_port()
    service = start_cimd_server(port=port, root=root, log_path=root / "cimd-docs.log")
    try:
        service.wait_ready(CIMD_READY_TIMEOUT)
        yield DocumentHost(base_url=cimd_origin(port), docs=docs_dir(root), ca_file=ca_file(root))
    finally:
        service.stop()


@dataclass(frozen=True)
class McpResource:
    """Where the session's MCP test servers listen: one port, chosen once, so the gateways can protect its URL."""

    port: int

    @property
    def url(self) -> str:
        """``http://127.0.0.1:{port}/mcp``: the MCP endpoint, the RFC 8707 ``resource`` (RFC 9728 ``resource``)."""
        return f"http://{LOOPBACK}:{self.port}/mcp"


def port_outside_the_ephemeral_range() -> int:
    """A free port below Linux's ephemeral range (32768-60999): :func:`free_port` (the OS's pick, used for every
    other listener of the tests) never hands it out while the MCP server is not listening between tests."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 32000 on 127.0.0.1")


@pytest.fixture(scope="session")
def mcp_resource() -> McpResource:
    return McpResource(port_outside_the_ephemeral_range())


@pytest.fixture(scope="session")
def document_trust(cimd_host: DocumentHost, mcp_resource: McpResource) -> DocumentTrust:
    """What the session gateways are told: trust ``cimd_host`` (development origin and CA), protect ``mcp_resource``."""
    return DocumentTrust(
        development_origins=(cimd_host.base_url,),
        ca_file=cimd_host.ca_file,
        protected_resources=(mcp_resource.url,),
    )


@pytest.fixture(scope="session")
def hydra_gateway(
    hydra_provider: HydraProvider, document_trust: DocumentTrust, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """A gateway on ``hydra_provider.gateway_port``: Hydra's issuer origin."""
    env = hydra_provider.gateway_env(documents=document_trust)
    log_path = tmp_path_factory.mktemp("gateway-hydra") / "gateway.log"
    service = start_gateway("gateway-hydra", env=env, log_path=log_path)
    try:
        service.wait_ready(GATEWAY_READY_TIMEOUT)
        yield GatewayProcess(
            url=env["DCR_PUBLIC_URL"],
            issuer=hydra_provider.issuer,
            log_path=log_path,
            management_url=management_url(env),
        )
    finally:
        service.stop()


@pytest.fixture(scope="session")
def keycloak_gateway(
    keycloak_provider: KeycloakProvider, document_trust: DocumentTrust, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """A gateway on a free port fronting Keycloak; issuer ``{url}/realms/mcp`` (Keycloak follows X-Forwarded-*)."""
    env = keycloak_provider.gateway_env(free_port(), documents=document_trust)
    log_path = tmp_path_factory.mktemp("gateway-keycloak") / "gateway.log"
    service = start_gateway("gateway-keycloak", env=env, log_path=log_path)
    url = env["DCR_PUBLIC_URL"]
    try:
        service.wait_ready(GATEWAY_READY_TIMEOUT)
        yield GatewayProcess(
            url=url,
            issuer=f"{url}/realms/{keycloak_provider.realm}",
            log_path=log_path,
            management_url=management_url(env),
        )
    finally:
        service.stop()


# -------------------------------------------------------------------------- the gateway as a client sees it


def hydra_target(hydra: HydraProvider, gateway: GatewayProcess) -> Target:
    """``gateway`` (on Hydra's issuer origin) as a client sees it."""
    return Target(
        provider="hydra",
        url=gateway.url,
        issuer=gateway.issuer,
        registration_endpoint=f"{gateway.url}/register",
        login=functools.partial(hydra_accept_login_and_consent, admin_url=hydra.admin_url),
        flow_scope="openid offline_access",
        log_path=gateway.log_path,
    )


def keycloak_target(keycloak: KeycloakProvider, url: str, log_path: Path | None = None) -> Target:
    """A gateway at ``url`` in front of Keycloak as a client sees it: issuer ``{url}/realms/{realm}``."""
    issuer = f"{url}/realms/{keycloak.realm}"
    return Target(
        provider="keycloak",
        url=url,
        issuer=issuer,
        registration_endpoint=f"{issuer}/register",
        login=functools.partial(keycloak_form_login, username=keycloak.username, password=keycloak.password),
        flow_scope="openid",
        log_path=log_path,
    )


@pytest.fixture(scope="session", params=["hydra", "keycloak"])
def target(request: pytest.FixtureRequest) -> Target:
    """The session gateway of each provider in turn."""
    if request.param == "hydra":
        return hydra_target(request.getfixturevalue("hydra_provider"), request.getfixturevalue("hydra_gateway"))
    gateway: GatewayProcess = request.getfixturevalue("keycloak_gateway")
    return keycloak_target(request.getfixturevalue("keycloak_provider"), gateway.url, gateway.log_path)


# -------------------------------------------------------------------------------- in-process gateways


def hydra_options(hydra: HydraProvider) -> dict[str, Any]:
    """Settings of a gateway in front of ``hydra``, serving Hydra's issuer."""
    return {
        "public_url": hydra.issuer,
        "provider": "hydra",
        "provider_url": hydra.public_url,
        "hydra": {"admin_url": hydra.admin_url},
    }


def keycloak_options(keycloak: KeycloakProvider, public_url: str) -> dict[str, Any]:
    """Settings of a gateway at ``public_url`` in front of ``keycloak``'s realm, with its admin client."""
    return {
        "public_url": public_url,
        "provider": "keycloak",
        "provider_url": keycloak.base_url,
        "keycloak": {
            "realms": [keycloak.realm],
            "client_id": keycloak.admin_client_id,
            "client_secret": keycloak.admin_client_secret,
        },
    }


class InProcessGateways:
    """``await start(settings)``: a gateway app for ``settings`` behind aiohttp's test client."""

    def __init__(self) -> None:
        self.clients: list[TestClient[Any, Any]] = []

    async def __call__(self, settings: Settings) -> TestClient[Any, Any]:
        client: TestClient[Any, Any] = TestClient(TestServer(create_app(settings), host="127.0.0.1"))
        try:
            await client.start_server()
        except BaseException:  # e.g. StartupRefused: close what the client opened, then let the test see it
            await client.close()
            raise
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


@pytest.fixture
async def start() -> AsyncIterator[InProcessGateways]:
    gateways = InProcessGateways()
    yield gateways
    await gateways.close()


# ---------------------------------------------------------------------------- the adapters, on their own


@pytest.fixture
async def hydra_adapter(http: aiohttp.ClientSession, hydra_provider: HydraProvider) -> AsyncIterator[HydraAdapter]:
    """The gateway's Hydra adapter on the session's Hydra, started on ``http``."""
    adapter = HydraAdapter(admin_url=hydra_provider.admin_url, public_url=hydra_provider.public_url)
    await adapter.start(http)
    yield adapter
    await adapter.close()


@pytest.fixture
async def keycloak_adapter(
    http: aiohttp.ClientSession, keycloak_provider: KeycloakProvider
) -> AsyncIterator[KeycloakAdapter]:
    """The gateway's Keycloak adapter on the session's realm, with its admin client, started on ``http``."""
    adapter = keycloak_adapter_for(keycloak_provider)
    await adapter.start(http)
    yield adapter
    await adapter.close()


# ---------------------------------------------------------------------------- what the providers hold


def keycloak_adapter_for(keycloak: KeycloakProvider) -> KeycloakAdapter:
    """The gateway's Keycloak adapter on ``keycloak``'s realm, with its admin client (not started)."""
    return KeycloakAdapter(
        server_url=keycloak.base_url,
        public_url=keycloak.base_url,
        realms=[keycloak.realm],
        client_id=keycloak.admin_client_id,
        client_secret=keycloak.admin_client_secret,
    )


async def keycloak_admin_headers(http: aiohttp.ClientSession, keycloak: KeycloakProvider) -> dict[str, str]:
    """The Authorization header of Keycloak's admin client (client credentials at the realm's token endpoint)."""
    async with http.post(
        keycloak.token_endpoint,
        data={
            "grant_type": "client_credentials",
            "client_id": keycloak.admin_client_id,
            "client_secret": keycloak.admin_client_secret,
        },
    ) as response:
        assert response.status == 200, await response.text()
        return {"Authorization": f"Bearer {(await response.json())['access_token']}"}


async def master_admin_headers(http: aiohttp.ClientSession, keycloak: KeycloakProvider) -> dict[str, str]:
    """Keycloak's bootstrap administrator (master realm): what an operator uses to set up realms and service
    accounts, never what the gateway holds."""
    username, password = keycloak.bootstrap_admin
    async with http.post(
        f"{keycloak.base_url}/realms/master/protocol/openid-connect/token",
        data={"grant_type": "password", "client_id": "admin-cli", "username": username, "password": password},
    ) as response:
        assert response.status == 200, await response.text()
        return {"Authorization": f"Bearer {(await response.json())['access_token']}"}


async def client_record(
    provider: HydraProvider | KeycloakProvider, http: aiohttp.ClientSession, client_id: str
) -> dict[str, Any] | None:
    """The provider's own record of ``client_id``, read with its admin API (not through the gateway); None if
    it has none."""
    if isinstance(provider, HydraProvider):
        async with http.get(f"{provider.admin_url}/admin/clients/{client_id}") as response:
            if response.status == 404:
                return None
            assert response.status == 200
            record: dict[str, Any] = await response.json()
            return record
    async with http.get(
        f"{provider.admin_realm_url}/clients",
        params={"clientId": client_id},
        headers=await keycloak_admin_headers(http, provider),
    ) as response:
        assert response.status == 200
        matches: list[dict[str, Any]] = [c for c in await response.json() if c["clientId"] == client_id]
    assert len(matches) <= 1, f"Keycloak has {len(matches)} clients {client_id}"
    return matches[0] if matches else None


async def client_count(provider: HydraProvider | KeycloakProvider, http: aiohttp.ClientSession) -> int:
    """How many clients the provider holds (managed by the gateway or not)."""
    if isinstance(provider, HydraProvider):
        async with http.get(f"{provider.admin_url}/admin/clients", params={"page_size": "1000"}) as response:
            assert response.status == 200
            return len(await response.json())
    async with http.get(
        f"{provider.admin_realm_url}/clients",
        params={"max": "10000"},
        headers=await keycloak_admin_headers(http, provider),
    ) as response:
        assert response.status == 200
        return len(await response.json())


async def provider_client_ids(provider: HydraProvider | KeycloakProvider, http: aiohttp.ClientSession) -> set[str]:
    """Every client the provider holds, listed with its admin API (Hydra: following its pagination links)."""
    ids: set[str] = set()
    if isinstance(provider, HydraProvider):
        url: str | None = f"{provider.admin_url}/admin/clients?page_size=500"
        seen: set[str] = set()
        while url is not None and url not in seen:
            seen.add(url)
            async with http.get(url) as response:
                assert response.status == 200, await response.text()
                page = await response.json()
                ids |= {client["client_id"] for client in page}
                following = response.links.get("next")
                # Hydra links a next page as long as the page was full
                url = str(response.url.join(following["url"])) if following and len(page) == 500 else None  # type: ignore[arg-type]
        return ids
    async with http.get(
        f"{provider.admin_realm_url}/clients",
        params={"max": "100000"},
        headers=await keycloak_admin_headers(http, provider),
    ) as response:
        assert response.status == 200, await response.text()
        return {client["clientId"] for client in await response.json()}


async def target_record(
    request: pytest.FixtureRequest, target: Target, http: aiohttp.ClientSession, client_id: str
) -> dict[str, Any] | None:
    """:func:`client_record` in the session provider behind ``target``."""
    provider: HydraProvider | KeycloakProvider = request.getfixturevalue(f"{target.provider}_provider")
    return await client_record(provider, http, client_id)


async def unmanaged_client(
    request: pytest.FixtureRequest, target: Target, http: aiohttp.ClientSession, hydra_client_id: str
) -> str:
    """A client the gateway did not create: Keycloak's imported ``legacy-app``, or ``hydra_client_id`` made on
    Hydra's admin API."""
    if target.provider == "keycloak":
        keycloak: KeycloakProvider = request.getfixturevalue("keycloak_provider")
        return keycloak.legacy_client_id
    hydra: HydraProvider = request.getfixturevalue("hydra_provider")
    async with http.post(
        f"{hydra.admin_url}/admin/clients",
        json={"client_id": hydra_client_id, "redirect_uris": ["https://legacy.example/cb"]},
    ) as response:
        assert response.status in (201, 409)
    return hydra_client_id
