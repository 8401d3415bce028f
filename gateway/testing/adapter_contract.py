"""The adapter contract suite: the tests every provider adapter passes, built-in or third-party.

It checks the rules of :mod:`adapters.base` against a live adapter (the real provider, not a double). To run it,
subclass :class:`AdapterContract` in a test module (the class name must start with ``Test``) and provide three
fixtures::

    import pytest_asyncio
    from gateway.testing.adapter_contract import AdapterContract

    class TestMyIdpAdapter(AdapterContract):
        @pytest_asyncio.fixture
        async def adapter(self):                    # started, serving at least one issuer
            ...
        @pytest_asyncio.fixture
        async def unreachable_adapter(self):        # started, configured at an address that refuses connections
            ...
        @pytest_asyncio.fixture
        async def plant_unmanaged(self):            # plants a client the gateway did not create
            async def plant(issuer: str, client_id: str) -> None: ...
            yield plant
            ...                                     # delete what was planted

Optional: ``issuer`` (default: the adapter's first issuer key), ``deployment`` (what the adapter records in
``gateway_data``; default ``"default"``), ``secret_works`` (for a provider that never returns a stored secret:
whether a secret authenticates the client at the token endpoint), and the class attribute
:attr:`AdapterContract.clients_to_list` (more than one page of the adapter's listing; shrink the page size in the
``adapter`` fixture rather than creating thousands). Capabilities (:class:`adapters.base.ClientHygiene`,
:class:`adapters.base.UsageListing`, :class:`adapters.base.ClientCount`, :class:`adapters.base.RegistrableScopes`,
:class:`adapters.base.AdminApiCheck`, and the MCP 2026-07-28 ones:
:class:`adapters.base.DocumentClients`, :class:`adapters.base.ResourceIndicators`,
:class:`adapters.base.LoopbackRedirects`) are tested when the adapter has them and skipped otherwise.

Every test cleans up the managed clients it created. The tests are coroutines: they need pytest-asyncio (the class
is marked, so its ``strict`` mode works too).
"""

from __future__ import annotations

import contextlib
import inspect
import secrets
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar, cast

import pytest

from adapters.base import (
    DEPLOYMENT_KEY,
    DOCUMENT_SOURCE,
    AdminApiCheck,
    Capabilities,
    ClientConflict,
    ClientCount,
    ClientHygiene,
    ClientNotFound,
    ClientUsage,
    DocumentClients,
    Issuer,
    LoopbackRedirects,
    ManagedClient,
    NewClient,
    ProviderAdapter,
    ProviderUnavailable,
    RegistrableScopes,
    ResourceBinding,
    ResourceIndicators,
    UnmanagedClient,
    UsageListing,
)
from gateway.oauth.metadata import NONE, SECRET_AUTH_METHODS, ClientMetadata, parse_metadata
from gateway.policy.rules import RegistrationPolicy, validate
from gateway.policy.settings import PolicySettings
from gateway.testing.mcp_client_bodies import MCP_CLIENT_BODIES

_Fixture = TypeVar("_Fixture", bound=Callable[..., Any])
_decorate: Any
try:
    import pytest_asyncio

    _decorate = pytest_asyncio.fixture
except ImportError:  # pytest loads this plugin wherever dcr-gateway is installed; without pytest-asyncio it is inert
    _decorate = pytest.fixture


def async_fixture(function: _Fixture) -> _Fixture:
    """An async fixture in pytest-asyncio's ``strict`` mode as in ``auto``."""
    return cast(_Fixture, _decorate(function))


PlantUnmanaged = Callable[[str, str], Awaitable[None]]
"""``await plant(issuer, client_id)``: the provider now holds a client with that id that the gateway did not
create (made with the provider's own admin API, without the managed mark)."""
SecretWorks = Callable[[str, str, str], Awaitable[bool]]
"""``await secret_works(issuer, client_id, secret)``: whether the provider authenticates the client with it."""

PROVIDER_CHOSEN = frozenset({"scope"})
"""Metadata the provider may answer differently from what was sent (:mod:`adapters.base`, rule 3)."""

GATEWAY_DATA: Mapping[str, Any] = {
    "rat": "sha256:" + "ab" * 32,
    "authenticated": False,
    "issued": 1767225600,
    "nested": {"list": [1, "two", None, True], "text": "caf\u00e9 \u2713 \U0001f600"},
}
"""Gateway data as the gateway stores it (a registration access token hash and more): JSON of every kind."""

FULL_METADATA: Mapping[str, Any] = {
    "redirect_uris": ["https://app.example.com/callback", "https://app.example.com/callback2"],
    "token_endpoint_auth_method": "client_secret_basic",
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
    "client_name": "Contract client",
    "client_uri": "https://app.example.com",
    "logo_uri": "https://app.example.com/logo.png",
    "tos_uri": "https://app.example.com/tos",
    "policy_uri": "https://app.example.com/policy",
    "contacts": ["ops@app.example.com"],
    "software_id": "4f7d1c0e-contract",
    "software_version": "1.2.3",
    "application_type": "web",
    "post_logout_redirect_uris": ["https://app.example.com/logged-out"],
}
"""A registration using every field the gateway registers except keys (a secret client)."""

