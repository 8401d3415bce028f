"""Client ids no client can have are answered like unknown clients, before any adapter call (issue 8 items 6, 7).

HTTP-level checks through the real app with the in-memory adapter (counting its lookups), the client id syntax
itself, and the adapters' own guards; the real Hydra and Keycloak are in tests/integration/test_rfc7592_client_ids.py.
"""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from aiohttp.test_utils import TestClient
from gateway_factory import ISSUER_PATH, Gateways
from yarl import URL

from adapters.base import ClientNotFound, ManagedClient, ProviderUnavailable, addressable_client_id
from adapters.hydra.adapter import HydraAdapter
from adapters.keycloak.adapter import KeycloakAdapter
from adapters.keycloak.admin import KeycloakConnectionError, KeycloakGetError
from adapters.memory.adapter import MemoryAdapter

Client = TestClient[Any, Any]
DOCUMENT = {
    "issuer": "http://gateway.test/realms/mcp",
    "authorization_endpoint": "http://gateway.test/realms/mcp/auth",
    "token_endpoint": "http://gateway.test/realms/mcp/token",
    "response_types_supported": ["code"],
}
UNIFORM = {"error": "invalid_token", "error_description": "the registration access token is not valid for this client"}


class CountingAdapter(MemoryAdapter):
    """The memory adapter, counting every client lookup the endpoint asks of it."""

    lookups: list[str]

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.lookups = []

    async def read_client(self, issuer: str, client_id: str) -> ManagedClient:
        self.lookups.append(client_id)
        return await super().read_client(issuer, client_id)


@pytest.mark.parametrize(
    "client_id",
    [
        str(uuid.uuid4()),
        "shim-app_1.2~x",
        "legacy:app@tenant",
        "...",
        "a!$&'()*+,;=b",
        "x" * 255,
    ],
)
def test_ids_the_gateway_mints_and_shims_chose_are_addressable(client_id: str) -> None:
    assert addressable_client_id(client_id)


@pytest.mark.parametrize(
    "client_id",
    [
        "",
        ".",
        "..",
        "../keys/hydra.openid.id-token",
        "x/../abc",
        "abc/",
        "a\\b",
        "a%2Fb",
        "a?b",
        "a#b",
        "a b",
        "x\x00",
        "x\n",
        "x\r\nX: 1",
        "x\t",
        "x\x1b",
        "x\x7f",
        "x\x85",
        "\u00fc",
        "\U0001f600",
        "x\ud800",
        "x" * 256,
    ],
)
def test_ids_no_client_can_have_are_not_addressable(client_id: str) -> None:
    assert not addressable_client_id(client_id)


@pytest.mark.parametrize(
    "segment",
    ["..%2Fkeys%2Fx", "x%2F..%2Fy", "x%00", "%0A", "x%7F", "%FF%FE", "%ED%A0%80", "a%5Cb", "%2E%2E", "%2E", "x" * 256],
)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_odd_ids_get_the_uniform_401_without_a_lookup(gateways: Gateways, segment: str, method: str) -> None:
    client, adapter = await gateways.start(DOCUMENT, adapter_class=CountingAdapter)
    assert isinstance(adapter, CountingAdapter)
    url = URL(str(client.make_url(f"{ISSUER_PATH}/register/")) + segment, encoded=True)
    response = await client.session.request(method, url, headers={"Authorization": "Bearer some-token"})
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert await response.json() == UNIFORM
    assert adapter.lookups == []


async def test_a_well_formed_unknown_id_is_looked_up(gateways: Gateways) -> None:
    """The control: the same path with a possible id does reach the adapter (and is 401 too)."""
    client, adapter = await gateways.start(DOCUMENT, adapter_class=CountingAdapter)
    assert isinstance(adapter, CountingAdapter)
    response = await client.get(f"{ISSUER_PATH}/register/no-such-client", headers={"Authorization": "Bearer t"})
    assert response.status == 401
    assert adapter.lookups == ["no-such-client"]


# ------------------------------------------------------------------------------------------------ adapters


async def test_hydra_adapter_refuses_odd_ids_before_any_request() -> None:
    adapter = HydraAdapter(admin_url="http://127.0.0.1:9", public_url="http://127.0.0.1:9")  # never started
    for call in (adapter.read_client, adapter.delete_client, adapter.usage):
        with pytest.raises(ClientNotFound):
            await call("default", "../keys/hydra.openid.id-token")


async def test_keycloak_adapter_refuses_odd_ids_before_any_request() -> None:
    adapter = KeycloakAdapter(
        server_url="http://127.0.0.1:9",
        public_url="http://127.0.0.1:9",
        realms=["mcp"],
        client_id="c",
        client_secret="s",
    )
    adapter._admins["mcp"] = object()  # type: ignore[assignment]  # any use of it would fail the test
    for call in (adapter.read_client, adapter.delete_client):
        with pytest.raises(ClientNotFound):
            await call("mcp", "x\x00")


def test_keycloak_connection_never_established_is_a_request_not_sent() -> None:
    key = ConnectionKey("127.0.0.1", 9, False, True, None, None, None)
    never: list[BaseException] = [
        aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused")),
        aiohttp.ConnectionTimeoutError("connect timeout"),
    ]
    for cause in never:
        error = KeycloakConnectionError("Can't connect to server")
        error.__cause__ = cause
        translated = KeycloakAdapter._translate(error, "create client")
        assert isinstance(translated, ProviderUnavailable) and translated.request_sent is False
    lost = KeycloakConnectionError("Can't connect to server")
    lost.__cause__ = aiohttp.ServerTimeoutError("no answer")
    translated = KeycloakAdapter._translate(lost, "create client")
    assert isinstance(translated, ProviderUnavailable) and translated.request_sent is True


def test_keycloak_redirects_are_provider_trouble_not_metadata_errors() -> None:
    translated = KeycloakAdapter._translate(KeycloakGetError("moved", response_code=302), "find client")
    assert isinstance(translated, ProviderUnavailable)
