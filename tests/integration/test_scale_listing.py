"""Issue 12, goal 4: ``dcr-gateway clients list``/``gc`` and the quota's recount make a number of admin calls that
grows with the provider's listing pages, not with the managed clients, against the real Hydra and Keycloak.

Each adapter runs in-process with its admin API reached through the recording pass-through proxy of
``bench/scale_proxy.py``, which counts every call per ``METHOD /path/template``. Page sizes are shrunk so that a
few dozen clients span many pages: the property (calls per page, none per client) is the same at 100,000. Every
client a test creates is deleted at its end.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

import adapters.hydra.adapter
import adapters.keycloak.adapter
from adapters.base import ClientNotFound, ManagedClient, ProviderAdapter, version_tuple
from adapters.hydra.adapter import HydraAdapter, _next_page_token
from adapters.keycloak.adapter import KeycloakAdapter
from bench.scale_proxy import RecordingProxy, template
from devstack.providers import HydraProvider, KeycloakProvider, keycloak_version
from gateway.clients.operations import collect_garbage, managed_clients
from gateway.limits.quota import ClientQuota
from tests.integration.conftest import keycloak_admin_headers, master_admin_headers
from tests.integration.flows import keycloak_sign_in
from tests.integration.test_clients_cli import grant_realm_management_roles, public_client

PAGE = 10
MANAGED = 45
UNMANAGED = 15
DAY = 86400


@pytest.fixture
async def proxy_for() -> AsyncIterator[list[RecordingProxy]]:
    """Recording proxies started by the test (``await started(upstream)``), stopped afterwards."""
    proxies: list[RecordingProxy] = []
    yield proxies
    for proxy in proxies:
        await proxy.stop()


async def recording(proxies: list[RecordingProxy], upstream: str) -> RecordingProxy:
    proxy = RecordingProxy(upstream)
    await proxy.start()
    proxies.append(proxy)
    return proxy


def per_client_calls(proxy: RecordingProxy) -> dict[str, int]:
    """Calls addressed to one client (``.../clients/{id}...``)."""
    return {key: count for key, count in proxy.counts.items() if "/clients/{id}" in key}


async def create_managed(adapter: ProviderAdapter, issuer: str, prefix: str, count: int) -> list[ManagedClient]:
    return [
        await adapter.create_client(issuer, public_client(f"{prefix}{index:03d}", f"scale {index}"))
        for index in range(count)
    ]


async def delete_managed(adapter: ProviderAdapter, issuer: str, clients: list[ManagedClient]) -> None:
    for client in clients:
        with contextlib.suppress(ClientNotFound):
            await adapter.delete_client(issuer, client.client_id)


# --------------------------------------------------------------------------------------------------- Hydra


async def hydra_total(http: aiohttp.ClientSession, hydra: HydraProvider) -> int:
    """Every client in Hydra, managed or not (the listing pages of the adapter cover them all)."""
    total, token = 0, ""
    while True:
        params = {"page_size": "500", **({"page_token": token} if token else {})}
        async with http.get(f"{hydra.admin_url}/admin/clients", params=params) as response:
            assert response.status == 200
            page = await response.json()
            token = _next_page_token(response.headers.get("Link", "")) or ""
        total += len(page)
        if not page or not token:
            return total


@pytest.fixture
async def hydra_clients(
    http: aiohttp.ClientSession, hydra_provider: HydraProvider, hydra_adapter: HydraAdapter
) -> AsyncIterator[tuple[str, list[ManagedClient]]]:
    """``MANAGED`` managed clients (a per-test prefix) and ``UNMANAGED`` unmanaged ones between them."""
    prefix = f"scale-{uuid.uuid4().hex[:8]}-"
    planted: list[str] = []
    for index in range(UNMANAGED):
        client_id = f"{prefix}legacy-{index}"
        body = {
            "client_id": client_id,
            "redirect_uris": ["https://legacy.example/cb"],
            "token_endpoint_auth_method": "none",
        }
        async with http.post(f"{hydra_provider.admin_url}/admin/clients", json=body) as response:
            assert response.status == 201, await response.text()
        planted.append(client_id)
    managed = await create_managed(hydra_adapter, "default", prefix, MANAGED)
    yield prefix, managed
    await delete_managed(hydra_adapter, "default", managed)
    for client_id in planted:
        async with http.delete(f"{hydra_provider.admin_url}/admin/clients/{client_id}") as response:
            assert response.status in (204, 404)


async def test_hydra_list_gc_and_recount_make_calls_per_page_not_per_client(
    http: aiohttp.ClientSession,
    hydra_provider: HydraProvider,
    hydra_clients: tuple[str, list[ManagedClient]],
    proxy_for: list[RecordingProxy],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix, managed = hydra_clients
    monkeypatch.setattr(adapters.hydra.adapter, "PAGE_SIZE", PAGE)
    proxy = await recording(proxy_for, hydra_provider.admin_url)
    adapter = HydraAdapter(admin_url=proxy.url, public_url=hydra_provider.public_url)
    await adapter.start(http)
    pages = math.ceil(await hydra_total(http, hydra_provider) / PAGE) + 1  # Hydra links one more, empty, page

    records = await managed_clients(adapter, ["default"], prefix=prefix)
    assert sorted(r.client.client_id for r in records) == sorted(c.client_id for c in managed)
    assert all(r.usage is not None and r.usage.created_at for r in records), "the usage comes with the page"
    assert per_client_calls(proxy) == {}, "no call per client"
    assert proxy.total() <= pages

    proxy.reset()
    outcomes = await collect_garbage(adapter, ["default"], unused_for=30 * DAY, now=int(time.time()), prefix=prefix)
    assert len(outcomes) == MANAGED and not any(o.decision.stale for o in outcomes)
    assert per_client_calls(proxy) == {}
    assert proxy.total() <= pages

    # gc of clients all stale by their times: Hydra cannot tell sessions, so one usage read tells the run that
    # asking per client gains nothing; the dry run stays per page
    proxy.reset()
    outcomes = await collect_garbage(adapter, ["default"], unused_for=0, now=int(time.time()) + 60, prefix=prefix)
    assert len(outcomes) == MANAGED and all(o.decision.stale for o in outcomes)
    assert sum(per_client_calls(proxy).values()) <= 4, "at most one usage read per concurrent worker"
    assert proxy.total() <= pages + 4

    proxy.reset()
    counted = await ClientQuota(adapter, max_clients=1_000_000).refresh("default")
    assert counted >= MANAGED
    assert proxy.counts == {"GET /admin/clients": proxy.total()}, "one pass over the listing pages"
    assert proxy.total() <= pages


# ------------------------------------------------------------------------------------------------ Keycloak


@pytest.fixture
async def keycloak_clients(
    http: aiohttp.ClientSession, keycloak_provider: KeycloakProvider, keycloak_adapter: KeycloakAdapter
) -> AsyncIterator[tuple[str, list[ManagedClient]]]:
    prefix = f"scale-{uuid.uuid4().hex[:8]}-"
    base = f"{keycloak_provider.admin_realm_url}/clients"
    headers = await keycloak_admin_headers(http, keycloak_provider)
    planted: list[str] = []
    for index in range(UNMANAGED):
        body = {
            "clientId": f"{prefix}legacy-{index}",
            "publicClient": True,
            "redirectUris": ["https://legacy.example/cb"],
        }
        async with http.post(base, json=body, headers=headers) as response:
            assert response.status == 201, await response.text()
            planted.append(response.headers["Location"].rsplit("/", 1)[-1])
    realm = keycloak_provider.realm
    managed = await create_managed(keycloak_adapter, realm, prefix, MANAGED)
    yield prefix, managed
    await delete_managed(keycloak_adapter, realm, managed)
    headers = await keycloak_admin_headers(http, keycloak_provider)
    for internal_id in planted:
        async with http.delete(f"{base}/{internal_id}", headers=headers) as response:
            assert response.status in (204, 404)


async def keycloak_counts(http: aiohttp.ClientSession, keycloak: KeycloakProvider) -> tuple[int, int]:
    """(managed clients, all clients) of the realm, read directly."""
    headers = await keycloak_admin_headers(http, keycloak)
    async with http.get(
        f"{keycloak.admin_realm_url}/clients", params={"first": "0", "max": "100000"}, headers=headers
    ) as response:
        everything = await response.json()
    managed = sum(1 for c in everything if (c.get("attributes") or {}).get("dcr.gateway.managed") == "true")
    return managed, len(everything)


def keycloak_adapter_at(keycloak: KeycloakProvider, url: str, client_id: str, secret: str) -> KeycloakAdapter:
    return KeycloakAdapter(
        server_url=url, public_url=keycloak.base_url, realms=[keycloak.realm], client_id=client_id, client_secret=secret
    )


async def test_keycloak_list_gc_and_recount_make_calls_per_page_not_per_client(
    http: aiohttp.ClientSession,
    keycloak_provider: KeycloakProvider,
    keycloak_clients: tuple[str, list[ManagedClient]],
    proxy_for: list[RecordingProxy],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the marker searchable (the development Keycloak sets ``KC_SPI_CLIENT__JPA__SEARCHABLE_ATTRIBUTES``),
    the pages hold managed clients only; the gateway's least-privilege account cannot read
    ``client-session-stats`` (403, once), so ``list`` shows sessions as unknown and ``gc`` reads them per client
    only for the clients its times call stale."""
    prefix, managed = keycloak_clients
    realm = keycloak_provider.realm
    monkeypatch.setattr(adapters.keycloak.adapter, "PAGE_SIZE", PAGE)
    proxy = await recording(proxy_for, keycloak_provider.base_url)
    adapter = keycloak_adapter_at(
        keycloak_provider, proxy.url, keycloak_provider.admin_client_id, keycloak_provider.admin_client_secret
    )
    await adapter.start(http)
    try:
        managed_in_realm, _ = await keycloak_counts(http, keycloak_provider)
        pages = managed_in_realm // PAGE + 1
        records = await managed_clients(adapter, [realm], prefix=prefix)
        assert sorted(r.client.client_id for r in records) == sorted(c.client_id for c in managed)
        assert all(r.usage is not None and r.usage.active_sessions is None for r in records)
        assert per_client_calls(proxy) == {}, "no call per client"
        listing = proxy.counts["GET /admin/realms/mcp/clients"]
        assert listing == pages, "only managed clients are read: the marker is searchable"
        assert proxy.counts["GET /admin/realms/mcp/client-session-stats"] == 1
        assert proxy.total() <= pages + 3  # + session stats + the service account's token(s)

        proxy.reset()
        outcomes = await collect_garbage(adapter, [realm], unused_for=30 * DAY, now=int(time.time()), prefix=prefix)
        assert len(outcomes) == MANAGED and not any(o.decision.stale for o in outcomes)
        assert per_client_calls(proxy) == {} and proxy.total() <= pages + 2
        assert "GET /admin/realms/mcp/client-session-stats" not in proxy.counts, "a 403 is not asked again"

        proxy.reset()
        counted = await ClientQuota(adapter, max_clients=1_000_000).refresh(realm)
        assert counted == managed_in_realm
        assert proxy.counts == {"GET /admin/realms/mcp/clients": pages}, "one pass over managed clients only"
    finally:
        await adapter.close()


