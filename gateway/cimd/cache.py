"""Caching client ID metadata documents, per gateway instance.

draft-ietf-oauth-client-id-metadata-document section 4 (-01 section 4.3): "The authorization server MAY cache
the client metadata ... SHOULD respect HTTP cache headers [RFC9111] ... MAY define its own upper and/or lower
bounds ... MUST NOT cache error responses ... MUST NOT cache documents which are invalid or malformed."

- A document is reused while fresh: its lifetime is the answer's freshness (:attr:`FetchedDocument.max_age`)
  clamped to [:attr:`CimdSettings.min_cache_seconds`, :attr:`CimdSettings.max_cache_seconds`], and
  ``min_cache_seconds`` when the answer says nothing.
- A stale document with an ``ETag`` is revalidated with ``If-None-Match`` (RFC 9111 section 4.3.1); a 304 keeps
  it with a new lifetime.
- Errors and documents the caller's ``validate`` refuses are never stored; a stale document whose refetch fails
  is evicted and the failure raised, so a document that disappears stops new authorizations.
- Concurrent gets of one URL share one fetch; the number of entries is bounded (least recently used first out).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

from gateway.cimd.fetch import DocumentFetcher, FetchedDocument
from gateway.cimd.settings import CimdSettings

Validate = Callable[[FetchedDocument], object]
"""The caller's check of a document (e.g. :func:`gateway.cimd.document.client_metadata`); raises
:class:`gateway.cimd.errors.DocumentRefused` for a document it will not use. Its result is ignored."""


@dataclass(frozen=True)
class _Entry:
    fetched: FetchedDocument
    expires_at: float


class DocumentCache:
    """Documents by ``client_id`` URL, fetched through ``fetcher``. ``clock`` (monotonic seconds) decides
    freshness; ``max_entries`` bounds the memory."""

    def __init__(
        self,
        fetcher: DocumentFetcher,
        settings: CimdSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._fetcher = fetcher
        self._settings = settings
        self._clock = clock
        self._max_entries = max_entries
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[FetchedDocument]] = {}

    def __contains__(self, url: object) -> bool:
        return url in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def invalidate(self, url: str) -> None:
        """Forget ``url``'s document: the next :meth:`get` fetches it."""
        self._entries.pop(url, None)

    async def get(self, url: str, *, validate: Validate | None = None) -> FetchedDocument:
        """The document at ``url``: the cached one while fresh, else fetched (or revalidated) and, once
        ``validate`` accepts it, stored. :class:`gateway.cimd.errors.DocumentRefused` when it cannot be fetched
        or is refused. ``validate`` also runs on a cached document and on one fetched for a concurrent caller,
        so each caller gets only documents its own check accepts."""
        entry = self._entries.get(url)
        if entry is not None and self._clock() < entry.expires_at:
            self._entries.move_to_end(url)
            if validate is not None:
                validate(entry.fetched)
            return entry.fetched
        shared = self._inflight.get(url)
        joined = shared is not None
        if shared is None:
            shared = asyncio.ensure_future(self._load(url, validate))
            self._inflight[url] = shared
            shared.add_done_callback(partial(self._settled, url))
        # a caller that goes away (cancelled) does not cancel the fetch the others wait for
        fetched = await asyncio.shield(shared)
        if joined and validate is not None:
            validate(fetched)
        return fetched

    async def _load(self, url: str, validate: Validate | None) -> FetchedDocument:
        stale = self._entries.get(url)
        try:
            fetched = await self._refetch(url, stale)
            if validate is not None:
                validate(fetched)
        except BaseException:
            self._entries.pop(url, None)  # never serve a document that can no longer be fetched or used
            raise
        self._store(url, fetched)
        return fetched

    async def _refetch(self, url: str, stale: _Entry | None) -> FetchedDocument:
        """A new fetch, conditional on the stale entry's ``ETag`` when it has one (RFC 9111 section 4.3.1)."""
        etag = stale.fetched.etag if stale is not None else None
        answer = await self._fetcher.fetch(url, etag=etag)
        if isinstance(answer, FetchedDocument):
            return answer
        if stale is None:
            raise TypeError("the fetcher answered 304 to an unconditional request")
        return replace(
            stale.fetched, fetched_at=answer.fetched_at, max_age=answer.max_age, etag=answer.etag or stale.fetched.etag
        )

    def _store(self, url: str, fetched: FetchedDocument) -> None:
        self._entries[url] = _Entry(fetched, self._clock() + self.lifetime(fetched.max_age))
        self._entries.move_to_end(url)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def lifetime(self, max_age: float | None) -> float:
        """Seconds a document with freshness ``max_age`` is reused: clamped to the configured bounds."""
        low, high = self._settings.min_cache_seconds, self._settings.max_cache_seconds
        if max_age is None:
            return float(low)
        return float(min(max(max_age, low), high))

    def _settled(self, url: str, future: asyncio.Future[FetchedDocument]) -> None:
        if self._inflight.get(url) is future:
            del self._inflight[url]
        if not future.cancelled():
            future.exception()  # retrieved: a failure nobody awaited any more is not reported as lost
