"""Client ID Metadata Document clients on the real providers (:class:`adapters.base.DocumentClients`).

What each provider holds for a document client (Keycloak: ``clientId`` = the URL, public, consent required;
Hydra: a derived id, the URL in the gateway's metadata), that an authorization-code flow with refresh works with
the id the provider knows (``stored_client_id``), that a new version replaces the same record, that concurrent
puts of one URL from two gateway instances leave one client, and that nothing is created for a URL no provider
client can have.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import uuid
from typing import Any

import aiohttp
import pytest

from adapters.base import DOCUMENT_SOURCE, ManagedClient, ProviderRejected
from adapters.hydra.adapter import HydraAdapter
from adapters.hydra.mapping import METADATA_KEY
from adapters.keycloak.adapter import KeycloakAdapter
from adapters.keycloak.mapping import DOCUMENT_ATTRIBUTE, GATEWAY_ATTRIBUTE, MANAGED_ATTRIBUTE
from devstack.process import free_port
from devstack.providers import HydraProvider, KeycloakProvider
from gateway.conformance.headless import hydra_accept_login_and_consent
from gateway.testing.adapter_contract import DOCUMENT_METADATA, document_client, registration
from tests.integration.conftest import (
    GatewayProcess,
    client_count,
    client_record,
    hydra_target,
    keycloak_adapter_for,
    keycloak_target,
)
from tests.integration.flows import authorization_code_flow


def document_url() -> str:
    return f"https://app.example.com/cimd/{uuid.uuid4()}.json"


@pytest.fixture(params=["hydra", "keycloak"])
def provider(request: pytest.FixtureRequest) -> tuple[HydraAdapter | KeycloakAdapter, HydraProvider | KeycloakProvider]:
    """(started adapter, provider) of each provider in turn."""
    return request.getfixturevalue(f"{request.param}_adapter"), request.getfixturevalue(f"{request.param}_provider")


async def keycloak_record(http: aiohttp.ClientSession, keycloak: KeycloakProvider, url: str) -> dict[str, Any]:
    record = await client_record(keycloak, http, url)
    assert record is not None, f"Keycloak has no client {url}"
    return record


async def test_keycloak_document_client_is_a_public_consent_client_named_by_its_url(
    keycloak_provider: KeycloakProvider, keycloak_adapter: KeycloakAdapter, http: aiohttp.ClientSession
) -> None:
    realm = keycloak_provider.realm
    url = document_url()
    assert keycloak_adapter.stored_client_id(realm, url) == url
    metadata = registration(DOCUMENT_METADATA, keycloak_adapter)
    answer = await keycloak_adapter.put_document_client(realm, document_client(url, metadata, digest="ab" * 32))
    try:
        assert answer.client_id == url
        record = await keycloak_record(http, keycloak_provider, url)
        assert record["clientId"] == url
        assert record["publicClient"] is True
        assert record["consentRequired"] is True and record["fullScopeAllowed"] is False
        assert record["name"] == DOCUMENT_METADATA["client_name"]
        assert record["attributes"][MANAGED_ATTRIBUTE] == "true"
        assert record["attributes"][DOCUMENT_ATTRIBUTE] == url
        data = json.loads(record["attributes"][GATEWAY_ATTRIBUTE])
        assert data["source"] == DOCUMENT_SOURCE and data["document_sha256"] == "ab" * 32
        assert data["document_fetched_at"] == 1767225600 and data["deployment"] == "default"

        # the client works: code flow (127.0.0.1 from any port) and refresh, with the URL as client_id
        target = keycloak_target(keycloak_provider, keycloak_provider.base_url)
        client = {"client_id": url, "token_endpoint_auth_method": "none"}
        redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
        result = await authorization_code_flow(http, target, client, redirect_uri=redirect_uri)
        assert result.refreshed["access_token"]

        # a new version of the document replaces the same record
        changed = registration({**DOCUMENT_METADATA, "client_name": "v2 (app.example.com)"}, keycloak_adapter)
        await keycloak_adapter.put_document_client(realm, document_client(url, changed, digest="cd" * 32))
        replaced = await keycloak_record(http, keycloak_provider, url)
        assert replaced["id"] == record["id"] and replaced["name"] == "v2 (app.example.com)"
        assert json.loads(replaced["attributes"][GATEWAY_ATTRIBUTE])["document_sha256"] == "cd" * 32
        assert replaced["consentRequired"] is True and replaced["publicClient"] is True
    finally:
        await keycloak_adapter.delete_document_client(realm, url)
    assert await client_record(keycloak_provider, http, url) is None


async def test_hydra_document_client_is_stored_under_a_derived_id(
    hydra_provider: HydraProvider,
    hydra_gateway: GatewayProcess,
    hydra_adapter: HydraAdapter,
    http: aiohttp.ClientSession,
) -> None:
    url = document_url()
    stored_id = hydra_adapter.stored_client_id("default", url)
    assert stored_id.startswith("cimd-") and "/" not in stored_id
    metadata = registration(DOCUMENT_METADATA, hydra_adapter)
    answer = await hydra_adapter.put_document_client("default", document_client(url, metadata, digest="ab" * 32))
    try:
        assert answer.client_id == url
        record = await client_record(hydra_provider, http, stored_id)
        assert record is not None
        assert record["client_id"] == stored_id
        assert record["token_endpoint_auth_method"] == "none" and record["skip_consent"] is False
        assert record["client_name"] == DOCUMENT_METADATA["client_name"]
        ours = record["metadata"][METADATA_KEY]
        assert ours["document_url"] == url and ours["managed"] is True
        assert ours["gateway"]["source"] == DOCUMENT_SOURCE and ours["gateway"]["document_sha256"] == "ab" * 32

        # the client works under the id Hydra knows (the front door sends it in place of the URL; the gateway
        # itself refuses the stored id from a client, so this flow talks to Hydra directly)
        target = dataclasses.replace(
            hydra_target(hydra_provider, hydra_gateway),
            login=functools.partial(
                hydra_accept_login_and_consent,
                admin_url=hydra_provider.admin_url,
                url_map={hydra_provider.issuer: hydra_provider.public_url},
            ),
        )
        client = {"client_id": stored_id, "token_endpoint_auth_method": "none"}
        redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
        result = await authorization_code_flow(
            http, target, client, redirect_uri=redirect_uri, token_endpoint=f"{hydra_provider.public_url}/oauth2/token"
        )
        assert result.refreshed["access_token"]

        changed = registration({**DOCUMENT_METADATA, "client_name": "v2 (app.example.com)"}, hydra_adapter)
        await hydra_adapter.put_document_client("default", document_client(url, changed, digest="cd" * 32))
        replaced = await client_record(hydra_provider, http, stored_id)
        assert replaced is not None and replaced["client_name"] == "v2 (app.example.com)"
        assert replaced["created_at"] == record["created_at"], "the record was made anew, not replaced"
        assert replaced["metadata"][METADATA_KEY]["gateway"]["document_sha256"] == "cd" * 32
    finally:
        await hydra_adapter.delete_document_client("default", url)
    assert await client_record(hydra_provider, http, stored_id) is None


async def test_concurrent_puts_of_one_document_leave_one_client(
    provider: tuple[HydraAdapter | KeycloakAdapter, HydraProvider | KeycloakProvider], http: aiohttp.ClientSession
) -> None:
    """Two gateway instances (own locks) and two requests in one: one client, every put answered."""
    adapter, real = provider
    if isinstance(real, HydraProvider):
        issuer = "default"
        other: HydraAdapter | KeycloakAdapter = HydraAdapter(admin_url=real.admin_url, public_url=real.public_url)
    else:
        issuer = real.realm
        other = keycloak_adapter_for(real)
    await other.start(http)
    url = document_url()
    metadata = registration(DOCUMENT_METADATA, adapter)
    try:
        for _ in range(4):  # the first round races creates, the later ones updates
            answers: list[ManagedClient] = await asyncio.gather(
                adapter.put_document_client(issuer, document_client(url, metadata)),
                adapter.put_document_client(issuer, document_client(url, metadata)),
                other.put_document_client(issuer, document_client(url, metadata)),
                other.put_document_client(issuer, document_client(url, metadata)),
            )
            assert {answer.client_id for answer in answers} == {url}
        assert await client_record(real, http, adapter.stored_client_id(issuer, url)) is not None
    finally:
        await adapter.delete_document_client(issuer, url)
        await other.close()
    assert await adapter.read_document_client(issuer, url) is None


async def test_a_url_no_client_can_have_creates_nothing(
    provider: tuple[HydraAdapter | KeycloakAdapter, HydraProvider | KeycloakProvider], http: aiohttp.ClientSession
) -> None:
    adapter, real = provider
    issuer = adapter.issuers()[0].key
    before = await client_count(real, http)
    metadata = registration(DOCUMENT_METADATA, adapter)
    for url in ("https://app.example.com/" + "a" * 300 + ".json", "https://app.example.com/a b.json", "not a url"):
        assert await adapter.read_document_client(issuer, url) is None
        with pytest.raises(ProviderRejected):
            await adapter.put_document_client(issuer, document_client(url, metadata))
    assert await client_count(real, http) == before
