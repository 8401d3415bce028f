"""Rate-limit arithmetic, source addresses, store failures, and the quota's counting, without a network."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import make_mocked_request

from adapters.base import ManagedClient, ProviderUnavailable
from gateway.limits.quota import ClientQuota, QuotaExceeded, spread
from gateway.limits.ratelimit import (
    RateLimit,
    RateLimited,
    RateLimiter,
    client_address,
    retry_after_seconds,
    source_key,
)
from gateway.limits.settings import BackendFailure
from gateway.limits.store import CounterStoreUnavailable, MemoryCounterStore
from gateway.oauth.errors import TemporarilyUnavailable
from gateway.oauth.metadata import ClientMetadata

# ---------------------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(("reset", "header"), [(0.0, 1), (0.2, 1), (1.0, 1), (1.01, 2), (59.5, 60)])
def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one(reset: float, header: int) -> None:
    assert retry_after_seconds(reset) == header


@pytest.mark.parametrize(
    ("limit", "count", "exceeded"), [(3, 1, False), (3, 3, False), (3, 4, True), (0, 10_000, False)]
)
def test_a_limit_admits_exactly_limit_requests_per_window(limit: int, count: int, exceeded: bool) -> None:
    assert RateLimit(limit, 60).exceeded(count) is exceeded


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        (" 192.0.2.7 ", "192.0.2.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("not-an-address", "unknown"),
        ("", "unknown"),
    ],
)
def test_sources_are_counted_by_address_and_ipv6_by_prefix(address: str, key: str) -> None:
    assert source_key(address) == key


def test_the_ipv6_prefix_length_is_configurable() -> None:
    assert source_key("2001:db8:1:2:3:4:5:6", ipv6_prefix_length=48) == "2001:db8:1::/48"
    assert source_key("2001:db8:1:2:3:4:5:6", ipv6_prefix_length=128) == "2001:db8:1:2:3:4:5:6/128"


@pytest.mark.parametrize(
    ("forwarded_for", "trust", "hops", "address"),
    [
        ([], False, 1, "10.0.0.9"),
        (["198.51.100.1"], False, 1, "10.0.0.9"),  # not trusted: a client could write anything there
        (["198.51.100.1"], True, 1, "198.51.100.1"),
        (["6.6.6.6, 198.51.100.1"], True, 1, "198.51.100.1"),  # the left entry is client-written
        (["6.6.6.6", "198.51.100.1"], True, 1, "198.51.100.1"),  # repeated header lines form one list
        (["6.6.6.6, 198.51.100.1, 203.0.113.5"], True, 2, "198.51.100.1"),
        (["198.51.100.1"], True, 2, "10.0.0.9"),  # shorter than the trusted chain: the peer
        (["garbage"], True, 1, "10.0.0.9"),
        (["2001:db8::1"], True, 1, "2001:db8::1"),
    ],
)
def test_the_source_is_the_peer_or_the_entry_the_trusted_proxy_appended(
    forwarded_for: list[str], trust: bool, hops: int, address: str
) -> None:
    assert client_address("10.0.0.9", forwarded_for, trust_forwarded_for=trust, trusted_hops=hops) == address


# ------------------------------------------------------------------------------------------- limiter


def request_from(peer: str, forwarded_for: str | None = None) -> Any:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    transport: Any = type("T", (), {"get_extra_info": lambda self, name, default=None: (peer, 0)})()
    return make_mocked_request("POST", "/register", headers=headers, transport=transport)


class DownStore:
    """A shared store that is unreachable."""

    calls = 0

    async def incr(self, key: str, *, window_seconds: float, amount: int = 1) -> tuple[int, float]:
        self.calls += 1
        raise CounterStoreUnavailable("redis://cache:6379: ConnectionError")

    async def close(self) -> None:
        return None


def limiter(store: Any = None, **kwargs: Any) -> RateLimiter:
    options: dict[str, Any] = {"per_source": RateLimit(2, 60), "global_": RateLimit(5, 60)}
    options.update(kwargs)
    return RateLimiter(store if store is not None else MemoryCounterStore(), **options)


async def test_a_source_gets_its_limit_then_429_with_retry_after() -> None:
    rate = limiter()
    for _ in range(2):
        await rate.admit(request_from("192.0.2.1"), issuer="mcp")
    with pytest.raises(RateLimited) as caught:
        await rate.admit(request_from("192.0.2.1"), issuer="mcp")
    assert caught.value.status == 429
    assert caught.value.body()["error"] == "temporarily_unavailable"
    assert caught.value.headers["Retry-After"] == "60"
    assert "at most 2 per 60 seconds" in caught.value.description
    assert "this address" in caught.value.description
    await rate.admit(request_from("192.0.2.2"), issuer="mcp")  # another source has its own budget
    await rate.admit(request_from("192.0.2.1"), issuer="other")  # and so has another issuer


async def test_all_sources_together_get_the_global_limit() -> None:
    rate = limiter(per_source=RateLimit(100, 60), global_=RateLimit(3, 30))
    for index in range(3):
        await rate.admit(request_from(f"192.0.2.{index}"), issuer="mcp")
    with pytest.raises(RateLimited) as caught:
        await rate.admit(request_from("192.0.2.200"), issuer="mcp")
    assert "all clients together" in caught.value.description
    assert caught.value.headers["Retry-After"] == "30"


async def test_a_source_over_its_own_limit_does_not_use_up_the_global_budget() -> None:
    rate = limiter(per_source=RateLimit(1, 60), global_=RateLimit(2, 60))
    await rate.admit(request_from("192.0.2.1"), issuer="mcp")
    for _ in range(5):
        with pytest.raises(RateLimited):
            await rate.admit(request_from("192.0.2.1"), issuer="mcp")
    await rate.admit(request_from("192.0.2.2"), issuer="mcp")


async def test_an_ipv6_host_cannot_escape_by_rotating_within_its_prefix() -> None:
    rate = limiter()
    await rate.admit(request_from("2001:db8:0:1::1"), issuer="mcp")
    await rate.admit(request_from("2001:db8:0:1::2"), issuer="mcp")
    with pytest.raises(RateLimited):
        await rate.admit(request_from("2001:db8:0:1:dead:beef:0:3"), issuer="mcp")


async def test_forwarded_for_decides_the_source_only_when_trusted() -> None:
    trusting = limiter(trust_forwarded_for=True)
    for client in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
        await trusting.admit(request_from("10.0.0.1", f"6.6.6.6, {client}"), issuer="mcp")
    not_trusting = limiter()
    await not_trusting.admit(request_from("10.0.0.1", "198.51.100.1"), issuer="mcp")
    await not_trusting.admit(request_from("10.0.0.1", "198.51.100.2"), issuer="mcp")
    with pytest.raises(RateLimited):
        await not_trusting.admit(request_from("10.0.0.1", "198.51.100.3"), issuer="mcp")


async def test_operations_have_separate_budgets() -> None:
    rate = limiter(per_source=RateLimit(1, 60))
    await rate.admit(request_from("192.0.2.1"), issuer="mcp")
    await rate.admit(request_from("192.0.2.1"), issuer="mcp", operation="manage")
    with pytest.raises(RateLimited):
        await rate.admit(request_from("192.0.2.1"), issuer="mcp", operation="manage")


async def test_limits_of_zero_count_nothing() -> None:
    store = DownStore()
    rate = limiter(store, per_source=RateLimit(0, 60), global_=RateLimit(0, 60), on_failure=BackendFailure.CLOSED)
    for _ in range(10):
        await rate.admit(request_from("192.0.2.1"), issuer="mcp")
    assert store.calls == 0


async def test_store_down_local_keeps_limiting_in_this_instance() -> None:
    rate = limiter(DownStore(), on_failure=BackendFailure.LOCAL)
    await rate.admit(request_from("192.0.2.1"), issuer="mcp")
    await rate.admit(request_from("192.0.2.1"), issuer="mcp")
    with pytest.raises(RateLimited):
        await rate.admit(request_from("192.0.2.1"), issuer="mcp")


async def test_store_down_open_lets_requests_through() -> None:
    store = DownStore()
    rate = limiter(store, on_failure=BackendFailure.OPEN)
    for _ in range(10):
        await rate.admit(request_from("192.0.2.1"), issuer="mcp")
    assert store.calls == 20  # each request tried both limits


async def test_store_down_closed_answers_503_with_retry_after() -> None:
    rate = limiter(DownStore(), on_failure=BackendFailure.CLOSED, retry_seconds=4.2)
    with pytest.raises(TemporarilyUnavailable) as caught:
        await rate.admit(request_from("192.0.2.1"), issuer="mcp")
    assert caught.value.status == 503
    assert caught.value.headers["Retry-After"] == "5"
    assert "redis" not in caught.value.description


# ------------------------------------------------------------------------------------------- quota


class CountingAdapter:
    """Only what the quota uses: ``list_clients``."""

    def __init__(self, clients: int) -> None:
        self.clients = clients
        self.listings = 0
        self.unavailable = False
        self.gate: asyncio.Event | None = None

    async def list_clients(self, issuer: str) -> AsyncIterator[ManagedClient]:
        self.listings += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.unavailable:
            raise ProviderUnavailable("down")
        for index in range(self.clients):
            yield ManagedClient(client_id=f"c{index}", metadata=ClientMetadata(), client_id_issued_at=0)


class FakeClock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def quota(adapter: CountingAdapter, max_clients: int, clock: FakeClock | None = None) -> ClientQuota:
    return ClientQuota(adapter, max_clients=max_clients, refresh_seconds=60, clock=clock or FakeClock())  # type: ignore[arg-type]


async def test_the_quota_counts_through_the_adapter_and_refuses_past_it() -> None:
    adapter = CountingAdapter(clients=2)
    q = quota(adapter, 3)
    async with q.reserve("mcp") as slot:
        slot.created()
    assert q.known("mcp") == 3
    with pytest.raises(QuotaExceeded) as caught:
        async with q.reserve("mcp"):
            pass
    assert (caught.value.status, caught.value.error) == (403, "access_denied")
    assert "maximum of 3 registered clients" in caught.value.description
    assert adapter.listings == 1


async def test_a_failed_registration_frees_its_slot() -> None:
    q = quota(CountingAdapter(clients=0), 1)
    async with q.reserve("mcp"):
        pass  # the provider refused: not created
    assert q.known("mcp") == 0
    with pytest.raises(RuntimeError):
        async with q.reserve("mcp"):
            raise RuntimeError("handler failed")
    async with q.reserve("mcp") as slot:
        slot.created()
    assert q.known("mcp") == 1


async def test_concurrent_registrations_cannot_overshoot() -> None:
    adapter = CountingAdapter(clients=0)
    q = quota(adapter, 2)
    release = asyncio.Event()
    outcomes: list[str] = []

    async def register() -> None:
        try:
            async with q.reserve("mcp") as slot:
                await release.wait()
                slot.created()
            outcomes.append("created")
        except QuotaExceeded:
            outcomes.append("refused")

    tasks = [asyncio.create_task(register()) for _ in range(5)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*tasks)
    assert sorted(outcomes) == ["created", "created", "refused", "refused", "refused"]
    assert adapter.listings == 1  # the first registrations waited for one listing, not one each


async def test_a_deletion_frees_a_slot_at_once() -> None:
    q = quota(CountingAdapter(clients=1), 1)
    with pytest.raises(QuotaExceeded):
        async with q.reserve("mcp"):
            pass
    q.client_deleted("mcp")
    async with q.reserve("mcp") as slot:
        slot.created()


async def test_a_stale_count_is_listed_again_in_the_background() -> None:
    adapter = CountingAdapter(clients=1)
    clock = FakeClock()
    q = quota(adapter, 1, clock)
    with pytest.raises(QuotaExceeded):
        async with q.reserve("mcp"):
            pass
    adapter.clients = 0  # deleted elsewhere (another instance, the clients CLI)
    clock.now += 61
    with pytest.raises(QuotaExceeded):  # answered from the cached count while the listing runs
        async with q.reserve("mcp"):
            pass
    for _ in range(5):
        await asyncio.sleep(0)
    assert adapter.listings == 2
    async with q.reserve("mcp") as slot:
        slot.created()
    await q.close()


async def test_a_failing_first_count_admits_and_retries_later_and_a_later_failure_keeps_the_last_count() -> None:
    adapter = CountingAdapter(clients=3)
    adapter.unavailable = True
    clock = FakeClock()
    q = quota(adapter, 3, clock)
    async with q.reserve("mcp"):  # not enforceable: the provider call that follows answers for the provider
        pass
    async with q.reserve("mcp"):
        pass
    assert adapter.listings == 1  # not listed again at once
    adapter.unavailable = False
    clock.now += 5
    with pytest.raises(QuotaExceeded):
        async with q.reserve("mcp"):
            pass
    assert adapter.listings == 2
    adapter.unavailable = True
    clock.now += 61
    with pytest.raises(QuotaExceeded):
        async with q.reserve("mcp"):
            pass
    for _ in range(5):
        await asyncio.sleep(0)
    assert adapter.listings == 3
    assert q.known("mcp") == 3
    await q.close()


async def test_no_quota_never_lists() -> None:
    adapter = CountingAdapter(clients=100)
    q = quota(adapter, 0)
    async with q.reserve("mcp") as slot:
        slot.created()
    assert adapter.listings == 0


class CountingOnlyAdapter(CountingAdapter):
    """An adapter with :class:`~adapters.base.ClientCount`: the quota counts in one pass, never by listing."""

    def __init__(self, clients: int) -> None:
        super().__init__(clients)
        self.counts = 0

    async def count_managed(self, issuer: str) -> int:
        self.counts += 1
        return self.clients

    async def list_clients(self, issuer: str) -> AsyncIterator[ManagedClient]:
        raise AssertionError("the quota lists clients although the adapter counts them in one pass")
        yield  # pragma: no cover


async def test_the_recount_is_one_pass_through_the_adapters_count() -> None:
    adapter = CountingOnlyAdapter(clients=2)
    q = quota(adapter, 3)
    assert await q.refresh("mcp") == 2
    assert adapter.counts == 1


async def test_recounts_are_spread_and_never_later_than_the_refresh_period() -> None:
    """Instances started together recount at different times (a random 0-20 % earlier than
    ``refresh_seconds``), so they do not all load the provider at once."""
    adapter = CountingAdapter(clients=0)
    clock = FakeClock()
    q = ClientQuota(adapter, max_clients=5, refresh_seconds=100, clock=clock, jitter=lambda: 0.8)  # type: ignore[arg-type]
    async with q.reserve("mcp"):
        pass
    clock.now += 79
    async with q.reserve("mcp"):
        pass
    await asyncio.sleep(0)
    assert adapter.listings == 1
    clock.now += 1
    async with q.reserve("mcp"):
        pass
    for _ in range(5):
        await asyncio.sleep(0)
    assert adapter.listings == 2
    await q.close()
    factors = {spread() for _ in range(50)}
    assert len(factors) > 1 and all(0.8 <= f <= 1.0 for f in factors)