MINIMAL_METADATA: Mapping[str, Any] = {
    "redirect_uris": ["https://other.example.com/cb"],
    "token_endpoint_auth_method": "client_secret_basic",
}
"""What an RFC 7592 replacement sending almost nothing leaves (RFC 7591 defaults added by the policy)."""


DOCUMENT_METADATA: Mapping[str, Any] = {
    "client_name": "Contract document client (app.example.com)",
    "client_uri": "https://app.example.com",
    "logo_uri": "https://app.example.com/logo.png",
    "redirect_uris": ["http://localhost/callback", "http://127.0.0.1/callback", "https://app.example.com/cb"],
    "token_endpoint_auth_method": "none",
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
    "application_type": "native",
}
"""A client metadata document as the gateway hands it on (Claude Code's shape: a public client on port-less
loopback redirects), after the registration policy."""

RESOURCE = "https://mcp.example.com/mcp"
"""An RFC 8707 resource (an MCP server's canonical URI)."""


def document_url() -> str:
    """A fresh client metadata document URL (draft-ietf-oauth-client-id-metadata-document: https with a path)."""
    return f"https://app.example.com/oauth/{uuid.uuid4()}/client.json"


def document_client(url: str, metadata: ClientMetadata, *, digest: str = "00" * 32) -> NewClient:
    """A document client as the gateway puts it: ``client_id`` is the URL, no secret, provenance in gateway data."""
    return NewClient(
        client_id=url,
        client_secret=None,
        client_id_issued_at=int(time.time()),
        client_secret_expires_at=0,
        metadata=metadata,
        gateway_data={"source": DOCUMENT_SOURCE, "document_sha256": digest, "document_fetched_at": 1767225600},
    )


def registration(body: Mapping[str, Any], adapter: ProviderAdapter) -> ClientMetadata:
    """``body`` as the gateway hands it to an adapter: parsed, defaults applied and every rule of the default
    registration policy passed (for an authenticated caller), with the adapter's storage limits."""
    policy = RegistrationPolicy.from_settings(
        PolicySettings(),
        None,
        authenticated=True,
        stored_lengths=adapter.capabilities.stored_lengths,
        message_template_fields=adapter.capabilities.message_template_fields,
    )
    return validate(parse_metadata(body), policy)


def new_client(
    metadata: ClientMetadata,
    *,
    client_id: str | None = None,
    gateway_data: Mapping[str, Any] = GATEWAY_DATA,
    client_secret: str | None = None,
) -> NewClient:
    """A registration with gateway-made credentials (RFC 7591 section 3.2.1): a secret only for secret methods."""
    if client_secret is None and metadata.token_endpoint_auth_method in SECRET_AUTH_METHODS:
        client_secret = secrets.token_urlsafe(32)
    return NewClient(
        client_id=client_id or f"contract-{uuid.uuid4()}",
        client_secret=client_secret,
        client_id_issued_at=int(time.time()),
        client_secret_expires_at=0,
        metadata=metadata,
        gateway_data=dict(gateway_data),
    )


def comparable(metadata: ClientMetadata) -> dict[str, Any]:
    """The registered metadata without what the provider may choose."""
    return {key: value for key, value in metadata.registered().items() if key not in PROVIDER_CHOSEN}


def refused_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Created:
    """The managed clients a test created, deleted again afterwards (already deleted ones are fine)."""

    def __init__(self, adapter: ProviderAdapter, issuer: str) -> None:
        self.adapter = adapter
        self.issuer = issuer
        self.ids: list[str] = []

    async def __call__(self, client: NewClient) -> ManagedClient:
        self.ids.append(client.client_id)
        return await self.adapter.create_client(self.issuer, client)

    async def delete_all(self) -> None:
        for client_id in self.ids:
            with contextlib.suppress(ClientNotFound):
                await self.adapter.delete_client(self.issuer, client_id)
        if isinstance(self.adapter, DocumentClients):
            for url in self.documents:
                with contextlib.suppress(ClientNotFound):
                    await self.adapter.delete_document_client(self.issuer, url)

    @property
    def documents(self) -> list[str]:
        """Document URLs whose clients the test put (deleted afterwards)."""
        urls: list[str] = self.__dict__.setdefault("_documents", [])
        return urls

    async def document(self, client: NewClient) -> ManagedClient:
        assert isinstance(self.adapter, DocumentClients)
        self.documents.append(client.client_id)
        return await self.adapter.put_document_client(self.issuer, client)


