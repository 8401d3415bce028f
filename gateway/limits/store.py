"""Windowed counters: the state behind rate limits (and initial-access-token use counts).

A counter is created by its first increment and lives ``window_seconds`` from then: a fixed window anchored at
the first hit (the window does not slide with later hits). :meth:`CounterStore.incr` answers the count within
the current window and the seconds until the window ends, which is what an HTTP ``Retry-After`` needs
(RFC 9110 section 10.2.3, RFC 6585 section 4).

- :class:`MemoryCounterStore`: one process; bounded (expired keys swept, the oldest dropped past a cap).
- :class:`RedisCounterStore`: shared by every gateway instance using the same Redis and key prefix; each
  increment is one ``MULTI``/``EXEC`` transaction (``INCRBY`` + ``PEXPIRE NX`` + ``PTTL``), so concurrent
  instances never lose a count nor extend a window. Any Redis failure is raised as
  :class:`CounterStoreUnavailable`; after one, the store is not tried again for ``retry_seconds``, so a down
  Redis costs each request nothing instead of a connect timeout.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import redis.asyncio as redis_asyncio
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.limits.settings import redacted_url

log = structlog.get_logger(__name__)

Clock = Callable[[], float]


class CounterStoreUnavailable(Exception):
    """The counter store cannot answer (Redis down, timed out, refusing). The message names no credential."""


@runtime_checkable
class CounterStore(Protocol):
    """Counters in fixed windows that start at a key's first increment."""

    async def incr(self, key: str, *, window_seconds: float, amount: int = 1) -> tuple[int, float]:
        """Add ``amount`` to ``key`` (creating it, with a window of ``window_seconds``, if absent or expired) and
        return ``(count within the window, seconds until the window ends)``. ``amount=0`` reads.

        Raises :class:`CounterStoreUnavailable` when a shared store cannot be reached."""
        ...

    async def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...


def _window_ms(window_seconds: float) -> int:
    if not window_seconds > 0:
        raise ValueError(f"window_seconds must be positive, not {window_seconds!r}")
    return max(1, math.ceil(window_seconds * 1000))


KEPT_PREFIX = "initial-access-token:"
"""Counters that must never restart early (see :class:`MemoryCounterStore`)."""


