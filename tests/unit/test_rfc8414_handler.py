"""Discovery routes: 200 from memory at every probed location, conditional requests, CORS, never a 5xx."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, make_mocked_request
from pytest_aiohttp import AiohttpClient, AiohttpServer
from rfc8414_fakes import KEYCLOAK_ISSUER, FakeProvider
from structlog.testing import capture_logs

from gateway.cors import CorsPolicy
from gateway.rfc8414.cache import DiscoveryCache
from gateway.rfc8414.handler import discovery_routes, etag_matches, not_found_response
from gateway.rfc8414.wellknown import discovery_locations

REGISTER = "https://auth.example.com/realms/mcp/register"
REALM = "/realms/mcp"
RFC8414_PATH = "/.well-known/oauth-authorization-server/realms/mcp"
ANY = CorsPolicy(("*",))

Client = TestClient[web.Request, web.Application]


@dataclass
class Gateway:
    client: Client
    caches: dict[str, DiscoveryCache]


Build = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def provider(aiohttp_server: AiohttpServer) -> FakeProvider:
    fake = FakeProvider()
    fake.server = await aiohttp_server(fake.app())
    return fake


@pytest.fixture
async def gateway(aiohttp_client: AiohttpClient, provider: FakeProvider) -> AsyncIterator[Build]:
    """Build a discovery-only app: ``await gateway(start=True, cors=..., issuer_paths=(...))``."""
    session = aiohttp.ClientSession()
    made: list[DiscoveryCache] = []

    async def build(*, start: bool = True, cors: CorsPolicy = ANY, issuer_paths: tuple[str, ...] = (REALM,)) -> Gateway:
        caches: dict[str, DiscoveryCache] = {}
        for issuer_path in issuer_paths:
            cache = DiscoveryCache(
                session,
                provider.metadata_url,
                registration_endpoint=REGISTER,
                expected_issuer=KEYCLOAK_ISSUER,
                retry_interval=2.5,
            )
            made.append(cache)
            caches[issuer_path] = cache
            if start:
                await cache.start()
        app = web.Application()
        app.add_routes(discovery_routes(caches, cors=cors))
        return Gateway(await aiohttp_client(app), caches)

    yield build
    for cache in made:
        await cache.close()
    await session.close()


async def test_every_probed_location_serves_the_document(gateway: Build, provider: FakeProvider) -> None:
    client = (await gateway(issuer_paths=(REALM, ""))).client
    bodies = set()
    for issuer_path in (REALM, ""):
        for path in discovery_locations(issuer_path):
            response = await client.get(path)
            assert response.status == 200, path
            assert response.content_type == "application/json"
            assert response.headers["Cache-Control"] == "public, max-age=60"
            assert response.headers["ETag"].startswith('"')
            bodies.add(await response.read())
    assert len(bodies) == 1
    served = json.loads(bodies.pop())
    assert served["issuer"] == KEYCLOAK_ISSUER
    assert served["registration_endpoint"] == REGISTER
    assert "S256" in served["code_challenge_methods_supported"]
    assert provider.hits == 2  # one fetch per issuer, then memory


@pytest.mark.parametrize(
    "if_none_match", ["{etag}", "W/{etag}", '"other", {etag}', "*"], ids=["strong", "weak", "list", "star"]
)
async def test_matching_if_none_match_gives_304(gateway: Build, if_none_match: str) -> None:
    client = (await gateway()).client
    etag = (await client.get(RFC8414_PATH)).headers["ETag"]
    response = await client.get(RFC8414_PATH, headers={"If-None-Match": if_none_match.format(etag=etag)})
    assert response.status == 304
    assert response.headers["ETag"] == etag
    assert response.headers["Cache-Control"] == "public, max-age=60"
    assert await response.read() == b""


async def test_stale_if_none_match_gives_the_document(gateway: Build) -> None:
    client = (await gateway()).client
    response = await client.get(RFC8414_PATH, headers={"If-None-Match": '"0123"'})
    assert response.status == 200
    assert json.loads(await response.read())["issuer"] == KEYCLOAK_ISSUER


async def test_head_gives_headers_without_body(gateway: Build) -> None:
    client = (await gateway()).client
    body = await (await client.get(RFC8414_PATH)).read()
    response = await client.head(RFC8414_PATH)
    assert response.status == 200
    assert response.headers["Content-Length"] == str(len(body))
    assert response.headers["Content-Type"] == "application/json"
    assert await response.read() == b""


async def test_never_fetched_gives_404_with_retry_after_never_5xx(gateway: Build, provider: FakeProvider) -> None:
    provider.status = 500
    with capture_logs() as logs:
        client = (await gateway(issuer_paths=(REALM, ""))).client
        for issuer_path in (REALM, ""):
            for path in discovery_locations(issuer_path):
                response = await client.get(path, headers={"Origin": "http://localhost:6274"})
                assert response.status == 404, path
                assert response.headers["Retry-After"] == "3"
                assert response.headers["Cache-Control"] == "no-store"
                assert response.headers["Access-Control-Allow-Origin"] == "*"
                assert (await response.json())["error"] == "temporarily_unavailable"
    assert any(entry["event"] == "discovery.unavailable" for entry in logs)


async def test_a_failing_provider_does_not_change_what_is_served(gateway: Build, provider: FakeProvider) -> None:
    served = await gateway()
    before = await served.client.get(RFC8414_PATH)
    provider.status = 503
    with capture_logs():
        await served.caches[REALM].refresh()
    assert provider.hits == 2
    after = await served.client.get(RFC8414_PATH)
    assert after.status == 200
    assert after.headers["ETag"] == before.headers["ETag"]
    assert await after.read() == await before.read()


async def test_concurrent_first_requests_cause_one_upstream_fetch(gateway: Build, provider: FakeProvider) -> None:
    provider.delay = 0.2
    client = (await gateway(start=False)).client
    paths = list(discovery_locations(REALM)) * 5
    responses = await asyncio.gather(*(client.get(path) for path in paths))
    assert [response.status for response in responses] == [200] * len(paths)
    assert provider.hits == 1


async def test_document_is_readable_cross_origin(gateway: Build) -> None:
    client = (await gateway()).client
    response = await client.get(RFC8414_PATH, headers={"Origin": "http://localhost:6274"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "ETag" in response.headers["Access-Control-Expose-Headers"]


async def test_listed_origin_is_echoed_and_others_get_nothing(
    gateway: Build,
) -> None:
    client = (await gateway(cors=CorsPolicy(("http://localhost:6274",)))).client
    allowed = await client.get(RFC8414_PATH, headers={"Origin": "http://localhost:6274"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "http://localhost:6274"
    assert allowed.headers["Vary"] == "Origin"
    refused = await client.get(RFC8414_PATH, headers={"Origin": "https://evil.example"})
    assert refused.status == 200
    assert "Access-Control-Allow-Origin" not in refused.headers
    assert refused.headers["Vary"] == "Origin"


async def test_preflight_allows_the_mcp_protocol_version_header(
    gateway: Build,
) -> None:
    client = (await gateway()).client
    response = await client.options(
        RFC8414_PATH,
        headers={
            "Origin": "http://localhost:6274",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "mcp-protocol-version",
        },
    )
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Access-Control-Allow-Methods"] == "GET, HEAD, OPTIONS"
    assert "MCP-Protocol-Version" in response.headers["Access-Control-Allow-Headers"]


async def test_other_methods_are_refused_with_405(gateway: Build) -> None:
    client = (await gateway()).client
    response = await client.post(RFC8414_PATH, data=b"{}")
    assert response.status == 405


async def test_unknown_issuer_locations_are_not_routed(gateway: Build) -> None:
    client = (await gateway()).client
    response = await client.get("/.well-known/oauth-authorization-server/realms/other")
    assert response.status == 404


async def test_not_found_response_is_json_with_cors() -> None:
    request = make_mocked_request(
        "GET", "/.well-known/openid-configuration/realms/other", headers={"Origin": "http://localhost:6274"}
    )
    response = not_found_response(request, cors=ANY)
    assert response.status == 404
    assert response.content_type == "application/json"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.text is not None
    assert json.loads(response.text)["error"] == "not_found"


async def test_routes_can_be_built_before_the_caches_exist(
    aiohttp_client: AiohttpClient, provider: FakeProvider
) -> None:
    live: dict[str, DiscoveryCache] = {}
    app = web.Application()
    app.add_routes(discovery_routes(live, cors=ANY, issuer_paths=[REALM]))
    client = await aiohttp_client(app)
    with capture_logs():
        early = await client.get(RFC8414_PATH)
    assert early.status == 404
    assert early.headers["Retry-After"] == "1"

    async with aiohttp.ClientSession() as session:
        live[REALM] = DiscoveryCache(
            session, provider.metadata_url, registration_endpoint=REGISTER, expected_issuer=KEYCLOAK_ISSUER
        )
        late = await client.get(RFC8414_PATH)
        assert late.status == 200
        assert (await late.json())["registration_endpoint"] == REGISTER


def test_two_issuers_cannot_share_a_location() -> None:
    cache = object.__new__(DiscoveryCache)
    with pytest.raises(ValueError, match="share location"):
        discovery_routes({"/realms/mcp": cache, "/realms/mcp/": cache}, cors=ANY)


@pytest.mark.parametrize(
    ("header", "expected"),
    [('"a"', True), ('W/"a"', True), ('"b", "a"', True), ("*", True), ('"b"', False), ('"a ', False)],
)
def test_etag_matches_compares_weakly(header: str, expected: bool) -> None:
    assert etag_matches(header, '"a"') is expected
