"""A quota of managed clients per issuer.

MCP clients re-register on every connect, so without a ceiling the provider's client table grows without
bound (Keycloak slows down with tens of thousands of clients). The gateway keeps no database: the count comes
from the provider itself, in one pass over its listing (:class:`~adapters.base.ClientCount`, where the adapter has
it: Keycloak filters on the managed marker, so the pass reads managed clients only; otherwise the adapter's
``list_clients`` and, where it holds clients made from metadata documents, ``list_document_clients``), cached per
issuer, counted again in the background once older than ``refresh_seconds`` (less a random 0-20 %, so the
instances of a deployment, started together, spread their recounts), and adjusted by this instance's own
creations and deletions in between.

A registration reserves a slot before the provider is called and keeps it only if the client was created, so
concurrent registrations on one instance cannot overshoot. Across instances the count is approximate: each
instance learns of the others' creations at its next listing (at most ``refresh_seconds`` later).

Exceeding the quota answers ``403 access_denied`` (RFC 6749 section 4.1.2.1: "the authorization server denied
the request"): the request is well-formed (so not a 400 metadata error) and retrying soon will not help (so not
429/503); it clears when clients are deleted (RFC 7592 or ``dcr-gateway clients gc``).

When the provider cannot list its clients before a first count exists, the quota is not enforced for that
request (logged at error level) and registration goes on: the provider call that follows answers the gateway's
usual 503 when the provider is down, with the cause logged where it belongs. Listing is retried at most every
``RETRY_SECONDS`` meanwhile; a failing background refresh keeps the last count.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

import structlog

from adapters.base import ClientCount, DocumentClients, ProviderAdapter
from gateway.oauth.errors import OAuthError

log = structlog.get_logger(__name__)

Clock = Callable[[], float]
RETRY_SECONDS = 5.0
"""After a failed first listing, how long registrations go unchecked before listing is tried again."""
JITTER = 0.2
"""Each recount comes due after ``refresh_seconds`` times a random factor in ``[1 - JITTER, 1]``: instances
started together do not recount together, and no count gets older than ``refresh_seconds``."""


def spread() -> float:
    """The random factor of :data:`JITTER`."""
    return 1.0 - random.uniform(0.0, JITTER)  # noqa: S311 - spreading load, not a secret


class QuotaExceeded(OAuthError):
    """The issuer holds its maximum number of managed clients: 403 ``access_denied`` (RFC 6749 section 4.1.2.1;
    RFC 7591 section 3.2.2 allows the OAuth error codes appropriate to the request)."""

    error = "access_denied"
    status = 403


@dataclass
class _Count:
    """What this instance knows about one issuer's managed clients."""

    listed: int | None = None
    """Managed clients at the last listing, plus this instance's creations minus deletions since."""
    listed_at: float = float("-inf")
    due_at: float = float("-inf")
    """When the count is stale: ``listed_at`` plus ``refresh_seconds`` times :func:`spread`."""
    failed_at: float = float("-inf")
    pending: int = 0
    """Registrations between reservation and the provider's answer."""
    refreshing: asyncio.Task[None] | None = None