class MemoryCounterStore:
    """Counters in a dict, for one gateway process.

    Memory stays bounded: expired keys are swept every ``sweep_seconds`` (and whenever the dict reaches
    ``max_keys``); if it is still full after a sweep, the oldest rate-limit keys are dropped (their counts
    restart, which can only let a request through). Keys under ``kept_prefixes`` (use counts of initial access
    tokens: a restarted count would turn a single-use token into a many-use one) are never dropped before they
    expire; a flood of sources cannot reset them.
    """

    def __init__(
        self,
        *,
        max_keys: int = 100_000,
        sweep_seconds: float = 10.0,
        clock: Clock = time.monotonic,
        kept_prefixes: tuple[str, ...] = (KEPT_PREFIX,),
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._max_keys = max_keys
        self._sweep_seconds = sweep_seconds
        self._clock = clock
        self._counters: dict[str, tuple[int, float]] = {}
        """key -> (count, expires_at on ``clock``); insertion order = creation order."""
        self._next_sweep = clock() + sweep_seconds
        self._kept_prefixes = kept_prefixes

    def __len__(self) -> int:
        return len(self._counters)

    async def incr(self, key: str, *, window_seconds: float, amount: int = 1) -> tuple[int, float]:
        """See :meth:`CounterStore.incr`."""
        window = _window_ms(window_seconds) / 1000
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        entry = self._counters.get(key)
        if entry is None or entry[1] <= now:
            if entry is not None:
                del self._counters[key]  # re-inserted below, at the end of the creation order
            elif len(self._counters) >= self._max_keys:
                self._make_room(now)
            entry = (0, now + window)
        count, expires_at = entry[0] + amount, entry[1]
        self._counters[key] = (count, expires_at)
        return count, expires_at - now

    def _sweep(self, now: float) -> None:
        expired = [key for key, (_, expires_at) in self._counters.items() if expires_at <= now]
        for key in expired:
            del self._counters[key]
        self._next_sweep = now + self._sweep_seconds

    def _make_room(self, now: float) -> None:
        self._sweep(now)
        excess = len(self._counters) - self._max_keys + 1
        if excess > 0:
            droppable = (key for key in list(self._counters) if not key.startswith(self._kept_prefixes))
            dropped = 0
            for key in itertools.islice(droppable, excess):
                del self._counters[key]
                dropped += 1
            log.warning("limits.memory_store_full", dropped=dropped, max_keys=self._max_keys)

    async def close(self) -> None:
        self._counters.clear()


class RedisCounterStore:
    """Counters in Redis (``redis.asyncio``), shared by every gateway instance with the same ``key_prefix``."""

    def __init__(
        self,
        client: redis_asyncio.Redis,
        *,
        key_prefix: str = "dcr-gateway:",
        retry_seconds: float = 5.0,
        description: str = "redis",
        clock: Clock = time.monotonic,
    ) -> None:
        self._client = client
        self._prefix = key_prefix
        self._retry_seconds = retry_seconds
        self._description = description
        self._clock = clock
        self._down_until: float | None = None
        """While set and in the future, calls fail at once (the last failure is recent)."""
        self._down = False

    @classmethod
    def from_url(
        cls, url: str, *, key_prefix: str = "dcr-gateway:", timeout: float = 0.5, retry_seconds: float = 5.0
    ) -> RedisCounterStore:
        """A store on ``url`` (``redis://`` or ``rediss://``). Connects lazily: a Redis that is down at start-up
        is handled like one that fails later. The URL may carry a password: only a redacted form is kept."""
        client = redis_asyncio.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # One immediate retry, so a pooled connection broken by a Redis restart reconnects transparently.
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
        )
        return cls(client, key_prefix=key_prefix, retry_seconds=retry_seconds, description=redacted_url(url))

    @property
    def available(self) -> bool:
        """False while the last failure is recent (calls fail without trying Redis)."""
        return self._down_until is None or self._clock() >= self._down_until

    async def incr(self, key: str, *, window_seconds: float, amount: int = 1) -> tuple[int, float]:
        """See :meth:`CounterStore.incr`: ``MULTI INCRBY PEXPIRE NX PTTL EXEC`` in one round trip."""
        window_ms = _window_ms(window_seconds)
        if not self.available:
            raise CounterStoreUnavailable(f"{self._description}: unavailable (retrying after a recent failure)")
        full_key = self._prefix + key
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.incrby(full_key, amount)
                pipe.pexpire(full_key, window_ms, nx=True)
                pipe.pttl(full_key)
                count, _, ttl_ms = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            raise CounterStoreUnavailable(f"{self._description}: {type(exc).__name__}") from exc
        if self._down:
            self._down = False
            log.warning("limits.store_recovered", store=self._description)
        # PTTL is -1 only if something else removed the expiry; count that window as a full one.
        return int(count), (int(ttl_ms) if int(ttl_ms) >= 0 else window_ms) / 1000

    def _failed(self, exc: BaseException) -> None:
        self._down_until = self._clock() + self._retry_seconds
        if not self._down:
            self._down = True
            # Loud, once per outage (not once per request): operators must see limits degrade.
            log.error(
                "limits.store_unavailable",
                store=self._description,
                cause=f"{type(exc).__name__}: {exc}",
                retry_seconds=self._retry_seconds,
            )

    async def ping(self) -> bool:
        """True if Redis answers now (start-up diagnostics; failures are logged like any other)."""
        try:
            await self._client.ping()
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            return False
        return True

    async def close(self) -> None:
        await self._client.aclose()
