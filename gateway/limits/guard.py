"""The limits as the app uses them: one object per gateway, built from :class:`LimitSettings`.

The registration entry calls::

    await limits.admit(request, issuer=key)            # rate limits: 429 / 503 (store down, closed)
    async with limits.quota.reserve(key) as slot:      # quota: 403 access_denied
        response = await register(request)
        if response.status == 201:
            slot.created()

Hooks for RFC 7592 (client configuration endpoint, section 2): ``await limits.admit(request, issuer=key,
operation="manage")`` before a PUT or DELETE (its own budget, same limits), and
``limits.quota.client_deleted(key)`` after a DELETE succeeded. Other users of counters (initial access token use
counts) take ``limits.store`` directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from aiohttp import web

from adapters.base import ProviderAdapter
from gateway.limits.quota import ClientQuota
from gateway.limits.ratelimit import RateLimit, RateLimiter
from gateway.limits.settings import Backend, LimitSettings
from gateway.limits.store import CounterStore, MemoryCounterStore, RedisCounterStore

log = structlog.get_logger(__name__)


def open_counter_store(settings: LimitSettings) -> CounterStore:
    """The configured store. Opening never fails on a down Redis: it connects lazily, and a failure is handled
    per request as ``on_backend_failure`` says."""
    if settings.backend is Backend.REDIS and settings.redis_url is not None:
        return RedisCounterStore.from_url(
            settings.redis_url.get_secret_value(),
            key_prefix=settings.key_prefix,
            timeout=settings.redis_timeout_seconds,
            retry_seconds=settings.backend_retry_seconds,
        )
    return MemoryCounterStore(max_keys=settings.memory_max_keys)


@dataclass
class Limits:
    """Rate limits, the quota and the counter store of one gateway instance."""

    settings: LimitSettings
    store: CounterStore
    rate: RateLimiter
    quota: ClientQuota

    @classmethod
    def build(
        cls,
        settings: LimitSettings,
        *,
        store: CounterStore,
        adapter: ProviderAdapter,
        trust_forwarded_for: bool = False,
    ) -> Limits:
        enabled = settings.enabled
        rate = RateLimiter(
            store,
            per_source=RateLimit(settings.per_source_limit if enabled else 0, settings.per_source_window_seconds),
            global_=RateLimit(settings.global_limit if enabled else 0, settings.global_window_seconds),
            on_failure=settings.on_backend_failure,
            retry_seconds=settings.backend_retry_seconds,
            fallback=MemoryCounterStore(max_keys=settings.memory_max_keys),
            trust_forwarded_for=trust_forwarded_for,
            trusted_hops=settings.forwarded_for_hops,
            ipv6_prefix_length=settings.ipv6_prefix_length,
        )
        quota = ClientQuota(
            adapter,
            max_clients=settings.max_clients_per_issuer if enabled else 0,
            refresh_seconds=settings.quota_refresh_seconds,
        )
        return cls(settings=settings, store=store, rate=rate, quota=quota)

    async def admit(self, request: web.BaseRequest, *, issuer: str, operation: str = "register") -> None:
        """Rate limits for one request (see :meth:`RateLimiter.admit`)."""
        await self.rate.admit(request, issuer=issuer, operation=operation)

    def describe(self) -> dict[str, object]:
        """What is in force, for the start-up log line (never the Redis URL)."""
        s = self.settings
        return {
            "enabled": s.enabled,
            "backend": s.backend.value,
            "per_source": f"{s.per_source_limit}/{s.per_source_window_seconds:g}s" if s.per_source_limit else "off",
            "global": f"{s.global_limit}/{s.global_window_seconds:g}s" if s.global_limit else "off",
            "max_clients_per_issuer": s.max_clients_per_issuer or "off",
            "on_backend_failure": s.on_backend_failure.value,
        }

    async def close(self) -> None:
        """Stop the quota's background work and close the store (and its fallback)."""
        await self.quota.close()
        await self.rate.fallback.close()
        await self.store.close()
