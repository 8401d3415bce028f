"""Rate limits shared through a real Redis, and the managed-client quota on the real providers.

A real ``redis-server`` (Debian's package, ``make system-deps``) is started per test on a free loopback port,
with a password, no persistence; tests that need it are skipped (with the reason) only when the binary is
absent. Gateways run in-process (``create_app`` + aiohttp's test server) in front of the session's real Hydra
and Keycloak, so two instances can share one Redis and their logs can be read.
"""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
from aiohttp.test_utils import TestClient

from adapters.base import DocumentClients, ProviderAdapter
from adapters.registry import get_factory
from devstack.process import LOOPBACK, free_port
from devstack.providers import HydraProvider, KeycloakProvider
from gateway.app import ADAPTER, LIMITS
from gateway.limits.store import CounterStoreUnavailable, RedisCounterStore
from gateway.settings import Settings
from tests.integration.conftest import InProcessGateways, hydra_options, keycloak_options

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_PASSWORD = "dev-only-redis-password-never-logged"
NATIVE = {
    "client_name": "limits test",
    "redirect_uris": ["http://127.0.0.1:3000/callback"],
    "token_endpoint_auth_method": "none",
}

needs_redis = pytest.mark.skipif(
    not Path(REDIS_SERVER).exists(), reason=f"{REDIS_SERVER} not installed (make system-deps installs redis-server)"
)

Start = InProcessGateways


class RedisServer:
    """A ``redis-server`` subprocess on loopback that a test can kill and start again on the same port."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{REDIS_PASSWORD}@{LOOPBACK}:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host=LOOPBACK, port=self.port, password=REDIS_PASSWORD, socket_timeout=2)

    def start(self, timeout: float = 10.0) -> None:
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no"]
        argv += ["--requirepass", REDIS_PASSWORD]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.client() as probe:
                    probe.ping()
                return
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start; see {self.log_path}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if not Path(REDIS_SERVER).exists():
        pytest.skip(f"{REDIS_SERVER} not installed (make system-deps installs redis-server)")
    server = RedisServer(tmp_path / "redis.log")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
async def start(start: InProcessGateways) -> AsyncIterator[InProcessGateways]:
    """The shared ``start``; afterwards, what this test registered is removed from the session's provider."""
    yield start
    if start.clients:
        await delete_test_clients(start.clients[0].app[ADAPTER])


async def delete_test_clients(adapter: ProviderAdapter) -> None:
    for issuer in adapter.issuers():
        ours = [
            c.client_id
            async for c in adapter.list_clients(issuer.key)
            if c.metadata.client_name == NATIVE["client_name"]
        ]
        for client_id in ours:
            await adapter.delete_client(issuer.key, client_id)


def hydra_settings(hydra: HydraProvider, **limits: Any) -> Settings:
    return Settings(**hydra_options(hydra), trust_forwarded_for=True, limits=limits)


def keycloak_settings(keycloak: KeycloakProvider, **limits: Any) -> Settings:
    return Settings(**keycloak_options(keycloak, f"http://{LOOPBACK}:{free_port()}"), limits=limits)


async def register(client: TestClient[Any, Any], path: str = "/register", source: str | None = None) -> int:
    headers = {"X-Forwarded-For": source} if source else {}
    async with client.post(path, json=NATIVE, headers=headers) as response:
        body = await response.json()
        assert response.status != 500, body
        if response.status == 429:
            assert body["error"] == "temporarily_unavailable"
            assert int(response.headers["Retry-After"]) >= 1
        return response.status


# ----------------------------------------------------------------------------- the Redis store itself


@needs_redis
async def test_redis_counts_are_atomic_across_stores_and_a_window_is_never_extended(
    redis_server: RedisServer,
) -> None:
    first = RedisCounterStore.from_url(redis_server.url, key_prefix="t1:")
    second = RedisCounterStore.from_url(redis_server.url, key_prefix="t1:")
    try:
        results = await asyncio.gather(
            *(store.incr("burst", window_seconds=30) for _ in range(50) for store in (first, second))
        )
        assert sorted(count for count, _ in results) == list(range(1, 101))  # no count lost or repeated
        assert all(0 < reset <= 30 for _, reset in results)
        await asyncio.sleep(1.1)
        count, reset = await first.incr("burst", window_seconds=30)
        assert count == 101
        assert reset < 29  # later hits do not push the window's end
        with redis_server.client() as direct:
            assert int(direct.get("t1:burst") or 0) == 101  # the prefix is applied
            assert 0 < direct.pttl("t1:burst") <= 30_000
        other = RedisCounterStore.from_url(redis_server.url, key_prefix="other-deployment:")
        assert (await other.incr("burst", window_seconds=30))[0] == 1
        await other.close()
        short = await first.incr("short", window_seconds=0.2)
        await asyncio.sleep(0.3)
        assert (await first.incr("short", window_seconds=0.2))[0] == 1 == short[0]
    finally:
        await first.close()
        await second.close()


