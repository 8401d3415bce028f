"""The discovery cache: fetch, rewrite, keep the last good document, refresh in the background."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from pytest_aiohttp import AiohttpServer
from rfc8414_fakes import KEYCLOAK_ISSUER, FakeProvider
from structlog.testing import capture_logs

from gateway.rfc8414.cache import DiscoveryCache, make_cached_document
from gateway.rfc8414.rewrite import rewrite, serialize

REGISTER = "https://auth.example.com/realms/mcp/register"


@pytest.fixture
async def provider(aiohttp_server: AiohttpServer) -> FakeProvider:
    fake = FakeProvider()
    fake.server = await aiohttp_server(fake.app())
    return fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
async def caches(
    session: aiohttp.ClientSession, provider: FakeProvider
) -> AsyncIterator[Callable[..., DiscoveryCache]]:
    made: list[DiscoveryCache] = []

    def make(**overrides: Any) -> DiscoveryCache:
        options: dict[str, Any] = {
            "registration_endpoint": REGISTER,
            "expected_issuer": KEYCLOAK_ISSUER,
            "refresh_interval": 60.0,
            "retry_interval": 5.0,
            "timeout": 2.0,
            **overrides,
        }
        metadata_url = options.pop("metadata_url", provider.metadata_url)
        cache = DiscoveryCache(session, metadata_url, **options)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        await cache.close()


async def eventually(condition: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_start_fetches_and_stores_the_rewritten_serialized_document(
    caches: Callable[..., DiscoveryCache], provider: FakeProvider
) -> None:
    cache = caches()
    await cache.start()
    current = cache.current()
    assert current is not None
    expected = rewrite(provider.document, registration_endpoint=REGISTER, expected_issuer=KEYCLOAK_ISSUER)
    assert current.body == serialize(expected)
    assert current.document["registration_endpoint"] == REGISTER
    assert current.document["issuer"] == KEYCLOAK_ISSUER
    assert provider.hits == 1


async def test_extra_fields_reach_the_served_document(
    caches: Callable[..., DiscoveryCache],
) -> None:
    cache = caches(extra={"client_id_metadata_document_supported": True})
    document = await cache.get()
    assert document is not None
    assert json.loads(document.body)["client_id_metadata_document_supported"] is True


def test_etag_is_strong_and_follows_the_bytes() -> None:
    first = make_cached_document({"issuer": "https://h", "a": 1})
    assert first.etag.startswith('"') and first.etag.endswith('"')
    assert make_cached_document({"a": 1, "issuer": "https://h"}).etag == first.etag
    assert make_cached_document({"issuer": "https://h", "a": 2}).etag != first.etag


async def test_fetch_sends_the_configured_headers_and_asks_for_plain_json(
    caches: Callable[..., DiscoveryCache], provider: FakeProvider
) -> None:
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "auth.example.com", "X-Forwarded-Port": "443"}
    await caches(headers=forwarded).refresh()
    sent = provider.request_headers[-1]
    for name, value in forwarded.items():
        assert sent[name] == value
    assert sent["Accept-Encoding"] == "identity"
    assert sent["Accept"] == "application/json"


def _fail_with_500(provider: FakeProvider) -> None:
    provider.status = 500


def _fail_with_html(provider: FakeProvider) -> None:
    provider.raw_body = b"<html>maintenance</html>"


def _fail_with_other_issuer(provider: FakeProvider) -> None:
    provider.document = {**provider.document, "issuer": "http://keycloak:8080/realms/mcp"}


def _fail_with_array(provider: FakeProvider) -> None:
    provider.raw_body = b"[]"


@pytest.mark.parametrize(
    ("break_provider", "cause"),
    [
        (_fail_with_500, "HTTP 500"),
        (_fail_with_html, "Expecting value"),
        (_fail_with_other_issuer, "http://keycloak:8080/realms/mcp"),
        (_fail_with_array, "JSON object"),
    ],
)
async def test_last_good_document_is_served_when_the_provider_starts_failing(
    caches: Callable[..., DiscoveryCache],
    provider: FakeProvider,
    break_provider: Callable[[FakeProvider], None],
    cause: str,
) -> None:
    cache = caches()
    await cache.start()
    good = cache.current()
    assert good is not None

    break_provider(provider)
    with capture_logs() as logs:
        assert await cache.refresh() is good

    assert provider.hits == 2
    assert cache.current() is good
    [warning] = [entry for entry in logs if entry["event"] == "discovery.refresh_failed"]
    assert warning["log_level"] == "warning"
    assert cause in warning["cause"]
    assert warning["serving"] == "last good document"


async def test_last_good_document_is_served_when_the_provider_is_down(
    caches: Callable[..., DiscoveryCache], provider: FakeProvider
) -> None:
    cache = caches()
    good = await cache.get()
    assert good is not None
    assert provider.server is not None
    await provider.server.close()

    with capture_logs() as logs:
        assert await cache.refresh() is good
    assert [entry["error_type"] for entry in logs] == ["ClientConnectorError"]


async def test_last_good_document_is_served_when_the_provider_times_out(
    caches: Callable[..., DiscoveryCache], provider: FakeProvider
) -> None:
    cache = caches(timeout=0.1)
    good = await cache.get()
    provider.delay = 1.0
    started = time.monotonic()
    with capture_logs() as logs:
        assert await cache.refresh() is good
    assert time.monotonic() - started < 0.9
    assert [entry["event"] for entry in logs] == ["discovery.refresh_failed"]


async def test_log_never_shows_credentials_of_the_metadata_url(
    caches: Callable[..., DiscoveryCache], provider: FakeProvider
) -> None:
    provider.status = 503
    url = provider.metadata_url.replace("http://", "http://admin:s3cr3t@") + "?token=s3cr3t"
    with capture_logs() as logs:
        assert await caches(metadata_url=url).get() is None
    assert logs
    assert "s3cr3t" not in repr(logs)


async def test_concurrent_first_requests_share_one_fetch(
    caches: Callable[..., DiscoveryCache], provider: FakeProvider
) -> None:
    provider.delay = 0.2
    cache = caches()
    results = await asyncio.gather(*(cache.get() for _ in range(25)))
    assert provider.hits == 1
    assert results[0] is not None
    assert all(result is results[0] for result in results)


async def test_a_cancelled_caller_does_not_cancel_the_shared_fetch(
    caches: Callable[..., DiscoveryCache], provider: FakeProvider
) -> None:
    provider.delay = 0.2
    cache = caches()
    impatient = asyncio.create_task(cache.get())
    patient = asyncio.create_task(cache.get())
    await asyncio.sleep(0.05)
    impatient.cancel()
    assert await patient is not None
    assert provider.hits == 1


async def test_without_a_document_failed_fetches_are_not_repeated_at_once(
    caches: Callable[..., DiscoveryCache], provider: FakeProvider
) -> None:
    provider.status = 500
    cache = caches()
    assert await cache.get() is None
    assert await cache.get() is None
    assert provider.hits == 1
    assert cache.retry_after == 5


async def test_background_refresh_picks_up_provider_changes(
    caches: Callable[..., DiscoveryCache], provider: FakeProvider
) -> None:
    cache = caches(refresh_interval=0.05)
    await cache.start()
    first = cache.current()
    assert first is not None

    provider.document = {**provider.document, "service_documentation": "https://docs.example"}
    await eventually(lambda: cache.current() is not first)
    current = cache.current()
    assert current is not None
    assert current.document["service_documentation"] == "https://docs.example"
    assert current.etag != first.etag


async def test_unchanged_document_keeps_its_identity_and_etag(
    caches: Callable[..., DiscoveryCache], provider: FakeProvider
) -> None:
    cache = caches()
    first = await cache.refresh()
    assert await cache.refresh() is first
    assert provider.hits == 2


async def test_retries_at_the_retry_interval_while_there_is_no_document(
    caches: Callable[..., DiscoveryCache], provider: FakeProvider
) -> None:
    provider.status = 502
    cache = caches(refresh_interval=60.0, retry_interval=0.05)
    with capture_logs():
        await cache.start()
        assert cache.current() is None
        await eventually(lambda: provider.hits >= 3)
    provider.status = 200
    await eventually(lambda: cache.current() is not None)


async def test_close_stops_the_background_refresh(
    caches: Callable[..., DiscoveryCache], provider: FakeProvider
) -> None:
    cache = caches(refresh_interval=0.02)
    await cache.start()
    await eventually(lambda: provider.hits >= 2)
    await cache.close()
    hits = provider.hits
    await asyncio.sleep(0.1)
    assert provider.hits == hits


async def test_oversized_document_is_refused(caches: Callable[..., DiscoveryCache], provider: FakeProvider) -> None:
    with capture_logs() as logs:
        assert await caches(max_bytes=512).get() is None
    assert "exceeds 512" in logs[0]["cause"]


def test_intervals_must_be_positive(session: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError, match="positive"):
        DiscoveryCache(session, "http://127.0.0.1:1/x", registration_endpoint=REGISTER, retry_interval=0)


# ------------------------------------------------------------------- scopes_supported: what registration gets


class ScopesSource:
    """A registrable-scopes source (what the adapter and the policy allow) the test can change or break."""

    def __init__(self, scopes: frozenset[str] | None) -> None:
        self.scopes = scopes
        self.failure: Exception | None = None
        self.calls = 0

    async def __call__(self) -> frozenset[str] | None:
        self.calls += 1
        if self.failure is not None:
            raise self.failure
        return self.scopes


def _served_scopes(cache: DiscoveryCache) -> list[str]:
    current = cache.current()
    assert current is not None
    scopes: list[str] = json.loads(current.body)["scopes_supported"]
    assert list(current.document["scopes_supported"]) == scopes
    return scopes


async def test_served_scopes_are_the_providers_limited_to_the_registrable_ones(
    caches: Callable[..., DiscoveryCache], provider: FakeProvider
) -> None:
    source = ScopesSource(frozenset({"openid", "profile", "email", "offline_access", "mcp"}))
    cache = caches(registrable_scopes=source)
    await cache.start()
    assert _served_scopes(cache) == ["openid", "profile", "email", "offline_access"]
    expected = rewrite(
        provider.document,
        registration_endpoint=REGISTER,
        expected_issuer=KEYCLOAK_ISSUER,
        registrable_scopes=source.scopes,
    )
    current = cache.current()
    assert current is not None and current.body == serialize(expected)
    assert source.calls == 1


async def test_a_source_without_a_limit_serves_the_providers_scopes(
    caches: Callable[..., DiscoveryCache], provider: FakeProvider
) -> None:
    cache = caches(registrable_scopes=ScopesSource(None))
    await cache.start()
    assert _served_scopes(cache) == provider.document["scopes_supported"]


async def test_every_refresh_recomputes_the_registrable_scopes(
    caches: Callable[..., DiscoveryCache], provider: FakeProvider
) -> None:
    """The Keycloak adapter caches realm scopes for a minute: a realm change must reach discovery afterwards."""
    source = ScopesSource(frozenset({"openid", "profile"}))
    cache = caches(registrable_scopes=source, refresh_interval=0.05)
    await cache.start()
    first = cache.current()
    assert first is not None and _served_scopes(cache) == ["openid", "profile"]

    source.scopes = frozenset({"profile", "service_account"})  # e.g. service_account made default-optional
    await eventually(lambda: cache.current() is not first)
    assert _served_scopes(cache) == ["openid", "profile", "service_account"]
    assert source.calls >= 2
    assert provider.hits == source.calls  # asked once per fetch, no more


async def test_a_failing_source_keeps_the_last_scopes_it_told(
    caches: Callable[..., DiscoveryCache], provider: FakeProvider
) -> None:
    source = ScopesSource(frozenset({"profile", "mcp"}))
    cache = caches(registrable_scopes=source)
    await cache.start()
    source.failure = RuntimeError("keycloak list client scopes: ProviderUnavailable (HTTP 503)")
    provider.document = {**provider.document, "service_documentation": "https://docs.example"}

    with capture_logs() as logs:
        current = await cache.refresh()
    assert current is not None
    assert current.document["service_documentation"] == "https://docs.example"  # the provider's change is served
    assert _served_scopes(cache) == ["openid", "profile"]  # with the last registrable scopes
    [warning] = [entry for entry in logs if entry["event"] == "discovery.registrable_scopes_failed"]
    assert warning["log_level"] == "warning"
    assert "HTTP 503" in warning["cause"]
    assert warning["advertising"] == "last known scopes"


async def test_before_the_source_ever_answers_only_openid_is_advertised_and_retried_soon(
    caches: Callable[..., DiscoveryCache], provider: FakeProvider
) -> None:
    """Nothing unknown is advertised: a client authorizing with ``openid`` gets the provider's defaults, which
    every registration has. The cache retries at the retry interval, not the (long) refresh interval."""
    source = ScopesSource(frozenset({"profile", "email"}))
    source.failure = RuntimeError("keycloak default scopes: admin credentials refused (HTTP 401)")
    cache = caches(registrable_scopes=source, refresh_interval=60.0, retry_interval=0.05)
    with capture_logs() as logs:
        await cache.start()
    assert _served_scopes(cache) == ["openid"]
    assert [entry["advertising"] for entry in logs if "advertising" in entry] == ["openid only"]

    source.failure = None
    await eventually(lambda: _served_scopes(cache) == ["openid", "profile", "email"])
    calls = source.calls
    await asyncio.sleep(0.2)
    assert source.calls == calls  # settled: back to the refresh interval


async def test_a_provider_failure_does_not_ask_the_scopes_source(
    caches: Callable[..., DiscoveryCache], provider: FakeProvider
) -> None:
    source = ScopesSource(frozenset({"openid"}))
    provider.status = 500
    cache = caches(registrable_scopes=source)
    with capture_logs():
        assert await cache.get() is None
    assert source.calls == 0
