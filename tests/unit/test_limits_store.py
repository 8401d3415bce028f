"""The in-memory counter store: fixed windows anchored at the first hit, bounded memory.

The Redis store is proved against a real redis-server in tests/integration/test_limits.py.
"""

from __future__ import annotations

import pytest

from gateway.limits.settings import Backend, BackendFailure, LimitSettings, redacted_url
from gateway.limits.store import CounterStore, MemoryCounterStore, RedisCounterStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_counts_within_a_window_and_reports_the_time_until_it_ends() -> None:
    clock = FakeClock()
    store = MemoryCounterStore(clock=clock)
    assert await store.incr("a", window_seconds=60) == (1, 60.0)
    clock.now += 15
    assert await store.incr("a", window_seconds=60) == (2, 45.0)
    assert await store.incr("a", window_seconds=60, amount=3) == (5, 45.0)


async def test_a_window_starts_at_the_first_hit_and_later_hits_do_not_extend_it() -> None:
    clock = FakeClock()
    store = MemoryCounterStore(clock=clock)
    await store.incr("a", window_seconds=10)
    clock.now += 9.5
    count, reset = await store.incr("a", window_seconds=10)
    assert count == 2
    assert reset == pytest.approx(0.5)
    clock.now += 0.5  # the window has ended: a new one starts with this hit
    assert await store.incr("a", window_seconds=10) == (1, 10.0)


async def test_amount_zero_reads_without_counting() -> None:
    store = MemoryCounterStore(clock=FakeClock())
    await store.incr("a", window_seconds=5, amount=2)
    assert await store.incr("a", window_seconds=5, amount=0) == (2, 5.0)
    assert (await store.incr("fresh", window_seconds=5, amount=0))[0] == 0


async def test_keys_are_independent() -> None:
    store = MemoryCounterStore(clock=FakeClock())
    await store.incr("a", window_seconds=60)
    await store.incr("a", window_seconds=60)
    assert (await store.incr("b", window_seconds=60))[0] == 1


async def test_expired_keys_are_swept() -> None:
    clock = FakeClock()
    store = MemoryCounterStore(clock=clock, sweep_seconds=5)
    for index in range(50):
        await store.incr(f"k{index}", window_seconds=1)
    assert len(store) == 50
    clock.now += 6
    await store.incr("new", window_seconds=1)
    assert len(store) == 1


async def test_memory_stays_bounded_dropping_the_oldest_keys() -> None:
    clock = FakeClock()
    store = MemoryCounterStore(max_keys=3, clock=clock)
    for key in ("a", "b", "c", "d", "e"):
        await store.incr(key, window_seconds=600)
        clock.now += 1
    assert len(store) == 3
    # "a" and "b" were dropped: they start again; "e" is still counted
    assert (await store.incr("a", window_seconds=600))[0] == 1
    assert (await store.incr("e", window_seconds=600))[0] == 2


async def test_a_full_store_sweeps_expired_keys_before_dropping_live_ones() -> None:
    clock = FakeClock()
    store = MemoryCounterStore(max_keys=2, sweep_seconds=3600, clock=clock)
    await store.incr("short", window_seconds=1)
    await store.incr("long", window_seconds=600)
    clock.now += 2
    await store.incr("new", window_seconds=600)
    assert (await store.incr("long", window_seconds=600))[0] == 2


async def test_a_full_store_never_drops_initial_access_token_use_counts() -> None:
    """A flood of sources must not restart a single-use token's count (it would become a many-use one)."""
    clock = FakeClock()
    store = MemoryCounterStore(max_keys=2, sweep_seconds=3600, clock=clock)
    assert (await store.incr("initial-access-token:default:jti-1", window_seconds=600))[0] == 1
    for source in range(10):
        await store.incr(f"rate:source:{source}", window_seconds=600)
    assert (await store.incr("initial-access-token:default:jti-1", window_seconds=600))[0] == 2


@pytest.mark.parametrize("window", [0, -1.0])
async def test_a_window_must_be_positive(window: float) -> None:
    with pytest.raises(ValueError, match="window_seconds"):
        await MemoryCounterStore().incr("a", window_seconds=window)


def test_both_stores_satisfy_the_protocol() -> None:
    assert isinstance(MemoryCounterStore(), CounterStore)
    assert isinstance(RedisCounterStore.from_url("redis://127.0.0.1:1/0"), CounterStore)


def test_the_redis_backend_needs_a_url() -> None:
    with pytest.raises(ValueError, match="redis_url is required"):
        LimitSettings(backend=Backend.REDIS)
    settings = LimitSettings(backend="redis", redis_url="redis://:hunter2@cache:6379/0", on_backend_failure="closed")
    assert settings.on_backend_failure is BackendFailure.CLOSED
    assert "hunter2" not in repr(settings)


def test_limit_settings_come_from_nested_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.settings import Settings

    monkeypatch.setenv("DCR_LIMITS__PER_SOURCE_LIMIT", "7")
    monkeypatch.setenv("DCR_LIMITS__BACKEND", "redis")
    monkeypatch.setenv("DCR_LIMITS__REDIS_URL", "redis://:pw@127.0.0.1:6379/2")
    monkeypatch.setenv("DCR_LIMITS__MAX_CLIENTS_PER_ISSUER", "0")
    limits = Settings().limits
    assert limits.per_source_limit == 7
    assert limits.backend is Backend.REDIS
    assert limits.redis_url is not None and limits.redis_url.get_secret_value().endswith("/2")
    assert limits.max_clients_per_issuer == 0


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        ("rediss://app:hunter2@cache.internal/1", "rediss://app:***@cache.internal/1"),
        ("redis://u:hunter2@[::1]:6380", "redis://u:***@[::1]:6380"),
        # redis-py also reads the password from the query string
        ("redis://cache:6379/0?password=hunter2", "redis://cache:6379/0"),
        ("redis://app@cache/0?password=hunter2&db=1", "redis://app@cache/0"),
    ],
)
def test_redis_urls_are_logged_without_their_password(url: str, shown: str) -> None:
    assert redacted_url(url) == shown
