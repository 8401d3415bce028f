"""Finding adapters: the built-ins, the ``dcr_gateway.adapters`` entry-point group, and unknown names."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from importlib.metadata import EntryPoint, EntryPoints
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from adapters import registry
from adapters.base import (
    Capabilities,
    ClientNotFound,
    Issuer,
    ManagedClient,
    NewClient,
    ProviderAdapter,
)
from adapters.registry import ENTRY_POINT_GROUP, UnknownAdapter, available, get_factory
from gateway.app import ADAPTER, SETTINGS, create_app
from gateway.settings import Settings

if TYPE_CHECKING:
    import aiohttp

BUILTINS = ("hydra", "keycloak", "memory")


# --- a third-party adapter, as a package would publish it ---------------------------------------------------


class ThirdPartyAdapter:
    """The smallest ProviderAdapter: no inheritance, one issuer at the provider's root."""

    name = "testidp"
    capabilities = Capabilities()

    def __init__(self, provider_url: str) -> None:
        self.provider_url = provider_url
        self.started = False

    def issuers(self) -> list[Issuer]:
        return [Issuer(key="default", path="", metadata_url=f"{self.provider_url}/.well-known/openid-configuration")]

    async def start(self, session: aiohttp.ClientSession) -> None:
        self.started = True

    async def close(self) -> None:
        self.started = False

    async def create_client(self, issuer: str, client: NewClient) -> ManagedClient:
        return ManagedClient(
            client_id=client.client_id, metadata=client.metadata, client_id_issued_at=client.client_id_issued_at
        )

    async def read_client(self, issuer: str, client_id: str) -> ManagedClient:
        raise ClientNotFound(client_id)

    async def update_client(self, issuer: str, client: NewClient) -> ManagedClient:
        raise ClientNotFound(client.client_id)

    async def delete_client(self, issuer: str, client_id: str) -> None:
        raise ClientNotFound(client_id)

    async def list_clients(self, issuer: str) -> AsyncIterator[ManagedClient]:
        clients: tuple[ManagedClient, ...] = ()
        for client in clients:
            yield client


def create_test_adapter(settings: Settings) -> ThirdPartyAdapter:
    """What ``testidp = "<module>:create_test_adapter"`` in a package's entry points resolves to."""
    return ThirdPartyAdapter(settings.provider_url)


def entry_point(name: str, target: str = f"{__name__}:create_test_adapter") -> EntryPoint:
    return EntryPoint(name=name, value=target, group=ENTRY_POINT_GROUP)


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Pretend packages publishing these entry points are installed (``entry_points`` as adapters.registry calls it)."""

    def install(*points: EntryPoint) -> None:
        def entry_points(*, group: str) -> EntryPoints:
            return EntryPoints(point for point in points if point.group == group)

        monkeypatch.setattr(registry, "entry_points", entry_points)

    install()  # by default: no third-party adapter, whatever this environment has installed
    return install


# --- built-ins ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTINS)
def test_builtins_resolve_to_factories_of_provider_adapters(name: str, installed: Callable[..., None]) -> None:
    settings = Settings(provider=name, provider_url="http://provider.internal:8080")
    factory = get_factory(name)
    assert callable(factory)
    adapter = factory(settings)

    assert isinstance(adapter, ProviderAdapter)
    assert adapter.name == name
    assert isinstance(adapter.capabilities, Capabilities)
    issuers = adapter.issuers()
    assert issuers
    assert all(isinstance(issuer, Issuer) for issuer in issuers)
    assert all(issuer.metadata_url.startswith("http://provider.internal:8080/") for issuer in issuers)
    # the rest of the protocol's shape: the contract suite (gateway.testing.adapter_contract)


def test_keycloak_serves_one_issuer_per_realm(installed: Callable[..., None]) -> None:
    settings = Settings(provider="keycloak", keycloak={"realms": ["mcp", "partners"]})
    adapter = get_factory("keycloak")(settings)
    assert [(issuer.key, issuer.path) for issuer in adapter.issuers()] == [
        ("mcp", "/realms/mcp"),
        ("partners", "/realms/partners"),
    ]


def test_an_object_missing_part_of_the_interface_is_not_a_provider_adapter() -> None:
    class Incomplete:
        name = "incomplete"
        capabilities = ThirdPartyAdapter.capabilities

        def issuers(self) -> list[Issuer]:
            return []

    assert not isinstance(Incomplete(), ProviderAdapter)
    assert isinstance(ThirdPartyAdapter("http://x"), ProviderAdapter)


def test_every_capability_field_is_read_by_the_gateway() -> None:
    """A ``Capabilities`` field nothing in the gateway reads is a promise nobody keeps: it goes (issue 9)."""
    root = Path(__file__).resolve().parents[2] / "gateway"
    source = "\n".join(path.read_text() for path in root.rglob("*.py"))
    unread = [f.name for f in dataclasses.fields(Capabilities) if f"capabilities.{f.name}" not in source]
    assert unread == []


# --- unknown names ------------------------------------------------------------------------------------------


def test_an_unknown_name_raises_unknown_adapter_listing_the_available_ones(installed: Callable[..., None]) -> None:
    with pytest.raises(UnknownAdapter) as raised:
        get_factory("okta")
    message = str(raised.value)
    assert "'okta'" in message
    assert "available: hydra, keycloak, memory" in message
    assert isinstance(raised.value, LookupError)  # what `dcr-gateway serve` reports as a configuration error


def test_the_listing_includes_installed_entry_points(installed: Callable[..., None]) -> None:
    installed(entry_point("testidp"))
    assert available() == ["hydra", "keycloak", "memory", "testidp"]
    with pytest.raises(UnknownAdapter, match="available: hydra, keycloak, memory, testidp"):
        get_factory("okta")


def test_create_app_with_an_unknown_provider_fails(installed: Callable[..., None]) -> None:
    with pytest.raises(UnknownAdapter):
        create_app(Settings(provider="okta"))


# --- entry points -------------------------------------------------------------------------------------------


def test_a_third_party_adapter_is_found_through_its_entry_point(installed: Callable[..., None]) -> None:
    installed(entry_point("testidp"), EntryPoint(name="other", value="x:y", group="some.other.group"))
    factory = get_factory("testidp")
    assert factory is create_test_adapter
    adapter = factory(Settings(provider="testidp", provider_url="http://idp.internal"))
    assert isinstance(adapter, ThirdPartyAdapter)
    assert isinstance(adapter, ProviderAdapter)
    with pytest.raises(UnknownAdapter):
        get_factory("other")  # another group's entry point


def test_builtins_win_over_an_entry_point_of_the_same_name(installed: Callable[..., None]) -> None:
    installed(entry_point("hydra"))
    adapter = get_factory("hydra")(Settings())
    assert not isinstance(adapter, ThirdPartyAdapter)
    assert adapter.name == "hydra"


def test_a_gateway_app_is_created_with_a_third_party_adapter(installed: Callable[..., None]) -> None:
    installed(entry_point("testidp"))
    settings = Settings(provider="testidp", provider_url="http://idp.internal:9000", public_url="http://gw.test")
    app = create_app(settings)
    adapter = app[ADAPTER]
    assert isinstance(adapter, ThirdPartyAdapter)
    assert adapter.provider_url == "http://idp.internal:9000"
    assert not adapter.started  # started by the app's cleanup context, i.e. only when the app runs
    assert app[SETTINGS] is settings
    paths = {resource.canonical for resource in app.router.resources()}
    assert "/register" in paths
    assert "/.well-known/oauth-authorization-server" in paths
    assert "/healthz" in paths