@pytest.mark.asyncio
class AdapterContract:
    """The contract of :mod:`adapters.base`, as tests. Subclass it (``class TestX(AdapterContract)``) and provide
    the fixtures named in the module's documentation."""

    clients_to_list: int = 5
    """Managed clients the listing test creates: make it more than one page of the adapter's listing."""

    # ------------------------------------------------------------------------------ fixtures to provide

    @async_fixture
    async def adapter(self) -> AsyncIterator[ProviderAdapter]:
        """The adapter under test, started (``await adapter.start(session)``), closed afterwards."""
        raise NotImplementedError("provide an `adapter` fixture: the started adapter under test")
        yield

    @async_fixture
    async def unreachable_adapter(self) -> AsyncIterator[ProviderAdapter]:
        """The same adapter configured at an address that refuses connections (:func:`refused_port`), started."""
        raise NotImplementedError("provide an `unreachable_adapter` fixture (see gateway.testing.adapter_contract)")
        yield

    @async_fixture
    async def plant_unmanaged(self) -> AsyncIterator[PlantUnmanaged]:
        """``await plant(issuer, client_id)`` makes a client the gateway did not create (see :data:`PlantUnmanaged`);
        the fixture deletes them afterwards."""
        raise NotImplementedError("provide a `plant_unmanaged` fixture (see gateway.testing.adapter_contract)")
        yield

    # ------------------------------------------------------------------------------- optional fixtures

    @pytest.fixture
    def issuer(self, adapter: ProviderAdapter) -> str:
        """The issuer key the tests use: the adapter's first."""
        return adapter.issuers()[0].key

    @pytest.fixture
    def deployment(self) -> str:
        """The deployment the adapter under test was made with (``settings.deployment``)."""
        return "default"

    @pytest.fixture
    def secret_works(self) -> SecretWorks | None:
        """For providers that never return a stored secret (Hydra keeps a hash): a check at the token endpoint."""
        return None

    @async_fixture
    async def created(self, adapter: ProviderAdapter, issuer: str) -> AsyncIterator[Created]:
        tracker = Created(adapter, issuer)
        yield tracker
        await tracker.delete_all()

    # --------------------------------------------------------------------------------------- helpers

    async def assert_secret(
        self,
        adapter: ProviderAdapter,
        issuer: str,
        client_id: str,
        expected: str | None,
        secret_works: SecretWorks | None,
        *,
        old: str | None = None,
    ) -> None:
        """The client's secret is ``expected`` (``None``: it has none, and ``old`` no longer works)."""
        stored = await adapter.read_client(issuer, client_id)
        if stored.client_secret is not None or secret_works is None:
            assert stored.client_secret == expected
        if secret_works is not None:
            if expected is not None:
                assert await secret_works(issuer, client_id, expected), "the expected secret does not authenticate"
            if old is not None and old != expected:
                assert not await secret_works(issuer, client_id, old), "a replaced or dropped secret still works"

    # ------------------------------------------------------------------------------------------ shape

    async def test_the_adapter_has_the_shape_of_the_protocol(self, adapter: ProviderAdapter) -> None:
        assert isinstance(adapter, ProviderAdapter)
        assert isinstance(adapter.name, str) and adapter.name
        assert isinstance(adapter.capabilities, Capabilities)
        issuers = adapter.issuers()
        assert issuers and all(isinstance(issuer, Issuer) for issuer in issuers)
        assert len({issuer.key for issuer in issuers}) == len(issuers), "issuer keys must be unique"
        for issuer in issuers:
            assert issuer.path == "" or (issuer.path.startswith("/") and not issuer.path.endswith("/"))
            assert issuer.metadata_url.startswith(("http://", "https://"))
        for method in ("start", "close", "create_client", "read_client", "update_client", "delete_client"):
            assert inspect.iscoroutinefunction(getattr(adapter, method)), f"{method} must be a coroutine function"
        assert inspect.isasyncgenfunction(adapter.list_clients), "list_clients must be an async generator"

    # ------------------------------------------------------------------------ create and read (rules 2-4)

    @pytest.mark.parametrize("body", list(MCP_CLIENT_BODIES.values()), ids=list(MCP_CLIENT_BODIES))
    async def test_every_mcp_client_body_round_trips(
        self, adapter: ProviderAdapter, issuer: str, deployment: str, created: Created, body: Mapping[str, Any]
    ) -> None:
        client = new_client(registration(body, adapter))
        answer = await created(client)
        stored = await adapter.read_client(issuer, client.client_id)
        expected_data = {**GATEWAY_DATA, DEPLOYMENT_KEY: deployment}
        for got in (answer, stored):
            assert got.client_id == client.client_id
            assert comparable(got.metadata) == comparable(client.metadata)
            assert got.metadata.token_endpoint_auth_method == client.metadata.token_endpoint_auth_method
            assert dict(got.gateway_data) == expected_data
            assert got.client_id_issued_at == client.client_id_issued_at
            assert got.client_secret in (None, client.client_secret)
        assert stored.metadata.scope == answer.metadata.scope, "the echoed scope is not the stored one"
        if client.client_secret is not None:
            assert answer.client_secret in (None, client.client_secret)

    async def test_every_registered_field_round_trips(
        self, adapter: ProviderAdapter, issuer: str, created: Created, secret_works: SecretWorks | None
    ) -> None:
        client = new_client(registration(FULL_METADATA, adapter))
        answer = await created(client)
        stored = await adapter.read_client(issuer, client.client_id)
        assert comparable(answer.metadata) == comparable(stored.metadata) == comparable(client.metadata)
        await self.assert_secret(adapter, issuer, client.client_id, client.client_secret, secret_works)

    async def test_a_taken_client_id_is_a_conflict_and_the_client_stays(
        self, adapter: ProviderAdapter, issuer: str, created: Created
    ) -> None:
        first = new_client(registration(MCP_CLIENT_BODIES["claude code"], adapter))
        await created(first)
        second = new_client(registration(FULL_METADATA, adapter), client_id=first.client_id)
        with pytest.raises(ClientConflict):
            await adapter.create_client(issuer, second)
        stored = await adapter.read_client(issuer, first.client_id)
        assert comparable(stored.metadata) == comparable(first.metadata)

    # ---------------------------------------------------------------------------------- update (rule 5)

    async def test_update_replaces_the_metadata_and_clears_omitted_fields(
        self, adapter: ProviderAdapter, issuer: str, created: Created
    ) -> None:
        client = new_client(registration(FULL_METADATA, adapter))
        await created(client)
        data = {**GATEWAY_DATA, "rat": "sha256:" + "cd" * 32}
        replacement = replace(
            new_client(registration(MINIMAL_METADATA, adapter), client_id=client.client_id, gateway_data=data),
            client_secret=None,
        )
        answer = await adapter.update_client(issuer, replacement)
        stored = await adapter.read_client(issuer, client.client_id)
        for got in (answer, stored):
            assert comparable(got.metadata) == comparable(replacement.metadata)
            for omitted in ("client_name", "client_uri", "logo_uri", "tos_uri", "policy_uri", "contacts"):
                assert getattr(got.metadata, omitted) is None, f"{omitted} survived a full replacement"
            assert got.gateway_data.get("rat") == data["rat"]

    async def test_update_without_a_secret_keeps_the_current_one(
        self, adapter: ProviderAdapter, issuer: str, created: Created, secret_works: SecretWorks | None
    ) -> None:
        client = new_client(registration(FULL_METADATA, adapter))
        await created(client)
        renamed = client.metadata.model_copy(update={"client_name": "Renamed"})
        await adapter.update_client(issuer, replace(client, metadata=renamed, client_secret=None))
        await self.assert_secret(adapter, issuer, client.client_id, client.client_secret, secret_works)
        assert (await adapter.read_client(issuer, client.client_id)).metadata.client_name == "Renamed"

    async def test_update_to_auth_method_none_drops_the_secret(
        self, adapter: ProviderAdapter, issuer: str, created: Created, secret_works: SecretWorks | None
    ) -> None:
        client = new_client(registration(FULL_METADATA, adapter))
        await created(client)
        public = registration({**FULL_METADATA, "token_endpoint_auth_method": NONE}, adapter)
        answer = await adapter.update_client(issuer, replace(client, metadata=public, client_secret=None))
        assert answer.metadata.token_endpoint_auth_method == NONE
        assert answer.client_secret is None
        await self.assert_secret(adapter, issuer, client.client_id, None, secret_works, old=client.client_secret)

    async def test_update_to_a_secret_method_sets_the_given_secret(
        self, adapter: ProviderAdapter, issuer: str, created: Created, secret_works: SecretWorks | None
    ) -> None:
        client = new_client(registration({**FULL_METADATA, "token_endpoint_auth_method": NONE}, adapter))
        assert client.client_secret is None
        await created(client)
        confidential = registration({**FULL_METADATA, "token_endpoint_auth_method": "client_secret_post"}, adapter)
        secret = secrets.token_urlsafe(32)
        answer = await adapter.update_client(issuer, replace(client, metadata=confidential, client_secret=secret))
        assert answer.metadata.token_endpoint_auth_method == "client_secret_post"
        assert answer.client_secret in (None, secret)
        await self.assert_secret(adapter, issuer, client.client_id, secret, secret_works)

    # ------------------------------------------------------------------------------- not found (rule 1, 6)

    async def test_a_deleted_client_is_not_found(self, adapter: ProviderAdapter, issuer: str, created: Created) -> None:
        client = new_client(registration(MCP_CLIENT_BODIES["mcp inspector"], adapter))
        await created(client)
        await adapter.delete_client(issuer, client.client_id)
        with pytest.raises(ClientNotFound):
            await adapter.read_client(issuer, client.client_id)
        with pytest.raises(ClientNotFound):
            await adapter.delete_client(issuer, client.client_id)
        with pytest.raises(ClientNotFound):
            await adapter.update_client(issuer, client)
        assert client.client_id not in {c.client_id async for c in adapter.list_clients(issuer)}

    @pytest.mark.parametrize("client_id", ["never-registered-contract-id", "../admin", "a/b", "%2e%2e", "", "x" * 300])
    async def test_a_client_that_does_not_exist_is_not_found(
        self, adapter: ProviderAdapter, issuer: str, client_id: str
    ) -> None:
        """Also for ids no client can have: :class:`ClientNotFound`, never another exception (rule 6)."""
        with pytest.raises(ClientNotFound):
            await adapter.read_client(issuer, client_id)
        with pytest.raises(ClientNotFound):
            await adapter.delete_client(issuer, client_id)
        metadata = registration(MCP_CLIENT_BODIES["claude code"], adapter)
        with pytest.raises(ClientNotFound):
            await adapter.update_client(issuer, new_client(metadata, client_id=client_id or "-"))

    async def test_unmanaged_clients_are_invisible(
        self, adapter: ProviderAdapter, issuer: str, plant_unmanaged: PlantUnmanaged
    ) -> None:
        client_id = f"unmanaged-{uuid.uuid4()}"
        await plant_unmanaged(issuer, client_id)
        metadata = registration(FULL_METADATA, adapter)
        with pytest.raises(ClientNotFound):
            await adapter.read_client(issuer, client_id)
        with pytest.raises(ClientNotFound):
            await adapter.update_client(issuer, new_client(metadata, client_id=client_id))
        with pytest.raises(ClientNotFound):
            await adapter.delete_client(issuer, client_id)
        assert client_id not in {c.client_id async for c in adapter.list_clients(issuer)}
        with pytest.raises(ClientConflict):  # and it is still there, untouched
            await adapter.create_client(issuer, new_client(metadata, client_id=client_id))
        if isinstance(adapter, ClientHygiene):
            assert client_id in {c.client_id async for c in adapter.list_unmanaged(issuer)}

    # ------------------------------------------------------------------------------------------- listing

    async def test_listing_pages_through_every_managed_client_and_no_other(
        self, adapter: ProviderAdapter, issuer: str, created: Created, plant_unmanaged: PlantUnmanaged
    ) -> None:
        metadata = registration(MCP_CLIENT_BODIES["claude code"], adapter)
        mine: set[str] = set()
        planted: set[str] = set()
        for index in range(self.clients_to_list):
            client = new_client(metadata)
            await created(client)
            mine.add(client.client_id)
            if index % 2 == 0:  # unmanaged clients between managed ones, on every page
                unmanaged = f"unmanaged-{uuid.uuid4()}"
                await plant_unmanaged(issuer, unmanaged)
                planted.add(unmanaged)
        listed = [client.client_id async for client in adapter.list_clients(issuer)]
        assert len(listed) == len(set(listed)), "a client was listed twice"
        assert mine <= set(listed), f"missing from the listing: {sorted(mine - set(listed))}"
        assert not planted & set(listed), "an unmanaged client was listed"

    async def test_usage_listing_pages_every_managed_client_with_its_usage(
        self, adapter: ProviderAdapter, issuer: str, created: Created, plant_unmanaged: PlantUnmanaged
    ) -> None:
        """:class:`~adapters.base.UsageListing` lists what ``list_clients`` lists, a non-empty page at a time, each
        client once with the usage ``usage`` tells (a session count the page could not read: ``None``)."""
        if not isinstance(adapter, UsageListing):
            pytest.skip("the adapter has no UsageListing")
        metadata = registration(MCP_CLIENT_BODIES["claude code"], adapter)
        mine: set[str] = set()
        planted: set[str] = set()
        for index in range(self.clients_to_list):
            registered = new_client(metadata)
            await created(registered)
            mine.add(registered.client_id)
            if index % 2 == 0:
                unmanaged = f"unmanaged-{uuid.uuid4()}"
                await plant_unmanaged(issuer, unmanaged)
                planted.add(unmanaged)
        url = document_url()
        if isinstance(adapter, DocumentClients):
            await created.document(document_client(url, registration(DOCUMENT_METADATA, adapter)))
        pages = [page async for page in adapter.list_with_usage(issuer)]
        assert all(isinstance(page, list) and page for page in pages), "pages are non-empty lists"
        listed = [client.client_id for page in pages for client, _ in page]
        assert len(listed) == len(set(listed)), "a client was listed twice"
        assert mine <= set(listed), f"missing from the listing: {sorted(mine - set(listed))}"
        assert not planted & set(listed), "an unmanaged client was listed"
        assert url not in listed, "a document client was listed"
        assert set(listed) == {c.client_id async for c in adapter.list_clients(issuer)}
        for page in pages:
            for client, usage in page:
                assert isinstance(client, ManagedClient) and isinstance(usage, ClientUsage)
                if client.client_id not in mine:
                    continue
                assert comparable(client.metadata) == comparable(metadata)
                if isinstance(adapter, ClientHygiene):
                    told = await adapter.usage(issuer, client.client_id)
                    assert (usage.created_at, usage.updated_at) == (told.created_at, told.updated_at)
                    assert usage.active_sessions in (None, told.active_sessions)
                    assert usage.offline_sessions in (None, told.offline_sessions)

    async def test_the_managed_count_is_every_registered_and_document_client_once(
        self, adapter: ProviderAdapter, issuer: str, created: Created, plant_unmanaged: PlantUnmanaged
    ) -> None:
        """:class:`~adapters.base.ClientCount` (the quota's recount) counts what the two listings list together,
        and no unmanaged client."""
        if not isinstance(adapter, ClientCount):
            pytest.skip("the adapter has no ClientCount")
        metadata = registration(MCP_CLIENT_BODIES["claude code"], adapter)
        for _ in range(3):
            await created(new_client(metadata))
        await plant_unmanaged(issuer, f"unmanaged-{uuid.uuid4()}")
        if isinstance(adapter, DocumentClients):
            await created.document(document_client(document_url(), registration(DOCUMENT_METADATA, adapter)))
        expected = len([c async for c in adapter.list_clients(issuer)])
        if isinstance(adapter, DocumentClients):
            expected += len([c async for c in adapter.list_document_clients(issuer)])
        assert await adapter.count_managed(issuer) == expected

    # ------------------------------------------------------------------------------------ unavailability

    async def test_an_unreachable_provider_is_provider_unavailable(self, unreachable_adapter: ProviderAdapter) -> None:
        adapter = unreachable_adapter
        issuer = adapter.issuers()[0].key
        client = new_client(registration(MCP_CLIENT_BODIES["claude code"], adapter))
        with pytest.raises(ProviderUnavailable) as refused:
            await adapter.create_client(issuer, client)
        assert refused.value.request_sent is False, "a refused connection sent nothing: request_sent=False"
        with pytest.raises(ProviderUnavailable):
            await adapter.read_client(issuer, client.client_id)
        with pytest.raises(ProviderUnavailable):
            await adapter.update_client(issuer, client)
        with pytest.raises(ProviderUnavailable):
            await adapter.delete_client(issuer, client.client_id)
        with pytest.raises(ProviderUnavailable):
            _ = [c async for c in adapter.list_clients(issuer)]
        if isinstance(adapter, AdminApiCheck):
            with pytest.raises(ProviderUnavailable):
                await adapter.check()
        if isinstance(adapter, ClientHygiene):
            with pytest.raises(ProviderUnavailable):
                _ = [c async for c in adapter.list_unmanaged(issuer)]
        if isinstance(adapter, UsageListing):
            with pytest.raises(ProviderUnavailable):
                _ = [page async for page in adapter.list_with_usage(issuer)]
        if isinstance(adapter, ClientCount):
            with pytest.raises(ProviderUnavailable):
                await adapter.count_managed(issuer)
        if isinstance(adapter, DocumentClients):
            url = document_url()
            with pytest.raises(ProviderUnavailable):
                await adapter.read_document_client(issuer, url)
            with pytest.raises(ProviderUnavailable):
                await adapter.put_document_client(
                    issuer, document_client(url, registration(DOCUMENT_METADATA, adapter))
                )
            with pytest.raises(ProviderUnavailable):
                await adapter.delete_document_client(issuer, url)
        if isinstance(adapter, ResourceIndicators):
            with pytest.raises(ProviderUnavailable):
                await adapter.bind_resource(issuer, client.client_id, RESOURCE)
        if isinstance(adapter, LoopbackRedirects):
            with pytest.raises(ProviderUnavailable):
                await adapter.admit_redirect_uri(issuer, client.client_id, "http://localhost:41000/callback")

    # -------------------------------------------------------------------------------- optional capabilities

    async def test_admin_api_check_passes(self, adapter: ProviderAdapter) -> None:
        if not isinstance(adapter, AdminApiCheck):
            pytest.skip("the adapter has no AdminApiCheck")
        await adapter.check()

    async def test_registrable_scopes_are_scope_tokens_or_none(self, adapter: ProviderAdapter, issuer: str) -> None:
        if not isinstance(adapter, RegistrableScopes):
            pytest.skip("the adapter has no RegistrableScopes")
        scopes = await adapter.registrable_scopes(issuer)
        assert scopes is None or (
            isinstance(scopes, frozenset) and all(isinstance(s, str) and s and " " not in s for s in scopes)
        )

    async def test_client_hygiene_usage_and_adoption(
        self, adapter: ProviderAdapter, issuer: str, created: Created, plant_unmanaged: PlantUnmanaged
    ) -> None:
        if not isinstance(adapter, ClientHygiene):
            pytest.skip("the adapter has no ClientHygiene")
        client = new_client(registration(MCP_CLIENT_BODIES["claude code"], adapter))
        await created(client)
        assert isinstance(await adapter.usage(issuer, client.client_id), ClientUsage)
        with pytest.raises(ClientNotFound):
            await adapter.usage(issuer, f"missing-{uuid.uuid4()}")
        unmanaged = [c async for c in adapter.list_unmanaged(issuer)]
        assert all(isinstance(c, UnmanagedClient) for c in unmanaged)
        assert client.client_id not in {c.client_id for c in unmanaged}

        planted = f"adoptable-{uuid.uuid4()}"
        await plant_unmanaged(issuer, planted)
        created.ids.append(planted)  # once adopted, it is managed: deleted after the test
        adopted = await adapter.adopt_client(issuer, planted, {"rat": "sha256:" + "ef" * 32})
        assert adopted.client_id == planted
        assert adopted.gateway_data.get("rat") == "sha256:" + "ef" * 32
        assert (await adapter.read_client(issuer, planted)).client_id == planted
        assert planted in {c.client_id async for c in adapter.list_clients(issuer)}
        with pytest.raises(ClientConflict):
            await adapter.adopt_client(issuer, planted, {})
        with pytest.raises(ClientNotFound):
            await adapter.adopt_client(issuer, f"missing-{uuid.uuid4()}", {})

    # ---------------------------------------------------------------- MCP 2026-07-28: document clients (CIMD)

    async def test_document_clients_are_put_read_replaced_and_deleted(
        self, adapter: ProviderAdapter, issuer: str, deployment: str, created: Created
    ) -> None:
        if not isinstance(adapter, DocumentClients):
            pytest.skip("the adapter has no DocumentClients")
        url = document_url()
        stored_id = adapter.stored_client_id(issuer, url)
        assert isinstance(stored_id, str) and stored_id
        assert adapter.stored_client_id(issuer, url) == stored_id, "stored_client_id must be stable"
        assert adapter.stored_client_id(issuer, document_url()) != stored_id
        assert await adapter.read_document_client(issuer, url) is None
        metadata = registration(DOCUMENT_METADATA, adapter)
        client = document_client(url, metadata)
        expected_data = {**client.gateway_data, DEPLOYMENT_KEY: deployment}
        answer = await created.document(client)
        stored = await adapter.read_document_client(issuer, url)
        assert stored is not None
        for got in (answer, stored):
            assert got.client_id == url, "a document client answers with its URL as client_id"
            assert comparable(got.metadata) == comparable(metadata)
            assert got.metadata.token_endpoint_auth_method == NONE
            assert got.client_secret is None
            assert dict(got.gateway_data) == expected_data
        # a new version of the document replaces the client in full (rule 5): omitted fields are cleared
        changed = registration(
            {
                "client_name": "Contract document client v2 (app.example.com)",
                "redirect_uris": ["http://127.0.0.1/callback"],
                "token_endpoint_auth_method": "none",
            },
            adapter,
        )
        replacement = document_client(url, changed, digest="11" * 32)
        answer = await adapter.put_document_client(issuer, replacement)
        stored = await adapter.read_document_client(issuer, url)
        assert stored is not None
        for got in (answer, stored):
            assert got.client_id == url
            assert comparable(got.metadata) == comparable(changed)
            assert got.metadata.logo_uri is None and got.metadata.client_uri is None
            assert got.gateway_data.get("document_sha256") == "11" * 32
        await adapter.delete_document_client(issuer, url)
        assert await adapter.read_document_client(issuer, url) is None
        with pytest.raises(ClientNotFound):
            await adapter.delete_document_client(issuer, url)

    async def test_document_clients_are_not_reachable_through_rfc7592_nor_listed(
        self, adapter: ProviderAdapter, issuer: str, created: Created
    ) -> None:
        """RFC 7592 (``read_client``, ``update_client``, ``delete_client``) is for registered clients only; the
        listing (``dcr-gateway clients``) leaves document clients out: they are made again from their document on
        the next authorization. ``list_document_clients`` lists them (the quota counts both)."""
        if not isinstance(adapter, DocumentClients):
            pytest.skip("the adapter has no DocumentClients")
        url = document_url()
        metadata = registration(DOCUMENT_METADATA, adapter)
        await created.document(document_client(url, metadata))
        for client_id in dict.fromkeys((url, adapter.stored_client_id(issuer, url))):
            with pytest.raises(ClientNotFound):
                await adapter.read_client(issuer, client_id)
            with pytest.raises(ClientNotFound):
                await adapter.update_client(issuer, new_client(metadata, client_id=client_id))
            with pytest.raises(ClientNotFound):
                await adapter.delete_client(issuer, client_id)
        listed = {c.client_id async for c in adapter.list_clients(issuer)}
        assert url not in listed and adapter.stored_client_id(issuer, url) not in listed
        assert await adapter.read_document_client(issuer, url) is not None, "the document client is still there"
        # ... they have their own listing (the managed-client quota counts them), holding only document clients
        documents = {c.client_id async for c in adapter.list_document_clients(issuer)}
        assert url in documents
        assert not documents & listed, "a client is listed both as registered and as a document client"
        await adapter.delete_document_client(issuer, url)
        assert url not in {c.client_id async for c in adapter.list_document_clients(issuer)}
        if isinstance(adapter, ClientHygiene):
            assert adapter.stored_client_id(issuer, url) not in {
                c.client_id async for c in adapter.list_unmanaged(issuer)
            }

    async def test_a_document_client_id_held_by_an_unmanaged_client_is_a_conflict(
        self, adapter: ProviderAdapter, issuer: str, plant_unmanaged: PlantUnmanaged
    ) -> None:
        if not isinstance(adapter, DocumentClients):
            pytest.skip("the adapter has no DocumentClients")
        url = document_url()
        await plant_unmanaged(issuer, adapter.stored_client_id(issuer, url))
        assert await adapter.read_document_client(issuer, url) is None
        with pytest.raises(ClientConflict):
            await adapter.put_document_client(issuer, document_client(url, registration(DOCUMENT_METADATA, adapter)))
        with pytest.raises(ClientNotFound):
            await adapter.delete_document_client(issuer, url)
        assert await adapter.read_document_client(issuer, url) is None

    # ---------------------------------------------------------------- MCP 2026-07-28: RFC 8707 resources

    async def test_resource_binding_is_idempotent_and_needs_an_existing_client(
        self, adapter: ProviderAdapter, issuer: str, created: Created, plant_unmanaged: PlantUnmanaged
    ) -> None:
        if not isinstance(adapter, ResourceIndicators):
            pytest.skip("the adapter has no ResourceIndicators")
        client = new_client(registration(MCP_CLIENT_BODIES["claude code"], adapter))
        await created(client)
        binding = await adapter.bind_resource(issuer, client.client_id, RESOURCE)
        assert isinstance(binding, ResourceBinding)
        assert binding.scope or binding.audience, "a binding names a scope or an audience to request"
        assert await adapter.bind_resource(issuer, client.client_id, RESOURCE) == binding
        other = await adapter.bind_resource(issuer, client.client_id, RESOURCE + "/other")
        assert other != binding, "two resources share one binding"
        stored = await adapter.read_client(issuer, client.client_id)
        assert comparable(stored.metadata) == comparable(client.metadata), "a binding is not client metadata"
        with pytest.raises(ClientNotFound):
            await adapter.bind_resource(issuer, f"missing-{uuid.uuid4()}", RESOURCE)
        unmanaged = f"unmanaged-{uuid.uuid4()}"
        await plant_unmanaged(issuer, unmanaged)
        assert await adapter.bind_resource(issuer, unmanaged, RESOURCE) == binding
        if isinstance(adapter, DocumentClients):
            url = document_url()
            await created.document(document_client(url, registration(DOCUMENT_METADATA, adapter)))
            stored_id = adapter.stored_client_id(issuer, url)
            assert await adapter.bind_resource(issuer, stored_id, RESOURCE) == binding

    # ------------------------------------------------------- MCP 2026-07-28: RFC 8252 section 7.3 loopback

    @pytest.mark.parametrize(
        "uri", ["https://app.example.com/cb", "http://app.example.com/cb", "cursor://anysphere.cursor-mcp/cb"]
    )
    async def test_no_provider_admits_any_port_beyond_loopback(self, adapter: ProviderAdapter, uri: str) -> None:
        if not isinstance(adapter, LoopbackRedirects):
            pytest.skip("the adapter has no LoopbackRedirects")
        assert adapter.admits_any_port(uri) is False
        assert isinstance(adapter.admits_any_port("http://127.0.0.1/callback"), bool)

    async def test_admitted_redirect_uris_are_not_registered_metadata(
        self, adapter: ProviderAdapter, issuer: str, created: Created, plant_unmanaged: PlantUnmanaged
    ) -> None:
        """``admit_redirect_uri`` is idempotent, leaves the registered metadata as it was (rule 3) through any
        number of admissions (a bounded number kept), and works for managed clients only."""
        if not isinstance(adapter, LoopbackRedirects):
            pytest.skip("the adapter has no LoopbackRedirects")
        body = {**MCP_CLIENT_BODIES["claude code"], "redirect_uris": ["http://localhost/callback"]}
        client = new_client(registration(body, adapter))
        await created(client)
        for port in range(41000, 41012):
            await adapter.admit_redirect_uri(issuer, client.client_id, f"http://localhost:{port}/callback")
        await adapter.admit_redirect_uri(issuer, client.client_id, "http://localhost:41011/callback")
        stored = await adapter.read_client(issuer, client.client_id)
        assert stored.metadata.redirect_uris == ["http://localhost/callback"]
        assert comparable(stored.metadata) == comparable(client.metadata)
        with pytest.raises(ClientNotFound):
            await adapter.admit_redirect_uri(issuer, f"missing-{uuid.uuid4()}", "http://localhost:41000/callback")
        unmanaged = f"unmanaged-{uuid.uuid4()}"
        await plant_unmanaged(issuer, unmanaged)
        with pytest.raises(ClientNotFound):
            await adapter.admit_redirect_uri(issuer, unmanaged, "http://localhost:41000/callback")
        if isinstance(adapter, DocumentClients):
            url = document_url()
            metadata = registration(DOCUMENT_METADATA, adapter)
            await created.document(document_client(url, metadata))
            await adapter.admit_redirect_uri(
                issuer, adapter.stored_client_id(issuer, url), "http://localhost:41001/callback"
            )
            document = await adapter.read_document_client(issuer, url)
            assert document is not None and comparable(document.metadata) == comparable(metadata)
