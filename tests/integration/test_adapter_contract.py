"""The adapter contract suite (:mod:`gateway.testing.adapter_contract`) on the Keycloak and Hydra adapters, against
the real providers (the session's ``keycloak_provider`` and ``hydra_provider``). Unmanaged clients are planted with
each provider's own admin API; listings run with a page size of 2, so every listing spans several pages."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from urllib.parse import quote

import aiohttp
import pytest

import adapters.hydra.adapter
import adapters.keycloak.adapter
from adapters.base import version_tuple
from adapters.hydra.adapter import HydraAdapter
from adapters.keycloak.adapter import KeycloakAdapter
from devstack.providers import HydraProvider, KeycloakProvider, hydra_version, keycloak_version
from gateway.testing.adapter_contract import AdapterContract, PlantUnmanaged, SecretWorks, refused_port
from tests.integration.conftest import keycloak_adapter_for, keycloak_admin_headers

SMALL_PAGE = 2


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


class TestHydraAdapter(AdapterContract):
    @pytest.fixture
    async def adapter(
        self, hydra_provider: HydraProvider, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
    ) -> AsyncIterator[HydraAdapter]:
        monkeypatch.setattr(adapters.hydra.adapter, "PAGE_SIZE", SMALL_PAGE)
        instance = HydraAdapter(admin_url=hydra_provider.admin_url, public_url=hydra_provider.public_url)
        await instance.start(session)
        yield instance
        await instance.close()

    @pytest.fixture
    async def unreachable_adapter(
        self, hydra_provider: HydraProvider, session: aiohttp.ClientSession
    ) -> AsyncIterator[HydraAdapter]:
        instance = HydraAdapter(admin_url=f"http://127.0.0.1:{refused_port()}", public_url=hydra_provider.public_url)
        await instance.start(session)
        yield instance
        await instance.close()

    @pytest.fixture
    async def plant_unmanaged(
        self, hydra_provider: HydraProvider, session: aiohttp.ClientSession
    ) -> AsyncIterator[PlantUnmanaged]:
        planted: list[str] = []

        async def plant(issuer: str, client_id: str) -> None:
            body = {"client_id": client_id, "redirect_uris": ["https://legacy.example/cb"]}
            async with session.post(f"{hydra_provider.admin_url}/admin/clients", json=body) as response:
                assert response.status == 201, await response.text()
            planted.append(client_id)

        yield plant
        for client_id in planted:
            async with session.delete(f"{hydra_provider.admin_url}/admin/clients/{client_id}") as response:
                assert response.status in (204, 404)

    @pytest.fixture
    def secret_works(self, hydra_provider: HydraProvider, session: aiohttp.ClientSession) -> SecretWorks:
        """Hydra keeps a hash only: a client_credentials request authenticates the client before it checks the
        grant, so ``invalid_client`` (401) means the secret does not work, anything else that it does."""

        async def works(issuer: str, client_id: str, secret: str) -> bool:
            url = f"{hydra_provider.public_url}/oauth2/token"
            form = {"grant_type": "client_credentials"}
            basic = base64.b64encode(f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()).decode()
            attempts = (  # client_secret_basic (RFC 6749 section 2.3.1), then client_secret_post
                (form, {"Authorization": f"Basic {basic}"}),
                ({**form, "client_id": client_id, "client_secret": secret}, {}),
            )
            for data, headers in attempts:
                async with session.post(url, data=data, headers=headers) as response:
                    if response.status != 401:
                        return True
            return False

        return works


class TestKeycloakAdapter(AdapterContract):
    @pytest.fixture
    def issuer(self, keycloak_provider: KeycloakProvider) -> str:
        return keycloak_provider.realm

    @pytest.fixture
    async def adapter(
        self, keycloak_provider: KeycloakProvider, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
    ) -> AsyncIterator[KeycloakAdapter]:
        monkeypatch.setattr(adapters.keycloak.adapter, "PAGE_SIZE", SMALL_PAGE)
        instance = keycloak_adapter_for(keycloak_provider)
        await instance.start(session)
        yield instance
        await instance.close()

    @pytest.fixture
    async def unreachable_adapter(
        self, keycloak_provider: KeycloakProvider, session: aiohttp.ClientSession
    ) -> AsyncIterator[KeycloakAdapter]:
        instance = KeycloakAdapter(
            server_url=f"http://127.0.0.1:{refused_port()}",
            public_url=keycloak_provider.base_url,
            realms=[keycloak_provider.realm],
            client_id=keycloak_provider.admin_client_id,
            client_secret=keycloak_provider.admin_client_secret,
        )
        await instance.start(session)
        yield instance
        await instance.close()

    @pytest.fixture
    async def plant_unmanaged(
        self, keycloak_provider: KeycloakProvider, session: aiohttp.ClientSession
    ) -> AsyncIterator[PlantUnmanaged]:
        base = f"{keycloak_provider.admin_realm_url}/clients"
        planted: list[str] = []

        async def plant(issuer: str, client_id: str) -> None:
            headers = await keycloak_admin_headers(session, keycloak_provider)
            body = {"clientId": client_id, "publicClient": True, "redirectUris": ["https://legacy.example/cb"]}
            async with session.post(base, json=body, headers=headers) as response:
                assert response.status == 201, await response.text()
                planted.append(response.headers["Location"].rsplit("/", 1)[-1])

        yield plant
        if planted:
            headers = await keycloak_admin_headers(session, keycloak_provider)
            for internal_id in planted:
                async with session.delete(f"{base}/{internal_id}", headers=headers) as response:
                    assert response.status in (204, 404)


# ----------------------------------------------------------------------------------------- provider version
# What each adapter detects at start (issue 13), against the release devstack started (make matrix: every one).


async def test_hydra_adapter_detects_the_release_it_drives(
    hydra_provider: HydraProvider, session: aiohttp.ClientSession
) -> None:
    adapter = HydraAdapter(admin_url=hydra_provider.admin_url, public_url=hydra_provider.public_url)
    await adapter.start(session)
    detected = await adapter.detect_version()
    assert detected.provider == "hydra"
    assert detected.version == hydra_version(), detected
    assert detected.features["rfc8414_discovery"] is detected.at_least(25, 4)
    assert detected.features["admin_page_token"] is True
    assert await adapter.detect_version() is detected  # once


async def test_keycloak_adapter_detects_the_release_or_says_why_not_and_probes_what_it_acts_on(
    keycloak_provider: KeycloakProvider, session: aiohttp.ClientSession
) -> None:
    adapter = keycloak_adapter_for(keycloak_provider)
    await adapter.start(session)
    detected = await adapter.detect_version()
    running = version_tuple(keycloak_version())
    assert detected.provider == "keycloak"
    if running >= (26, 4):
        # systemInfo is shown to master-realm administrators (or manage-realm) only; the gateway holds neither
        assert detected.version in (None, keycloak_version()), detected
        assert detected.version is not None or "systemInfo" in detected.source, detected
    else:
        assert detected.version == keycloak_version(), detected
    # Keycloak serves the path-inserted RFC 8414 document itself from 26.4
    assert detected.features["rfc8414_path_insertion"] is (running >= (26, 4)), detected
    # devstack makes the marker searchable with the variable's form for that release
    assert detected.features["managed_marker_search"] is True, detected