@needs_redis
async def test_a_store_on_a_down_redis_fails_fast_then_recovers(redis_server: RedisServer) -> None:
    store = RedisCounterStore.from_url(redis_server.url, retry_seconds=0.5, timeout=0.5)
    try:
        assert (await store.incr("k", window_seconds=60))[0] == 1
        redis_server.kill()
        with pytest.raises(CounterStoreUnavailable) as caught:
            await store.incr("k", window_seconds=60)
        assert REDIS_PASSWORD not in str(caught.value)
        started = time.monotonic()
        with pytest.raises(CounterStoreUnavailable):  # inside retry_seconds: no attempt at all
            await store.incr("k", window_seconds=60)
        assert time.monotonic() - started < 0.05
        redis_server.start()
        await asyncio.sleep(0.6)
        assert (await store.incr("k", window_seconds=60))[0] == 1  # a fresh Redis (no persistence)
    finally:
        await store.close()


# --------------------------------------------------------------------- two gateways, one shared budget


@needs_redis
async def test_two_gateways_sharing_redis_enforce_one_per_source_budget(
    hydra_provider: HydraProvider, redis_server: RedisServer, start: Start
) -> None:
    limits = {"backend": "redis", "redis_url": redis_server.url, "per_source_limit": 3, "global_limit": 100}
    first = await start(hydra_settings(hydra_provider, **limits))
    second = await start(hydra_settings(hydra_provider, **limits))

    statuses = [await register(gateway, source="198.51.100.10") for gateway in (first, second, first, second)]

    assert statuses == [201, 201, 201, 429]
    assert await register(first, source="198.51.100.10") == 429
    assert await register(second, source="198.51.100.11") == 201  # another address, its own budget


@needs_redis
async def test_two_gateways_sharing_redis_enforce_one_global_budget(
    hydra_provider: HydraProvider, redis_server: RedisServer, start: Start
) -> None:
    limits = {"backend": "redis", "redis_url": redis_server.url, "per_source_limit": 10, "global_limit": 4}
    first = await start(hydra_settings(hydra_provider, **limits))
    second = await start(hydra_settings(hydra_provider, **limits))

    statuses = [
        await register(gateway, source=f"203.0.113.{index}")
        for index, gateway in enumerate((first, second, first, second, first, second))
    ]

    assert statuses == [201, 201, 201, 201, 429, 429]


@needs_redis
async def test_separate_key_prefixes_keep_deployments_apart(
    hydra_provider: HydraProvider, redis_server: RedisServer, start: Start
) -> None:
    shared = {"backend": "redis", "redis_url": redis_server.url, "per_source_limit": 1, "global_limit": 0}
    first = await start(hydra_settings(hydra_provider, key_prefix="blue:", **shared))
    second = await start(hydra_settings(hydra_provider, key_prefix="green:", **shared))
    assert [await register(first), await register(second)] == [201, 201]
    assert [await register(first), await register(second)] == [429, 429]


# ------------------------------------------------------------------------------ Redis dies mid-test


