"""Registration rate limits: per source address and global, per issuer.

Open registration (RFC 7591 section 3) lets anyone create clients in the provider; RFC 7591 section 5 leaves
abuse protection to the server. Every request to a limited endpoint counts against two fixed windows (see
:mod:`gateway.limits.store`): one for its source address and one for all sources, both per issuer. A request
past either limit gets ``429 Too Many Requests`` (RFC 6585 section 4) with ``Retry-After`` (RFC 9110 section
10.2.3) in whole seconds and an OAuth error body.

Fixed windows, anchored at their first request: one round trip per limit, exact across instances sharing
Redis, at the price of allowing up to twice a limit in a short span that straddles two windows. That burst is
bounded and small next to what the limits exist for (unbounded client creation).
"""

from __future__ import annotations

import functools
import ipaddress
import math
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from aiohttp import hdrs, web

from gateway.limits.settings import BackendFailure
from gateway.limits.store import CounterStore, CounterStoreUnavailable, MemoryCounterStore
from gateway.oauth.errors import OAuthError, TemporarilyUnavailable

log = structlog.get_logger(__name__)

X_FORWARDED_FOR = "X-Forwarded-For"
UNKNOWN_SOURCE = "unknown"


class RateLimited(OAuthError):
    """Too many registration requests: HTTP 429 (RFC 6585 section 4) with ``Retry-After``.

    The code is ``temporarily_unavailable`` (RFC 6749 section 4.1.2.1: "unable to handle the request due to a
    temporary overloading"), the registered OAuth code that means "retry later"; RFC 7591 section 3.2.2 defines
    none for this case and allows the OAuth codes appropriate to the request. The status and ``Retry-After``
    are what HTTP clients act on."""

    error = "temporarily_unavailable"
    status = 429


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` requests per ``window_seconds``; ``limit == 0`` means no limit."""

    limit: int
    window_seconds: float

    @property
    def active(self) -> bool:
        return self.limit > 0

    def exceeded(self, count: int) -> bool:
        """``count`` is the request's position in its window, itself included."""
        return self.active and count > self.limit


def retry_after_seconds(reset_seconds: float) -> int:
    """``Retry-After`` is a whole number of seconds (RFC 9110 section 10.2.3): rounded up, at least 1."""
    return max(1, math.ceil(reset_seconds))


@functools.lru_cache(maxsize=4096)
def source_key(address: str, *, ipv6_prefix_length: int = 64) -> str:
    """The counter key part for a client address: an IPv4 address as is, an IPv6 address by its prefix (a
    host usually holds a whole /64 and could rotate through it), an IPv4-mapped IPv6 address as IPv4.

    Remembered for the last 4,096 addresses: the front door asks it for every proxied request (its per-source
    bound), and parsing an address costs more than the rest of that bookkeeping."""
    try:
        ip = ipaddress.ip_address(address.strip().split("%", 1)[0])
    except ValueError:
        return UNKNOWN_SOURCE
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        network = ipaddress.IPv6Network((ip, ipv6_prefix_length), strict=False)
        return str(network)
    return str(ip)


def client_address(
    peer: str | None, forwarded_for: list[str], *, trust_forwarded_for: bool, trusted_hops: int = 1
) -> str:
    """The address a request came from: the TCP peer, or, behind ``trusted_hops`` proxies the operator trusts
    (``trust_forwarded_for``), the ``X-Forwarded-For`` entry that the outermost trusted proxy appended
    (``trusted_hops`` places from the right; everything further left was written by the client and can be
    forged). A missing or malformed chain falls back to the peer."""
    if trust_forwarded_for:
        chain = [entry.strip() for value in forwarded_for for entry in value.split(",") if entry.strip()]
        if len(chain) >= trusted_hops:
            candidate = chain[-trusted_hops]
            try:
                ipaddress.ip_address(candidate.split("%", 1)[0])
            except ValueError:
                pass
            else:
                return candidate
    return peer or UNKNOWN_SOURCE


@dataclass(frozen=True)
class Admission:
    """One limit's answer for one request."""

    scope: str
    count: int
    limit: int
    reset_seconds: float


class RateLimiter:
    """Per-source and global windows for one kind of operation, counted in a :class:`CounterStore`.

    When the store fails (:class:`CounterStoreUnavailable`), ``on_failure`` decides: ``local`` counts in this
    instance's memory instead (limits still hold, per instance), ``open`` lets the request pass, ``closed``
    answers 503. Never a 500.
    """

    def __init__(
        self,
        store: CounterStore,
        *,
        per_source: RateLimit,
        global_: RateLimit,
        on_failure: BackendFailure = BackendFailure.LOCAL,
        retry_seconds: float = 5.0,
        fallback: CounterStore | None = None,
        trust_forwarded_for: bool = False,
        trusted_hops: int = 1,
        ipv6_prefix_length: int = 64,
    ) -> None:
        self.store = store
        self.per_source = per_source
        self.global_ = global_
        self.on_failure = on_failure
        self.retry_seconds = retry_seconds
        self.fallback = fallback if fallback is not None else MemoryCounterStore()
        self.trust_forwarded_for = trust_forwarded_for
        self.trusted_hops = trusted_hops
        self.ipv6_prefix_length = ipv6_prefix_length
        self.on_rejected: Callable[[str], None] = _ignore
        """Told the limit of every refusal (``per_source``, ``global``, ``store_unavailable``): metrics."""
        self._source_key = web.RequestKey(f"dcr_gateway_source_{id(self):x}", str)
        """Where a request keeps its source as this limiter's settings read it (:meth:`source_of`)."""

    @property
    def active(self) -> bool:
        return self.per_source.active or self.global_.active

    def source_of(self, request: web.BaseRequest) -> str:
        """The counted source of ``request`` (see :func:`client_address`, :func:`source_key`), worked out once
        per request: the limits, the audit record and the registration's caller all ask for it."""
        known: str | None = request.get(self._source_key)
        if known is not None:
            return known
        address = client_address(
            request.remote,
            request.headers.getall(X_FORWARDED_FOR, []),
            trust_forwarded_for=self.trust_forwarded_for,
            trusted_hops=self.trusted_hops,
        )
        source = request[self._source_key] = source_key(address, ipv6_prefix_length=self.ipv6_prefix_length)
        return source

    async def admit(self, request: web.BaseRequest, *, issuer: str, operation: str = "register") -> None:
        """Count ``request`` and raise :class:`RateLimited` (429) if it is past a limit, or
        :class:`~gateway.oauth.errors.TemporarilyUnavailable` (503) if the store is down and
        ``on_failure`` is ``closed``."""
        if not self.active:
            return
        source = self.source_of(request)
        if self.per_source.active:
            # Per source first: a source over its own budget does not use up everyone's.
            await self._check("source", f"rl:{operation}:{issuer}:src:{source}", self.per_source, source=source)
        if self.global_.active:
            await self._check("global", f"rl:{operation}:{issuer}:all", self.global_, source=source)

    async def _check(self, scope: str, key: str, limit: RateLimit, *, source: str) -> None:
        admission = await self._count(scope, key, limit)
        if admission is not None and limit.exceeded(admission.count):
            retry_after = retry_after_seconds(admission.reset_seconds)
            # The source address is personal data, but it is what an operator needs to see an abuser.
            log.warning("limits.rate_limited", scope=scope, source=source, limit=limit.limit, retry_after=retry_after)
            self.on_rejected("per_source" if scope == "source" else "global")
            who = "this address" if scope == "source" else "all clients together"
            raise RateLimited(
                f"too many registration requests from {who}: at most {limit.limit} per "
                f"{_seconds(limit.window_seconds)}; retry after {retry_after} seconds",
                headers={hdrs.RETRY_AFTER: str(retry_after)},
            )

    async def _count(self, scope: str, key: str, limit: RateLimit) -> Admission | None:
        try:
            count, reset = await self.store.incr(key, window_seconds=limit.window_seconds)
        except CounterStoreUnavailable as exc:
            if self.on_failure is BackendFailure.OPEN:
                return None
            if self.on_failure is BackendFailure.CLOSED:
                self.on_rejected("store_unavailable")
                raise TemporarilyUnavailable(
                    "registration is temporarily unavailable; retry later",
                    headers={hdrs.RETRY_AFTER: str(retry_after_seconds(self.retry_seconds))},
                ) from exc
            count, reset = await self.fallback.incr(key, window_seconds=limit.window_seconds)
        return Admission(scope=scope, count=count, limit=limit.limit, reset_seconds=reset)


def _ignore(limit: str) -> None:
    return None


def _seconds(value: float) -> str:
    return f"{value:g} seconds" if value != 1 else "second"