class ClientQuota:
    """At most ``max_clients`` managed clients per issuer (``0``: no quota)."""

    def __init__(
        self,
        adapter: ProviderAdapter,
        *,
        max_clients: int,
        refresh_seconds: float = 300.0,
        clock: Clock = time.monotonic,
        jitter: Callable[[], float] = spread,
    ) -> None:
        self.adapter = adapter
        self.max_clients = max_clients
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._jitter = jitter
        self._counts: dict[str, _Count] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.on_rejected: Callable[[str], None] = lambda limit: None
        """Told ``quota`` on every refusal (metrics)."""

    @property
    def active(self) -> bool:
        return self.max_clients > 0

    def known(self, issuer: str) -> int | None:
        """The cached count of ``issuer``'s managed clients (``None`` before the first listing)."""
        return self._counts.get(issuer, _Count()).listed

    async def refresh(self, issuer: str, *, only_if_unknown: bool = False) -> int:
        """List the issuer's managed clients now and cache the count; raises
        :class:`~adapters.base.AdapterError` when the provider cannot list them. ``only_if_unknown``: return
        the cached count instead if another caller listed while this one waited."""
        lock = self._locks.setdefault(issuer, asyncio.Lock())
        async with lock:
            known = self.known(issuer)
            if only_if_unknown and known is not None:
                return known
            started = self._clock()
            listed = await self._count(issuer)
            entry = self._counts.setdefault(issuer, _Count())
            entry.listed, entry.listed_at = listed, started
            entry.due_at = started + self.refresh_seconds * self._jitter()
            log.info(
                "limits.quota_counted",
                issuer=issuer,
                managed_clients=listed,
                max_clients=self.max_clients,
                seconds=round(self._clock() - started, 3),
                next_in_seconds=round(entry.due_at - started, 1),
            )
            return listed

    async def _count(self, issuer: str) -> int:
        """One pass over the provider's listing where the adapter counts (:class:`~adapters.base.ClientCount`);
        else its registered clients, then its document clients."""
        if isinstance(self.adapter, ClientCount):
            return await self.adapter.count_managed(issuer)
        listed = 0
        async for _ in self.adapter.list_clients(issuer):
            listed += 1
        if isinstance(self.adapter, DocumentClients):  # clients made from metadata documents count too
            async for _ in self.adapter.list_document_clients(issuer):
                listed += 1
        return listed

    async def _current(self, issuer: str) -> int | None:
        """Managed clients plus pending registrations, or ``None`` while the count cannot be known."""
        entry = self._counts.setdefault(issuer, _Count())
        listed = entry.listed
        if listed is None:
            if self._clock() - entry.failed_at < RETRY_SECONDS:
                return None
            # Nothing to answer from yet: the first registration waits for the first listing.
            try:
                listed = await self.refresh(issuer, only_if_unknown=True)
            except Exception as exc:  # any failure to count must not turn into a 500
                entry.failed_at = self._clock()
                log.error("limits.quota_not_enforced", issuer=issuer, cause=f"{type(exc).__name__}: {exc}")
                return None
        elif self._clock() >= entry.due_at and entry.refreshing is None:
            # Stale: keep answering from the cached count while a listing runs in the background.
            entry.refreshing = asyncio.create_task(self._refresh_in_background(issuer))
        return listed + entry.pending

    async def _refresh_in_background(self, issuer: str) -> None:
        entry = self._counts[issuer]
        try:
            await self.refresh(issuer)
        except Exception as exc:  # a background task must not die with an unretrieved exception
            # Keep the last count; try again after another refresh period.
            entry.listed_at = self._clock()
            entry.due_at = entry.listed_at + self.refresh_seconds * self._jitter()
            log.warning("limits.quota_count_failed", issuer=issuer, cause=str(exc))
        finally:
            entry.refreshing = None

    @asynccontextmanager
    async def reserve(self, issuer: str) -> AsyncIterator[Reservation]:
        """Hold a slot for one registration: raises :class:`QuotaExceeded` when none is free. The slot is kept
        if the caller calls :meth:`Reservation.created`, and freed otherwise."""
        reservation = Reservation()
        if not self.active:
            yield reservation
            return
        current = await self._current(issuer)
        if current is not None and current >= self.max_clients:
            self.on_rejected("quota")
            log.warning("limits.quota_exceeded", issuer=issuer, managed_clients=current, max_clients=self.max_clients)
            raise QuotaExceeded(
                f"this authorization server holds its maximum of {self.max_clients} registered clients; "
                "registration is refused until unused clients are removed"
            )
        entry = self._counts[issuer]
        entry.pending += 1
        try:
            yield reservation
        finally:
            entry.pending -= 1
            if reservation.kept and entry.listed is not None:
                entry.listed += 1

    def client_deleted(self, issuer: str) -> None:
        """A managed client of ``issuer`` was deleted through this instance (RFC 7592 section 2.3): free its slot
        now rather than at the next listing."""
        entry = self._counts.get(issuer)
        if entry is not None and entry.listed is not None and entry.listed > 0:
            entry.listed -= 1

    async def close(self) -> None:
        """Stop background listings."""
        tasks = [entry.refreshing for entry in self._counts.values() if entry.refreshing is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError):
                await task


@dataclass
class Reservation:
    """A reserved quota slot; :meth:`created` keeps it."""

    kept: bool = False

    def created(self) -> None:
        """The provider created the client: the slot stays taken."""
        self.kept = True
