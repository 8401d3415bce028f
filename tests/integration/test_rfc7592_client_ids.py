"""RFC 7592 client configuration paths with client ids no provider could hold, against the real Hydra and Keycloak.

A ``{client_id}`` path segment is attacker-chosen text. On Hydra it becomes a path segment of the admin API, where
``..%2F`` reached other admin endpoints (``/admin/keys/...``: Hydra's private signing keys) through Hydra's
path-cleaning redirects, ``x%2F..%2F<id>`` aliased a real client, and odd bytes (NUL, control characters,
non-UTF-8 escapes) ended in 500s or 503s. RFC 7592 section 2.1: "If the client does not exist on this server, the
server MUST respond with HTTP 401 Unauthorized": every one of these is the uniform ``401 invalid_token`` that a
wrong token gets, decided before any provider call (Hydra's own request log, and a count of the Keycloak adapter's
HTTP requests, show that none was made), with no error-level line or traceback in the gateway's log.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from adapters.base import ProviderUnavailable
from adapters.hydra.adapter import HydraAdapter
from adapters.keycloak.admin import AdminResponse, KeycloakAdminClient
from devstack.process import free_port
from devstack.providers import HydraProvider, KeycloakProvider
from gateway.settings import Settings
from tests.integration.conftest import (
    GatewayProcess,
    InProcessGateways,
    client_record,
    hydra_target,
    keycloak_options,
    keycloak_target,
)
from tests.integration.flows import Target, native_client, register

UNIFORM_BODY = {
    "error": "invalid_token",
    "error_description": "the registration access token is not valid for this client",
}

ODD_SEGMENTS = (
    # other Hydra admin endpoints, through Hydra's path cleaning
    "..%2Ftrust%2Fgrants%2Fjwt-bearer%2Fissuers",
    "..%2Fkeys%2Fhydra.openid.id-token",
    "..%2F..%2Fhealth%2Falive",
    # aliases of the real client {id}
    "x%2F..%2F{id}",
    "{id}%2F",
    "{id}%2F.",
    "%2E%2F{id}",
    # dot segments and separators
    "..",
    ".",
    "%2E%2E",
    "%2E",
    "%2F",
    "a%5Cb",
    "a%3Fb",
    "a%23b",
    "a%20b",
    "a%25",
    "a%2525",
    # NUL and other control characters (item 7)
    "x%00",
    "%00",
    "x%0Ay",
    "x%0D%0AX-Injected:%201",
    "x%09",
    "x%1B",
    "x%7F",
    "x%C2%85",
    # not UTF-8 once decoded
    "%FF%FE",
    "x%C0%AF",
    "%ED%A0%80",
    "x%80",
    # longer than any client id a provider holds
    "x" * 256,
    # outside the conservative client_id syntax
    "%C3%BC",
    "%F0%9F%98%80",
)


def probe_urls(registration_endpoint: str, client_id: str) -> list[URL]:
    """The odd ``registration_client_uri`` forms, as raw (already encoded) URLs: aiohttp must send them as is."""
    return [
        URL(f"{registration_endpoint}/{segment.replace('{id}', client_id)}", encoded=True) for segment in ODD_SEGMENTS
    ]


async def assert_uniform_401(http: aiohttp.ClientSession, method: str, url: URL, token: str) -> None:
    async with http.request(method, url, headers={"Authorization": f"Bearer {token}"}, allow_redirects=False) as resp:
        body = await resp.text()
        assert resp.status == 401, (method, str(url), resp.status, body)
        assert resp.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"', str(url)
        assert json.loads(body) == UNIFORM_BODY, (str(url), body)


def tail(path: Path, offset: int) -> str:
    with path.open("rb") as stream:
        stream.seek(offset)
        return stream.read().decode("utf-8", "replace")


def assert_no_error_lines(log: str) -> None:
    assert "Traceback" not in log
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        assert entry.get("level") not in ("error", "critical", "exception"), line


async def registered_client(http: aiohttp.ClientSession, target: Target) -> dict[str, Any]:
    status, client = await register(http, target, native_client("odd-id probe"))
    assert status == 201, client
    return client


# ------------------------------------------------------------------------------------------------- Hydra


def hydra_admin_requests(log: str) -> list[str]:
    """Request lines Hydra logged for its admin API (``started handling request ... path:/admin/...``)."""
    return [line for line in log.splitlines() if "started handling request" in line and "path:/admin/" in line]


LOG_WAIT_SECONDS = 10.0


async def wait_for_admin_request(hydra: HydraProvider, offset: int, needle: str) -> list[str]:
    """Hydra's admin request lines since ``offset``, once one naming ``needle`` is there (a positive control that
    requests which happen are logged), or after :data:`LOG_WAIT_SECONDS`."""
    deadline = asyncio.get_running_loop().time() + LOG_WAIT_SECONDS
    while True:
        lines = hydra_admin_requests(tail(hydra.log_path, offset))
        if any(needle in line for line in lines) or asyncio.get_running_loop().time() > deadline:
            return lines
        await asyncio.sleep(0.1)


async def test_hydra_odd_client_ids_answer_401_without_any_admin_call(
    http: aiohttp.ClientSession, hydra_provider: HydraProvider, hydra_gateway: GatewayProcess
) -> None:
    target = hydra_target(hydra_provider, hydra_gateway)
    client = await registered_client(http, target)
    client_id, token = client["client_id"], client["registration_access_token"]
    hydra_offset = hydra_provider.log_path.stat().st_size
    gateway_offset = hydra_gateway.log_path.stat().st_size

    for url in probe_urls(target.registration_endpoint, client_id):
        for method in ("GET", "PUT", "DELETE"):
            await assert_uniform_401(http, method, url, token)

    # positive control: a lookup that does happen (a wrong token for the real client) is in Hydra's log
    await assert_uniform_401(http, "GET", URL(client["registration_client_uri"]), "wrong-token")
    lines = await wait_for_admin_request(hydra_provider, hydra_offset, f"path:/admin/clients/{client_id} ")
    assert [line for line in lines if f"path:/admin/clients/{client_id} " in line], "the control lookup was not logged"
    # anything but the control, except the gateway's own background listings (``GET /admin/clients?...``, the
    # quota's count), which no request named
    stray = [
        line
        for line in lines
        if f"path:/admin/clients/{client_id} " not in line and "method:GET path:/admin/clients " not in line
    ]
    assert stray == [], "odd client ids reached Hydra's admin API:\n" + "\n".join(stray)

    # the aliases neither read nor deleted the real client
    assert await client_record(hydra_provider, http, client_id) is not None
    async with http.get(client["registration_client_uri"], headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200
    assert_no_error_lines(tail(hydra_gateway.log_path, gateway_offset))


async def test_hydra_admin_calls_never_follow_redirects(
    http: aiohttp.ClientSession, hydra_provider: HydraProvider
) -> None:
    """Even a path the adapter did not check (an adoption by id) cannot be redirected by Hydra's path cleaning to
    another admin endpoint: Hydra answers 301 to ``/admin/keys/...``, and the adapter does not follow it."""
    adapter = HydraAdapter(admin_url=hydra_provider.admin_url, public_url=hydra_provider.public_url)
    offset = hydra_provider.log_path.stat().st_size
    async with aiohttp.ClientSession() as session:
        await adapter.start(session)
        with pytest.raises(ProviderUnavailable, match="redirect"):
            await adapter._call("GET", "/admin/clients/..%2Fkeys%2Fhydra.openid.id-token")
    lines = await wait_for_admin_request(hydra_provider, offset, "path:/admin/clients/..%2Fkeys")
    assert any("/admin/clients/..%2Fkeys" in line for line in lines)
    assert not [line for line in lines if "path:/admin/keys" in line], "the redirect to the signing keys was followed"


# ---------------------------------------------------------------------------------------------- Keycloak


class AdminRequests:
    """Every admin request the Keycloak adapter sends, recorded (the real requests still go out)."""

    def __init__(self) -> None:
        self.urls: list[URL] = []

    def client_lookups(self) -> list[URL]:
        return [url for url in self.urls if url.path.endswith("/clients") or "/clients/" in url.path]


@pytest.fixture
def keycloak_requests(monkeypatch: pytest.MonkeyPatch) -> Iterator[AdminRequests]:
    recorded = AdminRequests()
    original = KeycloakAdminClient.request

    async def request(self: KeycloakAdminClient, method: str, path: str, **kwargs: Any) -> AdminResponse:
        params = {k: str(v) for k, v in (kwargs.get("params") or {}).items() if v is not None}
        recorded.urls.append(URL(self.base_url + path).with_query(params))
        return await original(self, method, path, **kwargs)

    monkeypatch.setattr(KeycloakAdminClient, "request", request)
    yield recorded


async def test_keycloak_odd_client_ids_answer_401_without_any_client_lookup(
    http: aiohttp.ClientSession,
    keycloak_provider: KeycloakProvider,
    start: InProcessGateways,
    keycloak_requests: AdminRequests,
) -> None:
    """The Keycloak adapter looks clients up by ``clientId`` query parameter, so a path cannot escape there; still,
    an id no provider could hold is never looked up (NUL and control characters made Keycloak fail, item 7)."""
    port = free_port()
    options = keycloak_options(keycloak_provider, f"http://127.0.0.1:{port}")
    gateway = await start(Settings(**options, limits={"per_source_limit": 0, "global_limit": 0}))
    base = str(gateway.make_url("")).rstrip("/")
    registration_endpoint = f"{base}/realms/{keycloak_provider.realm}/register"
    async with http.post(registration_endpoint, json=native_client("odd-id probe")) as resp:
        assert resp.status == 201, await resp.text()
        client = await resp.json()
    client_id, token = client["client_id"], client["registration_access_token"]
    keycloak_requests.urls.clear()

    for url in probe_urls(registration_endpoint, client_id):
        for method in ("GET", "PUT", "DELETE"):
            await assert_uniform_401(http, method, url, token)
    assert keycloak_requests.client_lookups() == [], keycloak_requests.client_lookups()

    # positive control: the real client with a wrong token is looked up (and counted)
    await assert_uniform_401(http, "GET", URL(f"{registration_endpoint}/{client_id}"), "wrong-token")
    assert [url.query.get("clientId") for url in keycloak_requests.client_lookups()] == [client_id]
    assert await client_record(keycloak_provider, http, client_id) is not None


async def test_keycloak_session_gateway_answers_odd_client_ids_401(
    http: aiohttp.ClientSession, keycloak_provider: KeycloakProvider, keycloak_gateway: GatewayProcess
) -> None:
    target = keycloak_target(keycloak_provider, keycloak_gateway.url, keycloak_gateway.log_path)
    client = await registered_client(http, target)
    offset = keycloak_gateway.log_path.stat().st_size
    for url in probe_urls(target.registration_endpoint, client["client_id"]):
        for method in ("GET", "DELETE"):
            await assert_uniform_401(http, method, url, client["registration_access_token"])
    assert await client_record(keycloak_provider, http, client["client_id"]) is not None
    assert_no_error_lines(tail(keycloak_gateway.log_path, offset))