@needs_redis
@pytest.mark.parametrize(
    ("mode", "after_kill"),
    [
        ("local", [201, 201, 429]),  # limits still hold, counted in this instance's memory
        ("open", [201, 201, 201]),  # unlimited while Redis is down
        ("closed", [503, 503, 503]),  # registration unavailable while Redis is down
    ],
)
async def test_redis_killed_mid_test_gives_the_configured_behaviour_never_a_500(
    hydra_provider: HydraProvider,
    redis_server: RedisServer,
    start: Start,
    info_logs: io.StringIO,
    mode: str,
    after_kill: list[int],
) -> None:
    limits = {
        "backend": "redis",
        "redis_url": redis_server.url,
        "per_source_limit": 2,
        "global_limit": 0,
        "on_backend_failure": mode,
        "backend_retry_seconds": 1,
    }
    gateway = await start(hydra_settings(hydra_provider, **limits))
    assert await register(gateway, source="198.51.100.20") == 201
    with redis_server.client() as direct:
        assert direct.keys("dcr-gateway:rl:register:*")  # counted in Redis while it is up

    redis_server.kill()
    statuses = [await register(gateway, source="198.51.100.30") for _ in after_kill]

    assert statuses == after_kill
    if mode == "closed":
        async with gateway.post("/register", json=NATIVE) as response:
            assert response.status == 503
            assert response.headers["Retry-After"] == "1"
            assert (await response.json())["error"] == "temporarily_unavailable"
    logged = [json.loads(line) for line in info_logs.getvalue().splitlines()]
    outages = [line for line in logged if line["event"] == "limits.store_unavailable"]
    assert len(outages) == 1  # loud once per outage, not once per request
    assert outages[0]["level"] == "error"
    assert REDIS_PASSWORD not in info_logs.getvalue()

    redis_server.start()  # back (empty: no persistence); the shared counting resumes after the retry pause
    await asyncio.sleep(1.1)
    assert await register(gateway, source="198.51.100.40") == 201
    with redis_server.client() as direct:
        assert direct.keys("dcr-gateway:rl:register:*:src:198.51.100.40")
    assert any(json.loads(line)["event"] == "limits.store_recovered" for line in info_logs.getvalue().splitlines())


@needs_redis
async def test_a_gateway_starts_and_serves_while_redis_is_down(
    hydra_provider: HydraProvider, redis_server: RedisServer, start: Start
) -> None:
    url = redis_server.url
    redis_server.kill()
    gateway = await start(hydra_settings(hydra_provider, backend="redis", redis_url=url, per_source_limit=1))
    assert (await gateway.get("/healthz")).status == 200
    assert [await register(gateway), await register(gateway)] == [201, 429]


# ---------------------------------------------------------------------------- quota on real providers


async def managed_count(settings: Settings, issuer: str) -> int:
    adapter = get_factory(settings.provider)(settings)
    async with aiohttp.ClientSession() as session:
        await adapter.start(session)
        try:
            # what the quota counts: registered clients and clients made from metadata documents
            count = len([client async for client in adapter.list_clients(issuer)])
            if isinstance(adapter, DocumentClients):
                count += len([client async for client in adapter.list_document_clients(issuer)])
            return count
        finally:
            await adapter.close()


async def assert_quota_holds(gateway: TestClient[Any, Any], issuer: str, path: str, slots: int) -> None:
    """``slots`` registrations succeed, the next is refused with 403; a deletion frees a slot, whether the
    gateway hears of it (the RFC 7592 hook) or finds out at its next listing."""
    created: list[str] = []
    for _ in range(slots):
        async with gateway.post(path, json=NATIVE) as response:
            assert response.status == 201, await response.text()
            created.append((await response.json())["client_id"])
    async with gateway.post(path, json=NATIVE) as response:
        assert response.status == 403
        body = await response.json()
        assert body["error"] == "access_denied"
        assert response.headers["Cache-Control"] == "no-store"
    adapter = gateway.app[ADAPTER]
    quota = gateway.app[LIMITS].quota

    await adapter.delete_client(issuer, created.pop())
    quota.client_deleted(issuer)  # what this instance's RFC 7592 DELETE does
    async with gateway.post(path, json=NATIVE) as response:
        assert response.status == 201
        created.append((await response.json())["client_id"])
    assert (await register(gateway, path)) == 403

    await adapter.delete_client(issuer, created.pop())  # elsewhere: another instance, the clients CLI
    assert (await register(gateway, path)) == 403  # not known yet
    await quota.refresh(issuer)  # what the periodic listing does
    assert (await register(gateway, path)) == 201


async def test_quota_on_hydra(hydra_provider: HydraProvider, start: Start) -> None:
    settings = hydra_settings(hydra_provider)
    existing = await managed_count(settings, "default")
    gateway = await start(hydra_settings(hydra_provider, max_clients_per_issuer=existing + 2))
    await assert_quota_holds(gateway, "default", "/register", slots=2)


async def test_quota_on_keycloak(keycloak_provider: KeycloakProvider, start: Start) -> None:
    settings = keycloak_settings(keycloak_provider)
    realm = keycloak_provider.realm
    existing = await managed_count(settings, realm)
    gateway = await start(keycloak_settings(keycloak_provider, max_clients_per_issuer=existing + 2))
    await assert_quota_holds(gateway, realm, f"/realms/{realm}/register", slots=2)