def refuses_unsearchable_attributes() -> bool:
    """Keycloak 26.5 and later answer a ``q=`` on an attribute that is not searchable 400; 24 to 26.4 ignore it."""
    return version_tuple(keycloak_version()) >= (26, 5)


async def unsearchable_marker_adapter(
    http: aiohttp.ClientSession,
    keycloak: KeycloakProvider,
    proxies: list[RecordingProxy],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[KeycloakAdapter, RecordingProxy]:
    """A started adapter (pages of :data:`PAGE`) behind a recording proxy whose marker search and start-up probe name
    an attribute the realm does not allow for search, as on a stock Keycloak."""
    monkeypatch.setattr(adapters.keycloak.adapter, "PAGE_SIZE", PAGE)
    monkeypatch.setattr(adapters.keycloak.adapter, "MANAGED_QUERY", "dcr.gateway.not-searchable:true")
    monkeypatch.setattr(adapters.keycloak.adapter, "MARKER_PROBE", "dcr.gateway.not-searchable:probe")
    proxy = await recording(proxies, keycloak.base_url)
    adapter = keycloak_adapter_at(keycloak, proxy.url, keycloak.admin_client_id, keycloak.admin_client_secret)
    await adapter.start(http)
    return adapter, proxy


async def test_keycloak_without_the_searchable_marker_lists_every_client_and_filters_itself(
    http: aiohttp.ClientSession,
    keycloak_provider: KeycloakProvider,
    keycloak_clients: tuple[str, list[ManagedClient]],
    proxy_for: list[RecordingProxy],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stock Keycloak 26.5 or later answers the marker search 400 (here: an attribute the realm does not allow for
    search): the adapter falls back, once, to pages of every client, and lists and counts the same clients. Keycloak
    24 to 26.4 ignore the attribute and answer pages of every client at once (no 400): the same clients again."""
    prefix, managed = keycloak_clients
    realm = keycloak_provider.realm
    adapter, proxy = await unsearchable_marker_adapter(http, keycloak_provider, proxy_for, monkeypatch)
    try:
        managed_in_realm, everything = await keycloak_counts(http, keycloak_provider)
        records = await managed_clients(adapter, [realm], prefix=prefix)
        assert sorted(r.client.client_id for r in records) == sorted(c.client_id for c in managed)
        refused = 1 if refuses_unsearchable_attributes() else 0  # the 400, then all
        assert proxy.counts["GET /admin/realms/mcp/clients"] == refused + everything // PAGE + 1
        proxy.reset()
        assert await ClientQuota(adapter, max_clients=1_000_000).refresh(realm) == managed_in_realm
        assert proxy.counts == {"GET /admin/realms/mcp/clients": everything // PAGE + 1}, "the 400 is remembered"
    finally:
        await adapter.close()


async def test_keycloak_detection_finds_the_marker_not_searchable_once_and_listings_never_ask_for_it(
    http: aiohttp.ClientSession,
    keycloak_provider: KeycloakProvider,
    proxy_for: list[RecordingProxy],
    monkeypatch: pytest.MonkeyPatch,
    info_logs: io.StringIO,
) -> None:
    """Issue 13: the start-up probe asks for a marker value no client has. Keycloak 26.5 and later refuse an attribute
    that is not searchable (400), 24 to 26.4 ignore it and answer the realm's clients; either way the adapter says so
    once, naming the variable for the release, and its listings go straight to pages of every client."""
    realm = keycloak_provider.realm
    adapter, proxy = await unsearchable_marker_adapter(http, keycloak_provider, proxy_for, monkeypatch)
    try:
        detected = await adapter.detect_version()
        assert detected.features["managed_marker_search"] is False, detected
        lines = [json.loads(line) for line in info_logs.getvalue().splitlines() if line.strip()]
        said = [line for line in lines if line.get("event") == "keycloak.marker_not_searchable"]
        expected = "refused" if refuses_unsearchable_attributes() else "ignored"
        assert [(line["realm"], line["keycloak"]) for line in said] == [(realm, expected)], said
        assert "SEARCHABLE_ATTRIBUTES" in said[0]["hint"]
        _, everything = await keycloak_counts(http, keycloak_provider)
        proxy.reset()
        await adapter.count_managed(realm)
        assert proxy.counts == {"GET /admin/realms/mcp/clients": everything // PAGE + 1}, "no search is tried"
    finally:
        await adapter.close()


async def test_keycloak_session_counts_come_from_one_call_with_view_realm(
    http: aiohttp.ClientSession,
    keycloak_provider: KeycloakProvider,
    keycloak_adapter: KeycloakAdapter,
    keycloak_clients: tuple[str, list[ManagedClient]],
    proxy_for: list[RecordingProxy],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Credentials that also hold ``realm-management/view-realm`` read every client's sessions in one
    ``client-session-stats`` call: ``gc`` keeps the client a user signed in with, with no call per client."""
    prefix, managed = keycloak_clients
    realm = keycloak_provider.realm
    operator = f"{prefix}operator"
    secret = f"dev-only-{uuid.uuid4().hex}"
    base = f"{keycloak_provider.admin_realm_url}/clients"
    admin = await master_admin_headers(http, keycloak_provider)
    body = {"clientId": operator, "secret": secret, "serviceAccountsEnabled": True, "standardFlowEnabled": False}
    async with http.post(base, json=body, headers=admin) as response:
        assert response.status == 201, await response.text()
        operator_id = response.headers["Location"].rsplit("/", 1)[-1]
    try:
        await grant_realm_management_roles(http, keycloak_provider, operator, ["manage-clients", "view-realm"])
        busy = managed[0]
        await keycloak_sign_in(http, keycloak_provider, busy.client_id)

        monkeypatch.setattr(adapters.keycloak.adapter, "PAGE_SIZE", PAGE)
        proxy = await recording(proxy_for, keycloak_provider.base_url)
        adapter = keycloak_adapter_at(keycloak_provider, proxy.url, operator, secret)
        await adapter.start(http)
        try:
            outcomes = await collect_garbage(adapter, [realm], unused_for=0, now=int(time.time()) + 60, prefix=prefix)
        finally:
            await adapter.close()
        judged = {o.client.client_id: o for o in outcomes}
        assert len(judged) == MANAGED
        assert not judged[busy.client_id].decision.stale
        assert judged[busy.client_id].decision.reason == "in use: 1 active and 0 offline sessions"
        assert all(judged[c.client_id].decision.stale for c in managed[1:])
        assert all(o.sessions_known for o in outcomes)
        assert proxy.counts["GET /admin/realms/mcp/client-session-stats"] == 1
        assert per_client_calls(proxy) == {}, "no call per client, stale ones included (a dry run)"
    finally:
        async with http.delete(f"{base}/{operator_id}", headers=admin) as response:
            assert response.status == 204


class StatsAnswering(RecordingProxy):
    """The recording proxy, answering Keycloak's ``client-session-stats`` itself (``answer``) and forwarding the
    rest to the real Keycloak."""

    def __init__(self, upstream: str, answer: str) -> None:
        super().__init__(upstream)
        self.answer = answer

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if not request.path.endswith("/client-session-stats"):
            return await super()._forward(request)
        self.counts[f"{request.method} {template(request.path)}"] += 1
        if self.answer == "html":
            return web.Response(status=200, text="<html>maintenance</html>", content_type="text/html")
        if self.answer == "object":
            return web.json_response({"unexpected": "shape"})
        return web.Response(status=503, text="busy")


@pytest.mark.parametrize("answer", ["html", "object", "503"])
async def test_keycloak_unreadable_session_stats_leave_sessions_unknown(
    http: aiohttp.ClientSession,
    keycloak_provider: KeycloakProvider,
    keycloak_adapter: KeycloakAdapter,
    answer: str,
) -> None:
    """``client-session-stats`` is optional: a 200 whose body is not the list of stats, or Keycloak unavailable for
    that one call, leaves the sessions unknown (as the 403 does) and the listing goes on; ``gc`` then reads them
    per client for the clients its times call stale."""
    realm = keycloak_provider.realm
    prefix = f"stats-{uuid.uuid4().hex[:8]}-"
    managed = await create_managed(keycloak_adapter, realm, prefix, 2)
    proxy = StatsAnswering(keycloak_provider.base_url, answer)
    await proxy.start()
    adapter = keycloak_adapter_at(
        keycloak_provider, proxy.url, keycloak_provider.admin_client_id, keycloak_provider.admin_client_secret
    )
    await adapter.start(http)
    try:
        records = await managed_clients(adapter, [realm], prefix=prefix)
        assert sorted(r.client.client_id for r in records) == sorted(c.client_id for c in managed)
        assert all(r.usage is not None and r.usage.active_sessions is None for r in records)
        assert proxy.counts["GET /admin/realms/mcp/client-session-stats"] == 1
        assert adapter.session_stats_unread[realm]
        outcomes = await collect_garbage(adapter, [realm], unused_for=0, now=int(time.time()) + 60, prefix=prefix)
        assert len(outcomes) == 2 and all(o.decision.stale and o.sessions_known for o in outcomes)
    finally:
        await adapter.close()
        await proxy.stop()
        await delete_managed(keycloak_adapter, realm, managed)
